//! The async runtime lives here, at the edge: a smol executor on one or
//! more threads, the reactor keeper, plus Unix signals delivered as an async
//! channel.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use smol::Executor;

/// A signal the node reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM: shut down cleanly.
    Stop,
    /// SIGUSR1: print counters and the forwarding table.
    Report,
    /// SIGHUP: reload the filter chains.
    Reload,
}

pub type Ex = Arc<Executor<'static>>;

/// Threads serving the executor (set by [`run`]).
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// How many threads serve the executor: the filter host gives replicable
/// filters as many instances, so the threads never queue on one.
pub fn threads() -> usize {
    THREADS.load(Relaxed)
}

/// Runs `main` to completion on an executor served by `threads` threads
/// (default one: see `--threads`).
pub fn run<T>(
    threads: Option<usize>,
    main: impl FnOnce(Ex) -> Box<dyn Future<Output = T> + Send + Unpin>,
) -> T {
    let ex: Ex = Arc::new(Executor::new());
    let threads = threads.unwrap_or(1).max(1);
    THREADS.store(threads, Relaxed);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let workers: Vec<_> = (1..threads)
        .map(|i| {
            let ex = ex.clone();
            let stop = stop_rx.clone();
            thread::Builder::new()
                .name(format!("etherws-worker-{i}"))
                .spawn(move || smol::block_on(ex.run(stop.recv())))
                .expect("spawning worker thread")
        })
        .collect();
    let fut = main(ex.clone());
    let out = smol::block_on(ex.run(fut));
    drop(stop_tx);
    for w in workers {
        let _ = w.join();
    }
    out
}

/// How often the reactor ticks while frames flow (see [`keep_reactor`]).
const KEEP_TICK: Duration = Duration::from_millis(2);
/// The rate of frames from which the keeper ticks: a ping every 10 ms
/// (100 requests and 100 replies a second) is above it, the background
/// chatter of an idle segment (ARP, neighbour discovery) far below.
const KEEP_RATE: u64 = 50;
/// How often the rate is taken while ticking, and while not.
const KEEP_WINDOW_BUSY: Duration = Duration::from_millis(100);
const KEEP_WINDOW_IDLE: Duration = Duration::from_secs(1);

/// Keeps async-io's reactor (the `epoll_wait`) on the executor's threads
/// while frames flow, so that a frame costs one thread wake-up per hop, not
/// two.
///
/// Why: async-io runs a fallback "async-io" thread that takes the reactor
/// over whenever it saw no reactor activity for a few of its naps (10 ms at
/// most). At the packet rates of a ping or of request/response traffic
/// that is the normal case, and from then on each frame wakes the fallback
/// thread in `epoll_wait`, which then wakes the worker on a futex: two
/// wake-ups where one would do (seen with `strace -f`: the worker only ever
/// in `futex`, the fallback thread in `epoll_pwait`). On the 2-core VM of
/// bench/ that second hop cost a ping through two nodes about 70 µs of its
/// median: 197 µs without the keeper, 121 µs with it (median of three runs
/// of 500 probes at 10 ms each, alternating). A timer firing every
/// [`KEEP_TICK`] keeps the reactor's tick moving, which is what keeps the
/// fallback thread off it.
///
/// Cost: a timer wake-up every [`KEEP_TICK`] (each some 25 µs of CPU on
/// that VM) while `activity`, a count of frames, moves at
/// [`KEEP_RATE`] frames a second or more; below that, one look a second. A
/// node whose segment only chatters stays idle, and sparse traffic (a ping
/// a second) keeps the two wake-ups. A large bridged segment whose
/// background traffic alone passes [`KEEP_RATE`] keeps it ticking: some
/// 12 ms of CPU a second at that cost.
pub fn keep_reactor(ex: &Ex, activity: impl Fn() -> u64 + Send + 'static) {
    ex.spawn(async move {
        let mut pace = KeepPace::new(activity(), std::time::Instant::now());
        loop {
            async_io::Timer::after(pace.nap()).await;
            pace.observe(activity(), std::time::Instant::now());
        }
    })
    .detach();
}

/// The keeper's decision, sans-IO: from a count of frames and the time,
/// whether to tick.
#[derive(Debug)]
struct KeepPace {
    busy: bool,
    from: u64,
    since: std::time::Instant,
}

impl KeepPace {
    fn new(frames: u64, now: std::time::Instant) -> Self {
        KeepPace {
            busy: false,
            from: frames,
            since: now,
        }
    }

    /// How long to sleep before the next look.
    fn nap(&self) -> Duration {
        if self.busy {
            KEEP_TICK
        } else {
            KEEP_WINDOW_IDLE
        }
    }

    /// Takes the frame count at `now`; at the end of a window, decides
    /// from its rate whether to tick.
    fn observe(&mut self, frames: u64, now: std::time::Instant) {
        let window = if self.busy {
            KEEP_WINDOW_BUSY
        } else {
            KEEP_WINDOW_IDLE
        };
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= window {
            let n = u128::from(frames.wrapping_sub(self.from));
            self.busy = n * 1000 >= u128::from(KEEP_RATE) * elapsed.as_millis();
            (self.from, self.since) = (frames, now);
        }
    }
}

/// Delivers SIGINT/SIGTERM/SIGUSR1/SIGHUP as [`Signal`]s.
pub fn signals() -> Result<async_channel::Receiver<Signal>> {
    let mut sigs = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGHUP])
        .context("installing signal handlers")?;
    let (tx, rx) = async_channel::unbounded();
    thread::Builder::new()
        .name("etherws-signals".into())
        .spawn(move || {
            for s in sigs.forever() {
                let sig = match s {
                    SIGUSR1 => Signal::Report,
                    SIGHUP => Signal::Reload,
                    _ => Signal::Stop,
                };
                if tx.send_blocking(sig).is_err() {
                    break;
                }
            }
        })
        .context("spawning signal thread")?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_keeper_ticks_while_frames_flow_and_rests_when_they_trickle() {
        let t0 = Instant::now();
        let mut p = KeepPace::new(0, t0);
        assert_eq!(p.nap(), KEEP_WINDOW_IDLE, "starts at rest");
        // A ping every 10 ms, both ways: 200 frames a second.
        p.observe(200, t0 + Duration::from_secs(1));
        assert_eq!(p.nap(), KEEP_TICK);
        // Inside a window nothing changes, whatever the count.
        p.observe(200, t0 + Duration::from_millis(1050));
        assert_eq!(p.nap(), KEEP_TICK);
        p.observe(220, t0 + Duration::from_millis(1100));
        assert_eq!(p.nap(), KEEP_TICK);
        // Neighbour discovery now and then: rest.
        p.observe(221, t0 + Duration::from_millis(1200));
        assert_eq!(p.nap(), KEEP_WINDOW_IDLE);
        p.observe(230, t0 + Duration::from_millis(2200));
        assert_eq!(p.nap(), KEEP_WINDOW_IDLE);
        // The counter may wrap.
        let mut p = KeepPace::new(u64::MAX - 10, t0);
        p.observe(100, t0 + Duration::from_secs(1));
        assert_eq!(p.nap(), KEEP_TICK);
    }
}
