//! The transport plugin contract: a transport turns a URL into [`Link`]s,
//! by dialing (`connect`) or by accepting (`listen`). The [`Registry`] maps
//! URL schemes to transports; programs register the ones they want.
//!
//! Everything here speaks `futures` traits only, so a transport may use any
//! runtime internally. See `spec/transport.md`.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Sink, Stream};
use url::Url;

use crate::frame::Frame;

/// An error on an established link.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The peer sent something that is not a frame (e.g. a WebSocket text
    /// message). Not fatal: the node counts it, drops it and keeps reading.
    #[error("not a frame: {0}")]
    NotAFrame(&'static str),
    /// The peer sent a frame longer than the node's max frame, which the
    /// transport skipped without buffering it (carries its length). Not
    /// fatal: the node counts it as `oversize` and keeps reading.
    #[error("frame of {0} bytes exceeds the max frame")]
    Oversize(usize),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the transport's protocol; the link is unusable.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("link closed")]
    Closed,
    /// The link was ended on purpose, for this reason (e.g. its user's
    /// credentials were revoked): not a failure of the peer or the path.
    #[error("{0}")]
    Ended(String),
}

impl LinkError {
    /// Whether the link is finished after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, LinkError::NotAFrame(_) | LinkError::Oversize(_))
    }
}

/// An error setting up a link or listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("unknown URL scheme {scheme:?} (known: {known})")]
    UnknownScheme { scheme: String, known: String },
    #[error("bad URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The message already includes the I/O error; it is not repeated as a
    /// `source()`, so `{:#}` chains do not print it twice.
    #[error("{context}: {error}")]
    Io { context: String, error: io::Error },
    /// The peer was reached but refused the link (HTTP status, auth...).
    #[error("rejected by peer: {0}")]
    Rejected(String),
    /// We refused a connection (listener side: a bad request, failed
    /// authentication, a limit). The message names the peer and why.
    #[error("{0}")]
    Refused(String),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Dead-peer detection for a link: what `--ping-interval` and
/// `--ping-timeout` set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Send a probe (ws: a Ping) after this long without receiving anything.
    pub interval: Duration,
    /// Fail the link after interval + this without receiving anything.
    pub timeout: Duration,
}

impl Keepalive {
    /// The longest silence a live link may have.
    pub fn dead_after(&self) -> Duration {
        self.interval + self.timeout
    }
}

/// What the node asks of every link a transport makes: passed to
/// [`Transport::connect`] and [`Transport::listen`], so a program sets
/// these once for all its transports. A transport may have settings of its
/// own besides (certificates, keys...), in its own config.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkParams {
    /// The largest frame the node takes (MTU + 14 + 2 × 4, see
    /// [`crate::wire::MAX_OVERHEAD`]). A transport must carry every frame
    /// up to this whole; it bounds its own buffers by it.
    pub max_frame: usize,
    /// The node may hand super-frames with offload metadata to links that
    /// negotiate carrying them ([`Link::offload`]). When false, a
    /// transport must not offer or accept offload to the peer.
    pub offload: bool,
    /// How long connection setup may take: dialling plus every handshake
    /// (and, on a listener, a peer's handshake).
    pub handshake_timeout: Duration,
    /// `None`: no probes, no dead-peer detection (a transport whose wire
    /// needs traffic to stay open, e.g. through NAT, may still send some).
    pub keepalive: Option<Keepalive>,
    /// Links that carry a frame per datagram may clamp TCP's MSS to what
    /// fits one (`Link::mss_clamp`); false: they must not.
    pub clamp_mss: bool,
}

impl LinkParams {
    /// Defaults for a node with this max frame: offload allowed, 10 s of
    /// handshake, a probe after 15 s of silence and death after 10 s more.
    pub fn new(max_frame: usize) -> Self {
        LinkParams {
            max_frame,
            offload: true,
            handshake_timeout: Duration::from_secs(10),
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(10),
            }),
            clamp_mss: true,
        }
    }

    pub fn with_clamp_mss(mut self, on: bool) -> Self {
        self.clamp_mss = on;
        self
    }

    pub fn with_offload(mut self, on: bool) -> Self {
        self.offload = on;
        self
    }

    pub fn with_handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    pub fn with_keepalive(mut self, k: Option<Keepalive>) -> Self {
        self.keepalive = k;
        self
    }
}

impl Default for LinkParams {
    /// [`LinkParams::new`] for an MTU of 1500.
    fn default() -> Self {
        LinkParams::new(1500 + crate::wire::MAX_OVERHEAD)
    }
}

