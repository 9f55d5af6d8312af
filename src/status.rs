//! One snapshot of a running node, many views: the SIGUSR1 report, the
//! control socket's `status` and `fdb` (and so `etherws status`), the
//! Prometheus metrics and the status page all read [`Snapshot::take`];
//! none keeps counters of its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::node::Wired;

/// The program's version with its git revision, e.g. `0.1.0 (91b8bd3)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ETHERWS_REV"), ")");

/// Seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A node at one moment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    /// `server`, `client` or `stdio`.
    pub role: String,
    /// The node's name (its control socket is `/run/etherws/NAME.sock`).
    pub name: String,
    /// Unix seconds when the node started, and now.
    pub started: f64,
    pub now: f64,
    pub frames_switched: u64,
    /// Where a server listens (the addresses bound).
    #[serde(default)]
    pub listeners: Vec<String>,
    /// The settings the node runs with (MTU, switch, keepalive, filters),
    /// by flag name.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    pub ports: Vec<PortView>,
    pub fdb: Vec<FdbView>,
    pub filters: Vec<FilterView>,
    /// Node-wide counters by name (refused connections, transports' drops,
    /// authentication), in a stable order.
    pub counters: BTreeMap<String, u64>,
}

/// One port.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortView {
    pub id: u32,
    /// `tap` or `link`.
    pub kind: String,
    /// The transport's scheme (`tap`, `ws`, `wss`, `udp`, `quic`...).
    pub transport: String,
    /// `scheme://[user@]remote`, as logs show it.
    pub name: String,
    pub user: Option<String>,
    /// The peer's address (behind a trusted proxy: the forwarded one, and
    /// the proxy's), or the device's name.
    pub remote: String,
    /// Unix seconds: attached, last frame received.
    pub since: f64,
    pub last_rx: Option<f64>,
    /// The latest keepalive round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Dropped frames by reason (`runt`, `queue_full`, `spoof`...), the
    /// reasons with none left out.
    pub drops: BTreeMap<String, u64>,
    /// Super-frames cross this link whole.
    pub offload: bool,
}

/// One forwarding-table entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FdbView {
    pub vlan: u16,
    pub mac: String,
    pub port: u32,
    pub age_s: u64,
}

/// One filter of a chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FilterView {
    /// `ingress` or `egress`.
    pub chain: String,
    pub name: String,
    pub path: String,
    pub passed: u64,
    pub dropped: u64,
    pub rewritten: u64,
    pub faults: u64,
    pub unloaded: bool,
    pub instances: usize,
    /// The filter's own counters.
    pub counters: BTreeMap<String, u64>,
}

