//! WebSocket transport for etherws: `ws://` client and server on smol.
//!
//! Wire format (spec/protocol.md): after an RFC 6455 handshake on the
//! configured path, every binary message carries exactly one Ethernet
//! frame, destination MAC first, nothing added. Text messages are reported
//! as [`LinkError::NotAFrame`], binary messages past the node's max frame
//! as [`LinkError::Oversize`] (the node counts and drops both); Pings are
//! answered here and never reach the node.
//!
//! Modules: [`codec`] (framing, sans-IO), [`handshake`] (the HTTP upgrade),
//! `link` (the two halves of a connection as a [`Link`]).

pub mod codec;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod handshake;
mod link;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use etherws_core::{Link, Listener, PeerInfo, PendingLink, Transport, TransportError};
use futures::future::{self, BoxFuture, Either};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use smol::net::{TcpListener, TcpStream};
use smol::Timer;
use url::Url;

pub use crate::codec::Role;
use crate::handshake::{ClientRequest, Refusal, ResponseError, MAX_HEAD};

pub use link::{READ_BUF, WRITE_HIGH};

/// A WebSocket link over any byte stream, after a handshake done elsewhere
/// (a TLS stream, a test pipe, a custom transport's own connection): one
/// frame per binary message, as `ws://` links are. `read` and `write` are
/// the stream's two halves (for a socket: two clones of it, for TLS:
/// `futures::io::split`); `leftover` holds bytes already read past the
/// handshake. The limits are `cfg`'s.
pub fn link_over<R, W>(
    read: R,
    write: W,
    role: Role,
    leftover: Vec<u8>,
    cfg: &WsConfig,
    peer: PeerInfo,
) -> Link
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    link::make_link(
        read,
        write,
        role,
        leftover,
        cfg.max_frame,
        cfg.hard_limit(),
        peer,
    )
}

/// Headroom above the largest frame before a message is refused outright:
/// the link is closed with code 1009. Messages between the frame limit and
/// this are skipped as they stream in (never buffered) and counted by the
/// node as `oversize`; the link stays up.
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
    /// The largest message tolerated at all (spec/protocol.md §4).
    pub fn hard_limit(&self) -> usize {
        self.max_frame + MESSAGE_HEADROOM
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

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TransportError {
    let context = context.into();
    move |error| TransportError::Io { context, error }
}

/// Why reading a head failed.
enum HeadError {
    Io(std::io::Error),
    /// The peer closed before the head was complete.
    Eof,
    TooLong,
}

/// Reads an HTTP head (through the blank line) of at most [`MAX_HEAD`]
/// bytes; returns it and whatever followed it.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Eof);
        }
        // Search only where the terminator can newly appear.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        match handshake::head_end(&buf[from..]).map(|e| from + e) {
            Some(end) if end > MAX_HEAD => return Err(HeadError::TooLong),
            Some(end) => {
                let rest = buf.split_off(end);
                return Ok((buf, rest));
            }
            None if buf.len() >= MAX_HEAD => return Err(HeadError::TooLong),
            None => {}
        }
    }
}

/// Writes `bytes`, then closes the connection (a refusal).
async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, r: &Refusal) {
    let _ = s.write_all(&r.to_http()).await;
    let _ = s.close().await;
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
                let mut tcp = TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(io_err(what.clone()))?;
                let _ = tcp.set_nodelay(true);
                let remote = tcp
                    .peer_addr()
                    .map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
                let host_header = match url.port() {
                    Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
                    None => url.host_str().unwrap_or(&host).to_string(),
                };
                let target = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_string(),
                };
                let key = handshake::new_key();
                let req = ClientRequest {
                    host: &host_header,
                    target: &target,
                    key: &key,
                    headers: &[],
                };
                tcp.write_all(&req.to_http())
                    .await
                    .map_err(io_err(format!("sending the upgrade request to {remote}")))?;
                let (head, leftover) = match read_head(&mut tcp).await {
                    Ok(h) => h,
                    Err(HeadError::Io(e)) => {
                        return Err(io_err(format!("reading the upgrade answer of {remote}"))(e))
                    }
                    Err(HeadError::Eof) => {
                        return Err(TransportError::Handshake(format!(
                            "{remote} closed the connection during the upgrade"
                        )))
                    }
                    Err(HeadError::TooLong) => {
                        return Err(TransportError::Handshake(format!(
                            "{remote} sent an HTTP head longer than {MAX_HEAD} bytes"
                        )))
                    }
                };
                match handshake::parse_response(&head, &key) {
                    Ok(_protocol) => {}
                    Err(ResponseError::Status(code, reason)) => {
                        return Err(TransportError::Rejected(format!("HTTP {code} {reason}")))
                    }
                    Err(ResponseError::Invalid(why)) => {
                        return Err(TransportError::Handshake(format!("{remote}: {why}")))
                    }
                }
                Ok(link_over(
                    tcp.clone(),
                    tcp,
                    Role::Client,
                    leftover,
                    &cfg,
                    PeerInfo {
                        scheme: "ws",
                        remote: format!("{remote}{}", url.path()),
                    },
                ))
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
                .map_err(io_err(format!("listening on {host}:{port}")))?;
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
                .map_err(io_err(format!("accepting on {}", self.local)))?;
            let _ = tcp.set_nodelay(true);
            let path = self.path.clone();
            let cfg = self.cfg.clone();
            let what = format!("WebSocket handshake with {addr}");
            let pending: PendingLink = timeout(
                cfg.handshake_timeout,
                what,
                server_handshake(tcp, addr, path, cfg),
            )
            .boxed();
            Ok(pending)
        }
        .boxed()
    }

    fn local_addr(&self) -> String {
        self.local.clone()
    }
}

/// The server side of one connection's upgrade.
async fn server_handshake(
    mut tcp: TcpStream,
    addr: SocketAddr,
    path: Arc<str>,
    cfg: Arc<WsConfig>,
) -> Result<Link, TransportError> {
    let (head, leftover) = match read_head(&mut tcp).await {
        Ok(h) => h,
        Err(HeadError::Io(e)) => return Err(io_err(format!("reading the request of {addr}"))(e)),
        Err(HeadError::Eof) => {
            return Err(TransportError::Handshake(format!(
                "{addr} closed the connection before its request was complete"
            )))
        }
        Err(HeadError::TooLong) => {
            let r = Refusal::new(
                431,
                "Request Header Fields Too Large",
                format!("request head longer than {MAX_HEAD} bytes"),
            );
            refuse(&mut tcp, &r).await;
            return Err(TransportError::Rejected(format!("{addr}: {r}")));
        }
    };
    let accepted = handshake::parse_request(&head, &path)
        .and_then(|req| Ok((handshake::select_protocol(&req.protocols)?, req)));
    let (protocol, req) = match accepted {
        Ok(a) => a,
        Err(r) => {
            refuse(&mut tcp, &r).await;
            return Err(TransportError::Rejected(format!("{addr}: {r}")));
        }
    };
    tcp.write_all(&handshake::switching_protocols(&req.key, protocol))
        .await
        .map_err(io_err(format!("answering {addr}")))?;
    Ok(link_over(
        tcp.clone(),
        tcp,
        Role::Server,
        leftover,
        &cfg,
        PeerInfo {
            scheme: "ws",
            remote: addr.to_string(),
        },
    ))
}
