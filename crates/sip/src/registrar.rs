//! The registrar (RFC 3261 §10.3, RFC 5626 §6) and the digest challenge
//! shared with the proxy.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::auth::{parse_credentials, Verdict};
use crate::flow::Flow;
use crate::location::Binding;
use crate::msg::{NameAddr, Uri};
use crate::server::Server;
use crate::{HeaderName, Message};

/// Option tags we understand in Require.
const SUPPORTED: &[&str] = &["outbound"];

/// A refusal: code, reason phrase, extra headers.
type Refusal = (u16, String, Vec<(HeaderName, String)>);

/// One Contact of a REGISTER, read and checked.
struct Wanted {
    uri: String,
    instance: Option<String>,
    reg_id: Option<u32>,
    expires: u32,
}

impl Server {
    pub(crate) fn handle_register(&mut self, now: Instant, flow: Flow, req: Message) {
        if self.resend_cached(&flow, &req) {
            return;
        }
        let account = match self.register_target(&flow, &req) {
            Ok(a) => a,
            Err((code, reason, extra)) => {
                return self.answer_cached(now, &flow, &req, code, &reason, extra)
            }
        };
        if !self.authorize(now, &flow, &req, &account, false) {
            return;
        }
        match self.update_bindings(now, flow, &req, &account) {
            Ok(()) => {
                let mut extra = self.contact_list(now, &account);
                extra.extend(self.outbound_headers(&flow, &req));
                info!(account = %account, bindings = self.location.all(&account).len(), "registered");
                self.answer_cached(now, &flow, &req, 200, "OK", extra);
            }
            Err((code, reason, extra)) => {
                self.answer_cached(now, &flow, &req, code, &reason, extra)
            }
        }
    }

    /// Check the domain and Require; return the account id from To.
    fn register_target(&self, flow: &Flow, req: &Message) -> Result<String, Refusal> {
        let domain_refusal = || {
            (
                403,
                format!(
                    "Forbidden (not our domain: register at {})",
                    self.cfg.domain
                ),
                Vec::new(),
            )
        };
        let ruri = req
            .request_uri()
            .and_then(Uri::parse)
            .ok_or_else(domain_refusal)?;
        let to = req
            .to()
            .and_then(|t| t.parsed_uri())
            .ok_or_else(domain_refusal)?;
        if !self.is_our_host(ruri.host, flow) || !self.is_our_host(to.host, flow) {
            return Err(domain_refusal());
        }
        if let Some(unsupported) = unsupported_options(req) {
            return Err((
                420,
                "Bad Extension".into(),
                vec![(HeaderName::Unsupported, unsupported)],
            ));
        }
        to.user_unescaped().ok_or((
            400,
            "Bad Request (To has no user part: use sip:ACCOUNT@domain)".into(),
            Vec::new(),
        ))
    }

