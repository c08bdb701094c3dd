//! Sends and receives on many sockets in one system call: an io_uring per
//! lane thread, one `IORING_OP_SEND` (with a destination address) per
//! datagram out and one `IORING_OP_RECVMSG` per ready socket in, submitted
//! together with one `io_uring_enter`. Where io_uring is unavailable (old
//! kernel, `kernel.io_uring_disabled`, a seccomp filter) [`BatchIo`] falls
//! back to one `sendto` per datagram and one `recvmmsg` per socket.
//!
//! Every request carries `MSG_DONTWAIT`, which io_uring honours by completing
//! a request that would block with `EAGAIN` instead of parking it (arming a
//! poll): every request of a submission has completed when `io_uring_enter`
//! returns, and [`Ring::flush`] waits for exactly as many completions as it
//! submitted anyway, so no buffer or address outlives the call that lent it.

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use io_uring::{opcode, types, IoUring};

use super::{to_socket_addr, RecvBatch, BATCH};

/// Requests per submission (and ring size).
pub(crate) const RING: usize = 64;

/// What a lane asks of io_uring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RingUse {
    /// Nothing: `sendto` and `recvmmsg`.
    Off,
    /// Sends only; relay sockets are read with `recvmmsg`.
    Send,
    /// Sends and relay socket reads.
    Full,
}

/// How a lane sends on and reads from many sockets: through its io_uring
/// (one system call per batch), or one system call per socket.
pub(crate) struct BatchIo {
    /// `None`: no ring (not wanted, unavailable, or failed once).
    ring: Option<Box<Ring>>,
    /// Read through the ring too.
    ring_recv: bool,
}

impl BatchIo {
    /// A ring as `want` asks when the kernel allows one, else none.
    /// Call it on the thread that will use it (the ring is single-issuer).
    pub(crate) fn new(want: RingUse) -> Self {
        let ring = match want {
            RingUse::Off => None,
            RingUse::Send | RingUse::Full => match Ring::new() {
                Ok(r) => Some(Box::new(r)),
                Err(e) => {
                    tracing::info!(
                        "io_uring unavailable ({e}); relaying with one sendto per datagram \
                         (sysctl kernel.io_uring_disabled=0 enables it)"
                    );
                    None
                }
            },
        };
        BatchIo {
            ring,
            ring_recv: want == RingUse::Full,
        }
    }

    /// What this one really uses.
    pub(crate) fn ring_use(&self) -> RingUse {
        match (&self.ring, self.ring_recv) {
            (None, _) => RingUse::Off,
            (Some(_), false) => RingUse::Send,
            (Some(_), true) => RingUse::Full,
        }
    }

    /// Send each `(socket, bytes, destination)`. A datagram the kernel refuses
    /// (full buffer, unreachable) is dropped, as a router would. Returns how
    /// many were sent. A ring that fails is dropped for good (logged once);
    /// the remaining datagrams go out with `sendto`.
    pub(crate) fn send_each<'a>(
        &mut self,
        msgs: impl IntoIterator<Item = (BorrowedFd<'a>, &'a [u8], SocketAddr)>,
    ) -> usize {
        let mut msgs = msgs.into_iter();
        let mut sent = 0;
        if let Some(r) = &mut self.ring {
            match r.send_each(&mut msgs) {
                Ok(n) => return n,
                Err((n, e)) => {
                    tracing::warn!("io_uring send failed ({e}); relaying with sendto from now on");
                    sent = n;
                    self.ring = None;
                }
            }
        }
        sent + msgs
            .filter(|(fd, bytes, to)| send_to(*fd, bytes, *to).is_ok())
            .count()
    }
}

