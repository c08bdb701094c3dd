//! TURN server settings and the peer-address policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::StunError;

/// TURN server settings. Build with [`ServerConfig::new`], adjust with the
/// validating setters; every default is documented on its field.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Realm sent in 401 answers (the natter domain).
    pub(crate) realm: String,
    /// Primary listener address (for Binding / RFC 5780).
    pub(crate) primary: SocketAddr,
    /// RFC 5780 alternate address. Default none.
    pub(crate) alternate: Option<SocketAddr>,
    /// IP put in XOR-RELAYED-ADDRESS instead of the relay socket's IP
    /// (1:1 NAT deployments). Default none.
    pub(crate) public_ip: Option<IpAddr>,
    /// coturn-compatible REST secret (`use-auth-secret`). Default none.
    pub(crate) rest_secret: Option<Vec<u8>>,
    /// Allocation lifetime when the client asks for none. Default 600 s (RFC 8656).
    pub(crate) default_lifetime: Duration,
    /// Longest lifetime granted. Default 3600 s.
    pub(crate) max_lifetime: Duration,
    /// How long a nonce is valid before 438. Default 600 s.
    pub(crate) nonce_lifetime: Duration,
    /// Allocations one user may hold. Default 1000.
    pub(crate) user_quota: u32,
    /// Allocations in total. Default 20 000.
    pub(crate) total_quota: u32,
    /// Permissions plus channels one allocation may hold. Default 128.
    pub(crate) max_peers_per_allocation: usize,
    /// Relayed bytes per second per allocation, both directions together,
    /// with a one-second burst. Default 2.5 MB/s (20 Mbit/s).
    pub(crate) bandwidth_cap: u64,
    /// Unauthenticated requests per second from one source IP. Default 200.
    pub(crate) unauth_rate: u32,
    /// Burst size for [`ServerConfig::set_unauth_rate`]. Default 1000.
    pub(crate) unauth_burst: u32,
    /// Peer-address policy. Default: refuse every special-purpose range.
    pub(crate) peers: PeerPolicy,
    /// Seed for nonce keys and reservation tokens. Default: from the OS.
    pub(crate) seed: Option<u64>,
    /// Log usernames and client addresses as they are. Default false: a
    /// salted digest stands in (see [`crate::pii`]).
    pub(crate) log_pii: bool,
    /// The redaction to log through, shared with the rest of the process.
    /// Default `None`: the core makes its own from `log_pii`.
    pub(crate) redaction: Option<crate::pii::Redaction>,
}

