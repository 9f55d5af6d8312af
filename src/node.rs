//! Wiring shared by server and client: the node, its TAP port, the
//! housekeeping tasks, and reporting.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use etherws_core::tap::{Tap, TapConfig};
use etherws_core::{Node, NodeConfig, PortConfig, PortEnd, PortKind, SwitchConfig};
use smol::Timer;

use crate::cli::{SwitchArgs, TapArgs};
use crate::runtime::{Ex, Signal};

pub fn node_config(tap: &TapArgs, sw: &SwitchArgs) -> NodeConfig {
    let mut cfg = NodeConfig::for_mtu(usize::from(tap.mtu));
    cfg.queue_len = sw.queue.max(1);
    cfg.switch = SwitchConfig {
        ageing: Duration::from_secs(sw.ageing),
        hub: sw.hub,
    };
    cfg
}

/// Creates the TAP device and attaches it to the node. The returned task
/// ends only if the device fails, which is fatal for the node.
pub fn attach_tap(ex: &Ex, node: &Node, args: &TapArgs) -> Result<smol::Task<PortEnd>> {
    let tap = Tap::create(&TapConfig {
        name: args.tap.clone(),
        mtu: args.mtu,
        address: args.address,
        mac: args.mac,
    })
    .context("cannot set up the TAP device")?;
    match args.address {
        Some((ip, p)) => log::info!("TAP {} up, MTU {}, address {ip}/{p}", tap.name(), tap.mtu()),
        None => log::info!("TAP {} up, MTU {}", tap.name(), tap.mtu()),
    }
    let port = node.attach(tap.into_link(), PortKind::Tap, PortConfig::default());
    ex.spawn(port.writer).detach();
    Ok(ex.spawn(port.reader))
}

/// Periodic FDB expiry and optional counter logging.
pub fn spawn_housekeeping(ex: &Ex, node: &Node, sw: &SwitchArgs) {
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

/// Prints counters and the forwarding table to stdout (SIGUSR1 and exit).
pub fn report(node: &Node) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "frames switched: {}", node.frames_switched());
    for p in node.ports() {
        let _ = writeln!(out, "{p}");
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
    let _ = out.flush();
}

/// Detaches every port so links close cleanly (WebSocket Close frames),
/// waiting at most two seconds for the writers to finish.
pub async fn shutdown(node: &Node) {
    node.detach_all();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while node.live_writers() > 0 && std::time::Instant::now() < deadline {
        Timer::after(Duration::from_millis(10)).await;
    }
}

/// Serves signals until a stop is requested.
pub async fn until_stopped(node: &Node, signals: &async_channel::Receiver<Signal>) {
    while let Ok(s) = signals.recv().await {
        match s {
            Signal::Stop => {
                log::info!("shutting down");
                return;
            }
            Signal::Report => report(node),
            Signal::Reload => log::info!("SIGHUP: nothing to reload"),
        }
    }
}
