//! The values a [`super::MediaSession`] hands out: datagrams to send, events,
//! the path a call takes and transport figures.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::CandidateKind;

/// A datagram or stream frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOut {
    /// From the media socket to `to`.
    Udp { to: SocketAddr, bytes: Vec<u8> },
    /// To the TURN server over its transport (the media socket for UDP).
    Turn(Vec<u8>),
}

/// ICE candidate types, as in the stats file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateType {
    Host,
    Srflx,
    Prflx,
    Relay,
}

impl CandidateType {
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::Srflx => "srflx",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
        }
    }

    pub(super) fn of(kind: CandidateKind) -> Self {
        match kind {
            CandidateKind::Host => CandidateType::Host,
            CandidateKind::ServerReflexive => CandidateType::Srflx,
            CandidateKind::PeerReflexive => CandidateType::Prflx,
            CandidateKind::Relayed => CandidateType::Relay,
        }
    }
}

/// The pair ICE chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo {
    /// True when either side is a relay candidate.
    pub relayed: bool,
    pub local: CandidateType,
    pub remote: CandidateType,
    pub local_addr: SocketAddr,
    pub remote_addr: SocketAddr,
}

impl PathInfo {
    pub fn path_str(&self) -> &'static str {
        if self.relayed {
            "relay"
        } else {
            "direct"
        }
    }
}

/// What the session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// Candidates are ready: make or answer the offer now.
    Gathered,
    /// ICE and DTLS are up; voice can flow.
    Connected,
    /// The nominated pair changed or became known.
    Path(PathInfo),
    /// ICE lost the path (consent failed).
    Disconnected,
    /// The DTLS handshake failed: no keys, so no voice (reported once).
    EncryptionFailed(String),
    /// After an ICE restart: ICE is up again and voice arrived over this pair.
    Restored(PathInfo),
    /// A voice frame from the far end.
    Voice {
        seq: u16,
        rtp_ts: u32,
        payload: Vec<u8>,
    },
    /// Periodic transport stats.
    Stats(TransportStats),
}

/// Transport figures from str0m's stats events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TransportStats {
    pub rtt: Option<Duration>,
    /// Incoming loss since the previous stats event (0..1).
    pub ingress_loss: Option<f32>,
    /// RTP interarrival jitter in clock ticks.
    pub jitter_ticks: u32,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// What the far end's RTCP receiver reports say of our stream: loss
    /// since its previous report (0..1) and its interarrival jitter in clock
    /// ticks. `None` until the first report.
    pub egress_loss: Option<f32>,
    pub egress_jitter_ticks: Option<u32>,
}
