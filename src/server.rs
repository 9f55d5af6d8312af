//! `etherws server`: accept links and switch frames between them (and the
//! TAP device, unless `--no-tap`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etherws_core::log::{suppressed_note, LogLimiter};
use etherws_core::{Authenticates, Listener, Node, PortConfig, PortKind, TransportError};
use futures::future::{self, Either};
use futures::FutureExt;
use smol::Timer;
use url::Url;

use crate::cli::ServerArgs;
use crate::node::{attach_tap, build_node, run_port, spawn_housekeeping, until_stopped};
use crate::runtime::{Ex, Signal};
use crate::transport::Transports;

/// Connections that did not become ports (failed handshakes, refusals):
/// counted in all and by reason, and logged at most 20 lines per 10 s.
pub struct Refused {
    total: Arc<AtomicU64>,
    by_reason: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    log: LogLimiter,
}

impl Default for Refused {
    fn default() -> Self {
        Refused {
            total: Arc::new(AtomicU64::new(0)),
            by_reason: std::sync::Mutex::default(),
            log: LogLimiter::new(20, Duration::from_secs(10)),
        }
    }
}

/// Why a connection did not become a port, in one word (the metrics'
/// `reason` label).
fn reason(e: &TransportError) -> &'static str {
    let text = e.to_string();
    let status = |codes: &[&str]| {
        codes
            .iter()
            .any(|c| text.contains(&format!("HTTP {c}")) || text.contains(&format!("QUIC {c}")))
    };
    match e {
        TransportError::Refused(_) if status(&["401"]) => "auth",
        TransportError::Refused(_) if status(&["429"]) => "throttled",
        TransportError::Refused(_) if status(&["503"]) || text.contains("--max-") => "limit",
        TransportError::Refused(_) if text.contains("TLS") => "tls",
        TransportError::Refused(_) => "protocol",
        TransportError::Handshake(m) if m.contains("TLS") => "tls",
        TransportError::Handshake(_) => "handshake",
        TransportError::Timeout(_) => "timeout",
        TransportError::Io { .. } => "io",
        _ => "other",
    }
}

impl Refused {
    fn note(&self, e: &TransportError) {
        let total = self.total.fetch_add(1, Relaxed) + 1;
        *self
            .by_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason(e))
            .or_insert(0) += 1;
        if let Some(s) = self.log.check(Instant::now()) {
            log::warn!(
                "connection refused: {e} ({total} in all){}",
                suppressed_note(s)
            );
        }
    }

    /// Refusals so far, by reason.
    pub fn by_reason(&self) -> Vec<(&'static str, u64)> {
        let m = self.by_reason.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(r, n)| (*r, *n)).collect()
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
    let port_only = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    // `8080` and `:8080`: every IPv4 address.
    let listen = if port_only(listen) {
        format!("0.0.0.0:{listen}")
    } else if listen.strip_prefix(':').is_some_and(port_only) {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_string()
    };
    if !listen.starts_with('[') && listen.matches(':').count() > 1 {
        let (ip, port) = listen.rsplit_once(':').unwrap_or((&listen, ""));
        bail!("--listen {listen:?}: an IPv6 address needs brackets: [{ip}]:{port}");
    }
    // The port must be written out: the URL drops a scheme's default one
    // (443 for wss, 80 for ws), so look at what was given.
    let has_port = listen
        .rsplit_once(':')
        .is_some_and(|(host, p)| !host.is_empty() && port_only(p) && p.parse::<u16>().is_ok());
    if !has_port {
        bail!(
            "--listen {listen:?} needs a port (ADDR:PORT, e.g. 0.0.0.0:8080, [::]:8080 or :8080)"
        );
    }
    let scheme = if tls { "wss" } else { "ws" };
    let url = Url::parse(&format!("{scheme}://{listen}{path}"))
        .with_context(|| format!("bad --listen address {listen:?} (expected ADDR:PORT)"))?;
    Ok(url)
}

