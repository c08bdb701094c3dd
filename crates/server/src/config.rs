//! The `serve` configuration: built-in defaults, a TOML file, then flags.
//!
//! Every field has the same name as its flag (without `--`, `-` → `_`).
//! A listener address is `IP:PORT` or `off`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

/// Validated server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the database, TLS certificate and TURN secret live. Default `./natter-data`.
    pub data: PathBuf,
    /// SIP domain and TURN realm. Default `localhost`.
    pub domain: String,
    /// SIP over UDP and TCP. Default `0.0.0.0:5060`.
    pub sip: Option<SocketAddr>,
    /// SIP over TLS. Default `0.0.0.0:5061`.
    pub sips: Option<SocketAddr>,
    /// STUN/TURN over UDP and TCP. Default `0.0.0.0:3478`.
    pub turn: Option<SocketAddr>,
    /// STUN/TURN over TLS. Default `0.0.0.0:5349`.
    pub turns: Option<SocketAddr>,
    /// HTTPS (web page, WebSocket SIP, APIs). Default `0.0.0.0:8443`.
    pub http: Option<SocketAddr>,
    /// Second IP:port for RFC 5780 NAT behaviour discovery. Default off.
    /// Its IP must differ from `--turn`'s IP and its port from `--turn`'s port.
    pub stun_alt: Option<SocketAddr>,
    /// The address clients reach us at, when behind a 1:1 NAT. Default: none
    /// (the listener's own address).
    pub public_ip: Option<IpAddr>,
    /// The local IP relay sockets bind to. Default: the `--turn` IP, or the
    /// first non-loopback address when that is unspecified.
    pub relay_ip: Option<IpAddr>,
    /// Relay port range, inclusive. Default `49152-65535`.
    pub relay_ports: (u16, u16),
    /// TURN REST secret. Default: generated on first start into `DATA/turn-secret`.
    pub turn_secret: Option<String>,
    /// Peer ranges the relay may reach although they are private or special.
    pub allow_peer: Vec<IpNet>,
    /// TURN allocations one user may hold at once. Default 1000.
    pub turn_user_quota: u32,
    /// TURN allocations in total. Default 20000.
    pub turn_total_quota: u32,
    /// Relayed bytes per second per TURN allocation (both directions), with a
    /// one-second burst. Default 2500000 (20 Mbit/s).
    pub turn_bandwidth: u64,
    /// Unauthenticated STUN/TURN requests per second from one source IP
    /// (burst: five seconds' worth). Default 200.
    pub turn_unauth_rate: u32,
    /// Digest algorithms SIP challenges offer, in order. Default MD5 then
    /// SHA-256; `md5` alone for clients that give up on a challenge they
    /// cannot answer (baresip 1.0).
    pub sip_digest: natter_sip::auth::DigestOffer,
    /// Log personal data (usernames, client addresses) as it is. Default
    /// false: a salted digest stands in.
    pub log_pii: bool,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace` or an EnvFilter
    /// directive). Default `info`.
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        let any = |port| Some(SocketAddr::from(([0, 0, 0, 0], port)));
        Config {
            data: PathBuf::from("natter-data"),
            domain: "localhost".into(),
            sip: any(5060),
            sips: any(5061),
            turn: any(3478),
            turns: any(5349),
            http: any(8443),
            stun_alt: None,
            public_ip: None,
            relay_ip: None,
            relay_ports: (49152, 65535),
            turn_secret: None,
            allow_peer: Vec::new(),
            turn_user_quota: 1000,
            turn_total_quota: 20_000,
            turn_bandwidth: 2_500_000,
            turn_unauth_rate: 200,
            sip_digest: natter_sip::auth::DigestOffer::default(),
            log_pii: false,
            log: "info".into(),
        }
    }
}

/// A config value as written by a user (flag or file): all strings, parsed once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    pub data: Option<PathBuf>,
    pub domain: Option<String>,
    pub sip: Option<String>,
    pub sips: Option<String>,
    pub turn: Option<String>,
    pub turns: Option<String>,
    pub http: Option<String>,
    pub stun_alt: Option<String>,
    pub public_ip: Option<String>,
    pub relay_ip: Option<String>,
    pub relay_ports: Option<String>,
    pub turn_secret: Option<String>,
    pub allow_peer: Option<Vec<String>>,
    pub turn_user_quota: Option<u64>,
    pub turn_total_quota: Option<u64>,
    pub turn_bandwidth: Option<u64>,
    pub turn_unauth_rate: Option<u64>,
    pub sip_digest: Option<String>,
    pub log_pii: Option<bool>,
    pub log: Option<String>,
}

/// A configuration value that cannot be used; names the key/flag and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("--{key} / `{key}`: {value:?} is not valid: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: String,
    },
    #[error("config file {path}: {why}")]
    File { path: PathBuf, why: String },
}

impl RawConfig {
    /// Read a TOML file; unknown keys are an error naming the key.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            why: format!("cannot read it ({e})"),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            why: e.message().trim_end().replace(
                "unknown field",
                "unknown key (see `natter serve --help` for the keys)",
            ),
        })
    }

    /// Values set in `over` replace ours (flags override the file).
    pub fn merge(mut self, over: RawConfig) -> RawConfig {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(data, domain, sip, sips, turn, turns, http, stun_alt, public_ip, relay_ip);
        take!(relay_ports, turn_secret, sip_digest, log);
        take!(
            turn_user_quota,
            turn_total_quota,
            turn_bandwidth,
            turn_unauth_rate,
            log_pii
        );
        if let Some(peers) = over.allow_peer {
            if !peers.is_empty() {
                self.allow_peer = Some(peers);
            }
        }
        self
    }

    /// Validate everything and fill in defaults.
    pub fn build(self) -> Result<Config, ConfigError> {
        let d = Config::default();
        let domain = match self.domain {
            Some(s) => parse_domain(&s)?,
            None => d.domain,
        };
        let cfg = Config {
            data: self.data.unwrap_or(d.data),
            domain,
            sip: listener("sip", self.sip, d.sip)?,
            sips: listener("sips", self.sips, d.sips)?,
            turn: listener("turn", self.turn, d.turn)?,
            turns: listener("turns", self.turns, d.turns)?,
            http: listener("http", self.http, d.http)?,
            stun_alt: listener("stun-alt", self.stun_alt, d.stun_alt)?,
            public_ip: ip("public-ip", self.public_ip)?,
            relay_ip: ip("relay-ip", self.relay_ip)?,
            relay_ports: match self.relay_ports {
                Some(s) => parse_port_range(&s)?,
                None => d.relay_ports,
            },
            turn_secret: match self.turn_secret {
                Some(s) if s.len() < 16 => {
                    return Err(invalid("turn-secret", &s, "use at least 16 characters"))
                }
                other => other,
            },
            allow_peer: self
                .allow_peer
                .unwrap_or_default()
                .iter()
                .map(|s| parse_cidr(s))
                .collect::<Result<_, _>>()?,
            turn_user_quota: count("turn-user-quota", self.turn_user_quota, d.turn_user_quota)?,
            turn_total_quota: count(
                "turn-total-quota",
                self.turn_total_quota,
                d.turn_total_quota,
            )?,
            turn_bandwidth: bandwidth(self.turn_bandwidth, d.turn_bandwidth)?,
            turn_unauth_rate: count(
                "turn-unauth-rate",
                self.turn_unauth_rate,
                d.turn_unauth_rate,
            )?,
            sip_digest: match self.sip_digest {
                Some(s) => parse_digest_offer(&s)?,
                None => d.sip_digest,
            },
            log_pii: self.log_pii.unwrap_or(d.log_pii),
            log: self.log.unwrap_or(d.log),
        };
        check_stun_alt(&cfg)?;
        Ok(cfg)
    }
}

/// `md5,sha-256`, `sha-256,md5`, `md5` or `sha-256`.
fn parse_digest_offer(s: &str) -> Result<natter_sip::auth::DigestOffer, ConfigError> {
    use natter_sip::auth::DigestOffer;
    let spaced: String = s.split_whitespace().collect();
    match spaced.to_ascii_lowercase().as_str() {
        "md5,sha-256" => Ok(DigestOffer::Md5AndSha256),
        "sha-256,md5" => Ok(DigestOffer::Sha256AndMd5),
        "md5" => Ok(DigestOffer::Md5),
        "sha-256" => Ok(DigestOffer::Sha256),
        _ => Err(invalid(
            "sip-digest",
            s,
            "use md5,sha-256 (the default), sha-256,md5, md5 or sha-256",
        )),
    }
}

fn invalid(key: &'static str, value: &str, why: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_owned(),
        why: why.to_owned(),
    }
}

/// A limit of at least 1 that fits in 32 bits.
fn count(key: &'static str, v: Option<u64>, default: u32) -> Result<u32, ConfigError> {
    let Some(n) = v else { return Ok(default) };
    match u32::try_from(n) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(invalid(
            key,
            &n.to_string(),
            "expected a whole number from 1 to 4294967295",
        )),
    }
}

/// Bytes per second per allocation: at least 8000 (one voice call with headers).
fn bandwidth(v: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if n >= 8000 => Ok(n),
        Some(n) => Err(invalid(
            "turn-bandwidth",
            &n.to_string(),
            "expected bytes per second, at least 8000 (e.g. 2500000 for 20 Mbit/s)",
        )),
    }
}

/// `IP:PORT` or `off`.
pub fn parse_listener(key: &'static str, s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse::<SocketAddr>().map(Some).map_err(|_| {
        invalid(
            key,
            s,
            "expected IP:PORT (e.g. 0.0.0.0:3478 or [::]:3478) or `off`",
        )
    })
}

fn listener(
    key: &'static str,
    v: Option<String>,
    default: Option<SocketAddr>,
) -> Result<Option<SocketAddr>, ConfigError> {
    match v {
        Some(s) => parse_listener(key, &s),
        None => Ok(default),
    }
}

fn ip(key: &'static str, v: Option<String>) -> Result<Option<IpAddr>, ConfigError> {
    v.map(|s| {
        s.parse()
            .map_err(|_| invalid(key, &s, "expected an IP address like 203.0.113.7"))
    })
    .transpose()
}

/// A DNS name (`example.org`, `localhost`), lower-cased; the SIP domain and TURN realm.
pub fn parse_domain(s: &str) -> Result<String, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(invalid(
            "domain",
            s,
            "expected a DNS name like example.org or localhost",
        ))
    }
}

/// `LO-HI`, inclusive, LO ≤ HI, LO ≥ 1024.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || {
        invalid(
            "relay-ports",
            s,
            "expected LO-HI with 1024 <= LO <= HI <= 65535, e.g. 49152-65535",
        )
    };
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// A CIDR (`10.0.0.0/8`) or a single address (taken as /32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, ConfigError> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            invalid(
                "allow-peer",
                s,
                "expected a CIDR like 10.0.0.0/8 or an IP address",
            )
        })
}

fn check_stun_alt(cfg: &Config) -> Result<(), ConfigError> {
    let (Some(alt), Some(main)) = (cfg.stun_alt, cfg.turn) else {
        return Ok(());
    };
    let alt_s = alt.to_string();
    if alt.ip() == main.ip() || alt.ip().is_unspecified() {
        return Err(invalid(
            "stun-alt",
            &alt_s,
            "RFC 5780 needs a second IP address, different from --turn's (and not 0.0.0.0)",
        ));
    }
    if main.ip().is_unspecified() {
        return Err(invalid(
            "stun-alt",
            &alt_s,
            "with --stun-alt, give --turn a specific IP too (the primary address of RFC 5780)",
        ));
    }
    if alt.port() == main.port() {
        return Err(invalid(
            "stun-alt",
            &alt_s,
            "RFC 5780 needs a different port than --turn's",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_design() {
        let c = RawConfig::default().build().unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.turn.unwrap().port(), 3478);
        assert_eq!(c.http.unwrap().port(), 8443);
    }

    #[test]
    fn off_disables_and_flags_override_file() {
        let file = RawConfig {
            sip: Some("off".into()),
            domain: Some("a.example".into()),
            ..Default::default()
        };
        let flags = RawConfig {
            domain: Some("B.example".into()),
            ..Default::default()
        };
        let c = file.merge(flags).build().unwrap();
        assert_eq!(c.sip, None);
        assert_eq!(c.domain, "b.example");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = RawConfig {
            turn: Some("3478".into()),
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert!(e.to_string().contains("--turn"), "{e}");
        let e = RawConfig {
            relay_ports: Some("60000-50000".into()),
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert!(e.to_string().contains("--relay-ports"), "{e}");
        let e = RawConfig {
            allow_peer: Some(vec!["10.0.0.0/33".into()]),
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert!(e.to_string().contains("--allow-peer"), "{e}");
    }

    #[test]
    fn turn_limits_and_log_pii_from_file_and_flags() {
        let dir = std::env::temp_dir().join(format!("natter-cfg-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(
            &p,
            "turn-user-quota = 5\nturn-total-quota = 50\nturn-bandwidth = 100000\n\
             turn-unauth-rate = 20\nlog-pii = true\n",
        )
        .unwrap();
        let file = RawConfig::from_file(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let c = file.clone().build().unwrap();
        assert_eq!(
            (c.turn_user_quota, c.turn_total_quota, c.turn_bandwidth),
            (5, 50, 100_000)
        );
        assert_eq!((c.turn_unauth_rate, c.log_pii), (20, true));
        let flags = RawConfig {
            turn_user_quota: Some(7),
            ..Default::default()
        };
        let c = file.merge(flags).build().unwrap();
        assert_eq!((c.turn_user_quota, c.turn_total_quota), (7, 50));
        let d = RawConfig::default().build().unwrap();
        assert_eq!((d.turn_user_quota, d.turn_total_quota), (1000, 20_000));
        assert_eq!(
            (d.turn_bandwidth, d.turn_unauth_rate, d.log_pii),
            (2_500_000, 200, false)
        );
    }

    #[test]
    fn bad_turn_limits_name_the_key_and_the_range() {
        let cases = [
            (
                RawConfig {
                    turn_user_quota: Some(0),
                    ..Default::default()
                },
                "--turn-user-quota",
            ),
            (
                RawConfig {
                    turn_total_quota: Some(1 << 40),
                    ..Default::default()
                },
                "--turn-total-quota",
            ),
            (
                RawConfig {
                    turn_bandwidth: Some(100),
                    ..Default::default()
                },
                "--turn-bandwidth",
            ),
            (
                RawConfig {
                    turn_unauth_rate: Some(0),
                    ..Default::default()
                },
                "--turn-unauth-rate",
            ),
        ];
        for (raw, key) in cases {
            let e = raw.build().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
            assert!(e.contains("expected"), "{e}");
        }
    }

    #[test]
    fn sip_digest_offers_parse_and_a_bad_one_names_the_choices() {
        use natter_sip::auth::DigestOffer;
        let with = |v: &str| {
            RawConfig {
                sip_digest: Some(v.into()),
                ..RawConfig::default()
            }
            .build()
        };
        assert_eq!(
            RawConfig::default().build().unwrap().sip_digest,
            DigestOffer::Md5AndSha256
        );
        for (v, want) in [
            ("md5", DigestOffer::Md5),
            ("SHA-256", DigestOffer::Sha256),
            ("sha-256, md5", DigestOffer::Sha256AndMd5),
            ("md5,sha-256", DigestOffer::Md5AndSha256),
        ] {
            assert_eq!(with(v).unwrap().sip_digest, want, "{v}");
        }
        let err = with("sha1").unwrap_err().to_string();
        assert!(
            err.contains("--sip-digest") && err.contains("md5,sha-256 (the default)"),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = std::env::temp_dir().join(format!("natter-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, "turn = \"off\"\nturnn = \"x\"\n").unwrap();
        let e = RawConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("turnn"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stun_alt_needs_distinct_ip_and_port() {
        let base = || RawConfig {
            turn: Some("192.0.2.1:3478".into()),
            ..Default::default()
        };
        assert!(RawConfig {
            stun_alt: Some("192.0.2.1:3479".into()),
            ..base()
        }
        .build()
        .is_err());
        assert!(RawConfig {
            stun_alt: Some("192.0.2.2:3478".into()),
            ..base()
        }
        .build()
        .is_err());
        assert!(RawConfig {
            stun_alt: Some("192.0.2.2:3479".into()),
            ..base()
        }
        .build()
        .is_ok());
    }
}
