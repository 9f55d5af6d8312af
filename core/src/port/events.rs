//! What ports tell the operator: drops, learning, refusals and the end of
//! a port, counted and logged rate-limited (one limiter per kind of line,
//! so a peer that misbehaves in a loop cannot flood the log).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::PortEnd;
use crate::log::suppressed_note;
use crate::node::Node;
use crate::stats::{DropReason, PortCounters};
use crate::switch::{Learned, PortId, SwitchDrop};
use crate::transport::LinkError;
use crate::wire::MacAddr;

impl Node {
    /// Logs a port lifecycle line, rate-limited node-wide.
    pub(crate) fn link_line(&self, level: log::Level, msg: std::fmt::Arguments<'_>) {
        if let Some(s) = self.inner.link_log.check(Instant::now()) {
            log::log!(level, "{msg}{}", suppressed_note(s));
        }
    }

    /// Counts a dropped frame and logs it, rate-limited per port.
    pub(crate) fn count_drop(
        &self,
        id: PortId,
        counters: &PortCounters,
        reason: DropReason,
        detail: &dyn std::fmt::Display,
    ) {
        counters.count_drop(reason);
        if let Some(suppressed) = counters.log_limiter().check(Instant::now()) {
            let name = self.port_name(id);
            log::warn!(
                "port {id} ({name}): dropped frame ({reason}): {detail}; total {}{}",
                counters.drops(reason),
                suppressed_note(suppressed)
            );
        }
    }

    /// The port's name (its link's peer, with the user), for log lines.
    fn port_name(&self, id: PortId) -> String {
        crate::datapath::route::read(&self.inner.fabric)
            .slots
            .get(&id)
            .map_or_else(|| "gone".to_string(), |s| s.name.clone())
    }

    /// The line that says a port ended, and why.
    pub(crate) fn note_end(
        &self,
        id: PortId,
        name: &str,
        end: &PortEnd,
        took: Duration,
        counters: &PortCounters,
        peer_said: Option<String>,
    ) {
        let took = took.as_secs_f64();
        let c = counters.snapshot();
        let why = peer_said.map_or(String::new(), |r| format!(" ({r})"));
        match end {
            PortEnd::Failed(LinkError::Ended(why)) => self.link_line(
                log::Level::Info,
                format_args!("port {id} ({name}) ended after {took:.1}s: {why}; {c}"),
            ),
            PortEnd::Failed(e) => self.link_line(
                log::Level::Warn,
                format_args!("port {id} ({name}) failed after {took:.1}s: {e}; {c}"),
            ),
            PortEnd::Panicked(m) => log::error!(
                "port {id} ({name}) ended by an internal error (panic: {m}); \
                 the node keeps serving the other ports; {c}"
            ),
            PortEnd::Closed => self.link_line(
                log::Level::Info,
                format_args!("port {id} ({name}) closed by peer{why} after {took:.1}s; {c}"),
            ),
            PortEnd::Detached => self.link_line(
                log::Level::Info,
                format_args!("port {id} ({name}) detached after {took:.1}s; {c}"),
            ),
        }
    }

    /// Counts a learning event; per-station lines are debug level and
    /// rate-limited, the periodic `FdbSummary` is what an operator sees.
    pub(crate) fn note_learned(&self, l: Learned, now: Instant) {
        let inner = &*self.inner;
        let debug = log::log_enabled!(log::Level::Debug);
        match l {
            Learned::New { vlan, mac, port } => {
                inner.learned.fetch_add(1, Relaxed);
                if debug {
                    if let Some(s) = inner.learn_log.check(now) {
                        log::debug!(
                            "fdb: learned {mac} vlan {vlan} on port {port}{}",
                            suppressed_note(s)
                        );
                    }
                }
            }
            Learned::Moved {
                vlan,
                mac,
                from,
                to,
            } => {
                inner.moved.fetch_add(1, Relaxed);
                if debug {
                    if let Some(s) = inner.learn_log.check(now) {
                        log::debug!(
                            "fdb: {mac} vlan {vlan} moved from port {from} to port {to}{}",
                            suppressed_note(s)
                        );
                    }
                }
            }
            Learned::TableFull { vlan, mac, port } => {
                inner.not_learned.fetch_add(1, Relaxed);
                if let Some(s) = inner.fdb_full_log.check(now) {
                    log::warn!(
                        "fdb: table full ({} entries), not learning {mac} vlan {vlan} on port {port} \
                         (its frames are flooded; see the periodic fdb summary){}",
                        inner.cfg.switch.max_entries,
                        suppressed_note(s)
                    );
                }
            }
        }
    }

    /// Counts and logs (rate-limited, per port) a frame port security
    /// refused.
    pub(crate) fn note_refused(
        &self,
        port: PortId,
        counters: &PortCounters,
        why: SwitchDrop,
        src: MacAddr,
        vlan: u16,
    ) {
        let (reason, detail) = match why {
            SwitchDrop::PinnedElsewhere { owner } => (
                DropReason::Spoof,
                format!("source {src} is this node's own address (pinned to port {owner})"),
            ),
            SwitchDrop::MoveRefused { owner } => {
                self.inner.moves_refused.fetch_add(1, Relaxed);
                (
                    DropReason::Spoof,
                    format!(
                        "source {src} vlan {vlan} is active on port {owner} \
                         (it may move after {:?} of silence there)",
                        self.inner.cfg.switch.move_guard
                    ),
                )
            }
            _ => (
                DropReason::MacLimit,
                format!("new source {src}: the port has its --max-macs stations"),
            ),
        };
        self.count_drop(port, counters, reason, &detail);
    }
}
