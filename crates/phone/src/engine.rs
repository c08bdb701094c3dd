//! The phone: SIP user agent + media session + voice, one call at a time. Sans-IO.
//!
//! Inputs: [`Phone::handle_sip`] (frames from the SIP server), [`Phone::handle_udp`]
//! (datagrams on the media socket), [`Phone::handle_turn`] (from the TURN server),
//! [`Phone::handle_timeout`]. Outputs: [`Phone::poll_transmit`], [`Phone::poll_event`],
//! [`Phone::poll_audio`] (what the listener hears), [`Phone::poll_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use natter_media::codec::{Codec, EncoderSettings};
use natter_media::quality::{estimate_mos, EModelInput, Impairment};
use natter_media::resample::resample;

use crate::audio::{LiveMic, MicInput, SampleQueue};
use crate::media_session::{
    CandidateType, MediaConfig, MediaEvent, MediaOut, MediaSession, PathInfo,
};
use crate::sip::{CallId, EndReason, RegFailure, UaConfig, UaEvent, UserAgent};
use crate::stats::{timed, CallStats, MediaCpu};
use crate::turn_client::TurnConfig;
use crate::voice::{pcm_rate, VoiceRx, VoiceTx, OPUS_RATE};
use crate::PhoneError;

mod adapt;
mod roam;
mod slack;

use slack::Slack;
pub use slack::MAX_SLACK;

/// Phone settings.
#[derive(Debug, Clone)]
pub struct PhoneConfig {
    pub ua: UaConfig,
    /// The media socket's local address with a specific IP (host candidate).
    pub media_host: SocketAddr,
    pub turn: Option<TurnConfig>,
    pub force_relay: bool,
    /// Codec preference. Default Opus, PCMU, PCMA.
    pub codecs: Vec<Codec>,
    pub encoder: EncoderSettings,
    /// Give up when ICE has not connected this long after the answer. Default 10 s.
    pub connect_timeout: Duration,
    /// End a call whose lost path is not restored this long. Default 15 s.
    pub reconnect_timeout: Duration,
}

impl PhoneConfig {
    pub fn new(ua: UaConfig, media_host: SocketAddr, turn: Option<TurnConfig>) -> Self {
        PhoneConfig {
            ua,
            media_host,
            turn,
            force_relay: false,
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
            encoder: EncoderSettings::default(),
            connect_timeout: Duration::from_secs(10),
            reconnect_timeout: Duration::from_secs(15),
        }
    }
}

/// What goes out, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneTransmit {
    /// To the SIP server over the signaling flow.
    Sip(Vec<u8>),
    /// From the media socket.
    Udp { to: SocketAddr, bytes: Vec<u8> },
    /// To the TURN server over its transport.
    Turn(Vec<u8>),
}