impl ServerConfig {
    /// Defaults for `realm` on `primary`.
    pub fn new(realm: &str, primary: SocketAddr) -> Self {
        ServerConfig {
            realm: realm.to_owned(),
            primary,
            alternate: None,
            public_ip: None,
            rest_secret: None,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            nonce_lifetime: Duration::from_secs(600),
            user_quota: 1000,
            total_quota: 20_000,
            max_peers_per_allocation: 128,
            bandwidth_cap: 2_500_000,
            unauth_rate: 200,
            unauth_burst: 1000,
            peers: PeerPolicy::default(),
            seed: None,
            log_pii: false,
            redaction: None,
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The primary address once bound (a listener asked for port 0 learns its port late).
    pub fn set_primary(mut self, primary: SocketAddr) -> Self {
        self.primary = primary;
        self
    }

    /// RFC 5780 alternate address (different IP and port than the primary).
    pub fn set_alternate(mut self, alt: SocketAddr) -> Result<Self, StunError> {
        if alt.ip() == self.primary.ip() || alt.port() == self.primary.port() {
            return Err(StunError::Config(format!(
                "alternate address {alt} must differ from {} in IP and port",
                self.primary
            )));
        }
        self.alternate = Some(alt);
        Ok(self)
    }
    pub fn set_public_ip(mut self, ip: IpAddr) -> Self {
        self.public_ip = Some(ip);
        self
    }
    /// The REST secret; at least 16 bytes.
    pub fn set_rest_secret(mut self, secret: &str) -> Result<Self, StunError> {
        if secret.len() < 16 {
            return Err(StunError::Config(
                "the TURN REST secret needs at least 16 characters".into(),
            ));
        }
        self.rest_secret = Some(secret.as_bytes().to_vec());
        Ok(self)
    }
    pub fn set_quotas(mut self, per_user: u32, total: u32) -> Result<Self, StunError> {
        if per_user == 0 || total == 0 {
            return Err(StunError::Config(
                "allocation quotas must be at least 1".into(),
            ));
        }
        self.user_quota = per_user;
        self.total_quota = total;
        Ok(self)
    }
    /// Bytes per second per allocation; at least 8000 (one voice call).
    pub fn set_bandwidth_cap(mut self, bytes_per_sec: u64) -> Result<Self, StunError> {
        if bytes_per_sec < 8000 {
            return Err(StunError::Config(
                "the bandwidth cap must allow at least 8000 bytes/s".into(),
            ));
        }
        self.bandwidth_cap = bytes_per_sec;
        Ok(self)
    }
    pub fn set_unauth_rate(mut self, per_sec: u32, burst: u32) -> Result<Self, StunError> {
        if per_sec == 0 || burst == 0 {
            return Err(StunError::Config(
                "the unauthenticated request rate must be at least 1/s".into(),
            ));
        }
        self.unauth_rate = per_sec;
        self.unauth_burst = burst;
        Ok(self)
    }
    pub fn set_lifetimes(mut self, default: Duration, max: Duration) -> Result<Self, StunError> {
        if default < Duration::from_secs(60) || max < default {
            return Err(StunError::Config(
                "lifetimes: need 60 s <= default <= max".into(),
            ));
        }
        self.default_lifetime = default;
        self.max_lifetime = max;
        Ok(self)
    }
    pub fn set_nonce_lifetime(mut self, d: Duration) -> Self {
        self.nonce_lifetime = d.max(Duration::from_secs(1));
        self
    }
    pub fn set_peer_policy(mut self, peers: PeerPolicy) -> Self {
        self.peers = peers;
        self
    }
    pub fn set_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Log usernames and client addresses as they are (`--log-pii`).
    pub fn set_log_pii(mut self, on: bool) -> Self {
        self.log_pii = on;
        self
    }
    /// Log through `redaction` (the process's own, so one address has one
    /// digest in every component's lines); overrides `set_log_pii`.
    pub fn set_redaction(mut self, redaction: crate::pii::Redaction) -> Self {
        self.redaction = Some(redaction);
        self
    }
}

/// Which peers the relay may talk to. By default every special-purpose range
/// is refused (loopback, RFC 1918, CGNAT, link-local, multicast, unspecified,
/// broadcast, "this network", reserved, benchmarking, cloud metadata, IPv6 loopback,
/// ULA, link-local, IPv4-mapped/compatible, NAT64 of those); `allow` re-opens ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    allow: Vec<IpNet>,
}

impl PeerPolicy {
    /// Allow the given ranges although they are special.
    pub fn allowing(allow: Vec<IpNet>) -> Self {
        PeerPolicy { allow }
    }

    /// May the relay send to / accept from `ip`?
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        match ip {
            IpAddr::V4(v4) => public_v4(v4),
            IpAddr::V6(v6) => public_v6(v6),
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // includes 169.254.169.254 (cloud metadata)
        || ip.is_multicast()
        || ip.is_broadcast()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xC0) == 64) // 100.64.0.0/10 carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xFE) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved
        || ip == Ipv4Addr::new(100, 100, 100, 200); // Alibaba metadata
    !special
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if ip.to_ipv4_mapped().is_some() {
        // IPv4-mapped peers are refused unless allowed explicitly.
        return false;
    }
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xFE00) == 0xFC00 // ULA fc00::/7 (includes fd00:ec2::254 metadata)
        || (s[0] & 0xFFC0) == 0xFE80 // link-local
        || (s[0] & 0xFFC0) == 0xFEC0 // site-local (deprecated)
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0) // IPv4-compatible
        || (s[0] == 0x64 && s[1] == 0xFF9B) // NAT64 64:ff9b::/32 and /48
        || s[0] == 0x2002; // 6to4 can reach private IPv4
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_peers_are_refused_by_default() {
        let p = PeerPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "0.1.2.3",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:8.8.8.8",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "fd00:ec2::254",
        ] {
            assert!(!p.permits(ip.parse().unwrap()), "{ip} should be refused");
        }
        for ip in ["8.8.8.8", "203.0.113.5", "100.128.0.1", "2606:4700::1111"] {
            assert!(p.permits(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn allow_list_reopens_ranges() {
        let p = PeerPolicy::allowing(vec![
            "127.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(p.permits("fd00::5".parse().unwrap()));
        assert!(!p.permits("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn setters_validate() {
        let c = ServerConfig::new("example.org", "192.0.2.1:3478".parse().unwrap());
        assert!(c.clone().set_rest_secret("short").is_err());
        assert!(c.clone().set_quotas(0, 5).is_err());
        assert!(c.clone().set_bandwidth_cap(10).is_err());
        assert!(c
            .clone()
            .set_alternate("192.0.2.1:3479".parse().unwrap())
            .is_err());
        assert!(c
            .set_lifetimes(Duration::from_secs(600), Duration::from_secs(60))
            .is_err());
    }
}
