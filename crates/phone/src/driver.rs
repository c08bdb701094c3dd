//! The tokio driver: sockets around the sans-IO [`Phone`].
//!
//! One SIP flow (UDP, TCP or TLS) to the server, one UDP media socket (host
//! candidate, srflx and TURN-over-UDP), and for TURN over TCP/TLS one stream to
//! the TURN server. Commands come in on a channel; events and heard audio go
//! out on another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use natter_sip::flow::Transport;
use natter_sip::frame::{Frame, Framer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::engine::{Phone, PhoneEvent, PhoneTransmit};

mod media_socket;
mod netwatch;
mod roam;
mod wakeup;

use media_socket::MediaSocket;

/// What the user asks of the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Dial(String),
    Answer,
    Hangup,
    Quit,
}

/// What the driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    Phone(PhoneEvent),
    /// Heard audio, mono 16-bit at `rate` Hz, in playout order.
    Audio {
        rate: u32,
        samples: Vec<i16>,
    },
    /// The signaling connection closed or failed; the driver reconnects (with
    /// backoff) and registers again.
    SignalingLost(String),
}

/// How to open TLS connections (SIP over TLS, TURN over TLS).
#[derive(Clone)]
pub struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// Where to connect.
#[derive(Clone)]
pub struct Links {
    pub sip: SocketAddr,
    pub sip_transport: Transport,
    pub turn: SocketAddr,
    pub turn_transport: crate::turn_client::TurnTransport,
    pub tls: Option<Tls>,
}

/// Sockets the driver uses, opened by [`open`].
pub struct Opened {
    sip: SipLink,
    /// The local IP towards the server when the sockets were opened.
    ip: std::net::IpAddr,
    media: MediaSocket,
    turn_stream: Option<StreamWriter>,
    turn_frames: Option<mpsc::Receiver<Vec<u8>>>,
    links: Links,
}

type Stream = Box<dyn AsyncReadWrite>;
trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}
type StreamWriter = WriteHalf<Stream>;

enum SipLink {
    Udp(Arc<UdpSocket>),
    Stream {
        writer: StreamWriter,
        frames: mpsc::Receiver<Result<Vec<u8>, String>>,
        /// Stops the reader when the link is replaced (a dead link never says EOF).
        _reader: roam::AbortOnDrop,
    },
    /// SIP over secure WebSocket (RFC 7118).
    Ws {
        out: mpsc::Sender<Vec<u8>>,
        frames: mpsc::Receiver<Result<Vec<u8>, String>>,
        _task: roam::AbortOnDrop,
    },
    /// Lost; reconnecting.
    Down,
}

/// The errors a user sees when the driver cannot start, with the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    #[error("cannot reach the SIP server at {addr} over {transport}: {why} (is `natter serve` running there? check --server and --transport)")]
    Connect {
        addr: SocketAddr,
        transport: &'static str,
        why: String,
    },
    #[error("TLS to {addr} failed: {why} (pass --ca FILE with the server's certificate, or --insecure to skip the check)")]
    Tls { addr: SocketAddr, why: String },
    #[error("cannot open a local UDP socket: {0}")]
    Socket(String),
}

/// The local IP our packets to `remote` leave from (no packet is sent).
pub fn local_ip_towards(remote: SocketAddr) -> Result<std::net::IpAddr, DriverError> {
    let any: SocketAddr = if remote.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| DriverError::Socket("address literal".into()))?;
    let s = std::net::UdpSocket::bind(any).map_err(|e| DriverError::Socket(e.to_string()))?;
    s.connect(remote)
        .map_err(|e| DriverError::Socket(format!("no route to {remote}: {e}")))?;
    Ok(s.local_addr()
        .map_err(|e| DriverError::Socket(e.to_string()))?
        .ip())
}

/// Open the SIP flow, the media socket and (for TURN over TCP/TLS) the TURN stream.
/// Returns the sockets and the local addresses for Via/Contact and the host candidate.
pub async fn open(links: Links) -> Result<(Opened, SocketAddr, SocketAddr), DriverError> {
    let ip = local_ip_towards(links.sip)?;
    let media = MediaSocket::bind(SocketAddr::new(ip, 0))
        .map_err(|e| DriverError::Socket(e.to_string()))?;
    let media_addr = media
        .local_addr()
        .map_err(|e| DriverError::Socket(e.to_string()))?;
    let (sip, sip_local) = open_sip(&links, ip).await?;
    let (turn_stream, turn_frames) = open_turn_stream(&links).await?;
    let opened = Opened {
        ip,
        sip,
        media,
        turn_stream,
        turn_frames,
        links,
    };
    Ok((opened, sip_local, media_addr))
}

