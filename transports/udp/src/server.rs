//! The server side: one socket, a receive thread that sorts datagrams
//! by peer address, and a link per client that said HELLO.
//!
//! The thread (not a task) owns receiving so that every link keeps
//! getting its frames however the program schedules its tasks, and so
//! that the listener needs no executor of its own. It hands frames to
//! each link through a bounded queue (full: the frame is dropped and
//! counted) and answers HELLO and PING itself.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use etherws_core::futures::future::{self, BoxFuture};
use etherws_core::futures::FutureExt;
use etherws_core::helpers::{io_error, listen_addr};
use etherws_core::url::Url;
use etherws_core::Keepalive;
use etherws_core::{
    Frame, Link, LinkError, LinkParams, Listener, PeerInfo, PendingLink, TransportError,
};

use crate::link::{frame_from, ServerRx, Shared, UdpTx, RX_QUEUE_BYTES};
use crate::wire::{self, kind, CookieJar, Replay};
use crate::{now_ms, UdpConfig, UdpStats, DEFAULT_PORT};

/// A keyed HELLO must be this fresh (seconds, either way).
const HELLO_FRESH: u64 = 120;

/// Without keepalive, a silent client is forgotten after this long.
const IDLE_WITHOUT_KEEPALIVE: Duration = Duration::from_secs(300);

pub(crate) struct UdpListener {
    local: SocketAddr,
    backlog: async_channel::Receiver<Link>,
    stop: Arc<AtomicBool>,
}

pub(crate) fn listen(
    cfg: Arc<UdpConfig>,
    stats: Arc<UdpStats>,
    url: &Url,
    params: LinkParams,
) -> Result<UdpListener, TransportError> {
    let addr = listen_addr(url, DEFAULT_PORT)?;
    let sock = UdpSocket::bind(addr).map_err(io_error(format!("binding udp://{addr}")))?;
    let local = sock.local_addr().map_err(io_error("udp socket"))?;
    let sock = Arc::new(Async::new(sock).map_err(io_error("udp socket"))?);
    let (tx, rx) = async_channel::bounded(64);
    let stop = Arc::new(AtomicBool::new(false));
    let mut rt = Receiver {
        sock,
        cfg,
        stats,
        params,
        peers: HashMap::new(),
        seen_nonces: HashMap::new(),
        cookies: CookieJar::default(),
        backlog: tx,
        stop: stop.clone(),
    };
    std::thread::Builder::new()
        .name(format!("udp-rx {local}"))
        .spawn(move || async_io::block_on(rt.run()))
        .map_err(io_error("starting the udp receive thread"))?;
    Ok(UdpListener {
        local,
        backlog: rx,
        stop,
    })
}

impl Listener for UdpListener {
    fn accept(&mut self) -> BoxFuture<'_, Result<PendingLink, TransportError>> {
        async move {
            match self.backlog.recv().await {
                Ok(link) => Ok(future::ready(Ok(link)).boxed()),
                Err(_) => Err(TransportError::Io {
                    context: format!("udp://{}: the receive thread ended", self.local),
                    error: std::io::ErrorKind::BrokenPipe.into(),
                }),
            }
        }
        .boxed()
    }

    fn local_addr(&self) -> String {
        self.local.to_string()
    }
}

impl Drop for UdpListener {
    fn drop(&mut self) {
        // Links already made keep working; the thread ends with the last.
        self.stop.store(true, Relaxed);
    }
}

struct Peer {
    sh: Arc<Shared>,
    frames: async_channel::Sender<Result<Frame, LinkError>>,
    nonce: [u8; 16],
    /// The options of its WELCOME (said again for a repeated HELLO).
    granted: u8,
    replay: Replay,
}

