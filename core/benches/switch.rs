//! The switch's hot path: parsing a frame view, learning and looking up in
//! a forwarding table of 10,000 stations, and the whole decision with 2 and
//! with 1,000 ports; then two threads switching at once, as the node's
//! readers do with `--threads 2`: behind a read-write lock with the shared
//! path (what the node does) against a mutex with `handle_frame`.
//!
//!     cargo bench -p etherws-core --bench switch

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use etherws_core::switch::{Decision, PortConfig, Switch, SwitchConfig};
use etherws_core::wire::EthernetFrame;
use etherws_core::PortId;

/// A 60-byte IPv4 frame from station `src` to station `dst` (MACs
/// 02:00:00:xx:xx:xx), optionally VLAN-tagged.
fn frame(dst: u32, src: u32, vlan: Option<u16>) -> Vec<u8> {
    let mac = |n: u32| {
        let b = n.to_be_bytes();
        [2, 0, 0, b[1], b[2], b[3]]
    };
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&mac(dst));
    f.extend_from_slice(&mac(src));
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, 0);
    f
}

/// A switch with `ports` ports and `stations` stations spread over them,
/// learned once. Returns the switch and its port ids.
fn switch(ports: usize, stations: u32) -> (Switch, Vec<PortId>) {
    let mut sw = Switch::new(SwitchConfig::default());
    let ids: Vec<PortId> = (0..ports)
        .map(|_| sw.add_port(PortConfig::default()))
        .collect();
    let now = Instant::now();
    for s in 0..stations {
        let p = ids[s as usize % ports];
        let f = frame(0xff_ffff, s, None);
        let _ = sw.handle_frame(now, p, &EthernetFrame::new_checked(&f[..]).unwrap());
    }
    (sw, ids)
}

fn bench(c: &mut Criterion) {
    let plain = frame(1, 2, None);
    let tagged = frame(1, 2, Some(10));
    let mut g = c.benchmark_group("frame_view");
    g.bench_function("parse", |b| {
        b.iter(|| {
            EthernetFrame::new_checked(std::hint::black_box(&plain[..]))
                .unwrap()
                .vlan_id()
        })
    });
    g.bench_function("parse_vlan", |b| {
        b.iter(|| {
            EthernetFrame::new_checked(std::hint::black_box(&tagged[..]))
                .unwrap()
                .vlan_id()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("switch_10k_stations");
    for ports in [2usize, 1000] {
        let (mut sw, ids) = switch(ports, 10_000);
        // Known station to known station on another port: learn (refresh)
        // and forward, the steady state of unicast traffic.
        let frames = known_frames(&ids, ports);
        let now = Instant::now();
        g.bench_with_input(BenchmarkId::new("forward", ports), &frames, |b, frames| {
            let mut i = 0;
            b.iter(|| {
                let (p, f) = &frames[i & 1023];
                i += 1;
                let view = EthernetFrame::new_checked(&f[..]).unwrap();
                match sw.handle_frame(now, *p, &view).decision {
                    Decision::Forward(out) => out,
                    _ => panic!("not forwarded"),
                }
            })
        });
        // A new station each time (the table then stays at its cap).
        let mut n = 1_000_000u32;
        g.bench_function(BenchmarkId::new("learn_new", ports), |b| {
            b.iter(|| {
                n = n.wrapping_add(1) & 0xff_ffff;
                let f = frame(1, n, None);
                let view = EthernetFrame::new_checked(&f[..]).unwrap();
                sw.handle_frame(now, ids[0], &view).learned.is_some()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("switch_2_threads");
    let (sw, ids) = switch(1000, 10_000);
    let frames = known_frames(&ids, 1000);
    let rw = RwLock::new(sw);
    g.bench_function("rwlock_shared_path", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &frames, |now, p, view| {
                let sw = rw.read().unwrap();
                match sw.try_handle_frame(now, p, view) {
                    Some(o) => matches!(o.decision, Decision::Forward(_)),
                    None => {
                        drop(sw);
                        let mut sw = rw.write().unwrap();
                        matches!(sw.handle_frame(now, p, view).decision, Decision::Forward(_))
                    }
                }
            })
        })
    });
    let (sw, _) = switch(1000, 10_000);
    let mx = Mutex::new(sw);
    g.bench_function("mutex_handle_frame", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &frames, |now, p, view| {
                let mut sw = mx.lock().unwrap();
                matches!(sw.handle_frame(now, p, view).decision, Decision::Forward(_))
            })
        })
    });
    g.finish();
}

/// 1,024 frames between known stations on different ports.
fn known_frames(ids: &[PortId], ports: usize) -> Vec<(PortId, Vec<u8>)> {
    (0..1024u32)
        .map(|i| {
            let src = (i * 7919) % 10_000;
            let mut dst = (i * 104_729) % 10_000;
            if dst as usize % ports == src as usize % ports {
                dst = (dst + 1) % 10_000;
            }
            (ids[src as usize % ports], frame(dst, src, None))
        })
        .collect()
}

/// Two threads each switch `iters` frames through `switch`; returns the
/// wall time, so the figure is the time per frame with both at work.
fn two_threads(
    iters: u64,
    frames: &[(PortId, Vec<u8>)],
    switch: impl Fn(Instant, PortId, &EthernetFrame<&[u8]>) -> bool + Sync,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2usize {
            let switch = &switch;
            s.spawn(move || {
                for i in 0..iters as usize {
                    let (p, f) = &frames[(i * 2 + t) & 1023];
                    let view = EthernetFrame::new_checked(&f[..]).unwrap();
                    assert!(switch(Instant::now(), *p, &view), "not forwarded");
                }
            });
        }
    });
    start.elapsed()
}

criterion_group!(benches, bench);
criterion_main!(benches);
