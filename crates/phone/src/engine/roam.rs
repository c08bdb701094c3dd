//! Keeping a call when the path dies or the device moves (Wi-Fi → mobile, NAT
//! rebinding, an interface going down).
//!
//! Triggers: the driver reports a new local address ([`Phone::handle_media_moved`])
//! or a new signaling flow ([`Phone::handle_sip_flow`]); str0m reports the ICE
//! path lost; or nothing has arrived from the far end for a while (silence).
//! The call then goes `Reconnecting`, the restarting side gathers fresh
//! candidates and sends an ICE-restart re-INVITE once it is registered over its
//! current flow (the server moves the call to that flow on REGISTER), the far
//! end answers and restarts too, and `Connected { path }` follows when voice
//! arrives over the new pair. No recovery within
//! [`PhoneConfig::reconnect_timeout`](super::PhoneConfig) ends the call with
//! [`EndReason::ConnectionLost`].
//!
//! Who restarts: the side that moved, at once; on a path lost without a move,
//! the caller at once and the callee only if no re-offer came within
//! [`CALLEE_GRACE`], so the two rarely re-offer together. When they do, both
//! get 491 and retry after the RFC 3261 §14.1 backoff.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Phone, PhoneEvent, Role};
use crate::media_session::PathInfo;
use crate::sip::{CallId, EndReason};

/// Nothing from the far end this long means the path is gone: voice flows every
/// 20 ms, and without voice (DTX, a silent microphone) RTCP comes every second
/// (`media_session`) and ICE consent checks every few.
const SILENCE: Duration = Duration::from_secs(2);
/// The callee waits this long for the caller's re-offer before re-offering itself.
const CALLEE_GRACE: Duration = Duration::from_secs(2);
/// After a failed re-INVITE (other than 491), try again after this long.
const RETRY: Duration = Duration::from_secs(1);

/// The reconnect state of one call.
#[derive(Debug, Default)]
pub(super) struct Roam {
    /// Reconnecting since (the `Reconnecting` event went out).
    since: Option<Instant>,
    /// Our own restart begins at this time.
    restart_at: Option<Instant>,
    /// The media socket's new address for that restart, when we moved.
    new_host: Option<SocketAddr>,
    /// `media.restart` done; the re-offer goes out once gathered and registered.
    gathering: bool,
    /// Our re-INVITE is out, waiting for its answer.
    offered: bool,
    why: String,
}

impl Roam {
    /// Reconnecting now.
    pub(super) fn is_active(&self) -> bool {
        self.since.is_some()
    }
}

impl Phone {
    /// The media socket moved to `host` (the driver opened a new one after the
    /// local address towards the server changed). In a call: ICE restart.
    /// The driver renews the signaling flow too ([`Phone::handle_sip_flow`]); the
    /// re-offer waits until the phone is registered over the new one.
    pub fn handle_media_moved(&mut self, now: Instant, host: SocketAddr) {
        self.cfg.media_host = host;
        self.ua.flow_lost();
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.t_connected.is_none() {
            return; // still setting up: the offer/answer in flight names the old address
        }
        c.roam.new_host = Some(host);
        c.roam.restart_at = Some(now);
        c.roam.offered = false;
        c.roam.gathering = false;
        self.begin_reconnect(now, "the local network changed");
        self.flush(now);
    }

    /// The signaling flow broke; the driver is reconnecting.
    pub fn handle_sip_lost(&mut self) {
        self.ua.flow_lost();
    }

    /// The signaling flow is new (reconnected, or from a new address): register
    /// over it; a pending re-offer goes out once that succeeds.
    pub fn handle_sip_flow(&mut self, now: Instant, local: SocketAddr) {
        self.cfg.ua.local = local;
        self.ua.handle_flow_change(now, local);
        self.flush(now);
    }

    /// True while the call is reconnecting.
    pub fn is_reconnecting(&self) -> bool {
        self.call.as_ref().is_some_and(|c| c.roam.since.is_some())
    }

