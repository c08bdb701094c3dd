//! One call's media transport: str0m's ICE agent, DTLS-SRTP and RTP, with our
//! TURN client feeding it a relay candidate. Sans-IO.
//!
//! All UDP goes through one socket: the host candidate, the server-reflexive
//! candidate the TURN server reports, and the TURN traffic itself. The driver
//! hands datagrams from the TURN server to [`MediaSession::handle_turn`] (or, for
//! TURN over TCP/TLS, the stream frames) and every other datagram to
//! [`MediaSession::handle_udp`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use natter_media::Codec;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::turn_client::{TurnClient, TurnConfig, TurnEvent};
use crate::PhoneError;

mod compat;
mod restart;
mod types;

pub use types::{CandidateType, MediaEvent, MediaOut, PathInfo, TransportStats};

/// How many times in a row str0m may ask to run again at once before the
/// driver's next wake-up takes over (it normally asks once, after a write).
const IMMEDIATE_ROUNDS: usize = 4;

/// Media settings for one call.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The media socket's address with a specific IP (the host candidate).
    pub host: SocketAddr,
    /// The TURN server and our credentials; `None`: no relay, no srflx.
    pub turn: Option<TurnConfig>,
    /// Offer only the relay candidate.
    pub force_relay: bool,
    /// Codecs in order of preference. Default Opus, PCMU, PCMA.
    pub codecs: Vec<Codec>,
    /// How long to wait for the TURN allocation before offering without it. Default 2 s.
    pub gather_timeout: Duration,
}

impl MediaConfig {
    pub fn new(host: SocketAddr, turn: Option<TurnConfig>) -> Self {
        MediaConfig {
            host,
            turn,
            force_relay: false,
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
            gather_timeout: Duration::from_secs(2),
        }
    }
}

/// The media session of one call.
pub struct MediaSession {
    cfg: MediaConfig,
    rtc: Rtc,
    turn: Option<TurnClient>,
    relay: Option<SocketAddr>,
    gathered: bool,
    gather_deadline: Instant,
    pending_offer: Option<SdpPendingOffer>,
    /// The answer, held until our relay lets the far end in (see `accept_answer`).
    held_answer: Option<(SdpPendingOffer, SdpAnswer, Instant)>,
    mid: Option<Mid>,
    send: Option<(Pt, Codec)>,
    remote: Vec<(SocketAddr, CandidateType)>,
    rtc_timeout: Instant,
    out: VecDeque<MediaOut>,
    events: VecDeque<MediaEvent>,
    stats: TransportStats,
    connected: bool,
    /// The DTLS handshake failed (reported once as `EncryptionFailed`).
    dtls_failed: bool,
    /// The (local, remote) of the last DTLS/RTP datagram: the nominated pair.
    last_pair: Option<(SocketAddr, SocketAddr)>,
    /// Local candidates we added (host, srflx, relay), to retire them on a move.
    local_cands: Vec<Candidate>,
    /// Last datagram that str0m took from the far end (any of STUN, DTLS, RTP).
    last_rx: Instant,
    /// An ICE restart is under way: `Some(ice_up)` until voice flows again.
    restart: Option<bool>,
    /// The far end's current `a=ice-ufrag` (a new one in a re-offer is a restart).
    remote_ufrag: Option<String>,
    /// Counts SRTP/RTP packets str0m refused or ignored is not exposed; we count what it accepted.
    pub(crate) rtc_errors: u64,
}

