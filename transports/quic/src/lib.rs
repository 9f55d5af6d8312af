//! The QUIC transport for etherws: `quic://host:port`. Each Ethernet
//! frame travels in QUIC DATAGRAM frames (RFC 9221): encrypted and
//! authenticated (TLS 1.3, rustls), congestion-controlled, never
//! retransmitted, so a lossy path costs only the frames lost, as over
//! udp://, without udp://'s lack of encryption. Frames larger than one
//! datagram (a 1514-byte frame over a 1500-byte path) are cut into pieces
//! ([`frag`]; spec/protocol.md §14).
//!
//! Certificates, CAs and mutual TLS are the same options as wss://
//! ([`etherws_tls`]): the same files serve both. Users are checked by the
//! same [`Gate`] as ws:// (htpasswd, back-off, revocation), in an opening
//! exchange after the TLS handshake ([`opening`]).

pub mod frag;
mod link;
pub mod opening;

use std::net::UdpSocket;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use etherws_auth::{Denied, Gate};
use etherws_core::futures::future::BoxFuture;
use etherws_core::futures::FutureExt;
use etherws_core::helpers::{bad_url, bound, host_port, io_error, timeout};
use etherws_core::url::Url;
use etherws_core::{Link, LinkParams, Listener, PendingLink, TransportError};
use etherws_tls::{self as tls, ClientTlsFiles, ServerTlsFiles};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// The port when a quic:// URL names none.
pub const DEFAULT_PORT: u16 = 8443;
/// Bytes of datagrams quinn queues each way (then it drops the oldest).
const SEND_BUFFER: usize = 2 << 20;

/// The ALPN protocol both ends must speak: v2 has the opening exchange
/// (spec/protocol.md §14.1); a v1 peer fails the TLS handshake.
pub const ALPN: &[u8] = b"etherws.v2";

/// QUIC's congestion controller (quinn's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    /// CUBIC (RFC 9438), quinn's default.
    #[default]
    Cubic,
    /// BBR (quinn marks it experimental).
    Bbr,
    /// NewReno (RFC 9002).
    NewReno,
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cubic" => Ok(Congestion::Cubic),
            "bbr" => Ok(Congestion::Bbr),
            "newreno" => Ok(Congestion::NewReno),
            _ => Err(format!("{s:?}: expected cubic, bbr or newreno")),
        }
    }
}

/// Settings of the quic transport besides the node's [`LinkParams`].
#[derive(Clone, Default)]
pub struct QuicConfig {
    /// Certificate and key (and client CA) to listen with; required to
    /// listen.
    pub server: Option<ServerTlsFiles>,
    /// How a client verifies the server (and its own certificate).
    pub client: ClientTlsFiles,
    pub congestion: Congestion,
    /// Most connections a listener keeps at once (0: no limit); more are
    /// refused.
    pub max_peers: usize,
    /// Who may make a link (the server's; shared with its ws listeners).
    pub gate: Arc<Gate>,
    /// The client's user and password, sent in the opening exchange.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for QuicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicConfig")
            .field("server", &self.server)
            .field("client", &self.client)
            .field("congestion", &self.congestion)
            .field("max_peers", &self.max_peers)
            .field("gate", &self.gate)
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// What the transport dropped.
#[derive(Debug)]
pub struct QuicStats {
    /// Frames whose pieces did not all arrive.
    pub incomplete: AtomicU64,
    /// Frames too large for the datagrams the path allows (64 pieces).
    pub too_large: AtomicU64,
    /// Datagrams that are not frames or pieces.
    pub malformed: AtomicU64,
    /// One limit on the warnings of all links (20 per 10 s).
    pub(crate) log: etherws_core::log::LogLimiter,
}

impl Default for QuicStats {
    fn default() -> Self {
        QuicStats {
            incomplete: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            log: etherws_core::log::LogLimiter::new(20, Duration::from_secs(10)),
        }
    }
}

impl QuicStats {
    /// (name, counter) pairs, for reports.
    pub fn counters(&self) -> [(&'static str, &AtomicU64); 3] {
        [
            ("quic frames lost in pieces", &self.incomplete),
            ("quic frames too large to send", &self.too_large),
            ("quic malformed datagrams", &self.malformed),
        ]
    }
}

/// The `quic://` transport. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Quic {
    cfg: Arc<QuicConfig>,
    stats: Arc<QuicStats>,
}

impl Quic {
    pub fn new(cfg: QuicConfig) -> Self {
        Quic {
            cfg: Arc::new(cfg),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> &Arc<QuicStats> {
        &self.stats
    }
}

fn transport_config(cfg: &QuicConfig, params: &LinkParams) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let idle = params
        .keepalive
        .map(|k| k.dead_after())
        .unwrap_or(Duration::from_secs(300));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    t.keep_alive_interval(params.keepalive.map(|k| k.interval));
    // Room for about 1000 full-size datagrams each way; beyond, the
    // oldest unsent are dropped (a slow path loses frames, it never
    // queues without bound).
    t.datagram_receive_buffer_size(Some(SEND_BUFFER));
    t.datagram_send_buffer_size(SEND_BUFFER);
    // Probe up to the largest IPv4 UDP payload a 1500-byte path carries.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(1472);
    t.mtu_discovery_config(Some(mtu));
    match cfg.congestion {
        Congestion::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
        }
        Congestion::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        }
        Congestion::NewReno => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()))
        }
    };
    t
}

