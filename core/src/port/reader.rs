//! A port's reader: link → the datapath's ingress and route stages →
//! other ports' queues. The decisions are the datapath's; this only moves
//! frames, waits for room, and yields now and then.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::StreamExt;

use super::queue::Output;
use super::PortEnd;
use crate::datapath::{route, Ingress, Patience, Placement, Ready, Refusal, Route, StormBucket};
use crate::filter::{Direction, FilterContext};
use crate::frame::Frame;
use crate::node::Node;
use crate::stats::{DropReason, PortCounters};
use crate::switch::{PortId, PortKind};
use crate::transport::{FrameStream, LinkError};

/// Frames a reader handles before it yields to other tasks.
const READ_BURST: usize = 64;
/// Bytes a reader handles before it yields: with 64 KiB super-frames a
/// burst of [`READ_BURST`] frames would fill a whole default output queue
/// (4 MiB) before the writer on the same thread ran once, and drop the rest.
const READ_BURST_BYTES: usize = 256 * 1024;

/// A reader's reusable buffers, so switching a frame allocates nothing.
#[derive(Default)]
struct Scratch {
    /// Unicast frames whose port had no room: queued in order, each
    /// waiting a little for room (see [`Patience`]), before the next read.
    waiting: Vec<(Arc<Output>, Frame, Patience)>,
    /// The ports a flooded frame goes to (empty between frames).
    many: Vec<Arc<Output>>,
}

/// Reads the link until it ends, switching every frame.
pub(super) async fn read_loop(
    node: &Node,
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
    let mut storm = StormBucket::new(node.inner.cfg.storm_limit);
    let mut scratch = Scratch::default();
    let (mut burst, mut burst_bytes) = (0, 0);
    while let Some(item) = rx.next().await {
        // A link that always has a frame ready must not pin a thread: let
        // the executor run others (the writers it feeds) now and then.
        burst += 1;
        if burst >= READ_BURST || burst_bytes >= READ_BURST_BYTES {
            (burst, burst_bytes) = (0, 0);
            YieldNow(false).await;
        }
        match item {
            Ok(frame) => {
                burst_bytes += frame.len();
                counters.rx(frame.len());
                ingress(node, &ctx, frame, counters, &mut storm, &mut scratch);
                for (out, frame, patience) in scratch.waiting.drain(..) {
                    out.enqueue_waiting(frame, patience).await;
                }
            }
            Err(LinkError::Oversize(len)) => {
                counters.rx(len);
                let max = node.inner.cfg.max_frame;
                let detail = format_args!("{len} bytes > max {max}");
                node.count_drop(id, counters, DropReason::Oversize, &detail);
            }
            Err(e) if !e.is_fatal() => {
                node.count_drop(id, counters, DropReason::NotAFrame, &e);
            }
            Err(e) => return PortEnd::Failed(e),
        }
    }
    PortEnd::Closed
}

/// One frame from the link through the ingress stage, then each frame it
/// yields through the switch into the queues.
fn ingress(
    node: &Node,
    ctx: &FilterContext,
    frame: Frame,
    counters: &PortCounters,
    storm: &mut StormBucket,
    scratch: &mut Scratch,
) {
    let inner = &*node.inner;
    let stage = Ingress {
        max_frame: inner.cfg.max_frame,
        chain: &*inner.ingress,
    };
    stage.run(ctx, frame, |r| match r {
        Ok(ready) => switch(node, ctx.port, ready, counters, storm, scratch),
        Err(why) => refuse(node, ctx.port, counters, &why),
    });
}

fn refuse(node: &Node, port: PortId, counters: &PortCounters, why: &Refusal) {
    if why.logged() {
        node.count_drop(port, counters, why.reason(), why);
    } else {
        counters.count_drop(why.reason());
    }
}

fn switch(
    node: &Node,
    port: PortId,
    ready: Ready,
    counters: &PortCounters,
    storm: &mut StormBucket,
    scratch: &mut Scratch,
) {
    let inner = &*node.inner;
    let Ready { frame, view } = ready;
    let now = Instant::now();
    let Scratch { waiting, many } = scratch;
    let s = route::switch_frame(
        &inner.fabric,
        now,
        port,
        &view,
        storm,
        |slot| slot.out.clone(),
        many,
    );
    if s.switched {
        inner.switched.fetch_add(1, Relaxed);
    }
    match s.route {
        Route::One(o, patience) => {
            let super_frame = frame.meta.vnet.is_some_and(|h| h.is_gso());
            match Placement::of(super_frame, !waiting.is_empty()) {
                Placement::Now => o.enqueue(frame),
                Placement::Behind => waiting.push((o, frame, patience)),
                Placement::NowOrWait => {
                    if let Err(frame) = o.try_enqueue(frame) {
                        if o.bound.is_stuck() {
                            o.counters.count_drop(DropReason::QueueFull);
                        } else {
                            waiting.push((o, frame, patience));
                        }
                    }
                }
            }
        }
        Route::Many => {
            if let Some(last) = many.pop() {
                for o in many.drain(..) {
                    o.enqueue(frame.clone());
                }
                last.enqueue(frame);
            }
        }
        Route::Drop(reason) => counters.count_drop(reason),
        Route::Refused(why) => node.note_refused(port, counters, why, view.src(), view.vlan_id()),
        Route::Nowhere => {}
    }
    // Logged after unlocking: log I/O must not hold up other ports.
    if let Some(l) = s.learned {
        node.note_learned(l, now);
    }
}

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
pub(super) async fn drain(rx: &mut FrameStream) {
    while let Some(item) = rx.next().await {
        if matches!(item, Err(ref e) if e.is_fatal()) {
            return;
        }
    }
}
