//! `etherws server`: accept links and switch frames between them (and the
//! TAP device, unless `--no-tap`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etherws_core::stats::{suppressed_note, LogLimiter};
use etherws_core::{Listener, Node, PortConfig, PortKind, TransportError};
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

/// `--listen` as a URL: a URL of a known scheme (`udp://...`,
/// `unix:/path`) as it is, `ADDR:PORT` as ws:// (wss:// with TLS) on
/// `path`.
pub fn listen_url(listen: &str, path: &str, tls: bool, schemes: &[&str]) -> Result<Url> {
    if listen.contains("://") {
        return Url::parse(listen).with_context(|| format!("bad --listen URL {listen:?}"));
    }
    // `localhost:8080` parses as a URL of scheme "localhost": only a
    // scheme some transport serves makes it one.
    if let Ok(u) = Url::parse(listen) {
        if schemes.contains(&u.scheme()) {
            return Ok(u);
        }
    }
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
    let registry = transports.registry();
    let schemes = registry.schemes();
    let urls = args
        .listen
        .iter()
        .map(|l| listen_url(l, &args.path, args.tls_cert.is_some(), &schemes))
        .collect::<Result<Vec<_>>>()?;
    for url in &urls {
        registry.resolve(url)?;
    }
    let mut wired = build_node(&args.tap, &args.switch)?;
    wired.transports = Some(transports.ws.clone());
    wired.udp = Some(transports.udp.stats().clone());
    wired.quic = Some(transports.quic.stats().clone());
    let node = wired.node.clone();
    let tap = if args.no_tap {
        None
    } else {
        Some(attach_tap(&ex, &node, &args.tap)?)
    };
    let mut listeners = Vec::new();
    for url in &urls {
        let listener = registry
            .listen(url, &transports.params)
            .await
            .with_context(|| format!("cannot listen on {url}"))?;
        let shown = match url.scheme() {
            "ws" | "wss" => format!("{}://{}{}", url.scheme(), listener.local_addr(), url.path()),
            s if url.has_host() => format!("{s}://{}", listener.local_addr()),
            // `unix:/path` and the like: no address to fill in.
            _ => url.to_string(),
        };
        log::info!(
            "listening on {shown} ({})",
            if args.switch.hub {
                "hub"
            } else {
                "learning switch"
            }
        );
        listeners.push(listener);
    }
    spawn_housekeeping(&ex, &node, &args.switch);

    let refused = Arc::new(Refused::default());
    wired.add_counter("connections refused", refused.total.clone());
    let accepts: Vec<smol::Task<()>> = listeners
        .into_iter()
        .map(|listener| {
            ex.spawn(accept_loop(
                ex.clone(),
                node.clone(),
                listener,
                refused.clone(),
            ))
        })
        .collect();

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
    for a in accepts {
        a.cancel().await;
    }
    shutdown(&node).await;
    result
}

/// Accepts links for as long as the server runs; each one's handshake
/// runs on its own task, so a slow peer holds up nobody.
async fn accept_loop(ex: Ex, node: Node, mut listener: Box<dyn Listener>, refused: Arc<Refused>) {
    loop {
        match listener.accept().await {
            Ok(pending) => {
                let node = node.clone();
                let ex2 = ex.clone();
                let refused = refused.clone();
                ex.spawn(async move {
                    match pending.await {
                        Ok(link) => {
                            let port = node.attach(link, PortKind::Link, PortConfig::default());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let known = ["ws", "wss", "udp", "unix"];
        let u = |l: &str, tls| listen_url(l, "/x", tls, &known).map(|u| u.to_string());
        assert_eq!(u("0.0.0.0:8080", false).unwrap(), "ws://0.0.0.0:8080/x");
        assert_eq!(u("0.0.0.0:8080", true).unwrap(), "wss://0.0.0.0:8080/x");
        assert_eq!(u("localhost:8080", false).unwrap(), "ws://localhost:8080/x");
        assert_eq!(u("udp://0.0.0.0:9", false).unwrap(), "udp://0.0.0.0:9");
        assert_eq!(u("unix:/run/e.sock", false).unwrap(), "unix:/run/e.sock");
        assert!(u("0.0.0.0", false).is_err());
    }
}
