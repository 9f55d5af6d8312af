//! Stage 2: the switch's decision, under the fabric lock.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use super::patience::Patience;
use super::storm::StormBucket;
use crate::stats::DropReason;
use crate::switch::{Decision, IdBuildHasher, Learned, Outcome, PortId, Switch, SwitchDrop};
use crate::wire::EthernetFrame;

/// The switch and what the runtime keeps per port (`T`: for a node, the
/// port's output queue and identity), changed together under one lock.
pub struct Fabric<T> {
    pub switch: Switch,
    pub slots: HashMap<PortId, T, IdBuildHasher>,
}

impl<T> Fabric<T> {
    pub fn new(switch: Switch) -> Self {
        Fabric {
            switch,
            slots: HashMap::default(),
        }
    }
}

// A panic while holding the lock cannot leave the switch in a state worse
// than "some counters off", so both keep serving after one.

/// The fabric for reading: what switching a known station needs, taken by
/// every reader thread at once without waiting.
pub fn read<T>(lock: &RwLock<Fabric<T>>) -> RwLockReadGuard<'_, Fabric<T>> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// The fabric for changing: ports come and go, stations are learned.
pub fn write<T>(lock: &RwLock<Fabric<T>>) -> RwLockWriteGuard<'_, Fabric<T>> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// Where one frame goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<O> {
    /// To one port, waiting for room with this patience if it is a
    /// super-frame.
    One(O, Patience),
    /// Flooded: the targets were put in the caller's vector.
    Many,
    /// Counted under this reason, nothing to log.
    Drop(DropReason),
    /// Refused by port security: counted and logged (with the source) by
    /// the caller, after the lock is released.
    Refused(SwitchDrop),
    /// Nowhere, and nothing to count (back to its own segment, or to a
    /// port that is going away).
    Nowhere,
}

/// A routing decision and what the switch learned while making it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switched<O> {
    pub route: Route<O>,
    pub learned: Option<Learned>,
    /// The frame went to at least one port (the node's switched counter).
    pub switched: bool,
}

