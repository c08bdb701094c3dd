//! Batched receive (`recvmmsg`) and send (`sendmmsg`) for the UDP fast path:
//! one system call for up to [`BATCH`] datagrams; and the open-file limit
//! (one relay socket per allocation).
//!
//! The only `unsafe` of the UDP drivers lives here, audited: the kernel is
//! handed pointers into buffers borrowed for the duration of one call.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

mod uring;
pub(crate) use uring::{fd, BatchIo, RingUse};

/// Datagrams taken per system call.
pub(crate) const BATCH: usize = 32;
/// Room per datagram; longer client datagrams are dropped (MSG_TRUNC).
pub(crate) const SLOT: usize = 9216;

/// Receive buffers and the results of the last `recv`.
pub(crate) struct RecvBatch {
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
    pub(crate) fn new() -> Self {
        Self::with_layout(BATCH, 0, SLOT, 0)
    }

    /// `batch` slots, each `head` free bytes, room for `size`, `tail` free bytes.
    pub(crate) fn with_layout(batch: usize, head: usize, size: usize, tail: usize) -> Self {
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

    fn slot_len(&self) -> usize {
        self.head + self.size + self.tail
    }

    /// Slots per call.
    pub(crate) fn capacity(&self) -> usize {
        self.batch
    }

    /// Datagram `i` of the last call: (bytes, source), or `None` when truncated.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(len, from, truncated) = self.got.get(i)?;
        if truncated {
            return None;
        }
        let start = i * self.slot_len() + self.head;
        Some((&self.bufs[start..start + len], from))
    }

    /// The whole slot of datagram `i` (after [`RecvBatch::slot_mut`] framed it).
    pub(crate) fn slot(&self, i: usize) -> Option<&[u8]> {
        self.got.get(i)?;
        let slot = self.slot_len();
        self.bufs.get(i * slot..(i + 1) * slot)
    }

    /// Datagram `i` with its slot for in-place framing: (slot, data range in it, source).
    pub(crate) fn slot_mut(
        &mut self,
        i: usize,
    ) -> Option<(&mut [u8], std::ops::Range<usize>, SocketAddr)> {
        let &(len, from, truncated) = self.got.get(i)?;
        if truncated {
            return None;
        }
        let (slot, head) = (self.slot_len(), self.head);
        Some((
            &mut self.bufs[i * slot..(i + 1) * slot],
            head..head + len,
            from,
        ))
    }

    pub(crate) fn len(&self) -> usize {
        self.got.len()
    }

    /// One non-blocking `recvmmsg` into the whole batch (forgetting the last
    /// call's datagrams); `WouldBlock` when nothing is queued.
    pub(crate) fn recv(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        self.got.clear();
        self.recv_append(sock, self.batch)
    }

    /// Free slots after the datagrams held now.
    pub(crate) fn room(&self) -> usize {
        self.batch - self.got.len()
    }

    /// Forget the datagrams held.
    pub(crate) fn clear(&mut self) {
        self.got.clear();
    }

    /// Drop the empty entries (`len` 0 and truncated: a receive that got
    /// nothing) from `first` on, moving later datagrams down into their slots.
    fn compact(&mut self, first: usize) {
        let slot = self.slot_len();
        let mut keep = first;
        for i in first..self.got.len() {
            let (len, _, truncated) = self.got[i];
            if len == 0 && truncated {
                continue;
            }
            if i != keep {
                let start = i * slot + self.head;
                self.bufs
                    .copy_within(start..start + len, keep * slot + self.head);
                self.got[keep] = self.got[i];
            }
            keep += 1;
        }
        self.got.truncate(keep);
    }

    /// One non-blocking `recvmmsg` of at most `max` datagrams into the free
    /// slots after those held now (which stay); `WouldBlock` when nothing is queued.
    pub(crate) fn recv_append(&mut self, sock: &impl AsRawFd, max: usize) -> io::Result<usize> {
        let first = self.got.len();
        let count = max.min(self.room());
        if count == 0 {
            return Ok(0);
        }
        let mut addrs: [MaybeUninit<libc::sockaddr_storage>; BATCH] =
            [MaybeUninit::uninit(); BATCH];
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let slot = self.slot_len();
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).enumerate().take(count) {
            iov.iov_base = self.bufs[(first + i) * slot + self.head..]
                .as_mut_ptr()
                .cast();
            iov.iov_len = self.size;
            hdr.msg_hdr.msg_name = addrs[i].as_mut_ptr().cast();
            hdr.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer in the first `count` headers points into
        // `self.bufs` (slot first+i at (first+i)*slot+head, `size` bytes, inside
        // the vector since first+count <= batch),
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

/// Send each `(bytes, destination)` on `sock` with as few `sendmmsg` calls as
/// possible. A datagram the kernel refuses (full buffer, unreachable) is
/// dropped, as a router would; the rest still go. Returns how many were sent.
pub(crate) fn send_many(sock: &impl AsRawFd, msgs: &[(&[u8], SocketAddr)]) -> usize {
    let mut sent = 0;
    let mut rest = msgs;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(BATCH)];
        match sendmmsg(sock, chunk) {
            Ok(n) if n > 0 => {
                sent += n;
                rest = &rest[n..];
            }
            // The first datagram was refused: drop it and go on with the next.
            _ => rest = &rest[1..],
        }
    }
    sent
}

