//! The stateful forking proxy (RFC 3261 §16): authenticate the caller,
//! look the callee up, fork to every binding over its flow, pick the best
//! response (§16.7), CANCEL the rest, record-route.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use tracing::{debug, info};

use crate::flow::Flow;
use crate::location::Binding;
use crate::msg::{Message, StartLine, Uri, Via};
use crate::server::Server;
use crate::timers::{ClientTimer, ServerTimer, Timer};
use crate::tx::{server_key, ClientState, ClientTx, ServerState, ServerTx};
use crate::{HeaderName, Limits, Method};

impl Server {
    /// Any request other than REGISTER, ACK, CANCEL and OPTIONS-to-us.
    pub(crate) fn handle_proxy_request(&mut self, now: Instant, flow: Flow, mut req: Message) {
        let invite = req.method() == Some(&Method::Invite);
        let Some(key) = server_key(&req, invite) else {
            return;
        };
        if let Some(id) = self.txs.find_server(&key) {
            if let Some(bytes) = self.txs.server(id).and_then(|t| t.last.clone()) {
                self.send(flow, bytes); // retransmission (§17.2)
            }
            return;
        }
        if let Some(bytes) = self.txs.cached_response(&req) {
            return self.send(flow, bytes);
        }
        if req.max_forwards() == Some(0) {
            return self.answer_cached(now, &flow, &req, 483, "Too Many Hops", Vec::new());
        }
        self.pop_our_routes(&mut req, &flow);
        if req.to().is_some_and(|t| t.tag().is_some()) {
            return self.route_in_dialog(now, flow, req, key);
        }
        let Some(callee) = self.check_new_request(now, &flow, &req) else {
            return;
        };
        let targets: Vec<Binding> = self.location.lookup(&callee, now).cloned().collect();
        if targets.is_empty() {
            let reason = "Temporarily Unavailable (the callee has no registered device)";
            return self.answer_cached(now, &flow, &req, 480, reason, Vec::new());
        }
        info!(callee = %callee, branches = targets.len(), method = %req.method().map(|m| m.as_str()).unwrap_or(""), "forking");
        let sid = self.open_server_tx(now, flow, &req, key, invite);
        let loop_hash = self.loop_hash(&req);
        for target in &targets {
            self.fork(now, sid, &req, target, loop_hash);
        }
    }

    /// Checks for a dialog-creating request; answers and returns `None` when
    /// it must stop here, else the callee's account id.
    fn check_new_request(&mut self, now: Instant, flow: &Flow, req: &Message) -> Option<String> {
        if req.header(&HeaderName::Route).is_some() {
            let reason = "Forbidden (routing through other servers is not allowed)";
            self.answer_cached(now, flow, req, 403, reason, Vec::new());
            return None;
        }
        let ruri = req.request_uri().and_then(Uri::parse)?;
        if !self.is_our_host(ruri.host, flow) {
            let reason = format!(
                "Forbidden (only calls to {} are served here)",
                self.cfg.domain
            );
            self.answer_cached(now, flow, req, 403, &reason, Vec::new());
            return None;
        }
        let from = req.from().and_then(|f| f.parsed_uri());
        let caller = match from {
            Some(u) if self.is_our_host(u.host, flow) => u.user_unescaped(),
            _ => None,
        };
        let Some(caller) = caller else {
            let reason = format!(
                "Forbidden (calls are accepted only from accounts of {})",
                self.cfg.domain
            );
            self.answer_cached(now, flow, req, 403, &reason, Vec::new());
            return None;
        };
        if self.is_loop(req, flow) {
            self.answer_cached(now, flow, req, 482, "Loop Detected", Vec::new());
            return None;
        }
        if !self.authorize(now, flow, req, &caller, true) {
            return None;
        }
        let callee = ruri.user_unescaped();
        match callee {
            Some(c) if self.accounts.digest_keys(&c).is_some() => Some(c),
            _ => {
                self.answer_cached(
                    now,
                    flow,
                    req,
                    404,
                    "Not Found (no such account)",
                    Vec::new(),
                );
                None
            }
        }
    }

