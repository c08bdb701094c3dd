//! A minimal typed SDP (RFC 8866) reader and writer.
//!
//! The proxy passes bodies through untouched; this is for tests, logging and
//! the phone's first needs: origin, connection, media lines and attributes.
//! Unknown line types are kept so a round trip loses nothing.

use std::fmt::Write as _;

use crate::Error;

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub origin: Origin,
    pub name: String,
    pub connection: Option<Connection>,
    /// `t=` lines as written.
    pub times: Vec<String>,
    /// Session-level attributes.
    pub attributes: Vec<Attribute>,
    /// Other session-level lines (`b=`, `i=`…) as (type, value).
    pub other: Vec<(char, String)>,
    pub media: Vec<Media>,
}

/// `o=username sess-id sess-version IN IP4 address`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub session_version: u64,
    pub address_type: String,
    pub address: String,
}

/// `c=IN IP4 address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub address_type: String,
    pub address: String,
}

/// `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application`…
    pub kind: String,
    pub port: u16,
    pub protocol: String,
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub attributes: Vec<Attribute>,
    pub other: Vec<(char, String)>,
}

impl Session {
    /// Parse an SDP body. Limits: 64 KiB, 1,000 lines.
    pub fn parse(body: &[u8]) -> Result<Session, Error> {
        let err = |s: &str| Error::Sdp(s.to_owned());
        if body.len() > 65_536 {
            return Err(err("body larger than 64 KiB"));
        }
        let text = std::str::from_utf8(body).map_err(|_| err("not UTF-8"))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty()).enumerate();
        match lines.next() {
            Some((_, "v=0")) => {}
            _ => return Err(err("must start with v=0")),
        }
        let mut session = Session::default();
        let mut saw_origin = false;
        for (n, line) in lines {
            if n > 1_000 {
                return Err(err("more than 1,000 lines"));
            }
            let (kind, value) = split_line(line).ok_or_else(|| err("line is not `x=value`"))?;
            if kind == 'm' {
                session.media.push(parse_media(value)?);
                continue;
            }
            if let Some(media) = session.media.last_mut() {
                match kind {
                    'c' => media.connection = Some(parse_connection(value)?),
                    'a' => media.attributes.push(parse_attribute(value)),
                    _ => media.other.push((kind, value.to_owned())),
                }
                continue;
            }
            match kind {
                'o' => {
                    session.origin = parse_origin(value)?;
                    saw_origin = true;
                }
                's' => session.name = value.to_owned(),
                'c' => session.connection = Some(parse_connection(value)?),
                't' => session.times.push(value.to_owned()),
                'a' => session.attributes.push(parse_attribute(value)),
                _ => session.other.push((kind, value.to_owned())),
            }
        }
        if !saw_origin {
            return Err(err("missing o= line"));
        }
        Ok(session)
    }

    /// Serialize with CRLF line ends.
    pub fn to_text(&self) -> String {
        let mut out = String::from("v=0\r\n");
        let o = &self.origin;
        let _ = write!(
            out,
            "o={} {} {} IN {} {}\r\ns={}\r\n",
            o.username, o.session_id, o.session_version, o.address_type, o.address, self.name
        );
        for (kind, value) in &self.other {
            let _ = write!(out, "{kind}={value}\r\n");
        }
        if let Some(c) = &self.connection {
            let _ = write!(out, "c=IN {} {}\r\n", c.address_type, c.address);
        }
        for t in &self.times {
            let _ = write!(out, "t={t}\r\n");
        }
        write_attributes(&mut out, &self.attributes);
        for m in &self.media {
            let _ = write!(
                out,
                "m={} {} {} {}\r\n",
                m.kind,
                m.port,
                m.protocol,
                m.formats.join(" ")
            );
            for (kind, value) in &m.other {
                let _ = write!(out, "{kind}={value}\r\n");
            }
            if let Some(c) = &m.connection {
                let _ = write!(out, "c=IN {} {}\r\n", c.address_type, c.address);
            }
            write_attributes(&mut out, &m.attributes);
        }
        out
    }
}