/// The SIP flow from local IP `ip`: a connected UDP socket, or a TCP/TLS stream
/// with its frame reader.
async fn open_sip(
    links: &Links,
    ip: std::net::IpAddr,
) -> Result<(SipLink, SocketAddr), DriverError> {
    match links.sip_transport {
        Transport::Udp => {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0))
                .await
                .map_err(|e| DriverError::Socket(e.to_string()))?;
            s.connect(links.sip)
                .await
                .map_err(|e| connect_error(links, e.to_string()))?;
            let local = s
                .local_addr()
                .map_err(|e| DriverError::Socket(e.to_string()))?;
            Ok((SipLink::Udp(Arc::new(s)), local))
        }
        Transport::Wss => {
            let (stream, local) = connect_stream(links.sip, true, links).await?;
            let host = links
                .tls
                .as_ref()
                .map(|t| t.server_name.to_str().into_owned())
                .unwrap_or_else(|| links.sip.ip().to_string());
            let ws = crate::ws::upgrade(stream, &host, links.sip)
                .await
                .map_err(|why| connect_error(links, why))?;
            let link = SipLink::Ws {
                out: ws.out,
                frames: ws.frames,
                _task: roam::AbortOnDrop(ws.task),
            };
            Ok((link, local))
        }
        t => {
            let tls = matches!(t, Transport::Tls);
            let (stream, local) = connect_stream(links.sip, tls, links).await?;
            let (reader, writer) = tokio::io::split(stream);
            let (tx, frames) = mpsc::channel(64);
            let reader = roam::AbortOnDrop(tokio::spawn(read_sip_frames(reader, tx)));
            let link = SipLink::Stream {
                writer,
                frames,
                _reader: reader,
            };
            Ok((link, local))
        }
    }
}

/// For TURN over TCP/TLS: the stream to the TURN server and its frames.
async fn open_turn_stream(
    links: &Links,
) -> Result<(Option<StreamWriter>, Option<mpsc::Receiver<Vec<u8>>>), DriverError> {
    match links.turn_transport {
        crate::turn_client::TurnTransport::Udp => Ok((None, None)),
        t => {
            let tls = t == crate::turn_client::TurnTransport::Tls;
            let (stream, _) = connect_stream(links.turn, tls, links).await?;
            let (reader, writer) = tokio::io::split(stream);
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(read_turn_frames(reader, tx));
            Ok((Some(writer), Some(rx)))
        }
    }
}

fn connect_error(links: &Links, why: String) -> DriverError {
    DriverError::Connect {
        addr: links.sip,
        transport: links.sip_transport.via_token(),
        why,
    }
}

async fn connect_stream(
    addr: SocketAddr,
    tls: bool,
    links: &Links,
) -> Result<(Stream, SocketAddr), DriverError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| DriverError::Connect {
            addr,
            transport: if tls { "TLS" } else { "TCP" },
            why: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let local = tcp
        .local_addr()
        .map_err(|e| DriverError::Socket(e.to_string()))?;
    if !tls {
        return Ok((Box::new(tcp), local));
    }
    let Some(t) = &links.tls else {
        return Err(DriverError::Tls {
            addr,
            why: "no TLS settings".into(),
        });
    };
    let s = t
        .connector
        .connect(t.server_name.clone(), tcp)
        .await
        .map_err(|e| DriverError::Tls {
            addr,
            why: e.to_string(),
        })?;
    Ok((Box::new(s), local))
}

async fn read_sip_frames(
    mut reader: tokio::io::ReadHalf<Stream>,
    tx: mpsc::Sender<Result<Vec<u8>, String>>,
) {
    let mut framer = Framer::new(natter_sip::Limits::default());
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => {
                let _ = tx
                    .send(Err("the server closed the connection".into()))
                    .await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                return;
            }
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Frame::Ping)) => {}
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(format!("unreadable SIP stream: {e}"))).await;
                    return;
                }
            }
        }
    }
}

async fn read_turn_frames(mut reader: tokio::io::ReadHalf<Stream>, tx: mpsc::Sender<Vec<u8>>) {
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            match natter_turn::stun::frame_len(&pending) {
                Ok(Some(len)) => {
                    let frame: Vec<u8> = pending.drain(..len).collect();
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return, // garbage on the stream: stop reading it
            }
        }
    }
}

