//! WebSocket transport for etherws: `ws://` client and server on
//! async-tungstenite, running on smol's reactor.
//!
//! Wire format (spec/protocol.md): after an ordinary RFC 6455 handshake on
//! the configured path, every binary message carries exactly one Ethernet
//! frame, destination MAC first, nothing added. Text messages are reported
//! as [`LinkError::NotAFrame`] (the node counts and drops them); ping/pong
//! are answered by tungstenite and never reach the node.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketStream};
use etherws_core::{
    Frame, Link, LinkError, Listener, PeerInfo, PendingLink, Transport, TransportError,
};
use futures::future::{self, BoxFuture, Either};
use futures::{FutureExt, SinkExt, Stream, StreamExt};
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use url::Url;

/// Headroom above the largest frame before a message is refused outright:
/// tungstenite stops reading it (a capacity error) and the link is closed,
/// so a peer cannot make us buffer arbitrary amounts. Messages between the
/// frame limit and this are dropped and counted by the node; the link stays up.
pub const MESSAGE_HEADROOM: usize = 64 * 1024;

/// Settings shared by the client and server sides.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Largest Ethernet frame expected (MTU + header + VLAN tags).
    pub max_frame: usize,
    /// How long a TCP connect plus WebSocket handshake may take.
    pub handshake_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_frame: 1500 + etherws_core::wire::MAX_OVERHEAD,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl WsConfig {
    fn tungstenite(&self) -> WebSocketConfig {
        let hard = self.max_frame + MESSAGE_HEADROOM;
        WebSocketConfig::default()
            .max_message_size(Some(hard))
            .max_frame_size(Some(hard))
    }
}

/// The `ws://` transport.
#[derive(Clone, Debug, Default)]
pub struct Ws {
    cfg: Arc<WsConfig>,
}

impl Ws {
    pub fn new(cfg: WsConfig) -> Self {
        Ws { cfg: Arc::new(cfg) }
    }
}

fn bad_url(url: &Url, reason: &str) -> TransportError {
    TransportError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

fn host_port(url: &Url) -> Result<(String, u16), TransportError> {
    let host = url
        .host_str()
        .ok_or_else(|| bad_url(url, "no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| bad_url(url, "no port"))?;
    Ok((host, port))
}

async fn timeout<T>(
    d: Duration,
    what: String,
    f: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    match future::select(Box::pin(f), Timer::after(d)).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(TransportError::Timeout(what)),
    }
}

fn handshake_error(e: WsError) -> TransportError {
    match e {
        WsError::Http(resp) => TransportError::Rejected(format!("HTTP {}", resp.status())),
        other => TransportError::Handshake(other.to_string()),
    }
}

impl Transport for Ws {
    fn schemes(&self) -> &[&'static str] {
        &["ws"]
    }

    fn connect(&self, url: &Url) -> BoxFuture<'static, Result<Link, TransportError>> {
        let url = url.clone();
        let cfg = self.cfg.clone();
        async move {
            let (host, port) = host_port(&url)?;
            let what = format!("connecting to {host}:{port}");
            timeout(cfg.handshake_timeout, what.clone(), async {
                let tcp = TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(|error| TransportError::Io {
                        context: what.clone(),
                        error,
                    })?;
                let _ = tcp.set_nodelay(true);
                let remote = tcp
                    .peer_addr()
                    .map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
                let (ws, _resp) = async_tungstenite::client_async_with_config(
                    url.as_str(),
                    tcp,
                    Some(cfg.tungstenite()),
                )
                .await
                .map_err(handshake_error)?;
                Ok(make_link(ws, format!("{remote}{}", url.path())))
            })
            .await
        }
        .boxed()
    }

    fn listen(&self, url: &Url) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
        let url = url.clone();
        let cfg = self.cfg.clone();
        async move {
            let (host, port) = host_port(&url)?;
            let tcp = TcpListener::bind((host.as_str(), port))
                .await
                .map_err(|error| TransportError::Io {
                    context: format!("listening on {host}:{port}"),
                    error,
                })?;
            let local = tcp
                .local_addr()
                .map_or_else(|_| format!("{host}:{port}"), |a: SocketAddr| a.to_string());
            let path = if url.path().is_empty() {
                "/".to_string()
            } else {
                url.path().to_string()
            };
            Ok(Box::new(WsListener {
                tcp,
                path: Arc::from(path),
                cfg,
                local,
            }) as Box<dyn Listener>)
        }
        .boxed()
    }
}

