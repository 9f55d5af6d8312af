//! The port runtime: the futures that run one port, its queue, and their
//! lifecycle. They only move frames: every per-frame decision is the
//! datapath's (`crate::datapath`).
//!
//! Each port gets a reader future (link → ingress → switch → output
//! queues) and a writer future (queue → egress → link). Queues are bounded
//! in frames and in bytes; a full queue drops and counts, so a slow peer
//! loses its own frames instead of stalling everyone. The writer feeds
//! every frame that is ready and flushes once, and polls the link's
//! `poll_flush` whenever its task wakes, so a link can send its own control
//! traffic (spec/transport.md). A panic inside either future is caught,
//! logged and ends only that port. The caller spawns the futures on its
//! runtime: core never picks one.

mod events;
pub(crate) mod queue;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{self, BoxFuture, Either};
use futures::FutureExt;

use crate::datapath::Takes;
use crate::frame::Frame;
use crate::node::Node;
use crate::stats::PortCounters;
use crate::switch::{PortId, PortKind};
use crate::transport::{CloseReason, Link, LinkError};
use queue::QueueBound;

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

/// How long a detached port may take to send what is queued, its Close,
/// and to receive the peer's Close; after that its futures are dropped (a
/// peer that stopped reading must not hold a task, a socket and a full
/// queue forever), which closes the connection.
pub const PORT_GRACE: Duration = Duration::from_secs(2);

impl AttachedPort {
    /// Runs the port to its end: the writer on a task of its own (`spawn`
    /// puts a future on the program's executor and returns a handle that
    /// resolves when it ends and cancels it when dropped, as smol's `Task`
    /// does), the reader here. Once the port is detached, both get
    /// [`PORT_GRACE`] to finish its close; then they are dropped.
    pub async fn run<H>(self, spawn: impl FnOnce(BoxFuture<'static, ()>) -> H) -> PortEnd
    where
        H: Future<Output = ()> + Unpin,
    {
        let id = self.id;
        let writer = spawn(self.writer);
        let mut reader = self.reader;
        // Until detached, the reader's end (or the detach) decides.
        let end = match future::select(&mut reader, self.detached).await {
            Either::Left((e, _)) => Some(e),
            Either::Right(_) => None,
        };
        // Dropping `both` (at the deadline) cancels the writer and drops
        // the link, which closes the connection.
        let both = async move {
            let end = match end {
                Some(e) => e,
                None => reader.await,
            };
            writer.await;
            end
        };
        match future::select(Box::pin(both), async_io::Timer::after(PORT_GRACE)).await {
            Either::Left((end, _)) => end,
            Either::Right(_) => {
                log::warn!(
                    "port {id}: did not finish its close within {PORT_GRACE:?}; connection dropped"
                );
                PortEnd::Detached
            }
        }
    }
}

/// Ends the port's life (for [`Node::live_ports`]) when both its futures
/// are done or dropped.
pub(crate) struct LiveGuard(pub(crate) Node);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.inner.live.fetch_sub(1, Relaxed);
    }
}

/// What the node set up for a new port: its queue's receiving end, the
/// stop signal, and its life.
pub(crate) struct Wiring {
    pub id: PortId,
    pub kind: PortKind,
    pub name: String,
    pub counters: Arc<PortCounters>,
    pub queue: async_channel::Receiver<Frame>,
    pub bound: Arc<QueueBound>,
    /// Closed when the port is detached.
    pub stop: async_channel::Receiver<()>,
    pub live: LiveGuard,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The futures that run a port over `link`.
pub(crate) fn run(node: &Node, link: Link, w: Wiring) -> AttachedPort {
    let Wiring {
        id,
        kind,
        name,
        counters,
        queue,
        bound,
        stop,
        live,
    } = w;
    let live = Arc::new(live);
    // Set by the writer when the link failed under it: no point then in
    // reading on for the peer's Close.
    let broken = Arc::new(AtomicBool::new(false));
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
        let node = node.clone();
        let counters = counters.clone();
        let name = name.clone();
        let stop = stop.clone();
        let live = live.clone();
        let broken = broken.clone();
        let on_close = on_close.clone();
        async move {
            let _live = live;
            let started = Instant::now();
            let mut rx = rx;
            let end = {
                let read = AssertUnwindSafe(reader::read_loop(&node, id, kind, &mut rx, &counters))
                    .catch_unwind()
                    .map(|r| r.unwrap_or_else(|p| PortEnd::Panicked(panic_message(&*p))));
                let stop = stop.recv().map(|_| PortEnd::Detached);
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
            let why = probe.as_ref().and_then(|p| p.close_reason());
            node.note_end(id, &name, &end, started.elapsed(), &counters, why);
            if matches!(end, PortEnd::Detached) && kind == PortKind::Link && !broken.load(Relaxed) {
                // Our writer sends a Close; read until the peer's answer
                // ends the link (bounded by the caller).
                let _ = AssertUnwindSafe(reader::drain(&mut rx))
                    .catch_unwind()
                    .await;
            }
            end
        }
        .boxed()
    };
    let writer = {
        let node = node.clone();
        let counters = counters.clone();
        async move {
            let _live = live;
            // The sink stays out here, so it survives a panic below and can
            // still tell the peer (1011 for ws).
            let mut tx = tx;
            let port = writer::WriterPort {
                id,
                kind,
                name: &name,
                takes,
                counters: &counters,
                broken: &broken,
            };
            let w = AssertUnwindSafe(writer::write_loop(&node, port, queue, bound, &mut tx))
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
        let _ = stop.recv().await;
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
