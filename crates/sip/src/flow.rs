//! Transports, flows and the input/output types of the sans-IO core.

use std::net::SocketAddr;

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// WebSocket (RFC 7118) over plain HTTP.
    Ws,
    /// WebSocket over HTTPS.
    Wss,
}

impl Transport {
    /// The token used in Via (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The `transport=` URI parameter value.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Reliable transports need no retransmissions (§17.1.1.2).
    pub fn is_reliable(self) -> bool {
        self != Transport::Udp
    }

    /// Parse a stored or Via token, case-insensitively.
    pub fn parse(s: &str) -> Option<Transport> {
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ]
        .into_iter()
        .find(|t| t.via_token().eq_ignore_ascii_case(s))
    }
}

/// Identifies one stream connection (TCP, TLS, WebSocket) in the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The path a message came in on and a reply goes out on (RFC 5626 "flow").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    /// Our listener's address.
    pub local: SocketAddr,
    /// The peer as we see it (the public side of its NAT).
    pub remote: SocketAddr,
    /// The connection for stream transports; `None` for UDP.
    pub conn: Option<ConnId>,
}

/// Bytes received from the network.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub conn_id: Option<ConnId>,
    /// One datagram, or one frame cut by [`crate::frame::Framer`].
    pub bytes: &'a [u8],
}

impl Input<'_> {
    /// The flow this input arrived on.
    pub fn flow(&self) -> Flow {
        Flow {
            transport: self.transport,
            local: self.local,
            remote: self.remote,
            conn: self.conn_id,
        }
    }
}

/// Bytes to send over a flow. For stream flows the driver writes to the
/// connection `flow.conn`; if it is gone the message is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub flow: Flow,
    pub bytes: Vec<u8>,
}