/// What the phone reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneEvent {
    Registered {
        aor: String,
    },
    RegistrationFailed(RegFailure),
    Incoming {
        call: CallId,
        from: String,
    },
    Ringing,
    Connected {
        path: PathInfo,
    },
    /// The path died; ICE is trying to get it back.
    Reconnecting,
    /// A new nominated pair (after reconnecting or a better pair).
    PathChanged {
        path: PathInfo,
    },
    Stats(Box<CallStats>),
    /// The call is over; `stats` is the call record.
    Ended {
        reason: EndReason,
        stats: Box<CallStats>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

struct ActiveCall {
    role: Role,
    target: String,
    id: Option<CallId>,
    media: MediaSession,
    /// Callee: the offer, kept until gathering is done and the user answers.
    offer: Option<String>,
    answer_wanted: bool,
    /// INVITE sent (caller) or 200 OK sent (callee).
    t_signal: Option<Instant>,
    t_first_voice: Option<Instant>,
    t_connected: Option<Instant>,
    connect_by: Option<Instant>,
    tx: Option<VoiceTx>,
    rx: Option<VoiceRx>,
    path: Option<PathInfo>,
    stats: CallStats,
    /// Time in encode, decode and the media transport.
    cpu: MediaCpu,
    roam: roam::Roam,
    /// Sender-side adaptation to the far end's reports (Opus calls).
    adapt: Option<adapt::Adapt>,
}

/// The phone engine.
pub struct Phone {
    cfg: PhoneConfig,
    ua: UserAgent,
    call: Option<ActiveCall>,
    mic: Microphone,
    out: VecDeque<PhoneTransmit>,
    events: VecDeque<PhoneEvent>,
    audio: VecDeque<Vec<i16>>,
    last_stats: Option<Instant>,
}

/// Where calls take their microphone from.
enum Microphone {
    /// Mono PCM at [`OPUS_RATE`], sent from the start of each call (`--play`).
    Clip(Vec<i16>),
    /// A sound card's capture queue.
    Live(SampleQueue),
}

/// Live stats every second during a call.
const STATS_EVERY: Duration = Duration::from_secs(1);

impl Phone {
    pub fn new(cfg: PhoneConfig) -> Self {
        Phone {
            ua: UserAgent::new(cfg.ua.clone()),
            cfg,
            call: None,
            mic: Microphone::Clip(Vec::new()),
            out: VecDeque::new(),
            events: VecDeque::new(),
            audio: VecDeque::new(),
            last_stats: None,
        }
    }

    /// The microphone: mono PCM at [`OPUS_RATE`] (16 kHz), sent from the moment
    /// the call connects.
    pub fn set_microphone(&mut self, pcm: Vec<i16>) {
        self.mic = Microphone::Clip(pcm);
    }

    /// A live microphone: each call's encoder takes its frames from `queue`
    /// (mono, at the queue's rate, resampled for the call's codec), which a
    /// sound card fills ([`crate::audio::device`]).
    pub fn set_live_microphone(&mut self, queue: SampleQueue) {
        self.mic = Microphone::Live(queue);
    }

    pub fn register(&mut self, now: Instant) {
        self.ua.register(now);
        self.flush(now);
    }

    pub fn is_registered(&self) -> bool {
        self.ua.is_registered()
    }

    pub fn in_call(&self) -> bool {
        self.call.is_some()
    }

    /// Dial `target`: gather candidates, then INVITE.
    pub fn dial(&mut self, now: Instant, target: &str) -> Result<(), PhoneError> {
        if self.call.is_some() {
            return Err(PhoneError::Busy);
        }
        let media = MediaSession::new(now, self.media_config())?;
        self.call = Some(ActiveCall::new(Role::Caller, target, media));
        self.flush(now);
        Ok(())
    }

    /// Answer the incoming call (as soon as candidates are ready).
    pub fn answer(&mut self, now: Instant) -> Result<(), PhoneError> {
        let call = self.call.as_mut().ok_or(PhoneError::NoCall("answer"))?;
        if call.role != Role::Callee || call.offer.is_none() {
            return Err(PhoneError::NoCall("answer"));
        }
        call.answer_wanted = true;
        self.flush(now);
        Ok(())
    }

    /// Hang up (or cancel, or decline).
    pub fn hangup(&mut self, now: Instant) {
        match self.call.as_ref().and_then(|c| c.id.clone()) {
            Some(id) => self.ua.hangup(now, &id),
            None if self.call.is_some() => self.end_call(now, EndReason::LocalHangup),
            None => {}
        }
        self.flush(now);
    }

    pub fn handle_sip(&mut self, now: Instant, bytes: &[u8]) {
        self.ua.handle_input(now, bytes);
        self.flush(now);
    }

    /// A datagram on the media socket; `from_turn` when it came from the TURN server (UDP).
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8], from_turn: bool) {
        if let Some(c) = self.call.as_mut() {
            c.stats.wire_bytes_received += bytes.len() as u64 + 28;
            timed(&mut c.cpu.rtp, || {
                if from_turn {
                    c.media.handle_turn(now, bytes);
                } else {
                    c.media.handle_udp(now, from, bytes);
                }
            });
        }
        self.flush(now);
    }

    /// A frame from the TURN server over TCP/TLS.
    pub fn handle_turn_stream(&mut self, now: Instant, frame: &[u8]) {
        if let Some(c) = self.call.as_mut() {
            c.stats.wire_bytes_received += frame.len() as u64 + 40;
            timed(&mut c.cpu.rtp, || c.media.handle_turn(now, frame));
        }
        self.flush(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ua.handle_timeout(now);
        if let Some(c) = self.call.as_mut() {
            timed(&mut c.cpu.rtp, || c.media.handle_timeout(now));
            if let Some(rx) = c.rx.as_mut() {
                timed(&mut c.cpu.decode, || rx.handle_timeout(now));
            }
        }
        self.send_voice(now);
        self.check_connect_deadline(now);
        self.check_roam(now);
        self.flush(now);
        self.periodic_stats(now);
    }

    /// The earliest deadline. During a call every timer but the voice frame's
    /// may run late by up to [`MAX_SLACK`] so that it fires together with the
    /// next frame: one wake-up per packet time instead of one per timer (see
    /// [`Slack`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let slack = Slack::of(self.call.as_ref());
        let mut t = slack.defer(self.ua.poll_timeout());
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if let Some(c) = &self.call {
            min(slack.defer(Some(c.media.poll_timeout())));
            min(slack.tick());
            min(slack.defer(c.rx.as_ref().and_then(|rx| rx.poll_timeout())));
            min(slack.defer(c.connect_by));
            min(slack.defer(self.last_stats.map(|l| l + STATS_EVERY)));
            min(slack.defer(self.roam_timeout()));
        }
        t
    }

    /// The packet time while the call sends voice on a working path: the
    /// cadence of [`Self::poll_timeout`] then (a driver can keep its timer
    /// primed one frame ahead). `None` otherwise.
    pub fn voice_period(&self) -> Option<Duration> {
        Slack::of(self.call.as_ref()).frame()
    }

    pub fn poll_transmit(&mut self) -> Option<PhoneTransmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<PhoneEvent> {
        self.events.pop_front()
    }

    /// Heard audio (mono, 16-bit, at [`Phone::playout_rate`]), in order.
    pub fn poll_audio(&mut self) -> Option<Vec<i16>> {
        self.audio.pop_front()
    }

    /// The playout sample rate of the current call's decoder.
    pub fn playout_rate(&self) -> u32 {
        self.call
            .as_ref()
            .and_then(|c| c.rx.as_ref())
            .map_or(OPUS_RATE, |rx| rx.sample_rate())
    }

    /// Stats of the call in progress.
    pub fn call_stats(&self, now: Instant) -> Option<CallStats> {
        self.call.as_ref().map(|c| c.snapshot(now, &self.cfg))
    }
}

