//! The port runtime: attaches links (TAP devices, transport links) to a
//! shared switch and moves frames between them.
//!
//! Each port gets a reader future (link → checks → ingress filters → storm
//! control → switch → output queues) and a writer future (queue → egress
//! filters → link). Queues are bounded in frames and in bytes; a full queue
//! drops and counts, so a slow peer loses its own frames instead of stalling
//! everyone. The writer feeds every frame that is ready and flushes once,
//! and polls the link's `poll_flush` whenever its task wakes, so a link can
//! send its own control traffic (spec/transport.md). A panic inside either
//! future is caught, logged and ends only that port. The caller spawns the
//! futures on its runtime: core never picks one.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::{self, BoxFuture, Either};
use futures::{FutureExt, Stream, StreamExt};

use crate::filter::{Direction, FilterChain, FilterContext, NoFilter, PortKind, Verdict};
use crate::frame::Frame;
use crate::log::{suppressed_note, LogLimiter};
use crate::stats::{DropReason, PortCounters, PortStats};
use crate::switch::{
    Decision, FdbRow, Learned, Outcome, PortConfig, PortId, Switch, SwitchConfig, SwitchDrop,
};
use crate::transport::{CloseReason, FrameSink, FrameStream, Link, LinkError};
use crate::wire::{self, EthernetFrame};

/// Default per-port output queue length, in frames.
pub const DEFAULT_QUEUE_LEN: usize = 1024;
/// Default per-port output queue size, in frame bytes.
pub const DEFAULT_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Default storm limit: flooded frames per second accepted from one port.
pub const DEFAULT_STORM_LIMIT: u32 = 10_000;
/// Largest storm burst, in frames: a quarter of the default output queue.
pub const STORM_BURST_MAX: u32 = 256;

/// Node-wide settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub switch: SwitchConfig,
    /// Output queue length per port, in frames.
    pub queue_len: usize,
    /// Output queue size per port, in bytes of frame data. A frame is
    /// always admitted to an empty queue, so the bound is this plus one
    /// max frame.
    pub queue_bytes: usize,
    /// Largest frame accepted from any port (MTU + [`wire::MAX_OVERHEAD`]).
    pub max_frame: usize,
    /// Storm control: most broadcast, multicast and unknown-unicast frames
    /// per second that one port may flood, in bursts of a tenth of a
    /// second's worth, at most [`STORM_BURST_MAX`] (a burst must leave room
    /// in the other ports' queues); 0 turns it off. Frames over it are
    /// dropped as `storm`.
    pub storm_limit: u32,
    /// Port security: most stations one link port may have learned
    /// (`--max-macs`); frames from further sources are dropped as
    /// `mac_limit`. `None`: no limit. TAP ports are never limited (a TAP
    /// may bridge many VMs).
    pub max_macs_per_link: Option<usize>,
}

impl NodeConfig {
    /// A config whose frame limit fits `mtu` plus header and two VLAN tags.
    pub fn for_mtu(mtu: usize) -> Self {
        NodeConfig {
            switch: SwitchConfig::default(),
            queue_len: DEFAULT_QUEUE_LEN,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            max_frame: mtu + wire::MAX_OVERHEAD,
            storm_limit: DEFAULT_STORM_LIMIT,
            max_macs_per_link: None,
        }
    }
}

/// A port's output queue: an unbounded channel (its memory grows only with
/// what is queued) bounded here in frames and bytes.
struct QueueBound {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    max_frames: usize,
    max_bytes: usize,
    /// Notified when the writer takes frames out: a reader waiting for
    /// room (see [`ROOM_WAIT`]) tries again.
    room: event_listener::Event,
    /// A reader waited [`ROOM_WAIT`] in vain: the port is not draining.
    /// Until it has drained to half, frames for it are dropped at once.
    stuck: AtomicBool,
}

impl QueueBound {
    /// Reserves room for a frame of `len` bytes, or says there is none.
    fn reserve(&self, len: usize) -> bool {
        if self.frames.fetch_add(1, Relaxed) >= self.max_frames {
            self.frames.fetch_sub(1, Relaxed);
            return false;
        }
        let before = self.bytes.fetch_add(len, Relaxed);
        if before > 0 && before + len > self.max_bytes {
            // Undone without `release`: that would wake the waiting
            // readers for room that is not there (and spin this one).
            self.frames.fetch_sub(1, Relaxed);
            self.bytes.fetch_sub(len, Relaxed);
            return false;
        }
        true
    }

    fn release(&self, len: usize) {
        self.frames.fetch_sub(1, Relaxed);
        let before = self.bytes.fetch_sub(len, Relaxed);
        if self.stuck.load(Relaxed) && before - len <= self.max_bytes / 2 {
            self.stuck.store(false, Relaxed);
        }
        self.room.notify(1);
    }
}

/// A unicast super-frame whose port's queue is full waits for room while
/// the port drains. A port that drains slower than frames arrive (a TAP, a link
/// whose TCP is the bottleneck) then slows its sources down instead of
/// losing frames: with super-frames a drop costs some 44 TCP segments and,
/// in bursts, retransmission timeouts. A port from which no frame leaves
/// for this long is marked stuck: its frames are dropped at once, as
/// before, until it has drained to half its bound. So a peer that stopped
/// reading costs its sources this wait once. Flooded frames never wait.
const ROOM_WAIT: Duration = Duration::from_millis(20);

/// The longest one frame waits for room in all, however steadily the port
/// drains: a port that frees a little now and then must not hold its
/// source's reader (and so every other port it feeds) for ever.
const ROOM_WAIT_MAX: Duration = Duration::from_millis(100);

/// [`ROOM_WAIT`] when the port is the only one the source can feed (a
/// node of two ports: a client, a point-to-point server). Holding that
/// source's reader then delays no other port, so the node waits out what
/// a slow but live peer does: a receiver too busy to read closes its TCP
/// window for hundreds of milliseconds at a time (seen as the persist
/// timer of ws://'s connection under 4 TCP streams on 2 cores), and each
/// super-frame dropped meanwhile cost an inner stream a retransmission
/// timeout. The TAP's senders are held back meanwhile by the kernel (TCP
/// small queues below their sockets), without loss.
const ROOM_WAIT_SOLE: Duration = Duration::from_secs(2);

/// [`ROOM_WAIT_MAX`] for the only port a source can feed.
const ROOM_WAIT_SOLE_MAX: Duration = Duration::from_secs(10);

/// How long a unicast super-frame waits for room in its port's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Patience {
    /// Nothing left the port for this long: the port is stuck.
    stuck_after: Duration,
    /// The frame waited this long in all: dropped (the port is not stuck).
    give_up_after: Duration,
}

impl Patience {
    /// For a port beside others: a wait must not hold them up.
    const SHARED: Patience = Patience {
        stuck_after: ROOM_WAIT,
        give_up_after: ROOM_WAIT_MAX,
    };
    /// For the only port the source can feed.
    const SOLE: Patience = Patience {
        stuck_after: ROOM_WAIT_SOLE,
        give_up_after: ROOM_WAIT_SOLE_MAX,
    };
}

/// A reader's reusable buffers, so switching a frame allocates nothing.
#[derive(Default)]
struct Scratch {
    /// Unicast frames whose port had no room: queued in order, each
    /// waiting a little for room (see [`Patience`]), before the next read.
    waiting: Vec<(Arc<Output>, Frame, Patience)>,
    /// The ports a flooded frame goes to (empty between frames).
    many: Vec<Arc<Output>>,
}

struct Slot {
    kind: PortKind,
    name: String,
    peer: crate::transport::PeerInfo,
    user: Option<String>,
    since: std::time::SystemTime,
    offload: bool,
    probe: Option<Arc<dyn crate::transport::LinkProbe>>,
    out: Arc<Output>,
    /// Dropping this stops the port's reader.
    _stop: async_channel::Sender<()>,
}

