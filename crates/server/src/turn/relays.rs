//! Relay sockets: one UDP socket per allocation on `--relay-ip`, a port from
//! `--relay-ports`, registered (readable, level-triggered) with the poller of
//! the lane that handled the Allocate, which moves peer datagrams to the client.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

use mio::Registry;
use natter_turn::server::{
    Family, Granted, Relay, RelayAllocator, RelayError, RelayId, RelayRequest,
};
use rand::Rng;

/// Ports tried before giving up with 508.
const BIND_ATTEMPTS: usize = 64;

/// The driver's [`RelayAllocator`]: binds sockets, numbers them (the number is
/// the poller token), closes them (closing also leaves the poller).
pub(super) struct RelayPool {
    ip: IpAddr,
    ports: (u16, u16),
    slots: Vec<Option<Arc<UdpSocket>>>,
    free: Vec<u32>,
    /// One poller registry per lane; a new relay joins the calling thread's lane.
    lanes: Vec<Registry>,
}

impl RelayPool {
    pub(super) fn new(ip: IpAddr, ports: (u16, u16), lanes: Vec<Registry>) -> Self {
        RelayPool {
            ip,
            ports,
            slots: Vec::new(),
            free: Vec::new(),
            lanes,
        }
    }

    /// The socket of relay `id`, while it lives.
    pub(super) fn socket(&self, id: RelayId) -> Option<&Arc<UdpSocket>> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    fn bind_port(&self, port: u16) -> std::io::Result<UdpSocket> {
        let sock = UdpSocket::bind(SocketAddr::new(self.ip, port))?;
        sock.set_nonblocking(true)?;
        Ok(sock)
    }

    /// Watch `sock` on this thread's lane (lane 0 for threads that are not lanes).
    fn register(&self, sock: &UdpSocket, id: u32) -> std::io::Result<()> {
        let lane = super::lane::current().min(self.lanes.len().saturating_sub(1));
        let Some(registry) = self.lanes.get(lane) else {
            // No UDP listener, hence no lane: nothing could read this socket.
            return Err(std::io::Error::other("no lane to serve relay sockets"));
        };
        crate::batch::watch_level_triggered(registry, sock, u64::from(id))
    }

    /// Bind a socket on a random port of the range (even, and with its odd
    /// neighbour, when asked).
    fn bind_random(&self, req: RelayRequest) -> Result<(UdpSocket, Option<UdpSocket>), RelayError> {
        let (lo, hi) = self.ports;
        let mut rng = rand::thread_rng();
        for _ in 0..BIND_ATTEMPTS {
            let mut port = rng.gen_range(lo..=hi);
            if req.even_port {
                port &= !1;
                if port < lo || port == u16::MAX || (req.reserve_next && port + 1 > hi) {
                    continue;
                }
            }
            let Ok(sock) = self.bind_port(port) else {
                continue;
            };
            if !req.reserve_next {
                return Ok((sock, None));
            }
            if let Ok(next) = self.bind_port(port + 1) {
                return Ok((sock, Some(next)));
            }
        }
        Err(RelayError::NoCapacity)
    }

    fn insert(&mut self, sock: UdpSocket) -> Result<Relay, RelayError> {
        let addr = sock.local_addr().map_err(|_| RelayError::NoCapacity)?;
        let id = match self.free.last() {
            Some(&i) => i,
            None => self.slots.len() as u32,
        };
        if let Err(e) = self.register(&sock, id) {
            tracing::warn!("cannot watch a relay socket: {e}");
            return Err(RelayError::NoCapacity);
        }
        let slot = Some(Arc::new(sock));
        match self.free.pop() {
            Some(i) => self.slots[i as usize] = slot,
            None => self.slots.push(slot),
        }
        Ok(Relay {
            id: RelayId(id),
            addr,
        })
    }
}

impl RelayAllocator for RelayPool {
    fn allocate(&mut self, req: RelayRequest) -> Result<Granted, RelayError> {
        let family_ok = match req.family {
            Family::V4 => self.ip.is_ipv4(),
            Family::V6 => self.ip.is_ipv6(),
        };
        if !family_ok {
            return Err(RelayError::FamilyUnsupported);
        }
        let (sock, next) = self.bind_random(req)?;
        let relay = self.insert(sock)?;
        let reserved = match next.map(|n| self.insert(n)).transpose() {
            Ok(r) => r,
            Err(e) => {
                self.release(relay.id);
                return Err(e);
            }
        };
        Ok(Granted { relay, reserved })
    }

    fn release(&mut self, id: RelayId) {
        // Dropping the socket closes it (once a lane is done with a clone it
        // may hold), which also removes it from its lane's poller.
        if self
            .slots
            .get_mut(id.0 as usize)
            .and_then(Option::take)
            .is_some()
        {
            self.free.push(id.0);
        }
    }
}