// ---- internals -----------------------------------------------------------

impl ActiveCall {
    fn new(role: Role, target: &str, media: MediaSession) -> Self {
        ActiveCall {
            role,
            target: target.to_owned(),
            id: None,
            media,
            offer: None,
            answer_wanted: false,
            t_signal: None,
            t_first_voice: None,
            t_connected: None,
            connect_by: None,
            tx: None,
            rx: None,
            path: None,
            stats: CallStats::default(),
            cpu: MediaCpu::default(),
            roam: roam::Roam::default(),
            adapt: None,
        }
    }

    fn snapshot(&self, now: Instant, cfg: &PhoneConfig) -> CallStats {
        let mut s = self.stats.clone();
        self.cpu.fill(&mut s);
        if let Some(p) = &self.path {
            s.path = p.path_str().to_owned();
            s.local_candidate = p.local.as_str().to_owned();
            s.remote_candidate = p.remote.as_str().to_owned();
        }
        if let (Some(a), Some(b)) = (self.t_signal, self.t_first_voice) {
            s.setup_ms = Some(b.saturating_duration_since(a).as_secs_f64() * 1000.0);
        }
        s.duration_s = self
            .t_connected
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        if let Some(tx) = &self.tx {
            s.packets_sent = tx.frames_sent;
            let now_set = tx.settings();
            s.send_bitrate_bps = now_set.bitrate_bps;
            s.fec = now_set.fec;
        }
        if let Some(rx) = &self.rx {
            let j = rx.stats();
            s.packets_received = j.received;
            let expected = j.received + j.lost;
            s.loss_pct = if expected > 0 {
                100.0 * j.lost as f64 / expected as f64
            } else {
                0.0
            };
            s.jitter_ms = j.jitter.as_secs_f64() * 1000.0;
            s.concealed_ms = j.concealed.as_secs_f64() * 1000.0;
            let delay =
                Duration::from_secs_f64(s.rtt_ms.unwrap_or(0.0) / 2000.0) + j.mean_playout_delay;
            let codec = codec_of(&s.codec).unwrap_or(Codec::Opus);
            s.mos = Some(estimate_mos(&EModelInput {
                one_way_delay: delay,
                loss_fraction: s.loss_pct / 100.0,
                burst_ratio: 1.0,
                impairment: Impairment::of(codec, cfg.encoder.bitrate_bps),
            }));
        }
        s
    }
}

