//! `etherws client URL`: join the local TAP to a server's segment, and keep
//! the link up: reconnect with capped exponential backoff and jitter. The
//! TAP stays up across reconnects.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etherws_core::{PortConfig, PortEnd, PortKind, Registry};
use futures::future::{self, Either};
use futures::FutureExt;
use smol::Timer;

use crate::cli::ClientArgs;
use crate::node::{
    attach_tap, build_node, report, run_port, shutdown, spawn_housekeeping, until_stopped,
};
use crate::runtime::{Ex, Signal};

const BACKOFF_START: Duration = Duration::from_millis(100);
/// A link that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// Exponential backoff with "equal jitter": each wait is a random point
/// between half and all of the current step.
struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
    fn reset(&mut self) {
        self.step = BACKOFF_START;
    }
}

pub async fn run(
    ex: Ex,
    args: ClientArgs,
    registry: Registry,
    signals: async_channel::Receiver<Signal>,
) -> Result<()> {
    if registry.get(args.url.scheme()).is_none() {
        bail!(
            "unsupported URL scheme {:?} in {} (supported: {})",
            args.url.scheme(),
            args.url,
            registry.schemes().join(", ")
        );
    }
    let wired = build_node(&args.tap, &args.switch)?;
    let node = wired.node.clone();
    let tap = attach_tap(&ex, &node, &args.tap)?;
    spawn_housekeeping(&ex, &node, &args.switch);

    let links = {
        let ex = ex.clone();
        let node = node.clone();
        let url = args.url.clone();
        let once = args.once;
        let mut backoff = Backoff {
            step: BACKOFF_START,
            max: Duration::from_secs(args.max_backoff.max(1)),
        };
        async move {
            let mut failures = 0u32;
            loop {
                match registry.connect(&url).await {
                    Ok(link) => {
                        log::info!("connected to {url} ({})", link.peer);
                        failures = 0;
                        let up = Instant::now();
                        let port = node.attach(link, PortKind::Link, PortConfig::default());
                        let end = run_port(&ex, port).await;
                        if up.elapsed() >= STABLE {
                            backoff.reset();
                        }
                        if once {
                            return match end {
                                PortEnd::Closed => Ok(()),
                                other => Err(anyhow::anyhow!("link to {url} ended: {other:?}")),
                            };
                        }
                        log::warn!("link to {url} lost; reconnecting");
                    }
                    Err(e) => {
                        if once {
                            return Err(e).with_context(|| format!("cannot connect to {url}"));
                        }
                        failures += 1;
                        let wait = backoff.next();
                        // Say it loudly the first time, then quietly.
                        if failures == 1 {
                            log::error!(
                                "cannot connect to {url}: {e}; retrying (backoff up to {:?})",
                                backoff.max
                            );
                        } else {
                            log::info!(
                                "cannot connect to {url}: {e}; retry {failures} in {wait:.1?}"
                            );
                        }
                        Timer::after(wait).await;
                        continue;
                    }
                }
                Timer::after(backoff.next()).await;
            }
        }
    };

    let stopped = until_stopped(&wired, &signals).map(|_| Ok(()));
    let links = links.boxed();
    let tap = tap.map(|end| Err(anyhow::anyhow!("TAP device failed: {end:?}")));
    let result = match future::select(stopped.boxed(), future::select(links, tap.boxed())).await {
        Either::Left((r, _)) => r,
        Either::Right((Either::Left((r, _)), _)) => r,
        Either::Right((Either::Right((r, _)), _)) => r,
    };
    report(&wired);
    shutdown(&node).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_cap_with_jitter() {
        let mut b = Backoff {
            step: BACKOFF_START,
            max: Duration::from_secs(1),
        };
        let waits: Vec<_> = (0..8).map(|_| b.next()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= BACKOFF_START);
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert!(waits[7] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next() <= BACKOFF_START);
    }
}
