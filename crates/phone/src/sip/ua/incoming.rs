//! Requests from the server: INVITE, re-INVITE, ACK, CANCEL, BYE.

use super::*;

impl UserAgent {
    pub(super) fn on_request(&mut self, now: Instant, req: Message) {
        let id = CallId(req.call_id().unwrap_or_default().to_owned());
        let has_to_tag = req.to().is_some_and(|t| t.tag().is_some());
        match req.method().cloned() {
            Some(Method::Invite) if !has_to_tag => self.on_invite(req, id),
            Some(Method::Invite) => self.on_reinvite(req, id),
            Some(Method::Ack) => self.on_ack(id),
            Some(Method::Bye) => {
                let known = self.calls.contains_key(&id);
                let code = if known { 200 } else { 481 };
                self.reply(&req, code, None);
                self.end(&id, EndReason::RemoteHangup);
            }
            Some(Method::Cancel) => self.on_cancel(req, id),
            Some(Method::Options) => self.reply(&req, 200, None),
            _ => self.reply(&req, 501, None),
        }
        let _ = now;
    }

    pub(super) fn reply(&mut self, req: &Message, code: u16, to_tag: Option<&str>) {
        let tag = to_tag
            .map(str::to_owned)
            .unwrap_or_else(|| token(&mut self.rng, 10));
        let resp = req.response(code, reason_phrase(code), Some(&tag));
        self.transmits.push_back(resp.to_bytes());
    }

    pub(super) fn on_invite(&mut self, req: Message, id: CallId) {
        if let Some(call) = self.calls.get(&id) {
            // A retransmission: repeat our last answer.
            let again = match &call.ok {
                Some(ok) => ok.clone(),
                None => call
                    .invite
                    .response(180, "Ringing", Some(&call.local_tag))
                    .to_bytes(),
            };
            self.transmits.push_back(again);
            return;
        }
        let from = req
            .from()
            .map(|f| (f.uri.to_owned(), f.tag().map(str::to_owned)));
        let Some((remote_uri, Some(remote_tag))) = from else {
            return self.reply(&req, 400, None);
        };
        let local_uri = req
            .to()
            .map(|t| t.uri.to_owned())
            .unwrap_or_else(|| self.aor());
        let Some(remote_target) = req.header(&HeaderName::Contact).and_then(contact_uri) else {
            return self.reply(&req, 400, None);
        };
        let peer = natter_sip::msg::Uri::parse(&remote_uri)
            .and_then(|u| u.user_unescaped())
            .unwrap_or_else(|| remote_uri.clone());
        let call = Call {
            update: None,
            id: id.clone(),
            role: Role::Callee,
            state: CallState::Offered,
            peer: peer.clone(),
            local_uri,
            remote_uri,
            local_tag: token(&mut self.rng, 10),
            remote_tag: Some(remote_tag),
            remote_target,
            route_set: record_routes(&req),
            local_cseq: 0,
            invite: req,
            local_sdp: Vec::new(),
            ok: None,
        };
        let mut ringing = call.invite.response(180, "Ringing", Some(&call.local_tag));
        for rr in record_routes(&call.invite) {
            ringing.push(HeaderName::RecordRoute, rr);
        }
        ringing.push(HeaderName::Contact, format!("<{}>", self.contact()));
        self.transmits.push_back(ringing.to_bytes());
        let sdp = call.invite.body.clone();
        self.calls.insert(id.clone(), call);
        self.events.push_back(UaEvent::Incoming {
            call: id,
            from: peer,
            sdp,
        });
    }

    pub(super) fn on_reinvite(&mut self, req: Message, id: CallId) {
        let glare = self.reinvite_pending(&id);
        let Some(call) = self.calls.get_mut(&id) else {
            return self.reply(&req, 481, None);
        };
        let tag = call.local_tag.clone();
        let same = |m: &Message| m.cseq().map(|c| c.seq) == req.cseq().map(|c| c.seq);
        if call.update.as_ref().is_some_and(same) {
            return; // a retransmission of the re-INVITE we are answering
        }
        if call.state == CallState::Ended {
            return self.reply(&req, 481, Some(&tag));
        }
        if glare || call.update.is_some() {
            return self.reply(&req, 491, Some(&tag)); // RFC 3261 §14.2
        }
        if let Some(c) = req.header(&HeaderName::Contact).and_then(contact_uri) {
            call.remote_target = c; // target refresh (§12.2.2)
        }
        let sdp = req.body.clone();
        call.update = Some(req);
        self.events.push_back(UaEvent::Updated { call: id, sdp });
    }

    /// Our re-INVITE for `id` is still waiting for its final answer.
    pub(super) fn reinvite_pending(&self, id: &CallId) -> bool {
        self.txs
            .values()
            .any(|t| matches!(&t.kind, TxKind::Reinvite(c) if c == id))
    }

    pub(super) fn on_ack(&mut self, id: CallId) {
        self.ok_timers.remove(&id);
        if let Some(call) = self.calls.get_mut(&id) {
            if call.state == CallState::Answered {
                call.state = CallState::Confirmed;
                self.events.push_back(UaEvent::Confirmed { call: id });
            }
        }
    }

    pub(super) fn on_cancel(&mut self, req: Message, id: CallId) {
        let offered = self
            .calls
            .get(&id)
            .is_some_and(|c| c.state == CallState::Offered);
        self.reply(&req, if offered { 200 } else { 481 }, None);
        if offered {
            if let Some(call) = self.calls.get(&id) {
                let resp = call
                    .invite
                    .response(487, "Request Terminated", Some(&call.local_tag));
                self.transmits.push_back(resp.to_bytes());
            }
            self.end(&id, EndReason::Cancelled);
        }
    }
}