    /// Digest-authenticate `req` as `account`. Sends the challenge or
    /// refusal itself and returns false when the request must stop here.
    pub(crate) fn authorize(
        &mut self,
        now: Instant,
        flow: &Flow,
        req: &Message,
        account: &str,
        proxy: bool,
    ) -> bool {
        let ip: IpAddr = flow.remote.ip();
        if let Some(left) = self.guard.locked(now, account, ip) {
            let extra = vec![(HeaderName::RetryAfter, left.as_secs().max(1).to_string())];
            self.answer_cached(
                now,
                flow,
                req,
                403,
                "Forbidden (too many failed attempts: retry later)",
                extra,
            );
            return false;
        }
        let header = if proxy {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        let realm = self.digest.realm().to_owned();
        let creds = req
            .headers_named(&header)
            .filter_map(parse_credentials)
            .find(|c| c.realm == realm);
        let Some(creds) = creds else {
            self.challenge(now, flow, req, proxy, false);
            return false;
        };
        if creds.username != account {
            let reason = "Forbidden (authenticated user differs from the account in the request)";
            self.answer_cached(now, flow, req, 403, reason, Vec::new());
            return false;
        }
        if !self.digest_uri_ok(&creds.uri, req, flow) {
            let reason = "Bad Request (digest uri differs from the Request-URI: answer the challenge for this request)";
            self.answer_cached(now, flow, req, 400, reason, Vec::new());
            return false;
        }
        let keys = self.accounts.digest_keys(account);
        let method = req
            .method()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        match self.digest.verify(now, &method, &creds, keys.as_ref()) {
            Verdict::Ok => {
                self.guard.record_success(account, ip);
                true
            }
            Verdict::Stale => {
                self.challenge(now, flow, req, proxy, true);
                false
            }
            Verdict::BadNonce => {
                self.challenge(now, flow, req, proxy, false);
                false
            }
            Verdict::Wrong => {
                debug!(account, %ip, "wrong digest credentials");
                if self.guard.record_failure(now, account, ip) {
                    info!(account, %ip, "locked out after repeated failed authentication");
                }
                self.challenge(now, flow, req, proxy, false);
                false
            }
        }
    }

    /// RFC 7616 §3.4.6: the digest `uri` must equal the Request-URI. With
    /// [`crate::ServerConfig::digest_uri_may_name_server`] a `uri` naming
    /// this server itself (no user part, one of our hosts) passes too:
    /// sipp 3.6 always sends `sip:SERVER-IP:PORT` there.
    fn digest_uri_ok(&self, uri: &str, req: &Message, flow: &Flow) -> bool {
        if uri == req.request_uri().unwrap_or_default() {
            return true;
        }
        self.cfg.digest_uri_may_name_server
            && Uri::parse(uri).is_some_and(|u| u.user.is_none() && self.is_our_host(u.host, flow))
    }

    fn challenge(&mut self, now: Instant, flow: &Flow, req: &Message, proxy: bool, stale: bool) {
        let (code, name) = if proxy {
            (407, HeaderName::ProxyAuthenticate)
        } else {
            (401, HeaderName::WwwAuthenticate)
        };
        let extra = self
            .digest
            .challenge(now, stale)
            .into_iter()
            .map(|c| (name.clone(), c))
            .collect();
        let reason = if proxy {
            "Proxy Authentication Required"
        } else {
            "Unauthorized"
        };
        // Not cached: a retransmitted request simply gets a fresh challenge.
        self.reply_with(flow, req, code, reason, extra);
    }

    /// Apply the Contacts of an authorized REGISTER.
    fn update_bindings(
        &mut self,
        now: Instant,
        flow: Flow,
        req: &Message,
        account: &str,
    ) -> Result<(), Refusal> {
        let contacts: Vec<&str> = req.headers_named(&HeaderName::Contact).collect();
        if contacts.is_empty() {
            return Ok(()); // a query
        }
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let cseq = req.cseq().map_or(0, |c| c.seq);
        let mut list: Vec<Binding> = self.location.lookup(account, now).cloned().collect();
        if contacts.contains(&"*") {
            if contacts.len() != 1 || req.header(&HeaderName::Expires).map(str::trim) != Some("0") {
                return Err((
                    400,
                    "Bad Request (Contact: * needs Expires: 0 and no other Contact)".into(),
                    Vec::new(),
                ));
            }
            if list.iter().any(|b| b.call_id == call_id && b.cseq >= cseq) {
                return Err((
                    500,
                    "Server Internal Error (REGISTER out of order)".into(),
                    Vec::new(),
                ));
            }
            list.clear();
        } else {
            let wanted = self.read_contacts(req, &contacts)?;
            let before = list.clone();
            for w in wanted {
                apply(&mut list, w, &call_id, cseq, now, flow)?;
            }
            // A device that re-registers over a new flow (it moved, or its
            // connection broke) takes its calls along: in-dialog requests follow.
            for b in &list {
                let old = before
                    .iter()
                    .find(|o| o.same_key(b.instance.as_deref(), b.reg_id, &b.contact));
                if let Some(old) = old.filter(|o| o.flow != b.flow) {
                    self.dialogs.move_flow(&old.flow, b.flow);
                }
            }
        }
        if list.len() > self.cfg.max_bindings {
            let reason = format!(
                "Forbidden (too many devices: at most {} per account)",
                self.cfg.max_bindings
            );
            return Err((403, reason, Vec::new()));
        }
        self.location.set(account, list);
        self.note_changed(account);
        Ok(())
    }

    fn read_contacts(&self, req: &Message, contacts: &[&str]) -> Result<Vec<Wanted>, Refusal> {
        let header_expires = req
            .header(&HeaderName::Expires)
            .and_then(|e| e.trim().parse::<u32>().ok());
        let mut out = Vec::with_capacity(contacts.len());
        for c in contacts {
            let bad = || {
                (
                    400,
                    "Bad Request (unreadable Contact)".to_string(),
                    Vec::new(),
                )
            };
            let na = NameAddr::parse(c).ok_or_else(bad)?;
            Uri::parse(na.uri).ok_or_else(bad)?;
            let expires = na
                .params
                .get("expires")
                .flatten()
                .and_then(|e| e.parse::<u32>().ok())
                .or(header_expires)
                .unwrap_or(self.cfg.default_expires);
            if expires != 0 && expires < self.cfg.min_expires {
                let min = self.cfg.min_expires.to_string();
                return Err((
                    423,
                    "Interval Too Brief".into(),
                    vec![(HeaderName::MinExpires, min)],
                ));
            }
            let instance = na
                .params
                .get("+sip.instance")
                .flatten()
                .map(|i| i.trim_matches(['"', '<', '>']).to_owned());
            // RFC 5626 §6: reg-id without an instance id is ignored.
            let reg_id = na
                .params
                .get("reg-id")
                .flatten()
                .and_then(|r| r.parse().ok())
                .filter(|_| instance.is_some());
            let expires = expires.min(self.cfg.max_expires);
            out.push(Wanted {
                uri: na.uri.to_owned(),
                instance,
                reg_id,
                expires,
            });
        }
        Ok(out)
    }

    /// Contact headers listing every current binding, for the 200.
    fn contact_list(&self, now: Instant, account: &str) -> Vec<(HeaderName, String)> {
        self.location
            .lookup(account, now)
            .map(|b| {
                let left = b.expires_at.saturating_duration_since(now).as_secs();
                let mut v = format!("<{}>;expires={left}", b.contact);
                if let Some(i) = &b.instance {
                    v.push_str(&format!(";+sip.instance=\"<{i}>\""));
                }
                if let Some(r) = b.reg_id {
                    v.push_str(&format!(";reg-id={r}"));
                }
                (HeaderName::Contact, v)
            })
            .collect()
    }

    /// RFC 5626 §6 for the 200: we always support outbound; a REGISTER
    /// that used it (a Contact with both `+sip.instance` and `reg-id`) also
    /// gets the keepalive interval for its transport (Flow-Timer, §5.4)
    /// and, when the UA declared support, `Require: outbound` (RFC 3261
    /// §8.2.2.3 forbids requiring what the client did not offer).
    fn outbound_headers(&self, flow: &Flow, req: &Message) -> Vec<(HeaderName, String)> {
        let mut out = vec![(HeaderName::Supported, "outbound".to_owned())];
        if !uses_outbound(req) {
            return out;
        }
        let declared = [HeaderName::Supported, HeaderName::Require]
            .iter()
            .flat_map(|h| req.headers_named(h))
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("outbound"));
        if declared {
            out.push((HeaderName::Require, "outbound".to_owned()));
        }
        let every = if flow.transport.is_reliable() {
            self.cfg.flow_timer_stream
        } else {
            self.cfg.flow_timer_udp
        };
        out.push((HeaderName::FlowTimer, every.to_string()));
        out
    }