    fn open_server_tx(
        &mut self,
        now: Instant,
        flow: Flow,
        req: &Message,
        key: (String, bool),
        invite: bool,
    ) -> u64 {
        let mut tx = ServerTx {
            key,
            flow,
            request: slim(req),
            invite,
            state: ServerState::Proceeding,
            last: None,
            branches: Vec::new(),
            finals: Vec::new(),
            cancelled: false,
            interval: self.cfg.t1,
        };
        if invite {
            let trying = req.response(100, "Trying", None).to_bytes();
            self.send(flow, trying.clone());
            tx.last = Some(trying);
        }
        let sid = self.txs.insert_server(tx);
        // Safety net: a server transaction never outlives Timer C plus H.
        let horizon = self.cfg.timer_c + self.cfg.t1 * 128;
        self.timers.set(
            now + horizon,
            Timer::Server {
                tx: sid,
                kind: ServerTimer::Linger,
            },
        );
        sid
    }

    /// Send one branch (§16.6).
    fn fork(&mut self, now: Instant, sid: u64, req: &Message, target: &Binding, loop_hash: u64) {
        let Some(server_flow) = self.txs.server(sid).map(|s| s.flow) else {
            return;
        };
        let invite = req.method() == Some(&Method::Invite);
        let mut out = req.clone();
        out.set_request_uri(target.contact.clone());
        out.set(
            HeaderName::MaxForwards,
            req.max_forwards()
                .unwrap_or(70)
                .saturating_sub(1)
                .to_string(),
        );
        out.remove_all(&HeaderName::ProxyAuthorization);
        if invite {
            let rr_in = self.record_route(&server_flow);
            let rr_out = self.record_route(&target.flow);
            out.push_front(HeaderName::RecordRoute, rr_in.clone());
            if rr_out != rr_in {
                out.push_front(HeaderName::RecordRoute, rr_out); // RFC 5658 double record-route
            }
        }
        let branch = self.new_branch(loop_hash);
        self.send_client(now, sid, target.flow, out, branch, invite);
    }

