//! A node: a switch with ports. It owns the fabric (the switch and the
//! ports it switches between, under one lock), the filter chains and the
//! node-wide counters, attaches links as ports and answers what the
//! report, the control socket and the metrics ask. Per-frame decisions are
//! the datapath's (`crate::datapath`); the futures that run a port are the
//! port runtime's (`crate::port`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::datapath::{route, Fabric};
use crate::filter::{FilterChain, NoFilter};
use crate::log::LogLimiter;
use crate::port::queue::{Output, QueueBound};
use crate::port::{AttachedPort, LiveGuard, Wiring};
use crate::stats::{PortCounters, PortStats};
use crate::switch::{FdbRow, PortConfig, PortId, PortKind, Switch, SwitchConfig};
use crate::transport::{Link, LinkProbe, PeerInfo};
use crate::wire;

/// Default per-port output queue length, in frames.
pub const DEFAULT_QUEUE_LEN: usize = 1024;
/// Default per-port output queue size, in frame bytes.
pub const DEFAULT_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Default storm limit: flooded frames per second accepted from one port.
pub const DEFAULT_STORM_LIMIT: u32 = 10_000;
pub use crate::datapath::storm::STORM_BURST_MAX;

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

/// What the node keeps per port beside the switch's entry.
pub(crate) struct Slot {
    kind: PortKind,
    pub(crate) name: String,
    peer: PeerInfo,
    user: Option<String>,
    since: std::time::SystemTime,
    offload: bool,
    probe: Option<Arc<dyn LinkProbe>>,
    pub(crate) out: Arc<Output>,
    /// Dropping this stops the port's reader.
    _stop: async_channel::Sender<()>,
}

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

pub(crate) struct Inner {
    pub(crate) cfg: NodeConfig,
    pub(crate) fabric: RwLock<Fabric<Slot>>,
    pub(crate) ingress: Arc<dyn FilterChain>,
    pub(crate) egress: Arc<dyn FilterChain>,
    pub(crate) switched: AtomicU64,
    /// Ports whose reader or writer future has not ended yet.
    pub(crate) live: AtomicUsize,
    /// Set by [`Node::detach_all`]: ports attached afterwards start detached.
    closing: AtomicBool,
    pub(crate) learned: AtomicU64,
    pub(crate) moved: AtomicU64,
    pub(crate) not_learned: AtomicU64,
    pub(crate) moves_refused: AtomicU64,
    /// Per-station learn/move lines (debug level).
    pub(crate) learn_log: LogLimiter,
    /// "Table full" warnings.
    pub(crate) fdb_full_log: LogLimiter,
    /// Port attach/end lines: a peer that reconnects in a loop must not
    /// flood the log.
    pub(crate) link_log: LogLimiter,
}

/// A switch with ports. Cheap to clone (shared).
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
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
                fabric: RwLock::new(Fabric::new(Switch::new(cfg.switch.clone()))),
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

    fn fabric(&self) -> RwLockReadGuard<'_, Fabric<Slot>> {
        route::read(&self.inner.fabric)
    }

    fn fabric_mut(&self) -> RwLockWriteGuard<'_, Fabric<Slot>> {
        route::write(&self.inner.fabric)
    }

    /// Attaches `link` as a new port. Spawn the returned reader and writer
    /// (and bound them once `detached` resolves).
    pub fn attach(&self, link: Link, kind: PortKind, mut cfg: PortConfig) -> AttachedPort {
        if kind == PortKind::Link && cfg.max_macs.is_none() {
            cfg.max_macs = self.inner.cfg.max_macs_per_link;
        }
        let (qtx, qrx) = async_channel::unbounded();
        let bound = Arc::new(QueueBound::new(
            self.inner.cfg.queue_len,
            self.inner.cfg.queue_bytes,
        ));
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
                let out = Arc::new(Output {
                    queue: qtx,
                    bound: bound.clone(),
                    counters: counters.clone(),
                });
                let slot = Slot {
                    kind,
                    name: name.clone(),
                    peer: link.peer.clone(),
                    user: link.user.clone(),
                    since: std::time::SystemTime::now(),
                    offload: link.offload,
                    probe: link.probe.clone(),
                    out,
                    _stop: stop_tx,
                };
                fab.slots.insert(id, slot);
            }
            id
        };
        self.inner.live.fetch_add(1, Relaxed);
        let carries = if link.offload {
            " (offload: super-frames cross whole)"
        } else {
            ""
        };
        self.link_line(
            log::Level::Info,
            format_args!("port {id} attached: {} {name}{carries}", kind.as_str()),
        );
        let wiring = Wiring {
            id,
            kind,
            name,
            counters,
            queue: qrx,
            bound,
            stop: stop_rx,
            live: LiveGuard(self.clone()),
        };
        crate::port::run(self, link, wiring)
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

    /// Detaches every port so links close cleanly (WebSocket Close
    /// frames), then waits for every port to finish, at most
    /// [`crate::port::PORT_GRACE`] and a little.
    pub async fn shutdown(&self) {
        self.detach_all();
        let deadline = Instant::now() + crate::port::PORT_GRACE + Duration::from_millis(500);
        while self.live_ports() > 0 && Instant::now() < deadline {
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
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

    /// Frames the switch forwarded or flooded to at least one port.
    pub fn frames_switched(&self) -> u64 {
        self.inner.switched.load(Relaxed)
    }
}