impl MediaSession {
    /// Start gathering: host candidate now, relay (and srflx) when TURN answers.
    pub fn new(now: Instant, cfg: MediaConfig) -> Result<Self, PhoneError> {
        // RTCP every second (str0m's audio default is 5 s): with DTX or a silent
        // microphone it is what tells the far end the path is still alive.
        let mut rtc_cfg = RtcConfig::new()
            .clear_codecs()
            .set_stats_interval(Some(Duration::from_secs(1)))
            .set_rtcp_report_interval_audio(Duration::from_secs(1))
            // Voice goes to our jitter buffer as it arrives: it reorders,
            // conceals and uses FEC itself. str0m would otherwise hold
            // everything after a lost packet for up to 15 packets (300 ms)
            // and release it in a burst, too late to be played.
            .set_reordering_size_audio(0)
            // RTP header extensions: audio level and MID only. str0m's standard
            // set adds transport-wide sequence numbers, whose feedback (TWCC,
            // an SRTCP packet every 100 ms each way) only serves bandwidth
            // estimation, which a voice call at a fixed rate does not run, and
            // absolute send time (same) and video extensions.
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(4, Extension::RtpMid);
        for c in &cfg.codecs {
            rtc_cfg = match c {
                Codec::Opus => rtc_cfg.enable_opus(true, false),
                Codec::Pcmu => rtc_cfg.enable_pcmu(true, false),
                Codec::Pcma => rtc_cfg.enable_pcma(true, false),
            };
        }
        // Connectivity checks retransmit from 50 ms (str0m's default is 250 ms):
        // checks that race the answer (dropped until the TURN permission exists)
        // are repeated quickly, keeping setup well under 300 ms.
        rtc_cfg.set_initial_stun_rto(Duration::from_millis(50));
        let mut rtc = rtc_cfg.build(now);
        let host = host_candidate(&cfg)?;
        if let Some(c) = &host {
            rtc.add_local_candidate(c.clone());
        }
        let turn = cfg.turn.clone().map(TurnClient::new);
        let mut s = MediaSession {
            gather_deadline: now + cfg.gather_timeout,
            cfg,
            rtc,
            turn,
            relay: None,
            gathered: false,
            pending_offer: None,
            held_answer: None,
            mid: None,
            send: None,
            remote: Vec::new(),
            rtc_timeout: now,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: TransportStats::default(),
            connected: false,
            dtls_failed: false,
            last_pair: None,
            local_cands: Vec::new(),
            last_rx: now,
            restart: None,
            remote_ufrag: None,
            rtc_errors: 0,
        };
        if let Some(c) = host {
            s.local_cands.push(c);
        }
        match s.turn.as_mut() {
            Some(t) => t.allocate(now),
            None => s.finish_gathering(),
        }
        s.drain_turn(now);
        s.drain_rtc(now);
        Ok(s)
    }

    pub fn is_gathered(&self) -> bool {
        self.gathered
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Our local candidate types, for "no media path" messages.
    pub fn local_candidate_types(&self) -> Vec<CandidateType> {
        let mut v = Vec::new();
        if !self.cfg.force_relay {
            v.push(CandidateType::Host);
        }
        if let Some(t) = &self.turn {
            if t.mapped().is_some() && !self.cfg.force_relay {
                v.push(CandidateType::Srflx);
            }
        }
        if self.relay.is_some() {
            v.push(CandidateType::Relay);
        }
        v
    }

    /// The remote candidate types from the far end's SDP.
    pub fn remote_candidate_types(&self) -> Vec<CandidateType> {
        let mut v: Vec<CandidateType> = self.remote.iter().map(|r| r.1).collect();
        v.dedup();
        v
    }

    /// The offer (caller). Call after [`MediaEvent::Gathered`].
    pub fn create_offer(&mut self, now: Instant) -> Result<String, PhoneError> {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| PhoneError::Media("str0m made no offer".into()))?;
        self.mid = Some(mid);
        self.pending_offer = Some(pending);
        self.drain_rtc(now);
        Ok(compat::with_default_candidates(offer.to_sdp_string()))
    }

