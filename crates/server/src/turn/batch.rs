//! Batched receive (`recvmmsg`) for the UDP listener sockets: one system call
//! and one core lock for up to [`BATCH`] client datagrams.
//!
//! The only `unsafe` of the TURN driver lives here, audited: the kernel is
//! handed pointers into buffers this struct owns, for the duration of one call.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Datagrams taken per system call.
pub(super) const BATCH: usize = 32;
/// Room per datagram; longer client datagrams are dropped (MSG_TRUNC).
pub(super) const SLOT: usize = 9216;

/// Receive buffers and the results of the last `recv`.
pub(super) struct RecvBatch {
    bufs: Vec<u8>,
    /// Slots per call, bytes kept free before and after each datagram, datagram room.
    batch: usize,
    head: usize,
    tail: usize,
    size: usize,
    /// (length, source, truncated) for each datagram of the last call.
    got: Vec<(usize, SocketAddr, bool)>,
}

impl RecvBatch {
    /// [`BATCH`] slots of [`SLOT`] bytes (client datagrams).
    pub(super) fn new() -> Self {
        Self::with_layout(BATCH, 0, SLOT, 0)
    }

    /// `batch` slots, each `head` free bytes, room for `size`, `tail` free bytes.
    pub(super) fn with_layout(batch: usize, head: usize, size: usize, tail: usize) -> Self {
        let batch = batch.clamp(1, BATCH);
        RecvBatch {
            bufs: vec![0; batch * (head + size + tail)],
            batch,
            head,
            tail,
            size,
            got: Vec::with_capacity(batch),
        }
    }

    fn slot(&self) -> usize {
        self.head + self.size + self.tail
    }

    /// Slots per call.
    pub(super) fn capacity(&self) -> usize {
        self.batch
    }

    /// Datagram `i` of the last call: (bytes, source), or `None` when truncated.
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(len, from, truncated) = self.got.get(i)?;
        if truncated {
            return None;
        }
        let start = i * self.slot() + self.head;
        Some((&self.bufs[start..start + len], from))
    }

    /// Datagram `i` with its slot for in-place framing: (slot, data range in it, source).
    pub(super) fn slot_mut(
        &mut self,
        i: usize,
    ) -> Option<(&mut [u8], std::ops::Range<usize>, SocketAddr)> {
        let &(len, from, truncated) = self.got.get(i)?;
        if truncated {
            return None;
        }
        let (slot, head) = (self.slot(), self.head);
        Some((
            &mut self.bufs[i * slot..(i + 1) * slot],
            head..head + len,
            from,
        ))
    }

    pub(super) fn len(&self) -> usize {
        self.got.len()
    }

    /// One non-blocking `recvmmsg`; `WouldBlock` when nothing is queued.
    pub(super) fn recv(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        self.got.clear();
        let mut addrs: [MaybeUninit<libc::sockaddr_storage>; BATCH] =
            [MaybeUninit::uninit(); BATCH];
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let slot = self.slot();
        let count = self.batch;
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).enumerate().take(count) {
            iov.iov_base = self.bufs[i * slot + self.head..].as_mut_ptr().cast();
            iov.iov_len = self.size;
            hdr.msg_hdr.msg_name = addrs[i].as_mut_ptr().cast();
            hdr.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer in the first `self.batch` headers points into
        // `self.bufs` (slot i at i*slot+head, `size` bytes, inside the vector),
        // `iovs` or `addrs`, all alive and exclusively borrowed for this call;
        // MSG_DONTWAIT makes the call non-blocking.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, hdr) in hdrs.iter().enumerate().take(n as usize) {
            let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // SAFETY: the kernel filled `addrs[i]` (msg_namelen bytes) for each received message.
            let from = unsafe { to_socket_addr(addrs[i].as_ptr(), hdr.msg_hdr.msg_namelen) };
            if let Some(from) = from {
                self.got.push((hdr.msg_len as usize, from, truncated));
            } else {
                self.got
                    .push((0, SocketAddr::from(([0, 0, 0, 0], 0)), true));
            }
        }
        Ok(n as usize)
    }
}

/// # Safety
/// `ss` must point to an initialised address of `len` bytes.
unsafe fn to_socket_addr(
    ss: *const libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    match i32::from((*ss).ss_family) {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            let a = &*(ss as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            let a = &*(ss as *const libc::sockaddr_in6);
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_several_datagrams_in_one_call() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = RecvBatch::new();
        assert_eq!(b.recv(&rx).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        for i in 0..5u8 {
            tx.send_to(&[i; 10], rx.local_addr().unwrap()).unwrap();
        }
        tx.send_to(&vec![7u8; SLOT + 1], rx.local_addr().unwrap())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(b.recv(&rx).unwrap(), 6);
        for i in 0..5u8 {
            assert_eq!(
                b.get(usize::from(i)),
                Some((&[i; 10][..], tx.local_addr().unwrap()))
            );
        }
        assert_eq!(b.get(5), None, "truncated datagram dropped");
    }
}
