//! No plaintext RTP on the wire, proven in the lab.
//!
//! A call between two cone NATs, once direct and once through the relay
//! (`--force-relay`), with `tcpdump` capturing every UDP datagram on the caller's
//! NAT uplink (both directions of the caller's media, and its TURN traffic). The
//! capture is then demultiplexed as RFC 7983 says (first byte: 0–3 STUN, 20–63
//! DTLS, 64–79 TURN ChannelData, 128–191 RTP/RTCP; TURN Send/Data indications and
//! ChannelData are unwrapped and their contents demultiplexed again) and must show:
//!
//! * nothing but STUN, DTLS, SRTP/SRTCP and TURN framing around those;
//! * DTLS handshake records in both directions (the keys were agreed on this path);
//! * SRTP from the caller in quantity, and not one of the Opus frames the caller's
//!   encoder made from the known input anywhere in any datagram. The encoder is
//!   deterministic, so were SRTP switched off each RTP payload would be one of
//!   those frames byte for byte: `checks_catch_plaintext_rtp` proves the search
//!   finds them, plain or inside TURN framing.
//!
//! Needs root and `tcpdump`; otherwise the lab tests skip through `natter_lab::skip`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::serve_in_lab;
use natter_lab::testing::TempDir;
use natter_lab::{Host, Lab, LabProcess, NatKind};
use natter_phone::media::wav::{read_wav_at, WavWriter};
use natter_phone::media::{Codec, EncoderSettings};
use natter_phone::voice::{VoiceTx, OPUS_RATE};
use serde_json::Value;

mod common;

const NATTER: &str = env!("CARGO_BIN_EXE_natter");

#[test]
fn lab_capture_direct_call_carries_only_srtp() {
    capture_call("lab_capture_direct", false);
}

#[test]
fn lab_capture_relayed_call_carries_only_srtp() {
    capture_call("lab_capture_relay", true);
}

/// The check itself: plaintext voice is found, plain or wrapped by TURN, and
/// traffic RFC 7983 does not know is reported.
#[test]
fn checks_catch_plaintext_rtp() {
    let frames = known_frames(&speech(2.0));
    let me = SocketAddr::from(([203, 0, 113, 2], 40000));
    let peer = SocketAddr::from(([203, 0, 113, 6], 50000));
    let turn = SocketAddr::from(([192, 0, 2, 10], 3478));
    let rtp = |frame: &[u8]| {
        let mut p = vec![0x80, 111, 0, 7, 0, 0, 3, 192, 0xde, 0xad, 0xbe, 0xef];
        p.extend_from_slice(frame);
        p
    };
    // Plain RTP straight to the peer.
    let plain = Datagram::new(me, peer, rtp(&frames[20]));
    let a = analyse(&[plain], me.ip(), &frames);
    assert_eq!(a.plaintext_frames, 1, "{a:?}");
    // The same inside TURN ChannelData to the relay.
    let inner = rtp(&frames[30]);
    let mut chan = vec![0x40, 0x00, 0, inner.len() as u8];
    chan.extend_from_slice(&inner);
    let a = analyse(&[Datagram::new(me, turn, chan)], me.ip(), &frames);
    assert_eq!(a.plaintext_frames, 1, "{a:?}");
    assert_eq!(a.srtp_from_caller, 1, "{a:?}");
    // And inside a Send indication's DATA attribute.
    let mut send = vec![0x00, 0x16, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    send.extend_from_slice(&[7; 12]);
    let padded = inner.len().div_ceil(4) * 4;
    send.extend_from_slice(&[0x00, 0x13, 0, inner.len() as u8]);
    send.extend_from_slice(&inner);
    send.resize(20 + 4 + padded, 0);
    send[3] = (4 + padded) as u8;
    let a = analyse(&[Datagram::new(me, turn, send)], me.ip(), &frames);
    assert_eq!(a.plaintext_frames, 1, "{a:?}");
    // Random bytes in the RTP range (what SRTP looks like) are not a frame.
    let mut x = 99u32;
    let noise: Vec<u8> = (0..120)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 24) as u8
        })
        .collect();
    let a = analyse(&[Datagram::new(me, peer, rtp(&noise))], me.ip(), &frames);
    assert_eq!((a.plaintext_frames, a.srtp_from_caller), (0, 1), "{a:?}");
    // A first byte RFC 7983 assigns to nothing we speak.
    let a = analyse(&[Datagram::new(me, peer, vec![5; 40])], me.ip(), &frames);
    assert_eq!(a.unknown.len(), 1, "{a:?}");
}

