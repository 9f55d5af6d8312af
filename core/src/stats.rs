//! Per-port counters: frames and bytes in and out, drops by reason.
//! Plain atomics, updated on the hot path with relaxed ordering.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::log::LogLimiter;

use crate::switch::PortId;
use crate::switch::PortKind;

/// Why a node dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than an Ethernet header (14 bytes, more with VLAN tags).
    Runt,
    /// Longer than the node's maximum frame (MTU + header + two VLAN tags).
    Oversize,
    /// A transport message that is not a frame (e.g. WebSocket text).
    NotAFrame,
    /// The output port's queue was full (slow peer): dropped like a switch
    /// under congestion, so one slow port never stalls the others.
    QueueFull,
    /// An ingress filter dropped it.
    IngressFilter,
    /// An egress filter dropped it.
    EgressFilter,
    /// The ingress port does not carry the frame's VLAN.
    VlanNotAllowed,
    /// Broadcast, multicast or unknown-unicast flood beyond the port's
    /// storm limit (`--storm-limit`).
    Storm,
    /// A super-frame or partial checksum that could not be finished in
    /// software (bad offload header or headers).
    BadOffload,
    /// Port security: the source is the node's own address, or a station
    /// active on another port (a takeover attempt, or a loop).
    Spoof,
    /// Port security: the port has learned its `--max-macs` stations.
    MacLimit,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Runt,
        DropReason::Oversize,
        DropReason::NotAFrame,
        DropReason::QueueFull,
        DropReason::IngressFilter,
        DropReason::EgressFilter,
        DropReason::VlanNotAllowed,
        DropReason::Storm,
        DropReason::BadOffload,
        DropReason::Spoof,
        DropReason::MacLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::Oversize => "oversize",
            DropReason::NotAFrame => "not_a_frame",
            DropReason::QueueFull => "queue_full",
            DropReason::IngressFilter => "ingress_filter",
            DropReason::EgressFilter => "egress_filter",
            DropReason::VlanNotAllowed => "vlan_not_allowed",
            DropReason::Storm => "storm",
            DropReason::BadOffload => "bad_offload",
            DropReason::Spoof => "spoof",
            DropReason::MacLimit => "mac_limit",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live counters of one port.
#[derive(Debug, Default)]
pub struct PortCounters {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    /// When the last frame arrived: ms since the Unix epoch (0: never).
    last_rx_ms: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    log_limit: LogLimiter,
}

/// Milliseconds since the Unix epoch.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PortCounters {
    pub fn rx(&self, bytes: usize) {
        self.rx_frames.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
        self.last_rx_ms.store(unix_ms(SystemTime::now()), Relaxed);
    }

    /// When the last frame arrived, if one did.
    pub fn last_rx(&self) -> Option<SystemTime> {
        match self.last_rx_ms.load(Relaxed) {
            0 => None,
            ms => Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    pub fn tx(&self, bytes: usize) {
        self.tx_frames.fetch_add(1, Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Relaxed)
    }

    /// Rate limiter for this port's drop log lines.
    pub fn log_limiter(&self) -> &LogLimiter {
        &self.log_limit
    }

    pub fn snapshot(&self) -> Counts {
        Counts {
            rx_frames: self.rx_frames.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_frames: self.tx_frames.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            drops: DropReason::ALL.map(|r| (r, self.drops(r))),
        }
    }
}

/// A copy of a port's counters at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub drops: [(DropReason, u64); DropReason::ALL.len()],
}

impl Counts {
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx_frames={} rx_bytes={} tx_frames={} tx_bytes={}",
            self.rx_frames, self.rx_bytes, self.tx_frames, self.tx_bytes
        )?;
        for (r, n) in self.drops {
            if n > 0 {
                write!(f, " drop_{}={}", r, n)?;
            }
        }
        Ok(())
    }
}

/// A port's identity and counters, as reported by [`crate::Node::ports`].
#[derive(Clone)]
pub struct PortStats {
    pub id: PortId,
    pub kind: PortKind,
    /// `scheme://[user@]remote`, as logs show it.
    pub name: String,
    pub counts: Counts,
    /// The link's transport and peer.
    pub peer: crate::PeerInfo,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// When the port was attached.
    pub since: SystemTime,
    /// When its last frame arrived.
    pub last_rx: Option<SystemTime>,
    /// The link carries offload metadata (super-frames cross whole).
    pub offload: bool,
    /// The transport's view of the link (its RTT), read on demand.
    pub probe: Option<Arc<dyn crate::LinkProbe>>,
}

impl fmt::Debug for PortStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortStats")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("counts", &self.counts)
            .finish()
    }
}

impl fmt::Display for PortStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "port {} {} {}: {}",
            self.id,
            self.kind.as_str(),
            self.name,
            self.counts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_display_shows_nonzero_drops() {
        let c = PortCounters::default();
        c.rx(100);
        c.count_drop(DropReason::Runt);
        let s = c.snapshot().to_string();
        assert_eq!(
            s,
            "rx_frames=1 rx_bytes=100 tx_frames=0 tx_bytes=0 drop_runt=1"
        );
    }
}