/// A port's output queue as the switch sees it. Shared (`Arc`), so a
/// reader takes its targets under the fabric lock and enqueues, which may
/// wake the port's writer, after letting go of it.
struct Output {
    queue: async_channel::Sender<Frame>,
    bound: Arc<QueueBound>,
    counters: Arc<PortCounters>,
}

impl Output {
    fn enqueue(&self, frame: Frame) {
        if let Err(frame) = self.try_enqueue(frame) {
            drop(frame);
            self.counters.count_drop(DropReason::QueueFull);
        }
    }

    /// Queues the frame, or hands it back when the queue is full.
    fn try_enqueue(&self, frame: Frame) -> Result<(), Frame> {
        let len = frame.len();
        if !self.bound.reserve(len) {
            return Err(frame);
        }
        if self.queue.try_send(frame).is_err() {
            // Closed: the port is going away.
            self.bound.release(len);
        }
        Ok(())
    }

    /// Queues a unicast frame, waiting for room as long as the port keeps
    /// draining: only `patience.stuck_after` without a single frame leaving
    /// it marks it stuck and drops the frame.
    async fn enqueue_waiting(&self, frame: Frame, patience: Patience) {
        let mut frame = match self.try_enqueue(frame) {
            Ok(()) => return,
            Err(f) => f,
        };
        let give_up = std::time::Instant::now() + patience.give_up_after;
        while !self.bound.stuck.load(Relaxed) && !self.queue.is_closed() {
            let listener = self.bound.room.listen();
            // Room may have come between the try and the listen.
            frame = match self.try_enqueue(frame) {
                Ok(()) => return,
                Err(f) => f,
            };
            // The listener fires only when the writer takes a frame out.
            let now = std::time::Instant::now();
            let timer = async_io::Timer::at((now + patience.stuck_after).min(give_up));
            if let futures::future::Either::Right(_) =
                futures::future::select(listener, timer).await
            {
                // Nothing left the port for stuck_after: stuck. Or this
                // frame waited its fill: dropped, the port is not stuck.
                if std::time::Instant::now() < give_up {
                    self.bound.stuck.store(true, Relaxed);
                }
                break;
            }
            if std::time::Instant::now() >= give_up {
                break;
            }
            frame = match self.try_enqueue(frame) {
                Ok(()) => return,
                Err(f) => f,
            };
        }
        drop(frame);
        self.counters.count_drop(DropReason::QueueFull);
    }
}

struct Fabric {
    switch: Switch,
    slots: Slots,
}

type Slots = HashMap<PortId, Slot, crate::switch::IdBuildHasher>;

/// Forwarding-table events since the last [`Node::take_fdb_summary`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbSummary {
    pub learned: u64,
    pub moved: u64,
    /// Stations not learned because the table was full.
    pub not_learned: u64,
    /// Moves refused by the move guard (spoofing, or a loop flapping).
    pub moves_refused: u64,
    /// Entries in the table now.
    pub entries: usize,
}

struct Inner {
    cfg: NodeConfig,
    fabric: RwLock<Fabric>,
    ingress: Arc<dyn FilterChain>,
    egress: Arc<dyn FilterChain>,
    switched: AtomicU64,
    /// Ports whose reader or writer future has not ended yet.
    live: AtomicUsize,
    /// Set by [`Node::detach_all`]: ports attached afterwards start detached.
    closing: AtomicBool,
    learned: AtomicU64,
    moved: AtomicU64,
    not_learned: AtomicU64,
    moves_refused: AtomicU64,
    /// Per-station learn/move lines (debug level).
    learn_log: LogLimiter,
    /// "Table full" warnings.
    fdb_full_log: LogLimiter,
    /// Port attach/end lines: a peer that reconnects in a loop must not
    /// flood the log.
    link_log: LogLimiter,
}

/// Ends the port's life (for [`Node::live_ports`]) when both its futures
/// are done or dropped.
struct LiveGuard(Arc<Inner>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Relaxed);
    }
}

/// A switch with ports. Cheap to clone (shared).
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// Why a port's reader ended.
#[derive(Debug)]
pub enum PortEnd {
    /// The peer closed the link.
    Closed,
    /// The link failed.
    Failed(LinkError),
    /// The node detached the port (shutdown, or its writer failed).
    Detached,
    /// A bug: the port's reader or writer panicked (the message).
    Panicked(String),
}

/// A port just attached: its id and the futures that run it.
pub struct AttachedPort {
    pub id: PortId,
    pub counters: Arc<PortCounters>,
    /// Reads the link until it ends, then detaches the port. Once the port
    /// is detached, a link's reader keeps reading (and discarding) until
    /// the peer ends the link, so the peer's Close is received; the caller
    /// bounds that wait (see [`AttachedPort::detached`]).
    pub reader: BoxFuture<'static, PortEnd>,
    /// Writes switched frames to the link until the port is detached, then
    /// what is still queued, then closes the link.
    pub writer: BoxFuture<'static, ()>,
    /// Resolves once the port is detached: from then on, the caller should
    /// give the reader and writer a grace period and then drop them.
    pub detached: BoxFuture<'static, ()>,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Node {
    pub fn new(cfg: NodeConfig) -> Self {
        Self::with_filters(cfg, Arc::new(NoFilter), Arc::new(NoFilter))
    }