struct WsListener {
    tcp: TcpListener,
    path: Arc<str>,
    cfg: Arc<WsConfig>,
    local: String,
}

impl Listener for WsListener {
    fn accept(&mut self) -> BoxFuture<'_, Result<PendingLink, TransportError>> {
        async move {
            let (tcp, addr) = self
                .tcp
                .accept()
                .await
                .map_err(|error| TransportError::Io {
                    context: format!("accepting on {}", self.local),
                    error,
                })?;
            let _ = tcp.set_nodelay(true);
            let path = self.path.clone();
            let cfg = self.cfg.clone();
            let pending: PendingLink = async move {
                let what = format!("WebSocket handshake with {addr}");
                timeout(cfg.handshake_timeout, what, async {
                    // The callback's signature is tungstenite's, large Err included.
                    #[allow(clippy::result_large_err)]
                    let check_path = |req: &Request, resp: Response| {
                        if req.uri().path() == &*path {
                            Ok(resp)
                        } else {
                            let mut r = ErrorResponse::new(Some("not found\n".into()));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            Err(r)
                        }
                    };
                    let ws = async_tungstenite::accept_hdr_async_with_config(
                        tcp,
                        check_path,
                        Some(cfg.tungstenite()),
                    )
                    .await
                    .map_err(|e| match e {
                        WsError::Http(r) if r.status() == StatusCode::NOT_FOUND => {
                            TransportError::Rejected(format!("{addr}: path not served (404)"))
                        }
                        other => TransportError::Handshake(format!("{addr}: {other}")),
                    })?;
                    Ok(make_link(ws, addr.to_string()))
                })
                .await
            }
            .boxed();
            Ok(pending)
        }
        .boxed()
    }

    fn local_addr(&self) -> String {
        self.local.clone()
    }
}

fn make_link(ws: WebSocketStream<TcpStream>, remote: String) -> Link {
    let (tx, rx) = ws.split();
    let tx = tx
        .sink_map_err(link_error)
        .with(|f: Frame| future::ready(Ok::<_, LinkError>(Message::Binary(f.into_bytes()))));
    Link {
        rx: Box::pin(WsRx { rx }),
        tx: Box::pin(tx),
        peer: PeerInfo {
            scheme: "ws",
            remote,
        },
    }
}

fn link_error(e: WsError) -> LinkError {
    use async_tungstenite::tungstenite::error::ProtocolError;
    match e {
        // After the peer's Close, sending what was still queued is refused:
        // that is the link closing, not a failure.
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::SendAfterClosing) => LinkError::Closed,
        WsError::Io(io) => LinkError::Io(io),
        other => LinkError::Protocol(other.to_string()),
    }
}

/// Control frames handled in one `poll_next` before yielding.
const CONTROL_BURST: usize = 64;

/// Maps WebSocket messages to frames.
struct WsRx {
    rx: WebSocketReceiver<TcpStream>,
}

impl Stream for WsRx {
    type Item = Result<Frame, LinkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Control frames are skipped here; bound how many in one poll so a
        // peer sending pings at line rate cannot monopolise the thread.
        for _ in 0..CONTROL_BURST {
            let msg = match self.rx.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(m)) => m,
            };
            return Poll::Ready(match msg {
                Ok(Message::Binary(b)) => Some(Ok(Frame::new(b))),
                Ok(Message::Text(_)) => Some(Err(LinkError::NotAFrame("text message"))),
                Ok(Message::Close(_)) => None,
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => None,
                Err(e) => Some(Err(link_error(e))),
            });
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