struct Receiver {
    sock: Arc<Async<UdpSocket>>,
    cfg: Arc<UdpConfig>,
    stats: Arc<UdpStats>,
    params: LinkParams,
    peers: HashMap<SocketAddr, Peer>,
    /// Keyed HELLO nonces of the last 2 × HELLO_FRESH s (replays).
    seen_nonces: HashMap<[u8; 16], u64>,
    /// Return-routability cookies: no state before a HELLO proves its
    /// source address.
    cookies: CookieJar,
    backlog: async_channel::Sender<Link>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    async fn run(&mut self) {
        let mut buf = vec![0u8; 65536];
        let mut swept = Instant::now();
        loop {
            // Take what is there without a timer or a future per
            // datagram; wait (at most a second) only when nothing is.
            match self.sock.get_ref().recv_from(&mut buf) {
                Ok((n, from)) => self.datagram(&buf[..n], from),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let readable = self.sock.readable();
                    let _ =
                        future::select(Box::pin(readable), Timer::after(Duration::from_secs(1)))
                            .await;
                }
                // ICMP errors for earlier sends land here; not ours to end on.
                Err(e) => log::debug!("udp: receive: {e}"),
            }
            // Once a second however busy: forget ended links, and end
            // when the listener is gone and no link is left.
            if swept.elapsed() >= Duration::from_secs(1) {
                swept = Instant::now();
                self.sweep();
                if self.stop.load(Relaxed) && self.peers.is_empty() {
                    return;
                }
            }
        }
    }

    /// Forgets peers whose link ended.
    fn sweep(&mut self) {
        self.peers
            .retain(|_, p| !p.sh.closed.load(Relaxed) && !p.frames.is_closed());
        let now = wire::unix_now();
        self.seen_nonces.retain(|_, t| *t + 2 * HELLO_FRESH > now);
    }

    fn datagram(&mut self, d: &[u8], from: SocketAddr) {
        let st = self.stats.clone();
        let dg = match wire::decode(d, self.cfg.psk.as_ref()) {
            Ok(dg) => dg,
            Err(wire::Reject::Malformed) => {
                return st.note(
                    &st.stray,
                    format_args!("a malformed {}-byte datagram from {from}", d.len()),
                );
            }
            Err(wire::Reject::Unauthenticated) => {
                return st.note(
                    &st.unauthenticated,
                    format_args!("an unauthenticated {}-byte datagram from {from}", d.len()),
                );
            }
        };
        if dg.kind == kind::HELLO {
            return self.hello(&dg, from);
        }
        if !self.peers.contains_key(&from) && self.cfg.psk.is_some() {
            self.roam(&dg, from);
        }
        // A link that ended (its CLOSE, or the node dropped it) is no
        // session, even before the next sweep.
        let Some(p) = self
            .peers
            .get_mut(&from)
            .filter(|p| p.sh.session == dg.session && !p.sh.closed.load(Relaxed))
        else {
            return st.note(
                &st.stray,
                format_args!("a datagram from {from}, which has no session"),
            );
        };
        if self.cfg.psk.is_some() && !p.replay.accept(dg.counter) {
            return st.note(
                &st.replayed,
                format_args!("a replayed datagram from {from}"),
            );
        }
        p.sh.last_rx.store(now_ms(), Relaxed);
        match dg.kind {
            kind::FRAME => {
                let item = frame_from(dg.payload, p.sh.vnet, p.sh.max_frame);
                let len = item.as_ref().map_or(0, |f| f.len());
                // Counted before it is queued: the link may take it (and
                // subtract) before `try_send` even returns.
                let frames = p.sh.queued_frames.fetch_add(1, Relaxed);
                if frames >= self.cfg.rx_queue.max(1)
                    || p.sh.queued.fetch_add(len, Relaxed) + len > RX_QUEUE_BYTES
                {
                    if frames < self.cfg.rx_queue.max(1) {
                        p.sh.queued.fetch_sub(len, Relaxed);
                    }
                    p.sh.queued_frames.fetch_sub(1, Relaxed);
                    return st.note(
                        &st.queue_full,
                        format_args!("{from}'s receive queue is full; a frame dropped"),
                    );
                }
                if p.frames.try_send(item).is_err() {
                    // Closed: the link ended.
                    p.sh.queued.fetch_sub(len, Relaxed);
                    p.sh.queued_frames.fetch_sub(1, Relaxed);
                    self.peers.remove(&from);
                }
            }
            kind::PING => p.sh.send_control(kind::PONG, &[]),
            kind::PONG => p.sh.ponged(),
            kind::CLOSE => {
                // Dropping the queue's sender ends the link's stream.
                p.sh.closed.store(true, Relaxed);
                self.peers.remove(&from);
            }
            _ => {}
        }
    }

    /// NAT rebinding: an authenticated datagram of a live session from a
    /// new address moves the session there (as WireGuard's roaming), once
    /// its counter is new to the session's replay window. Only with a key:
    /// without one, anybody who saw a session id could take it.
    fn roam(&mut self, dg: &wire::Datagram<'_>, from: SocketAddr) {
        if dg.session == 0 {
            return;
        }
        let Some(old) = self
            .peers
            .iter()
            .find(|(_, p)| p.sh.session == dg.session && !p.sh.closed.load(Relaxed))
            .map(|(a, _)| *a)
        else {
            return;
        };
        // Checked here, and taken again by the caller: the same counter is
        // then a repeat. Look without recording.
        let fresh = self
            .peers
            .get(&old)
            .is_some_and(|p| p.replay.would_accept(dg.counter));
        if !fresh {
            return;
        }
        let p = self.peers.remove(&old).expect("found above");
        *p.sh.to.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
        self.stats.roamed.fetch_add(1, Relaxed);
        log::info!(
            "udp: session {:08x} moved from {old} to {from} (its address changed: NAT rebinding)",
            dg.session
        );
        self.peers.insert(from, p);
    }

    fn hello(&mut self, dg: &wire::Datagram<'_>, from: SocketAddr) {
        let st = self.stats.clone();
        let Some(wire::Hello {
            nonce,
            time,
            options,
            cookie,
            ..
        }) = wire::parse_hello(dg.payload)
        else {
            return st.note(&st.stray, format_args!("a malformed HELLO from {from}"));
        };
        // Before anything else, and keeping nothing: a HELLO must echo
        // the cookie for its source address, which only a client that
        // receives there can know. Otherwise it gets one (a COOKIE no
        // larger than the HELLO) and is forgotten.
        let now = wire::unix_now();
        if !self.cookies.valid(now, from, &nonce, &cookie) {
            st.cookies.fetch_add(1, Relaxed);
            let c = self.cookies.make(CookieJar::period(now), from, &nonce);
            let mut out = Vec::with_capacity(96);
            let key = self.cfg.psk.as_ref().map(|k| (k, 1));
            wire::encode(&mut out, kind::COOKIE, 0, key, &wire::cookie(nonce, c));
            let _ = self.sock.get_ref().send_to(&out, from);
            return;
        }
        let ours = if self.cfg.offload && self.params.offload {
            wire::OPT_VNET
        } else {
            0
        };
        let granted = options & ours;
        if let Some(p) = self.peers.get(&from) {
            if p.nonce == nonce {
                // Our WELCOME was lost: say it again.
                let w = wire::welcome(nonce, self.params.max_frame as u32, p.granted);
                p.sh.send_control(kind::WELCOME, &w);
                return;
            }
        }
        if self.cfg.psk.is_some() {
            let now = wire::unix_now();
            if now.abs_diff(time) > HELLO_FRESH || self.seen_nonces.contains_key(&nonce) {
                return st.note(
                    &st.replayed,
                    format_args!("a stale or repeated HELLO from {from}"),
                );
            }
            self.seen_nonces.insert(nonce, now);
        }
        if let Some(old) = self.peers.remove(&from) {
            // The client restarted: its old link ends here.
            old.sh.closed.store(true, Relaxed);
            log::info!("udp: {from} said HELLO again; its previous session ends");
        }
        self.sweep();
        let of_ip = self.peers.keys().filter(|a| a.ip() == from.ip()).count();
        if self.cfg.max_peers_per_ip > 0 && of_ip >= self.cfg.max_peers_per_ip {
            return st.note(
                &st.stray,
                format_args!(
                    "HELLO from {from} ignored: {of_ip} sessions from {} already (--max-clients-per-ip)",
                    from.ip()
                ),
            );
        }
        if self.cfg.max_peers > 0 && self.peers.len() >= self.cfg.max_peers {
            return st.note(
                &st.stray,
                format_args!(
                    "HELLO from {from} ignored: {} clients already",
                    self.peers.len()
                ),
            );
        }
        let mut session: u32 = rand::random();
        while session == 0 {
            session = rand::random();
        }
        let sh = Arc::new(Shared {
            sock: self.sock.clone(),
            to: std::sync::Mutex::new(Some(from)),
            session,
            key: self.cfg.psk.clone(),
            counter: AtomicU64::new(1),
            last_rx: AtomicU64::new(now_ms()),
            last_tx: AtomicU64::new(now_ms()),
            max_frame: self.params.max_frame,
            stats: st.clone(),
            closed: AtomicBool::new(false),
            vnet: granted & wire::OPT_VNET != 0,
            queued: AtomicUsize::new(0),
            queued_frames: AtomicUsize::new(0),
            ping_at: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
        });
        let mut replay = Replay::default();
        replay.accept(dg.counter);
        // Unbounded, and bounded here by `queued_frames` and `queued`: a
        // bounded channel allocates all its slots at once (57 KiB for
        // 1024 frames, per client, idle or not: heaptrack's top consumer
        // when HELLOs made ports); this one grows with what is queued.
        let (ftx, frx) = async_channel::unbounded();
        // Without keepalive a session still ends after an idle time: the
        // dead-line of a keepalive that never probes from here.
        let dead = Some(self.params.keepalive.unwrap_or(Keepalive {
            interval: IDLE_WITHOUT_KEEPALIVE,
            timeout: Duration::ZERO,
        }));
        let mut link = Link::new(
            Box::pin(ServerRx::new(sh.clone(), frx, dead)),
            // The server pings too (a quiet link is probed from both ends,
            // and its round trip shows in the server's status).
            Box::pin(UdpTx::new(sh.clone(), self.params.keepalive)),
            PeerInfo {
                scheme: "udp",
                remote: from.to_string(),
            },
        );
        link.offload = sh.vnet;
        link.offload_udp = sh.vnet;
        link.probe = Some(sh.clone());
        link.mss_clamp =
            (self.params.clamp_mss && !sh.vnet).then(|| crate::mss_for(self.cfg.psk.is_some()));
        if self.backlog.try_send(link).is_err() {
            return st.note(
                &st.stray,
                format_args!("HELLO from {from} ignored: too many links waiting for accept"),
            );
        }
        sh.send_control(
            kind::WELCOME,
            &wire::welcome(nonce, self.params.max_frame as u32, granted),
        );
        self.peers.insert(
            from,
            Peer {
                sh,
                frames: ftx,
                nonce,
                granted,
                replay,
            },
        );
    }
}