/// Run the phone until [`Command::Quit`] or the command channel closes.
pub async fn run(
    mut phone: Phone,
    mut opened: Opened,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<DriverEvent>,
) {
    let mut mbuf = vec![0u8; 4096];
    let mut sbuf = vec![0u8; 65_536];
    let mut net = roam::Watch::new();
    let mut changes = netwatch::NetWatch::new();
    let mut wakeup = wakeup::Wakeup::new();
    loop {
        flush(&mut phone, &mut opened, &events).await;
        wakeup.set(
            phone.poll_timeout().map(tokio::time::Instant::from_std),
            phone.voice_period(),
        );
        tokio::select! {
            r = opened.media.recv_from(&mut mbuf) => {
                if let Ok((n, from)) = r {
                    let turn_udp = from == opened.links.turn && opened.turn_stream.is_none();
                    phone.handle_udp(Instant::now(), from, &mbuf[..n], turn_udp);
                }
            }
            r = recv_sip(&mut opened.sip, &mut sbuf) => {
                match r {
                    Ok(frame) => phone.handle_sip(Instant::now(), &frame),
                    Err(why) => {
                        tracing::warn!(%why, "signaling connection lost: reconnecting");
                        let _ = events.send(DriverEvent::SignalingLost(why));
                        opened.sip = SipLink::Down;
                        phone.handle_sip_lost();
                        net.sip_lost(&opened.links);
                    }
                }
            }
            r = net.sip_reconnected() => net.on_sip_connect(r, &mut phone, &mut opened),
            _ = changes.changed() => net.check(&mut phone, &mut opened).await,
            Some(frame) = recv_turn(&mut opened.turn_frames) => {
                phone.handle_turn_stream(Instant::now(), &frame);
            }
            c = commands.recv() => {
                let now = Instant::now();
                match c {
                    Some(Command::Dial(target)) => {
                        if let Err(e) = phone.dial(now, &target) {
                            tracing::warn!(error = %e, "cannot dial");
                        }
                    }
                    Some(Command::Answer) => {
                        if let Err(e) = phone.answer(now) {
                            tracing::warn!(error = %e, "cannot answer");
                        }
                    }
                    Some(Command::Hangup) => phone.hangup(now),
                    Some(Command::Quit) | None => {
                        phone.hangup(now);
                        flush(&mut phone, &mut opened, &events).await;
                        return;
                    }
                }
            }
            _ = wakeup.sleep() => phone.handle_timeout(Instant::now()),
        }
    }
}

async fn recv_sip(link: &mut SipLink, buf: &mut [u8]) -> Result<Vec<u8>, String> {
    match link {
        SipLink::Udp(s) => match s.recv(buf).await {
            Ok(n) => Ok(buf[..n].to_vec()),
            // ICMP port unreachable surfaces here on a connected socket: keep going.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        },
        SipLink::Stream { frames, .. } | SipLink::Ws { frames, .. } => match frames.recv().await {
            Some(r) => r,
            None => Err("the connection reader stopped".into()),
        },
        SipLink::Down => std::future::pending().await,
    }
}

async fn recv_turn(frames: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match frames {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn flush(
    phone: &mut Phone,
    opened: &mut Opened,
    events: &mpsc::UnboundedSender<DriverEvent>,
) {
    while let Some(t) = phone.poll_transmit() {
        match t {
            PhoneTransmit::Sip(bytes) => send_sip(&mut opened.sip, &bytes).await,
            PhoneTransmit::Udp { to, bytes } => {
                opened.media.send_to(&bytes, to);
            }
            PhoneTransmit::Turn(bytes) => match opened.turn_stream.as_mut() {
                Some(w) => {
                    let _ = w.write_all(&bytes).await;
                }
                None => {
                    opened.media.send_to(&bytes, opened.links.turn);
                }
            },
        }
    }
    let rate = phone.playout_rate();
    while let Some(samples) = phone.poll_audio() {
        let _ = events.send(DriverEvent::Audio { rate, samples });
    }
    while let Some(e) = phone.poll_event() {
        let _ = events.send(DriverEvent::Phone(e));
    }
}

async fn send_sip(link: &mut SipLink, bytes: &[u8]) {
    match link {
        SipLink::Udp(s) => {
            let _ = s.send(bytes).await;
        }
        SipLink::Stream { writer, .. } => {
            if let Err(e) = writer.write_all(bytes).await {
                tracing::warn!(error = %e, "SIP send failed");
            }
        }
        SipLink::Ws { out, .. } => {
            if out.send(bytes.to_vec()).await.is_err() {
                tracing::warn!("SIP send failed: the WebSocket is closed");
            }
        }
        // Sent again over the new flow (the user agent resends what is in flight).
        SipLink::Down => {}
    }
}