fn tls_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Handshake(format!("TLS: {e}"))
}

async fn connect(
    cfg: Arc<QuicConfig>,
    stats: Arc<QuicStats>,
    url: Url,
    params: LinkParams,
) -> Result<Link, TransportError> {
    let (host, port) = host_port(&url, Some(DEFAULT_PORT))?;
    let addr = smol::net::resolve((host.as_str(), port))
        .await
        .map_err(io_error(format!("resolving {host}")))?
        .into_iter()
        .next()
        .ok_or_else(|| bad_url(&url, "the host has no address"))?;
    let mut rustls = tls::client_config(&cfg.client).map_err(tls_error)?;
    rustls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(rustls).map_err(tls_error)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport_config(&cfg, &params)));
    let any = etherws_core::helpers::any_addr_for(&addr);
    let sock = UdpSocket::bind(any).map_err(io_error("binding a UDP socket"))?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        sock,
        Arc::new(quinn::SmolRuntime),
    )
    .map_err(io_error("starting a QUIC endpoint"))?;
    let name = cfg.client.sni.clone().unwrap_or(host);
    let connecting = endpoint
        .connect_with(client, addr, &name)
        .map_err(|e| TransportError::Handshake(e.to_string()))?;
    let conn = connecting.await.map_err(|e| connection_error(&url, e))?;
    open(&conn, &cfg, &url).await?;
    Ok(link::make(conn, endpoint, true, &params, stats, None))
}

/// The client's side of the opening exchange: credentials out, the
/// server's welcome (or its refusal, as the connection's close) in.
async fn open(conn: &quinn::Connection, cfg: &QuicConfig, url: &Url) -> Result<(), TransportError> {
    let creds = cfg
        .credentials
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    let msg = opening::encode(creds).map_err(|e| bad_url(url, &e))?;
    let refused = |e: quinn::ConnectionError| match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let code = c.error_code.into_inner();
            let why = String::from_utf8_lossy(&c.reason).into_owned();
            let hint = match code {
                401 if cfg.credentials.is_some() => ": wrong user or password",
                401 => ": the server requires a user and password (--user)",
                429 => ": too many failed logins from this address; wait and retry",
                _ => "",
            };
            TransportError::Rejected(format!("QUIC {code} {why}{hint}"))
        }
        other => connection_error(url, other),
    };
    let (mut send, mut recv) = conn.open_bi().await.map_err(refused)?;
    let lost = |what: &str, e: String| TransportError::Handshake(format!("{what}: {e}"));
    send.write_all(&msg).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(c) => refused(c),
        e => lost("sending the opening", e.to_string()),
    })?;
    let _ = send.finish();
    let answer = recv.read_to_end(16).await.map_err(|e| match e {
        quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(c)) => refused(c),
        e => lost("reading the server's answer", e.to_string()),
    })?;
    if answer != [opening::WELCOME] {
        return Err(TransportError::Handshake(format!(
            "{url}: the server's answer to the opening is not a welcome ({answer:?})"
        )));
    }
    Ok(())
}

fn connection_error(url: &Url, e: quinn::ConnectionError) -> TransportError {
    use quinn::ConnectionError as E;
    match e {
        E::TimedOut => TransportError::Timeout(format!("QUIC handshake with {url}")),
        E::ConnectionClosed(c) => TransportError::Rejected(format!("{c}")),
        E::ApplicationClosed(c) => TransportError::Rejected(format!("{c}")),
        E::TransportError(t) => TransportError::Handshake(t.to_string()),
        other => TransportError::Handshake(other.to_string()),
    }
}

impl etherws_core::Transport for Quic {
    fn schemes(&self) -> &[&'static str] {
        &["quic"]
    }

