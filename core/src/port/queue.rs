//! A port's output queue: an unbounded channel (its memory grows only with
//! what is queued) bounded here in frames and bytes, and the wait for room
//! of a unicast super-frame ([`Patience`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use futures::future::{self, Either};

use crate::datapath::Patience;
use crate::frame::Frame;
use crate::stats::{DropReason, PortCounters};

/// The bound of one queue, shared by its senders (readers of other ports)
/// and its receiver (the port's writer).
pub(crate) struct QueueBound {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    max_frames: usize,
    max_bytes: usize,
    /// Notified when the writer takes frames out: a reader waiting for
    /// room tries again.
    room: event_listener::Event,
    /// A reader waited [`Patience::stuck_after`] in vain: the port is not
    /// draining. Until it has drained to half, frames for it are dropped at
    /// once.
    stuck: AtomicBool,
}

impl QueueBound {
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        QueueBound {
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_frames: max_frames.max(1),
            max_bytes: max_bytes.max(1),
            room: event_listener::Event::new(),
            stuck: AtomicBool::new(false),
        }
    }

    /// Reserves room for a frame of `len` bytes, or says there is none. A
    /// frame is always admitted to an empty queue.
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

    /// The writer took a frame of `len` bytes out.
    pub(crate) fn release(&self, len: usize) {
        self.frames.fetch_sub(1, Relaxed);
        let before = self.bytes.fetch_sub(len, Relaxed);
        if self.stuck.load(Relaxed) && before - len <= self.max_bytes / 2 {
            self.stuck.store(false, Relaxed);
        }
        self.room.notify(1);
    }

    pub(crate) fn is_stuck(&self) -> bool {
        self.stuck.load(Relaxed)
    }
}

/// A port's output queue as the switch sees it. Shared (`Arc`), so a
/// reader takes its targets under the fabric lock and enqueues, which may
/// wake the port's writer, after letting go of it.
pub(crate) struct Output {
    pub(crate) queue: async_channel::Sender<Frame>,
    pub(crate) bound: Arc<QueueBound>,
    pub(crate) counters: Arc<PortCounters>,
}

impl Output {
    /// Queues the frame, or drops it as `queue_full`.
    pub(crate) fn enqueue(&self, frame: Frame) {
        if let Err(frame) = self.try_enqueue(frame) {
            drop(frame);
            self.counters.count_drop(DropReason::QueueFull);
        }
    }

    /// Queues the frame, or hands it back when the queue is full.
    pub(crate) fn try_enqueue(&self, frame: Frame) -> Result<(), Frame> {
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
    pub(crate) async fn enqueue_waiting(&self, frame: Frame, patience: Patience) {
        let mut frame = match self.try_enqueue(frame) {
            Ok(()) => return,
            Err(f) => f,
        };
        let give_up = Instant::now() + patience.give_up_after;
        while !self.bound.is_stuck() && !self.queue.is_closed() {
            let listener = self.bound.room.listen();
            // Room may have come between the try and the listen.
            frame = match self.try_enqueue(frame) {
                Ok(()) => return,
                Err(f) => f,
            };
            // The listener fires only when the writer takes a frame out.
            let timer = async_io::Timer::at((Instant::now() + patience.stuck_after).min(give_up));
            if let Either::Right(_) = future::select(listener, timer).await {
                // Nothing left the port for stuck_after: stuck. Or this
                // frame waited its fill: dropped, the port is not stuck.
                if Instant::now() < give_up {
                    self.bound.stuck.store(true, Relaxed);
                }
                break;
            }
            if Instant::now() >= give_up {
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
