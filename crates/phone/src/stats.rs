//! The call record written with `--stats FILE.json`.

use std::time::{Duration, Instant};

use serde::Serialize;

/// One call's figures (see `docs/phone.md` for each field's definition).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallStats {
    /// "direct" or "relay" (empty if media never connected).
    pub path: String,
    /// "host", "srflx", "prflx" or "relay".
    pub local_candidate: String,
    pub remote_candidate: String,
    /// Caller: INVITE sent → first voice packet; callee: 200 OK sent → first voice packet.
    pub setup_ms: Option<f64>,
    /// ICE consent round trip on the nominated pair.
    pub rtt_ms: Option<f64>,
    /// Voice packets lost (after the jitter buffer's wait), percent.
    pub loss_pct: f64,
    /// Interarrival jitter the jitter buffer measured.
    pub jitter_ms: f64,
    pub codec: String,
    /// Seconds since media connected.
    pub duration_s: f64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Media socket and TURN bytes: UDP payload + 28 per datagram (+40 per TCP frame).
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    /// Audio the listener heard as concealment.
    pub concealed_ms: f64,
    /// E-model (ITU-T G.107) estimate.
    pub mos: Option<f64>,
    /// The encoder's target bitrate now (bit/s): the rate policy lowers it
    /// when the far end reports congestion.
    pub send_bitrate_bps: u32,
    /// Opus in-band FEC on (turned on when the far end reports loss).
    pub fec: bool,
    /// Time spent in this call (from its start, so ICE checks and the DTLS
    /// handshake are in `cpu_rtp_ms`) in the parts the issue's "client CPU
    /// per call" names, in ms (see [`MediaCpu`]): reading the microphone and
    /// Opus encoding,
    pub cpu_encode_ms: f64,
    /// the jitter buffer, decoding and concealment,
    pub cpu_decode_ms: f64,
    /// and the media transport: RTP/RTCP with SRTP both ways, ICE consent and
    /// TURN framing (str0m and the TURN client). The socket calls, the async
    /// runtime and SIP are not in these three.
    pub cpu_rtp_ms: f64,
}

/// Where one call's media time goes: the clock read around each piece of
/// media work. It is instrumentation, never an input to a decision, so it
/// reads the monotonic clock itself instead of the `now` the sans-IO core is
/// given. Wall time inside the piece, so an upper bound on its CPU time (a
/// preemption in the middle counts); `Instant` costs a vDSO read, where a
/// thread-CPU clock would cost a system call per read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaCpu {
    pub encode: Duration,
    pub decode: Duration,
    pub rtp: Duration,
}

impl MediaCpu {
    /// Copies the totals into `stats` (ms).
    pub fn fill(&self, stats: &mut CallStats) {
        stats.cpu_encode_ms = self.encode.as_secs_f64() * 1000.0;
        stats.cpu_decode_ms = self.decode.as_secs_f64() * 1000.0;
        stats.cpu_rtp_ms = self.rtp.as_secs_f64() * 1000.0;
    }
}

/// Runs `f`, adding the time it took to `total`.
pub fn timed<R>(total: &mut Duration, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let out = f();
    *total += start.elapsed();
    out
}

impl CallStats {
    /// Media time (encode + decode + transport, ms) so far in the call.
    pub fn cpu_media_ms(&self) -> f64 {
        self.cpu_encode_ms + self.cpu_decode_ms + self.cpu_rtp_ms
    }
}
