//! WebSocket transport for etherws: `ws://` and `wss://` (TLS), client and
//! server, on smol.
//!
//! Wire format (spec/protocol.md): after an RFC 6455 handshake on the
//! configured path, every binary message carries exactly one Ethernet
//! frame, destination MAC first, nothing added. Text messages are reported
//! as [`LinkError::NotAFrame`], binary messages past the node's max frame
//! as [`LinkError::Oversize`] (the node counts and drops both); Pings are
//! answered here and never reach the node.
//!
//! Modules: [`codec`] (framing, sans-IO), [`handshake`] (the HTTP upgrade),
//! [`proxy`] (HTTP CONNECT), `link` (a connection's two halves as a
//! [`Link`], keepalive), `server` and `client` (the two sides' connection
//! setup). TLS is `etherws-tls`'s ([`tls`]) and authentication
//! `etherws-auth`'s ([`auth`]): quic:// shares both.
//!
//! [`LinkError::NotAFrame`]: etherws_core::LinkError::NotAFrame
//! [`LinkError::Oversize`]: etherws_core::LinkError::Oversize

mod client;
pub mod codec;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod handshake;
mod link;
pub mod proxy;
mod server;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use etherws_core::{Link, LinkParams, Listener, PeerInfo, Transport, TransportError};
use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use url::Url;

pub use crate::codec::Role;
use crate::handshake::{Refusal, MAX_HEAD};
pub use crate::link::{LinkHandle, READ_BUF, WRITE_HIGH};
use crate::proxy::Proxy;
use crate::tls::{TlsClient, TlsServer};
pub use etherws_auth as auth;
use etherws_auth::Gate;
pub use etherws_core::Keepalive;
pub use etherws_tls as tls;

/// Headroom above the largest frame before a message is refused outright:
/// the link is closed with code 1009. Messages between the frame limit and
/// this are skipped as they stream in (never buffered) and counted by the
/// node as `oversize`; the link stays up.
pub const MESSAGE_HEADROOM: usize = 64 * 1024;

/// Default keepalive: a Ping after 15 s of silence (below the 60 s idle
/// timeout of common reverse proxies), the link declared dead after 10 s
/// more.
pub const DEFAULT_KEEPALIVE: Keepalive = Keepalive {
    interval: Duration::from_secs(15),
    timeout: Duration::from_secs(10),
};

/// Which proxy a client dials through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProxyChoice {
    /// The environment's (`http_proxy`/`https_proxy`/`all_proxy`, with
    /// `no_proxy`), if any.
    #[default]
    FromEnv,
    /// None, whatever the environment says.
    Direct,
    /// This one.
    Via(Proxy),
}

/// Client-side settings.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// TLS for `wss://`; `None`: the system's roots, built on first use.
    pub tls: Option<Arc<TlsClient>>,
    /// HTTP Basic credentials (user, password).
    pub credentials: Option<(String, String)>,
    /// Extra request headers (name, value).
    pub headers: Vec<(String, String)>,
    pub proxy: ProxyChoice,
}

/// Server-side settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// TLS, required to listen on `wss://`.
    pub tls: Option<Arc<TlsServer>>,
    /// Who may make a link (HTTP Basic against an htpasswd file, or
    /// open); shared with the server's other listeners.
    pub gate: Arc<Gate>,
    /// If not empty, a request with an `Origin` header must name one of
    /// these (browsers send it; other clients do not).
    pub origins: Vec<String>,
    /// Take the client's address from `X-Forwarded-For` (behind a reverse
    /// proxy you trust).
    pub trust_proxy: bool,
    /// Most links at once (0: no limit).
    pub max_clients: usize,
    /// Most links at once from one address (0: no limit).
    pub max_clients_per_ip: usize,
    /// Most connections still in their handshake at once; more are closed
    /// at once (a slowloris cannot hold the listener).
    pub max_pending: usize,
    /// The same, from one address (one host cannot take all the slots).
    pub max_pending_per_ip: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tls: None,
            gate: Arc::new(Gate::open()),
            origins: Vec::new(),
            trust_proxy: false,
            max_clients: 4096,
            max_clients_per_ip: 0,
            max_pending: 1024,
            max_pending_per_ip: 64,
        }
    }
}

/// Settings of the ws transport. Through the [`Transport`] trait, the
/// node's [`LinkParams`] set max frame, handshake timeout and keepalive
/// ([`WsConfig::with_params`]); the values here serve [`link_over`] and
/// direct users of the client and server code.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Largest Ethernet frame expected (MTU + header + VLAN tags).
    pub max_frame: usize,
    /// How long a TCP connect (or accept) plus TLS and WebSocket handshakes
    /// may take.
    pub handshake_timeout: Duration,
    /// `None`: no Pings, no dead-peer detection.
    pub keepalive: Option<Keepalive>,
    /// Offer (client) or accept (server) the offload subprotocol, which
    /// carries super-frames and partial checksums whole.
    pub offload: bool,
    /// The TCP congestion control of every connection (Linux: `cubic`,
    /// `bbr`...); `None`: the system's default.
    pub tcp_congestion: Option<String>,
    pub client: ClientConfig,
    pub server: ServerConfig,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_frame: 1500 + etherws_core::wire::MAX_OVERHEAD,
            handshake_timeout: Duration::from_secs(10),
            keepalive: Some(DEFAULT_KEEPALIVE),
            offload: true,
            tcp_congestion: None,
            client: ClientConfig::default(),
            server: ServerConfig::default(),
        }
    }
}

