//! Relay sockets: one UDP socket per allocation on `--relay-ip`, a port from
//! `--relay-ports`, and a task per socket moving peer datagrams to the client.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use natter_turn::server::{
    Family, Granted, Relay, RelayAllocator, RelayError, RelayId, RelayRequest, Transport,
    PEER_HEADROOM, PEER_TAILROOM,
};
use rand::Rng;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

use super::batch::RecvBatch;
use super::driver::Driver;

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535 - 64;
/// Ports tried before giving up with 508.
const BIND_ATTEMPTS: usize = 64;

struct Slot {
    sock: Arc<UdpSocket>,
    task: Option<AbortHandle>,
}

/// The driver's [`RelayAllocator`]: binds sockets, numbers them, closes them.
pub(super) struct RelayPool {
    ip: IpAddr,
    ports: (u16, u16),
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    fresh: Vec<(RelayId, Arc<UdpSocket>)>,
}

impl RelayPool {
    pub(super) fn new(ip: IpAddr, ports: (u16, u16)) -> Self {
        RelayPool {
            ip,
            ports,
            slots: Vec::new(),
            free: Vec::new(),
            fresh: Vec::new(),
        }
    }

    pub(super) fn socket(&self, id: RelayId) -> Option<Arc<UdpSocket>> {
        Some(self.slots.get(id.0 as usize)?.as_ref()?.sock.clone())
    }

    /// Sockets bound since the last call, for the driver to start tasks on.
    pub(super) fn take_new(&mut self) -> Vec<(RelayId, Arc<UdpSocket>)> {
        std::mem::take(&mut self.fresh)
    }

    pub(super) fn set_task(&mut self, id: RelayId, task: AbortHandle) {
        match self.slots.get_mut(id.0 as usize).and_then(Option::as_mut) {
            Some(slot) => slot.task = Some(task),
            None => task.abort(),
        }
    }

    fn bind_port(&self, port: u16) -> std::io::Result<UdpSocket> {
        let std_sock = std::net::UdpSocket::bind(SocketAddr::new(self.ip, port))?;
        std_sock.set_nonblocking(true)?;
        UdpSocket::from_std(std_sock)
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
        let sock = Arc::new(sock);
        let slot = Some(Slot {
            sock: sock.clone(),
            task: None,
        });
        let id = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() as u32 - 1
            }
        };
        self.fresh.push((RelayId(id), sock));
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
        let reserved = match next {
            Some(n) => Some(self.insert(n)?),
            None => None,
        };
        Ok(Granted { relay, reserved })
    }

    fn release(&mut self, id: RelayId) {
        let Some(slot) = self.slots.get_mut(id.0 as usize).and_then(Option::take) else {
            return;
        };
        if let Some(task) = slot.task {
            task.abort();
        }
        self.fresh.retain(|(i, _)| *i != id);
        self.free.push(id.0);
    }
}

/// Datagrams taken per `recvmmsg` on a relay socket.
const RELAY_BATCH: usize = 4;

thread_local! {
    /// One receive buffer per worker thread, shared by every relay socket it
    /// serves: an idle allocation costs no buffer at all.
    static RELAY_BUF: RefCell<RecvBatch> =
        RefCell::new(RecvBatch::with_layout(RELAY_BATCH, PEER_HEADROOM, MAX_DATAGRAM, PEER_TAILROOM));
}

/// Receive from peers on one relay socket and pass framed data to the client.
///
/// A short batch means the socket queue is empty: the closure then reports
/// `WouldBlock` so tokio clears readiness without a second, empty `recvmmsg`
/// (a datagram arriving meanwhile raises readiness again).
pub(super) async fn serve(driver: Arc<Driver>, id: RelayId, sock: Arc<UdpSocket>) {
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        loop {
            let drained = sock.try_io(Interest::READABLE, || {
                RELAY_BUF.with(|b| {
                    let mut batch = b.borrow_mut();
                    let n = batch.recv(&*sock)?;
                    driver.relay_from_peers(id, &mut batch);
                    if n < batch.capacity() {
                        Err(std::io::ErrorKind::WouldBlock.into())
                    } else {
                        Ok(())
                    }
                })
            });
            if drained.is_err() {
                break;
            }
        }
    }
}

impl Driver {
    /// Frame a batch of peer datagrams for their client(s), one core lock for all.
    fn relay_from_peers(&self, id: RelayId, batch: &mut RecvBatch) {
        let now = Instant::now();
        for i in 0..batch.len() {
            let Some((slot, range, peer)) = batch.slot_mut(i) else {
                continue;
            };
            let out = self.core().handle_peer(now, id, peer, slot, range);
            let Some(to) = out else { continue };
            let frame = &slot[to.range.clone()];
            match to.to.transport {
                Transport::Udp => {
                    if let Some(s) = self.udp_for(to.to.server) {
                        // A full socket buffer drops the packet, as a router would.
                        super::driver::send_now(s, frame, to.to.client);
                    }
                }
                Transport::Tcp | Transport::Tls => self.queue_stream(&to.to, frame.to_vec()),
            }
        }
    }
}