impl BatchIo {
    /// Receive from each socket of `socks` (at most `batch.room()` of them)
    /// into `batch`, after the datagrams it holds: one datagram per socket
    /// with io_uring (one system call for all), up to `per_socket` with
    /// `recvmmsg` (one call per socket). `got[k]` is (datagrams appended from
    /// socket `k`, in socket order; whether it may hold more: it gave all it
    /// was asked, or reported an error such as ICMP unreachable, after which
    /// data may still be queued). Sockets past the batch's room are not read
    /// (`(0, true)`). Returns the datagrams appended.
    pub(crate) fn recv_each(
        &mut self,
        batch: &mut RecvBatch,
        socks: &[impl AsFd],
        per_socket: usize,
        got: &mut Vec<(usize, bool)>,
    ) -> usize {
        got.clear();
        got.resize(socks.len(), (0, true));
        let take = socks.len().min(batch.room());
        if let Some(r) = self.ring.as_mut().filter(|_| self.ring_recv) {
            match r.recv_each(batch, &socks[..take], got) {
                Ok(n) => return n,
                Err(e) => {
                    tracing::warn!("io_uring receive failed ({e}); using recvmmsg from now on");
                    self.ring = None;
                }
            }
        }
        let mut total = 0;
        for (k, sock) in socks.iter().enumerate() {
            let asked = per_socket.min(batch.room());
            if asked == 0 {
                break;
            }
            got[k] = match batch.recv_append(&sock.as_fd(), asked) {
                Ok(n) => {
                    total += n;
                    (n, n == asked)
                }
                Err(e) => (0, e.raw_os_error().is_some_and(data_may_follow)),
            };
        }
        total
    }
}

/// One io_uring and the destination addresses of the submission being built.
pub(crate) struct Ring {
    ring: IoUring,
    names: Vec<socket2::SockAddr>,
}