impl Media {
    /// The first attribute with this name.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

fn write_attributes(out: &mut String, attributes: &[Attribute]) {
    for a in attributes {
        let _ = match &a.value {
            Some(v) => write!(out, "a={}:{}\r\n", a.name, v),
            None => write!(out, "a={}\r\n", a.name),
        };
    }
}

fn split_line(line: &str) -> Option<(char, &str)> {
    let line = line.trim_end_matches('\r');
    let mut chars = line.chars();
    let kind = chars.next()?;
    let rest = chars.as_str().strip_prefix('=')?;
    kind.is_ascii_lowercase().then_some((kind, rest))
}

fn parse_origin(value: &str) -> Result<Origin, Error> {
    let f: Vec<&str> = value.split(' ').collect();
    let [username, id, version, "IN", address_type, address] = f[..] else {
        return Err(Error::Sdp(
            "o= line needs 6 fields with network type IN".into(),
        ));
    };
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| Error::Sdp("o= session id/version is not a number".into()))
    };
    Ok(Origin {
        username: username.to_owned(),
        session_id: number(id)?,
        session_version: number(version)?,
        address_type: address_type.to_owned(),
        address: address.to_owned(),
    })
}

fn parse_connection(value: &str) -> Result<Connection, Error> {
    let f: Vec<&str> = value.split(' ').collect();
    let ["IN", address_type, address] = f[..] else {
        return Err(Error::Sdp("c= line must be `IN IP4|IP6 address`".into()));
    };
    Ok(Connection {
        address_type: address_type.to_owned(),
        address: address.to_owned(),
    })
}

fn parse_media(value: &str) -> Result<Media, Error> {
    let mut f = value.split(' ');
    let (Some(kind), Some(port), Some(protocol)) = (f.next(), f.next(), f.next()) else {
        return Err(Error::Sdp("m= line needs media, port and protocol".into()));
    };
    let port = port.split('/').next().unwrap_or(port);
    let port = port
        .parse()
        .map_err(|_| Error::Sdp("m= port is not a number".into()))?;
    Ok(Media {
        kind: kind.to_owned(),
        port,
        protocol: protocol.to_owned(),
        formats: f.filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        connection: None,
        attributes: Vec::new(),
        other: Vec::new(),
    })
}

fn parse_attribute(value: &str) -> Attribute {
    match value.split_once(':') {
        Some((n, v)) => Attribute {
            name: n.to_owned(),
            value: Some(v.to_owned()),
        },
        None => Attribute {
            name: value.to_owned(),
            value: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
        o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=group:BUNDLE 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=fingerprint:sha-256 AB:CD\r\n\
        a=candidate:1 1 udp 2122260223 192.0.2.7 54400 typ host\r\n\
        a=sendrecv\r\n";

    #[test]
    fn parses_a_webrtc_style_offer() {
        let s = Session::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(s.origin.session_version, 2);
        assert_eq!(s.media.len(), 1);
        let m = &s.media[0];
        assert_eq!((m.kind.as_str(), m.port), ("audio", 9));
        assert_eq!(m.formats, ["111", "0", "8"]);
        assert_eq!(
            m.attribute("rtpmap").unwrap().value.as_deref(),
            Some("111 opus/48000/2")
        );
        assert!(m.attribute("sendrecv").unwrap().value.is_none());
        assert_eq!(m.connection.as_ref().unwrap().address, "0.0.0.0");
    }

    #[test]
    fn round_trip() {
        let s = Session::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(Session::parse(s.to_text().as_bytes()).unwrap(), s);
    }

    #[test]
    fn rejects_broken_bodies() {
        for bad in [
            "",
            "v=1\r\n",
            "v=0\r\ns=-\r\n",
            "v=0\r\no=a b\r\n",
            "v=0\r\no=- 1 1 IN IP4 h\r\nm=audio x RTP/AVP 0\r\n",
            "v=0\r\nnot a line\r\n",
        ] {
            assert!(Session::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(Session::parse(&[0xff, 0xfe]).is_err());
    }
}