    /// Send a final response to a non-INVITE request and keep it for
    /// retransmissions (Timer J).
    pub(crate) fn answer_cached(
        &mut self,
        now: Instant,
        flow: &Flow,
        req: &Message,
        code: u16,
        reason: &str,
        extra: Vec<(HeaderName, String)>,
    ) {
        let bytes = self.reply_with(flow, req, code, reason, extra);
        if !flow.transport.is_reliable() && req.method() != Some(&crate::Method::Invite) {
            let linger = self.cfg.t1 * 64;
            self.txs.cache_response(now, req, linger, bytes);
        }
    }

    fn resend_cached(&mut self, flow: &Flow, req: &Message) -> bool {
        match self.txs.cached_response(req) {
            Some(bytes) => {
                self.send(*flow, bytes);
                true
            }
            None => false,
        }
    }
}

/// Add, refresh or remove one binding in `list` (§10.3 steps 6–8).
fn apply(
    list: &mut Vec<Binding>,
    w: Wanted,
    call_id: &str,
    cseq: u32,
    now: Instant,
    flow: Flow,
) -> Result<(), Refusal> {
    let existing = list
        .iter()
        .position(|b| b.same_key(w.instance.as_deref(), w.reg_id, &w.uri));
    if let Some(i) = existing {
        if list[i].call_id == call_id && list[i].cseq >= cseq {
            return Err((
                500,
                "Server Internal Error (REGISTER out of order)".into(),
                Vec::new(),
            ));
        }
        list.remove(i);
    }
    if w.expires > 0 {
        list.push(Binding {
            contact: w.uri,
            instance: w.instance,
            reg_id: w.reg_id,
            expires_at: now + Duration::from_secs(u64::from(w.expires)),
            call_id: call_id.to_owned(),
            cseq,
            flow,
        });
    }
    Ok(())
}

/// Does any Contact ask for outbound processing (instance id and reg-id)?
fn uses_outbound(req: &Message) -> bool {
    req.headers_named(&HeaderName::Contact)
        .filter_map(NameAddr::parse)
        .any(|na| {
            na.params.get("+sip.instance").flatten().is_some()
                && na.params.get("reg-id").flatten().is_some()
        })
}

/// Require option tags we do not support, comma-separated.
fn unsupported_options(req: &Message) -> Option<String> {
    let bad: Vec<&str> = req
        .headers_named(&HeaderName::Require)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}