fn codec_of(name: &str) -> Option<Codec> {
    [Codec::Opus, Codec::Pcmu, Codec::Pcma]
        .into_iter()
        .find(|c| c.sdp_name() == name)
}

impl Phone {
    fn media_config(&self) -> MediaConfig {
        let mut m = MediaConfig::new(self.cfg.media_host, self.cfg.turn.clone());
        m.force_relay = self.cfg.force_relay;
        m.codecs = self.cfg.codecs.clone();
        m
    }

    /// Move everything the parts produced: UA and media outputs, events, follow-ups.
    fn flush(&mut self, now: Instant) {
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(bytes) = self.ua.poll_transmit() {
                self.out.push_back(PhoneTransmit::Sip(bytes));
            }
            while let Some(ev) = self.ua.poll_event() {
                progressed = true;
                self.on_ua_event(now, ev);
            }
            if let Some(c) = self.call.as_mut() {
                while let Some(o) = c.media.poll_out() {
                    let (t, n) = match o {
                        MediaOut::Udp { to, bytes } => {
                            let n = bytes.len();
                            (PhoneTransmit::Udp { to, bytes }, n + 28)
                        }
                        MediaOut::Turn(bytes) => {
                            let n = bytes.len();
                            (PhoneTransmit::Turn(bytes), n + 28)
                        }
                    };
                    c.stats.wire_bytes_sent += n as u64;
                    self.out.push_back(t);
                }
            }
            let media_events: Vec<MediaEvent> = match self.call.as_mut() {
                Some(c) => std::iter::from_fn(|| c.media.poll_event()).collect(),
                None => Vec::new(),
            };
            for ev in media_events {
                progressed = true;
                self.on_media_event(now, ev);
            }
            progressed |= self.advance_call(now);
            progressed |= self.advance_roam(now);
            if let Some(rx) = self.call.as_mut().and_then(|c| c.rx.as_mut()) {
                let heard = rx.take_audio();
                if !heard.is_empty() {
                    self.audio.push_back(heard);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Steps that wait on two things at once (gathered + answered, …).
    fn advance_call(&mut self, now: Instant) -> bool {
        let Some(c) = self.call.as_mut() else {
            return false;
        };
        if !c.media.is_gathered() {
            return false;
        }
        match c.role {
            Role::Caller if c.id.is_none() => {
                match c.media.create_offer(now) {
                    Ok(offer) => {
                        let target = c.target.clone();
                        let id = self.ua.call(now, &target, offer.into_bytes());
                        if let Some(c) = self.call.as_mut() {
                            c.id = Some(id);
                            c.t_signal = Some(now);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no offer");
                        self.end_call(now, EndReason::NoMediaPath(e.to_string()));
                    }
                }
                true
            }
            Role::Callee if c.answer_wanted && c.offer.is_some() => {
                c.answer_wanted = false;
                let offer = c.offer.take().unwrap_or_default();
                let id = c.id.clone();
                match (c.media.accept_offer(now, &offer), id) {
                    (Ok(answer), Some(id)) => {
                        self.ua.answer(now, &id, answer.into_bytes());
                        if let Some(c) = self.call.as_mut() {
                            c.t_signal = Some(now);
                            c.connect_by = Some(now + self.cfg.connect_timeout);
                        }
                    }
                    (Err(e), Some(id)) => {
                        tracing::warn!(error = %e, "offer refused");
                        self.ua.reject(now, &id, 488);
                    }
                    (_, None) => {}
                }
                true
            }
            _ => false,
        }
    }

    fn on_ua_event(&mut self, now: Instant, ev: UaEvent) {
        match ev {
            UaEvent::Registered { aor, .. } => {
                self.events.push_back(PhoneEvent::Registered { aor })
            }
            UaEvent::RegistrationFailed(f) => {
                self.events.push_back(PhoneEvent::RegistrationFailed(f))
            }
            UaEvent::Incoming { call, from, sdp } => self.on_incoming(now, call, from, sdp),
            UaEvent::Ringing { .. } => self.events.push_back(PhoneEvent::Ringing),
            UaEvent::Answered { call, sdp } => self.on_answered(now, &call, &sdp),
            UaEvent::Confirmed { .. } => {}
            UaEvent::Updated { call, sdp } => self.on_update(now, &call, &sdp),
            UaEvent::UpdateFailed { call, code } => self.on_update_failed(now, &call, code),
            UaEvent::Ended { call, reason } => {
                if self.call.as_ref().and_then(|c| c.id.as_ref()) == Some(&call) {
                    self.end_call(now, reason);
                }
            }
        }
    }

    fn on_incoming(&mut self, now: Instant, call: CallId, from: String, sdp: Vec<u8>) {
        if self.call.is_some() {
            self.ua.reject(now, &call, 486);
            return;
        }
        let media = match MediaSession::new(now, self.media_config()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the call");
                self.ua.reject(now, &call, 500);
                return;
            }
        };
        let mut c = ActiveCall::new(Role::Callee, &from, media);
        c.id = Some(call.clone());
        c.offer = Some(String::from_utf8_lossy(&sdp).into_owned());
        self.call = Some(c);
        self.events.push_back(PhoneEvent::Incoming { call, from });
    }

    fn on_answered(&mut self, now: Instant, call: &CallId, sdp: &[u8]) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.id.as_ref() != Some(call) {
            return;
        }
        if c.t_connected.is_some() {
            return self.on_reanswer(now, sdp); // the answer to our re-INVITE
        }
        let sdp = String::from_utf8_lossy(sdp).into_owned();
        if let Err(e) = c.media.accept_answer(now, &sdp) {
            tracing::warn!(error = %e, "unusable answer");
            self.ua.hangup(now, call);
            return;
        }
        c.connect_by = Some(now + self.cfg.connect_timeout);
    }

    fn on_media_event(&mut self, now: Instant, ev: MediaEvent) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        match ev {
            MediaEvent::Gathered => {}
            MediaEvent::Connected => self.on_connected(now),
            // While reconnecting, pairs come and go; `Restored` names the new one.
            MediaEvent::Path(_) if c.roam.is_active() => {}
            MediaEvent::Path(p) => {
                if c.path != Some(p) {
                    let first = c.path.is_none();
                    c.path = Some(p);
                    if !first {
                        self.events.push_back(PhoneEvent::PathChanged { path: p });
                    }
                }
            }
            MediaEvent::Disconnected => self.on_path_lost(now, "ICE lost the path"),
            MediaEvent::EncryptionFailed(why) => {
                self.abandon_call(now, EndReason::EncryptionFailed(why))
            }
            MediaEvent::Restored(path) => self.on_restored(now, path),
            MediaEvent::Voice {
                seq,
                rtp_ts,
                payload,
            } => {
                if c.t_first_voice.is_none() {
                    c.t_first_voice = Some(now);
                }
                if let Some(rx) = c.rx.as_mut() {
                    timed(&mut c.cpu.decode, || rx.push(now, seq, rtp_ts, payload));
                }
            }
            MediaEvent::Stats(s) => {
                c.stats.rtt_ms = s.rtt.map(|d| d.as_secs_f64() * 1000.0);
                if let (Some(adapt), Some(tx)) = (c.adapt.as_mut(), c.tx.as_mut()) {
                    adapt.on_stats(now, &s, tx);
                }
            }
        }
    }

    fn on_connected(&mut self, now: Instant) {
        let settings = self.cfg.encoder;
        let Some(c) = self.call.as_mut() else {
            return;
        };
        c.t_connected = Some(now);
        c.connect_by = None;
        let codec = c.media.send_codec().unwrap_or(Codec::Opus);
        c.stats.codec = codec.sdp_name().to_owned();
        let mic = match &self.mic {
            Microphone::Live(queue) => MicInput::Live(LiveMic::new(queue.clone(), pcm_rate(codec))),
            Microphone::Clip(clip) => MicInput::from(resample(clip, OPUS_RATE, pcm_rate(codec))),
        };
        match (
            VoiceTx::new(now, codec, &settings, mic, rand::random()),
            VoiceRx::new(codec),
        ) {
            (Ok(tx), Ok(rx)) => {
                c.adapt = adapt::Adapt::new(codec, &tx.settings());
                c.tx = Some(tx);
                c.rx = Some(rx);
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "voice pipeline failed"),
        }
        let path = c.media.nominated_path();
        c.path = path;
        if let Some(path) = path {
            self.events.push_back(PhoneEvent::Connected { path });
        }
        self.last_stats = Some(now);
    }

    fn send_voice(&mut self, now: Instant) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        let Some(tx) = c.tx.as_mut() else {
            return;
        };
        while tx.poll_timeout() <= now {
            if let Some((ts, payload)) = timed(&mut c.cpu.encode, || tx.handle_timeout(now)) {
                timed(&mut c.cpu.rtp, || c.media.send_voice(now, ts, payload));
            }
        }
    }

