//! The only `unsafe` in the lab: entering a network namespace on one thread, creating a
//! TUN device there and waiting for it to become readable. Each call is a single syscall
//! on memory owned by the caller; the SAFETY comments state why.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Moves the *calling thread* into network namespace `ns` (a name under /var/run/netns).
/// Only call this on a thread dedicated to that namespace: it never moves back.
pub(crate) fn enter_netns(ns: &str) -> io::Result<()> {
    let handle = File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: `handle` is an open namespace file for the whole call; setns only changes the
    // calling thread's network namespace and touches no memory of ours.
    let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates TUN device `name` (layer 3, no packet-info header) in the calling thread's
/// namespace. The device lives as long as the returned file; reads and writes on it are
/// whole IP packets.
pub(crate) fn open_tun(name: &str) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is a plain C struct (byte array + union of integers/arrays); all-zero is a
    // valid value for it.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char; // names are checked ASCII-short above; NUL stays at the end
    }
    // IFF_TUN | IFF_NO_PI = 0x1001 fits a c_short.
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, and `request` is a valid, live,
    // exclusively borrowed ifreq for the duration of the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Waits up to `timeout` (rounded up to whole milliseconds) for `file` to become readable.
pub(crate) fn wait_readable(file: &File, timeout: Duration) -> io::Result<bool> {
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `poll` is one valid pollfd that lives across the call; nfds is 1.
    let rc = unsafe { libc::poll(&mut poll, 1, millis) };
    match rc {
        0 => Ok(false),
        1.. if poll.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 => Err(
            io::Error::new(io::ErrorKind::BrokenPipe, "TUN device went away"),
        ),
        1.. => Ok(poll.revents & libc::POLLIN != 0),
        _ => {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            }
        }
    }
}