    /// Answer the far end's offer (callee).
    pub fn accept_offer(&mut self, now: Instant, sdp: &str) -> Result<String, PhoneError> {
        let sdp = &*self.bundled(sdp);
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| PhoneError::BadSdp(e.to_string()))?;
        self.learn_remote(sdp, now);
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| PhoneError::BadSdp(e.to_string()))?;
        self.drain_rtc(now);
        // str0m announces the offered media (MediaAdded) only once connected;
        // the mid is in the offer.
        if self.mid.is_none() {
            self.mid = audio_mid(sdp);
        }
        self.resolve_send();
        if self.send.is_none() {
            return Err(PhoneError::NoCommonCodec);
        }
        Ok(compat::with_default_candidates(answer.to_sdp_string()))
    }

    /// Apply the far end's answer (caller, or either side after its own re-offer).
    pub fn accept_answer(&mut self, now: Instant, sdp: &str) -> Result<(), PhoneError> {
        let sdp = &*self.bundled(sdp);
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| PhoneError::BadSdp(e.to_string()))?;
        let pending = self
            .pending_offer
            .take()
            .ok_or_else(|| PhoneError::BadSdp("an answer without an offer".into()))?;
        if self.restart.is_some() {
            self.remote.clear(); // the answer lists every candidate the far end has now
        }
        self.learn_remote(sdp, now);
        // With a relay, ICE starts once the far end may reach it: the callee's
        // checks to our relay would be dropped until our permissions exist, and
        // a DTLS hello sent before the callee's ICE is up is lost for a whole
        // DTLS retransmit second.
        let waiting = self.turn.as_ref().is_some_and(|t| t.permissions_pending());
        if waiting {
            self.held_answer = Some((pending, answer, now + PERMISSION_WAIT));
            return Ok(());
        }
        self.apply_answer(now, pending, answer)
    }

    fn apply_answer(
        &mut self,
        now: Instant,
        pending: SdpPendingOffer,
        answer: SdpAnswer,
    ) -> Result<(), PhoneError> {
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| PhoneError::BadSdp(e.to_string()))?;
        self.drain_rtc(now);
        Ok(())
    }

    /// Apply a held answer once permissions are in (or the wait is over).
    fn release_answer(&mut self, now: Instant) {
        let ready = match &self.held_answer {
            Some((_, _, deadline)) => {
                now >= *deadline || !self.turn.as_ref().is_some_and(|t| t.permissions_pending())
            }
            None => false,
        };
        if !ready {
            return;
        }
        if let Some((pending, answer, _)) = self.held_answer.take() {
            if let Err(e) = self.apply_answer(now, pending, answer) {
                tracing::warn!(error = %e, "the held answer was refused");
                self.rtc_errors += 1;
            }
        }
    }

    /// The codec voice is sent with, once negotiated.
    pub fn send_codec(&mut self) -> Option<Codec> {
        self.resolve_send();
        self.send.map(|s| s.1)
    }

    /// Send one encoded voice frame with RTP timestamp `rtp_ts`.
    pub fn send_voice(&mut self, now: Instant, rtp_ts: u32, payload: Vec<u8>) {
        self.resolve_send();
        let (Some(mid), Some((pt, codec))) = (self.mid, self.send) else {
            return;
        };
        if !self.connected {
            return;
        }
        let freq = match codec {
            Codec::Opus => Frequency::FORTY_EIGHT_KHZ,
            Codec::Pcmu | Codec::Pcma => Frequency::EIGHT_KHZ,
        };
        let time = MediaTime::new(u64::from(rtp_ts), freq);
        if let Some(w) = self.rtc.writer(mid) {
            if w.write(pt, now, time, payload).is_err() {
                self.rtc_errors += 1;
            } else {
                self.stats.packets_sent += 1;
            }
        }
        self.drain_rtc(now);
    }

    /// A datagram on the media socket from anyone but the TURN server.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.rtc_receive(now, from, self.cfg.host, bytes);
    }

    /// A datagram (UDP) or frame (TCP/TLS) from the TURN server.
    pub fn handle_turn(&mut self, now: Instant, bytes: &[u8]) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let peer = turn
            .handle_input(now, bytes)
            .map(|d| (d.peer, d.data.to_vec()));
        self.drain_turn(now);
        if let (Some((peer, data)), Some(relay)) = (peer, self.relay) {
            self.rtc_receive(now, peer, relay, &data);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = self.turn.as_mut() {
            t.handle_timeout(now);
        }
        self.drain_turn(now);
        if !self.gathered && now >= self.gather_deadline {
            tracing::warn!("TURN allocation not ready in time: offering without a relay candidate");
            self.finish_gathering();
        }
        self.release_answer(now);
        if now >= self.rtc_timeout {
            if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                self.rtc_errors += 1;
            }
            self.drain_rtc(now);
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.rtc_timeout;
        if let Some(tt) = self.turn.as_ref().and_then(|x| x.poll_timeout()) {
            t = t.min(tt);
        }
        if !self.gathered {
            t = t.min(self.gather_deadline);
        }
        if let Some((_, _, d)) = &self.held_answer {
            t = t.min(*d);
        }
        t
    }

    pub fn poll_out(&mut self) -> Option<MediaOut> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// End the call's media: release the TURN allocation.
    pub fn close(&mut self, now: Instant) {
        self.rtc.disconnect();
        if let Some(t) = self.turn.as_mut() {
            t.close(now);
        }
        self.drain_turn(now);
    }
}

