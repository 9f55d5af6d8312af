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
/// a port, the table never exceeds its cap or points at a gone port, a
/// hub learns nothing, every port's station count is exact and within
/// its `max_macs`, and a frame from a pinned address on another port is
/// always dropped.
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
        move_guard: Duration::from_millis(u64::from(mode & 2) * 500),
    });
    let mut now = Instant::now();
    let mut ports: Vec<PortId> = Vec::new();
    // Ports with a MAC limit of 2, and the one pinned address's owner.
    let mut limited: Vec<PortId> = Vec::new();
    let pinned = crate::wire::MacAddr([2, 0, 0, 0, 0, 1]);
    let mut owner: Option<PortId> = None;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            0 => {
                let mut cfg = if op & 0x80 != 0 {
                    PortConfig {
                        vlans: VlanSet::only([0, u16::from(op & 0x0f)]),
                        ..PortConfig::default()
                    }
                } else {
                    PortConfig::default()
                };
                if op & 0x40 != 0 {
                    cfg.max_macs = Some(2);
                }
                if owner.is_none() && op & 0x20 != 0 {
                    cfg.own_macs = vec![pinned];
                }
                let id = sw.add_port(cfg);
                assert!(!ports.contains(&id), "port id {id} given twice");
                if op & 0x40 != 0 {
                    limited.push(id);
                }
                if owner.is_none() && op & 0x20 != 0 {
                    owner = Some(id);
                }
                ports.push(id);
            }
            1 if !ports.is_empty() => {
                let p = ports.remove(usize::from(op >> 3) % ports.len());
                assert!(sw.remove_port(p));
                limited.retain(|l| *l != p);
                if owner == Some(p) {
                    owner = None;
                }
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
                let spoofed = frame.src() == pinned && owner.is_some_and(|o| o != ingress);
                let decision = sw.handle_frame(now, ingress, &frame).decision;
                if spoofed {
                    assert!(matches!(decision, Decision::Drop(_)), "{decision:?}");
                }
                match decision {
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
        let counted: usize = ports.iter().map(|p| sw.port_macs(*p)).sum();
        assert_eq!(counted, sw.fdb_len(), "per-port station counts drifted");
        for p in &limited {
            assert!(sw.port_macs(*p) <= 2);
        }
    }
}

/// Offload metadata from a peer on arbitrary bytes (a 10-byte virtio-net
/// header, then the frame): checking and finishing never panic, and a frame
/// that passes [`offload::check`] is finished without error into at most
/// [`offload::MAX_SEGMENTS`] frames, none longer than max frame (1522).
pub fn offload(data: &[u8]) {
    use crate::frame::Frame;
    use crate::offload::{self, VnetHdr, VNET_HDR_LEN};
    const MAX: usize = 1522;
    if data.len() < VNET_HDR_LEN {
        return;
    }
    let (hb, frame) = data.split_at(VNET_HDR_LEN);
    let Ok(h) = VnetHdr::parse(hb) else {
        return;
    };
    let fit = offload::check(frame, &h, MAX).is_ok();
    let (mut n, mut longest, mut total) = (0, 0, 0);
    let r = offload::finish(Frame::new(frame.to_vec()), &h, |f| {
        n += 1;
        longest = longest.max(f.len());
        total += f.len();
    });
    if fit {
        assert!(r.is_ok(), "checked, then {r:?}");
        assert!((1..=offload::MAX_SEGMENTS).contains(&n), "{n} segments");
        assert!(longest <= MAX, "a {longest}-byte segment");
        assert!(
            total <= offload::MAX_FINISHED,
            "{total} bytes from one frame"
        );
    }
}

/// A valid input for [`offload`]: an IPv4 TCP super-frame of `payload`
/// bytes with its header, for mutation (the fuzz target's seeds and the
/// property test's starting points).
pub fn offload_seed(payload: usize, gso_size: u16) -> Vec<u8> {
    use crate::offload::{gso, VnetHdr, F_NEEDS_CSUM};
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: gso::TCPV4,
        hdr_len: 14 + 20 + 20,
        gso_size,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut v = h.to_bytes().to_vec();
    v.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]);
    let total = (40 + payload) as u16;
    v.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    v.extend_from_slice(&[198, 19, 0, 1, 198, 19, 0, 2]);
    v.extend_from_slice(&[
        0x9c, 0x40, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 1, 0, 0, 0, 0, 0,
    ]);
    v.extend((0..payload).map(|i| i as u8));
    v
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
        fn offload_on_random_bytes(data in vec(any::<u8>(), 0..200)) {
            super::offload(&data);
        }

        #[test]
        fn offload_on_mutated_super_frames(
            payload in 0usize..6000,
            gso_size in 1u16..2000,
            edits in vec((0usize..120, any::<u8>()), 0..4),
            cut in any::<u16>(),
        ) {
            let mut d = super::offload_seed(payload, gso_size);
            for (at, b) in edits {
                if at < d.len() {
                    d[at] = b;
                }
            }
            let keep = d.len() - usize::from(cut) % 64.min(d.len());
            d.truncate(keep);
            super::offload(&d);
        }

        #[test]
        fn switch_keeps_its_invariants(data in vec(any::<u8>(), 0..600)) {
            super::switch(&data);
        }
    }
}
