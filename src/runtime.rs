//! The async runtime lives here, at the edge: a smol executor on one or
//! more threads, plus Unix signals delivered as an async channel.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;

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
