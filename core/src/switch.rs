//! Sans-IO learning switch.
//!
//! No sockets, no clock, no tasks: the caller hands in `now`, the ingress
//! port and the frame, and gets back where the frame goes. That keeps every
//! switching rule testable without I/O, in the style of quinn-proto and
//! boringtun's `noise`. Deciding borrows the switch and allocates nothing;
//! learning a MAC the first time inserts into the FDB (amortised, bounded by
//! the number of stations on the segment).
//!
//! Read-mostly: once a station is learned, its frames need only a shared
//! borrow ([`Switch::try_handle_frame`]): refreshing an entry's age is an
//! atomic store, at most once per [`Switch::refresh_every`], so threads
//! switching under a read lock neither wait for each other nor bounce the
//! entry's cache line on every frame. Only learning a new station, a move
//! or an expired entry needs `&mut` ([`Switch::handle_frame`]).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::wire::{EthernetFrame, MacAddr};

/// Identifies a port of one switch. Ids count up and are not reused until
/// the 32-bit counter wraps (4 billion ports later), and never while a port
/// holds them, so a log line or counter naming a port stays unambiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

/// What kind of port a frame came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortKind {
    /// A local TAP device.
    Tap,
    /// A transport link to another node.
    Link,
}

impl PortKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::Tap => "tap",
            PortKind::Link => "link",
        }
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Default FDB ageing time, as in 802.1D.
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);

/// How the switch forwards.
#[derive(Clone, Debug)]
pub struct SwitchConfig {
    /// How long a learned (VLAN, MAC) stays without being seen again.
    pub ageing: Duration,
    /// Hub mode: no learning, every frame floods.
    pub hub: bool,
    /// Most (VLAN, MAC) entries the table holds. When full, new stations
    /// are not learned (their frames are flooded) until entries age out, so
    /// a peer spraying source addresses cannot grow memory without bound.
    pub max_entries: usize,
    /// Port security: a station heard on one port within this time cannot
    /// move to another; its frames from there are dropped
    /// ([`SwitchDrop::MoveRefused`]). A station silent this long on its
    /// port (or whose port went away: its entries go with it) moves
    /// freely, so reconnects and migrating VMs keep working. Zero: moves
    /// are never refused.
    pub move_guard: Duration,
}

/// Default move guard: a few seconds of silence before a station may
/// appear on another port.
pub const DEFAULT_MOVE_GUARD: Duration = Duration::from_secs(5);

/// Default FDB capacity: far above any real segment, small enough to bound
/// memory (a few MiB).
pub const DEFAULT_MAX_ENTRIES: usize = 65536;

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            ageing: DEFAULT_AGEING,
            hub: false,
            max_entries: DEFAULT_MAX_ENTRIES,
            move_guard: DEFAULT_MOVE_GUARD,
        }
    }
}

/// Which VLANs a port carries. Ports are trunks (all VLANs, tagged or not)
/// unless restricted.
#[derive(Clone, Debug, Default)]
pub enum VlanSet {
    #[default]
    All,
    /// Only these VLAN ids (0 = untagged).
    Only(Box<[u64; 64]>),
}

impl VlanSet {
    pub fn only(ids: impl IntoIterator<Item = u16>) -> Self {
        let mut bits = Box::new([0u64; 64]);
        for id in ids {
            let id = (id & 0x0fff) as usize;
            bits[id / 64] |= 1 << (id % 64);
        }
        VlanSet::Only(bits)
    }

    pub fn contains(&self, vid: u16) -> bool {
        match self {
            VlanSet::All => true,
            VlanSet::Only(bits) => {
                let id = (vid & 0x0fff) as usize;
                bits[id / 64] & (1 << (id % 64)) != 0
            }
        }
    }
}

/// Per-port switching configuration.
#[derive(Clone, Debug, Default)]
pub struct PortConfig {
    pub vlans: VlanSet,
    /// The node's own addresses behind this port (a TAP device's MAC):
    /// pinned to it on every VLAN. A frame from any other port with one of
    /// them as its source is dropped ([`SwitchDrop::PinnedElsewhere`]), so
    /// no peer can take over the node's own address.
    pub own_macs: Vec<MacAddr>,
    /// Most stations learned on this port (port security's MAC limit);
    /// frames from further new sources are dropped
    /// ([`SwitchDrop::MacLimit`]). `None`: no limit.
    pub max_macs: Option<usize>,
}

#[derive(Debug)]
struct PortEntry {
    id: PortId,
    cfg: PortConfig,
    /// FDB entries pointing at this port.
    macs: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FdbKey {
    vlan: u16,
    mac: MacAddr,
}

#[derive(Debug)]
struct FdbEntry {
    port: PortId,
    /// When last seen, in ns since the switch's epoch: atomic, so a shared
    /// borrow can refresh it.
    seen: AtomicU64,
}

/// One row of the forwarding table, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbRow {
    pub vlan: u16,
    pub mac: MacAddr,
    pub port: PortId,
    /// Time since the MAC was last seen.
    pub age: Duration,
}

/// Why the switch does not forward a frame anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwitchDrop {
    /// The ingress port is not (or no longer) attached.
    UnknownPort,
    /// The ingress port does not carry the frame's VLAN.
    VlanNotAllowed,
    /// The destination was learned on the ingress port itself: the frame
    /// stays on its own segment (never sent back out where it came from).
    SameSegment,
    /// The source is one of the node's own addresses, pinned to another
    /// port ([`PortConfig::own_macs`]): a spoofed frame.
    PinnedElsewhere { owner: PortId },
    /// The source is a station active on another port within the move
    /// guard ([`SwitchConfig::move_guard`]): spoofed, or a loop flapping.
    MoveRefused { owner: PortId },
    /// The ingress port has learned its [`PortConfig::max_macs`] already.
    MacLimit,
}