impl WsConfig {
    /// The largest message tolerated at all (spec/protocol.md §4).
    pub fn hard_limit(&self) -> usize {
        self.max_frame + MESSAGE_HEADROOM
    }

    /// The link parameters this config stands for (the inverse of
    /// [`WsConfig::with_params`]), for tests and direct users.
    pub fn link_params(&self) -> LinkParams {
        LinkParams::new(self.max_frame)
            .with_offload(self.offload)
            .with_handshake_timeout(self.handshake_timeout)
            .with_keepalive(self.keepalive)
    }

    /// This config with the node's link parameters, as the [`Transport`]
    /// trait passes them: max frame, handshake timeout and keepalive are
    /// the node's; offload is offered only if both allow it.
    pub fn with_params(&self, p: &LinkParams) -> WsConfig {
        WsConfig {
            max_frame: p.max_frame,
            handshake_timeout: p.handshake_timeout,
            keepalive: p.keepalive,
            offload: self.offload && p.offload,
            ..self.clone()
        }
    }
}

/// The `ws://` and `wss://` transport. Cheap to clone (shared).
#[derive(Clone)]
pub struct Ws {
    cfg: Arc<WsConfig>,
}

impl std::fmt::Debug for Ws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ws").field("cfg", &self.cfg).finish()
    }
}

impl Default for Ws {
    fn default() -> Self {
        Ws::new(WsConfig::default())
    }
}

impl Ws {
    pub fn new(cfg: WsConfig) -> Self {
        Ws { cfg: Arc::new(cfg) }
    }

    pub fn config(&self) -> &WsConfig {
        &self.cfg
    }

    /// Re-reads certificate and key files (SIGHUP). Established links keep
    /// their TLS sessions. Returns one line per thing reloaded, and the
    /// errors (the old configuration stays on error). The htpasswd file
    /// is the [`Gate`]'s to reload.
    pub fn reload(&self) -> (Vec<String>, Vec<String>) {
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        if let Some(t) = &self.cfg.server.tls {
            match t.reload() {
                Ok(()) => done.push("server certificate reloaded".into()),
                Err(e) => failed.push(format!("server certificate not reloaded: {e}")),
            }
        }
        if let Some(t) = &self.cfg.client.tls {
            match t.reload() {
                Ok(()) => done.push("client TLS files reloaded".into()),
                Err(e) => failed.push(format!("client TLS files not reloaded: {e}")),
            }
        }
        (done, failed)
    }
}

pub(crate) use etherws_core::helpers::{io_error as io_err, timeout};

fn host_port(url: &Url) -> Result<(String, u16), TransportError> {
    etherws_core::helpers::host_port(url, None)
}

/// Why reading a head failed.
pub(crate) enum HeadError {
    Io(std::io::Error),
    /// The peer closed before the head was complete.
    Eof,
    TooLong,
    /// The peer began a TLS handshake (a ClientHello record) where HTTP
    /// was due: a wss:// client at a plain ws:// listener.
    Tls,
}

/// Reads an HTTP head (through the blank line) of at most [`MAX_HEAD`]
/// bytes; returns it and whatever followed it.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Eof);
        }
        // A TLS handshake record (type 22, version 3.x) never holds the
        // blank line a head ends with: say so at once instead of waiting
        // for the handshake timeout.
        if buf.is_empty() && chunk[0] == 0x16 && (n < 2 || chunk[1] == 0x03) {
            return Err(HeadError::Tls);
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

/// Writes a refusal, then closes the connection.
pub(crate) async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, r: &Refusal) {
    let _ = s.write_all(&r.to_http()).await;
    let _ = s.close().await;
}

/// A WebSocket link over any byte stream, after a handshake done elsewhere
/// (a test pipe, a custom transport's own connection): one frame per
/// binary message, as `ws://` links are. `read` and `write` are the
/// stream's two halves (for a socket: two clones of it; otherwise
/// `futures::io::AsyncReadExt::split`); `leftover` holds bytes already read
/// past the handshake. Limits and keepalive are `cfg`'s.
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
        link::LinkParams {
            role,
            leftover,
            max_frame: cfg.max_frame,
            hard_limit: cfg.hard_limit(),
            keepalive: cfg.keepalive,
            vnet: false,
            guard: None,
        },
        peer,
    )
    .0
}

impl Transport for Ws {
    fn schemes(&self) -> &[&'static str] {
        &["ws", "wss"]
    }

    fn connect(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Link, TransportError>> {
        client::connect(Arc::new(self.cfg.with_params(params)), url.clone()).boxed()
    }

    fn listen(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
        let cfg = Arc::new(self.cfg.with_params(params));
        server::listen(cfg, url.clone()).boxed()
    }

    fn authenticates(&self) -> etherws_core::Authenticates {
        etherws_core::Authenticates::Users
    }

    fn reload(&self) -> Vec<Result<String, String>> {
        let (done, failed) = Ws::reload(self);
        done.into_iter()
            .map(Ok)
            .chain(failed.into_iter().map(Err))
            .collect()
    }
}