/// Every listener enforces the server's authentication policy, or the
/// server does not start: a listener that would let anyone in beside
/// `--htpasswd` is an open door the operator did not mean.
pub fn enforces_policy(url: &Url, a: Authenticates) -> Result<()> {
    match a {
        Authenticates::Users | Authenticates::SharedKey => Ok(()),
        _ if url.scheme() == "udp" => bail!(
            "--htpasswd: the listener {url} cannot check passwords (udp:// has no per-user \
             identity) and would let anyone in; give it --psk-file (one key shared by all \
             its clients), or remove it"
        ),
        _ => bail!(
            "--htpasswd: the listener {url} ({} transport) cannot check passwords and would \
             let anyone in; remove it, or run it in a server without --htpasswd",
            url.scheme()
        ),
    }
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
        let t = registry.resolve(url)?;
        if transports.gate.requires_auth() {
            enforces_policy(url, t.authenticates())?;
            if url.scheme() == "ws" {
                log::warn!(
                    "--htpasswd on {url}: passwords cross the network in clear text there \
                     (fine only behind a TLS-terminating proxy on this host; wss:// or quic:// encrypt them)"
                );
            }
        }
    }
    let mut wired = build_node(&args.tap, &args.switch)?;
    wired.role = "server";
    wired.settings = crate::node::settings(&args.tap, &args.switch, &args.link);
    wired.gate = Some(transports.gate.clone());
    wired.registry = transports.registry();
    let node = wired.node.clone();
    let tap = if args.no_tap {
        None
    } else {
        let (task, name) = attach_tap(&ex, &node, &args.tap)?;
        wired.name = name;
        Some(task)
    };
    let mut listeners = Vec::new();
    for url in &urls {
        let listener = match registry.listen(url, &transports.params).await {
            Ok(l) => l,
            Err(e) => {
                let port = url.port_or_known_default();
                let at = match (url.host_str(), port) {
                    (Some(h), Some(p)) => format!("{}://{h}:{p}{}", url.scheme(), url.path()),
                    _ => url.to_string(),
                };
                let text = e.to_string();
                let hint = if text.contains("Permission denied") && port.is_some_and(|p| p < 1024) {
                    " (ports below 1024 need root or CAP_NET_BIND_SERVICE: \
                     AmbientCapabilities=CAP_NET_BIND_SERVICE in a systemd unit)"
                } else if text.contains("Address already in use") {
                    " (another program listens there: `ss -ltnup` tells which)"
                } else {
                    ""
                };
                bail!("cannot listen on {at}: {e}{hint}");
            }
        };
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
        wired.listeners.push(shown);
        listeners.push(listener);
    }
    spawn_housekeeping(&ex, &node, &args.switch);
    if transports.gate.requires_auth() {
        let gate = transports.gate.clone();
        ex.spawn(async move {
            loop {
                Timer::after(etherws_auth::WATCH_EVERY).await;
                let g = gate.clone();
                if let Some(line) = smol::unblock(move || g.refresh()).await {
                    log::info!("{line}");
                }
            }
        })
        .detach();
    }

    let refused = Arc::new(Refused::default());
    wired.add_counter("connections refused", refused.total.clone());
    wired.refused = Some(refused.clone());
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

    let wired = Arc::new(wired);
    crate::service::start(
        &ex,
        wired.clone(),
        registry.clone(),
        transports.params.clone(),
        &args.service,
    )
    .await?;
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
    crate::node::stopping(&wired);
    // Stop accepting before closing the ports: clients that reconnect at
    // once must not slip in after the shutdown began.
    for a in accepts {
        a.cancel().await;
    }
    crate::node::close_ports(&wired, args.tap.down.as_ref().filter(|_| !args.no_tap)).await;
    result
}

/// Accepts links for as long as the server runs; each one's handshake
/// runs on its own task, so a slow peer holds up nobody. A connection
/// refused at once (a limit) costs nothing more: the next accept follows
/// at once. Only a failing accept (out of file descriptors, memory) backs
/// off, 5 ms doubling to 250 ms while it lasts, logged at most once a
/// second: short enough that connections still get through as soon as
/// descriptors free up, long enough not to spin.
async fn accept_loop(ex: Ex, node: Node, mut listener: Box<dyn Listener>, refused: Arc<Refused>) {
    let mut backoff = AcceptBackoff::default();
    let fail_log = LogLimiter::new(1, Duration::from_secs(1));
    loop {
        match listener.accept().await {
            Ok(pending) => {
                backoff.reset();
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
            Err(e @ TransportError::Refused(_)) => {
                backoff.reset();
                refused.note(&e);
            }
            Err(e) => {
                let wait = backoff.next();
                if let Some(s) = fail_log.check(Instant::now()) {
                    log::warn!(
                        "accept failed: {e}; retrying in {wait:?}{}",
                        suppressed_note(s)
                    );
                }
                Timer::after(wait).await;
            }
        }
    }
}

/// The wait after a failed accept: doubles while accepts fail.
#[derive(Default)]
struct AcceptBackoff(Option<Duration>);

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_millis(250);

    fn next(&mut self) -> Duration {
        let d = self.0.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        self.0 = Some(d);
        d
    }

    fn reset(&mut self) {
        self.0 = None;
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
        // The scheme's default port is still a port (README's example).
        assert_eq!(u("0.0.0.0:443", true).unwrap(), "wss://0.0.0.0/x");
        assert_eq!(u("0.0.0.0:80", false).unwrap(), "ws://0.0.0.0/x");
        assert_eq!(u("8080", false).unwrap(), "ws://0.0.0.0:8080/x");
        assert_eq!(u(":8080", false).unwrap(), "ws://0.0.0.0:8080/x");
        assert_eq!(u("[::1]:8081", false).unwrap(), "ws://[::1]:8081/x");
        let e = u("::1:8081", false).unwrap_err().to_string();
        assert!(e.contains("brackets: [::1]:8081"), "{e}");
        assert!(u("0.0.0.0:99999", false).is_err());
    }

    #[test]
    fn accept_backoff_doubles_to_its_cap_and_resets() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 250, 250]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(5));
    }

    #[test]
    fn every_listener_enforces_the_policy_or_none_starts() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(enforces_policy(&url("ws://0.0.0.0:1/"), Authenticates::Users).is_ok());
        assert!(enforces_policy(&url("udp://0.0.0.0:1"), Authenticates::SharedKey).is_ok());
        let e = enforces_policy(&url("udp://0.0.0.0:1"), Authenticates::No).unwrap_err();
        assert!(e.to_string().contains("--psk-file"), "{e}");
        let e = enforces_policy(&url("unix:/run/x"), Authenticates::No).unwrap_err();
        assert!(e.to_string().contains("unix:/run/x"), "{e}");
    }
}
