//! `etherws server`: accept links and switch frames between them (and the
//! TAP device, unless `--no-tap`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etherws_core::stats::{suppressed_note, LogLimiter};
use etherws_core::{PortConfig, PortKind, TransportError};
use futures::future::{self, Either};
use futures::FutureExt;
use smol::Timer;
use url::Url;

use crate::cli::ServerArgs;
use crate::node::{
    attach_tap, build_node, report, run_port, shutdown, spawn_housekeeping, until_stopped,
};
use crate::runtime::{Ex, Signal};
use crate::transport::Transports;

/// Connections that did not become ports (failed handshakes, refusals):
/// counted, and logged at most 20 lines per 10 s.
struct Refused {
    total: Arc<AtomicU64>,
    log: LogLimiter,
}

impl Default for Refused {
    fn default() -> Self {
        Refused {
            total: Arc::new(AtomicU64::new(0)),
            log: LogLimiter::new(20, Duration::from_secs(10)),
        }
    }
}

impl Refused {
    fn note(&self, e: &TransportError) {
        let total = self.total.fetch_add(1, Relaxed) + 1;
        if let Some(s) = self.log.check(Instant::now()) {
            log::warn!(
                "connection refused: {e} ({total} in all){}",
                suppressed_note(s)
            );
        }
    }
}

pub fn listen_url(listen: &str, path: &str, tls: bool) -> Result<Url> {
    if !path.starts_with('/') {
        bail!("--path must start with '/': {path:?}");
    }
    let scheme = if tls { "wss" } else { "ws" };
    let url = Url::parse(&format!("{scheme}://{listen}{path}"))
        .with_context(|| format!("bad --listen address {listen:?} (expected ADDR:PORT)"))?;
    if url.port().is_none() && !listen.ends_with(":80") {
        bail!("--listen {listen:?} needs a port (ADDR:PORT)");
    }
    Ok(url)
}

pub async fn run(
    ex: Ex,
    args: ServerArgs,
    transports: Transports,
    signals: async_channel::Receiver<Signal>,
) -> Result<()> {
    let url = listen_url(&args.listen, &args.path, args.tls_cert.is_some())?;
    let registry = transports.registry();
    let mut wired = build_node(&args.tap, &args.switch)?;
    wired.transports = Some(transports.ws.clone());
    let node = wired.node.clone();
    let tap = if args.no_tap {
        None
    } else {
        Some(attach_tap(&ex, &node, &args.tap)?)
    };
    let mut listener = registry
        .listen(&url)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    log::info!(
        "listening on {}://{}{} ({})",
        url.scheme(),
        listener.local_addr(),
        args.path,
        if args.switch.hub {
            "hub"
        } else {
            "learning switch"
        }
    );
    spawn_housekeeping(&ex, &node, &args.switch);

    let refused = Arc::new(Refused::default());
    wired.add_counter("connections refused", refused.total.clone());
    let accept = {
        let ex = ex.clone();
        let node = node.clone();
        let refused = refused.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok(pending) => {
                        let node = node.clone();
                        let ex2 = ex.clone();
                        let refused = refused.clone();
                        ex.spawn(async move {
                            match pending.await {
                                Ok(link) => {
                                    let port =
                                        node.attach(link, PortKind::Link, PortConfig::default());
                                    run_port(&ex2, port).await;
                                }
                                Err(e) => refused.note(&e),
                            }
                        })
                        .detach();
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: back off briefly, keep serving.
                        refused.note(&e);
                        Timer::after(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    };
    let accept = ex.spawn(accept);

    let stopped = until_stopped(&wired, &signals).boxed();
    let result = match tap {
        Some(tap) => match future::select(stopped, tap).await {
            Either::Left(_) => Ok(()),
            Either::Right((end, _)) => Err(anyhow::anyhow!("TAP device failed: {end:?}")),
        },
        None => {
            stopped.await;
            Ok(())
        }
    };
    report(&wired);
    // Stop accepting before closing the ports: clients that reconnect at
    // once must not slip in after the shutdown began.
    accept.cancel().await;
    shutdown(&node).await;
    result
}
