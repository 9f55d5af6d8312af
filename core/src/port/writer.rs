//! A port's writer: its queue → the datapath's egress stage → the link.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;

use super::queue::QueueBound;
use crate::datapath::{Egress, Takes};
use crate::filter::{Direction, FilterContext};
use crate::frame::Frame;
use crate::log::suppressed_note;
use crate::node::Node;
use crate::stats::PortCounters;
use crate::switch::{PortId, PortKind};
use crate::transport::{FrameSink, LinkError};

/// What a writer needs of its port.
pub(super) struct WriterPort<'a> {
    pub id: PortId,
    pub kind: PortKind,
    pub name: &'a str,
    pub takes: Takes,
    pub counters: &'a PortCounters,
    /// Set when the link failed under the writer: the reader need not wait
    /// for the peer's Close then.
    pub broken: &'a AtomicBool,
}

/// Writes the queue to the link until the queue is closed and drained
/// (then closes the link in order) or the link fails (then detaches the
/// port: the link is unusable).
pub(super) async fn write_loop(
    node: &Node,
    port: WriterPort<'_>,
    queue: async_channel::Receiver<Frame>,
    bound: Arc<QueueBound>,
    tx: &mut FrameSink,
) {
    let WriterPort {
        id,
        kind,
        name,
        takes,
        counters,
        broken,
    } = port;
    let pump = Pump {
        queue: Box::pin(queue),
        bound,
        tx: &mut *tx,
        held: VecDeque::new(),
        closed: false,
        egress: Egress {
            takes,
            max_frame: node.inner.cfg.max_frame,
            chain: &*node.inner.egress,
        },
        batch: node.inner.cfg.queue_len.max(1),
        ctx: FilterContext {
            direction: Direction::Egress,
            port: id,
            port_kind: kind,
        },
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
            // The sink is finished (never polled again); stop the reader
            // too: the link is unusable.
            broken.store(true, Relaxed);
            node.detach(id);
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
    /// Frames taken from the queue and through the egress stage, waiting
    /// for the sink to be ready.
    held: VecDeque<Frame>,
    closed: bool,
    egress: Egress<'a>,
    batch: usize,
    ctx: FilterContext,
    counters: &'a PortCounters,
}

impl Pump<'_> {
    fn take(&mut self, frame: Frame) {
        let Pump {
            held,
            egress,
            ctx,
            counters,
            ..
        } = self;
        egress.run(ctx, frame, |r| match r {
            Ok(f) => held.push_back(f),
            Err(reason) => counters.count_drop(reason),
        });
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
