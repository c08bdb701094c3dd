//! TURN requests: authentication, Allocate, Refresh, CreatePermission, ChannelBind,
//! and Send indications.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::allocation::Allocation;
use super::auth::{self, Cached, NonceCheck, RestCheck, UserKeys};
use super::{
    AllocationId, Event, Family, FiveTuple, Forward, RelayAllocator, RelayError, RelayRequest,
    Server, Transmit,
};
use crate::binding::{Source, SOFTWARE};
use crate::stun::{
    attr_type as t, Attribute, ChannelNumber, Class, ErrorCode, IntegrityKey, Mac, Message,
    MessageBuilder, Method, PasswordAlgorithm,
};

/// An authenticated request's credentials.
pub(crate) struct Authed {
    pub(crate) user: Arc<str>,
    pub(crate) key: IntegrityKey,
    pub(crate) mac: Mac,
}

/// PASSWORD-ALGORITHMS we offer: SHA-256 first, then MD5 (no parameters).
const OFFERED_ALGORITHMS: [u8; 8] = [0, 2, 0, 0, 0, 1, 0, 0];

impl<A: RelayAllocator> Server<A> {
    pub(crate) fn request(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
    ) {
        let unknown: Vec<u16> = msg.unknown_comprehension_required().take(4).collect();
        if !unknown.is_empty() {
            if self.unauth_allowed(now, tuple.client.ip()) {
                let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
                self.reply_error(tuple, source, msg, 420, "Unknown Attribute", None, |b| {
                    b.add(&Attribute::UnknownAttributes(&list));
                });
            }
            return;
        }
        let known = matches!(
            msg.method(),
            Method::ALLOCATE | Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND
        );
        if !known {
            if self.unauth_allowed(now, tuple.client.ip()) {
                self.reply_error(tuple, source, msg, 400, "Unsupported method", None, |_| {});
            }
            return;
        }
        let Some(authed) = self.authenticate(now, tuple, source, msg) else {
            return;
        };
        let existing = self.by_tuple.get(&tuple).copied();
        if let Some(id) = existing {
            let owner = self.allocation(id).map(|a| a.user.clone());
            if owner.as_deref() != Some(&*authed.user) {
                self.reply_error(
                    tuple,
                    source,
                    msg,
                    441,
                    "Wrong Credentials",
                    Some(&authed),
                    |_| {},
                );
                return;
            }
        }
        match (msg.method(), existing) {
            (Method::ALLOCATE, Some(id)) => {
                self.allocate_again(now, tuple, source, msg, &authed, id)
            }
            (Method::ALLOCATE, None) => self.allocate(now, tuple, source, msg, authed),
            (_, None) => self.reply_error(
                tuple,
                source,
                msg,
                437,
                "Allocation Mismatch",
                Some(&authed),
                |_| {},
            ),
            (Method::REFRESH, Some(id)) => self.refresh(now, tuple, source, msg, &authed, id),
            (Method::CREATE_PERMISSION, Some(id)) => {
                self.create_permission(now, tuple, source, msg, &authed, id)
            }
            (_, Some(id)) => self.channel_bind(now, tuple, source, msg, &authed, id),
        }
    }