// ---- the lab call ------------------------------------------------------------

fn capture_call(test: &str, relay: bool) {
    if let Err(why) = natter_lab::lab_available() {
        return natter_lab::skip(test, &why);
    }
    if natter_lab::which("tcpdump").is_none() {
        return natter_lab::skip(test, "tcpdump is not installed (apt-get install tcpdump)");
    }
    let mut lab = Lab::new(test).expect("build the lab");
    let dir = TempDir::new(test);
    let mut server = start_server(&lab, dir.path());
    let n1 = lab.add_nat(NatKind::PortRestrictedCone).expect("NAT 1");
    let n2 = lab.add_nat(NatKind::PortRestrictedCone).expect("NAT 2");
    let a = lab.add_host_behind(&n1).expect("caller host");
    let b = lab.add_host_behind(&n2).expect("callee host");

    let pcap = dir.path().join("caller-uplink.pcap");
    let pcap_s = pcap.to_str().expect("UTF-8 temp path");
    let mut tcpdump = n1
        .router()
        .spawn(
            "tcpdump",
            &[
                "-i", "wan", "-U", "-n", "-s", "0", "-Z", "root", "-w", pcap_s, "udp",
            ],
        )
        .expect("start tcpdump");
    tcpdump
        .wait_for_output("listening on", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("tcpdump did not start: {e}"));

    let stats = call(&a, &b, dir.path(), relay);
    std::thread::sleep(Duration::from_millis(300)); // the last datagrams reach the file
    tcpdump.terminate().expect("stop tcpdump");
    let _ = tcpdump.wait_timeout(Duration::from_secs(5));
    server.kill();

    let want = if relay { "relay" } else { "direct" };
    assert_eq!(stats["path"], want, "caller stats: {stats}");
    let bytes = std::fs::read(&pcap).expect("read the capture");
    let datagrams = parse_pcap(&bytes).expect("a pcap file from tcpdump");
    let mic = read_wav_at(dir.path().join("talk.wav"), OPUS_RATE)
        .expect("talk.wav")
        .samples;
    let frames = known_frames(&mic);
    assert!(frames.len() > 50, "only {} reference frames", frames.len());
    let a = analyse(&datagrams, n1.wan_ip().into(), &frames);
    eprintln!(
        "{test}: {} datagrams captured on the caller's uplink: {a:?}",
        datagrams.len()
    );
    assert!(
        a.unknown.is_empty(),
        "not STUN/DTLS/SRTP/TURN: {:?}",
        a.unknown
    );
    assert!(
        a.dtls_handshake_out > 0 && a.dtls_handshake_in > 0,
        "no DTLS handshake seen both ways: {a:?}"
    );
    assert!(
        a.srtp_from_caller >= 75,
        "too little SRTP from the caller: {a:?}"
    );
    if relay {
        assert!(
            a.turn_wrapped > 0,
            "a relayed call without TURN framing: {a:?}"
        );
    }
    assert_eq!(a.plaintext_frames, 0, "plaintext Opus on the wire: {a:?}");
}

/// The Opus frames the caller's encoder makes from `mic` (the settings
/// `natter phone` uses: defaults with DTX): the encoder is deterministic.
fn known_frames(mic: &[i16]) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let settings = EncoderSettings {
        dtx: true,
        ..EncoderSettings::default()
    };
    let mut tx =
        VoiceTx::new(start, Codec::Opus, &settings, mic.to_vec(), 0).expect("Opus encoder");
    let n = mic.len() as u64 * 50 / u64::from(OPUS_RATE);
    (0..n)
        .filter_map(|i| tx.handle_timeout(start + Duration::from_millis(20 * i)))
        .map(|(_, f)| f)
        .filter(|f| f.len() >= 16) // shorter frames could match by chance
        .collect()
}