    /// Add our Via, send, and start the client transaction's timers.
    pub(crate) fn send_client(
        &mut self,
        now: Instant,
        sid: u64,
        flow: Flow,
        mut out: Message,
        branch: String,
        invite: bool,
    ) {
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            flow.transport.via_token(),
            self.sent_by(&flow)
        );
        out.push_front(HeaderName::Via, via);
        let mut bytes = out.to_bytes();
        let (flow, udp) = match self.large_request_flow(now, &flow, bytes.len()) {
            Some(tcp) => {
                crate::large::set_top_via_transport(&mut out, tcp.transport);
                bytes = out.to_bytes();
                (tcp, Some(flow))
            }
            None => (flow, None),
        };
        self.send(flow, bytes.clone());
        let cid = self.txs.insert_client(ClientTx {
            branch,
            server: sid,
            flow,
            invite,
            bytes,
            state: ClientState::Calling,
            interval: self.cfg.t1,
            cancel: None,
            cancel_pending: false,
            cancel_interval: self.cfg.t1,
            final_code: None,
            udp,
        });
        if let Some(s) = self.txs.server(sid) {
            s.branches.push(cid);
        }
        if !flow.transport.is_reliable() {
            self.timers.set(
                now + self.cfg.t1,
                Timer::Client {
                    tx: cid,
                    kind: ClientTimer::Retransmit,
                },
            );
        }
        self.timers.set(
            now + self.cfg.t1 * 64,
            Timer::Client {
                tx: cid,
                kind: ClientTimer::Timeout,
            },
        );
        if invite {
            self.timers.set(
                now + self.cfg.timer_c,
                Timer::Client {
                    tx: cid,
                    kind: ClientTimer::C,
                },
            );
        }
    }

    /// `<sip:host:port;transport=x;lr>` for a flow.
    fn record_route(&self, flow: &Flow) -> String {
        format!(
            "<sip:{};transport={};lr>",
            self.sent_by(flow),
            flow.transport.uri_param()
        )
    }

    /// Remove Route values naming us (§16.4).
    pub(crate) fn pop_our_routes(&self, req: &mut Message, flow: &Flow) {
        while let Some(route) = req.header(&HeaderName::Route) {
            let ours = crate::msg::NameAddr::parse(route)
                .and_then(|n| n.parsed_uri())
                .is_some_and(|u| self.is_our_host(u.host, flow));
            if !ours {
                break;
            }
            req.pop_front(&HeaderName::Route);
        }
    }

    /// §16.6 step 8: a hash of what identifies the request at this hop.
    fn loop_hash(&self, req: &Message) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cfg.seed.hash(&mut h);
        req.request_uri().hash(&mut h);
        req.call_id().hash(&mut h);
        req.cseq().map(|c| c.seq).hash(&mut h);
        req.from().and_then(|f| f.tag()).hash(&mut h);
        h.finish()
    }

    /// §16.3 step 4: one of our Vias carries this request's loop hash.
    fn is_loop(&self, req: &Message, flow: &Flow) -> bool {
        let prefix = format!("z9hG4bK-nt{:016x}.", self.loop_hash(req));
        req.headers_named(&HeaderName::Via)
            .filter_map(Via::parse)
            .any(|v| {
                self.is_our_host(v.host, flow) && v.branch().is_some_and(|b| b.starts_with(&prefix))
            })
    }

    /// A response from downstream.
    pub(crate) fn handle_response(&mut self, now: Instant, flow: Flow, resp: Message) {
        let Some(branch) = resp.top_via().and_then(|v| v.branch().map(str::to_owned)) else {
            return;
        };
        let Some(cid) = self.txs.find_client(&branch) else {
            debug!(branch, "response matches no transaction; dropped");
            return;
        };
        let code = resp.code().unwrap_or(0);
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        if client.flow.remote.ip() != flow.remote.ip() {
            debug!(branch, "response from an unexpected address; dropped");
            return;
        }
        if resp.cseq().is_some_and(|c| c.method == Method::Cancel) {
            client.cancel = None; // our CANCEL was answered
            self.timers.cancel(Timer::Client {
                tx: cid,
                kind: ClientTimer::CancelRetransmit,
            });
            return;
        }
        let (sid, state) = (client.server, client.state);
        let mut up = resp;
        up.pop_front(&HeaderName::Via);
        if up.header(&HeaderName::Via).is_none() {
            // A sloppy UA copied the Via of our CANCEL, not of the INVITE:
            // restore the caller's Vias from the server transaction.
            let Some(server) = self.txs.server(sid) else {
                return;
            };
            let vias: Vec<String> = server
                .request
                .headers_named(&HeaderName::Via)
                .map(str::to_owned)
                .collect();
            for via in vias.into_iter().rev() {
                up.push_front(HeaderName::Via, via);
            }
        }
        match code {
            100 => self.on_provisional(now, cid, None),
            101..=199 => self.on_provisional(now, cid, Some(up)),
            200..=299 => self.on_success(now, cid, sid, state, up),
            _ => self.on_failure(now, cid, sid, state, up),
        }
    }

    fn on_provisional(&mut self, now: Instant, cid: u64, up: Option<Message>) {
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        if client.state == ClientState::Completed {
            return;
        }
        client.state = ClientState::Proceeding;
        let (sid, invite, pending) = (client.server, client.invite, client.cancel_pending);
        let cancelling = pending || client.cancel.is_some();
        if invite {
            // Timers A and B run only in Calling (§17.1.1.2); after a CANCEL
            // the Timeout is the deadline for the branch's answer and stays.
            self.timers.cancel(Timer::Client {
                tx: cid,
                kind: ClientTimer::Retransmit,
            });
            if !cancelling {
                self.timers.cancel(Timer::Client {
                    tx: cid,
                    kind: ClientTimer::Timeout,
                });
            }
        }
        if pending {
            self.send_cancel(now, cid);
        } else if invite {
            self.timers.set(
                now + self.cfg.timer_c,
                Timer::Client {
                    tx: cid,
                    kind: ClientTimer::C,
                },
            );
        }
        let Some(up) = up else { return };
        let Some(server) = self.txs.server(sid) else {
            return;
        };
        if server.state == ServerState::Proceeding {
            let bytes = up.to_bytes();
            server.last = Some(bytes.clone());
            let flow = server.flow;
            self.send(flow, bytes);
        }
    }

    fn on_success(&mut self, now: Instant, cid: u64, sid: u64, state: ClientState, up: Message) {
        let Some(server) = self.txs.server(sid) else {
            return; // late retransmission after everything was forgotten
        };
        let caller = server.flow;
        let invite = server.invite;
        server.state = ServerState::Done;
        server.last = None;
        self.timers.cancel(Timer::Server {
            tx: sid,
            kind: ServerTimer::Retransmit,
        });
        let bytes = up.to_bytes();
        self.send(caller, bytes);
        if state == ClientState::Completed {
            return; // a retransmitted 2xx, forwarded again (RFC 6026)
        }
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        client.state = ClientState::Completed;
        client.final_code = Some(200);
        client.bytes = Vec::new();
        // A branch moved to TCP for its size keeps the device's own flow for
        // the dialog: later (small) requests go where it registered.
        let callee = client.udp.unwrap_or(client.flow);
        if invite {
            if let (Some(call_id), Some(from), Some(to)) = (up.call_id(), up.from(), up.to()) {
                if let (Some(ft), Some(tt)) = (from.tag(), to.tag()) {
                    self.dialogs.insert(call_id, ft, tt, caller, callee, now);
                }
            }
            self.cancel_other_branches(now, sid, cid);
        }
        self.linger_client(now, cid, self.cfg.t1 * 64); // Timer M
        self.linger_server(now, sid);
    }

    fn on_failure(&mut self, now: Instant, cid: u64, sid: u64, state: ClientState, up: Message) {
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        let invite = client.invite;
        if state == ClientState::Completed {
            if invite {
                self.send_ack(cid, &up); // the ACK was lost: send it again
            }
            return;
        }
        client.state = ClientState::Completed;
        let code = up.code().unwrap_or(500);
        client.final_code = Some(code);
        if invite {
            self.send_ack(cid, &up);
        }
        let reliable = self
            .txs
            .client(cid)
            .is_some_and(|c| c.flow.transport.is_reliable());
        let linger = if reliable {
            std::time::Duration::ZERO
        } else {
            self.cfg.t1 * 64
        };
        self.linger_client(now, cid, linger); // Timer D / K
        if let Some(server) = self.txs.server(sid) {
            server.finals.push(up);
        }
        if code >= 600 {
            self.cancel_other_branches(now, sid, cid);
        }
        self.maybe_finish(now, sid);
    }

    /// When every branch has a final response, send the best one up (§16.7).
    pub(crate) fn maybe_finish(&mut self, now: Instant, sid: u64) {
        let Some(server) = self.txs.server(sid) else {
            return;
        };
        if server.state != ServerState::Proceeding {
            return;
        }
        let branches = server.branches.clone();
        let all_done = branches
            .iter()
            .all(|b| self.txs.client(*b).is_none_or(|c| c.final_code.is_some()));
        if !all_done {
            return;
        }
        let Some(server) = self.txs.server(sid) else {
            return;
        };
        let best = match best_response(&server.finals) {
            Some(b) => b.clone(),
            None => {
                let code = if server.cancelled { 487 } else { 408 };
                let request = self.txs_request(sid);
                let tag = self.local_tag(&request);
                let reason = if code == 408 {
                    "Request Timeout (no device answered)"
                } else {
                    "Request Terminated"
                };
                request.response(code, reason, Some(&tag))
            }
        };
        let mut best = best;
        if best.code() == Some(503) {
            best.start = StartLine::Response {
                code: 500,
                reason: "Server Internal Error (callee's server unavailable)".into(),
            };
        }
        let Some(server) = self.txs.server(sid) else {
            return;
        };
        server.state = ServerState::Completed;
        let bytes = best.to_bytes();
        server.last = Some(bytes.clone());
        let (flow, invite) = (server.flow, server.invite);
        self.send(flow, bytes);
        if invite && !flow.transport.is_reliable() {
            self.timers.set(
                now + self.cfg.t1,
                Timer::Server {
                    tx: sid,
                    kind: ServerTimer::Retransmit,
                },
            );
        }
        self.linger_server(now, sid);
    }

    fn txs_request(&mut self, sid: u64) -> Message {
        self.txs
            .server(sid)
            .map(|s| s.request.clone())
            .unwrap_or_else(|| Message::request(Method::Invite, ""))
    }

    fn linger_server(&mut self, now: Instant, sid: u64) {
        self.timers.set(
            now + self.cfg.t1 * 64,
            Timer::Server {
                tx: sid,
                kind: ServerTimer::Linger,
            },
        );
    }

    /// The branch is Completed: only its Linger timer (D, K, M) remains.
    pub(crate) fn linger_client(&mut self, now: Instant, cid: u64, after: std::time::Duration) {
        self.timers.cancel_client(cid, None);
        self.timers.set(
            now + after,
            Timer::Client {
                tx: cid,
                kind: ClientTimer::Linger,
            },
        );
    }

    /// Re-read the request a client transaction sent.
    pub(crate) fn sent_request(&mut self, cid: u64) -> Option<Message> {
        let client = self.txs.client(cid)?;
        let limits = Limits {
            max_message: usize::MAX,
            max_headers: usize::MAX,
            max_header_len: usize::MAX,
        };
        crate::parse(&client.bytes, &limits).ok()
    }

    /// The hop-by-hop ACK for a non-2xx final response (§17.1.1.3).
    fn send_ack(&mut self, cid: u64, resp: &Message) {
        let Some(sent) = self.sent_request(cid) else {
            return;
        };
        let Some(flow) = self.txs.client(cid).map(|c| c.flow) else {
            return;
        };
        let mut ack = Message::request(Method::Ack, sent.request_uri().unwrap_or_default());
        for (name, value) in copied_for_cancel(&sent) {
            ack.push(name, value);
        }
        ack.set(
            HeaderName::To,
            resp.header(&HeaderName::To).unwrap_or_default(),
        );
        if let Some(cseq) = sent.cseq() {
            ack.set(HeaderName::CSeq, format!("{} ACK", cseq.seq));
        }
        self.send(flow, ack.to_bytes());
    }

    /// Tell the other branches to stop (§16.7 step 10, §16.10).
    pub(crate) fn cancel_other_branches(&mut self, now: Instant, sid: u64, except: u64) {
        let branches = self
            .txs
            .server(sid)
            .map(|s| s.branches.clone())
            .unwrap_or_default();
        for cid in branches.into_iter().filter(|c| *c != except) {
            self.cancel_branch(now, cid);
        }
    }

    pub(crate) fn cancel_branch(&mut self, now: Instant, cid: u64) {
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        if client.state == ClientState::Completed || client.cancel.is_some() || !client.invite {
            return;
        }
        if client.state == ClientState::Calling {
            client.cancel_pending = true; // §9.1: wait for a provisional
        } else {
            self.send_cancel(now, cid);
        }
        // If the branch never answers, give up on it after 64*T1 (or at
        // Timer B, when that is still armed and earlier).
        self.timers.set_no_later(
            now + self.cfg.t1 * 64,
            Timer::Client {
                tx: cid,
                kind: ClientTimer::Timeout,
            },
        );
    }

    /// Send (or, after a change of transport, send again) the branch's
    /// CANCEL, built from the request as sent.
    pub(crate) fn send_cancel(&mut self, now: Instant, cid: u64) {
        let Some(sent) = self.sent_request(cid) else {
            return;
        };
        let mut cancel = Message::request(Method::Cancel, sent.request_uri().unwrap_or_default());
        for (name, value) in copied_for_cancel(&sent) {
            cancel.push(name, value);
        }
        if let Some(cseq) = sent.cseq() {
            cancel.set(HeaderName::CSeq, format!("{} CANCEL", cseq.seq));
        }
        let bytes = cancel.to_bytes();
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        client.cancel_pending = false;
        client.cancel = Some(bytes.clone());
        let flow = client.flow;
        self.send(flow, bytes);
        if !flow.transport.is_reliable() {
            self.timers.set(
                now + self.cfg.t1,
                Timer::Client {
                    tx: cid,
                    kind: ClientTimer::CancelRetransmit,
                },
            );
        }
    }
}