// ---- internals -----------------------------------------------------------

impl MediaSession {
    /// The far end's SDP with the mids and BUNDLE group str0m needs
    /// (`compat.rs`). Our SDP has one media section, the audio one: a
    /// section without a mid at its position is that one.
    fn bundled<'a>(&self, sdp: &'a str) -> std::borrow::Cow<'a, str> {
        let ours = self.mid;
        compat::with_mids(sdp, move |k| match (ours, k) {
            (Some(mid), 0) => mid.to_string(),
            _ => k.to_string(),
        })
    }

    fn rtc_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        let Ok(contents) = bytes.try_into() else {
            return; // not STUN, DTLS, RTP or RTCP: dropped
        };
        self.last_rx = now;
        // RTP/RTCP is 128..191: voice over this pair after a restart means it is back.
        let media = bytes.first().is_some_and(|b| (128..192).contains(b));
        if media && self.restart == Some(true) {
            self.restart = None;
            let path = self.classify(destination, source);
            self.events.push_back(MediaEvent::Restored(path));
        }
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        // Not filtered with `Rtc::accepts` (that is for demultiplexing many
        // sessions): it refuses a DTLS hello that races ICE nomination, which then
        // costs a whole DTLS retransmission second.
        match self.rtc.handle_input(input) {
            Ok(()) => {}
            Err(str0m::RtcError::Dtls(e)) if !self.connected && !self.dtls_failed => {
                tracing::warn!(error = %e, "DTLS handshake failed");
                self.dtls_failed = true;
                self.events
                    .push_back(MediaEvent::EncryptionFailed(dtls_hint(&e.to_string())));
            }
            Err(e) => {
                tracing::debug!(error = %e, "str0m refused input");
                self.rtc_errors += 1;
            }
        }
        self.drain_rtc(now);
    }

    fn finish_gathering(&mut self) {
        if !self.gathered {
            self.gathered = true;
            self.events.push_back(MediaEvent::Gathered);
        }
    }

    fn drain_turn(&mut self, now: Instant) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let events: Vec<TurnEvent> = std::iter::from_fn(|| turn.poll_event()).collect();
        let mut added = Vec::new();
        for ev in events {
            match ev {
                TurnEvent::Allocated { relayed, mapped } => added.push((relayed, mapped)),
                TurnEvent::Failed(why) => {
                    tracing::warn!(%why, "no relay candidate");
                    self.finish_gathering();
                }
                TurnEvent::PermissionCreated(_) | TurnEvent::ChannelBound(_) => {}
            }
        }
        if self.held_answer.is_some() {
            self.release_answer(now);
        }
        let turn = self.turn.as_mut();
        let bytes: Vec<Vec<u8>> = turn
            .map(|t| std::iter::from_fn(|| t.poll_transmit()).collect())
            .unwrap_or_default();
        self.out.extend(bytes.into_iter().map(MediaOut::Turn));
        for (relayed, mapped) in added {
            self.add_turn_candidates(now, relayed, mapped);
        }
    }

    fn add_turn_candidates(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        mapped: Option<SocketAddr>,
    ) {
        self.relay = Some(relayed);
        if let Ok(c) = Candidate::relayed(relayed, self.cfg.host, "udp") {
            self.local_cands.push(c.clone());
            self.rtc.add_local_candidate(c);
        }
        let udp = self
            .turn
            .as_ref()
            .is_some_and(|t| !t.config().transport.is_stream());
        if let (Some(m), false, true) = (mapped, self.cfg.force_relay, udp) {
            if m != self.cfg.host {
                if let Ok(c) = Candidate::server_reflexive(m, self.cfg.host, "udp") {
                    self.local_cands.push(c.clone());
                    self.rtc.add_local_candidate(c);
                }
            }
        }
        self.drain_rtc(now);
        self.finish_gathering();
    }

    /// Remember the far end's candidates (for path types) and let them reach our relay.
    fn learn_remote(&mut self, sdp: &str, now: Instant) {
        self.remote_ufrag = restart::ice_ufrag(sdp).or(self.remote_ufrag.take());
        for line in sdp.lines() {
            let Some(attr) = line.trim().strip_prefix("a=") else {
                continue;
            };
            if let Ok(c) = Candidate::from_sdp_string(attr) {
                self.remote.push((c.addr(), CandidateType::of(c.kind())));
            }
        }
        if let Some(t) = self.turn.as_mut() {
            for (addr, _) in &self.remote {
                t.permit(now, addr.ip());
            }
        }
        self.drain_turn(now);
    }

    fn resolve_send(&mut self) {
        if self.send.is_some() {
            return;
        }
        let Some(mid) = self.mid else {
            return;
        };
        let Some(w) = self.rtc.writer(mid) else {
            return;
        };
        let offered: Vec<(Pt, RtcCodec)> = w
            .payload_params()
            .map(|p| (p.pt(), p.spec().codec))
            .collect();
        for want in &self.cfg.codecs {
            let rc = match want {
                Codec::Opus => RtcCodec::Opus,
                Codec::Pcmu => RtcCodec::PCMU,
                Codec::Pcma => RtcCodec::PCMA,
            };
            if let Some((pt, _)) = offered.iter().find(|(_, c)| *c == rc) {
                self.send = Some((*pt, *want));
                return;
            }
        }
    }

    /// Takes everything str0m has to send or say. When str0m asks to run again
    /// at once (a voice frame just written waits for its pacer, feedback is
    /// due), it runs now: the frame leaves in the same pass as it was encoded,
    /// not one driver wake-up later (or, with timers coalesced, a frame later).
    fn drain_rtc(&mut self, now: Instant) {
        for _ in 0..IMMEDIATE_ROUNDS {
            if !self.drain_rtc_once(now) || self.rtc_timeout > now {
                return;
            }
            if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                self.rtc_errors += 1;
                return;
            }
        }
    }

    /// Polls str0m until it names its next timeout; false on an error.
    fn drain_rtc_once(&mut self, now: Instant) -> bool {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t.max(now);
                    return true;
                }
                Ok(Output::Transmit(t)) => self.transmit(now, t.source, t.destination, &t.contents),
                Ok(Output::Event(e)) => self.rtc_event(e),
                Err(e) => {
                    tracing::debug!(error = %e, "str0m error");
                    self.rtc_errors += 1;
                    self.rtc_timeout = now + Duration::from_millis(20);
                    return false;
                }
            }
        }
    }

    fn transmit(&mut self, now: Instant, source: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        // STUN starts with 0..3; DTLS 20..63 and RTP/RTCP 128..191 use the nominated pair.
        if bytes.first().is_some_and(|b| *b >= 20) {
            self.last_pair = Some((source, to));
        }
        if Some(source) == self.relay {
            if let Some(t) = self.turn.as_mut() {
                t.send_to(now, to, bytes);
            }
            let bytes: Vec<Vec<u8>> = self
                .turn
                .as_mut()
                .map(|t| std::iter::from_fn(|| t.poll_transmit()).collect())
                .unwrap_or_default();
            self.out.extend(bytes.into_iter().map(MediaOut::Turn));
        } else {
            self.out.push_back(MediaOut::Udp {
                to,
                bytes: bytes.to_vec(),
            });
        }
    }

    fn rtc_event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                self.connected = true;
                self.events.push_back(MediaEvent::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.events.push_back(MediaEvent::Disconnected);
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self.restart.is_some() => self.restart = Some(true),
            Event::MediaAdded(m) if m.kind == MediaKind::Audio => self.mid = Some(m.mid),
            Event::MediaData(d) => {
                self.stats.packets_received += 1;
                self.events.push_back(MediaEvent::Voice {
                    seq: d.seq_range.start().as_u16(),
                    rtp_ts: d.time.numer() as u32,
                    payload: d.data.to_vec(),
                });
            }
            Event::PeerStats(p) => {
                self.stats.rtt = p
                    .selected_candidate_pair
                    .as_ref()
                    .and_then(|s| s.current_round_trip_time)
                    .or(p.rtt);
                if let Some(pair) = p.selected_candidate_pair {
                    let info = self.classify(pair.local.addr, pair.remote.addr);
                    self.events.push_back(MediaEvent::Path(info));
                }
                self.events.push_back(MediaEvent::Stats(self.stats));
            }
            Event::MediaIngressStats(s) => {
                self.stats.ingress_loss = s.loss;
                self.stats.jitter_ticks = s.jitter;
            }
            Event::MediaEgressStats(s) => {
                self.stats.egress_loss = s.loss;
                self.stats.egress_jitter_ticks = s.remote.as_ref().map(|r| r.jitter);
            }
            _ => {}
        }
    }

    /// The pair DTLS and RTP currently use, named.
    pub fn nominated_path(&self) -> Option<PathInfo> {
        self.last_pair.map(|(l, r)| self.classify(l, r))
    }

    /// Name the pair: our side by our own addresses, the far side by its SDP.
    pub fn classify(&self, local: SocketAddr, remote: SocketAddr) -> PathInfo {
        let local_t = if Some(local) == self.relay {
            CandidateType::Relay
        } else {
            CandidateType::Host
        };
        let remote_t = self
            .remote
            .iter()
            .find(|(a, _)| *a == remote)
            .map(|r| r.1)
            .unwrap_or(CandidateType::Prflx);
        PathInfo {
            relayed: local_t == CandidateType::Relay || remote_t == CandidateType::Relay,
            local: local_t,
            remote: remote_t,
            local_addr: local,
            remote_addr: remote,
        }
    }
}

