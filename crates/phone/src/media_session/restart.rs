//! ICE restart (RFC 8445 §9): fresh candidates after a move, new credentials,
//! a new offer/answer inside the call. DTLS and SRTP carry on unchanged.
//!
//! The side that restarts calls [`MediaSession::restart`] (with the media
//! socket's new address when the device moved), waits for
//! [`MediaSession::is_gathered`], sends [`MediaSession::create_restart_offer`]
//! in a re-INVITE and applies the answer with [`MediaSession::accept_answer`].
//! The far end answers with [`MediaSession::accept_reoffer`]. Either side
//! reports [`MediaEvent::Restored`](super::MediaEvent::Restored) once ICE is up and voice arrives again.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::CandidateKind;

use super::{host_candidate, MediaSession};
use crate::turn_client::TurnClient;
use crate::PhoneError;

impl MediaSession {
    /// Begin an ICE restart. `new_host`: the media socket's new address after a
    /// move (the old host, srflx and relay candidates are retired and gathered
    /// afresh); `None`: same address (only a failed TURN allocation is redone).
    pub fn restart(&mut self, now: Instant, new_host: Option<SocketAddr>) {
        self.pending_offer = None;
        self.held_answer = None;
        self.restart = Some(false);
        let moved = new_host.filter(|h| *h != self.cfg.host);
        if let Some(host) = moved {
            tracing::info!(old = %self.cfg.host, new = %host, "media moves to a new address");
            self.retire_candidates(false);
            self.cfg.host = host;
            if let Ok(Some(c)) = host_candidate(&self.cfg) {
                self.local_cands.push(c.clone());
                self.rtc.add_local_candidate(c);
            }
            self.regather(now);
        } else if self.turn.as_ref().is_some_and(|t| t.is_failed()) {
            self.retire_candidates(true);
            self.regather(now);
        }
        self.drain_rtc(now);
    }

    /// The re-offer with new ICE credentials and our current candidates.
    /// Call once [`MediaSession::is_gathered`].
    pub fn create_restart_offer(&mut self, now: Instant) -> Result<String, PhoneError> {
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| PhoneError::Media("str0m made no restart offer".into()))?;
        self.pending_offer = Some(pending);
        self.restart = Some(false);
        self.drain_rtc(now);
        Ok(super::compat::with_default_candidates(
            offer.to_sdp_string(),
        ))
    }

    /// Answer the far end's offer inside the call (re-INVITE). Returns the
    /// answer and whether the offer restarts ICE (new ufrag).
    pub fn accept_reoffer(
        &mut self,
        now: Instant,
        sdp: &str,
    ) -> Result<(String, bool), PhoneError> {
        let sdp = &*self.bundled(sdp);
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| PhoneError::BadSdp(e.to_string()))?;
        let ufrag = ice_ufrag(sdp);
        let restart = ufrag.is_some() && ufrag != self.remote_ufrag;
        // Our own re-offer, if any, loses (glare resolved for the far end).
        self.pending_offer = None;
        self.held_answer = None;
        if restart {
            self.remote.clear();
            self.restart = Some(false);
        }
        self.learn_remote(sdp, now);
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| PhoneError::BadSdp(e.to_string()))?;
        self.drain_rtc(now);
        Ok((
            super::compat::with_default_candidates(answer.to_sdp_string()),
            restart,
        ))
    }

    /// When str0m last accepted a datagram from the far end.
    pub fn last_received(&self) -> Instant {
        self.last_rx
    }

    /// An ICE restart is under way (not yet [`MediaEvent::Restored`](super::MediaEvent::Restored)).
    pub fn is_restarting(&self) -> bool {
        self.restart.is_some()
    }

    /// The media socket's address (the host candidate's).
    pub fn host(&self) -> SocketAddr {
        self.cfg.host
    }

    /// Invalidate our candidates in str0m (all, or all but the host one).
    fn retire_candidates(&mut self, keep_host: bool) {
        for c in std::mem::take(&mut self.local_cands) {
            if keep_host && c.kind() == CandidateKind::Host {
                self.local_cands.push(c);
            } else {
                self.rtc.direct_api().invalidate_candidate(&c);
            }
        }
        self.relay = None;
    }

    /// A new TURN allocation (relay and srflx candidates) from the current socket.
    fn regather(&mut self, now: Instant) {
        self.turn = self.cfg.turn.clone().map(TurnClient::new);
        self.gathered = false;
        self.gather_deadline = now + self.cfg.gather_timeout;
        match self.turn.as_mut() {
            Some(t) => t.allocate(now),
            None => self.finish_gathering(),
        }
        self.drain_turn(now);
    }
}

/// The session-level (or first) `a=ice-ufrag:` of an SDP.
pub(super) fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(|u| u.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media_session::MediaConfig;

    fn session(ip: &str, now: Instant) -> MediaSession {
        MediaSession::new(now, MediaConfig::new(ip.parse().unwrap(), None)).unwrap()
    }

    #[test]
    fn a_restart_offer_has_new_credentials_and_the_new_host() {
        let now = Instant::now();
        let mut a = session("10.0.0.1:4000", now);
        let mut b = session("10.0.0.2:4000", now);
        let offer = a.create_offer(now).unwrap();
        let answer = b.accept_offer(now, &offer).unwrap();
        a.accept_answer(now, &answer).unwrap();
        a.restart(
            now + Duration::from_secs(1),
            Some("10.9.0.1:5000".parse().unwrap()),
        );
        assert!(a.is_gathered(), "no TURN: nothing to wait for");
        let re = a.create_restart_offer(now).unwrap();
        assert_ne!(ice_ufrag(&re), ice_ufrag(&offer), "{re}");
        assert!(re.contains("10.9.0.1 5000 typ host"), "{re}");
        assert!(
            !re.contains("10.0.0.1 4000"),
            "the old host is retired: {re}"
        );
        let (answer2, restart) = b.accept_reoffer(now, &re).unwrap();
        assert!(restart);
        assert_ne!(ice_ufrag(&answer2), ice_ufrag(&answer), "{answer2}");
        a.accept_answer(now, &answer2).unwrap();
        assert!(a.is_restarting() && b.is_restarting());
    }

    #[test]
    fn a_reoffer_with_the_same_credentials_is_no_restart() {
        let now = Instant::now();
        let mut a = session("10.0.0.1:4000", now);
        let mut b = session("10.0.0.2:4000", now);
        let offer = a.create_offer(now).unwrap();
        b.accept_offer(now, &offer).unwrap();
        let (_, restart) = b.accept_reoffer(now, &offer).unwrap();
        assert!(!restart);
        assert!(!b.is_restarting());
        assert!(b.accept_reoffer(now, "v=0 garbage").is_err());
    }
}
