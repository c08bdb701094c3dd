//! One STUN Binding over TCP, used only to explain a UDP failure: when the server answers
//! over TCP but never over UDP, the network blocks UDP (rather than the server being down).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use natter_turn::stun::{self, BindingRequest, Class, TransactionId};

/// Largest answer we accept; a Binding success is well under 200 bytes.
const MAX_ANSWER: usize = 2048;

/// The reflexive address `server` reports over TCP, or `None` if it does not answer within
/// `timeout` (connect, send and receive together).
pub(super) fn binding_over_tcp(server: SocketAddr, timeout: Duration) -> Option<SocketAddr> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&server, timeout).ok()?;
    let tid = TransactionId::random(&mut rand::thread_rng());
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(&BindingRequest::new(tid).build()).ok()?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        let len = stream.read(&mut chunk).ok().filter(|len| *len > 0)?;
        buffer.extend_from_slice(&chunk[..len]);
        if let Some(frame) = stun::frame_len(&buffer).ok()? {
            return reflexive_address(&buffer[..frame], tid);
        }
        if buffer.len() > MAX_ANSWER {
            return None;
        }
    }
}

/// The reflexive address in a Binding success for transaction `tid`.
fn reflexive_address(frame: &[u8], tid: TransactionId) -> Option<SocketAddr> {
    let message = stun::decode(frame).ok()?;
    let ours = message.transaction_id() == tid && message.class() == Class::Success;
    ours.then(|| message.reflexive_address()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    use natter_turn::binding::{BindingConfig, BindingServer, Source};

    /// A one-shot TCP STUN server on loopback using natter's Binding core.
    fn serve_once(split_reply: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, peer) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let len = stream.read(&mut request).unwrap();
            let server = BindingServer::new(BindingConfig::new(addr));
            let reply = server
                .handle(Source::Primary, peer, &request[..len])
                .unwrap();
            if split_reply {
                stream.write_all(&reply.payload[..7]).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                stream.write_all(&reply.payload[7..]).unwrap();
            } else {
                stream.write_all(&reply.payload).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_the_reflexive_address_even_in_pieces() {
        for split in [false, true] {
            let server = serve_once(split);
            let mapped = binding_over_tcp(server, Duration::from_secs(5)).expect("answer");
            assert_eq!(mapped.ip(), server.ip());
        }
    }

    #[test]
    fn nothing_listening_is_none() {
        let unused = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(binding_over_tcp(unused, Duration::from_millis(500)), None);
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        assert_eq!(
            binding_over_tcp(listener.local_addr().unwrap(), Duration::from_millis(300)),
            None
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