impl Ring {
    pub(crate) fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_submit_all()
            .setup_coop_taskrun()
            .build(RING as u32)?;
        let unspecified = socket2::SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok(Ring {
            ring,
            names: vec![unspecified; RING],
        })
    }

    /// Send everything `msgs` yields, [`RING`] requests per submission.
    /// On a ring failure: the datagrams sent so far and the error; the ring
    /// must then be dropped (entries it holds may never have been submitted).
    fn send_each<'a>(
        &mut self,
        msgs: &mut impl Iterator<Item = (BorrowedFd<'a>, &'a [u8], SocketAddr)>,
    ) -> Result<usize, (usize, io::Error)> {
        let mut sent = 0;
        let mut n = 0;
        let fail = |sent, e| Err((sent, e));
        for (fd, bytes, to) in msgs.by_ref() {
            let Ok(len) = u32::try_from(bytes.len()) else {
                continue;
            };
            self.names[n] = socket2::SockAddr::from(to);
            let name = &self.names[n];
            let sqe = opcode::Send::new(types::Fd(fd.as_raw_fd()), bytes.as_ptr(), len)
                .dest_addr(name.as_ptr().cast())
                .dest_addr_len(name.len())
                .flags(libc::MSG_DONTWAIT)
                .build();
            // SAFETY: the entry points at `bytes` (borrowed for 'a, beyond this
            // call), at `self.names[n]` (not written again before this batch
            // is flushed) and at `fd` (borrowed, so open). Every batch is
            // flushed before its slots are reused and before this function
            // returns, and `flush` only returns Ok once all its requests have
            // completed (MSG_DONTWAIT: none is parked waiting for room), so the
            // kernel never reads them afterwards; on Err the caller drops the
            // ring, so entries not yet submitted are never read either.
            // The queue has room: at most RING (its size) entries sit in it.
            if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                return fail(sent, io::Error::other("submission queue full"));
            }
            n += 1;
            if n == RING {
                sent += self.flush(n).map_err(|e| (sent, e))?;
                n = 0;
            }
        }
        if n > 0 {
            sent += self.flush(n).map_err(|e| (sent, e))?;
        }
        Ok(sent)
    }

    /// One `RECVMSG` per socket into the free slots of `batch`, one submission.
    fn recv_each(
        &mut self,
        batch: &mut RecvBatch,
        socks: &[impl AsFd],
        got: &mut [(usize, bool)],
    ) -> io::Result<usize> {
        let first = batch.got.len();
        let count = socks.len().min(batch.room()).min(BATCH);
        let mut addrs: [MaybeUninit<libc::sockaddr_storage>; BATCH] =
            [MaybeUninit::uninit(); BATCH];
        // SAFETY: iovec and msghdr are plain C structs for which all-zero is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::msghdr; BATCH] = unsafe { std::mem::zeroed() };
        let slot = batch.slot_len();
        for k in 0..count {
            let iov = &mut iovs[k];
            iov.iov_base = batch.bufs[(first + k) * slot + batch.head..]
                .as_mut_ptr()
                .cast();
            iov.iov_len = batch.size;
            let hdr = &mut hdrs[k];
            hdr.msg_name = addrs[k].as_mut_ptr().cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            let sqe = opcode::RecvMsg::new(types::Fd(socks[k].as_fd().as_raw_fd()), hdr)
                .flags((libc::MSG_DONTWAIT | libc::MSG_TRUNC) as u32)
                .build()
                .user_data(k as u64);
            // SAFETY: the entry points at `hdrs[k]`, which points at `iovs[k]`,
            // `addrs[k]` (locals of this function) and slot first+k of
            // `batch.bufs` (`size` bytes from `head`, inside the vector since
            // first+count <= batch), all exclusively borrowed until it returns;
            // `flush` below waits for this request's completion before that
            // (or returns Err, after which the caller drops the ring). `socks[k]`
            // is borrowed, so open. At most BATCH < RING entries are queued.
            if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                return Err(io::Error::other("submission queue full"));
            }
        }
        let mut results = [0i32; BATCH];
        self.flush_with(count, |k, res| {
            if let Some(r) = results.get_mut(k) {
                *r = res;
            }
        })?;
        let mut total = 0;
        for k in 0..count {
            let res = results[k];
            let from = if res < 0 {
                None
            } else {
                // SAFETY: the kernel wrote `msg_namelen` bytes of `addrs[k]`
                // for this completed receive.
                unsafe { to_socket_addr(addrs[k].as_ptr(), hdrs[k].msg_namelen) }
            };
            let Some(from) = from else {
                // Nothing (EAGAIN: drained), an error (data may follow) or
                // an unreadable source: an empty entry, compacted away below.
                got[k] = (0, data_may_follow(-res));
                batch.got.push((0, UNSPECIFIED, true));
                continue;
            };
            let len = res as usize;
            let truncated = len > batch.size || hdrs[k].msg_flags & libc::MSG_TRUNC != 0;
            batch.got.push((len.min(batch.size), from, truncated));
            got[k] = (1, true);
            total += 1;
        }
        batch.compact(first);
        Ok(total)
    }

    /// Submit the `n` queued requests and wait for their `n` completions;
    /// returns how many succeeded.
    fn flush(&mut self, n: usize) -> io::Result<usize> {
        let mut ok = 0;
        self.flush_with(n, |_, res| ok += usize::from(res >= 0))?;
        Ok(ok)
    }

    /// Submit the `n` queued requests and wait for their `n` completions,
    /// handing each one's (user data, result) to `seen`.
    ///
    /// Transient failures of `io_uring_enter` (a signal, `EAGAIN`/`EBUSY`
    /// for lack of kernel memory) are retried, since requests may be in
    /// flight; any other error means the ring itself is unusable (bad
    /// descriptor or memory, ring torn down), runs no request, and must be
    /// dropped: then `Err`.
    fn flush_with(&mut self, n: usize, mut seen: impl FnMut(usize, i32)) -> io::Result<()> {
        let mut done = 0;
        while done < n {
            match self.ring.submit_and_wait(n - done) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
            for cqe in self.ring.completion() {
                done += 1;
                seen(cqe.user_data() as usize, cqe.result());
            }
        }
        Ok(())
    }
}

/// Errors a UDP receive reports once for an earlier send (ICMP port
/// unreachable and the like), or an interruption: datagrams may still be queued.
fn data_may_follow(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNREFUSED
            | libc::ECONNRESET
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EINTR
    )
}

const UNSPECIFIED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

