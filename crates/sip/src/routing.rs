//! In-dialog routing, ACK and CANCEL handling, and the transaction timers
//! of the proxy.

use std::time::Instant;

use tracing::debug;

use crate::flow::Flow;
use crate::msg::reason_phrase;
use crate::proxy::slim;
use crate::server::Server;
use crate::timers::{ClientTimer, ServerTimer, Timer};
use crate::tx::{server_key, ClientState, ServerState};
use crate::{HeaderName, Message, Method};

impl Server {
    /// ACK: absorbed when it acknowledges our non-2xx final response,
    /// otherwise (ACK for a 2xx) routed along the dialog.
    pub(crate) fn handle_ack(&mut self, now: Instant, flow: Flow, mut req: Message) {
        if let Some(sid) = server_key(&req, true).and_then(|k| self.txs.find_server(&k)) {
            if let Some(server) = self.txs.server(sid) {
                if server.state == ServerState::Completed {
                    server.state = ServerState::Done;
                    self.timers.cancel(Timer::Server {
                        tx: sid,
                        kind: ServerTimer::Retransmit,
                    }); // Timer G stops
                }
            }
            return;
        }
        self.pop_our_routes(&mut req, &flow);
        if req.to().is_some_and(|t| t.tag().is_some()) {
            self.route_in_dialog(now, flow, req, (String::new(), false));
        }
    }

    /// CANCEL from the caller (§16.10): 200 to the CANCEL, CANCEL to every
    /// pending branch; the branches' 487s then make the final answer.
    pub(crate) fn handle_cancel(&mut self, now: Instant, flow: Flow, req: Message) {
        if let Some(bytes) = self.txs.cached_response(&req) {
            return self.send(flow, bytes);
        }
        let sid = server_key(&req, true).and_then(|k| self.txs.find_server(&k));
        let Some(sid) = sid else {
            return self.answer_cached(now, &flow, &req, 481, reason_phrase(481), Vec::new());
        };
        self.answer_cached(now, &flow, &req, 200, "OK", Vec::new());
        let Some(server) = self.txs.server(sid) else {
            return;
        };
        if server.state != ServerState::Proceeding || server.cancelled {
            return;
        }
        server.cancelled = true;
        let branches = server.branches.clone();
        for cid in branches {
            self.cancel_branch(now, cid);
        }
    }

    /// A request inside a dialog we record-routed: forward it to the other
    /// party over that party's flow. Only the two parties may use it.
    pub(crate) fn route_in_dialog(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Message,
        key: (String, bool),
    ) {
        let ack = req.method() == Some(&Method::Ack);
        let ids = (
            req.call_id(),
            req.from().and_then(|f| f.tag()),
            req.to().and_then(|t| t.tag()),
        );
        let (Some(call_id), Some(from_tag), Some(to_tag)) = ids else {
            return;
        };
        let Some(dialog) = self.dialogs.touch(call_id, from_tag, to_tag, now) else {
            if !ack {
                self.answer_cached(now, &flow, &req, 481, reason_phrase(481), Vec::new());
            }
            return;
        };
        let (source, target, source_gone) = if from_tag == dialog.caller_tag {
            (dialog.caller, dialog.callee, dialog.caller_gone)
        } else {
            (dialog.callee, dialog.caller, dialog.callee_gone)
        };
        if source.remote.ip() != flow.remote.ip() {
            debug!(remote = %self.cfg.redaction.pii(flow.remote), "in-dialog request from a stranger refused");
            if !ack {
                self.answer_cached(
                    now,
                    &flow,
                    &req,
                    403,
                    "Forbidden (not a party of this dialog)",
                    Vec::new(),
                );
            }
            return;
        }
        // A request from the party's address over another flow (a new
        // connection, another port) is routed, but the dialog moves to that
        // flow only when the party's own connection has closed (it
        // reconnected): anyone behind the same NAT shares the address, and
        // moving a live party's dialog on their word would hand them the
        // other party's requests. A device that moved re-registers over its
        // new flow, and the registrar moves its dialogs then.
        if source != flow && source_gone {
            self.dialogs.move_flow(&source, flow);
        }
        if req.method() == Some(&Method::Bye) {
            let (c, f, t) = (call_id.to_owned(), from_tag.to_owned(), to_tag.to_owned());
            self.dialogs.remove(&c, &f, &t);
        }
        let mut out = req.clone();
        out.set(
            HeaderName::MaxForwards,
            req.max_forwards()
                .unwrap_or(70)
                .saturating_sub(1)
                .to_string(),
        );
        let branch = self.new_branch(0);
        if ack {
            let via = format!(
                "SIP/2.0/{} {};branch={branch}",
                target.transport.via_token(),
                self.sent_by(&target)
            );
            out.push_front(HeaderName::Via, via);
            return self.send(target, out.to_bytes());
        }
        let invite = req.method() == Some(&Method::Invite);
        let sid = self.txs.insert_server(crate::tx::ServerTx {
            key,
            flow,
            request: slim(&req),
            invite,
            state: ServerState::Proceeding,
            last: None,
            branches: Vec::new(),
            finals: Vec::new(),
            cancelled: false,
            interval: self.cfg.t1,
        });
        self.timers.set(
            now + self.cfg.t1 * 128,
            Timer::Server {
                tx: sid,
                kind: ServerTimer::Linger,
            },
        );
        self.send_client(now, sid, target, out, branch, invite);
    }