    fn check_connect_deadline(&mut self, now: Instant) {
        let Some(c) = self.call.as_ref() else {
            return;
        };
        if c.connect_by.is_some_and(|t| t <= now) {
            let tried =
                |v: Vec<CandidateType>| v.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ");
            let why = format!(
                "ICE found no working pair in {} s (local candidates: {}; remote: {})",
                self.cfg.connect_timeout.as_secs(),
                tried(c.media.local_candidate_types()),
                tried(c.media.remote_candidate_types())
            );
            self.abandon_call(now, EndReason::NoMediaPath(why));
        }
    }

    fn periodic_stats(&mut self, now: Instant) {
        let due = self.last_stats.is_some_and(|l| l + STATS_EVERY <= now);
        if due {
            self.last_stats = Some(now);
            if let Some(s) = self.call_stats(now) {
                self.events.push_back(PhoneEvent::Stats(Box::new(s)));
            }
        }
    }

    /// Give up on the call: hang up towards the far end (BYE or CANCEL) and
    /// end it here with `reason`.
    fn abandon_call(&mut self, now: Instant, reason: EndReason) {
        if let Some(id) = self.call.as_ref().and_then(|c| c.id.clone()) {
            self.ua.hangup(now, &id);
        }
        self.end_call(now, reason);
    }

    fn end_call(&mut self, now: Instant, reason: EndReason) {
        let Some(mut c) = self.call.take() else {
            return;
        };
        if let Some(rx) = c.rx.as_mut() {
            rx.handle_timeout(now);
            let heard = rx.take_audio();
            if !heard.is_empty() {
                self.audio.push_back(heard);
            }
        }
        c.media.close(now);
        while let Some(o) = c.media.poll_out() {
            match o {
                MediaOut::Udp { to, bytes } => self.out.push_back(PhoneTransmit::Udp { to, bytes }),
                MediaOut::Turn(bytes) => self.out.push_back(PhoneTransmit::Turn(bytes)),
            }
        }
        let stats = c.snapshot(now, &self.cfg);
        self.last_stats = None;
        self.events.push_back(PhoneEvent::Ended {
            reason,
            stats: Box::new(stats),
        });
    }
}