/// What the switch learned while handling a frame (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    New {
        vlan: u16,
        mac: MacAddr,
        port: PortId,
    },
    Moved {
        vlan: u16,
        mac: MacAddr,
        from: PortId,
        to: PortId,
    },
    /// The table is full: the station was not learned.
    TableFull {
        vlan: u16,
        mac: MacAddr,
        port: PortId,
    },
}

/// Where a frame goes.
#[derive(Debug)]
pub enum Decision<'a> {
    /// To exactly one known port.
    Forward(PortId),
    /// To every port yielded by the iterator (every other port carrying
    /// the frame's VLAN).
    Flood(Flood<'a>),
    Drop(SwitchDrop),
}

/// The ports a flooded frame goes to. Borrowed from the switch: no allocation.
#[derive(Debug, Clone)]
pub struct Flood<'a> {
    ports: std::slice::Iter<'a, PortEntry>,
    ingress: PortId,
    vlan: u16,
}

impl Iterator for Flood<'_> {
    type Item = PortId;
    fn next(&mut self) -> Option<PortId> {
        for p in self.ports.by_ref() {
            if p.id != self.ingress && p.cfg.vlans.contains(self.vlan) {
                return Some(p.id);
            }
        }
        None
    }
}

/// The outcome of [`Switch::handle_frame`].
#[derive(Debug)]
pub struct Outcome<'a> {
    pub learned: Option<Learned>,
    pub decision: Decision<'a>,
}

/// Hashes port ids, which the switch hands out itself (never chosen by a
/// peer), with one multiplication: no flooding attack to resist, unlike
/// the FDB's MAC keys, which keep the standard SipHash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

/// Builds [`IdHasher`]s: for maps keyed by [`PortId`].
pub(crate) type IdBuildHasher = BuildHasherDefault<IdHasher>;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A learning Ethernet switch: FDB keyed by (VLAN, MAC), with ageing.
#[derive(Debug)]
pub struct Switch {
    cfg: SwitchConfig,
    /// In attachment order: the order frames flood in.
    ports: Vec<PortEntry>,
    /// Where each port sits in `ports`: a port lookup per frame must not
    /// scan a hub's thousand ports.
    index: HashMap<PortId, usize, IdBuildHasher>,
    fdb: HashMap<FdbKey, FdbEntry>,
    next_id: u32,
    /// When a full table was last swept for stale entries.
    last_sweep: Option<Instant>,
    /// The node's own addresses and the ports they are pinned to.
    pinned: HashMap<MacAddr, PortId>,
    /// The origin of [`FdbEntry::seen`]: the first time a station was
    /// learned (no entry exists before), taken from the caller like every
    /// time here; earlier instants count as it.
    epoch: Option<Instant>,
    /// How stale a seen time may get before a frame refreshes it, in ns.
    refresh_ns: u64,
}

/// How long ago `seen` was at `stamp` (both ns since the epoch).
fn age(stamp: u64, seen: u64) -> Duration {
    Duration::from_nanos(stamp.saturating_sub(seen))
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new(SwitchConfig::default())
    }
}

impl Switch {
    pub fn new(cfg: SwitchConfig) -> Self {
        Switch {
            ports: Vec::new(),
            index: HashMap::default(),
            fdb: HashMap::new(),
            next_id: 1,
            last_sweep: None,
            pinned: HashMap::new(),
            epoch: None,
            refresh_ns: Self::refresh_for(cfg.ageing),
            cfg,
        }
    }

    /// How stale an entry's seen time may get before a frame from the
    /// station refreshes it: a quarter of the ageing time, at most a
    /// second. Ageing is therefore exact to within that.
    pub fn refresh_every(&self) -> Duration {
        Duration::from_nanos(self.refresh_ns)
    }

    fn refresh_for(ageing: Duration) -> u64 {
        (ageing / 4).min(Duration::from_secs(1)).as_nanos() as u64
    }

    /// `now` in ns since the epoch (0 before there is one).
    fn stamp(&self, now: Instant) -> u64 {
        self.epoch
            .map_or(0, |e| now.saturating_duration_since(e).as_nanos() as u64)
    }

    fn age(&self, now: Instant, e: &FdbEntry) -> Duration {
        age(self.stamp(now), e.seen.load(Relaxed))
    }

    pub fn config(&self) -> &SwitchConfig {
        &self.cfg
    }

    pub fn add_port(&mut self, cfg: PortConfig) -> PortId {
        // Wraps after 2^32 ports; skips 0 and ids still in use, so a live
        // port (the TAP's included) is never shadowed.
        let id = loop {
            let id = PortId(self.next_id);
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if self.port(id).is_none() {
                break id;
            }
        };
        for mac in &cfg.own_macs {
            // The first port to claim an address keeps it.
            self.pinned.entry(*mac).or_insert(id);
        }
        self.index.insert(id, self.ports.len());
        self.ports.push(PortEntry { id, cfg, macs: 0 });
        id
    }

    /// Detaches a port and flushes every FDB entry that points at it.
    /// Returns false if the port was not attached.
    pub fn remove_port(&mut self, id: PortId) -> bool {
        if self.index.remove(&id).is_none() {
            return false;
        }
        self.ports.retain(|p| p.id != id);
        for (i, p) in self.ports.iter().enumerate() {
            self.index.insert(p.id, i);
        }
        self.fdb.retain(|_, e| e.port != id);
        self.pinned.retain(|_, p| *p != id);
        true
    }

