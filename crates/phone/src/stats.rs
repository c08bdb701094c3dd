//! The call record written with `--stats FILE.json`.

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
}
