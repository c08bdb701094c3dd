//! Responses to our requests: registration, calls, authentication.

use super::*;

impl UserAgent {
    pub(super) fn on_response(&mut self, now: Instant, resp: Message) {
        let Some(code) = resp.code() else {
            return;
        };
        let Some(branch) = resp.top_via().and_then(|v| v.branch()).map(str::to_owned) else {
            return;
        };
        let is_cancel = resp.cseq().is_some_and(|c| c.method == Method::Cancel);
        let key = if is_cancel {
            format!("{branch}/cancel")
        } else {
            branch
        };
        if code < 200 {
            self.on_provisional(now, &key, code);
            return;
        }
        let Some(tx) = self.txs.remove(&key) else {
            self.stray_final(now, &resp);
            return;
        };
        if (code == 401 || code == 407) && self.retry_with_credentials(now, &tx, &resp) {
            if let TxKind::Invite(_) = tx.kind {
                self.ack_failure(&tx, &resp);
            }
            return;
        }
        match tx.kind.clone() {
            TxKind::Register => self.on_register_final(now, &tx, &resp, code),
            TxKind::Invite(id) => self.on_invite_final(now, &tx, &resp, &id, code),
            TxKind::Reinvite(id) if code < 300 => {
                self.send_ack(&resp, &id);
                self.events.push_back(UaEvent::Answered {
                    call: id,
                    sdp: resp.body,
                });
            }
            TxKind::Reinvite(id) => {
                self.ack_failure(&tx, &resp);
                if code == 481 {
                    self.end(&id, EndReason::RemoteHangup); // the dialog is gone (§12.2.1.2)
                } else {
                    self.events
                        .push_back(UaEvent::UpdateFailed { call: id, code });
                }
            }
            TxKind::Bye(_) | TxKind::Cancel(_) | TxKind::Refresh(_) => {}
        }
    }

    pub(super) fn on_provisional(&mut self, now: Instant, key: &str, code: u16) {
        let Some(tx) = self.txs.get_mut(key) else {
            return;
        };
        tx.proceeding = true;
        if matches!(tx.kind, TxKind::Invite(_)) {
            tx.resend_at = None;
            tx.deadline = now + TIMER_C;
        }
        if let TxKind::Invite(id) = tx.kind.clone() {
            if code == 180 || code == 183 {
                if let Some(call) = self.calls.get_mut(&id) {
                    if let CallState::Calling {
                        ringing: r @ false, ..
                    } = &mut call.state
                    {
                        *r = true;
                        self.events.push_back(UaEvent::Ringing { call: id });
                    }
                }
            }
        }
    }

    /// A 2xx retransmission for an INVITE we already finished: ACK again.
    pub(super) fn stray_final(&mut self, _now: Instant, resp: &Message) {
        let invite = resp.cseq().is_some_and(|c| c.method == Method::Invite);
        if invite && resp.code().is_some_and(|c| (200..300).contains(&c)) {
            let id = CallId(resp.call_id().unwrap_or_default().to_owned());
            if self.calls.contains_key(&id) {
                self.send_ack(resp, &id);
            }
        }
    }

