//! The opt-in HTTP listener (`--metrics ADDR:PORT`): Prometheus metrics
//! at `/metrics` (the official `prometheus-client` encoder, OpenMetrics
//! text), a live status page at `/` and its data at `/status.json`. Read
//! only; every view is drawn from one [`Snapshot`] per request, and the
//! page's charts from a short history of the ports' byte counters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use futures::{AsyncReadExt, AsyncWriteExt};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;
use smol::net::{TcpListener, TcpStream};

use crate::control::Service;
use crate::status::{unix, Snapshot};

/// The page: HTML, CSS and script in one file, no external assets.
const PAGE: &str = include_str!("status.html");

/// How often the ports' counters are sampled for the page's charts, and
/// how many samples are kept (5 minutes).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const SAMPLES: usize = 150;

/// One sample: unix time and, per port, (rx bytes, tx bytes).
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub t: f64,
    pub ports: BTreeMap<u32, (u64, u64)>,
}

/// The recent samples, oldest first.
#[derive(Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    fn push(&self, s: Sample) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= SAMPLES {
            q.pop_front();
        }
        q.push_back(s);
    }

    fn all(&self) -> Vec<Sample> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// What `/status.json` answers.
#[derive(Serialize)]
struct PageData<'a> {
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    history: Vec<Sample>,
}

/// Binds the listener (before the node is reported ready).
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for --metrics on {addr}"))
}

/// Serves metrics and the page; samples the history meanwhile.
pub async fn serve(svc: Arc<Service>, listener: TcpListener) {
    let history = Arc::new(History::default());
    {
        let (svc, history) = (svc.clone(), history.clone());
        svc.ex
            .clone()
            .spawn(async move {
                loop {
                    let now = SystemTime::now();
                    let ports = svc
                        .wired
                        .node
                        .ports()
                        .into_iter()
                        .map(|p| (p.id.0, (p.counts.rx_bytes, p.counts.tx_bytes)))
                        .collect();
                    history.push(Sample {
                        t: unix(now),
                        ports,
                    });
                    smol::Timer::after(SAMPLE_EVERY).await;
                }
            })
            .detach();
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics(svc.clone())));
    let registry = Arc::new(registry);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            smol::Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let (svc2, registry, history) = (svc.clone(), registry.clone(), history.clone());
        svc.ex
            .spawn(async move {
                let answer = smol::future::or(answer(&svc2, &registry, &history, stream), async {
                    smol::Timer::after(Duration::from_secs(10)).await;
                    Ok(())
                });
                if let Err(e) = answer.await {
                    log::debug!("metrics: {e:#}");
                }
            })
            .detach();
    }
}

/// Reads one request and answers it, then closes.
async fn answer(
    svc: &Arc<Service>,
    registry: &Registry,
    history: &History,
    mut stream: TcpStream,
) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            return respond(&mut stream, 431, "text/plain", b"request head too long\n").await;
        }
    }
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hdrs);
    if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
        return respond(&mut stream, 400, "text/plain", b"bad request\n").await;
    }
    if req.method != Some("GET") {
        return respond(&mut stream, 405, "text/plain", b"read only: GET\n").await;
    }
    let path = req.path.unwrap_or("/").split('?').next().unwrap_or("/");
    let openmetrics = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("accept")
            && String::from_utf8_lossy(h.value).contains("application/openmetrics-text")
    });
    match path {
        "/metrics" => {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry)
                .map_err(|_| anyhow::anyhow!("encoding metrics"))?;
            if openmetrics {
                respond(
                    &mut stream,
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text.as_bytes(),
                )
                .await
            } else {
                let plain = prometheus_text(&text);
                respond(
                    &mut stream,
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    plain.as_bytes(),
                )
                .await
            }
        }
        "/status.json" => {
            let snapshot = Snapshot::take(&svc.wired);
            let body = serde_json::to_vec(&PageData {
                snapshot: &snapshot,
                history: history.all(),
            })?;
            respond(&mut stream, 200, "application/json", &body).await
        }
        "/" | "/index.html" => {
            respond(
                &mut stream,
                200,
                "text/html; charset=utf-8",
                PAGE.as_bytes(),
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                404,
                "text/plain",
                b"not found: /, /metrics, /status.json\n",
            )
            .await
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, ctype: &str, body: &[u8]) -> Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    Ok(())
}