    /// Stations learned on `port` now.
    pub fn port_macs(&self, port: PortId) -> usize {
        self.port(port).map_or(0, |p| p.macs)
    }

    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.iter().map(|p| p.id)
    }

    fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.index.get(&id).map(|&i| &self.ports[i])
    }

    /// Decides where `frame`, received on `ingress` at time `now`, goes, and
    /// learns its source address.
    pub fn handle_frame<T: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &EthernetFrame<T>,
    ) -> Outcome<'_> {
        let vlan = frame.vlan_id();
        if !matches!(self.early_decision(ingress, vlan), Some(Some(_))) {
            if let Some(why) = self.refuse_source(now, ingress, vlan, frame.src()) {
                return Outcome {
                    learned: None,
                    decision: Decision::Drop(why),
                };
            }
        }
        // (`early` cannot be used here: its borrow would outlive the
        // `learn` below.)
        if let Some(drop) = self.early_decision(ingress, vlan) {
            let decision = match drop {
                Some(why) => Decision::Drop(why),
                None => Decision::Flood(self.flood(ingress, vlan)),
            };
            return Outcome {
                learned: None,
                decision,
            };
        }
        let learned = self.learn(now, ingress, vlan, frame.src());
        let decision = self.decide(now, ingress, vlan, frame.dst());
        Outcome { learned, decision }
    }

    /// Port security: why a frame with source `src` may not enter at
    /// `ingress`, if it may not. Looks only (no learning): both paths ask
    /// it before anything else.
    fn refuse_source(
        &self,
        now: Instant,
        ingress: PortId,
        vlan: u16,
        src: MacAddr,
    ) -> Option<SwitchDrop> {
        if src.is_multicast() || src == MacAddr::default() {
            return None;
        }
        if let Some(&owner) = self.pinned.get(&src) {
            if owner != ingress {
                return Some(SwitchDrop::PinnedElsewhere { owner });
            }
        }
        if self.cfg.hub {
            return None;
        }
        let port = self.port(ingress)?;
        match self.fdb.get(&FdbKey { vlan, mac: src }) {
            Some(e) if e.port == ingress => None,
            Some(e) => {
                let age = self.age(now, e);
                if age <= self.cfg.ageing && age < self.cfg.move_guard {
                    return Some(SwitchDrop::MoveRefused { owner: e.port });
                }
                // It may move: but not past this port's limit.
                port.cfg
                    .max_macs
                    .filter(|&n| port.macs >= n)
                    .map(|_| SwitchDrop::MacLimit)
            }
            None => port
                .cfg
                .max_macs
                .filter(|&n| port.macs >= n)
                .map(|_| SwitchDrop::MacLimit),
        }
    }

    /// [`Switch::handle_frame`] through a shared borrow, for the common
    /// case: `None` when the frame would teach the switch something (a new
    /// station, a move, an expired entry) and the caller must call
    /// `handle_frame` with `&mut`. The outcome is the one `handle_frame`
    /// would give.
    pub fn try_handle_frame<T: AsRef<[u8]>>(
        &self,
        now: Instant,
        ingress: PortId,
        frame: &EthernetFrame<T>,
    ) -> Option<Outcome<'_>> {
        let vlan = frame.vlan_id();
        let src = frame.src();
        if let Some(Some(why)) = self.early_decision(ingress, vlan) {
            return Some(Outcome {
                learned: None,
                decision: Decision::Drop(why),
            });
        }
        if let Some(why) = self.refuse_source(now, ingress, vlan, src) {
            return Some(Outcome {
                learned: None,
                decision: Decision::Drop(why),
            });
        }
        if let Some(done) = self.early(ingress, vlan) {
            return Some(done);
        }
        if !(src.is_multicast() || src == MacAddr::default()) {
            let e = self.fdb.get(&FdbKey { vlan, mac: src })?;
            let stamp = self.stamp(now);
            let seen = e.seen.load(Relaxed);
            if e.port != ingress || age(stamp, seen) > self.cfg.ageing {
                return None;
            }
            if stamp.saturating_sub(seen) >= self.refresh_ns {
                // Never backwards, should two threads refresh at once.
                e.seen.fetch_max(stamp, Relaxed);
            }
        }
        Some(Outcome {
            learned: None,
            decision: self.decide(now, ingress, vlan, frame.dst()),
        })
    }

    /// The outcomes that learn nothing and look nothing up: an unknown
    /// ingress port, a VLAN it does not carry (drops), hub mode (flood).
    fn early(&self, ingress: PortId, vlan: u16) -> Option<Outcome<'_>> {
        let decision = match self.early_decision(ingress, vlan)? {
            Some(why) => Decision::Drop(why),
            None => Decision::Flood(self.flood(ingress, vlan)),
        };
        Some(Outcome {
            learned: None,
            decision,
        })
    }

    /// What [`Switch::early`] decides, without borrowing the switch:
    /// `Some(Some(why))` drop, `Some(None)` flood (hub mode), `None` learn
    /// and look up.
    fn early_decision(&self, ingress: PortId, vlan: u16) -> Option<Option<SwitchDrop>> {
        match self.port(ingress) {
            None => Some(Some(SwitchDrop::UnknownPort)),
            Some(p) if !p.cfg.vlans.contains(vlan) => Some(Some(SwitchDrop::VlanNotAllowed)),
            Some(_) if self.cfg.hub => Some(None),
            Some(_) => None,
        }
    }

    fn decide(&self, now: Instant, ingress: PortId, vlan: u16, dst: MacAddr) -> Decision<'_> {
        match self.lookup(now, vlan, dst) {
            Some(p) if p == ingress => Decision::Drop(SwitchDrop::SameSegment),
            Some(p) => match self.port(p) {
                Some(out) if out.cfg.vlans.contains(vlan) => Decision::Forward(p),
                _ => Decision::Flood(self.flood(ingress, vlan)),
            },
            None => Decision::Flood(self.flood(ingress, vlan)),
        }
    }

    fn flood(&self, ingress: PortId, vlan: u16) -> Flood<'_> {
        Flood {
            ports: self.ports.iter(),
            ingress,
            vlan,
        }
    }

    fn learn(&mut self, now: Instant, port: PortId, vlan: u16, mac: MacAddr) -> Option<Learned> {
        // Only unicast sources are stations; a group address as source is bogus.
        if mac.is_multicast() || mac == MacAddr::default() {
            return None;
        }
        let key = FdbKey { vlan, mac };
        let ageing = self.cfg.ageing;
        // Entries keep their times from here (see `epoch`).
        self.epoch.get_or_insert(now);
        let stamp = self.stamp(now);
        if let Some(e) = self.fdb.get_mut(&key) {
            let expired = age(stamp, *e.seen.get_mut()) > ageing;
            let from = e.port;
            *e.seen.get_mut() = stamp;
            e.port = port;
            if from != port {
                self.count_macs(from, -1);
                self.count_macs(port, 1);
            }
            return if from != port {
                Some(Learned::Moved {
                    vlan,
                    mac,
                    from,
                    to: port,
                })
            } else if expired {
                Some(Learned::New { vlan, mac, port })
            } else {
                None
            };
        }
        if self.fdb.len() >= self.cfg.max_entries {
            // Full: sweep stale entries, at most once a second (a sweep is
            // linear in the table, and a flood of new sources must not make
            // every frame pay for one).
            let due = self
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
            if due {
                self.last_sweep = Some(now);
                self.expire(now);
            }
            if self.fdb.len() >= self.cfg.max_entries {
                return Some(Learned::TableFull { vlan, mac, port });
            }
        }
        self.fdb.insert(
            key,
            FdbEntry {
                port,
                seen: AtomicU64::new(stamp),
            },
        );
        self.count_macs(port, 1);
        Some(Learned::New { vlan, mac, port })
    }

    fn count_macs(&mut self, port: PortId, by: isize) {
        if let Some(&i) = self.index.get(&port) {
            let p = &mut self.ports[i];
            p.macs = p.macs.saturating_add_signed(by);
        }
    }

    fn lookup(&self, now: Instant, vlan: u16, mac: MacAddr) -> Option<PortId> {
        if mac.is_multicast() {
            return None;
        }
        let e = self.fdb.get(&FdbKey { vlan, mac })?;
        (self.age(now, e) <= self.cfg.ageing).then_some(e.port)
    }

    /// Removes entries not seen for longer than the ageing time. Returns how
    /// many were removed. Call it periodically; lookups already ignore stale
    /// entries, so this only bounds memory.
    pub fn expire(&mut self, now: Instant) -> usize {
        let (ageing, stamp) = (self.cfg.ageing, self.stamp(now));
        let before = self.fdb.len();
        let Switch {
            fdb, ports, index, ..
        } = self;
        fdb.retain(|_, e| {
            let keep = age(stamp, *e.seen.get_mut()) <= ageing;
            if !keep {
                if let Some(&i) = index.get(&e.port) {
                    ports[i].macs = ports[i].macs.saturating_sub(1);
                }
            }
            keep
        });
        before - self.fdb.len()
    }

    /// The forwarding table, sorted by VLAN then MAC, with stale rows hidden.
    pub fn fdb(&self, now: Instant) -> Vec<FdbRow> {
        let mut rows: Vec<FdbRow> = self
            .fdb
            .iter()
            .map(|(k, e)| FdbRow {
                vlan: k.vlan,
                mac: k.mac,
                port: e.port,
                age: self.age(now, e),
            })
            .filter(|r| r.age <= self.cfg.ageing)
            .collect();
        rows.sort_by_key(|r| (r.vlan, r.mac));
        rows
    }

    pub fn fdb_len(&self) -> usize {
        self.fdb.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);

    /// A frame from `src` to `dst`, tagged with `vlan`.
    pub(crate) fn frame(dst: MacAddr, src: MacAddr, vlan: Option<u16>) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&dst.0);
        v.extend_from_slice(&src.0);
        if let Some(id) = vlan {
            v.extend_from_slice(&[0x81, 0x00]);
            v.extend_from_slice(&id.to_be_bytes());
        }
        v.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0]);
        v
    }

    /// Runs one frame and collects where it goes.
    fn send(
        sw: &mut Switch,
        now: Instant,
        port: PortId,
        dst: MacAddr,
        src: MacAddr,
        vlan: Option<u16>,
    ) -> (Result<Vec<PortId>, SwitchDrop>, Option<Learned>) {
        let bytes = frame(dst, src, vlan);
        let f = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let out = sw.handle_frame(now, port, &f);
        let d = match out.decision {
            Decision::Forward(p) => Ok(vec![p]),
            Decision::Flood(it) => Ok(it.collect()),
            Decision::Drop(r) => Err(r),
        };
        (d, out.learned)
    }

    fn three() -> (Switch, [PortId; 3]) {
        let mut sw = Switch::default();
        let p = [
            sw.add_port(PortConfig::default()),
            sw.add_port(PortConfig::default()),
            sw.add_port(PortConfig::default()),
        ];
        (sw, p)
    }

    #[test]
    fn unknown_unicast_floods_then_learned_forwards() {
        let (mut sw, [p1, p2, p3]) = three();
        let t = Instant::now();
        let (d, l) = send(&mut sw, t, p1, B, A, None);
        assert_eq!(d, Ok(vec![p2, p3]));
        assert_eq!(
            l,
            Some(Learned::New {
                vlan: 0,
                mac: A,
                port: p1
            })
        );
        // B answers: A is known, so it goes only to p1.
        let (d, _) = send(&mut sw, t, p2, A, B, None);
        assert_eq!(d, Ok(vec![p1]));
        // And now B is known too.
        let (d, l) = send(&mut sw, t, p1, B, A, None);
        assert_eq!(d, Ok(vec![p2]));
        assert_eq!(l, None, "a known MAC on the same port is not news");
    }

    #[test]
    fn broadcast_and_multicast_flood_and_are_not_learned() {
        let (mut sw, [p1, p2, p3]) = three();
        let t = Instant::now();
        let (d, _) = send(&mut sw, t, p2, MacAddr::BROADCAST, A, None);
        assert_eq!(d, Ok(vec![p1, p3]));
        let mcast: MacAddr = "01:00:5e:00:00:01".parse().unwrap();
        let (d, _) = send(&mut sw, t, p3, mcast, B, None);
        assert_eq!(d, Ok(vec![p1, p2]));
        // A multicast *source* is never learned.
        let (_, l) = send(&mut sw, t, p1, C, mcast, None);
        assert_eq!(l, None);
        assert_eq!(sw.fdb_len(), 2);
    }

    #[test]
    fn no_hairpin() {
        let (mut sw, [p1, _p2, _p3]) = three();
        let t = Instant::now();
        let _ = send(&mut sw, t, p1, C, A, None);
        let _ = send(&mut sw, t, p1, C, B, None);
        // A and B both live behind p1: a frame between them stays there.
        let (d, _) = send(&mut sw, t, p1, B, A, None);
        assert_eq!(d, Err(SwitchDrop::SameSegment));
        // Floods never include the ingress port.
        let (d, _) = send(&mut sw, t, p1, MacAddr::BROADCAST, A, None);
        assert!(!d.unwrap().contains(&p1));
    }

    #[test]
    fn vlan_isolation() {
        let (mut sw, [p1, p2, p3]) = three();
        let t = Instant::now();
        // A learned on VLAN 10 behind p1.
        let _ = send(&mut sw, t, p1, MacAddr::BROADCAST, A, Some(10));
        // A frame to A on VLAN 20 must not use the VLAN 10 entry: it floods.
        let (d, _) = send(&mut sw, t, p2, A, B, Some(20));
        assert_eq!(d, Ok(vec![p1, p3]));
        // On VLAN 10 it is forwarded.
        let (d, _) = send(&mut sw, t, p2, A, B, Some(10));
        assert_eq!(d, Ok(vec![p1]));
        // A port restricted to VLAN 20 never sees VLAN 10 floods and cannot
        // inject VLAN 10 frames.
        let p4 = sw.add_port(PortConfig {
            vlans: VlanSet::only([20]),
            ..PortConfig::default()
        });
        let (d, _) = send(&mut sw, t, p1, MacAddr::BROADCAST, A, Some(10));
        assert!(!d.unwrap().contains(&p4));
        let (d, _) = send(&mut sw, t, p1, MacAddr::BROADCAST, A, Some(20));
        assert!(d.unwrap().contains(&p4));
        let (d, _) = send(&mut sw, t, p4, MacAddr::BROADCAST, C, Some(10));
        assert_eq!(d, Err(SwitchDrop::VlanNotAllowed));
    }

    #[test]
    fn ageing_with_injected_clock() {
        let mut sw = Switch::new(SwitchConfig {
            ageing: Duration::from_secs(30),
            ..SwitchConfig::default()
        });
        let p1 = sw.add_port(PortConfig::default());
        let p2 = sw.add_port(PortConfig::default());
        let t0 = Instant::now();
        let _ = send(&mut sw, t0, p1, MacAddr::BROADCAST, A, None);
        let (d, _) = send(&mut sw, t0 + Duration::from_secs(29), p2, A, B, None);
        assert_eq!(d, Ok(vec![p1]));
        // B refreshed at t0+29; A last seen at t0. At t0+31 A is stale.
        let t1 = t0 + Duration::from_secs(31);
        let (d, _) = send(&mut sw, t1, p2, A, B, None);
        assert_eq!(d, Ok(vec![p1]), "stale entry: flooded (only p1 is left)");
        assert_eq!(sw.fdb(t1).len(), 1, "only B is live");
        assert_eq!(sw.expire(t1), 1);
        assert_eq!(sw.fdb_len(), 1);
        // Seen again after expiry: learned anew.
        let (_, l) = send(&mut sw, t1, p1, B, A, None);
        assert_eq!(
            l,
            Some(Learned::New {
                vlan: 0,
                mac: A,
                port: p1
            })
        );
    }

    #[test]
    fn a_station_moves_only_after_the_guard_time_of_silence() {
        let (mut sw, [p1, p2, p3]) = three();
        let t = Instant::now();
        let _ = send(&mut sw, t, p1, MacAddr::BROADCAST, A, None);
        // Active on p1: p3 cannot take it (spoofing, or a flapping loop).
        let just_before = t + DEFAULT_MOVE_GUARD - Duration::from_millis(1);
        let (d, l) = send(&mut sw, just_before, p3, MacAddr::BROADCAST, A, None);
        assert_eq!(d, Err(SwitchDrop::MoveRefused { owner: p1 }));
        assert_eq!(l, None);
        // Frames to A still go to p1, the shared path agrees.
        let (d, _) = send(&mut sw, just_before, p2, A, B, None);
        assert_eq!(d, Ok(vec![p1]));
        assert_eq!(
            try_send(&sw, just_before, p3, B, A, None),
            Some(Err(SwitchDrop::MoveRefused { owner: p1 }))
        );
        // A keeps talking on p1: the guard restarts from its last frame.
        let _ = send(&mut sw, t + DEFAULT_MOVE_GUARD, p1, B, A, None);
        let (d, _) = send(
            &mut sw,
            t + DEFAULT_MOVE_GUARD * 2 - Duration::from_millis(1),
            p3,
            B,
            A,
            None,
        );
        assert_eq!(d, Err(SwitchDrop::MoveRefused { owner: p1 }));
        // Silent for the guard time on p1: A moves to p3.
        let t = t + DEFAULT_MOVE_GUARD * 2;
        let (_, l) = send(&mut sw, t, p3, MacAddr::BROADCAST, A, None);
        assert_eq!(
            l,
            Some(Learned::Moved {
                vlan: 0,
                mac: A,
                from: p1,
                to: p3
            })
        );
        let (d, _) = send(&mut sw, t, p2, A, B, None);
        assert_eq!(d, Ok(vec![p3]));
        assert_eq!((sw.port_macs(p1), sw.port_macs(p3)), (0, 1));
    }

    #[test]
    fn a_station_whose_port_ended_moves_at_once_and_no_guard_means_no_refusal() {
        let (mut sw, [p1, _p2, p3]) = three();
        let t = Instant::now();
        let _ = send(&mut sw, t, p1, MacAddr::BROADCAST, A, None);
        // The client reconnects: its old port ends, the new one may use A.
        sw.remove_port(p1);
        let p4 = sw.add_port(PortConfig::default());
        let (d, l) = send(&mut sw, t, p4, MacAddr::BROADCAST, A, None);
        assert!(d.is_ok());
        assert_eq!(
            l,
            Some(Learned::New {
                vlan: 0,
                mac: A,
                port: p4
            })
        );
        let mut free = Switch::new(SwitchConfig {
            move_guard: Duration::ZERO,
            ..SwitchConfig::default()
        });
        let (q1, q2) = (
            free.add_port(PortConfig::default()),
            free.add_port(PortConfig::default()),
        );
        let _ = send(&mut free, t, q1, MacAddr::BROADCAST, A, None);
        let (_, l) = send(&mut free, t, q2, MacAddr::BROADCAST, A, None);
        assert!(matches!(l, Some(Learned::Moved { .. })), "{l:?}");
        let _ = p3;
    }

    #[test]
    fn the_nodes_own_address_is_pinned_to_its_port_in_every_mode() {
        for hub in [false, true] {
            let mut sw = Switch::new(SwitchConfig {
                hub,
                ..SwitchConfig::default()
            });
            let tap = sw.add_port(PortConfig {
                own_macs: vec![C],
                ..PortConfig::default()
            });
            let link = sw.add_port(PortConfig::default());
            let t = Instant::now();
            // Before the TAP ever spoke, and after: never from a link.
            for dt in [0, 1] {
                let now = t + Duration::from_secs(dt);
                let (d, _) = send(&mut sw, now, link, MacAddr::BROADCAST, C, Some(7));
                assert_eq!(
                    d,
                    Err(SwitchDrop::PinnedElsewhere { owner: tap }),
                    "hub {hub}"
                );
                assert_eq!(
                    try_send(&sw, now, link, A, C, None),
                    Some(Err(SwitchDrop::PinnedElsewhere { owner: tap }))
                );
                let (d, _) = send(&mut sw, now, tap, MacAddr::BROADCAST, C, None);
                assert_eq!(d, Ok(vec![link]));
            }
            // Much later (far past ageing), still.
            let late = t + DEFAULT_AGEING * 3;
            let (d, _) = send(&mut sw, late, link, MacAddr::BROADCAST, C, None);
            assert!(matches!(d, Err(SwitchDrop::PinnedElsewhere { .. })));
            // The TAP's port gone, the address is free.
            sw.remove_port(tap);
            let (d, _) = send(&mut sw, late, link, MacAddr::BROADCAST, C, None);
            assert!(d.is_ok());
        }
    }

    #[test]
    fn a_port_learns_at_most_max_macs_stations() {
        let mut sw = Switch::default();
        let limited = sw.add_port(PortConfig {
            max_macs: Some(2),
            ..PortConfig::default()
        });
        let other = sw.add_port(PortConfig::default());
        let t = Instant::now();
        let mac = |i: u8| MacAddr([2, 0, 0, 0, 1, i]);
        for i in 0..2 {
            let (d, _) = send(&mut sw, t, limited, MacAddr::BROADCAST, mac(i), None);
            assert!(d.is_ok());
        }
        let (d, l) = send(&mut sw, t, limited, MacAddr::BROADCAST, mac(2), None);
        assert_eq!((d, l), (Err(SwitchDrop::MacLimit), None));
        assert_eq!(
            try_send(&sw, t, limited, B, mac(3), None),
            Some(Err(SwitchDrop::MacLimit))
        );
        // Known stations still pass; an aged-out one frees its place.
        let (d, _) = send(&mut sw, t, limited, B, mac(1), None);
        assert!(d.is_ok());
        let later = t + DEFAULT_AGEING / 2;
        let _ = send(&mut sw, later, limited, B, mac(1), None);
        let late = t + DEFAULT_AGEING + Duration::from_secs(1);
        sw.expire(late);
        assert_eq!(sw.port_macs(limited), 1);
        let (d, _) = send(&mut sw, late, limited, MacAddr::BROADCAST, mac(2), None);
        assert!(d.is_ok());
        assert_eq!(sw.port_macs(limited), 2);
        // Other ports are not limited.
        for i in 10..20 {
            let _ = send(&mut sw, late, other, MacAddr::BROADCAST, mac(i), None);
        }
        assert_eq!(sw.port_macs(other), 10);
    }

    #[test]
    fn port_removal_flushes_its_entries() {
        let (mut sw, [p1, p2, p3]) = three();
        let t = Instant::now();
        let _ = send(&mut sw, t, p1, MacAddr::BROADCAST, A, None);
        let _ = send(&mut sw, t, p2, MacAddr::BROADCAST, B, None);
        assert!(sw.remove_port(p1));
        assert!(!sw.remove_port(p1));
        assert_eq!(sw.fdb(t).iter().map(|r| r.mac).collect::<Vec<_>>(), vec![B]);
        let (d, _) = send(&mut sw, t, p3, A, C, None);
        assert_eq!(d, Ok(vec![p2]), "A unknown again: flooded to the rest");
        // The ports behind the removed one moved up: lookups still find
        // them.
        let (d, _) = send(&mut sw, t, p3, B, C, None);
        assert_eq!(d, Ok(vec![p2]), "B still known on p2");
        let (d, _) = send(&mut sw, t, p1, B, A, None);
        assert_eq!(d, Err(SwitchDrop::UnknownPort));
        // Ids are not reused.
        let p4 = sw.add_port(PortConfig::default());
        assert!(p4 > p3);
    }

    #[test]
    fn port_ids_wrap_without_shadowing_live_ports() {
        let (mut sw, [p1, p2, _p3]) = three();
        sw.remove_port(p2);
        sw.next_id = u32::MAX;
        assert_eq!(sw.add_port(PortConfig::default()), PortId(u32::MAX));
        // 1 is still p1's: the counter skips it (and 0), reuses freed 2.
        assert_eq!(p1, PortId(1));
        assert_eq!(sw.add_port(PortConfig::default()), PortId(2));
        assert_eq!(sw.ports().count(), 4);
    }

    #[test]
    fn full_table_refuses_new_stations_and_floods_them() {
        let mut sw = Switch::new(SwitchConfig {
            max_entries: 2,
            ..SwitchConfig::default()
        });
        let p1 = sw.add_port(PortConfig::default());
        let p2 = sw.add_port(PortConfig::default());
        let t = Instant::now();
        let _ = send(&mut sw, t, p1, MacAddr::BROADCAST, A, None);
        let _ = send(&mut sw, t, p1, MacAddr::BROADCAST, B, None);
        let (_, l) = send(&mut sw, t, p1, MacAddr::BROADCAST, C, None);
        assert_eq!(
            l,
            Some(Learned::TableFull {
                vlan: 0,
                mac: C,
                port: p1
            })
        );
        assert_eq!(sw.fdb_len(), 2);
        // C is unknown: frames to it flood.
        let d_mac = MacAddr([0x02, 0, 0, 0, 0, 0x0d]);
        let (d, _) = send(&mut sw, t, p2, C, d_mac, None);
        assert_eq!(d, Ok(vec![p1]));
        // Once entries age out there is room again.
        let later = t + DEFAULT_AGEING + Duration::from_secs(1);
        let (_, l) = send(&mut sw, later, p1, MacAddr::BROADCAST, C, None);
        assert_eq!(
            l,
            Some(Learned::New {
                vlan: 0,
                mac: C,
                port: p1
            })
        );
    }

    #[test]
    fn hub_mode_floods_everything() {
        let mut sw = Switch::new(SwitchConfig {
            hub: true,
            ..SwitchConfig::default()
        });
        let p1 = sw.add_port(PortConfig::default());
        let p2 = sw.add_port(PortConfig::default());
        let p3 = sw.add_port(PortConfig::default());
        let t = Instant::now();
        let _ = send(&mut sw, t, p2, A, B, None);
        let (d, l) = send(&mut sw, t, p1, B, A, None);
        assert_eq!(d, Ok(vec![p2, p3]));
        assert_eq!(l, None);
        assert_eq!(sw.fdb_len(), 0);
    }

    /// Like `send`, through the shared-borrow path: `None` when it defers
    /// to `handle_frame`.
    fn try_send(
        sw: &Switch,
        now: Instant,
        port: PortId,
        dst: MacAddr,
        src: MacAddr,
        vlan: Option<u16>,
    ) -> Option<Result<Vec<PortId>, SwitchDrop>> {
        let bytes = frame(dst, src, vlan);
        let f = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let out = sw.try_handle_frame(now, port, &f)?;
        assert_eq!(out.learned, None);
        Some(match out.decision {
            Decision::Forward(p) => Ok(vec![p]),
            Decision::Flood(it) => Ok(it.collect()),
            Decision::Drop(r) => Err(r),
        })
    }

    #[test]
    fn shared_path_switches_known_stations_and_defers_learning() {
        let (mut sw, [p1, p2, p3]) = three();
        let t = Instant::now();
        // A new station: deferred.
        assert_eq!(try_send(&sw, t, p1, B, A, None), None);
        let _ = send(&mut sw, t, p1, MacAddr::BROADCAST, A, None);
        let _ = send(&mut sw, t, p2, MacAddr::BROADCAST, B, None);
        // Known on its port: switched with no learning.
        assert_eq!(try_send(&sw, t, p1, B, A, None), Some(Ok(vec![p2])));
        assert_eq!(try_send(&sw, t, p1, C, A, None), Some(Ok(vec![p2, p3])));
        assert_eq!(
            try_send(&sw, t, p2, B, B, None),
            Some(Err(SwitchDrop::SameSegment))
        );
        // A move within the guard: refused; after it: deferred.
        assert_eq!(
            try_send(&sw, t, p3, B, A, None),
            Some(Err(SwitchDrop::MoveRefused { owner: p1 }))
        );
        assert_eq!(try_send(&sw, t + DEFAULT_MOVE_GUARD, p3, B, A, None), None);
        // Expired: deferred.
        let late = t + DEFAULT_AGEING + Duration::from_secs(1);
        assert_eq!(try_send(&sw, late, p1, B, A, None), None);
        // Unknown port: dropped with no learning to do.
        assert_eq!(
            try_send(&sw, t, PortId(99), B, A, None),
            Some(Err(SwitchDrop::UnknownPort))
        );
    }

    #[test]
    fn shared_path_refreshes_the_age_of_what_it_switches() {
        let mut sw = Switch::new(SwitchConfig {
            ageing: Duration::from_secs(30),
            ..SwitchConfig::default()
        });
        let p1 = sw.add_port(PortConfig::default());
        let p2 = sw.add_port(PortConfig::default());
        let p3 = sw.add_port(PortConfig::default());
        let t0 = Instant::now();
        let _ = send(&mut sw, t0, p1, MacAddr::BROADCAST, A, None);
        let _ = send(&mut sw, t0, p2, MacAddr::BROADCAST, B, None);
        // A keeps talking through the shared path only...
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(try_send(&sw, t1, p1, B, A, None), Some(Ok(vec![p2])));
        // ...so 45 s after it was learned it is 25 s old, not stale: a
        // frame for it is forwarded, not flooded (to p1 and p3).
        let t2 = t0 + Duration::from_secs(45);
        let (d, _) = send(&mut sw, t2, p2, A, B, None);
        assert_eq!(d, Ok(vec![p1]));
        assert_eq!(sw.fdb(t2).len(), 2, "A (refreshed) and B (relearned)");
        // Without the refresh A would be stale: the same frame from p3
        // would flood to p1 and p2.
        let (d, _) = send(&mut sw, t2, p3, A, C, None);
        assert_eq!(d, Ok(vec![p1]));
    }

    proptest::proptest! {
        /// Whatever the traffic, the shared path decides as `handle_frame`
        /// would (port security's refusals included), and defers exactly
        /// when `handle_frame` would learn something. Times are whole seconds: a refresh is then never
        /// skipped, and two switches fed the same frames age alike.
        #[test]
        fn shared_path_agrees_with_handle_frame(
            steps in proptest::collection::vec(
                (0u8..3, 0u8..6, 0u8..6, proptest::bool::ANY, 0u64..20), 1..200),
            hub in proptest::bool::ANY,
        ) {
            // Room for 3 of the 5 stations (the table fills), and a third
            // port that carries VLAN 10 only.
            let cfg = SwitchConfig {
                ageing: Duration::from_secs(30),
                hub,
                max_entries: 3,
                move_guard: Duration::from_secs(5),
            };
            let mut exact = Switch::new(cfg.clone());
            let mut shared = Switch::new(cfg);
            let mut ports = Vec::new();
            for i in 0..3 {
                // Port 0 is the TAP (station 0 pinned to it), port 1 has a
                // MAC limit of 2, port 2 carries VLAN 10 only.
                let pc = match i {
                    0 => PortConfig { own_macs: vec![MacAddr([2, 0, 0, 0, 0, 1])], ..PortConfig::default() },
                    1 => PortConfig { max_macs: Some(2), ..PortConfig::default() },
                    _ => PortConfig { vlans: VlanSet::only([10]), ..PortConfig::default() },
                };
                ports.push(exact.add_port(pc.clone()));
                shared.add_port(pc);
            }
            let mac = |i: u8| if i == 5 { MacAddr::BROADCAST } else { MacAddr([2, 0, 0, 0, 0, i + 1]) };
            let mut t = Instant::now();
            for (port, src, dst, tagged, dt) in steps {
                t += Duration::from_secs(dt);
                let (p, src, dst) = (ports[port as usize], mac(src), mac(dst));
                let vlan = tagged.then_some(10);
                let (want, learned) = send(&mut exact, t, p, dst, src, vlan);
                match try_send(&shared, t, p, dst, src, vlan) {
                    Some(got) => {
                        proptest::prop_assert_eq!(&got, &want);
                        proptest::prop_assert_eq!(learned, None);
                    }
                    None => {
                        let (got, l) = send(&mut shared, t, p, dst, src, vlan);
                        proptest::prop_assert_eq!(&got, &want);
                        proptest::prop_assert!(l.is_some(), "deferred but learned nothing");
                        proptest::prop_assert_eq!(l, learned);
                    }
                }
            }
        }
    }
}