/// Headers a CANCEL or ACK copies from the request (§9.1, §17.1.1.3).
fn copied_for_cancel(sent: &Message) -> Vec<(HeaderName, String)> {
    let mut out = Vec::new();
    if let Some(via) = sent.header(&HeaderName::Via) {
        out.push((HeaderName::Via, via.to_owned()));
    }
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        if let Some(v) = sent.header(&name) {
            out.push((name, v.to_owned()));
        }
    }
    for route in sent.headers_named(&HeaderName::Route) {
        out.push((HeaderName::Route, route.to_owned()));
    }
    out.push((HeaderName::MaxForwards, "70".into()));
    out
}

/// What responses copy from a request: start line, Via, From, To, Call-ID, CSeq.
pub(crate) fn slim(req: &Message) -> Message {
    let keep = |n: &HeaderName| {
        matches!(
            n,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        )
    };
    Message {
        start: req.start.clone(),
        headers: req
            .headers
            .iter()
            .filter(|h| keep(&h.name))
            .cloned()
            .collect(),
        body: Vec::new(),
    }
}

/// §16.7 step 6: any 6xx; else the lowest class, preferring within 4xx the
/// answers that tell the caller most.
pub(crate) fn best_response(finals: &[Message]) -> Option<&Message> {
    const PREFERRED: [u16; 9] = [401, 407, 415, 420, 484, 486, 480, 487, 404];
    let rank = |m: &Message| {
        let code = m.code().unwrap_or(500);
        let class = if code >= 600 { 0 } else { code / 100 };
        let within = PREFERRED
            .iter()
            .position(|p| *p == code)
            .unwrap_or(PREFERRED.len() + usize::from(code == 408));
        (class, within)
    };
    finals.iter().min_by_key(|m| rank(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(code: u16) -> Message {
        Message {
            start: StartLine::Response {
                code,
                reason: String::new(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn best_response_follows_16_7() {
        let pick = |codes: &[u16]| {
            let finals: Vec<Message> = codes.iter().map(|c| resp(*c)).collect();
            best_response(&finals).and_then(|m| m.code())
        };
        assert_eq!(pick(&[486, 603, 302]), Some(603), "6xx wins");
        assert_eq!(pick(&[500, 404, 302]), Some(302), "lowest class");
        assert_eq!(pick(&[408, 486]), Some(486), "busy beats no-answer");
        assert_eq!(pick(&[408, 480]), Some(480));
        assert_eq!(pick(&[408, 403]), Some(403));
        assert_eq!(
            pick(&[503, 500]),
            Some(503),
            "converted to 500 by the caller"
        );
        assert_eq!(pick(&[]), None);
    }
}