fn send_to(fd: BorrowedFd<'_>, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
    let name = socket2::SockAddr::from(to);
    // SAFETY: `bytes` and `name` are alive and unchanged for the call; the
    // kernel only reads them. MSG_DONTWAIT keeps the call non-blocking.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT,
            name.as_ptr().cast(),
            name.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A socket's descriptor for [`BatchIo::send_each`].
pub(crate) fn fd(sock: &UdpSocket) -> BorrowedFd<'_> {
    std::os::fd::AsFd::as_fd(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path: the ring for all, for sends only (when this kernel has
    /// one), and the fallback.
    fn all() -> Vec<BatchIo> {
        let ring = BatchIo::new(RingUse::Full);
        if ring.ring_use() == RingUse::Off {
            eprintln!("SKIPPING the io_uring cases: io_uring is unavailable here");
        }
        vec![
            ring,
            BatchIo::new(RingUse::Send),
            BatchIo::new(RingUse::Off),
        ]
    }

    fn udp() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    #[test]
    fn sends_from_many_sockets_to_many_destinations() {
        for mut io in all() {
            let rx: Vec<UdpSocket> = (0..3).map(|_| udp()).collect();
            let tx: Vec<UdpSocket> = (0..(RING + 6)).map(|_| udp()).collect();
            let payloads: Vec<Vec<u8>> = (0..tx.len()).map(|i| vec![i as u8; 1 + i]).collect();
            let msgs = tx
                .iter()
                .enumerate()
                .map(|(i, s)| (fd(s), &payloads[i][..], rx[i % 3].local_addr().unwrap()));
            assert_eq!(io.send_each(msgs), tx.len(), "{:?}", io.ring_use());
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut buf = [0u8; 256];
            for (i, s) in tx.iter().enumerate() {
                let (n, from) = rx[i % 3].recv_from(&mut buf).unwrap();
                assert_eq!(
                    (&buf[..n], from),
                    (&payloads[i][..], s.local_addr().unwrap())
                );
            }
        }
    }

    #[test]
    fn receives_one_round_from_many_sockets_in_order() {
        for mut io in all() {
            let ring = io.ring_use() == RingUse::Full;
            let tx = udp();
            let socks: Vec<UdpSocket> = (0..4).map(|_| udp()).collect();
            // Socket 0: two datagrams; 1: none; 2: one too long for a slot; 3: one.
            tx.send_to(b"a0", socks[0].local_addr().unwrap()).unwrap();
            tx.send_to(b"a1", socks[0].local_addr().unwrap()).unwrap();
            tx.send_to(&[9u8; 100], socks[2].local_addr().unwrap())
                .unwrap();
            tx.send_to(b"d0", socks[3].local_addr().unwrap()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut batch = RecvBatch::with_layout(4, 4, 64, 0);
            let mut got = Vec::new();
            let n = io.recv_each(&mut batch, &socks, 8, &mut got);
            let from = tx.local_addr().unwrap();
            if ring {
                // One each; the drained socket left no hole.
                assert_eq!(n, 3);
                assert_eq!(got, vec![(1, true), (0, false), (1, true), (1, true)]);
                assert_eq!(batch.get(0), Some((&b"a0"[..], from)));
                assert_eq!(batch.get(1), None, "truncated");
                assert_eq!(batch.get(2), Some((&b"d0"[..], from)));
                assert_eq!(batch.room(), 1);
                // The next round finds a1 and drains the rest.
                let n = io.recv_each(&mut batch, &socks, 8, &mut got);
                assert_eq!((n, got[0]), (1, (1, true)));
                assert_eq!(batch.get(3), Some((&b"a1"[..], from)));
            } else {
                // recvmmsg: socket 0 gives both at once; socket 3 filled
                // the batch, so it may hold more.
                assert_eq!(n, 4);
                assert_eq!(got, vec![(2, false), (0, false), (1, false), (1, true)]);
                assert_eq!(batch.get(1), Some((&b"a1"[..], from)));
                assert_eq!(batch.get(2), None, "truncated");
                assert_eq!(batch.get(3), Some((&b"d0"[..], from)));
            }
        }
    }

    #[test]
    fn stops_at_the_batch_room() {
        for mut io in all() {
            let tx = udp();
            let socks: Vec<UdpSocket> = (0..3).map(|_| udp()).collect();
            for s in &socks {
                tx.send_to(b"x", s.local_addr().unwrap()).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut batch = RecvBatch::with_layout(2, 0, 16, 0);
            let mut got = Vec::new();
            assert_eq!(io.recv_each(&mut batch, &socks, 8, &mut got), 2);
            assert_eq!(got[2], (0, true), "not read: still to do");
            assert_eq!(batch.room(), 0);
        }
    }
}
