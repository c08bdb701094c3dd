//! Plain counters for logs and (later) metrics export.

/// Running totals since start (except `allocations_active`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub allocations_created: u64,
    pub allocations_active: u64,
    pub allocations_refused_quota: u64,
    pub binding_requests: u64,
    /// Packets and payload bytes relayed client → peer.
    pub packets_to_peers: u64,
    pub bytes_to_peers: u64,
    /// Packets and payload bytes relayed peer → client.
    pub packets_to_clients: u64,
    pub bytes_to_clients: u64,
    pub auth_failures: u64,
    pub stale_nonces: u64,
    pub peers_refused: u64,
    /// Data dropped: no allocation, no permission, unbound channel.
    pub dropped_no_route: u64,
    /// Data dropped by the per-allocation bandwidth cap.
    pub dropped_bandwidth: u64,
    /// Unauthenticated requests dropped by the per-source rate limit.
    pub rate_limited: u64,
    pub malformed: u64,
    /// Datagrams longer than the driver's receive slot (client or peer), dropped.
    pub dropped_oversize: u64,
}
