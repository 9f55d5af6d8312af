//! `etherws client URL`: join the local TAP to a server's segment, and keep
//! the link up: reconnect with capped exponential backoff and jitter. The
//! TAP stays up across reconnects.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etherws_core::{Link, LinkParams, PortConfig, PortEnd, PortKind, Registry, TransportError};
use futures::future::{self, Either};
use futures::FutureExt;
use smol::Timer;
use url::Url;

use crate::cli::ClientArgs;
use crate::node::{attach_tap, build_node, run_port, spawn_housekeeping, until_stopped};
use crate::runtime::{Ex, Signal};
use crate::transport::Transports;

const BACKOFF_START: Duration = Duration::from_millis(100);
/// A link that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// After a working link is lost, redial at least this often...
const FAST_CAP: Duration = Duration::from_secs(1);
/// ...for this long (a restarting server is back within seconds).
const FAST_WINDOW: Duration = Duration::from_secs(30);

/// Exponential backoff with "equal jitter": each wait is a random point
/// between half and all of the current step. The step is capped at
/// [`FAST_CAP`] during the [`FAST_WINDOW`] after a working link was lost,
/// at `max` otherwise.
struct Backoff {
    step: Duration,
    max: Duration,
    fast_until: Option<Instant>,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            step: BACKOFF_START,
            max,
            fast_until: None,
        }
    }

    fn next(&mut self) -> Duration {
        let fast = self.fast_until.is_some_and(|t| Instant::now() < t);
        let cap = if fast {
            self.max.min(FAST_CAP)
        } else {
            self.max
        };
        let step = self.step.min(cap);
        self.step = (step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// A working link ended: start again from the first step, and redial
    /// quickly for a while.
    fn reset(&mut self) {
        self.step = BACKOFF_START;
        self.fast_until = Some(Instant::now() + FAST_WINDOW);
    }
}

/// Whether a link that just ended was a working one: it stayed up
/// [`STABLE`] or carried frames both ways. A server that accepts and drops
/// at once keeps backing off; a server restarted under a working client is
/// redialled within a few hundred milliseconds.
fn link_worked(up: Duration, c: &etherws_core::Counts) -> bool {
    up >= STABLE || (c.rx_frames > 0 && c.tx_frames > 0)
}

/// Whether the server refused our credentials (HTTP or QUIC 401).
fn is_401(e: &TransportError) -> bool {
    matches!(e, TransportError::Rejected(m) if m.contains("HTTP 401") || m.contains("QUIC 401"))
}

/// Connects to the first URL that answers, in order; `Err` with the last
/// error when none does.
async fn connect_first(
    registry: &Registry,
    params: &LinkParams,
    urls: &[Url],
    upto: usize,
) -> Result<(usize, Link), (usize, TransportError)> {
    let mut last = None;
    for (i, url) in urls.iter().enumerate().take(upto) {
        match registry.connect(url, params).await {
            Ok(link) => return Ok((i, link)),
            Err(e) => {
                if urls.len() > 1 {
                    log::info!("cannot connect to {url}: {e}");
                }
                last = Some((i, e));
            }
        }
    }
    Err(last.unwrap_or((0, TransportError::Timeout("no URL".into()))))
}

pub async fn run(
    ex: Ex,
    args: ClientArgs,
    transports: Transports,
    signals: async_channel::Receiver<Signal>,
) -> Result<()> {
    let registry = transports.registry();
    for url in &args.urls {
        registry.resolve(url).with_context(|| {
            let hint = if ["exec", "unix"].contains(&url.scheme()) {
                " (exec: and unix: are the transports of the example program etherws-custom: \
                 cargo build --release -p etherws-custom-transport)"
            } else {
                ""
            };
            format!("cannot use {url}{hint}")
        })?;
    }
    let params = transports.params.clone();
    let mut wired = build_node(&args.tap, &args.switch)?;
    wired.role = "client";
    wired.settings = crate::node::settings(&args.tap, &args.switch, &args.link);
    wired.registry = transports.registry();
    let node = wired.node.clone();
    let (tap, name) = attach_tap(&ex, &node, &args.tap)?;
    wired.name = name;
    spawn_housekeeping(&ex, &node, &args.switch);
    let wired = std::sync::Arc::new(wired);
    crate::service::start(
        &ex,
        wired.clone(),
        registry.clone(),
        params.clone(),
        &args.service,
    )
    .await?;

    let links = {
        let ex = ex.clone();
        let node = node.clone();
        let urls = args.urls.clone();
        let once = args.once;
        let retry_auth = args.retry_auth;
        // Retries are logged at most once every 10 s (the first loudly).
        let retry_log = etherws_core::log::LogLimiter::new(1, Duration::from_secs(10));
        let failback = Duration::from_secs(args.failback);
        let mut backoff = Backoff::new(Duration::from_secs(args.max_backoff.max(1)));
        async move {
            let mut failures = 0u32;
            // A link already made (by a failback probe) to use next.
            let mut next: Option<(usize, Link)> = None;
            loop {
                if node.is_closing() {
                    return Ok(());
                }
                let made = match next.take() {
                    Some(n) => Ok(n),
                    None => connect_first(&registry, &params, &urls, urls.len()).await,
                };
                match made {
                    Ok((i, link)) => {
                        let url = &urls[i];
                        log::info!("connected to {url} ({})", link.peer);
                        failures = 0;
                        let up = Instant::now();
                        let port = node.attach(link, PortKind::Link, PortConfig::default());
                        let (id, counters) = (port.id, port.counters.clone());
                        let run = run_port(&ex, port).boxed();
                        let end = if i == 0 || failback.is_zero() {
                            run.await
                        } else {
                            // On a fallback: retry the earlier URLs now and then.
                            let probe = async {
                                loop {
                                    Timer::after(failback).await;
                                    if let Ok(found) =
                                        connect_first(&registry, &params, &urls, i).await
                                    {
                                        return found;
                                    }
                                }
                            };
                            match future::select(run, Box::pin(probe)).await {
                                Either::Left((end, _)) => end,
                                Either::Right(((j, better), run)) => {
                                    log::info!("{} answers again: moving back from {url}", urls[j]);
                                    next = Some((j, better));
                                    node.detach(id);
                                    run.await
                                }
                            }
                        };
                        if link_worked(up.elapsed(), &counters.snapshot()) {
                            backoff.reset();
                        }
                        if node.is_closing() {
                            return Ok(());
                        }
                        if next.is_some() {
                            continue;
                        }
                        if once {
                            return match end {
                                PortEnd::Closed => Ok(()),
                                other => Err(anyhow::anyhow!("link to {url} ended: {other:?}")),
                            };
                        }
                        log::warn!("link to {url} lost; reconnecting");
                    }
                    Err((i, e)) => {
                        let url = &urls[i];
                        if once {
                            return Err(e).with_context(|| format!("cannot connect to {url}"));
                        }
                        if !retry_auth && is_401(&e) {
                            return Err(e).with_context(|| {
                                format!(
                                    "cannot connect to {url}; not retrying a refused login \
                                     (--retry-auth keeps trying)"
                                )
                            });
                        }
                        failures += 1;
                        let wait = backoff.next();
                        let which = if urls.len() > 1 {
                            "any server"
                        } else {
                            "the server"
                        };
                        // Say it loudly the first time, then quietly.
                        if failures == 1 {
                            log::error!(
                                "cannot reach {which} (last: {url}: {e}); retrying (backoff up to {:?})",
                                backoff.max
                            );
                        } else if let Some(n) = retry_log.check(Instant::now()) {
                            log::info!(
                                "cannot reach {which} (last: {url}: {e}); retry {failures} in {wait:.1?}{}",
                                etherws_core::log::suppressed_note(n)
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

    // The link loop runs as its own task: on a stop it must not be dropped
    // mid-port (that would cancel the writer before it sent its Close).
    let mut links: smol::Task<Result<()>> = ex.spawn(links);
    let stopped = until_stopped(&wired, &signals).map(|_| Ok(()));
    let tap = tap.map(|end| Err(anyhow::anyhow!("TAP device failed: {end:?}")));
    let result =
        match future::select(stopped.boxed(), future::select(&mut links, tap.boxed())).await {
            Either::Left((r, _)) => r,
            Either::Right((Either::Left((r, _)), _)) => r,
            Either::Right((Either::Right((r, _)), _)) => r,
        };
    crate::node::stopping(&wired);
    // Every port closes in order (Close sent, the server's awaited, within
    // the grace period); only then is the link loop (now idle, or waiting
    // to redial) dropped.
    crate::node::close_ports(&wired, args.tap.down.as_ref()).await;
    drop(links);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1));
        let waits: Vec<_> = (0..8).map(|_| b.next()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= BACKOFF_START);
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert!(waits[7] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next() <= BACKOFF_START);
    }

    #[test]
    fn after_a_working_link_redials_fast_then_backs_off_fully() {
        let mut b = Backoff::new(Duration::from_secs(30));
        b.reset();
        assert!((0..20).map(|_| b.next()).all(|w| w <= FAST_CAP));
        b.fast_until = Some(Instant::now());
        let waits: Vec<_> = (0..10).map(|_| b.next()).collect();
        assert!(waits[9] >= Duration::from_secs(15), "{waits:?}");
    }
}