/// Switches one frame that arrived on `port` at `now`: under the lock only
/// the decision and the targets (`target` clones what the caller needs of
/// a port, e.g. an `Arc` of its queue); enqueueing, which may wake a
/// writer on another thread, is the caller's, after the lock is gone. A
/// known station's frame takes only the shared lock; learning takes the
/// exclusive one. Flooded frames take a token from `storm` (in hub mode
/// only group traffic does: every frame floods there).
pub fn switch_frame<T, O, V: AsRef<[u8]>>(
    fabric: &RwLock<Fabric<T>>,
    now: Instant,
    port: PortId,
    view: &EthernetFrame<V>,
    storm: &mut StormBucket,
    target: impl Fn(&T) -> O,
    many: &mut Vec<O>,
) -> Switched<O> {
    let group = view.dst().is_multicast();
    let mut route = |outcome: Outcome<'_>, slots: &HashMap<PortId, T, IdBuildHasher>, hub: bool| {
        let (route, switched) = match outcome.decision {
            Decision::Forward(p) => match slots.get(&p) {
                Some(t) => (
                    Route::One(target(t), Patience::for_ports(slots.len())),
                    true,
                ),
                None => (Route::Nowhere, true),
            },
            Decision::Flood(ports) => {
                if (group || !hub) && !storm.take(now) {
                    (Route::Drop(DropReason::Storm), false)
                } else {
                    many.extend(ports.filter_map(|p| slots.get(&p).map(&target)));
                    (Route::Many, true)
                }
            }
            Decision::Drop(SwitchDrop::VlanNotAllowed) => {
                (Route::Drop(DropReason::VlanNotAllowed), false)
            }
            Decision::Drop(
                why @ (SwitchDrop::PinnedElsewhere { .. }
                | SwitchDrop::MoveRefused { .. }
                | SwitchDrop::MacLimit),
            ) => (Route::Refused(why), false),
            Decision::Drop(_) => (Route::Nowhere, false),
        };
        Switched {
            route,
            learned: outcome.learned,
            switched,
        }
    };
    let fast = {
        let fab = read(fabric);
        let outcome = fab.switch.try_handle_frame(now, port, view);
        outcome.map(|o| route(o, &fab.slots, fab.switch.config().hub))
    };
    fast.unwrap_or_else(|| {
        let mut fab = write(fabric);
        let Fabric { switch, slots } = &mut *fab;
        let hub = switch.config().hub;
        route(switch.handle_frame(now, port, view), slots, hub)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::tests::frame;
    use crate::switch::{PortConfig, SwitchConfig, VlanSet};
    use crate::wire::MacAddr;
    use std::time::Duration;

    /// A fabric whose slots are the ports' numbers, and the ids.
    fn fabric(cfg: SwitchConfig, ports: &[PortConfig]) -> (RwLock<Fabric<u32>>, Vec<PortId>) {
        let mut f = Fabric::new(Switch::new(cfg));
        let ids = ports
            .iter()
            .map(|pc| {
                let id = f.switch.add_port(pc.clone());
                f.slots.insert(id, id.0);
                id
            })
            .collect();
        (RwLock::new(f), ids)
    }

    fn go(
        f: &RwLock<Fabric<u32>>,
        t: Instant,
        port: PortId,
        bytes: &[u8],
        storm: &mut StormBucket,
    ) -> (Switched<u32>, Vec<u32>) {
        let view = EthernetFrame::new_checked(bytes).unwrap();
        let mut many = Vec::new();
        let s = switch_frame(f, t, port, &view, storm, |n: &u32| *n, &mut many);
        (s, many)
    }

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    #[test]
    fn storm_control_drops_floods_but_not_known_unicast() {
        let (f, p) = fabric(SwitchConfig::default(), &vec![PortConfig::default(); 3]);
        let t = Instant::now();
        // A burst of 2. B is learned on p[1]; then p[0] floods broadcasts.
        let mut storm = StormBucket::new(20);
        go(
            &f,
            t,
            p[1],
            &frame(MacAddr::BROADCAST, B, None),
            &mut StormBucket::new(0),
        );
        let mut floods = Vec::new();
        for _ in 0..5 {
            floods.push(
                go(&f, t, p[0], &frame(MacAddr::BROADCAST, A, None), &mut storm)
                    .0
                    .route,
            );
        }
        assert_eq!(floods[..2], [Route::Many, Route::Many]);
        assert!(floods[2..]
            .iter()
            .all(|r| *r == Route::Drop(DropReason::Storm)));
        // Known unicast takes no token: it still goes, with the bucket empty.
        let (s, _) = go(&f, t, p[0], &frame(B, A, None), &mut storm);
        assert_eq!(s.route, Route::One(p[1].0, Patience::SHARED));
        assert!(s.switched);
        // In hub mode unicast floods, but only group traffic is a storm.
        let hub = SwitchConfig {
            hub: true,
            ..SwitchConfig::default()
        };
        let (f, p) = fabric(hub, &vec![PortConfig::default(); 3]);
        let (s, many) = go(&f, t, p[0], &frame(B, A, None), &mut storm);
        assert_eq!((s.route, many), (Route::Many, vec![p[1].0, p[2].0]));
        let (s, _) = go(&f, t, p[0], &frame(MacAddr::BROADCAST, A, None), &mut storm);
        assert_eq!(s.route, Route::Drop(DropReason::Storm));
    }

    #[test]
    fn a_node_of_two_ports_waits_longer_for_its_only_peer() {
        let (f, p) = fabric(SwitchConfig::default(), &vec![PortConfig::default(); 2]);
        let t = Instant::now();
        let mut off = StormBucket::new(0);
        go(&f, t, p[1], &frame(MacAddr::BROADCAST, B, None), &mut off);
        let (s, _) = go(&f, t, p[0], &frame(B, A, None), &mut off);
        assert_eq!(s.route, Route::One(p[1].0, Patience::SOLE));
        assert!(matches!(s.learned, Some(Learned::New { port, .. }) if port == p[0]));
    }

    #[test]
    fn a_spoofed_own_address_is_refused_for_the_caller_to_log() {
        let tap = PortConfig {
            own_macs: vec![A],
            ..PortConfig::default()
        };
        let (f, p) = fabric(SwitchConfig::default(), &[tap, PortConfig::default()]);
        let (s, many) = go(
            &f,
            Instant::now(),
            p[1],
            &frame(MacAddr::BROADCAST, A, None),
            &mut StormBucket::new(0),
        );
        assert_eq!(
            s.route,
            Route::Refused(SwitchDrop::PinnedElsewhere { owner: p[0] })
        );
        assert!(many.is_empty() && !s.switched);
    }

    proptest::proptest! {
        /// Through the lock, a route is the switch's decision mapped onto
        /// the slots: a forward to the slot of the port the switch names, a
        /// flood to the slots of its ports, a VLAN drop counted, a refusal
        /// handed back; learning as the switch learns.
        #[test]
        fn routes_are_the_switch_decisions_on_the_slots(
            steps in proptest::collection::vec((0u8..3, 0u8..5, 0u8..5, proptest::bool::ANY, 0u64..40), 1..150),
            hub in proptest::bool::ANY,
        ) {
            let cfg = SwitchConfig {
                ageing: Duration::from_secs(30),
                hub,
                max_entries: 3,
                move_guard: Duration::from_secs(5),
            };
            let pcs = [
                PortConfig { own_macs: vec![MacAddr([2, 0, 0, 0, 0, 1])], ..PortConfig::default() },
                PortConfig { max_macs: Some(2), ..PortConfig::default() },
                PortConfig { vlans: VlanSet::only([10]), ..PortConfig::default() },
            ];
            let (f, ids) = fabric(cfg.clone(), &pcs);
            let mut reference = Switch::new(cfg);
            for pc in &pcs {
                reference.add_port(pc.clone());
            }
            let mac = |i: u8| if i == 4 { MacAddr::BROADCAST } else { MacAddr([2, 0, 0, 0, 0, i + 1]) };
            let mut off = StormBucket::new(0);
            let mut t = Instant::now();
            for (port, src, dst, tagged, dt) in steps {
                t += Duration::from_secs(dt);
                let bytes = frame(mac(dst), mac(src), tagged.then_some(10));
                let view = EthernetFrame::new_checked(&bytes[..]).unwrap();
                let p = ids[usize::from(port)];
                let want = reference.handle_frame(t, p, &view);
                let (got, many) = go(&f, t, p, &bytes, &mut off);
                proptest::prop_assert_eq!(got.learned, want.learned);
                match want.decision {
                    Decision::Forward(to) => {
                        proptest::prop_assert_eq!(got.route, Route::One(to.0, Patience::SHARED));
                    }
                    Decision::Flood(ports) => {
                        proptest::prop_assert_eq!(got.route, Route::Many);
                        proptest::prop_assert_eq!(many, ports.map(|p| p.0).collect::<Vec<_>>());
                    }
                    Decision::Drop(SwitchDrop::VlanNotAllowed) => {
                        proptest::prop_assert_eq!(got.route, Route::Drop(DropReason::VlanNotAllowed));
                    }
                    Decision::Drop(SwitchDrop::SameSegment) | Decision::Drop(SwitchDrop::UnknownPort) => {
                        proptest::prop_assert_eq!(got.route, Route::Nowhere);
                    }
                    Decision::Drop(why) => proptest::prop_assert_eq!(got.route, Route::Refused(why)),
                }
            }
        }
    }
}
