//! The port runtime: attaches links (TAP devices, transport links) to a
//! shared switch and moves frames between them.
//!
//! Each port gets a reader future (link → ingress filters → switch → output
//! queues) and a writer future (queue → egress filters → link). Queues are
//! bounded; a full queue drops and counts, so a slow peer loses its own
//! frames instead of stalling everyone. The writer feeds every frame that is
//! ready and flushes once. The caller spawns the futures on its runtime:
//! core never picks one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::future::{self, BoxFuture, Either};
use futures::{FutureExt, SinkExt, StreamExt};

use crate::filter::{Direction, FilterChain, FilterContext, NoFilter, PortKind, Verdict};
use crate::frame::Frame;
use crate::stats::{DropReason, PortCounters, PortStats};
use crate::switch::{
    Decision, FdbRow, Learned, PortConfig, PortId, Switch, SwitchConfig, SwitchDrop,
};
use crate::transport::{Link, LinkError};
use crate::wire::{self, EthernetFrame};

/// Default per-port output queue length, in frames.
pub const DEFAULT_QUEUE_LEN: usize = 1024;

/// Node-wide settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub switch: SwitchConfig,
    /// Output queue length per port, in frames.
    pub queue_len: usize,
    /// Largest frame accepted from any port (MTU + [`wire::MAX_OVERHEAD`]).
    pub max_frame: usize,
}

impl NodeConfig {
    /// A config whose frame limit fits `mtu` plus header and two VLAN tags.
    pub fn for_mtu(mtu: usize) -> Self {
        NodeConfig {
            switch: SwitchConfig::default(),
            queue_len: DEFAULT_QUEUE_LEN,
            max_frame: mtu + wire::MAX_OVERHEAD,
        }
    }
}

struct Slot {
    kind: PortKind,
    name: String,
    queue: async_channel::Sender<Frame>,
    counters: Arc<PortCounters>,
    /// Dropping this stops the port's reader.
    _stop: async_channel::Sender<()>,
}

struct Fabric {
    switch: Switch,
    slots: HashMap<PortId, Slot>,
}

struct Inner {
    cfg: NodeConfig,
    fabric: Mutex<Fabric>,
    ingress: Arc<dyn FilterChain>,
    egress: Arc<dyn FilterChain>,
    switched: AtomicU64,
    /// Writer futures not yet finished (for a clean shutdown).
    writers: AtomicUsize,
    /// Set by [`Node::detach_all`]: ports attached afterwards start detached.
    closing: AtomicBool,
    /// Rate limit for "FDB full" warnings.
    fdb_full_log: crate::stats::LogLimiter,
}

/// Decrements the live-writer count when a writer future ends or is
/// dropped (cancelled) without finishing.
struct WriterGuard(Arc<Inner>);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.writers.fetch_sub(1, Relaxed);
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
}