// ---- demultiplexing (RFC 7983) -----------------------------------------------

#[derive(Debug, Clone)]
struct Datagram {
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

impl Datagram {
    fn new(from: SocketAddr, to: SocketAddr, payload: Vec<u8>) -> Self {
        Datagram { from, to, payload }
    }
}

#[derive(Debug, Default)]
struct Analysis {
    stun: usize,
    turn_wrapped: usize,
    dtls_handshake_out: usize,
    dtls_handshake_in: usize,
    dtls_other: usize,
    srtp_from_caller: usize,
    srtp_to_caller: usize,
    srtcp: usize,
    plaintext_frames: usize,
    unknown: Vec<String>,
}

/// Classify every datagram; `caller` is the caller's (NATed) address.
fn analyse(datagrams: &[Datagram], caller: std::net::IpAddr, frames: &[Vec<u8>]) -> Analysis {
    let mut a = Analysis::default();
    for d in datagrams {
        let out = d.from.ip() == caller;
        classify(&d.payload, out, &mut a, d, 0);
        for f in frames {
            if d.payload.windows(f.len()).any(|w| w == f.as_slice()) {
                a.plaintext_frames += 1;
            }
        }
    }
    a
}

fn classify(p: &[u8], out: bool, a: &mut Analysis, d: &Datagram, depth: u8) {
    let unknown = |a: &mut Analysis, why: &str| {
        a.unknown
            .push(format!("{} -> {}: {why} ({} bytes)", d.from, d.to, p.len()))
    };
    match p.first().copied() {
        Some(0..=3) => {
            a.stun += 1;
            if let Some(inner) = stun_data(p) {
                a.turn_wrapped += 1;
                if depth == 0 {
                    classify(inner, out, a, d, 1);
                }
            }
        }
        Some(20..=63) => {
            // DTLS record: content type 22 is a handshake.
            if p[0] == 22 {
                if out {
                    a.dtls_handshake_out += 1;
                } else {
                    a.dtls_handshake_in += 1;
                }
            } else {
                a.dtls_other += 1;
            }
        }
        Some(64..=79) if depth == 0 && p.len() >= 4 => {
            let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
            match p.get(4..4 + len) {
                Some(inner) => {
                    a.turn_wrapped += 1;
                    classify(inner, out, a, d, 1);
                }
                None => unknown(a, "truncated ChannelData"),
            }
        }
        Some(128..=191) if p.len() >= 12 => {
            // RTCP packet types 192–223 share the range (RFC 5761).
            if (192..=223).contains(&p[1]) {
                a.srtcp += 1;
            } else if out {
                a.srtp_from_caller += 1;
            } else {
                a.srtp_to_caller += 1;
            }
        }
        Some(b) => unknown(a, &format!("first byte {b}")),
        None => unknown(a, "empty"),
    }
}

/// The DATA attribute of a TURN Send or Data indication.
fn stun_data(p: &[u8]) -> Option<&[u8]> {
    let method = u16::from_be_bytes([*p.first()?, *p.get(1)?]);
    if method != 0x0016 && method != 0x0017 {
        return None;
    }
    let mut at = 20;
    while at + 4 <= p.len() {
        let kind = u16::from_be_bytes([p[at], p[at + 1]]);
        let len = usize::from(u16::from_be_bytes([p[at + 2], p[at + 3]]));
        let value = p.get(at + 4..at + 4 + len)?;
        if kind == 0x0013 {
            return Some(value);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

// ---- pcap --------------------------------------------------------------------

/// UDP datagrams from a classic pcap file (Ethernet or Linux cooked capture).
fn parse_pcap(b: &[u8]) -> Result<Vec<Datagram>, String> {
    let word = |at: usize, le: bool| -> Option<u32> {
        let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        })
    };
    let le = match b.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) | Some([0x4d, 0x3c, 0xb2, 0xa1]) => true,
        Some([0xa1, 0xb2, 0xc3, 0xd4]) | Some([0xa1, 0xb2, 0x3c, 0x4d]) => false,
        _ => return Err("not a pcap file".into()),
    };
    let link = word(20, le).ok_or("short header")?;
    let l2 = match link {
        1 => 14,   // Ethernet
        113 => 16, // Linux cooked
        276 => 20, // Linux cooked v2
        other => return Err(format!("link type {other}")),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let caplen = word(at + 8, le).ok_or("short record")? as usize;
        let frame = b.get(at + 16..at + 16 + caplen).ok_or("truncated record")?;
        at += 16 + caplen;
        if let Some(d) = udp_of(frame.get(l2..).unwrap_or_default()) {
            out.push(d);
        }
    }
    Ok(out)
}