    pub fn with_filters(
        cfg: NodeConfig,
        ingress: Arc<dyn FilterChain>,
        egress: Arc<dyn FilterChain>,
    ) -> Self {
        Node {
            inner: Arc::new(Inner {
                fabric: RwLock::new(Fabric {
                    switch: Switch::new(cfg.switch.clone()),
                    slots: HashMap::default(),
                }),
                cfg,
                ingress,
                egress,
                switched: AtomicU64::new(0),
                live: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
                learned: AtomicU64::new(0),
                moved: AtomicU64::new(0),
                not_learned: AtomicU64::new(0),
                moves_refused: AtomicU64::new(0),
                learn_log: LogLimiter::new(20, Duration::from_secs(1)),
                fdb_full_log: LogLimiter::new(1, Duration::from_secs(60)),
                link_log: LogLimiter::new(20, Duration::from_secs(10)),
            }),
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    // A panic while holding the lock cannot leave the switch in a state
    // worse than "some counters off", so both keep serving after one.

    /// The fabric for reading: what switching a known station needs, taken
    /// by every reader thread at once without waiting.
    fn fabric(&self) -> RwLockReadGuard<'_, Fabric> {
        self.inner.fabric.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The fabric for changing: ports come and go, stations are learned.
    fn fabric_mut(&self) -> RwLockWriteGuard<'_, Fabric> {
        self.inner.fabric.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a port lifecycle line, rate-limited node-wide.
    fn link_line(&self, level: log::Level, msg: std::fmt::Arguments<'_>) {
        if let Some(s) = self.inner.link_log.check(Instant::now()) {
            log::log!(level, "{msg}{}", suppressed_note(s));
        }
    }

    /// Attaches `link` as a new port. Spawn the returned reader and writer
    /// (and bound them once `detached` resolves).
    pub fn attach(&self, link: Link, kind: PortKind, mut cfg: PortConfig) -> AttachedPort {
        if kind == PortKind::Link && cfg.max_macs.is_none() {
            cfg.max_macs = self.inner.cfg.max_macs_per_link;
        }
        let (qtx, qrx) = async_channel::unbounded();
        let bound = Arc::new(QueueBound {
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_frames: self.inner.cfg.queue_len.max(1),
            max_bytes: self.inner.cfg.queue_bytes.max(1),
            room: event_listener::Event::new(),
            stuck: AtomicBool::new(false),
        });
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let counters = Arc::new(PortCounters::default());
        let name = match &link.user {
            Some(u) => format!("{}://{u}@{}", link.peer.scheme, link.peer.remote),
            None => link.peer.to_string(),
        };
        let id = {
            let mut fab = self.fabric_mut();
            let id = fab.switch.add_port(cfg);
            if self.inner.closing.load(Relaxed) {
                // Shutting down: the port starts detached (its reader sees
                // the stop at once, its writer an empty closed queue).
                fab.switch.remove_port(id);
                drop((stop_tx, qtx));
            } else {
                fab.slots.insert(
                    id,
                    Slot {
                        kind,
                        name: name.clone(),
                        peer: link.peer.clone(),
                        user: link.user.clone(),
                        since: std::time::SystemTime::now(),
                        offload: link.offload,
                        probe: link.probe.clone(),
                        out: Arc::new(Output {
                            queue: qtx,
                            bound: bound.clone(),
                            counters: counters.clone(),
                        }),
                        _stop: stop_tx,
                    },
                );
            }
            id
        };
        self.inner.live.fetch_add(1, Relaxed);
        let live = Arc::new(LiveGuard(self.inner.clone()));
        // Set by the writer when the link failed under it: no point then in
        // reading on for the peer's Close.
        let broken = Arc::new(AtomicBool::new(false));
        let carries = if link.offload {
            " (offload: super-frames cross whole)"
        } else {
            ""
        };
        self.link_line(
            log::Level::Info,
            format_args!("port {id} attached: {} {name}{carries}", kind.as_str()),
        );
        let Link {
            rx,
            tx,
            on_close,
            offload,
            offload_udp,
            probe,
            mss_clamp,
            ..
        } = link;
        let takes = Takes {
            offload,
            udp: offload && offload_udp,
            mss: mss_clamp,
        };
        let reader = {
            let node = self.clone();
            let counters = counters.clone();
            let name = name.clone();
            let stop_rx = stop_rx.clone();
            let live = live.clone();
            let broken = broken.clone();
            let on_close = on_close.clone();
            async move {
                let _live = live;
                let started = Instant::now();
                let mut rx = rx;
                let end = {
                    let read = AssertUnwindSafe(node.read_loop(id, kind, &mut rx, &counters))
                        .catch_unwind()
                        .map(|r| r.unwrap_or_else(|p| PortEnd::Panicked(panic_message(&*p))));
                    let stop = stop_rx.recv().map(|_| PortEnd::Detached);
                    // The stop first: a port this node detached ends as
                    // detached even when the peer's answer to our close is
                    // already in (spec/transport.md, "Closing").
                    match future::select(Box::pin(stop), Box::pin(read)).await {
                        Either::Left((end, _)) | Either::Right((end, _)) => end,
                    }
                };
                if let (PortEnd::Panicked(_), Some(hook)) = (&end, &on_close) {
                    hook(CloseReason::InternalError);
                }
                node.detach(id);
                let took = started.elapsed().as_secs_f64();
                let c = counters.snapshot();
                let why = probe
                    .as_ref()
                    .and_then(|p| p.close_reason())
                    .map_or(String::new(), |r| format!(" ({r})"));
                match &end {
                    PortEnd::Failed(LinkError::Ended(why)) => node.link_line(
                        log::Level::Info,
                        format_args!("port {id} ({name}) ended after {took:.1}s: {why}; {c}"),
                    ),
                    PortEnd::Failed(e) => node.link_line(
                        log::Level::Warn,
                        format_args!("port {id} ({name}) failed after {took:.1}s: {e}; {c}"),
                    ),
                    PortEnd::Panicked(m) => log::error!(
                        "port {id} ({name}) ended by an internal error (panic: {m}); \
                         the node keeps serving the other ports; {c}"
                    ),
                    PortEnd::Closed => node.link_line(
                        log::Level::Info,
                        format_args!(
                            "port {id} ({name}) closed by peer{why} after {took:.1}s; {c}"
                        ),
                    ),
                    PortEnd::Detached => node.link_line(
                        log::Level::Info,
                        format_args!("port {id} ({name}) detached after {took:.1}s; {c}"),
                    ),
                }
                if matches!(end, PortEnd::Detached)
                    && kind == PortKind::Link
                    && !broken.load(Relaxed)
                {
                    // Our writer sends a Close; read until the peer's
                    // answer ends the link (bounded by the caller).
                    let _ = AssertUnwindSafe(drain(&mut rx)).catch_unwind().await;
                }
                end
            }
            .boxed()
        };
        let writer = {
            let node = self.clone();
            let counters = counters.clone();
            let name = name.clone();
            async move {
                let _live = live;
                // The sink stays out here, so it survives a panic below and
                // can still tell the peer (1011 for ws).
                let mut tx = tx;
                let w = AssertUnwindSafe(node.write_loop(id, kind, &name, qrx, bound, &mut tx, &counters, &broken, takes))
                    .catch_unwind()
                    .await;
                if let Err(p) = w {
                    if let Some(hook) = &on_close {
                        hook(CloseReason::InternalError);
                    }
                    log::error!(
                        "port {id} ({name}) writer ended by an internal error (panic: {}); port detached",
                        panic_message(&*p)
                    );
                    node.detach(id);
                    let closed = AssertUnwindSafe(futures::SinkExt::close(&mut tx))
                        .catch_unwind()
                        .await;
                    if !matches!(closed, Ok(Ok(()))) {
                        broken.store(true, Relaxed);
                    }
                }
            }
            .boxed()
        };
        let detached = async move {
            let _ = stop_rx.recv().await;
        }
        .boxed();
        AttachedPort {
            id,
            counters,
            reader,
            writer,
            detached,
        }
    }

    /// Detaches a port: flushes its FDB entries, stops its reader, and lets
    /// its writer finish what is queued and close the link. Idempotent.
    pub fn detach(&self, id: PortId) -> bool {
        let slot = {
            let mut fab = self.fabric_mut();
            fab.switch.remove_port(id);
            fab.slots.remove(&id)
        };
        // Dropped outside the lock: waking the port's tasks must not hold
        // up other ports.
        slot.is_some()
    }

    /// Detaches every port (shutdown). Writers send what is queued, close
    /// their links cleanly (a WebSocket Close frame), and readers wait for
    /// the peers' answers; wait for [`Node::live_ports`] to reach zero (with
    /// a deadline) before exiting.
    pub fn detach_all(&self) {
        self.inner.closing.store(true, Relaxed);
        let slots: Vec<Slot> = {
            let mut fab = self.fabric_mut();
            let ids: Vec<PortId> = fab.slots.keys().copied().collect();
            ids.into_iter()
                .filter_map(|id| {
                    fab.switch.remove_port(id);
                    fab.slots.remove(&id)
                })
                .collect()
        };
        drop(slots);
    }

    /// True once [`Node::detach_all`] ran: the node is shutting down.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Relaxed)
    }

    /// Ports whose reader or writer future has not finished (or been
    /// dropped) yet.
    pub fn live_ports(&self) -> usize {
        self.inner.live.load(Relaxed)
    }

    async fn read_loop(
        &self,
        id: PortId,
        kind: PortKind,
        rx: &mut FrameStream,
        counters: &PortCounters,
    ) -> PortEnd {
        let ctx = FilterContext {
            direction: Direction::Ingress,
            port: id,
            port_kind: kind,
        };
        let mut storm = StormBucket::new(self.inner.cfg.storm_limit);
        let mut scratch = Scratch::default();
        let (mut burst, mut burst_bytes) = (0, 0);
        while let Some(item) = rx.next().await {
            // A link that always has a frame ready must not pin a thread:
            // let the executor run others (the writers it feeds) now and
            // then.
            burst += 1;
            if burst >= READ_BURST || burst_bytes >= READ_BURST_BYTES {
                (burst, burst_bytes) = (0, 0);
                YieldNow(false).await;
            }
            match item {
                Ok(frame) => {
                    burst_bytes += frame.len();
                    counters.rx(frame.len());
                    self.ingress(&ctx, frame, counters, &mut storm, &mut scratch);
                    for (out, frame, patience) in scratch.waiting.drain(..) {
                        out.enqueue_waiting(frame, patience).await;
                    }
                }
                Err(LinkError::Oversize(len)) => {
                    counters.rx(len);
                    let max = self.inner.cfg.max_frame;
                    let detail = format_args!("{len} bytes > max {max}");
                    self.count_drop(id, counters, DropReason::Oversize, &detail);
                }
                Err(e) if !e.is_fatal() => {
                    self.count_drop(id, counters, DropReason::NotAFrame, &e);
                }
                Err(e) => return PortEnd::Failed(e),
            }
        }
        PortEnd::Closed
    }

    fn count_drop(
        &self,
        id: PortId,
        counters: &PortCounters,
        reason: DropReason,
        detail: &dyn std::fmt::Display,
    ) {
        counters.count_drop(reason);
        if let Some(suppressed) = counters.log_limiter().check(Instant::now()) {
            let name = self.port_name(id);
            log::warn!(
                "port {id} ({name}): dropped frame ({reason}): {detail}; total {}{}",
                counters.drops(reason),
                suppressed_note(suppressed)
            );
        }
    }

    /// The port's name (its link's peer, with the user), for log lines.
    fn port_name(&self, id: PortId) -> String {
        self.fabric()
            .slots
            .get(&id)
            .map_or_else(|| "gone".to_string(), |s| s.name.clone())
    }

    /// The per-frame ingress path: validate, filter, switch, enqueue. A
    /// super-frame (offload metadata) is switched whole, unless ingress
    /// filters must see it: then it is finished in software first (filters
    /// see frames of at most max frame, spec/filter-abi.md).
    fn ingress(
        &self,
        ctx: &FilterContext,
        frame: Frame,
        counters: &PortCounters,
        storm: &mut StormBucket,
        scratch: &mut Scratch,
    ) {
        if let Some(vnet) = frame.meta.vnet {
            use crate::offload::{check, Unfit};
            let max = self.inner.cfg.max_frame;
            match check(frame.as_ref(), &vnet, max) {
                Ok(()) => {}
                Err(Unfit::Oversize(n)) => {
                    let detail = format_args!("{n} bytes > max {max} (offloaded frame)");
                    return self.count_drop(ctx.port, counters, DropReason::Oversize, &detail);
                }
                Err(Unfit::Bad(e)) => {
                    return self.count_drop(ctx.port, counters, DropReason::BadOffload, &e);
                }
            }
            // A checksum-only frame is completed here, before filters and
            // the switch see it: its offsets could point anywhere past the
            // Ethernet header, and no byte may change after they looked.
            let chain = &*self.inner.ingress;
            if !vnet.is_gso() || (!chain.is_empty() && frame.len() > chain.super_frames()) {
                // `finish` fails before it hands out any segment.
                let each = |f| self.ingress_one(ctx, f, counters, storm, scratch);
                if let Err(e) = crate::offload::finish(frame, &vnet, each) {
                    self.count_drop(ctx.port, counters, DropReason::BadOffload, &e);
                }
                return;
            }
        }
        self.ingress_one(ctx, frame, counters, storm, scratch)
    }

    fn ingress_one(
        &self,
        ctx: &FilterContext,
        mut frame: Frame,
        counters: &PortCounters,
        storm: &mut StormBucket,
        scratch: &mut Scratch,
    ) {
        let len = frame.len();
        if len > self.inner.cfg.max_frame && frame.meta.vnet.is_none() {
            let max = self.inner.cfg.max_frame;
            let detail = format_args!("{len} bytes > max {max}");
            return self.count_drop(ctx.port, counters, DropReason::Oversize, &detail);
        }
        if let Err(e) = EthernetFrame::new_checked(frame.bytes().as_ref()) {
            return self.count_drop(ctx.port, counters, DropReason::Runt, &e);
        }
        if !self.inner.ingress.is_empty() {
            if self.inner.ingress.filter(ctx, &mut frame) == Verdict::Drop {
                counters.count_drop(DropReason::IngressFilter);
                return;
            }
            // A filter may have rewritten it into something unswitchable.
            if let Some(vnet) = frame.meta.vnet {
                // Whole super-frame (the filter kept its length): its
                // header must still describe it.
                if let Err(e) =
                    crate::offload::check(frame.as_ref(), &vnet, self.inner.cfg.max_frame)
                {
                    let detail = format_args!("after the ingress filters: {e}");
                    return self.count_drop(ctx.port, counters, DropReason::IngressFilter, &detail);
                }
            } else if frame.len() < wire::HEADER_LEN || frame.len() > self.inner.cfg.max_frame {
                counters.count_drop(DropReason::IngressFilter);
                return;
            }
        }
        let Ok(view) = EthernetFrame::new_checked(frame.bytes().as_ref()) else {
            counters.count_drop(DropReason::IngressFilter);
            return;
        };
        let group = view.dst().is_multicast();
        let (src, vlan) = (view.src(), view.vlan_id());
        let hub = self.inner.cfg.switch.hub;
        let now = Instant::now();
        // Under the lock only the decision and the targets; enqueueing
        // (which may wake a writer on another thread) comes after. A known
        // station's frame needs only the shared lock; learning takes the
        // exclusive one.
        let mut one: Option<Arc<Output>> = None;
        let mut refused: Option<SwitchDrop> = None;
        let mut patience = Patience::SHARED;
        let Scratch { waiting, many } = scratch;
        let mut route = |outcome: Outcome<'_>, slots: &Slots| {
            match outcome.decision {
                Decision::Forward(p) => {
                    self.inner.switched.fetch_add(1, Relaxed);
                    one = slots.get(&p).map(|s| s.out.clone());
                    if slots.len() == 2 {
                        patience = Patience::SOLE;
                    }
                }
                Decision::Flood(ports) => {
                    // In hub mode every frame floods; only group traffic
                    // counts as a storm there.
                    if (group || !hub) && !storm.take(now) {
                        counters.count_drop(DropReason::Storm);
                    } else {
                        self.inner.switched.fetch_add(1, Relaxed);
                        many.extend(ports.filter_map(|p| slots.get(&p).map(|s| s.out.clone())));
                    }
                }
                Decision::Drop(SwitchDrop::VlanNotAllowed) => {
                    counters.count_drop(DropReason::VlanNotAllowed)
                }
                // Port security: counted and logged after unlocking.
                Decision::Drop(
                    why @ (SwitchDrop::PinnedElsewhere { .. }
                    | SwitchDrop::MoveRefused { .. }
                    | SwitchDrop::MacLimit),
                ) => refused = Some(why),
                Decision::Drop(_) => {}
            }
            outcome.learned
        };
        let fast = {
            let fab = self.fabric();
            let outcome = fab.switch.try_handle_frame(now, ctx.port, &view);
            outcome.map(|o| route(o, &fab.slots))
        };
        let learned = match fast {
            Some(learned) => learned,
            None => {
                let mut fab = self.fabric_mut();
                let Fabric { switch, slots } = &mut *fab;
                route(switch.handle_frame(now, ctx.port, &view), slots)
            }
        };
        // Only super-frames wait for room: losing one costs some 44 TCP
        // segments at once (and, in bursts, retransmission timeouts); a
        // wire-size frame is dropped as a full queue always dropped it, so
        // a flood of small frames costs no waiting either.
        let super_frame = frame.meta.vnet.is_some_and(|h| h.is_gso());
        if let Some(o) = one.take_if(|_| !super_frame && waiting.is_empty()) {
            o.enqueue(frame);
        } else if let Some(o) = one {
            // Behind a frame that already waits, to keep their order.
            if !waiting.is_empty() {
                waiting.push((o, frame, patience));
            } else if let Err(frame) = o.try_enqueue(frame) {
                if o.bound.stuck.load(Relaxed) {
                    o.counters.count_drop(DropReason::QueueFull);
                } else {
                    waiting.push((o, frame, patience));
                }
            }
        } else if let Some(last) = many.pop() {
            for o in many.drain(..) {
                o.enqueue(frame.clone());
            }
            last.enqueue(frame);
        }
        // Log after unlocking: log I/O must not hold up other ports.
        if let Some(l) = learned {
            self.note_learned(l, now);
        }
        if let Some(why) = refused {
            self.note_refused(ctx.port, counters, why, src, vlan);
        }
    }

