//! The UDP transport for etherws: `udp://host:port`, one Ethernet frame
//! per datagram (spec/protocol.md §13).
//!
//! For networks where WebSocket is not needed: frames are not
//! retransmitted or reordered by a TCP underneath, so a lossy path costs
//! only the frames lost (TCP inside the tunnel recovers them), where
//! TCP-over-TCP melts down. **udp:// does not encrypt.** With a
//! pre-shared key ([`UdpConfig::psk`]) every datagram is authenticated
//! (HMAC-SHA256, 16-byte tag, replay window), so nobody without the key
//! can create a port or inject frames; anyone on the path still reads
//! them.
//!
//! A client says HELLO and waits for WELCOME, which gives the session id
//! every later datagram carries; a datagram that is not part of a session
//! never creates a port. The server keeps one link per client address,
//! ended by the client's CLOSE, by silence (keepalive), or by a new HELLO
//! from the same address. The client sends PING when it sent or heard
//! nothing for the keepalive interval, which keeps NAT mappings open; the
//! server answers PONG.
//!
//! Modules: [`wire`] (the datagram format, sans-IO), `link` (the two
//! halves), `client`, `server`.

mod client;
mod link;
mod server;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherws_core::futures::future::BoxFuture;
use etherws_core::futures::FutureExt;
use etherws_core::helpers::bound;
use etherws_core::log::{suppressed_note, LogLimiter};
use etherws_core::url::Url;
use etherws_core::{Link, LinkParams, Listener, Transport, TransportError};

pub use wire::Key;

/// The path MTU udp:// plans for (the internet's): a datagram of IP (20)
/// and UDP (8) headers, ours (8, 32 with a key) and the frame fits it.
pub const PATH_MTU: u16 = 1500;

/// The MSS that makes a TCP segment's frame (Ethernet 14, a VLAN tag 4,
/// IPv4 20, TCP 20) fit one datagram of a [`PATH_MTU`] path.
pub fn mss_for(keyed: bool) -> u16 {
    PATH_MTU - 28 - wire::overhead(keyed) as u16 - 18 - 40
}

/// The port when a udp:// URL names none.
pub const DEFAULT_PORT: u16 = 8080;

/// Sessions one IP address may hold unless told otherwise: an address
/// that proved it is reachable (the cookie) still cannot take every slot
/// from its many source ports.
pub const DEFAULT_MAX_PER_IP: usize = 64;

/// Settings of the udp transport besides the node's [`LinkParams`].
#[derive(Clone, Debug)]
pub struct UdpConfig {
    /// Authenticate every datagram with this key (both ends need it).
    pub psk: Option<Key>,
    /// Most clients a listener serves at once (0: no limit); more HELLOs
    /// are ignored.
    pub max_peers: usize,
    /// Most sessions from one IP address (0: no limit); more HELLOs from
    /// it are ignored.
    pub max_peers_per_ip: usize,
    /// Datagrams queued per client toward the node before new ones drop.
    pub rx_queue: usize,
    /// Offer (client) or grant (server) offload: super-frames of up to
    /// 64 KiB cross whole, each as one datagram that IP fragments on the
    /// way (spec/protocol.md §13.4). Much faster on a clean path; on a
    /// lossy one a lost fragment loses the whole super-frame. Off by
    /// default; both ends must turn it on (and the node's offload).
    pub offload: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            psk: None,
            max_peers: 4096,
            max_peers_per_ip: DEFAULT_MAX_PER_IP,
            rx_queue: 1024,
            offload: false,
        }
    }
}

/// What the transport dropped, across its links and listeners.
#[derive(Debug)]
pub struct UdpStats {
    /// Datagrams that belonged to no session (or were malformed).
    pub stray: AtomicU64,
    /// Datagrams whose tag was missing or wrong.
    pub unauthenticated: AtomicU64,
    /// Authenticated datagrams seen before (or too old for the window).
    pub replayed: AtomicU64,
    /// Frames too large for one datagram, dropped before sending.
    pub oversize: AtomicU64,
    /// Frames dropped because a link's receive queue was full.
    pub queue_full: AtomicU64,
    /// Datagrams the kernel refused to send (e.g. the peer's port was
    /// closed: ICMP port unreachable).
    pub send_errors: AtomicU64,
    /// HELLOs without a valid cookie, answered with one (a spoofed
    /// source never gets further).
    pub cookies: AtomicU64,
    /// Sessions that moved to a new client address (NAT rebinding).
    pub roamed: AtomicU64,
    /// One limit on the warnings of all links (20 per 10 s).
    log: LogLimiter,
}

impl Default for UdpStats {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        UdpStats {
            stray: zero(),
            unauthenticated: zero(),
            replayed: zero(),
            oversize: zero(),
            queue_full: zero(),
            send_errors: zero(),
            cookies: zero(),
            roamed: zero(),
            log: LogLimiter::new(20, Duration::from_secs(10)),
        }
    }
}

impl UdpStats {
    /// Counts one event and logs it (at most 20 lines per 10 s).
    pub(crate) fn note(&self, counter: &AtomicU64, what: std::fmt::Arguments<'_>) {
        let total = counter.fetch_add(1, Relaxed) + 1;
        if let Some(s) = self.log.check(Instant::now()) {
            log::warn!("udp: {what} ({total} so far){}", suppressed_note(s));
        }
    }

    /// (name, counter) pairs, for reports.
    pub fn counters(&self) -> [(&'static str, &AtomicU64); 8] {
        [
            ("udp stray datagrams", &self.stray),
            ("udp unauthenticated datagrams", &self.unauthenticated),
            ("udp replayed datagrams", &self.replayed),
            ("udp frames too large to send", &self.oversize),
            ("udp frames dropped (receive queue full)", &self.queue_full),
            ("udp send errors", &self.send_errors),
            (
                "udp cookies sent (HELLOs without a valid cookie)",
                &self.cookies,
            ),
            ("udp sessions moved (NAT rebinding)", &self.roamed),
        ]
    }
}

/// The `udp://` transport. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Udp {
    cfg: Arc<UdpConfig>,
    stats: Arc<UdpStats>,
}

impl Udp {
    pub fn new(cfg: UdpConfig) -> Self {
        Udp {
            cfg: Arc::new(cfg),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> &Arc<UdpStats> {
        &self.stats
    }
}

impl Transport for Udp {
    fn schemes(&self) -> &[&'static str] {
        &["udp"]
    }

    fn connect(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Link, TransportError>> {
        client::connect(
            self.cfg.clone(),
            self.stats.clone(),
            url.clone(),
            params.clone(),
        )
        .boxed()
    }

    fn listen(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
        bound(server::listen(
            self.cfg.clone(),
            self.stats.clone(),
            url,
            params.clone(),
        ))
    }

    fn counters(&self) -> Vec<(String, u64)> {
        self.stats
            .counters()
            .iter()
            .map(|(n, v)| (n.to_string(), v.load(Relaxed)))
            .collect()
    }

    /// No per-user identity: with a key, every peer proves it holds it.
    fn authenticates(&self) -> etherws_core::Authenticates {
        if self.cfg.psk.is_some() {
            etherws_core::Authenticates::SharedKey
        } else {
            etherws_core::Authenticates::No
        }
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Milliseconds on a process-wide monotonic clock (for atomics shared
/// between a link's halves and the server's receive thread).
pub(crate) fn now_ms() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// The instant a [`now_ms`] reading stands for.
pub(crate) fn at_ms(ms: u64) -> Instant {
    *START.get_or_init(Instant::now) + Duration::from_millis(ms.saturating_sub(1))
}

/// Microseconds on the same clock.
pub(crate) fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}