    /// Answer a 401/407 once per fresh challenge. False: give up (wrong password).
    pub(super) fn retry_with_credentials(
        &mut self,
        now: Instant,
        tx: &ClientTx,
        resp: &Message,
    ) -> bool {
        let name = if resp.code() == Some(407) {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        let Some(ch) = Challenge::pick(resp.headers_named(&name)) else {
            return false;
        };
        if tx.authed && !ch.stale {
            return false;
        }
        if self.cfg.domain.is_none() && !ch.realm.eq_ignore_ascii_case(&self.domain) {
            self.adopt_domain(&ch.realm);
        }
        self.challenge = Some(ch);
        self.nc = 0;
        match tx.kind.clone() {
            TxKind::Register => {
                let expires = tx
                    .template
                    .header(&HeaderName::Expires)
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(self.cfg.expires);
                self.send_register(now, expires);
            }
            TxKind::Invite(id) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.local_cseq += 1;
                }
                self.send_invite(now, &id);
            }
            TxKind::Bye(_) | TxKind::Cancel(_) | TxKind::Reinvite(_) | TxKind::Refresh(_) => {
                let mut m = tx.template.clone();
                m.remove_all(&HeaderName::Via);
                self.send_request(now, tx.kind.clone(), m);
            }
        }
        true
    }

    /// Without `--domain`, the realm of the first challenge is our domain.
    pub(super) fn adopt_domain(&mut self, realm: &str) {
        tracing::info!(domain = realm, "SIP domain taken from the server's realm");
        self.domain = realm.to_owned();
        for call in self.calls.values_mut() {
            if call.role == Role::Caller && call.remote_tag.is_none() {
                call.local_uri = format!("sip:{}@{realm}", self.cfg.user);
                call.remote_uri = format!("sip:{}@{realm}", call.peer);
                call.remote_target = call.remote_uri.clone();
            }
        }
    }

    pub(super) fn on_register_final(
        &mut self,
        now: Instant,
        tx: &ClientTx,
        resp: &Message,
        code: u16,
    ) {
        let asked: u32 = tx
            .template
            .header(&HeaderName::Expires)
            .and_then(|e| e.parse().ok())
            .unwrap_or(self.cfg.expires);
        if (200..300).contains(&code) {
            if asked == 0 {
                return;
            }
            let granted = granted_expires(resp, &self.contact())
                .unwrap_or(asked)
                .max(1);
            self.reg.registered = true;
            if std::mem::take(&mut self.flow_changed) {
                self.refresh_dialogs(now);
            }
            let after = Duration::from_secs_f64(f64::from(granted) * REFRESH_AT);
            self.reg.refresh_at = Some(now + after);
            self.events.push_back(UaEvent::Registered {
                aor: self.aor(),
                expires: granted,
            });
            return;
        }
        if code == 423 {
            if let Some(min) = resp
                .header(&HeaderName::MinExpires)
                .and_then(|v| v.trim().parse().ok())
            {
                self.cfg.expires = min;
                self.send_register(now, min);
                return;
            }
        }
        self.reg.registered = false;
        let reason = reason_of(resp);
        let failure = match code {
            401 | 407 => RegFailure::WrongPassword {
                user: self.cfg.user.clone(),
            },
            403 => RegFailure::Forbidden { reason },
            _ => RegFailure::Refused { code, reason },
        };
        self.events.push_back(UaEvent::RegistrationFailed(failure));
    }

    pub(super) fn on_invite_final(
        &mut self,
        now: Instant,
        tx: &ClientTx,
        resp: &Message,
        id: &CallId,
        code: u16,
    ) {
        if (200..300).contains(&code) {
            if let Some(call) = self.calls.get_mut(id) {
                call.learn_from_2xx(resp);
            }
            self.send_ack(resp, id);
            let cancelled = self
                .calls
                .get(id)
                .is_some_and(|c| c.state == CallState::Cancelling);
            if let Some(call) = self.calls.get_mut(id) {
                call.state = CallState::Confirmed;
            }
            if cancelled {
                // Answered while we were cancelling: end it properly.
                self.send_in_dialog(now, id, Method::Bye);
                self.end(id, EndReason::LocalHangup);
                return;
            }
            self.events.push_back(UaEvent::Answered {
                call: id.clone(),
                sdp: resp.body.clone(),
            });
            return;
        }
        self.ack_failure(tx, resp);
        let cancelling = self
            .calls
            .get(id)
            .is_some_and(|c| c.state == CallState::Cancelling);
        let reason = if cancelling && code == 487 {
            EndReason::LocalHangup
        } else {
            EndReason::from_response(code, &reason_of(resp), &self.peer_of(id))
        };
        self.end(id, reason);
    }

    /// ACK for a non-2xx final answer: part of the INVITE transaction (§17.1.1.3).
    pub(super) fn ack_failure(&mut self, tx: &ClientTx, resp: &Message) {
        let Ok(inv) = natter_sip::parse(&tx.bytes, &self.limits) else {
            return;
        };
        let mut m = Message::request(Method::Ack, inv.request_uri().unwrap_or_default());
        if let Some(v) = inv.header(&HeaderName::Via) {
            m.push(HeaderName::Via, v);
        }
        for r in inv.headers_named(&HeaderName::Route) {
            m.push(HeaderName::Route, r);
        }
        m.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From, HeaderName::CallId] {
            if let Some(v) = inv.header(&name) {
                m.push(name.clone(), v);
            }
        }
        if let Some(to) = resp.header(&HeaderName::To) {
            m.push(HeaderName::To, to);
        }
        let n = inv.cseq().map(|c| c.seq).unwrap_or(1);
        m.push(HeaderName::CSeq, format!("{n} ACK"));
        self.transmits.push_back(m.to_bytes());
    }

    /// ACK for a 2xx: a new request inside the dialog (§13.2.2.4).
    pub(super) fn send_ack(&mut self, resp: &Message, id: &CallId) {
        let contact = self.contact();
        let (via, _) = self.via();
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let n = resp.cseq().map(|c| c.seq).unwrap_or(call.local_cseq);
        let ack = call.request(Method::Ack, n, via, &contact);
        self.transmits.push_back(ack.to_bytes());
    }
}

fn reason_of(resp: &Message) -> String {
    match &resp.start {
        natter_sip::msg::StartLine::Response { reason, .. } => reason.clone(),
        natter_sip::msg::StartLine::Request { .. } => String::new(),
    }
}

/// The expiry the registrar granted our Contact (its `expires` param, else Expires).
fn granted_expires(resp: &Message, contact: &str) -> Option<u32> {
    let ours = resp.headers_named(&HeaderName::Contact).find_map(|c| {
        let na = natter_sip::msg::NameAddr::parse(c)?;
        (na.uri == contact).then(|| na.params.get("expires").flatten()?.parse().ok())?
    });
    ours.or_else(|| resp.header(&HeaderName::Expires)?.trim().parse().ok())
}
