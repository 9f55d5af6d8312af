//! Wiring shared by server and client: the node, its TAP port, the
//! housekeeping tasks, and reporting.

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etherws_core::tap::{Tap, TapConfig};
use etherws_core::{Node, NodeConfig, PortConfig, PortEnd, PortKind, SwitchConfig};
use etherws_filter::{Chain, FilterSpec, Host};
use smol::Timer;

use crate::cli::{SwitchArgs, TapArgs};
use crate::runtime::{Ex, Signal};

/// The node plus the filter chains it runs (for reports and SIGHUP).
pub struct Wired {
    pub node: Node,
    pub chains: Vec<Arc<Chain>>,
    /// Node-level counters for the report (name, value).
    pub counters: Vec<(&'static str, Arc<AtomicU64>)>,
    /// Every transport of the program (built-in and a program's own):
    /// reloaded on SIGHUP and counted in the report through the
    /// `Transport` trait, none named here.
    pub registry: etherws_core::Registry,
    /// The server's authentication policy (reloaded on SIGHUP, counted
    /// in the report).
    pub gate: Option<Arc<etherws_auth::Gate>>,
    /// The server's refused connections, by reason (metrics).
    pub refused: Option<Arc<crate::server::Refused>>,
    /// Where a server listens, as logged.
    pub listeners: Vec<String>,
    /// The settings it runs with, by flag name (status views).
    pub settings: std::collections::BTreeMap<String, String>,
    /// `server`, `client` or `stdio`.
    pub role: &'static str,
    /// The node's name: its TAP's (or `etherws` without one); names the
    /// control socket.
    pub name: String,
    pub started: std::time::SystemTime,
}

impl Wired {
    fn new(node: Node, chains: Vec<Arc<Chain>>) -> Wired {
        Wired {
            node,
            chains,
            counters: Vec::new(),
            registry: etherws_core::Registry::new(),
            gate: None,
            refused: None,
            listeners: Vec::new(),
            settings: Default::default(),
            role: "node",
            name: "etherws".to_string(),
            started: std::time::SystemTime::now(),
        }
    }

    pub fn add_counter(&mut self, name: &'static str, value: Arc<AtomicU64>) {
        self.counters.push((name, value));
    }
}

/// Builds the node with its ingress and egress filter chains.
pub fn build_node(tap: &TapArgs, sw: &SwitchArgs) -> Result<Wired> {
    let cfg = node_config(tap, sw);
    if sw.filters.is_empty() && sw.egress_filters.is_empty() {
        return Ok(Wired::new(Node::new(cfg), Vec::new()));
    }
    // One instance of each replicable filter per executor thread: with
    // --threads N > 1 the ports' tasks run on N threads at once.
    let host = Host::new()
        .context("starting the WASM filter host")?
        .with_instances(crate::runtime::threads());
    let chain = |specs: &[String], label: &'static str| -> Result<Arc<Chain>> {
        let specs = specs
            .iter()
            .map(|s| FilterSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let paths: Vec<String> = specs.iter().map(|s| s.path.display().to_string()).collect();
        let c = Chain::load(&host, specs, cfg.max_frame, label).with_context(|| {
            format!(
                "cannot load the {label} filter chain ({})",
                paths.join(", ")
            )
        })?;
        for f in c.filters().iter() {
            log::info!(
                "{label} filter {} loaded from {}",
                f.name(),
                f.spec().path.display()
            );
        }
        Ok(Arc::new(c))
    };
    let ingress = chain(&sw.filters, "ingress")?;
    let egress = chain(&sw.egress_filters, "egress")?;
    Ok(Wired::new(
        Node::with_filters(cfg, ingress.clone(), egress.clone()),
        vec![ingress, egress],
    ))
}

/// The settings a node runs with, by flag name, for status views (and so
/// to compare a node started from a file with one started from flags).
pub fn settings(
    tap: &TapArgs,
    sw: &SwitchArgs,
    link: &crate::cli::LinkArgs,
) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("mtu", tap.mtu.to_string());
    put("offload", (!tap.no_offload).to_string());
    put("hub", sw.hub.to_string());
    put("ageing", sw.ageing.to_string());
    put("fdb-max", sw.fdb_max.to_string());
    put("queue", sw.queue.to_string());
    put("queue-bytes", sw.queue_bytes.to_string());
    put("storm-limit", sw.storm_limit.to_string());
    put("move-guard", sw.move_guard.to_string());
    put("max-macs", sw.max_macs.to_string());
    put("filter", sw.filters.join(" "));
    put("egress-filter", sw.egress_filters.join(" "));
    put("ping-interval", link.ping_interval.to_string());
    put("ping-timeout", link.ping_timeout.to_string());
    put("handshake-timeout", link.handshake_timeout.to_string());
    put("udp-offload", link.udp_offload.to_string());
    m
}