    fn connect(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Link, TransportError>> {
        let t = params.handshake_timeout;
        let what = format!("QUIC connection to {url}");
        timeout(
            t,
            what,
            connect(
                self.cfg.clone(),
                self.stats.clone(),
                url.clone(),
                params.clone(),
            ),
        )
        .boxed()
    }

    fn listen(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
        bound(listen(&self.cfg, self.stats.clone(), url, params))
    }

    fn authenticates(&self) -> etherws_core::Authenticates {
        etherws_core::Authenticates::Users
    }

    fn counters(&self) -> Vec<(String, u64)> {
        self.stats
            .counters()
            .iter()
            .map(|(n, v)| (n.to_string(), v.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }
}

fn listen(
    cfg: &QuicConfig,
    stats: Arc<QuicStats>,
    url: &Url,
    params: &LinkParams,
) -> Result<QuicListener, TransportError> {
    let files = cfg.server.as_ref().ok_or_else(|| {
        bad_url(
            url,
            "a quic:// listener needs a certificate (--tls-cert, --tls-key)",
        )
    })?;
    let mut rustls = tls::server_config(files).map_err(tls_error)?;
    rustls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(rustls).map_err(tls_error)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(cfg, params)));
    let addr = etherws_core::helpers::listen_addr(url, DEFAULT_PORT)?;
    let sock = UdpSocket::bind(addr).map_err(io_error(format!("binding quic://{addr}")))?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        sock,
        Arc::new(quinn::SmolRuntime),
    )
    .map_err(io_error("starting a QUIC endpoint"))?;
    Ok(QuicListener {
        endpoint,
        params: params.clone(),
        stats,
        max_peers: cfg.max_peers,
        gate: cfg.gate.clone(),
    })
}

struct QuicListener {
    endpoint: quinn::Endpoint,
    params: LinkParams,
    stats: Arc<QuicStats>,
    max_peers: usize,
    gate: Arc<Gate>,
}

/// The server's side of the opening exchange: reads the client's
/// credentials, asks the gate, and welcomes the client or closes the
/// connection with the reason (spec/protocol.md §14.1). The user, if any.
async fn welcome(
    conn: &quinn::Connection,
    gate: &Arc<Gate>,
    from: std::net::SocketAddr,
) -> Result<Option<String>, TransportError> {
    let refuse = |code: u32, why: String| {
        conn.close(VarInt::from_u32(code), why.as_bytes());
        let status = match code {
            opening::code::UNAUTHORIZED => "401 Unauthorized",
            opening::code::THROTTLED => "429 Too Many Requests",
            _ => "400 Bad Request",
        };
        TransportError::Refused(format!("{from}: QUIC {status} ({why})"))
    };
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| TransportError::Refused(format!("{from}: QUIC opening: {e}")))?;
    let msg = match recv.read_to_end(opening::MAX_OPENING).await {
        Ok(m) => m,
        Err(quinn::ReadToEndError::TooLong) => {
            return Err(refuse(opening::code::MALFORMED, "opening too long".into()))
        }
        Err(e) => {
            return Err(TransportError::Refused(format!(
                "{from}: QUIC opening: {e}"
            )))
        }
    };
    let creds =
        opening::decode(&msg).map_err(|why| refuse(opening::code::MALFORMED, why.to_string()))?;
    let user = gate.check(from.ip(), creds).await.map_err(|d| {
        let code = match d {
            Denied::Throttled => opening::code::THROTTLED,
            _ => opening::code::UNAUTHORIZED,
        };
        refuse(code, d.detail())
    })?;
    let ok = send.write_all(&[opening::WELCOME]).await;
    let _ = send.finish();
    ok.map_err(|e| TransportError::Refused(format!("{from}: QUIC opening: {e}")))?;
    Ok(user)
}

use quinn::VarInt;

impl Listener for QuicListener {
    fn accept(&mut self) -> BoxFuture<'_, Result<PendingLink, TransportError>> {
        async move {
            let incoming = self
                .endpoint
                .accept()
                .await
                .ok_or_else(|| TransportError::Io {
                    context: "the QUIC endpoint closed".into(),
                    error: std::io::ErrorKind::BrokenPipe.into(),
                })?;
            let from = incoming.remote_address();
            if self.max_peers > 0 && self.endpoint.open_connections() >= self.max_peers {
                incoming.refuse();
                return Err(TransportError::Refused(format!(
                    "{from}: {} QUIC clients already",
                    self.max_peers
                )));
            }
            let (params, stats) = (self.params.clone(), self.stats.clone());
            let endpoint = self.endpoint.clone();
            let gate = self.gate.clone();
            let t = params.handshake_timeout;
            let pending = async move {
                let conn = incoming
                    .await
                    .map_err(|e| TransportError::Refused(format!("{from}: QUIC handshake: {e}")))?;
                let user = welcome(&conn, &gate, from).await?;
                let session = user.as_ref().map(|_| link::Session(conn.clone()));
                let link = link::make(conn, endpoint, false, &params, stats, user.clone());
                if let (Some(u), Some(s)) = (user, session) {
                    gate.register(u, Box::new(s));
                }
                Ok(link)
            };
            Ok(timeout(t, format!("QUIC handshake from {from}"), pending).boxed() as PendingLink)
        }
        .boxed()
    }

    fn local_addr(&self) -> String {
        self.endpoint
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        // Links already made keep their connections; no new ones.
        self.endpoint.set_server_config(None);
    }
}