fn udp_of(ip: &[u8]) -> Option<Datagram> {
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let addr = |at: usize| {
        Some(Ipv4Addr::new(
            *ip.get(at)?,
            ip[at + 1],
            ip[at + 2],
            ip[at + 3],
        ))
    };
    let udp = ip.get(ihl..)?;
    let port = |at: usize| Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?]));
    let len = usize::from(port(4)?);
    Some(Datagram {
        from: SocketAddrV4::new(addr(12)?, port(0)?).into(),
        to: SocketAddrV4::new(addr(16)?, port(2)?).into(),
        payload: udp.get(8..len.max(8))?.to_vec(),
    })
}

// ---- lab helpers ---------------------------------------------------------------

fn start_server(lab: &Lab, dir: &Path) -> LabProcess {
    let users = [("alice", "alice-pw-1"), ("bob", "bob-pw-2")];
    let p = serve_in_lab(lab, &dir.join("data"), &users, false);
    let mut w = WavWriter::create(dir.join("talk.wav"), 16_000).expect("talk.wav");
    w.write(&speech(3.0)).expect("talk.wav");
    w.finish().expect("talk.wav");
    p
}

/// Bob answers on `callee`, alice calls from `caller` and plays talk.wav.
/// Returns the caller's stats.
fn call(caller: &Host, callee: &Host, dir: &Path, relay: bool) -> Value {
    let srv = "192.0.2.10";
    let p = |n: &str| dir.join(n).to_str().expect("UTF-8").to_owned();
    let (rec, cs, talk) = (p("heard.wav"), p("caller.json"), p("talk.wav"));
    let mut answer = callee
        .spawn(
            NATTER,
            &[
                "phone",
                "--server",
                srv,
                "--user",
                "bob",
                "--password",
                "bob-pw-2",
                "--answer",
                "--record",
                &rec,
                "--timeout",
                "20",
            ],
        )
        .expect("start the callee");
    answer
        .wait_for_output("registered as", Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("callee did not register: {e}\n{}", answer.stderr()));
    let mut args = vec![
        "phone",
        "--server",
        srv,
        "--user",
        "alice",
        "--password",
        "alice-pw-1",
        "--call",
        "bob",
        "--play",
        &talk,
        "--stats",
        &cs,
    ];
    if relay {
        args.push("--force-relay");
    }
    let out = caller
        .run(NATTER, &args, Duration::from_secs(40))
        .expect("caller ran");
    assert!(
        out.status.success(),
        "caller failed:\n{}\ncallee:\n{}",
        String::from_utf8_lossy(&out.stderr),
        answer.stderr()
    );
    let _ = answer.wait_timeout(Duration::from_secs(10));
    serde_json::from_str(&std::fs::read_to_string(&cs).expect("stats file")).expect("JSON")
}

/// Speech-like signal at 16 kHz: gliding harmonics, syllable envelope.
fn speech(seconds: f64) -> Vec<i16> {
    let rate = 16_000.0;
    let mut phase = 0.0f64;
    (0..(seconds * rate) as usize)
        .map(|i| {
            let t = i as f64 / rate;
            phase += (140.0 + 40.0 * (t * 2.3).sin()) / rate;
            let env = (0.5 - 0.5 * (t * std::f64::consts::TAU * 3.0).cos()).powf(1.5);
            let s: f64 = (1..=8)
                .map(|h| (phase * f64::from(h) * std::f64::consts::TAU).sin() / f64::from(h))
                .sum();
            (s * env * 7000.0) as i16
        })
        .collect()
}