pub fn node_config(tap: &TapArgs, sw: &SwitchArgs) -> NodeConfig {
    let mut cfg = NodeConfig::for_mtu(usize::from(tap.mtu));
    cfg.queue_len = sw.queue.max(1);
    cfg.queue_bytes = sw.queue_bytes.max(1);
    cfg.storm_limit = sw.storm_limit;
    cfg.max_macs_per_link = (sw.max_macs > 0).then_some(sw.max_macs);
    cfg.switch = SwitchConfig {
        ageing: Duration::from_secs(sw.ageing),
        hub: sw.hub,
        max_entries: sw.fdb_max,
        move_guard: Duration::from_secs(sw.move_guard),
    };
    cfg
}

/// Creates the TAP device and attaches it to the node. The returned task
/// ends only if the device fails, which is fatal for the node.
pub fn attach_tap(ex: &Ex, node: &Node, args: &TapArgs) -> Result<(smol::Task<PortEnd>, String)> {
    // The first IPv4 address is set as the device is made; the others (and
    // IPv6 ones) by iproute2 once it is up.
    let first_v4 = args.address.iter().find_map(|(ip, p)| match ip {
        std::net::IpAddr::V4(v4) => Some((*v4, *p)),
        _ => None,
    });
    let mut cfg = TapConfig {
        name: args.tap.clone(),
        mtu: args.mtu,
        address: first_v4,
        mac: args.mac,
        offload: !args.no_offload,
    };
    use etherws_core::tap::TapError;
    let tap = match Tap::create(&cfg) {
        // Only a kernel that lacks the offloads is worth a second try.
        Err(
            e @ (TapError::Busy { .. }
            | TapError::NotATap { .. }
            | TapError::PermissionDenied { .. }),
        ) => return Err(e.into()),
        Err(e) if cfg.offload => {
            // A kernel without IFF_VNET_HDR or TUNSETOFFLOAD still gets a
            // tunnel: frames for the TAP are then finished in software.
            cfg.offload = false;
            let tap = Tap::create(&cfg).context("cannot set up the TAP device")?;
            log::warn!("TAP offloads unavailable ({e}); running without them");
            tap
        }
        other => other.context("cannot set up the TAP device")?,
    };
    let dev = tap.name().to_string();
    for (ip, p) in &args.address {
        if Some((*ip, *p)) == first_v4.map(|(v4, p)| (std::net::IpAddr::V4(v4), p)) {
            continue;
        }
        ip_command(&["addr", "add", &format!("{ip}/{p}"), "dev", &dev])
            .with_context(|| format!("cannot set address {ip}/{p} on {dev}"))?;
    }
    if let Some(br) = &args.bridge {
        let sys = std::path::Path::new("/sys/class/net").join(br);
        if !sys.exists() {
            bail!("--bridge {br}: no such device (make it first: ip link add {br} type bridge)");
        }
        if !sys.join("bridge").exists() {
            bail!("--bridge {br}: {br} is not a bridge");
        }
        ip_command(&["link", "set", "dev", &dev, "master", br])
            .with_context(|| format!("cannot put {dev} into the bridge {br}"))?;
    }
    let addrs: Vec<String> = args
        .address
        .iter()
        .map(|(ip, p)| format!("{ip}/{p}"))
        .collect();
    log::info!(
        "TAP {dev} up, MTU {}{}{}",
        tap.mtu(),
        if addrs.is_empty() {
            String::new()
        } else {
            format!(", address {}", addrs.join(", "))
        },
        args.bridge
            .as_ref()
            .map_or(String::new(), |b| format!(", in bridge {b}"))
    );
    if let Some(cmd) = &args.up {
        hook(cmd, &dev, "up").context("the --up command failed; not starting")?;
    }
    // The TAP's own address is pinned to its port: no link may use it.
    let own = PortConfig {
        own_macs: vec![tap.mac()],
        ..PortConfig::default()
    };
    let name = tap.name().to_string();
    let port = node.attach(tap.into_link(), PortKind::Tap, own);
    let ex2 = ex.clone();
    Ok((ex.spawn(async move { run_port(&ex2, port).await }), name))
}