    /// Counts a learning event; per-station lines are debug level and
    /// rate-limited, the periodic [`FdbSummary`] is what an operator sees.
    fn note_learned(&self, l: Learned, now: Instant) {
        let debug = log::log_enabled!(log::Level::Debug);
        match l {
            Learned::New { vlan, mac, port } => {
                self.inner.learned.fetch_add(1, Relaxed);
                if debug {
                    if let Some(s) = self.inner.learn_log.check(now) {
                        log::debug!(
                            "fdb: learned {mac} vlan {vlan} on port {port}{}",
                            suppressed_note(s)
                        );
                    }
                }
            }
            Learned::Moved {
                vlan,
                mac,
                from,
                to,
            } => {
                self.inner.moved.fetch_add(1, Relaxed);
                if debug {
                    if let Some(s) = self.inner.learn_log.check(now) {
                        log::debug!(
                            "fdb: {mac} vlan {vlan} moved from port {from} to port {to}{}",
                            suppressed_note(s)
                        );
                    }
                }
            }
            Learned::TableFull { vlan, mac, port } => {
                self.inner.not_learned.fetch_add(1, Relaxed);
                if let Some(s) = self.inner.fdb_full_log.check(now) {
                    log::warn!(
                        "fdb: table full ({} entries), not learning {mac} vlan {vlan} on port {port} \
                         (its frames are flooded; see the periodic fdb summary){}",
                        self.inner.cfg.switch.max_entries,
                        suppressed_note(s)
                    );
                }
            }
        }
    }

