//! Listening sockets the SIP and TURN drivers share: TCP listeners, and a UDP
//! listener with a TCP one on the same port.

use std::io::ErrorKind;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::ServeError;

/// How many ports to try when the OS picks the UDP port (`HOST:0`).
const PICK_TRIES: usize = 8;

/// A TCP listener on `addr` for `flag`, in the current tokio runtime.
pub(crate) fn tcp(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let err = |e| ServeError::bind(flag, "tcp", addr, e);
    let s = std::net::TcpListener::bind(addr).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(s).map_err(err)
}

/// What `bind_udp` binds (it returns that and the address it got), and a TCP
/// listener on the same port. With port 0 the OS picks the UDP port, which a
/// TCP socket (say, some connection's local end) may already hold; then both
/// are picked again, a few times (what `bind_udp` returned is dropped first).
pub(crate) fn udp_and_tcp<U>(
    flag: &'static str,
    addr: SocketAddr,
    mut bind_udp: impl FnMut() -> Result<(U, SocketAddr), ServeError>,
) -> Result<(U, TcpListener), ServeError> {
    let mut tries = if addr.port() == 0 { PICK_TRIES } else { 1 };
    loop {
        let (udp, bound) = bind_udp()?;
        match tcp(flag, bound) {
            Ok(listener) => return Ok((udp, listener)),
            Err(ServeError::Bind { error, .. })
                if tries > 1 && error.kind() == ErrorKind::AddrInUse =>
            {
                tries -= 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn udp(addr: SocketAddr) -> Result<(std::net::UdpSocket, SocketAddr), ServeError> {
        let err = |e| ServeError::bind("--test", "udp", addr, e);
        let s = std::net::UdpSocket::bind(addr).map_err(err)?;
        let bound = s.local_addr().map_err(err)?;
        Ok((s, bound))
    }

    #[test]
    fn port_zero_gets_one_port_for_udp_and_tcp() {
        let rt = runtime();
        let _in = rt.enter();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for _ in 0..20 {
            let (u, t) = udp_and_tcp("--test", any, || udp(any)).unwrap();
            assert_eq!(u.local_addr().unwrap(), t.local_addr().unwrap());
        }
    }

    #[test]
    fn a_given_port_whose_tcp_side_is_taken_is_named() {
        let rt = runtime();
        let _in = rt.enter();
        // A port with UDP free and TCP taken.
        let (held, port) = loop {
            let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = t.local_addr().unwrap().port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break (t, port);
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        match udp_and_tcp("--test", addr, || udp(addr)) {
            Err(ServeError::Bind {
                flag, transport, ..
            }) => assert_eq!((flag, transport), ("--test", "tcp")),
            other => panic!("expected a TCP bind error, got {:?}", other.map(|_| ())),
        }
        drop(held);
    }
}
