//! When to look at the local address towards the server again (the roaming
//! check in [`super::roam::Watch::check`]).
//!
//! On Linux the kernel says when something changed: a netlink route socket
//! subscribed to link, address and route notices wakes the driver only then,
//! where polling every 100 ms cost ten wake-ups and forty syscalls a second
//! for the whole life of the phone. A notice can come before the kernel has
//! finished (a link going down is announced before its routes are gone), so
//! each notice is followed by checks a little later ([`SETTLE`]). Elsewhere,
//! or when the kernel refuses the socket, the driver polls as before.

use std::time::Duration;

use tokio::time::{sleep_until, Instant, Interval, MissedTickBehavior};

/// Without notices: look this often.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// After a notice, look at once and again this long after it.
const SETTLE: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(100),
    Duration::from_millis(1_000),
];

/// Network change notices, or a poll timer where there are none.
pub(super) struct NetWatch {
    notices: Option<notices::Notices>,
    /// Checks still due after the last notice, soonest first.
    settle: Vec<Instant>,
    poll: Option<Interval>,
}

impl NetWatch {
    /// Subscribes to the kernel's notices; falls back to polling.
    pub(super) fn new() -> Self {
        let notices = match notices::Notices::open() {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::debug!(error = %e, "no network change notices: polling every {} ms", POLL_EVERY.as_millis());
                None
            }
        };
        let poll = notices.is_none().then(poll_interval);
        NetWatch {
            notices,
            settle: Vec::new(),
            poll,
        }
    }

    /// True when the kernel's notices drive the checks (no polling).
    #[cfg(test)]
    fn has_notices(&self) -> bool {
        self.notices.is_some()
    }

    /// Resolves when the local address should be looked at again.
    ///
    /// Cancel-safe: a notice read is recorded in `self` before the next await,
    /// so a `select!` that drops this future loses nothing.
    pub(super) async fn changed(&mut self) {
        loop {
            tokio::select! {
                r = notices::next(&mut self.notices) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "network change notices failed: polling instead");
                        self.notices = None;
                        self.poll = Some(poll_interval());
                    }
                    let now = Instant::now();
                    self.settle = SETTLE.iter().map(|d| now + *d).collect();
                }
                _ = sleep_if(self.settle.first().copied()) => {
                    self.settle.remove(0);
                    return;
                }
                _ = tick(&mut self.poll) => return,
            }
        }
    }
}

fn poll_interval() -> Interval {
    let mut interval = tokio::time::interval(POLL_EVERY);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Sleeps until `at`; pending forever without one.
async fn sleep_if(at: Option<Instant>) {
    match at {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn tick(poll: &mut Option<Interval>) {
    match poll {
        Some(p) => {
            p.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(target_os = "linux")]
mod notices {
    //! A netlink route socket (rtnetlink(7)) in the phone's network namespace.
    //! The messages are not parsed: any of them means "look again".

    use std::io;

    use rustix::net::netlink::SocketAddrNetlink;
    use rustix::net::{AddressFamily, SocketFlags, SocketType};

    // Multicast groups from <linux/rtnetlink.h>.
    const RTMGRP_LINK: u32 = 0x1;
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV4_ROUTE: u32 = 0x40;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    const RTMGRP_IPV6_ROUTE: u32 = 0x400;
    const GROUPS: u32 = RTMGRP_LINK
        | RTMGRP_IPV4_IFADDR
        | RTMGRP_IPV4_ROUTE
        | RTMGRP_IPV6_IFADDR
        | RTMGRP_IPV6_ROUTE;

    pub(super) struct Notices {
        /// The netlink socket, held as a datagram socket: tokio registers it
        /// without `unsafe` this way, and only readiness and `recv` are used,
        /// which mean the same for any datagram socket.
        sock: tokio::net::UnixDatagram,
        buf: Vec<u8>,
    }

    impl Notices {
        pub(super) fn open() -> io::Result<Self> {
            let fd = rustix::net::socket_with(
                AddressFamily::NETLINK,
                SocketType::RAW,
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                None, // NETLINK_ROUTE
            )?;
            rustix::net::bind(&fd, &SocketAddrNetlink::new(0, GROUPS))?;
            let std_sock = std::os::unix::net::UnixDatagram::from(fd);
            Ok(Notices {
                sock: tokio::net::UnixDatagram::from_std(std_sock)?,
                buf: vec![0; 8192],
            })
        }

        /// Waits for notices and reads all that are queued.
        async fn drain(&mut self) -> io::Result<()> {
            loop {
                self.sock.readable().await?;
                let mut got = false;
                loop {
                    match self.sock.try_recv(&mut self.buf) {
                        Ok(_) => got = true,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // The kernel dropped notices (our queue was full): something changed.
                        Err(e)
                            if e.raw_os_error()
                                == Some(rustix::io::Errno::NOBUFS.raw_os_error()) =>
                        {
                            got = true
                        }
                        Err(e) => return Err(e),
                    }
                }
                if got {
                    return Ok(());
                }
            }
        }
    }

    /// The next batch of notices (pending forever without a socket).
    pub(super) async fn next(n: &mut Option<Notices>) -> io::Result<()> {
        match n {
            Some(n) => n.drain().await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod notices {
    use std::io;

    pub(super) struct Notices;

    impl Notices {
        pub(super) fn open() -> io::Result<Self> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "network change notices are implemented for Linux only",
            ))
        }
    }

    pub(super) async fn next(_: &mut Option<Notices>) -> io::Result<()> {
        std::future::pending().await
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribes_to_notices_and_does_not_poll() {
        let w = NetWatch::new();
        assert!(
            w.has_notices(),
            "a netlink route socket opens without privileges"
        );
        assert!(w.poll.is_none(), "with notices there is no poll timer");
    }

    #[tokio::test]
    async fn a_notice_asks_for_a_check_now_and_two_follow_ups() {
        let mut w = NetWatch {
            notices: None,
            settle: Vec::new(),
            poll: None,
        };
        let t0 = Instant::now();
        w.settle = SETTLE.iter().map(|d| t0 + *d).collect();
        let mut at = Vec::new();
        for _ in 0..3 {
            w.changed().await;
            at.push(Instant::now() - t0);
        }
        for (got, want) in at.iter().zip(SETTLE) {
            assert!(
                *got >= want && *got < want + Duration::from_millis(80),
                "checks at {at:?}, expected {SETTLE:?}"
            );
        }
        let none = tokio::time::timeout(Duration::from_millis(300), w.changed()).await;
        assert!(none.is_err(), "no more checks after the follow-ups");
    }
}
