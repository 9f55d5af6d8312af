//! Properties of the frame view and the switch, driven by arbitrary bytes.
//!
//! One implementation of each property, run two ways: by the fuzz targets
//! in `fuzz/` (nightly, `cargo fuzz`, coverage-guided, for minutes) and by
//! this crate's stable tests (proptest, a bounded number of cases, in
//! `./test.sh`). Each function panics when a property fails.

use std::time::{Duration, Instant};

use crate::switch::{Decision, PortConfig, PortId, Switch, SwitchConfig, VlanSet};
use crate::wire::EthernetFrame;

/// The frame view on arbitrary bytes: never panics, and what it reports is
/// consistent with the bytes.
pub fn wire(data: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(data) {
        let h = f.header_len();
        assert!((14..=22).contains(&h) && h <= data.len());
        assert_eq!(f.payload().len(), data.len() - h);
        assert_eq!(f.dst().0[..], data[..6]);
        assert_eq!(f.src().0[..], data[6..12]);
        let _ = (f.ethertype(), f.outer_tag(), f.inner_tag());
        assert!(f.vlan_id() < 4096);
    }
}

/// The switch driven by arbitrary port events, clock steps and frames, in
/// learning or hub mode (first byte), with a 16-entry table: decisions
/// never name the ingress port or a port that is gone, floods never repeat
/// a port, the table never exceeds its cap or points at a gone port, and a
/// hub learns nothing.
pub fn switch(data: &[u8]) {
    const CAP: usize = 16;
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let hub = mode & 1 == 1;
    let mut sw = Switch::new(SwitchConfig {
        ageing: Duration::from_secs(u64::from(mode >> 2) + 1),
        hub,
        max_entries: CAP,
    });
    let mut now = Instant::now();
    let mut ports: Vec<PortId> = Vec::new();
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            0 => {
                let cfg = if op & 0x80 != 0 {
                    PortConfig {
                        vlans: VlanSet::only([0, u16::from(op & 0x0f)]),
                    }
                } else {
                    PortConfig::default()
                };
                let id = sw.add_port(cfg);
                assert!(!ports.contains(&id), "port id {id} given twice");
                ports.push(id);
            }
            1 if !ports.is_empty() => {
                let p = ports.remove(usize::from(op >> 3) % ports.len());
                assert!(sw.remove_port(p));
            }
            2 => now += Duration::from_millis(u64::from(op) * 50),
            3 => {
                sw.expire(now);
            }
            _ if !ports.is_empty() => {
                // A frame of up to 31 bytes from the input, arriving on a
                // port that may be gone.
                let len = usize::from(op >> 3).min(rest.len());
                let (bytes, tail) = rest.split_at(len);
                rest = tail;
                let ingress = if op & 4 != 0 {
                    PortId(u32::from(op))
                } else {
                    ports[usize::from(op) % ports.len()]
                };
                let Ok(frame) = EthernetFrame::new_checked(bytes) else {
                    continue;
                };
                match sw.handle_frame(now, ingress, &frame).decision {
                    Decision::Forward(p) => {
                        assert_ne!(p, ingress);
                        assert!(ports.contains(&p));
                    }
                    Decision::Flood(it) => {
                        let v: Vec<PortId> = it.collect();
                        assert!(!v.contains(&ingress));
                        assert!(v.iter().all(|p| ports.contains(p)));
                        let mut d = v.clone();
                        d.sort();
                        d.dedup();
                        assert_eq!(d.len(), v.len());
                    }
                    Decision::Drop(_) => {}
                }
            }
            _ => {}
        }
        assert!(sw.fdb_len() <= CAP);
        if hub {
            assert_eq!(sw.fdb_len(), 0);
        }
        for row in sw.fdb(now) {
            assert!(ports.contains(&row.port));
        }
    }
}

#[cfg(test)]
mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn wire_view_is_consistent(data in vec(any::<u8>(), 0..80)) {
            super::wire(&data);
        }

        #[test]
        fn switch_keeps_its_invariants(data in vec(any::<u8>(), 0..600)) {
            super::switch(&data);
        }
    }
}