/// The host candidate, unless only the relay is offered.
fn host_candidate(cfg: &MediaConfig) -> Result<Option<Candidate>, PhoneError> {
    if cfg.force_relay {
        return Ok(None);
    }
    Candidate::host(cfg.host, "udp")
        .map(Some)
        .map_err(|e| PhoneError::Media(format!("host candidate {}: {e}", cfg.host)))
}

/// Longest wait for TURN permissions before ICE starts anyway.
const PERMISSION_WAIT: Duration = Duration::from_millis(250);

/// str0m's DTLS error, with what it most likely means for a SIP phone.
fn dtls_hint(error: &str) -> String {
    if error.contains("no client certificate") {
        format!(
            "{error} (the far end's certificate is probably RSA; natter's DTLS accepts ECDSA \
             certificates only)"
        )
    } else {
        error.to_owned()
    }
}

/// The `a=mid:` of the first audio m-line.
fn audio_mid(sdp: &str) -> Option<Mid> {
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio");
        } else if let (true, Some(mid)) = (in_audio, line.strip_prefix("a=mid:")) {
            return Some(Mid::from(mid));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_and_answer_between_two_sessions() {
        let now = Instant::now();
        let mut a = MediaSession::new(
            now,
            MediaConfig::new("10.0.0.1:4000".parse().unwrap(), None),
        )
        .unwrap();
        let mut b = MediaSession::new(
            now,
            MediaConfig::new("10.0.0.2:4000".parse().unwrap(), None),
        )
        .unwrap();
        assert_eq!(a.poll_event(), Some(MediaEvent::Gathered));
        let offer = a.create_offer(now).unwrap();
        assert!(offer.contains("a=fingerprint:sha-256"), "{offer}");
        assert!(offer.contains("typ host"), "{offer}");
        let answer = b.accept_offer(now, &offer).unwrap();
        a.accept_answer(now, &answer).unwrap();
        assert_eq!(b.remote_candidate_types(), vec![CandidateType::Host]);
    }
}
