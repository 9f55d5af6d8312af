//! Wiring shared by server and client: the node, its TAP port, the
//! housekeeping tasks, and reporting.

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
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
    /// Transports to reload on SIGHUP (certificates, htpasswd).
    pub transports: Option<etherws_ws::Ws>,
    /// The udp transport's drop counters, for the report.
    pub udp: Option<Arc<etherws_udp::UdpStats>>,
    /// The quic transport's.
    pub quic: Option<Arc<etherws_quic::QuicStats>>,
    /// The server's authentication policy (reloaded on SIGHUP, counted
    /// in the report).
    pub gate: Option<Arc<etherws_auth::Gate>>,
    /// Write the report to stderr (stdout carries the link: `stdio`).
    pub report_to_stderr: bool,
}

impl Wired {
    pub fn add_counter(&mut self, name: &'static str, value: Arc<AtomicU64>) {
        self.counters.push((name, value));
    }
}

/// Builds the node with its ingress and egress filter chains.
pub fn build_node(tap: &TapArgs, sw: &SwitchArgs) -> Result<Wired> {
    let cfg = node_config(tap, sw);
    if sw.filters.is_empty() && sw.egress_filters.is_empty() {
        return Ok(Wired {
            node: Node::new(cfg),
            chains: Vec::new(),
            counters: Vec::new(),
            transports: None,
            udp: None,
            quic: None,
            gate: None,
            report_to_stderr: false,
        });
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
        let c = Chain::load(&host, specs, cfg.max_frame, label)
            .with_context(|| format!("cannot load the {label} filter chain"))?;
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
    Ok(Wired {
        node: Node::with_filters(cfg, ingress.clone(), egress.clone()),
        chains: vec![ingress, egress],
        counters: Vec::new(),
        transports: None,
        udp: None,
        quic: None,
        gate: None,
        report_to_stderr: false,
    })
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
pub fn attach_tap(ex: &Ex, node: &Node, args: &TapArgs) -> Result<smol::Task<PortEnd>> {
    let mut cfg = TapConfig {
        name: args.tap.clone(),
        mtu: args.mtu,
        address: args.address,
        mac: args.mac,
        offload: !args.no_offload,
    };
    let tap = match Tap::create(&cfg) {
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
    match args.address {
        Some((ip, p)) => log::info!("TAP {} up, MTU {}, address {ip}/{p}", tap.name(), tap.mtu()),
        None => log::info!("TAP {} up, MTU {}", tap.name(), tap.mtu()),
    }
    // The TAP's own address is pinned to its port: no link may use it.
    let own = PortConfig {
        own_macs: vec![tap.mac()],
        ..PortConfig::default()
    };
    let port = node.attach(tap.into_link(), PortKind::Tap, own);
    let ex2 = ex.clone();
    Ok(ex.spawn(async move { run_port(&ex2, port).await }))
}

/// How long a detached port may take to send what is queued, its Close,
/// and to receive the peer's Close; after that its tasks are dropped (a
/// peer that stopped reading must not hold a task, a socket and a full
/// queue forever), which closes the connection.
pub const PORT_GRACE: Duration = Duration::from_secs(2);

/// Runs an attached port to its end: reader and writer run concurrently
/// (the writer on its own task); once the port is detached, both get
/// [`PORT_GRACE`] to finish.
pub async fn run_port(ex: &Ex, port: etherws_core::AttachedPort) -> PortEnd {
    use futures::future::{select, Either};
    let id = port.id;
    let writer = ex.spawn(port.writer);
    let mut reader = port.reader;
    // Until detached, the reader's end (or the detach) decides.
    let end = match select(&mut reader, port.detached).await {
        Either::Left((e, _)) => Some(e),
        Either::Right(_) => None,
    };
    // Dropping `both` (at the deadline) cancels the writer task and drops
    // the link, which closes the connection.
    let both = async move {
        let end = match end {
            Some(e) => e,
            None => reader.await,
        };
        writer.await;
        end
    };
    match select(Box::pin(both), Timer::after(PORT_GRACE)).await {
        Either::Left((end, _)) => end,
        Either::Right(_) => {
            log::warn!(
                "port {id}: did not finish its close within {PORT_GRACE:?}; connection dropped"
            );
            PortEnd::Detached
        }
    }
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

/// Prints counters, filters and the forwarding table to stdout (SIGUSR1
/// and exit).
pub fn report(w: &Wired) {
    let node = &w.node;
    let mut out: Box<dyn Write> = if w.report_to_stderr {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    let _ = writeln!(out, "frames switched: {}", node.frames_switched());
    for (name, v) in &w.counters {
        let _ = writeln!(
            out,
            "{name}: {}",
            v.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let udp = w.udp.iter().flat_map(|u| u.counters());
    let quic = w.quic.iter().flat_map(|q| q.counters());
    let auth = w
        .gate
        .iter()
        .filter(|g| g.requires_auth())
        .flat_map(|g| g.stats().counters());
    for (name, v) in udp.chain(quic).chain(auth) {
        let v = v.load(std::sync::atomic::Ordering::Relaxed);
        if v > 0 {
            let _ = writeln!(out, "{name}: {v}");
        }
    }
    for p in node.ports() {
        let _ = writeln!(out, "{p}");
    }
    for c in &w.chains {
        for line in c.report() {
            let _ = writeln!(out, "{line}");
        }
    }
    let fdb = node.fdb();
    let _ = writeln!(out, "fdb: {} entries", fdb.len());
    for r in fdb {
        let _ = writeln!(
            out,
            "fdb vlan {} mac {} port {} age {}s",
            r.vlan,
            r.mac,
            r.port,
            r.age.as_secs()
        );
    }
    let _ = writeln!(out, "end of report");
    let _ = out.flush();
}

/// Detaches every port so links close cleanly (WebSocket Close frames),
/// waiting for every port to finish, at most [`PORT_GRACE`] and a little.
pub async fn shutdown(node: &Node) {
    node.detach_all();
    let deadline = std::time::Instant::now() + PORT_GRACE + Duration::from_millis(500);
    while node.live_ports() > 0 && std::time::Instant::now() < deadline {
        Timer::after(Duration::from_millis(10)).await;
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
            Signal::Reload => reload(w).await,
        }
    }
}

/// SIGHUP: reload every filter chain, each swapped atomically; a chain
/// that fails to load keeps its old filters. Compiling wasm is slow, so it
/// runs on a blocking thread, not on the executor.
async fn reload(w: &Wired) {
    if let Some(ws) = w.transports.clone() {
        // Reading files and bcrypt-free parsing, but off the executor all
        // the same.
        let (done, failed) = smol::unblock(move || ws.reload()).await;
        for d in done {
            log::info!("SIGHUP: {d}");
        }
        for f in failed {
            log::error!("SIGHUP: {f}");
        }
    }
    if let Some(gate) = w.gate.clone() {
        match smol::unblock(move || gate.reload()).await {
            Some(Ok(line)) => log::info!("SIGHUP: {line}"),
            Some(Err(e)) => {
                log::error!("SIGHUP: htpasswd not reloaded, keeping the old users: {e}")
            }
            None => {}
        }
    }
    if w.chains.is_empty() {
        log::info!("SIGHUP: no filters to reload");
    }
    for c in &w.chains {
        let chain = c.clone();
        match smol::unblock(move || chain.reload()).await {
            Ok(n) => log::info!("SIGHUP: {} chain reloaded ({n} filters)", c.label()),
            Err(e) => log::error!(
                "SIGHUP: {} chain not reloaded, keeping the old one: {e}",
                c.label()
            ),
        }
    }
}
