//! The media UDP socket, watched for reading only.
//!
//! tokio's `UdpSocket` registers for read and write readiness. A UDP socket
//! signals "writable" again each time a sent datagram leaves its send buffer,
//! so with edge-triggered epoll every voice packet sent woke the runtime once
//! more for an event nobody waits on. Here only read readiness is registered
//! and sends are plain non-blocking `sendto`s: a datagram that finds the send
//! buffer full is dropped, as a congested network would drop it (voice is
//! real-time; ICE, DTLS and TURN retransmit their own).

use std::io;
use std::net::{SocketAddr, UdpSocket};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A bound, non-blocking UDP socket in the runtime's reactor, read side only.
pub(crate) struct MediaSocket {
    fd: AsyncFd<UdpSocket>,
}

impl MediaSocket {
    /// Binds to `addr` (port 0 for any) and registers for read readiness.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        // Deprecated for I/O safety: a generic `T` could hand out a descriptor
        // that changes or closes under the reactor. A `std::net::UdpSocket`
        // owns its descriptor until it is dropped with the `AsyncFd`, which is
        // the contract of the unsafe `register_with_interest` (this crate
        // forbids `unsafe`).
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(socket, Interest::READABLE)?;
        Ok(Self { fd })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// The next datagram; waits for one.
    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| fd.get_ref().recv_from(buf)) {
                Ok(result) => return result,
                // Readiness was stale (the queue is empty): wait for the next edge.
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one datagram now. A full send buffer drops it (logged at debug).
    pub(crate) fn send_to(&self, buf: &[u8], to: SocketAddr) {
        match self.fd.get_ref().send_to(buf, to) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tracing::debug!(%to, len = buf.len(), "media send buffer full: datagram dropped");
            }
            Err(e) => tracing::debug!(%to, error = %e, "media send failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn datagrams_go_both_ways_and_an_empty_queue_waits() {
        let a = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut buf = [0u8; 64];

        // Nothing queued yet: the read waits rather than failing with WouldBlock.
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.recv_from(&mut buf)).await;
        assert!(early.is_err(), "a read on an empty socket must wait");

        a.send_to(b"one", b_addr);
        a.send_to(b"two", b_addr);
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"one"[..], a_addr));
        let (n, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"two");

        b.send_to(b"back", a_addr);
        let (n, from) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"back"[..], b_addr));
    }
}