    /// Counts and logs (rate-limited, per port) a frame port security
    /// refused.
    fn note_refused(
        &self,
        port: PortId,
        counters: &PortCounters,
        why: SwitchDrop,
        src: wire::MacAddr,
        vlan: u16,
    ) {
        let (reason, detail) = match why {
            SwitchDrop::PinnedElsewhere { owner } => (
                DropReason::Spoof,
                format!("source {src} is this node's own address (pinned to port {owner})"),
            ),
            SwitchDrop::MoveRefused { owner } => {
                self.inner.moves_refused.fetch_add(1, Relaxed);
                (
                    DropReason::Spoof,
                    format!(
                        "source {src} vlan {vlan} is active on port {owner} \
                         (it may move after {:?} of silence there)",
                        self.inner.cfg.switch.move_guard
                    ),
                )
            }
            _ => (
                DropReason::MacLimit,
                format!("new source {src}: the port has its --max-macs stations"),
            ),
        };
        self.count_drop(port, counters, reason, &detail);
    }

    /// Learning events since the last call, and the table size.
    pub fn take_fdb_summary(&self) -> FdbSummary {
        FdbSummary {
            learned: self.inner.learned.swap(0, Relaxed),
            moved: self.inner.moved.swap(0, Relaxed),
            not_learned: self.inner.not_learned.swap(0, Relaxed),
            moves_refused: self.inner.moves_refused.swap(0, Relaxed),
            entries: self.fabric().switch.fdb_len(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_loop(
        &self,
        id: PortId,
        kind: PortKind,
        name: &str,
        queue: async_channel::Receiver<Frame>,
        bound: Arc<QueueBound>,
        tx: &mut FrameSink,
        counters: &PortCounters,
        broken: &AtomicBool,
        takes: Takes,
    ) {
        let ctx = FilterContext {
            direction: Direction::Egress,
            port: id,
            port_kind: kind,
        };
        let pump = Pump {
            queue: Box::pin(queue),
            bound,
            tx: &mut *tx,
            held: std::collections::VecDeque::new(),
            closed: false,
            takes,
            max_frame: self.inner.cfg.max_frame,
            batch: self.inner.cfg.queue_len.max(1),
            egress: &*self.inner.egress,
            ctx,
            counters,
        };
        match pump.await {
            // Queue closed and drained: end the link in order.
            Ok(()) => {
                if let Err(e) = futures::SinkExt::close(tx).await {
                    log::debug!("port {id} ({name}): closing the link: {e}");
                }
            }
            Err(e) => {
                if matches!(e, LinkError::Closed) {
                    log::debug!("port {id} ({name}): link closed while writing");
                } else if let Some(s) = counters.log_limiter().check(Instant::now()) {
                    log::warn!(
                        "port {id} ({name}): write failed: {e}{}",
                        suppressed_note(s)
                    );
                }
                // The sink is finished (never polled again); stop the
                // reader too: the link is unusable.
                broken.store(true, Relaxed);
                self.detach(id);
            }
        }
    }

    /// Removes FDB entries older than the ageing time; returns how many.
    pub fn expire(&self) -> usize {
        self.fabric_mut().switch.expire(Instant::now())
    }

    /// The live forwarding table.
    pub fn fdb(&self) -> Vec<FdbRow> {
        self.fabric().switch.fdb(Instant::now())
    }

    /// Identity and counters of every attached port.
    pub fn ports(&self) -> Vec<PortStats> {
        let fab = self.fabric();
        let mut v: Vec<PortStats> = fab
            .slots
            .iter()
            .map(|(id, s)| PortStats {
                id: *id,
                kind: s.kind,
                name: s.name.clone(),
                counts: s.out.counters.snapshot(),
                peer: s.peer.clone(),
                user: s.user.clone(),
                since: s.since,
                last_rx: s.out.counters.last_rx(),
                offload: s.offload,
                probe: s.probe.clone(),
            })
            .collect();
        v.sort_by_key(|p| p.id);
        v
    }

    /// Frames the switch forwarded or flooded to at least one decision.
    pub fn frames_switched(&self) -> u64 {
        self.inner.switched.load(Relaxed)
    }
}

/// Frames a reader handles before it yields to other tasks.
const READ_BURST: usize = 64;
/// Bytes a reader handles before it yields: with 64 KiB super-frames a
/// burst of [`READ_BURST`] frames would fill a whole default output queue
/// (4 MiB) before the writer on the same thread ran once, and drop the rest.
const READ_BURST_BYTES: usize = 256 * 1024;

/// Returns `Pending` once (waking itself), then `Ready`.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Reads and discards until the link ends or fails.
async fn drain(rx: &mut FrameStream) {
    while let Some(item) = rx.next().await {
        if matches!(item, Err(ref e) if e.is_fatal()) {
            return;
        }
    }
}

/// Token bucket for storm control: `rate` tokens per second, `burst` in
/// the bucket at most.
struct StormBucket {
    rate: u32,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl StormBucket {
    fn new(rate: u32) -> Self {
        let burst = f64::from((rate / 10).clamp(1, STORM_BURST_MAX));
        StormBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The writer's engine: moves frames from the queue into the sink while it
/// is ready, flushes, and polls the sink's flush on every wake-up (the link
/// may have control traffic of its own). Resolves when the queue is closed
/// and drained (`Ok`), or on the sink's first error (after which the sink
/// is never polled again).
struct Pump<'a> {
    queue: Pin<Box<async_channel::Receiver<Frame>>>,
    bound: Arc<QueueBound>,
    tx: &'a mut FrameSink,
    /// Frames taken from the queue (finished in software if need be, and
    /// through the egress filters), waiting for the sink to be ready.
    held: std::collections::VecDeque<Frame>,
    closed: bool,
    takes: Takes,
    max_frame: usize,
    batch: usize,
    egress: &'a dyn FilterChain,
    ctx: FilterContext,
    counters: &'a PortCounters,
}

/// A SYN announcing more than `max` gets `max` (copied: SYNs are few);
/// every other frame goes as it is, untouched and uncopied.
fn clamp_mss(mut frame: Frame, max: u16) -> Frame {
    if !crate::mss::needs_clamp(frame.as_ref(), max) {
        return frame;
    }
    let partial = frame
        .meta
        .vnet
        .is_some_and(|h| h.flags & crate::offload::F_NEEDS_CSUM != 0);
    let mut bytes = frame.bytes().to_vec();
    if crate::mss::clamp(&mut bytes, max, partial) {
        frame.set_bytes(bytes);
    }
    frame
}

/// Which offload metadata a port's link takes as it is (`Link::offload`,
/// `Link::offload_udp`); the writer finishes the rest in software.
#[derive(Clone, Copy, Debug)]
struct Takes {
    offload: bool,
    udp: bool,
    /// TCP SYNs leaving through this link announce at most this MSS
    /// (`Link::mss_clamp`).
    mss: Option<u16>,
}

impl Pump<'_> {
    /// Readies one queued frame for the link: finished in software (a
    /// checksum completed, a super-frame segmented) when the link cannot
    /// take offload metadata or egress filters must see it, then filtered.
    fn take(&mut self, frame: Frame) {
        let Some(vnet) = frame.meta.vnet else {
            return self.filter_and_hold(frame);
        };
        let fits = self.takes.offload
            && (self.takes.udp || !vnet.is_udp_gso())
            && (self.egress.is_empty() || frame.len() <= self.egress.super_frames());
        if fits {
            return self.filter_and_hold(frame);
        }
        if crate::offload::finish(frame, &vnet, |f| self.filter_and_hold(f)).is_err() {
            self.counters.count_drop(DropReason::BadOffload);
        }
    }

    fn filter_and_hold(&mut self, mut frame: Frame) {
        if let Some(max) = self.takes.mss {
            frame = clamp_mss(frame, max);
        }
        if self.egress.is_empty() {
            return self.held.push_back(frame);
        }
        if self.egress.filter(&self.ctx, &mut frame) == Verdict::Drop {
            return self.counters.count_drop(DropReason::EgressFilter);
        }
        // A super-frame a filter took whole must still fit its header.
        if let Some(vnet) = frame.meta.vnet {
            if crate::offload::check(frame.as_ref(), &vnet, self.max_frame).is_err() {
                return self.counters.count_drop(DropReason::EgressFilter);
            }
        }
        self.held.push_back(frame);
    }
}

impl Future for Pump<'_> {
    type Output = Result<(), LinkError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut budget = this.batch;
        while budget > 0 {
            if this.held.is_empty() {
                if this.closed {
                    break;
                }
                match this.queue.as_mut().poll_next(cx) {
                    Poll::Ready(Some(frame)) => {
                        this.bound.release(frame.len());
                        budget -= 1;
                        this.take(frame);
                        continue;
                    }
                    Poll::Ready(None) => {
                        this.closed = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            match this.tx.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(frame) = this.held.pop_front() {
                        let n = frame.len();
                        this.tx.as_mut().start_send(frame)?;
                        this.counters.tx(n);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // The sink wakes us when it can take more.
                Poll::Pending => break,
            }
        }
        if let Poll::Ready(Err(e)) = this.tx.as_mut().poll_flush(cx) {
            return Poll::Ready(Err(e));
        }
        if this.closed && this.held.is_empty() {
            // The close that follows flushes whatever is still buffered.
            return Poll::Ready(Ok(()));
        }
        if budget == 0 {
            // More may be ready: yield to other tasks, then continue.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::PeerInfo;
    use futures::channel::mpsc;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use futures::{Sink, SinkExt};
    use std::sync::Mutex;

    /// An in-memory link: returns the Link plus the far ends.
    fn mem_link(
        name: &str,
    ) -> (
        Link,
        mpsc::UnboundedSender<Result<Frame, LinkError>>,
        mpsc::UnboundedReceiver<Frame>,
    ) {
        let (in_tx, in_rx) = mpsc::unbounded();
        let (out_tx, out_rx) = mpsc::unbounded();
        let link = Link::new(
            Box::pin(in_rx),
            Box::pin(out_tx.sink_map_err(|_| LinkError::Closed)),
            PeerInfo {
                scheme: "mem",
                remote: name.to_string(),
            },
        );
        (link, in_tx, out_rx)
    }

    fn eth(dst: u8, src: u8, len: usize) -> Frame {
        let mut v = vec![0u8; len.max(14)];
        v[0..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        v[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        v[12] = 0x08;
        v.truncate(len);
        Frame::new(v)
    }

    fn spawn_port(sp: &futures::executor::LocalSpawner, p: AttachedPort) -> Arc<PortCounters> {
        let c = p.counters.clone();
        sp.spawn_local(p.reader.map(drop)).unwrap();
        sp.spawn_local(p.writer).unwrap();
        c
    }

    #[test]
    fn frames_cross_and_bad_input_is_counted() {
        let node = Node::new(NodeConfig::for_mtu(1500));
        let mut pool = LocalPool::new();
        let sp = pool.spawner();
        let (l1, in1, mut out1) = mem_link("a");
        let (l2, in2, mut out2) = mem_link("b");
        let c1 = spawn_port(&sp, node.attach(l1, PortKind::Link, PortConfig::default()));
        spawn_port(&sp, node.attach(l2, PortKind::Link, PortConfig::default()));
        in1.unbounded_send(Ok(eth(0xb, 0xa, 60))).unwrap();
        in1.unbounded_send(Ok(eth(0xb, 0xa, 5))).unwrap();
        in1.unbounded_send(Ok(eth(0xb, 0xa, 3000))).unwrap();
        in1.unbounded_send(Err(LinkError::Oversize(70000))).unwrap();
        in1.unbounded_send(Err(LinkError::NotAFrame("text message")))
            .unwrap();
        in2.unbounded_send(Ok(eth(0xa, 0xb, 100))).unwrap();
        pool.run_until_stalled();
        assert_eq!(out2.try_recv().unwrap().len(), 60);
        assert_eq!(out1.try_recv().unwrap().len(), 100);
        let c = c1.snapshot();
        assert_eq!(c.rx_frames, 4);
        assert_eq!(c.tx_frames, 1);
        assert_eq!(c.drops(DropReason::Runt), 1);
        assert_eq!(c.drops(DropReason::Oversize), 2);
        assert_eq!(c.drops(DropReason::NotAFrame), 1);
        assert_eq!(node.fdb().len(), 2);
        assert_eq!(node.frames_switched(), 2);
        assert_eq!(node.take_fdb_summary().learned, 2);
        // Peer a goes away: its port is detached and its MAC flushed.
        drop(in1);
        pool.run_until_stalled();
        assert_eq!(node.ports().len(), 1);
        assert_eq!(node.fdb().len(), 1);
        assert_eq!(node.live_ports(), 1);
    }

    #[test]
    fn full_queue_drops_by_frames_and_by_bytes() {
        let mut cfg = NodeConfig::for_mtu(1500);
        cfg.queue_len = 4;
        cfg.queue_bytes = 250;
        let node = Node::new(cfg);
        let mut pool = LocalPool::new();
        let sp = pool.spawner();
        let (l1, in1, _out1) = mem_link("fast");
        let (l2, _in2, _out2) = mem_link("slow");
        let p1 = node.attach(l1, PortKind::Link, PortConfig::default());
        let p2 = node.attach(l2, PortKind::Link, PortConfig::default());
        let c2 = p2.counters.clone();
        sp.spawn_local(p1.reader.map(drop)).unwrap();
        // p2's writer exists but is never run: its queue fills up.
        let _stalled_writer = p2.writer;
        for _ in 0..10 {
            in1.unbounded_send(Ok(eth(0xff, 0xa, 60))).unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(c2.snapshot().drops(DropReason::QueueFull), 6, "frame bound");
        // A byte bound: 100-byte frames, 250 bytes: two fit, then a third
        // would pass it (the queue now holds 4 × 60 = 240 bytes: none fit).
        let (l3, _in3, _out3) = mem_link("slow2");
        let p3 = node.attach(l3, PortKind::Link, PortConfig::default());
        let c3 = p3.counters.clone();
        let _w3 = p3.writer;
        for _ in 0..3 {
            in1.unbounded_send(Ok(eth(0xff, 0xa, 100))).unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(c3.snapshot().drops(DropReason::QueueFull), 1, "byte bound");
    }

    /// A node whose ports queue 4 frames, and a pool to run it on.
    fn node_of_small_queues() -> (Node, LocalPool) {
        let mut cfg = NodeConfig::for_mtu(1500);
        cfg.queue_len = 4;
        (Node::new(cfg), LocalPool::new())
    }

    /// A TCP super-frame (two segments' worth) for station 02:..:`dst`.
    fn super_frame_to(dst: u8) -> Result<Frame, LinkError> {
        let (mut f, h) = crate::offload::tests::tcp4_super(&[7; 3000], false, 1448);
        f[5] = dst;
        Ok(Frame::with_vnet(f, Some(h)))
    }

    #[test]
    fn a_super_frame_waits_for_a_draining_port_but_not_for_a_stuck_one() {
        let (node, mut pool) = node_of_small_queues();
        let sp = pool.spawner();
        let (la, in_a, _out_a) = mem_link("a");
        let (mut lb, in_b, mut out_b) = mem_link("b");
        let (mut lc, in_c, _out_c) = mem_link("c");
        lb.offload = true;
        lc.offload = true;
        spawn_port(&sp, node.attach(la, PortKind::Link, PortConfig::default()));
        let pb = node.attach(lb, PortKind::Link, PortConfig::default());
        let pc = node.attach(lc, PortKind::Link, PortConfig::default());
        let (cb, cc) = (pb.counters.clone(), pc.counters.clone());
        sp.spawn_local(pb.reader.map(drop)).unwrap();
        sp.spawn_local(pc.reader.map(drop)).unwrap();
        let (writer_b, _writer_c) = (pb.writer, pc.writer);
        // B is 02:..:02 and C 02:..:03; neither writer runs yet.
        in_b.unbounded_send(Ok(eth(0x1, 0x2, 60))).unwrap();
        in_c.unbounded_send(Ok(eth(0x1, 0x3, 60))).unwrap();
        pool.run_until_stalled();
        let to = super_frame_to;
        // Ten super-frames for B: four fit its queue, the fifth waits.
        for _ in 0..10 {
            in_a.unbounded_send(to(2)).unwrap();
        }
        pool.run_until_stalled();
        // B drains: every one arrives, none dropped.
        sp.spawn_local(writer_b).unwrap();
        pool.run_until_stalled();
        // (C's first frame was flooded to B as well.)
        let got = std::iter::from_fn(|| out_b.try_recv().ok());
        assert_eq!(got.filter(|f| f.len() > 1522).count(), 10);
        assert_eq!(cb.snapshot().drops(DropReason::QueueFull), 0);
        // C never drains: after ROOM_WAIT it is stuck and loses the rest
        // at once, and A's frames for B flow again.
        for _ in 0..10 {
            in_a.unbounded_send(to(3)).unwrap();
        }
        pool.run_until(async_io::Timer::after(10 * ROOM_WAIT));
        // (B's first frame, flooded, holds one of C's four places.)
        assert_eq!(cc.snapshot().drops(DropReason::QueueFull), 7);
        in_a.unbounded_send(to(2)).unwrap();
        pool.run_until_stalled();
        assert_eq!(std::iter::from_fn(|| out_b.try_recv().ok()).count(), 1);
    }

    #[test]
    fn the_only_port_a_source_feeds_is_waited_for_past_the_shared_patience() {
        let (node, mut pool) = node_of_small_queues();
        let sp = pool.spawner();
        let (la, in_a, _out_a) = mem_link("a");
        let (mut lb, in_b, mut out_b) = mem_link("b");
        lb.offload = true;
        spawn_port(&sp, node.attach(la, PortKind::Link, PortConfig::default()));
        let pb = node.attach(lb, PortKind::Link, PortConfig::default());
        let cb = pb.counters.clone();
        sp.spawn_local(pb.reader.map(drop)).unwrap();
        let writer_b = pb.writer;
        // B is 02:..:02; its writer does not run yet.
        in_b.unbounded_send(Ok(eth(0x1, 0x2, 60))).unwrap();
        pool.run_until_stalled();
        for _ in 0..10 {
            in_a.unbounded_send(super_frame_to(2)).unwrap();
        }
        // Ten times the patience a port beside others gets: B, the only
        // port A can feed, is not given up on...
        pool.run_until(async_io::Timer::after(10 * ROOM_WAIT));
        assert_eq!(cb.snapshot().drops(DropReason::QueueFull), 0);
        // ...and when it drains, every frame arrives.
        sp.spawn_local(writer_b).unwrap();
        pool.run_until_stalled();
        let got = std::iter::from_fn(|| out_b.try_recv().ok());
        assert_eq!(got.filter(|f| f.len() > 1522).count(), 10);
        assert_eq!(cb.snapshot().drops(DropReason::QueueFull), 0);
    }

    #[test]
    fn udp_super_frames_are_cut_for_a_link_without_uso_only() {
        let node = Node::new(NodeConfig::for_mtu(1500));
        let mut pool = LocalPool::new();
        let sp = pool.spawner();
        let (la, in_a, _out_a) = mem_link("a");
        let (mut lb, in_b, mut out_b) = mem_link("tcp-only");
        let (mut lc, in_c, mut out_c) = mem_link("uso");
        lb.offload = true;
        (lc.offload, lc.offload_udp) = (true, true);
        spawn_port(&sp, node.attach(la, PortKind::Link, PortConfig::default()));
        spawn_port(&sp, node.attach(lb, PortKind::Link, PortConfig::default()));
        spawn_port(&sp, node.attach(lc, PortKind::Link, PortConfig::default()));
        in_b.unbounded_send(Ok(eth(0x1, 0x2, 60))).unwrap();
        in_c.unbounded_send(Ok(eth(0x1, 0x3, 60))).unwrap();
        pool.run_until_stalled();
        let payload = [5u8; 5000];
        let (f, h) = crate::offload::tests::v6_super(&payload, 17, 1200);
        for dst in [2, 3] {
            let mut v = f.clone();
            v[5] = dst;
            in_a.unbounded_send(Ok(Frame::with_vnet(v, Some(h))))
                .unwrap();
        }
        pool.run_until_stalled();
        let big = |out: &mut mpsc::UnboundedReceiver<Frame>| {
            std::iter::from_fn(|| out.try_recv().ok())
                .filter(|f| f.len() > 60)
                .map(|f| (f.len(), f.meta.vnet.is_some()))
                .collect::<Vec<_>>()
        };
        let b = big(&mut out_b);
        assert_eq!(b.len(), 5, "cut into 1200-byte segments: {b:?}");
        assert!(b.iter().all(|&(len, meta)| len <= 1522 && !meta));
        assert_eq!(big(&mut out_c), vec![(f.len(), true)], "whole");
    }

    #[test]
    fn storm_limit_drops_floods_but_not_known_unicast() {
        let mut cfg = NodeConfig::for_mtu(1500);
        cfg.storm_limit = 50;
        let node = Node::new(cfg);
        let mut pool = LocalPool::new();
        let sp = pool.spawner();
        let (l1, in1, _o1) = mem_link("a");
        let (l2, in2, mut out2) = mem_link("b");
        let c1 = spawn_port(&sp, node.attach(l1, PortKind::Link, PortConfig::default()));
        spawn_port(&sp, node.attach(l2, PortKind::Link, PortConfig::default()));
        in2.unbounded_send(Ok(eth(0xff, 0xb, 60))).unwrap(); // b learned
        pool.run_until_stalled();
        for _ in 0..20 {
            let mut f = eth(0, 0xa, 60).into_bytes().to_vec();
            f[..6].copy_from_slice(&[0xff; 6]);
            in1.unbounded_send(Ok(Frame::new(f))).unwrap();
        }
        for _ in 0..20 {
            in1.unbounded_send(Ok(eth(0xb, 0xa, 60))).unwrap();
        }
        pool.run_until_stalled();
        // The burst is 5 (a tenth of a second at 50/s); refill during the
        // test adds a token per 20 ms.
        let storm = c1.snapshot().drops(DropReason::Storm);
        assert!((5..=15).contains(&storm), "{storm}");
        let mut got = 0;
        while out2.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 40 - storm, "every known unicast frame passes");
    }

    #[test]
    fn storm_bucket_refills_at_its_rate() {
        let t = Instant::now();
        let mut b = StormBucket::new(20); // burst 2
        assert!(b.take(t) && b.take(t) && !b.take(t));
        assert!(!b.take(t + Duration::from_millis(40)));
        assert!(b.take(t + Duration::from_millis(60)));
        assert!(b.take(t + Duration::from_secs(10)) && b.take(t + Duration::from_secs(10)));
        assert!(!b.take(t + Duration::from_secs(10)), "burst capped");
        assert_eq!(StormBucket::new(10_000).burst, 256.0);
        assert_eq!(StormBucket::new(3).burst, 1.0);
        let mut off = StormBucket::new(0);
        assert!((0..1000).all(|_| off.take(t)));
    }

    /// A sink that fails once, then panics if polled again (the behaviour
    /// of `sink_map_err` after completion that once killed a client).
    struct FailOnce {
        failed: bool,
    }

    impl Sink<Frame> for FailOnce {
        type Error = LinkError;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), LinkError>> {
            assert!(!self.failed, "sink polled after its error");
            self.failed = true;
            Poll::Ready(Err(LinkError::Io(std::io::Error::other(
                "connection reset",
            ))))
        }
        fn start_send(self: Pin<&mut Self>, _: Frame) -> Result<(), LinkError> {
            unreachable!()
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
            assert!(!self.failed, "sink polled after its error");
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
            assert!(!self.failed, "sink closed after its error");
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_failed_sink_is_never_polled_again_and_ends_only_its_port() {
        let node = Node::new(NodeConfig::for_mtu(1500));
        let mut pool = LocalPool::new();
        let sp = pool.spawner();
        let (in_tx, in_rx) = mpsc::unbounded::<Result<Frame, LinkError>>();
        let bad = Link::new(
            Box::pin(in_rx),
            Box::pin(FailOnce { failed: false }),
            PeerInfo {
                scheme: "mem",
                remote: "bad".into(),
            },
        );
        let (l2, in2, _o2) = mem_link("good");
        let p = node.attach(bad, PortKind::Link, PortConfig::default());
        let (reader, writer) = (p.reader, p.writer);
        let end = Arc::new(Mutex::new(None));
        let e2 = end.clone();
        sp.spawn_local(async move { *e2.lock().unwrap() = Some(reader.await) })
            .unwrap();
        let writer_done = Arc::new(AtomicBool::new(false));
        let wd = writer_done.clone();
        sp.spawn_local(async move {
            writer.await;
            wd.store(true, Relaxed);
        })
        .unwrap();
        spawn_port(&sp, node.attach(l2, PortKind::Link, PortConfig::default()));
        in2.unbounded_send(Ok(eth(0xff, 0xb, 60))).unwrap();
        pool.run_until_stalled();
        assert!(writer_done.load(Relaxed), "writer ended after the error");
        // The reader was stopped and drains until its link ends.
        drop(in_tx);
        pool.run_until_stalled();
        assert!(matches!(*end.lock().unwrap(), Some(PortEnd::Detached)));
        assert_eq!(node.ports().len(), 1, "the good port stays");
    }

    #[test]
    fn a_panicking_filter_ends_only_its_port() {
        struct Boom;
        impl FilterChain for Boom {
            fn is_empty(&self) -> bool {
                false
            }
            fn filter(&self, ctx: &FilterContext, _: &mut Frame) -> Verdict {
                if ctx.port == PortId(1) {
                    panic!("boom");
                }
                Verdict::Pass
            }
        }
        let node = Node::with_filters(
            NodeConfig::for_mtu(1500),
            Arc::new(Boom),
            Arc::new(NoFilter),
        );
        let mut pool = LocalPool::new();
        let sp = pool.spawner();
        let (mut l1, in1, _o1) = mem_link("a");
        let (l2, in2, _o2) = mem_link("b");
        let (l3, _in3, mut out3) = mem_link("c");
        let told = Arc::new(Mutex::new(Vec::new()));
        let t2 = told.clone();
        l1.on_close = Some(Arc::new(move |r| t2.lock().unwrap().push(r)));
        let p1 = node.attach(l1, PortKind::Link, PortConfig::default());
        let end = Arc::new(Mutex::new(None));
        let e2 = end.clone();
        let r1 = p1.reader;
        sp.spawn_local(async move { *e2.lock().unwrap() = Some(r1.await) })
            .unwrap();
        sp.spawn_local(p1.writer).unwrap();
        spawn_port(&sp, node.attach(l2, PortKind::Link, PortConfig::default()));
        spawn_port(&sp, node.attach(l3, PortKind::Link, PortConfig::default()));
        in1.unbounded_send(Ok(eth(0xff, 0xa, 60))).unwrap();
        pool.run_until_stalled();
        assert!(matches!(*end.lock().unwrap(), Some(PortEnd::Panicked(ref m)) if m == "boom"));
        assert_eq!(
            *told.lock().unwrap(),
            [CloseReason::InternalError],
            "the link was told why"
        );
        in2.unbounded_send(Ok(eth(0xff, 0xb, 60))).unwrap();
        pool.run_until_stalled();
        assert!(out3.try_recv().is_ok(), "the other ports still switch");
        assert_eq!(node.ports().len(), 2);
    }

    #[test]
    fn detach_all_closes_links_after_the_queue() {
        let node = Node::new(NodeConfig::for_mtu(1500));
        // Readers and writers on separate pools, to stop between them.
        let mut readers = LocalPool::new();
        let mut writers = LocalPool::new();
        let (l1, in1, _o1) = mem_link("a");
        let (l2, in2, mut out2) = mem_link("b");
        for l in [l1, l2] {
            let p = node.attach(l, PortKind::Link, PortConfig::default());
            readers.spawner().spawn_local(p.reader.map(drop)).unwrap();
            writers.spawner().spawn_local(p.writer).unwrap();
        }
        in1.unbounded_send(Ok(eth(0xff, 0xa, 60))).unwrap();
        readers.run_until_stalled();
        node.detach_all();
        writers.run_until_stalled();
        // The queued frame went out, then the close ended the channel.
        assert_eq!(out2.try_recv().map(|f| f.len()), Ok(60));
        assert!(out2.try_recv().is_err(), "nothing after the close");
        assert_eq!(node.ports().len(), 0);
        // Readers drain until their peers end the links.
        readers.run_until_stalled();
        assert_eq!(node.live_ports(), 2);
        drop((in1, in2));
        readers.run_until_stalled();
        assert_eq!(node.live_ports(), 0);
    }
}
