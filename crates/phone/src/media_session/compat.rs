//! SDP for plain SIP phones, which are not WebRTC stacks.
//!
//! **Outgoing: a real default candidate.** str0m writes the trickle ICE
//! placeholder `m=audio 9` / `c=IN IP4 0.0.0.0` (RFC 8840). An ICE agent
//! that predates trickle (baresip 1.0) looks for that address among our
//! candidates, does not find it, answers `a=ice-mismatch` and gives up ICE.
//! We gather every candidate before we send SDP, so the m/c line can carry a
//! real one, as RFC 8839 §5.1 has it: the relay candidate, else the
//! server-reflexive one, else the host one.
//!
//! **Incoming: `a=mid` and `a=group:BUNDLE` where the peer writes none.**
//!
//! str0m (like every WebRTC stack) names each media section by its `a=mid`,
//! expects the sections grouped with BUNDLE, and refuses SDP without. Plain
//! SIP phones that do not bundle (baresip 1.0, for one) leave both out, which
//! RFC 3264 allows: an answer's m-lines match the offer's by position. So a
//! section without a mid is given one before str0m reads it: in an answer,
//! the mid of our offer's section at the same position; in an offer, its
//! position ("0", "1", …), which str0m's answer then names. A session without
//! a BUNDLE group gets one naming every section; with one audio section (all
//! natter offers) that bundles nothing, and the media flows on the one
//! transport ICE picks, as it would unbundled.

use std::borrow::Cow;

/// `sdp` with `a=mid:NAME` added to every media section that has none (the
/// `k`-th section gets `name(k)`) and a BUNDLE group of all sections when the
/// session has none. Unchanged (borrowed) when nothing is missing.
pub(super) fn with_mids(sdp: &str, name: impl Fn(usize) -> String) -> Cow<'_, str> {
    let sections = split(sdp);
    let grouped = has(sections[0], "a=group:BUNDLE");
    if sections.len() == 1 || (grouped && sections.iter().skip(1).all(|s| mid_of(s).is_some())) {
        return Cow::Borrowed(sdp);
    }
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mids: Vec<String> = sections[1..]
        .iter()
        .enumerate()
        .map(|(k, s)| mid_of(s).map_or_else(|| name(k), str::to_owned))
        .collect();
    let mut out = String::with_capacity(sdp.len() + 32 * sections.len());
    let add = |out: &mut String, section: &str, line: &str| {
        out.push_str(section);
        if !section.is_empty() && !section.ends_with('\n') {
            out.push_str(eol);
        }
        out.push_str(line);
        out.push_str(eol);
    };
    if grouped {
        out.push_str(sections[0]);
    } else {
        add(
            &mut out,
            sections[0],
            &format!("a=group:BUNDLE {}", mids.join(" ")),
        );
    }
    for (section, mid) in sections[1..].iter().zip(&mids) {
        match mid_of(section) {
            Some(_) => out.push_str(section),
            None => add(&mut out, section, &format!("a=mid:{mid}")),
        }
    }
    Cow::Owned(out)
}

/// `sdp` (ours) with each media section's placeholder port and address
/// replaced by its default candidate's. Sections without a UDP candidate,
/// or with a real address already, are left as they are.
pub(super) fn with_default_candidates(sdp: String) -> String {
    let sections = split(&sdp);
    let mut out = String::with_capacity(sdp.len() + 32);
    out.push_str(sections[0]);
    for section in &sections[1..] {
        match default_candidate(section) {
            Some((ip, port)) => {
                for line in section.split_inclusive('\n') {
                    let body = line.trim_end_matches(['\r', '\n']);
                    let end = &line[body.len()..];
                    match placeholder_fix(body, ip, port) {
                        Some(fixed) => {
                            out.push_str(&fixed);
                            out.push_str(end);
                        }
                        None => out.push_str(line),
                    }
                }
            }
            None => out.push_str(section),
        }
    }
    out
}

/// The section's best default: (address, port) of its relay, else srflx,
/// else host UDP candidate of component 1.
fn default_candidate(section: &str) -> Option<(&str, &str)> {
    let mut best: Option<(usize, &str, &str)> = None;
    for line in section.lines() {
        let Some(c) = line.trim().strip_prefix("a=candidate:") else {
            continue;
        };
        // foundation component transport priority address port typ TYPE …
        let f: Vec<&str> = c.split_whitespace().collect();
        if f.len() < 8 || f[1] != "1" || !f[2].eq_ignore_ascii_case("udp") || f[6] != "typ" {
            continue;
        }
        let Some(rank) = ["host", "srflx", "relay"].iter().position(|t| *t == f[7]) else {
            continue;
        };
        if best.is_none_or(|(r, _, _)| rank > r) {
            best = Some((rank, f[4], f[5]));
        }
    }
    best.map(|(_, ip, port)| (ip, port))
}