/// Who is at the other end of a link.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The transport's scheme (`ws`, `wss`, ...).
    pub scheme: &'static str,
    /// The remote address (`ip:port`) when the peer has one, else a
    /// description of the peer (e.g. the command at the other end of a
    /// pipe). Logs and reports show it after `scheme://`.
    pub remote: String,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.remote)
    }
}

pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, LinkError>> + Send>>;
pub type FrameSink = Pin<Box<dyn Sink<Frame, Error = LinkError> + Send>>;

/// An established bidirectional frame link.
///
/// `rx` yields each received frame (one transport message = one frame);
/// it ends when the peer closes. Non-fatal errors ([`LinkError::is_fatal`]
/// is false) may be interleaved. `tx` accepts frames; the node feeds every
/// ready frame and flushes once, so a transport should buffer in
/// `start_send` and write in `poll_flush`.
pub struct Link {
    pub rx: FrameStream,
    pub tx: FrameSink,
    pub peer: PeerInfo,
    /// Told why, just before the node ends the link for a reason of its own
    /// (a transport may tell the peer: WebSocket close codes). Optional.
    pub on_close: Option<CloseHook>,
    /// The link carries offload metadata (`FrameMeta::vnet`): it takes
    /// super-frames and partial checksums as they are. When false, the
    /// node completes checksums and segments super-frames in software
    /// before `tx` sees them.
    pub offload: bool,
    /// With `offload`: the link takes UDP super-frames (`gso_type` 5,
    /// USO) too. A TAP whose kernel lacks USO (before Linux 6.2) says
    /// false, and the node cuts those for it.
    pub offload_udp: bool,
    /// The user the peer authenticated as, if any (status, metrics, `ctl
    /// kick USER`).
    pub user: Option<String>,
    /// What the transport can tell about the live link (its round-trip
    /// time), for status views. Optional.
    pub probe: Option<Arc<dyn LinkProbe>>,
    /// TCP MSS clamping (as OpenVPN's `mssfix`): SYNs the node sends out
    /// through this link announce at most this MSS (over IPv4; 20 less
    /// over IPv6), so the segments of the connections they open fit one
    /// datagram of the link unfragmented. A transport that carries each
    /// frame in one datagram sets it when `LinkParams::clamp_mss` allows.
    pub mss_clamp: Option<u16>,
}

/// What a transport can tell about one of its live links, read when an
/// operator asks (status, metrics), never on the hot path.
pub trait LinkProbe: Send + Sync {
    /// The latest round-trip time measured (e.g. a keepalive Ping and its
    /// Pong), if any.
    fn rtt(&self) -> Option<std::time::Duration> {
        None
    }
    /// Why the peer closed the link, in words, once it did (e.g. `1008
    /// policy violation: credentials revoked`): the node's log line says
    /// it.
    fn close_reason(&self) -> Option<String> {
        None
    }
}

impl Link {
    /// A link without a close hook, taking finished frames only
    /// (`offload` and `offload_udp` false).
    pub fn new(rx: FrameStream, tx: FrameSink, peer: PeerInfo) -> Self {
        Link {
            rx,
            tx,
            peer,
            on_close: None,
            offload: false,
            offload_udp: false,
            user: None,
            probe: None,
            mss_clamp: None,
        }
    }
}

/// Why the node ends a link, when the reason is its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// A bug ended the port (a panic in its reader or writer); the node
    /// keeps serving the other ports.
    InternalError,
}

/// See [`Link::on_close`].
pub type CloseHook = Arc<dyn Fn(CloseReason) + Send + Sync>;

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("peer", &self.peer).finish()
    }
}

/// A link whose setup (e.g. a handshake) is still running. Listeners hand
/// these out so one slow peer never holds up `accept`.
pub type PendingLink = BoxFuture<'static, Result<Link, TransportError>>;

/// Accepts incoming links.
pub trait Listener: Send {
    /// Waits for the next incoming connection. An `Err` concerns that one
    /// connection attempt (the listener stays usable) unless the listener
    /// itself failed, which `accept` reports by returning errors repeatedly.
    fn accept(&mut self) -> BoxFuture<'_, Result<PendingLink, TransportError>>;
    /// The address actually bound (useful with port 0).
    fn local_addr(&self) -> String;
}