/// One non-blocking `sendmmsg` of at most [`BATCH`] datagrams.
fn sendmmsg(sock: &impl AsRawFd, msgs: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    let count = msgs.len().min(BATCH);
    let mut names: [MaybeUninit<socket2::SockAddr>; BATCH] =
        [const { MaybeUninit::uninit() }; BATCH];
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, (bytes, to)) in msgs.iter().take(count).enumerate() {
        let name = names[i].write(socket2::SockAddr::from(*to));
        iovs[i].iov_base = bytes.as_ptr() as *mut libc::c_void;
        iovs[i].iov_len = bytes.len();
        hdrs[i].msg_hdr.msg_name = name.as_ptr() as *mut libc::c_void;
        hdrs[i].msg_hdr.msg_namelen = name.len();
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `count` headers point at `names[i]` (initialised just
    // above), `iovs[i]` and the caller's byte slices, all alive and unchanged
    // for this call; the kernel only reads through them (the iov_base cast
    // to *mut is required by the C type, not used for writing). MSG_DONTWAIT
    // makes the call non-blocking.
    let n = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Watch `sock` for reading on the epoll instance `epoll` (a lane's mio
/// registry), level-triggered, its events carrying `token`. mio registers
/// edge-triggered only, which obliges the reader to go on until `EAGAIN`;
/// level-triggered, a socket read once that still holds data is reported
/// again by the next `epoll_wait`. Closing the socket removes it.
pub(crate) fn watch_level_triggered(
    epoll: &impl AsRawFd,
    sock: &impl AsRawFd,
    token: u64,
) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: epoll_ctl only reads `ev`, which we own, during the call; both
    // descriptors are borrowed from live owners, hence open.
    let r = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            sock.as_raw_fd(),
            &mut ev,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raise the soft open-file limit to the hard limit; returns (before, now).
pub(crate) fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
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

    #[test]
    fn level_triggered_socket_is_reported_again_while_it_holds_data() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        watch_level_triggered(poll.registry(), &rx, 7).unwrap();
        let timeout = Some(std::time::Duration::from_millis(200));
        let tokens = |poll: &mut mio::Poll, events: &mut mio::Events| {
            poll.poll(events, timeout).unwrap();
            events.iter().map(|e| e.token().0).collect::<Vec<_>>()
        };
        assert_eq!(tokens(&mut poll, &mut events), Vec::<usize>::new());
        tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"two", rx.local_addr().unwrap()).unwrap();
        assert_eq!(tokens(&mut poll, &mut events), vec![7]);
        let mut buf = [0u8; 8];
        assert_eq!(rx.recv(&mut buf).unwrap(), 3);
        // No new datagram since: edge-triggered would stay silent here.
        assert_eq!(tokens(&mut poll, &mut events), vec![7], "still holds one");
        assert_eq!(rx.recv(&mut buf).unwrap(), 3);
        assert_eq!(tokens(&mut poll, &mut events), Vec::<usize>::new(), "empty");
    }

    #[test]
    fn sends_many_in_one_call_and_appends_receives() {
        let rx1 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx2 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a1, a2) = (rx1.local_addr().unwrap(), rx2.local_addr().unwrap());
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 3 + usize::from(i)]).collect();
        let msgs: Vec<(&[u8], SocketAddr)> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (&p[..], if i % 2 == 0 { a1 } else { a2 }))
            .collect();
        assert_eq!(send_many(&tx, &msgs), 40, "more than one sendmmsg batch");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut b = RecvBatch::with_layout(BATCH, 4, 64, 0);
        assert_eq!(b.recv_append(&rx1, 5).unwrap(), 5);
        assert_eq!(b.recv_append(&rx2, 3).unwrap(), 3);
        assert_eq!(b.len(), 8);
        assert_eq!(b.get(0).unwrap().0, &payloads[0][..]);
        assert_eq!(b.get(4).unwrap().0, &payloads[8][..]);
        assert_eq!(
            b.get(5).unwrap().0,
            &payloads[1][..],
            "appended after the first five"
        );
        let (slot, range, from) = b.slot_mut(7).unwrap();
        assert_eq!(
            (&slot[range], from),
            (&payloads[5][..], tx.local_addr().unwrap())
        );
        assert_eq!(b.room(), BATCH - 8);
        b.clear();
        assert_eq!(b.recv_append(&rx1, BATCH).unwrap(), 15, "the rest of rx1");
    }
}