    pub(crate) fn on_client_timer(&mut self, now: Instant, cid: u64, kind: ClientTimer) {
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        let (state, invite, sid) = (client.state, client.invite, client.server);
        match kind {
            ClientTimer::Retransmit => {
                let resend =
                    state == ClientState::Calling || (!invite && state == ClientState::Proceeding);
                if !resend {
                    return;
                }
                client.interval = if invite {
                    client.interval * 2
                } else {
                    (client.interval * 2).min(self.cfg.t2)
                };
                let (flow, bytes, next) = (client.flow, client.bytes.clone(), client.interval);
                self.send(flow, bytes);
                self.timers.set(
                    now + next,
                    Timer::Client {
                        tx: cid,
                        kind: ClientTimer::Retransmit,
                    },
                );
            }
            ClientTimer::CancelRetransmit => {
                let Some(cancel) = client.cancel.clone() else {
                    return;
                };
                if state == ClientState::Completed {
                    return;
                }
                client.cancel_interval = (client.cancel_interval * 2).min(self.cfg.t2);
                let (flow, next) = (client.flow, client.cancel_interval);
                self.send(flow, cancel);
                self.timers.set(
                    now + next,
                    Timer::Client {
                        tx: cid,
                        kind: ClientTimer::CancelRetransmit,
                    },
                );
            }
            ClientTimer::C if state == ClientState::Proceeding => {
                debug!(branch = %client.branch, "timer C: cancelling an unanswered branch");
                self.cancel_branch(now, cid);
            }
            ClientTimer::C => {
                if state == ClientState::Calling {
                    self.give_up_branch(now, cid, sid);
                }
            }
            ClientTimer::Timeout => {
                // Timer B only runs until a provisional arrives; after a
                // CANCEL this is the give-up deadline for the branch.
                let cancelling = client.cancel.is_some() || client.cancel_pending;
                let due = match state {
                    ClientState::Completed => false,
                    ClientState::Proceeding => !invite || cancelling,
                    ClientState::Calling => true,
                };
                if due {
                    self.give_up_branch(now, cid, sid);
                }
            }
            ClientTimer::Linger => {
                if state == ClientState::Completed {
                    self.txs.remove_client(cid, &mut self.timers);
                }
            }
        }
    }

    /// Timer B/F (or no answer after our CANCEL): the branch ends with a
    /// locally made 408, or 487 when cancelled.
    fn give_up_branch(&mut self, now: Instant, cid: u64, sid: u64) {
        let Some(client) = self.txs.client(cid) else {
            return;
        };
        client.state = ClientState::Completed;
        let cancelled = client.cancel.is_some() || client.cancel_pending;
        client.final_code = Some(if cancelled { 487 } else { 408 });
        self.txs.remove_client(cid, &mut self.timers);
        let Some(server) = self.txs.server(sid) else {
            return;
        };
        let code = if cancelled || server.cancelled {
            487
        } else {
            408
        };
        let reason = if code == 408 {
            "Request Timeout (no answer)"
        } else {
            "Request Terminated"
        };
        let request = server.request.clone();
        let tag = self.local_tag(&request);
        let resp = request.response(code, reason, Some(&tag));
        let Some(server) = self.txs.server(sid) else {
            return;
        };
        server.finals.push(resp);
        self.maybe_finish(now, sid);
    }

    pub(crate) fn on_server_timer(&mut self, now: Instant, sid: u64, kind: ServerTimer) {
        let Some(server) = self.txs.server(sid) else {
            return;
        };
        match kind {
            ServerTimer::Retransmit => {
                if server.state != ServerState::Completed {
                    return;
                }
                server.interval = (server.interval * 2).min(self.cfg.t2);
                let (flow, next) = (server.flow, server.interval);
                if let Some(bytes) = server.last.clone() {
                    self.send(flow, bytes);
                }
                self.timers.set(
                    now + next,
                    Timer::Server {
                        tx: sid,
                        kind: ServerTimer::Retransmit,
                    },
                );
            }
            ServerTimer::Linger => {
                if server.state == ServerState::Proceeding {
                    // Safety net reached while branches still run: finish now.
                    let branches = server.branches.clone();
                    for cid in branches {
                        self.give_up_branch(now, cid, sid);
                    }
                }
                if let Some(server) = self.txs.remove_server(sid, &mut self.timers) {
                    for cid in server.branches {
                        if self
                            .txs
                            .client(cid)
                            .is_some_and(|c| c.state != ClientState::Completed)
                        {
                            self.txs.remove_client(cid, &mut self.timers);
                        }
                    }
                }
            }
        }
    }
}