/// A transport plugin.
pub trait Transport: Send + Sync {
    /// URL schemes this transport serves, e.g. `["ws"]`.
    fn schemes(&self) -> &[&'static str];
    /// Dials `url` and returns the link once it is established, within
    /// `params.handshake_timeout`.
    fn connect(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Link, TransportError>>;
    /// Binds to `url` and returns a listener whose links follow `params`.
    /// The future binds: once it resolved, peers can connect (a bind
    /// error is its `Err`).
    fn listen(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>>;
    /// What this transport's listeners do about the server's
    /// authentication policy (`--htpasswd`). A server with a policy
    /// refuses to start a listener whose transport answers
    /// [`Authenticates::No`], naming it: every listener enforces the
    /// policy or none starts. The default is `No`.
    fn authenticates(&self) -> Authenticates {
        Authenticates::No
    }
    /// Re-reads what the transport read from files (certificates, keys)
    /// when the program reloads (SIGHUP, `etherws ctl reload`): one line
    /// per thing, `Ok` when done, `Err` when it failed (the old stays).
    /// Called off the event loop: it may block. Default: nothing.
    fn reload(&self) -> Vec<Result<String, String>> {
        Vec::new()
    }
    /// The transport's own counters (drops, refusals...), by name as the
    /// report prints them; the report, `etherws status` and the metrics
    /// show them with no wiring of their own. Default: none.
    fn counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// Whether a transport's listeners check the server's users.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authenticates {
    /// Every link passed the server's per-user check (ws://, quic://).
    Users,
    /// It does not (a transport that knows no users).
    No,
    /// Not per user, but every peer proves a shared secret (udp:// with a
    /// key): allowed beside a per-user policy.
    SharedKey,
}

/// Maps URL schemes to transports. Built explicitly:
/// `Registry::new().with(Ws::new(..))`.
#[derive(Clone, Default)]
pub struct Registry {
    transports: Vec<Arc<dyn Transport>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a transport. A later registration of the same scheme wins, so a
    /// program can override a built-in.
    pub fn with(self, t: impl Transport + 'static) -> Self {
        self.with_arc(Arc::new(t))
    }

    /// [`Registry::with`] for a transport already shared.
    pub fn with_arc(mut self, t: Arc<dyn Transport>) -> Self {
        self.transports.insert(0, t);
        self
    }

    /// Adds every transport of `other`; its schemes win over ours.
    pub fn merge(mut self, other: &Registry) -> Self {
        for t in other.transports.iter().rev() {
            self = self.with_arc(t.clone());
        }
        self
    }

    pub fn get(&self, scheme: &str) -> Option<&Arc<dyn Transport>> {
        self.transports
            .iter()
            .find(|t| t.schemes().contains(&scheme))
    }

    /// Every scheme served, each once.
    pub fn schemes(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = Vec::new();
        for s in self
            .transports
            .iter()
            .flat_map(|t| t.schemes().iter().copied())
        {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        v
    }

    /// The transport for `url`'s scheme; an unknown scheme is an error that
    /// lists the known ones.
    pub fn resolve(&self, url: &Url) -> Result<&Arc<dyn Transport>, TransportError> {
        self.get(url.scheme()).ok_or_else(|| {
            let mut known = self.schemes();
            known.sort_unstable();
            TransportError::UnknownScheme {
                scheme: url.scheme().to_string(),
                known: known.join(", "),
            }
        })
    }

    pub fn connect(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Link, TransportError>> {
        match self.resolve(url) {
            Ok(t) => t.connect(url, params),
            Err(e) => Box::pin(futures::future::ready(Err(e))),
        }
    }

    pub fn listen(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
        match self.resolve(url) {
            Ok(t) => t.listen(url, params),
            Err(e) => Box::pin(futures::future::ready(Err(e))),
        }
    }
}

impl Registry {
    /// Each transport once (a transport registered for several schemes,
    /// or again by `merge`, is one).
    fn each(&self) -> Vec<&Arc<dyn Transport>> {
        let mut seen: Vec<&Arc<dyn Transport>> = Vec::new();
        for t in &self.transports {
            if !seen.iter().any(|s| Arc::ptr_eq(s, t)) {
                seen.push(t);
            }
        }
        seen
    }

    /// [`Transport::reload`] of every transport.
    pub fn reload(&self) -> Vec<Result<String, String>> {
        self.each().into_iter().flat_map(|t| t.reload()).collect()
    }

    /// [`Transport::counters`] of every transport.
    pub fn counters(&self) -> Vec<(String, u64)> {
        self.each().into_iter().flat_map(|t| t.counters()).collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("schemes", &self.schemes())
            .finish()
    }
}