/// A port just attached: its id and the two futures that run it.
pub struct AttachedPort {
    pub id: PortId,
    pub counters: Arc<PortCounters>,
    /// Reads the link until it ends, then detaches the port.
    pub reader: BoxFuture<'static, PortEnd>,
    /// Writes switched frames to the link until the port is detached.
    pub writer: BoxFuture<'static, ()>,
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
                fabric: Mutex::new(Fabric {
                    switch: Switch::new(cfg.switch.clone()),
                    slots: HashMap::new(),
                }),
                cfg,
                ingress,
                egress,
                switched: AtomicU64::new(0),
                writers: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
                fdb_full_log: Default::default(),
            }),
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    fn fabric(&self) -> MutexGuard<'_, Fabric> {
        // A panic while holding the lock cannot leave the switch in a state
        // worse than "some counters off", so keep serving.
        self.inner.fabric.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches `link` as a new port. Spawn both returned futures.
    pub fn attach(&self, link: Link, kind: PortKind, cfg: PortConfig) -> AttachedPort {
        let (qtx, qrx) = async_channel::bounded(self.inner.cfg.queue_len.max(1));
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let counters = Arc::new(PortCounters::default());
        let name = link.peer.to_string();
        let id = {
            let mut fab = self.fabric();
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
                        queue: qtx,
                        counters: counters.clone(),
                        _stop: stop_tx,
                    },
                );
            }
            id
        };
        log::info!("port {id} attached: {} {name}", kind.as_str());
        let Link { rx, tx, .. } = link;
        let reader = {
            let node = self.clone();
            let counters = counters.clone();
            let name = name.clone();
            async move {
                let read = node.read_loop(id, kind, rx, &counters).boxed();
                let stop = stop_rx.recv().map(|_| PortEnd::Detached).boxed();
                let end = match future::select(read, stop).await {
                    Either::Left((end, _)) | Either::Right((end, _)) => end,
                };
                node.detach(id);
                match &end {
                    PortEnd::Failed(e) => log::warn!("port {id} ({name}) failed: {e}"),
                    PortEnd::Closed => log::info!("port {id} ({name}) closed by peer"),
                    PortEnd::Detached => log::info!("port {id} ({name}) detached"),
                }
                log::info!("port {id} final counters: {}", counters.snapshot());
                end
            }
            .boxed()
        };
        self.inner.writers.fetch_add(1, Relaxed);
        let guard = WriterGuard(self.inner.clone());
        let writer = {
            let node = self.clone();
            let counters = counters.clone();
            async move {
                let _guard = guard;
                node.write_loop(id, kind, name, qrx, tx, &counters).await
            }
            .boxed()
        };
        AttachedPort {
            id,
            counters,
            reader,
            writer,
        }
    }

    /// Detaches a port: flushes its FDB entries, stops its reader, and lets
    /// its writer finish what is queued. Idempotent.
    pub fn detach(&self, id: PortId) -> bool {
        let mut fab = self.fabric();
        fab.switch.remove_port(id);
        fab.slots.remove(&id).is_some()
    }

    /// Detaches every port (shutdown). Writers send what is queued, close
    /// their links cleanly (a WebSocket Close frame), and finish; wait for
    /// [`Node::live_writers`] to reach zero before exiting.
    pub fn detach_all(&self) {
        self.inner.closing.store(true, Relaxed);
        let mut fab = self.fabric();
        let ids: Vec<PortId> = fab.slots.keys().copied().collect();
        for id in ids {
            fab.switch.remove_port(id);
            fab.slots.remove(&id);
        }
    }

    /// Writer futures that have not finished yet (spawned writers finish
    /// soon after their port is detached).
    pub fn live_writers(&self) -> usize {
        self.inner.writers.load(Relaxed)
    }

    async fn read_loop(
        &self,
        id: PortId,
        kind: PortKind,
        mut rx: crate::transport::FrameStream,
        counters: &PortCounters,
    ) -> PortEnd {
        let ctx = FilterContext {
            direction: Direction::Ingress,
            port: id,
            port_kind: kind,
        };
        while let Some(item) = rx.next().await {
            match item {
                Ok(frame) => {
                    counters.rx(frame.len());
                    self.ingress(&ctx, frame, counters);
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
            log::warn!(
                "port {id}: dropped frame ({reason}): {detail}; total {}{}",
                counters.drops(reason),
                if suppressed > 0 {
                    format!(" ({suppressed} similar lines suppressed)")
                } else {
                    String::new()
                }
            );
        }
    }

    /// The per-frame ingress path: validate, filter, switch, enqueue.
    fn ingress(&self, ctx: &FilterContext, mut frame: Frame, counters: &PortCounters) {
        let len = frame.len();
        if len > self.inner.cfg.max_frame {
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
            if frame.len() < wire::HEADER_LEN || frame.len() > self.inner.cfg.max_frame {
                counters.count_drop(DropReason::IngressFilter);
                return;
            }
        }
        let Ok(view) = EthernetFrame::new_checked(frame.bytes().as_ref()) else {
            counters.count_drop(DropReason::IngressFilter);
            return;
        };
        let now = Instant::now();
        let mut fab = self.fabric();
        let Fabric { switch, slots } = &mut *fab;
        let outcome = switch.handle_frame(now, ctx.port, &view);
        let learned = outcome.learned;
        match outcome.decision {
            Decision::Forward(p) => {
                self.inner.switched.fetch_add(1, Relaxed);
                enqueue(slots, p, frame);
            }
            Decision::Flood(ports) => {
                self.inner.switched.fetch_add(1, Relaxed);
                for p in ports {
                    enqueue(slots, p, frame.clone());
                }
            }
            Decision::Drop(SwitchDrop::VlanNotAllowed) => {
                counters.count_drop(DropReason::VlanNotAllowed)
            }
            Decision::Drop(_) => {}
        }
        drop(fab);
        // Log after unlocking: log I/O must not hold up other ports.
        if let Some(l) = learned {
            self.log_learned(l);
        }
    }

    fn log_learned(&self, l: Learned) {
        match l {
            Learned::New { vlan, mac, port } => {
                log::info!("fdb: learned {mac} vlan {vlan} on port {port}")
            }
            Learned::Moved {
                vlan,
                mac,
                from,
                to,
            } => {
                log::info!("fdb: {mac} vlan {vlan} moved from port {from} to port {to}")
            }
            Learned::TableFull { vlan, mac, port } => {
                if let Some(suppressed) = self.inner.fdb_full_log.check(Instant::now()) {
                    log::warn!(
                        "fdb: table full ({} entries), not learning {mac} vlan {vlan} on port {port} \
                         (its frames are flooded){}",
                        self.inner.cfg.switch.max_entries,
                        if suppressed > 0 { format!("; {suppressed} similar lines suppressed") } else { String::new() }
                    );
                }
            }
        }
    }

    async fn write_loop(
        &self,
        id: PortId,
        kind: PortKind,
        name: String,
        queue: async_channel::Receiver<Frame>,
        mut tx: crate::transport::FrameSink,
        counters: &PortCounters,
    ) {
        let ctx = FilterContext {
            direction: Direction::Egress,
            port: id,
            port_kind: kind,
        };
        let batch_max = self.inner.cfg.queue_len.max(1);
        let egress = &self.inner.egress;
        let result: Result<(), LinkError> = async {
            while let Ok(first) = queue.recv().await {
                let mut next = Some(first);
                let mut fed = 0;
                while let Some(mut frame) = next.take() {
                    if egress.is_empty() || egress.filter(&ctx, &mut frame) == Verdict::Pass {
                        let n = frame.len();
                        tx.feed(frame).await?;
                        counters.tx(n);
                    } else {
                        counters.count_drop(DropReason::EgressFilter);
                    }
                    fed += 1;
                    if fed < batch_max {
                        next = queue.try_recv().ok();
                    }
                }
                tx.flush().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if matches!(e, LinkError::Closed) {
                log::debug!("port {id} ({name}): link closed while writing");
            } else {
                log::warn!("port {id} ({name}): write failed: {e}");
            }
            // Stop the reader too: the link is unusable.
            self.detach(id);
        }
        let _ = tx.close().await;
    }

    /// Removes FDB entries older than the ageing time; returns how many.
    pub fn expire(&self) -> usize {
        self.fabric().switch.expire(Instant::now())
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
                counts: s.counters.snapshot(),
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

fn enqueue(slots: &HashMap<PortId, Slot>, port: PortId, frame: Frame) {
    let Some(slot) = slots.get(&port) else { return };
    if let Err(async_channel::TrySendError::Full(_)) = slot.queue.try_send(frame) {
        slot.counters.count_drop(DropReason::QueueFull);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::PeerInfo;
    use futures::channel::mpsc;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;

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
        let link = Link {
            rx: Box::pin(in_rx),
            tx: Box::pin(out_tx.sink_map_err(|_| LinkError::Closed)),
            peer: PeerInfo {
                scheme: "mem",
                remote: name.to_string(),
            },
        };
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

    #[test]
    fn frames_cross_and_bad_input_is_counted() {
        let node = Node::new(NodeConfig::for_mtu(1500));
        let mut pool = LocalPool::new();
        let sp = pool.spawner();
        let (l1, in1, mut out1) = mem_link("a");
        let (l2, in2, mut out2) = mem_link("b");
        let p1 = node.attach(l1, PortKind::Link, PortConfig::default());
        let p2 = node.attach(l2, PortKind::Link, PortConfig::default());
        let c1 = p1.counters.clone();
        for f in [
            p1.reader.map(drop).boxed(),
            p1.writer,
            p2.reader.map(drop).boxed(),
            p2.writer,
        ] {
            sp.spawn_local(f).unwrap();
        }
        in1.unbounded_send(Ok(eth(0xb, 0xa, 60))).unwrap();
        in1.unbounded_send(Ok(eth(0xb, 0xa, 5))).unwrap();
        in1.unbounded_send(Ok(eth(0xb, 0xa, 3000))).unwrap();
        in1.unbounded_send(Err(LinkError::NotAFrame("text message")))
            .unwrap();
        in2.unbounded_send(Ok(eth(0xa, 0xb, 100))).unwrap();
        pool.run_until_stalled();
        assert_eq!(out2.try_recv().unwrap().len(), 60);
        assert_eq!(out1.try_recv().unwrap().len(), 100);
        let c = c1.snapshot();
        assert_eq!(c.rx_frames, 3);
        assert_eq!(c.tx_frames, 1);
        assert_eq!(c.drops(DropReason::Runt), 1);
        assert_eq!(c.drops(DropReason::Oversize), 1);
        assert_eq!(c.drops(DropReason::NotAFrame), 1);
        assert_eq!(node.fdb().len(), 2);
        assert_eq!(node.frames_switched(), 2);
        // Peer a goes away: its port is detached and its MAC flushed.
        drop(in1);
        pool.run_until_stalled();
        assert_eq!(node.ports().len(), 1);
        assert_eq!(node.fdb().len(), 1);
    }

    #[test]
    fn full_queue_drops_instead_of_blocking() {
        let mut cfg = NodeConfig::for_mtu(1500);
        cfg.queue_len = 4;
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
        assert_eq!(c2.snapshot().drops(DropReason::QueueFull), 6);
    }
}
