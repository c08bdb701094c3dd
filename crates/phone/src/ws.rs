//! SIP over secure WebSocket (RFC 7118): TLS to the server's HTTPS listener, an
//! HTTP upgrade at `/sip` asking for the `sip` subprotocol, then one SIP message
//! per WebSocket message (sent as text). A task owns the socket; the driver
//! talks to it through two channels, like the TCP/TLS frame reader.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Path of the WebSocket SIP endpoint on the HTTPS listener.
pub const PATH: &str = "/sip";

/// An open WebSocket SIP flow: what to send, what arrived, and the task.
pub struct WsLink {
    /// SIP messages to send.
    pub out: mpsc::Sender<Vec<u8>>,
    /// SIP messages received, or why the flow ended.
    pub frames: mpsc::Receiver<Result<Vec<u8>, String>>,
    pub task: JoinHandle<()>,
}

/// Upgrade `stream` (TLS to `host` at `addr`) to WebSocket SIP.
pub async fn upgrade<S>(stream: S, host: &str, addr: SocketAddr) -> Result<WsLink, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let url = format!("wss://{host}:{}{PATH}", addr.port());
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad WebSocket URL {url}: {e}"))?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let (ws, resp) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| format!("WebSocket upgrade at {url} refused: {e}"))?;
    let protocol = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if !protocol.is_some_and(|p| p.eq_ignore_ascii_case("sip")) {
        return Err(format!(
            "{url} did not agree to the `sip` subprotocol (is it natter's HTTPS listener?)"
        ));
    }
    let (out, out_rx) = mpsc::channel(64);
    let (in_tx, frames) = mpsc::channel(64);
    let task = tokio::spawn(pump(ws, out_rx, in_tx));
    Ok(WsLink { out, frames, task })
}

/// Move messages between the socket and the channels until either side ends.
async fn pump<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    mut out: mpsc::Receiver<Vec<u8>>,
    frames: mpsc::Sender<Result<Vec<u8>, String>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut source) = ws.split();
    loop {
        tokio::select! {
            m = out.recv() => {
                let Some(bytes) = m else {
                    let _ = sink.close().await;
                    return;
                };
                if let Err(e) = sink.send(to_message(bytes)).await {
                    let _ = frames.send(Err(format!("WebSocket send failed: {e}"))).await;
                    return;
                }
            }
            m = source.next() => {
                let got = match m {
                    Some(Ok(Message::Text(t))) => Ok(t.as_bytes().to_vec()),
                    Some(Ok(Message::Binary(b))) => Ok(b.to_vec()),
                    // Pongs go out with the next write: flush now.
                    Some(Ok(Message::Ping(_))) => {
                        let _ = sink.flush().await;
                        continue;
                    }
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => {
                        Err("the server closed the WebSocket".to_owned())
                    }
                    Some(Err(e)) => Err(format!("WebSocket: {e}")),
                };
                let end = got.is_err();
                if frames.send(got).await.is_err() || end {
                    return;
                }
            }
        }
    }
}

/// SIP is text; anything that is not UTF-8 goes as a binary message.
fn to_message(bytes: Vec<u8>) -> Message {
    match String::from_utf8(bytes) {
        Ok(s) => Message::text(s),
        Err(e) => Message::binary(e.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_goes_as_text_and_other_bytes_as_binary() {
        assert!(matches!(
            to_message(b"OPTIONS sip:x SIP/2.0\r\n\r\n".to_vec()),
            Message::Text(_)
        ));
        assert!(matches!(to_message(vec![0xff, 0xfe]), Message::Binary(_)));
    }
}
