//! Building and sending requests; retransmissions and timeouts.

use super::*;

impl UserAgent {
    pub(super) fn contact(&self) -> String {
        format!(
            "sip:{}@{};transport={};ob",
            self.cfg.user,
            self.cfg.local,
            self.cfg.transport.uri_param()
        )
    }

    pub(super) fn via(&mut self) -> (String, String) {
        let branch = format!("z9hG4bK{}", token(&mut self.rng, 16));
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.cfg.transport.via_token(),
            self.cfg.local
        );
        (via, branch)
    }

    pub(super) fn send_register(&mut self, now: Instant, expires: u32) {
        self.reg.cseq += 1;
        let mut m = Message::request(Method::Register, format!("sip:{}", self.domain));
        m.push(HeaderName::MaxForwards, "70");
        m.push(
            HeaderName::From,
            format!("<{}>;tag={}", self.aor(), self.reg.tag),
        );
        m.push(HeaderName::To, format!("<{}>", self.aor()));
        m.push(HeaderName::CallId, self.reg.call_id.clone());
        m.push(HeaderName::CSeq, format!("{} REGISTER", self.reg.cseq));
        m.push(
            HeaderName::Contact,
            format!(
                "<{}>;+sip.instance=\"<{}>\";reg-id=1",
                self.contact(),
                self.cfg.instance
            ),
        );
        m.push(HeaderName::Expires, expires.to_string());
        m.push(HeaderName::Supported, "outbound, path");
        m.push(
            HeaderName::UserAgent,
            concat!("natter-phone/", env!("CARGO_PKG_VERSION")),
        );
        self.send_request(now, TxKind::Register, m);
    }

    pub(super) fn send_invite(&mut self, now: Instant, id: &CallId) {
        let contact = self.contact();
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let mut m = Message::request(Method::Invite, call.remote_uri.clone());
        m.push(HeaderName::MaxForwards, "70");
        m.push(
            HeaderName::From,
            format!("<{}>;tag={}", call.local_uri, call.local_tag),
        );
        m.push(HeaderName::To, format!("<{}>", call.remote_uri));
        m.push(HeaderName::CallId, id.0.clone());
        m.push(HeaderName::CSeq, format!("{} INVITE", call.local_cseq));
        m.push(HeaderName::Contact, format!("<{contact}>"));
        m.push(HeaderName::Allow, "INVITE, ACK, CANCEL, BYE, OPTIONS");
        m.push(HeaderName::ContentType, "application/sdp");
        m.body = call.local_sdp.clone();
        let branch = self.send_request(now, TxKind::Invite(id.clone()), m);
        if let Some(call) = self.calls.get_mut(id) {
            call.state = CallState::Calling {
                branch: branch.clone(),
                ringing: false,
            };
            if let Some(tx) = self.txs.get(&branch) {
                if let Ok(sent) = natter_sip::parse(&tx.bytes, &self.limits) {
                    call.invite = sent;
                }
            }
        }
    }

    pub(super) fn send_cancel(&mut self, now: Instant, id: &CallId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        call.state = CallState::Cancelling;
        let inv = &call.invite;
        let mut m = Message::request(Method::Cancel, inv.request_uri().unwrap_or_default());
        for name in [HeaderName::Via, HeaderName::Route] {
            for v in inv.headers_named(&name).take(if name == HeaderName::Via {
                1
            } else {
                usize::MAX
            }) {
                m.push(name.clone(), v);
            }
        }
        for name in [
            HeaderName::MaxForwards,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
        ] {
            if let Some(v) = inv.header(&name) {
                m.push(name.clone(), v);
            }
        }
        let cseq = inv.cseq().map(|c| c.seq).unwrap_or(1);
        m.push(HeaderName::CSeq, format!("{cseq} CANCEL"));
        let bytes = m.to_bytes();
        let branch = inv
            .top_via()
            .and_then(|v| v.branch())
            .unwrap_or_default()
            .to_owned();
        // CANCEL shares the INVITE's branch but is its own transaction: key it apart.
        self.track(
            now,
            format!("{branch}/cancel"),
            TxKind::Cancel(id.clone()),
            m,
            bytes,
            false,
        );
    }

    pub(super) fn send_in_dialog(&mut self, now: Instant, id: &CallId, method: Method) {
        let contact = self.contact();
        let (via, branch) = self.via();
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        call.local_cseq += 1;
        let mut m = call.request(method.clone(), call.local_cseq, via, &contact);
        if method == Method::Invite {
            m.push(HeaderName::ContentType, "application/sdp");
            m.body = call.local_sdp.clone();
        }
        let kind = match method {
            Method::Invite => TxKind::Reinvite(id.clone()),
            Method::Options => TxKind::Refresh(id.clone()),
            _ => TxKind::Bye(id.clone()),
        };
        let bytes = m.to_bytes();
        self.track(now, branch, kind, m, bytes, false);
    }

    /// Add Via (and credentials when we hold a challenge), send, track. Returns the branch.
    pub(super) fn send_request(&mut self, now: Instant, kind: TxKind, template: Message) -> String {
        let (via, branch) = self.via();
        let mut m = template.clone();
        m.push_front(HeaderName::Via, via);
        let authed = self.add_credentials(&mut m, &kind);
        let bytes = m.to_bytes();
        self.track(now, branch.clone(), kind, template, bytes, authed);
        branch
    }

    pub(super) fn add_credentials(&mut self, m: &mut Message, kind: &TxKind) -> bool {
        let Some(ch) = self.challenge.clone() else {
            return false;
        };
        self.nc += 1;
        let cnonce = token(&mut self.rng, 12);
        let method = m
            .method()
            .map(|x| x.as_str().to_owned())
            .unwrap_or_default();
        let uri = m.request_uri().unwrap_or_default().to_owned();
        let value = ch.answer(
            &self.cfg.user,
            &self.cfg.password,
            &method,
            &uri,
            self.nc,
            &cnonce,
        );
        let name = match kind {
            TxKind::Register => HeaderName::Authorization,
            _ => HeaderName::ProxyAuthorization,
        };
        m.push(name, value);
        !ch.stale
    }

    pub(super) fn track(
        &mut self,
        now: Instant,
        key: String,
        kind: TxKind,
        template: Message,
        bytes: Vec<u8>,
        authed: bool,
    ) {
        let reliable = self.cfg.transport.is_reliable();
        self.transmits.push_back(bytes.clone());
        let t1 = self.cfg.t1;
        self.txs.insert(
            key,
            ClientTx {
                kind,
                template,
                bytes,
                authed,
                resend_at: (!reliable).then_some(now + t1),
                interval: t1,
                deadline: now + t1 * 64,
                proceeding: false,
            },
        );
    }

    pub(super) fn retransmit(&mut self, now: Instant) {
        let mut dead = Vec::new();
        for (branch, tx) in self.txs.iter_mut() {
            if tx.deadline <= now {
                dead.push(branch.clone());
                continue;
            }
            if tx.resend_at.is_some_and(|t| t <= now) {
                let invite = matches!(tx.kind, TxKind::Invite(_) | TxKind::Reinvite(_));
                tx.interval = if invite {
                    tx.interval * 2
                } else {
                    (tx.interval * 2).min(T2)
                };
                tx.resend_at = Some(now + tx.interval);
                self.transmits.push_back(tx.bytes.clone());
            }
        }
        for branch in dead {
            if let Some(tx) = self.txs.remove(&branch) {
                self.tx_timed_out(tx);
            }
        }
    }

    pub(super) fn tx_timed_out(&mut self, tx: ClientTx) {
        match tx.kind {
            TxKind::Register => {
                self.reg.registered = false;
                self.events
                    .push_back(UaEvent::RegistrationFailed(RegFailure::Timeout));
            }
            TxKind::Invite(id) if !tx.proceeding => self.end(&id, EndReason::Timeout),
            TxKind::Invite(id) => self.end(
                &id,
                EndReason::Offline {
                    target: self.peer_of(&id),
                },
            ),
            TxKind::Cancel(id) => self.end(&id, EndReason::LocalHangup),
            TxKind::Reinvite(call) => self
                .events
                .push_back(UaEvent::UpdateFailed { call, code: 408 }),
            TxKind::Bye(_) | TxKind::Refresh(_) => {}
        }
    }

    pub(super) fn resend_oks(&mut self, now: Instant) {
        let due: Vec<CallId> = self
            .ok_timers
            .iter()
            .filter(|(_, t)| t.0 <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some((_, interval, give_up)) = self.ok_timers.remove(&id) else {
                continue;
            };
            if now >= give_up {
                // No ACK: RFC 3261 §13.3.1.4 says end the call with a BYE.
                self.send_in_dialog(now, &id, Method::Bye);
                self.end(&id, EndReason::Timeout);
                continue;
            }
            if let Some(ok) = self.calls.get(&id).and_then(|c| c.ok.clone()) {
                self.transmits.push_back(ok);
                let next = (interval * 2).min(T2);
                self.ok_timers.insert(id, (now + next, next, give_up));
            }
        }
    }

    pub(super) fn peer_of(&self, id: &CallId) -> String {
        self.calls
            .get(id)
            .map(|c| c.peer.clone())
            .unwrap_or_default()
    }

    pub(super) fn end(&mut self, id: &CallId, reason: EndReason) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.state == CallState::Ended {
            return;
        }
        call.state = CallState::Ended;
        self.ok_timers.remove(id);
        tracing::info!(call = %id, %reason, "call ended");
        self.events.push_back(UaEvent::Ended {
            call: id.clone(),
            reason,
        });
    }
}