    /// Earliest roam deadline (silence check, restart start, give-up).
    pub(super) fn roam_timeout(&self) -> Option<Instant> {
        let c = self.call.as_ref()?;
        c.t_connected?;
        let giving_up = c.roam.since.map(|s| s + self.cfg.reconnect_timeout);
        let silence = match c.roam.since {
            None => Some(c.media.last_received() + SILENCE),
            Some(_) => None,
        };
        [giving_up, silence, c.roam.restart_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Timers: notice silence, start a due restart, give up.
    pub(super) fn check_roam(&mut self, now: Instant) {
        let silence = SILENCE;
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.t_connected.is_none() {
            return;
        }
        if c.roam.since.is_none() && now >= c.media.last_received() + silence {
            let why = format!(
                "nothing heard from the far end for {} ms",
                silence.as_millis()
            );
            self.on_path_lost(now, &why);
        }
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if let Some(since) = c.roam.since {
            if now >= since + self.cfg.reconnect_timeout {
                return self.give_up(now);
            }
        }
        if c.roam.restart_at.is_some_and(|t| t <= now) {
            c.roam.restart_at = None;
            c.roam.gathering = true;
            let host = c.roam.new_host.take();
            c.media.restart(now, host);
        }
    }

    /// Send the re-offer when gathering is done and we are registered over the
    /// current flow (so the server routes the call to it). True when sent.
    pub(super) fn advance_roam(&mut self, now: Instant) -> bool {
        let registered = self.ua.is_registered();
        let Some(c) = self.call.as_mut() else {
            return false;
        };
        if !c.roam.gathering || !c.media.is_gathered() || !registered {
            return false;
        }
        let Some(id) = c.id.clone() else {
            return false;
        };
        c.roam.gathering = false;
        match c.media.create_restart_offer(now) {
            Ok(offer) => {
                if self.ua.reinvite(now, &id, offer.into_bytes()) {
                    if let Some(c) = self.call.as_mut() {
                        c.roam.offered = true;
                    }
                } else if let Some(c) = self.call.as_mut() {
                    c.roam.restart_at = Some(now + RETRY); // a re-INVITE is in flight
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no restart offer");
                if let Some(c) = self.call.as_mut() {
                    c.roam.restart_at = Some(now + RETRY);
                }
            }
        }
        true
    }

    /// str0m lost the path, or silence: reconnect. The caller restarts now.
    pub(super) fn on_path_lost(&mut self, now: Instant, why: &str) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.t_connected.is_none() || c.roam.since.is_some() {
            return;
        }
        let wait = match c.role {
            Role::Caller => Duration::ZERO,
            Role::Callee => CALLEE_GRACE,
        };
        c.roam.restart_at = Some(now + wait);
        self.begin_reconnect(now, why);
    }

    /// The far end re-offered inside the call: answer (restarting ICE if asked).
    pub(super) fn on_update(&mut self, now: Instant, id: &CallId, sdp: &[u8]) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.id.as_ref() != Some(id) {
            return;
        }
        let sdp = String::from_utf8_lossy(sdp).into_owned();
        match c.media.accept_reoffer(now, &sdp) {
            Ok((answer, restart)) => {
                if restart {
                    // The far end restarts: ours is no longer needed.
                    c.roam.restart_at = None;
                    c.roam.gathering = false;
                    c.roam.offered = false;
                    self.begin_reconnect(now, "the far end restarts ICE");
                }
                self.ua.answer_update(now, id, answer.into_bytes());
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-offer refused");
                self.ua.reject_update(now, id, 488);
            }
        }
    }

    /// The answer to our re-INVITE.
    pub(super) fn on_reanswer(&mut self, now: Instant, sdp: &[u8]) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if !c.roam.offered {
            return;
        }
        c.roam.offered = false;
        let sdp = String::from_utf8_lossy(sdp).into_owned();
        if let Err(e) = c.media.accept_answer(now, &sdp) {
            tracing::warn!(error = %e, "unusable restart answer: trying again");
            c.roam.restart_at = Some(now + RETRY);
        }
    }

    /// Our re-INVITE failed: after glare wait the §14.1 time, else a second.
    pub(super) fn on_update_failed(&mut self, now: Instant, id: &CallId, code: u16) {
        let wait = if code == 491 {
            self.ua.reinvite_backoff(id)
        } else {
            RETRY
        };
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.id.as_ref() != Some(id) || !c.roam.offered {
            return;
        }
        tracing::info!(code, ?wait, "re-INVITE failed: re-offering later");
        c.roam.offered = false;
        if c.roam.since.is_some() {
            c.roam.restart_at = Some(now + wait);
        }
    }

    /// ICE is back and voice arrives over `path`.
    pub(super) fn on_restored(&mut self, now: Instant, path: PathInfo) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        let took = c.roam.since.map(|s| now.saturating_duration_since(s));
        c.roam = Roam::default();
        c.path = Some(path);
        // A silent phone (DTX) would send on the new path only at its next
        // keepalive; the far end waits for our packets to call its path restored.
        if let Some(tx) = c.tx.as_mut() {
            tx.restart_dtx();
        }
        tracing::info!(?took, path = path.path_str(), "media path restored");
        self.events.push_back(PhoneEvent::Connected { path });
    }

    fn begin_reconnect(&mut self, now: Instant, why: &str) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.roam.since.is_none() {
            tracing::info!(%why, "reconnecting");
            c.roam.since = Some(now);
            c.roam.why = why.to_owned();
            self.events.push_back(PhoneEvent::Reconnecting);
        }
    }

    fn give_up(&mut self, now: Instant) {
        let Some(c) = self.call.as_ref() else {
            return;
        };
        let why = format!(
            "{}; no new path within {} s (check the network; the far end may have lost its connection)",
            c.roam.why,
            self.cfg.reconnect_timeout.as_secs()
        );
        self.abandon_call(now, EndReason::ConnectionLost(why));
    }
}