    /// RFC 8489 §9.2.4 in order: 401 without integrity, 400 without the
    /// attributes, 438 for a stale nonce, 401 for an unknown user or wrong MAC.
    fn authenticate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
    ) -> Option<Authed> {
        let ip = tuple.client.ip();
        let Some(mac) = msg.integrity_mac() else {
            if self.unauth_allowed(now, ip) {
                self.challenge(now, tuple, source, msg, 401, "Unauthorized");
            }
            return None;
        };
        let (user, realm, nonce) =
            match (msg.get(t::USERNAME), msg.get(t::REALM), msg.get(t::NONCE)) {
                (
                    Some(Ok(Attribute::Username(u))),
                    Some(Ok(Attribute::Realm(r))),
                    Some(Ok(Attribute::Nonce(n))),
                ) => (u, r, n),
                _ => {
                    if self.unauth_allowed(now, ip) {
                        self.reply_error(
                            tuple,
                            source,
                            msg,
                            400,
                            "Missing USERNAME, REALM or NONCE",
                            None,
                            |_| {},
                        );
                    }
                    return None;
                }
            };
        if self.nonces.check(now, ip, nonce) == NonceCheck::Stale {
            self.counters.stale_nonces += 1;
            if self.unauth_allowed(now, ip) {
                self.challenge(now, tuple, source, msg, 438, "Stale Nonce");
            }
            return None;
        }
        let algorithm = match self.password_algorithm(msg) {
            Ok(a) => a,
            Err(()) => {
                self.reply_error(
                    tuple,
                    source,
                    msg,
                    400,
                    "Bad PASSWORD-ALGORITHM",
                    None,
                    |_| {},
                );
                return None;
            }
        };
        let keys = if realm == self.config.realm {
            self.keys_for(now, user)
        } else {
            None
        };
        let key = keys.map(|k| match algorithm {
            PasswordAlgorithm::SHA256 => IntegrityKey::LongTermSha256(k.sha256),
            _ => IntegrityKey::LongTermMd5(k.md5),
        });
        match key {
            Some(key) if msg.verify_integrity(&key) => Some(Authed {
                user: Arc::from(user),
                key,
                mac,
            }),
            _ => {
                self.counters.auth_failures += 1;
                self.event(Event::AuthFailed {
                    client: tuple.client,
                    user: Some(user.to_owned()),
                });
                let pii = self.redaction;
                tracing::info!(client = %pii.pii(tuple.client), user = %pii.pii(user), "TURN authentication failed");
                if self.unauth_allowed(now, ip) {
                    self.challenge(now, tuple, source, msg, 401, "Unauthorized");
                }
                None
            }
        }
    }

    /// The password algorithm the client chose (RFC 8489 §9.2.4): MD5 unless it
    /// echoed our PASSWORD-ALGORITHMS and picked SHA-256.
    fn password_algorithm(&self, msg: &Message<'_>) -> Result<u16, ()> {
        let chosen = match msg.get(t::PASSWORD_ALGORITHM) {
            None => return Ok(PasswordAlgorithm::MD5),
            Some(Ok(Attribute::PasswordAlgorithm(a))) => a,
            Some(_) => return Err(()),
        };
        let echoed = msg
            .raw_value(t::PASSWORD_ALGORITHMS)
            .map(Attribute::password_algorithms)
            .unwrap_or_default();
        let ok = echoed == Attribute::password_algorithms(&OFFERED_ALGORITHMS)
            && matches!(chosen, PasswordAlgorithm::MD5 | PasswordAlgorithm::SHA256);
        if ok {
            Ok(chosen)
        } else {
            Err(())
        }
    }

    fn keys_for(&self, now: Instant, user: &str) -> Option<UserKeys> {
        if let Some(secret) = &self.config.rest_secret {
            match auth::rest_keys(secret, user, &self.config.realm, self.unix_now(now)) {
                RestCheck::Keys(k) => return Some(k),
                RestCheck::Expired => return None,
                RestCheck::NotRest => {}
            }
        }
        match self.keys.get(now, user) {
            Cached::Known(k) => Some(k),
            Cached::NoSuchUser | Cached::Missing => None,
        }
    }

    /// 401/438 with REALM, a fresh NONCE and PASSWORD-ALGORITHMS.
    fn challenge(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        code: u16,
        reason: &str,
    ) {
        let nonce = self.nonces.issue(now, tuple.client.ip());
        let realm = self.config.realm.clone();
        self.reply_error(tuple, source, msg, code, reason, None, |b| {
            b.add(&Attribute::Realm(&realm));
            b.add(&Attribute::Nonce(&nonce));
            b.add(&Attribute::PasswordAlgorithms(&OFFERED_ALGORITHMS));
        });
    }

    fn allocate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        authed: Authed,
    ) {
        let req = match self.allocate_params(msg) {
            Ok(r) => r,
            Err((code, reason)) => {
                return self.reply_error(tuple, source, msg, code, reason, Some(&authed), |_| {})
            }
        };
        let user_count = self.per_user.get(&authed.user).copied().unwrap_or(0);
        if user_count >= self.config.user_quota
            || self.by_tuple.len() as u32 >= self.config.total_quota
        {
            self.counters.allocations_refused_quota += 1;
            return self.reply_error(
                tuple,
                source,
                msg,
                486,
                "Allocation Quota Reached",
                Some(&authed),
                |_| {},
            );
        }
        let granted = match req {
            AllocParams::Token(tok) => match self.reservations.remove(&tok) {
                Some((relay, _)) => Ok(super::Granted {
                    relay,
                    reserved: None,
                }),
                None => {
                    return self.reply_error(
                        tuple,
                        source,
                        msg,
                        508,
                        "Insufficient Capacity",
                        Some(&authed),
                        |_| {},
                    )
                }
            },
            AllocParams::New(r) => self.relays.allocate(r),
        };
        let granted = match granted {
            Ok(g) => g,
            Err(e) => {
                let (code, reason) = match e {
                    RelayError::FamilyUnsupported => (440, "Address Family not Supported"),
                    RelayError::NoCapacity => (508, "Insufficient Capacity"),
                };
                return self.reply_error(tuple, source, msg, code, reason, Some(&authed), |_| {});
            }
        };
        let lifetime = self.lifetime(msg);
        let mut relayed = granted.relay.addr;
        if let (Some(ip), true) = (
            self.config.public_ip,
            relayed.is_ipv4() == self.config.public_ip.is_some_and(|i| i.is_ipv4()),
        ) {
            relayed.set_ip(ip);
        }
        let mut a = Allocation::new(
            tuple,
            granted.relay.id,
            relayed,
            authed.user.clone(),
            now + lifetime,
            msg.transaction_id(),
            now,
            self.config.bandwidth_cap,
        );
        if let Some(res) = granted.reserved {
            let tok = self.reservation_token();
            self.reservations
                .insert(tok, (res, now + super::RESERVATION_LIFETIME));
            a.reservation = Some(tok);
        }
        let reservation = a.reservation;
        let id = self.insert(a);
        self.counters.allocations_created += 1;
        let pii = self.redaction;
        let span = tracing::info_span!("allocation", %id, %relayed, user = %pii.pii(&*authed.user));
        span.in_scope(
            || tracing::info!(client = %pii.pii(tuple.client), ?lifetime, "allocation created"),
        );
        if let Some(a) = self.allocation_mut(id) {
            a.span = span;
        }
        self.event(Event::AllocationCreated {
            id,
            user: authed.user.clone(),
            client: tuple,
            relayed,
        });
        self.allocate_success(tuple, source, msg, &authed, relayed, lifetime, reservation);
    }

    /// A retransmitted Allocate gets the same success; any other is 437.
    fn allocate_again(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        authed: &Authed,
        id: AllocationId,
    ) {
        let Some(a) = self.allocation(id) else { return };
        if a.allocate_tid != msg.transaction_id() {
            return self.reply_error(
                tuple,
                source,
                msg,
                437,
                "Allocation Mismatch",
                Some(authed),
                |_| {},
            );
        }
        let (relayed, left, res) = (
            a.relayed,
            a.expires.saturating_duration_since(now),
            a.reservation,
        );
        self.allocate_success(tuple, source, msg, authed, relayed, left, res);
    }

    #[allow(clippy::too_many_arguments)]
    fn allocate_success(
        &mut self,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        authed: &Authed,
        relayed: SocketAddr,
        lifetime: Duration,
        reservation: Option<[u8; 8]>,
    ) {
        self.reply_success(tuple, source, msg, authed, |b| {
            b.add(&Attribute::XorRelayedAddress(relayed));
            b.add(&Attribute::Lifetime(lifetime.as_secs() as u32));
            if let Some(tok) = reservation {
                b.add(&Attribute::ReservationToken(tok));
            }
            b.add(&Attribute::XorMappedAddress(tuple.client));
        });
    }

    fn allocate_params(&self, msg: &Message<'_>) -> Result<AllocParams, (u16, &'static str)> {
        let mut transport = None;
        let mut family = None;
        let mut even = None;
        let mut token = None;
        for a in msg.attributes() {
            match a {
                Ok(Attribute::RequestedTransport(p)) => transport = Some(p),
                Ok(Attribute::RequestedAddressFamily(f)) => family = Some(f),
                Ok(Attribute::EvenPort { reserve }) => even = Some(reserve),
                Ok(Attribute::ReservationToken(tk)) => token = Some(tk),
                Ok(_) => {}
                Err(_) => return Err((400, "Bad Request")),
            }
        }
        match transport {
            None => return Err((400, "Missing REQUESTED-TRANSPORT")),
            Some(17) => {}
            Some(_) => return Err((442, "Unsupported Transport Protocol")),
        }
        if let Some(tok) = token {
            if even.is_some() || family.is_some() {
                return Err((
                    400,
                    "RESERVATION-TOKEN with EVEN-PORT or REQUESTED-ADDRESS-FAMILY",
                ));
            }
            return Ok(AllocParams::Token(tok));
        }
        let family = match family {
            None | Some(0x01) => Family::V4,
            Some(0x02) => Family::V6,
            Some(_) => return Err((440, "Address Family not Supported")),
        };
        Ok(AllocParams::New(RelayRequest {
            family,
            even_port: even.is_some(),
            reserve_next: even == Some(true),
        }))
    }

    /// Requested LIFETIME clamped to [default.. max] (RFC 8656 §7.2), default when absent.
    fn lifetime(&self, msg: &Message<'_>) -> Duration {
        match msg.get(t::LIFETIME) {
            Some(Ok(Attribute::Lifetime(s))) => Duration::from_secs(u64::from(s))
                .clamp(self.config.default_lifetime, self.config.max_lifetime),
            _ => self.config.default_lifetime,
        }
    }

    fn refresh(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        authed: &Authed,
        id: AllocationId,
    ) {
        if let Some(Ok(Attribute::RequestedAddressFamily(f))) = msg.get(t::REQUESTED_ADDRESS_FAMILY)
        {
            let ours = self
                .allocation(id)
                .map(|a| if a.relayed.is_ipv4() { 1 } else { 2 });
            if ours != Some(f) {
                return self.reply_error(
                    tuple,
                    source,
                    msg,
                    443,
                    "Peer Address Family Mismatch",
                    Some(authed),
                    |_| {},
                );
            }
        }
        let requested = match msg.get(t::LIFETIME) {
            Some(Ok(Attribute::Lifetime(s))) => Some(s),
            _ => None,
        };
        let lifetime = if requested == Some(0) {
            self.close(id, super::CloseReason::Deleted);
            Duration::ZERO
        } else {
            let l = self.lifetime(msg);
            if let Some(a) = self.allocation_mut(id) {
                a.expires = now + l;
                a.span
                    .in_scope(|| tracing::debug!(?l, "allocation refreshed"));
            }
            l
        };
        self.reply_success(tuple, source, msg, authed, |b| {
            b.add(&Attribute::Lifetime(lifetime.as_secs() as u32));
        });
    }

    fn create_permission(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        authed: &Authed,
        id: AllocationId,
    ) {
        let mut peers = Vec::new();
        for a in msg.attributes() {
            match a {
                Ok(Attribute::XorPeerAddress(p)) => peers.push(p),
                Ok(_) => {}
                Err(_) => {
                    return self.reply_error(
                        tuple,
                        source,
                        msg,
                        400,
                        "Bad Request",
                        Some(authed),
                        |_| {},
                    )
                }
            }
        }
        if peers.is_empty() {
            return self.reply_error(
                tuple,
                source,
                msg,
                400,
                "Missing XOR-PEER-ADDRESS",
                Some(authed),
                |_| {},
            );
        }
        if let Err((code, reason)) = self.check_peers(id, &peers) {
            return self.reply_error(tuple, source, msg, code, reason, Some(authed), |_| {});
        }
        let (max, pii) = (self.config.max_peers_per_allocation, self.redaction);
        let Some(a) = self.allocation_mut(id) else {
            return;
        };
        let all = peers.iter().all(|p| a.permit(now, p.ip(), max));
        a.span.in_scope(|| {
            for p in &peers {
                tracing::debug!(peer = %pii.pii(p.ip()), installed = all, "permission");
            }
        });
        if !all {
            return self.reply_error(
                tuple,
                source,
                msg,
                508,
                "Insufficient Capacity",
                Some(authed),
                |_| {},
            );
        }
        self.reply_success(tuple, source, msg, authed, |_| {});
    }

    /// 443 for a family mismatch, 403 for a peer the policy refuses.
    fn check_peers(
        &mut self,
        id: AllocationId,
        peers: &[SocketAddr],
    ) -> Result<(), (u16, &'static str)> {
        let Some(a) = self.allocation(id) else {
            return Err((437, "Allocation Mismatch"));
        };
        let v4 = a.relayed.is_ipv4();
        if peers.iter().any(|p| p.is_ipv4() != v4) {
            return Err((443, "Peer Address Family Mismatch"));
        }
        if let Some(p) = peers.iter().find(|p| !self.config.peers.permits(p.ip())) {
            self.counters.peers_refused += 1;
            let ip = p.ip();
            // Refused peers are special-purpose addresses (loopback, private,
            // metadata...), not anybody's public address: logged as they are
            // so the operator can see what --allow-peer would have to open.
            let span = self.allocation(id).map(|a| a.span.clone());
            span.unwrap_or_else(tracing::Span::none).in_scope(|| {
                tracing::info!(peer = %ip, "peer refused by policy (use --allow-peer to permit it)")
            });
            self.event(Event::PeerRefused { id, peer: ip });
            return Err((403, "Forbidden"));
        }
        Ok(())
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        authed: &Authed,
        id: AllocationId,
    ) {
        let (n, peer) = match (msg.get(t::CHANNEL_NUMBER), msg.get(t::XOR_PEER_ADDRESS)) {
            (Some(Ok(Attribute::ChannelNumber(n))), Some(Ok(Attribute::XorPeerAddress(p)))) => {
                (n, p)
            }
            _ => {
                return self.reply_error(
                    tuple,
                    source,
                    msg,
                    400,
                    "Missing CHANNEL-NUMBER or XOR-PEER-ADDRESS",
                    Some(authed),
                    |_| {},
                )
            }
        };
        let Ok(n) = ChannelNumber::new(n) else {
            return self.reply_error(
                tuple,
                source,
                msg,
                400,
                "Channel number outside 0x4000-0x7FFF",
                Some(authed),
                |_| {},
            );
        };
        if let Err((code, reason)) = self.check_peers(id, &[peer]) {
            return self.reply_error(tuple, source, msg, code, reason, Some(authed), |_| {});
        }
        let (max, pii) = (self.config.max_peers_per_allocation, self.redaction);
        let Some(a) = self.allocation_mut(id) else {
            return;
        };
        let outcome = a
            .bind_channel(now, n, peer, max)
            .map(|ok| ok && a.permit(now, peer.ip(), max + 1));
        a.span.in_scope(
            || tracing::debug!(channel = n.get(), peer = %pii.pii(peer), ?outcome, "channel bind"),
        );
        match outcome {
            Ok(true) => self.reply_success(tuple, source, msg, authed, |_| {}),
            Ok(false) => self.reply_error(
                tuple,
                source,
                msg,
                508,
                "Insufficient Capacity",
                Some(authed),
                |_| {},
            ),
            Err(()) => self.reply_error(
                tuple,
                source,
                msg,
                400,
                "Channel or peer already bound",
                Some(authed),
                |_| {},
            ),
        }
    }

    /// Send indication: forward DATA to XOR-PEER-ADDRESS if permitted (never answered).
    pub(crate) fn send_indication<'b>(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        msg: &Message<'b>,
    ) -> Option<Forward<'b>> {
        let route = self.by_tuple.get(tuple).copied();
        let (peer, data) = match (msg.get(t::XOR_PEER_ADDRESS), msg.get(t::DATA)) {
            (Some(Ok(Attribute::XorPeerAddress(p))), Some(Ok(Attribute::Data(d)))) => (p, d),
            _ => {
                self.counters.malformed += 1;
                return None;
            }
        };
        let Some(id) = route else {
            self.counters.dropped_no_route += 1;
            return None;
        };
        self.forward_to_peer(now, id, peer, data)
    }

    fn reply_success(
        &mut self,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        authed: &Authed,
        fill: impl FnOnce(&mut MessageBuilder),
    ) {
        let mut b = MessageBuilder::new(Class::Success, msg.method(), msg.transaction_id());
        fill(&mut b);
        b.add(&Attribute::Software(SOFTWARE));
        b.add_mac(&authed.key, authed.mac);
        b.add_fingerprint();
        self.transmits.push_back(Transmit {
            to: tuple,
            from: source,
            payload: b.finish(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_error(
        &mut self,
        tuple: FiveTuple,
        source: Source,
        msg: &Message<'_>,
        code: u16,
        reason: &str,
        authed: Option<&Authed>,
        fill: impl FnOnce(&mut MessageBuilder),
    ) {
        let mut b = MessageBuilder::with_cookie(
            Class::Error,
            msg.method(),
            msg.transaction_id(),
            msg.cookie(),
        );
        b.add(&Attribute::ErrorCode(ErrorCode { code, reason }));
        fill(&mut b);
        if let Some(a) = authed {
            b.add_mac(&a.key, a.mac);
        }
        if msg.raw_value(t::FINGERPRINT).is_some() {
            b.add_fingerprint();
        }
        self.transmits.push_back(Transmit {
            to: tuple,
            from: source,
            payload: b.finish(),
        });
    }
}

enum AllocParams {
    New(RelayRequest),
    Token([u8; 8]),
}
