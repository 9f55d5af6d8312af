//! The port runtime driven through a node, on an executor, with in-memory
//! links: what needs tasks (queues draining, waits for room, failing sinks,
//! panics, shutdown). The decisions alone are tested in `crate::datapath`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;

use crate::datapath::Patience;
use crate::filter::{FilterChain, FilterContext, NoFilter, PortKind, Verdict};
use crate::frame::Frame;
use crate::node::{Node, NodeConfig};
use crate::port::{AttachedPort, PortEnd};
use crate::stats::{DropReason, PortCounters};
use crate::switch::{PortConfig, PortId};
use crate::transport::PeerInfo;
use crate::transport::{CloseReason, Link, LinkError};
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
    pool.run_until(async_io::Timer::after(10 * Patience::SHARED.stuck_after));
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
    pool.run_until(async_io::Timer::after(10 * Patience::SHARED.stuck_after));
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

/// A sink that fails once, then panics if polled again (the behaviour
/// of `sink_map_err` after completion that once killed a client).
struct FailOnce {
    failed: bool,
}

impl Sink<Frame> for FailOnce {
    type Error = LinkError;
    fn poll_ready(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
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