impl Snapshot {
    /// Reads every counter of `w` once.
    pub fn take(w: &Wired) -> Snapshot {
        let node = &w.node;
        let ports = node
            .ports()
            .into_iter()
            .map(|p| PortView {
                id: p.id.0,
                kind: p.kind.as_str().to_string(),
                transport: p.peer.scheme.to_string(),
                name: p.name.clone(),
                user: p.user.clone(),
                remote: p.peer.remote.clone(),
                since: unix(p.since),
                last_rx: p.last_rx.map(unix),
                rtt_ms: p
                    .probe
                    .as_ref()
                    .and_then(|pr| pr.rtt())
                    .map(|d| d.as_secs_f64() * 1000.0),
                rx_frames: p.counts.rx_frames,
                rx_bytes: p.counts.rx_bytes,
                tx_frames: p.counts.tx_frames,
                tx_bytes: p.counts.tx_bytes,
                drops: p
                    .counts
                    .drops
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (r.as_str().to_string(), *n))
                    .collect(),
                offload: p.offload,
            })
            .collect();
        let fdb = node
            .fdb()
            .into_iter()
            .map(|r| FdbView {
                vlan: r.vlan,
                mac: r.mac.to_string(),
                port: r.port.0,
                age_s: r.age.as_secs(),
            })
            .collect();
        let mut filters = Vec::new();
        for c in &w.chains {
            for f in c.filters().iter() {
                let st = f.stats();
                filters.push(FilterView {
                    chain: c.label().to_string(),
                    name: f.name().to_string(),
                    path: f.spec().path.display().to_string(),
                    passed: st.passed(),
                    dropped: st.dropped(),
                    rewritten: st.rewritten(),
                    faults: st.faults.load(Relaxed),
                    unloaded: f.is_unloaded(),
                    instances: f.instances(),
                    counters: st.custom().into_iter().collect(),
                });
            }
        }
        let mut counters = BTreeMap::new();
        for (name, v) in &w.counters {
            counters.insert(name.to_string(), v.load(Relaxed));
        }
        for (name, v) in w.registry.counters() {
            counters.insert(name, v);
        }
        let auth = w.gate.iter().filter(|g| g.requires_auth());
        for (name, v) in auth.flat_map(|g| g.stats().counters()) {
            counters.insert(name.to_string(), v.load(Relaxed));
        }
        Snapshot {
            version: VERSION.to_string(),
            role: w.role.to_string(),
            name: w.name.clone(),
            started: unix(w.started),
            now: unix(SystemTime::now()),
            frames_switched: node.frames_switched(),
            listeners: w.listeners.clone(),
            settings: w.settings.clone(),
            ports,
            fdb,
            filters,
            counters,
        }
    }

    /// The report of SIGUSR1 and exit: one line per counter, port, filter
    /// and table entry (the lines tests and scripts read), ending with
    /// `end of report`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "report of {} {} at {}",
            self.role,
            self.name,
            rfc3339(self.now)
        );
        let _ = writeln!(out, "frames switched: {}", self.frames_switched);
        for (name, v) in &self.counters {
            if *v > 0 || name == "connections refused" {
                let _ = writeln!(out, "{name}: {v}");
            }
        }
        for p in &self.ports {
            let _ = write!(
                out,
                "port {} {} {}: rx_frames={} rx_bytes={} tx_frames={} tx_bytes={}",
                p.id, p.kind, p.name, p.rx_frames, p.rx_bytes, p.tx_frames, p.tx_bytes
            );
            for (r, n) in &p.drops {
                let _ = write!(out, " drop_{r}={n}");
            }
            out.push('\n');
        }
        for f in &self.filters {
            let _ = writeln!(
                out,
                "filter {} {}{}: calls={} passed={} dropped={} rewritten={} faults={} instances={}",
                f.chain,
                f.name,
                if f.unloaded { " (unloaded)" } else { "" },
                f.passed + f.dropped,
                f.passed,
                f.dropped,
                f.rewritten,
                f.faults,
                f.instances
            );
            for (n, v) in &f.counters {
                let _ = writeln!(out, "filter {} {} counter {n}={v}", f.chain, f.name);
            }
        }
        let _ = writeln!(out, "fdb: {} entries", self.fdb.len());
        for r in &self.fdb {
            let _ = writeln!(
                out,
                "fdb vlan {} mac {} port {} age {}s",
                r.vlan, r.mac, r.port, r.age_s
            );
        }
        out.push_str("end of report\n");
        out
    }

    /// `etherws status`: what `wg show` shows for WireGuard, per port.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let up = Duration::from_secs_f64((self.now - self.started).max(0.0));
        let _ = writeln!(
            out,
            "node: {} ({}, etherws {})\n  up: {}\n  frames switched: {}\n  forwarding table: {} entries",
            self.name,
            self.role,
            self.version,
            ago(up),
            self.frames_switched,
            self.fdb.len()
        );
        for p in &self.ports {
            let _ = writeln!(out, "\nport {}: {} {}", p.id, p.kind, p.name);
            if let Some(u) = &p.user {
                let _ = writeln!(out, "  user: {u}");
            }
            let _ = writeln!(out, "  transport: {}", p.transport);
            let _ = writeln!(out, "  remote: {}", p.remote);
            let since = Duration::from_secs_f64((self.now - p.since).max(0.0));
            let _ = writeln!(out, "  connected: {} ago", ago(since));
            match p.last_rx {
                Some(t) => {
                    let d = Duration::from_secs_f64((self.now - t).max(0.0));
                    let _ = writeln!(out, "  last frame received: {} ago", ago(d));
                }
                None => {
                    let _ = writeln!(out, "  last frame received: never");
                }
            }
            if let Some(rtt) = p.rtt_ms {
                let _ = writeln!(out, "  keepalive rtt: {rtt:.2} ms");
            }
            let _ = writeln!(
                out,
                "  transfer: {} received ({} frames), {} sent ({} frames)",
                bytes(p.rx_bytes),
                p.rx_frames,
                bytes(p.tx_bytes),
                p.tx_frames
            );
            if !p.drops.is_empty() {
                let d: Vec<String> = p.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
                let _ = writeln!(out, "  dropped: {}", d.join(", "));
            }
            if p.offload {
                let _ = writeln!(out, "  offload: super-frames cross whole");
            }
        }
        for f in &self.filters {
            let _ = writeln!(
                out,
                "\nfilter {} {} ({}): {} passed, {} dropped, {} rewritten, {} faults{}",
                f.chain,
                f.name,
                f.path,
                f.passed,
                f.dropped,
                f.rewritten,
                f.faults,
                if f.unloaded { ", unloaded" } else { "" }
            );
        }
        let shown: Vec<_> = self.counters.iter().filter(|(_, v)| **v > 0).collect();
        if !shown.is_empty() {
            out.push('\n');
            for (n, v) in shown {
                let _ = writeln!(out, "{n}: {v}");
            }
        }
        out
    }

    /// `etherws fdb`: the forwarding table.
    pub fn fdb_table(&self) -> String {
        let mut out = String::from("VLAN  MAC                PORT  AGE\n");
        for r in &self.fdb {
            let _ = writeln!(out, "{:<5} {} {:<5} {}s", r.vlan, r.mac, r.port, r.age_s);
        }
        out
    }
}

/// `1h 2m 3s`, `4.5s`.
fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `1.50 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Unix seconds as `2026-12-06T13:05:00Z` (UTC).
pub fn rfc3339(t: f64) -> String {
    let secs = t.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_sizes_read_well() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_562_300.0), "2026-12-06T13:05:00Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(ago(Duration::from_secs(3723)), "1h 2m");
    }
}