/// The encoder's OpenMetrics as the older Prometheus text format (0.0.4),
/// for clients that do not ask for OpenMetrics (curl, `promtool check
/// metrics`): a counter family is named with its `_total` in `HELP` and
/// `TYPE`, and the `UNIT` and `EOF` lines go. Samples are unchanged.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for l in openmetrics.lines() {
        if l.starts_with("# UNIT ") || l == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| Some((*p, l.strip_prefix(p)?)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}\n"));
                } else {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// The metrics, drawn from a snapshot at each scrape.
struct Metrics(Arc<Service>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A counter's report name as a metric name: `udp stray datagrams` →
/// `etherws_udp_stray_datagrams` (parentheses dropped).
fn metric_name(report_name: &str) -> String {
    let plain: String = report_name
        .split('(')
        .next()
        .unwrap_or(report_name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let words: Vec<&str> = plain.split('_').filter(|w| !w.is_empty()).collect();
    format!("etherws_{}", words.join("_"))
}

type Labels = Vec<(&'static str, String)>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = Snapshot::take(&self.0.wired);
        let info: Labels = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("revision", env!("ETHERWS_REV").to_string()),
            ("role", s.role.clone()),
            ("name", s.name.clone()),
        ];
        gauge(
            &mut enc,
            "etherws_build_info",
            "The program's version and revision (always 1).",
            None,
            &[(info, 1.0)],
        )?;
        gauge(
            &mut enc,
            "etherws_start_time",
            "When the node started (Unix time).",
            Some(&Unit::Seconds),
            &[(vec![], s.started)],
        )?;
        counter(
            &mut enc,
            "etherws_frames_switched",
            "Frames the switch forwarded or flooded.",
            None,
            &[(vec![], s.frames_switched)],
        )?;
        gauge(
            &mut enc,
            "etherws_fdb_entries",
            "Entries in the forwarding table.",
            None,
            &[(vec![], s.fdb.len() as f64)],
        )?;
        gauge(
            &mut enc,
            "etherws_ports",
            "Ports attached (the TAP and links).",
            None,
            &[(vec![], s.ports.len() as f64)],
        )?;
        let port_labels = |p: &crate::status::PortView| -> Labels {
            vec![
                ("port", p.id.to_string()),
                ("kind", p.kind.clone()),
                ("transport", p.transport.clone()),
                ("user", p.user.clone().unwrap_or_default()),
                ("remote", p.remote.clone()),
            ]
        };
        let per = |f: fn(&crate::status::PortView) -> u64| -> Vec<(Labels, u64)> {
            s.ports.iter().map(|p| (port_labels(p), f(p))).collect()
        };
        counter(
            &mut enc,
            "etherws_port_rx",
            "Bytes received on a port.",
            Some(&Unit::Bytes),
            &per(|p| p.rx_bytes),
        )?;
        counter(
            &mut enc,
            "etherws_port_tx",
            "Bytes sent out of a port.",
            Some(&Unit::Bytes),
            &per(|p| p.tx_bytes),
        )?;
        counter(
            &mut enc,
            "etherws_port_rx_frames",
            "Frames received on a port.",
            None,
            &per(|p| p.rx_frames),
        )?;
        counter(
            &mut enc,
            "etherws_port_tx_frames",
            "Frames sent out of a port.",
            None,
            &per(|p| p.tx_frames),
        )?;
        let mut drops = Vec::new();
        for p in &s.ports {
            for (reason, n) in &p.drops {
                let mut l = port_labels(p);
                l.push(("reason", reason.clone()));
                drops.push((l, *n));
            }
        }
        counter(
            &mut enc,
            "etherws_port_drops",
            "Frames a port dropped, by reason.",
            None,
            &drops,
        )?;
        let since: Vec<(Labels, f64)> = s.ports.iter().map(|p| (port_labels(p), p.since)).collect();
        gauge(
            &mut enc,
            "etherws_port_start_time",
            "When the port was attached (Unix time).",
            Some(&Unit::Seconds),
            &since,
        )?;
        let rtt: Vec<(Labels, f64)> = s
            .ports
            .iter()
            .filter_map(|p| Some((port_labels(p), p.rtt_ms? / 1000.0)))
            .collect();
        gauge(
            &mut enc,
            "etherws_port_rtt",
            "The port's latest keepalive round trip.",
            Some(&Unit::Seconds),
            &rtt,
        )?;
        let mut users: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for p in &s.ports {
            if let Some(u) = &p.user {
                let e = users.entry(u.clone()).or_default();
                e.0 += p.rx_bytes;
                e.1 += p.tx_bytes;
            }
        }
        let by_user = |f: fn(&(u64, u64)) -> u64| -> Vec<(Labels, u64)> {
            users
                .iter()
                .map(|(u, v)| (vec![("user", u.clone())], f(v)))
                .collect()
        };
        counter(
            &mut enc,
            "etherws_user_rx",
            "Bytes received from a user's live links.",
            Some(&Unit::Bytes),
            &by_user(|v| v.0),
        )?;
        counter(
            &mut enc,
            "etherws_user_tx",
            "Bytes sent to a user's live links.",
            Some(&Unit::Bytes),
            &by_user(|v| v.1),
        )?;
        for (name, v) in &s.counters {
            let mut metric = metric_name(name);
            if let Some(base) = metric.strip_suffix("_total") {
                metric = base.to_string();
            }
            counter(
                &mut enc,
                &metric,
                &format!("{name} (as the report says)."),
                None,
                &[(vec![], *v)],
            )?;
        }
        if let Some(refused) = &self.0.wired.refused {
            let rows: Vec<(Labels, u64)> = refused
                .by_reason()
                .into_iter()
                .map(|(r, n)| (vec![("reason", r.to_string())], n))
                .collect();
            counter(
                &mut enc,
                "etherws_handshake_rejects",
                "Connections that did not become ports, by reason.",
                None,
                &rows,
            )?;
        }
        let mut outcomes = Vec::new();
        let mut faults = Vec::new();
        let mut own = Vec::new();
        for f in &s.filters {
            let l = || -> Labels { vec![("chain", f.chain.clone()), ("filter", f.name.clone())] };
            for (o, n) in [
                ("passed", f.passed),
                ("dropped", f.dropped),
                ("rewritten", f.rewritten),
            ] {
                let mut lo = l();
                lo.push(("outcome", o.to_string()));
                outcomes.push((lo, n));
            }
            faults.push((l(), f.faults));
            for (c, v) in &f.counters {
                let mut lc = l();
                lc.push(("counter", c.clone()));
                own.push((lc, *v));
            }
        }
        counter(
            &mut enc,
            "etherws_filter_frames",
            "Frames a filter passed, dropped or rewrote.",
            None,
            &outcomes,
        )?;
        counter(
            &mut enc,
            "etherws_filter_faults",
            "A filter's faults (traps, fuel, memory).",
            None,
            &faults,
        )?;
        counter(
            &mut enc,
            "etherws_filter_counter",
            "A filter's own counters.",
            None,
            &own,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_counters_become_prometheus_text() {
        let om = "# HELP x_frames Frames.\n# TYPE x_frames counter\nx_frames_total 3\n\
                  # HELP x_up Up.\n# TYPE x_up gauge\n# UNIT x_up seconds\nx_up 1.0\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP x_frames_total Frames.\n# TYPE x_frames_total counter\nx_frames_total 3\n\
             # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1.0\n"
        );
    }

    #[test]
    fn report_names_become_metric_names() {
        assert_eq!(
            metric_name("udp stray datagrams"),
            "etherws_udp_stray_datagrams"
        );
        assert_eq!(
            metric_name("udp cookies sent (HELLOs without a valid cookie)"),
            "etherws_udp_cookies_sent"
        );
        assert_eq!(
            metric_name("auth attempts refused (one at a time)"),
            "etherws_auth_attempts_refused"
        );
    }
}