/// `m=KIND 9 …` → the port; `c=IN IP4 0.0.0.0` (or `IP6 ::`) → the address.
fn placeholder_fix(line: &str, ip: &str, port: &str) -> Option<String> {
    if let Some(m) = line.strip_prefix("m=") {
        let mut f = m.splitn(3, ' ');
        let (kind, p, rest) = (f.next()?, f.next()?, f.next()?);
        return (p == "9").then(|| format!("m={kind} {port} {rest}"));
    }
    if line == "c=IN IP4 0.0.0.0" || line == "c=IN IP6 ::" {
        let family = if ip.contains(':') { "IP6" } else { "IP4" };
        return Some(format!("c=IN {family} {ip}"));
    }
    None
}

/// The session part, then one slice per `m=` section (each with its line ends).
fn split(sdp: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    let mut at = 0;
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") && at > 0 {
            cuts.push(at);
        }
        at += line.len();
    }
    cuts.push(sdp.len());
    cuts.windows(2).map(|w| &sdp[w[0]..w[1]]).collect()
}

fn has(section: &str, prefix: &str) -> bool {
    section.lines().any(|l| l.trim_start().starts_with(prefix))
}

fn mid_of(section: &str) -> Option<&str> {
    section
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_address_becomes_the_best_candidate() {
        let ours = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\n\
            a=candidate:1 1 udp 2130706175 10.0.0.5 41787 typ host\r\n\
            a=candidate:2 1 udp 1694498815 203.0.113.7 5000 typ srflx raddr 10.0.0.5 rport 41787\r\n\
            a=candidate:3 1 udp 37748479 192.0.2.9 49986 typ relay raddr 203.0.113.7 rport 5000\r\n\
            a=candidate:4 2 udp 37748478 192.0.2.9 49987 typ relay\r\na=mid:0\r\n";
        let fixed = with_default_candidates(ours.to_string());
        assert!(
            fixed.contains("\r\nm=audio 49986 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 192.0.2.9\r\n")
        );
        // The session-level line is not the media's; candidates are untouched.
        assert!(fixed.starts_with("v=0\r\nc=IN IP4 0.0.0.0\r\n"));
        assert_eq!(
            fixed.len(),
            ours.len() + "49986".len() - 1 + "192.0.2.9".len() - 7
        );
        // Without a relay: srflx; without either: host.
        let no_relay: String = ours
            .lines()
            .filter(|l| !l.contains("relay"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(with_default_candidates(no_relay).contains("m=audio 5000 "));
        let host_only: String = ours
            .lines()
            .filter(|l| !l.contains("relay") && !l.contains("srflx"))
            .map(|l| format!("{l}\n"))
            .collect();
        let fixed = with_default_candidates(host_only);
        assert!(fixed.contains("m=audio 41787 ") && fixed.contains("c=IN IP4 10.0.0.5"));
        // No candidates (nothing gathered): the placeholder stays.
        let none = "v=0\nm=audio 9 RTP/AVP 0\nc=IN IP4 0.0.0.0\n".to_string();
        assert_eq!(with_default_candidates(none.clone()), none);
    }

    const BARESIP_ANSWER: &str =
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n";

    #[test]
    fn missing_mids_and_group_are_added_and_present_ones_kept() {
        let fixed = with_mids(BARESIP_ANSWER, |k| ["0", "1"][k].to_string());
        let (session, media) = BARESIP_ANSWER.split_at(BARESIP_ANSWER.find("m=").unwrap());
        assert_eq!(
            fixed,
            format!("{session}a=group:BUNDLE 0\r\n{media}a=mid:0\r\n"),
            "each at the end of its part, with the SDP's line ends"
        );
        let two = "v=0\nm=audio 1 RTP/AVP 0\na=mid:a\nm=video 2 RTP/AVP 96\nb=AS:1";
        assert_eq!(
            with_mids(two, |k| k.to_string()),
            "v=0\na=group:BUNDLE a 1\nm=audio 1 RTP/AVP 0\na=mid:a\nm=video 2 RTP/AVP 96\nb=AS:1\na=mid:1\n"
        );
        let all = "v=0\na=group:BUNDLE x\nm=audio 1 RTP/AVP 0\na=mid:x\n";
        assert!(matches!(
            with_mids(all, |_| unreachable!()),
            Cow::Borrowed(_)
        ));
        // No media at all: nothing to name.
        assert!(matches!(
            with_mids("v=0\r\n", |_| unreachable!()),
            Cow::Borrowed(_)
        ));
    }
}