/// Runs `ip ARGS...`; its stderr is the error.
fn ip_command(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs an `--up`/`--down` command with `sh -c`, the device and the event
/// in its environment.
pub fn hook(cmd: &str, dev: &str, event: &str) -> Result<()> {
    log::info!("--{event}: {cmd}");
    let st = std::process::Command::new("sh")
        .args(["-c", cmd])
        .env("ETHERWS_DEVICE", dev)
        .env("ETHERWS_EVENT", event)
        .status()
        .with_context(|| format!("cannot run --{event} {cmd:?}"))?;
    if !st.success() {
        bail!("--{event} {cmd:?} exited with {st}");
    }
    Ok(())
}

/// Runs an attached port to its end, its writer on a task of `ex`
/// (`AttachedPort::run`: once detached, both get `PORT_GRACE`).
pub async fn run_port(ex: &Ex, port: etherws_core::AttachedPort) -> PortEnd {
    port.run(|writer| ex.spawn(writer)).await
}

/// How often learning events are summed up in the log.
const FDB_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The reactor keeper, periodic FDB expiry and optional counter logging.
pub fn spawn_housekeeping(ex: &Ex, node: &Node, sw: &SwitchArgs) {
    let n = node.clone();
    crate::runtime::keep_reactor(ex, move || n.frames_switched());
    let n = node.clone();
    let every = Duration::from_secs((sw.ageing / 4).clamp(1, 60));
    ex.spawn(async move {
        loop {
            Timer::after(every).await;
            let gone = n.expire();
            if gone > 0 {
                log::debug!("fdb: {gone} entries aged out");
            }
        }
    })
    .detach();
    // Learning is logged per station at debug level only (a peer spraying
    // source MACs must not flood the log); this is the operator's view.
    let n = node.clone();
    ex.spawn(async move {
        loop {
            Timer::after(FDB_SUMMARY_EVERY).await;
            let s = n.take_fdb_summary();
            if s.learned + s.moved + s.not_learned + s.moves_refused > 0 {
                log::info!(
                    "fdb: {} stations learned, {} moved, {} not learned (table full), \
                     {} moves refused (move guard) in the last {}s; {} entries",
                    s.learned,
                    s.moved,
                    s.not_learned,
                    s.moves_refused,
                    FDB_SUMMARY_EVERY.as_secs(),
                    s.entries
                );
            }
        }
    })
    .detach();
    if sw.stats_interval > 0 {
        let n = node.clone();
        let every = Duration::from_secs(sw.stats_interval);
        ex.spawn(async move {
            loop {
                Timer::after(every).await;
                for p in n.ports() {
                    log::info!("stats: {p}");
                }
            }
        })
        .detach();
    }
}

/// Writes counters, filters and the forwarding table to stderr, after a
/// line with the time (SIGUSR1, and at exit unless `-q`): the same
/// snapshot `etherws status` and the metrics read.
pub fn report(w: &Wired) {
    let text = crate::status::Snapshot::take(w).report();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// The start of the end of a run: systemd is told, and the report is
/// printed (unless `--quiet`).
pub fn stopping(w: &Wired) {
    crate::service::stopping();
    if !crate::QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        report(w);
    }
}

/// The end of a run: every port closes in order (Close sent, the peer's
/// awaited, within the grace period), then the `--down` hook runs.
pub async fn close_ports(w: &Wired, down: Option<&String>) {
    w.node.shutdown().await;
    if let Some(cmd) = down {
        if let Err(e) = hook(cmd, &w.name, "down") {
            log::warn!("{e:#}");
        }
    }
}

/// Serves signals until a stop is requested.
pub async fn until_stopped(w: &Wired, signals: &async_channel::Receiver<Signal>) {
    while let Ok(s) = signals.recv().await {
        match s {
            Signal::Stop => {
                log::info!("shutting down");
                return;
            }
            Signal::Report => report(w),
            Signal::Reload => {
                reload(w).await;
            }
        }
    }
}

/// SIGHUP: reload every filter chain, each swapped atomically; a chain
/// that fails to load keeps its old filters. Compiling wasm is slow, so it
/// runs on a blocking thread, not on the executor.
pub async fn reload(w: &Wired) -> Vec<String> {
    let mut lines = Vec::new();
    let mut say = |ok: bool, line: String| {
        if ok {
            log::info!("reload: {line}");
        } else {
            log::error!("reload: {line}");
        }
        lines.push(line);
    };
    // Reading files: off the executor.
    let registry = w.registry.clone();
    for r in smol::unblock(move || registry.reload()).await {
        match r {
            Ok(d) => say(true, d),
            Err(f) => say(false, f),
        }
    }
    if let Some(gate) = w.gate.clone() {
        match smol::unblock(move || gate.reload()).await {
            Some(Ok(line)) => say(true, line),
            Some(Err(e)) => say(
                false,
                format!("htpasswd not reloaded, keeping the old users: {e}"),
            ),
            None => {}
        }
    }
    if let Some(file) = crate::config::loaded() {
        let f = file.clone();
        match smol::unblock(move || crate::config::changed(&f)).await {
            Ok(keys) if keys.is_empty() => {}
            Ok(keys) => say(
                false,
                format!(
                    "config {}: {} changed; that takes a restart (certificates, the htpasswd \
                     file and the filters are reloaded here)",
                    file.path.display(),
                    keys.join(", ")
                ),
            ),
            Err(e) => say(false, format!("{e:#}")),
        }
    }
    if w.chains.is_empty() {
        say(true, "no filters to reload".into());
    }
    for c in &w.chains {
        let chain = c.clone();
        match smol::unblock(move || chain.reload()).await {
            Ok(n) => say(true, format!("{} chain reloaded ({n} filters)", c.label())),
            Err(e) => say(
                false,
                format!("{} chain not reloaded, keeping the old one: {e}", c.label()),
            ),
        }
    }
    lines
}
