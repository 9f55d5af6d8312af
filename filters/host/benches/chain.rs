//! Per-frame cost of the filter chain: no filter, one pass filter, one
//! rewrite filter, a chain of three, at 64 and 1500 bytes; and a chain of
//! three from two threads at once, with filters that declare
//! `CAP_REPLICABLE` (an instance per thread) and filters that do not (one
//! instance, calls serialised).
//!
//!     cargo bench -p etherws-filter --bench chain
//!     cargo bench -p etherws-filter --bench chain -- filter_chain_2_threads

use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherws_core::{Direction, FilterChain, FilterContext, Frame, NoFilter, PortId, PortKind};
use etherws_filter::{Chain, FilterSpec, Host};

/// Returns 0: pass unchanged (the fast path).
const PASS: &str = "i32.const 0";
/// Flips the locally-administered bit of the source MAC back and forth, so
/// the frame really changes on every call.
const REWRITE: &str = "(i32.store8 (i32.const 1030) (i32.xor (i32.load8_u (i32.const 1030)) (i32.const 2))) local.get $len";

/// Declares `CAP_REPLICABLE`.
const REPLICABLE: &str = r#"(func (export "etherws_capabilities") (result i32) i32.const 2)"#;

fn module_with(extra: &str, body: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 2)
  {extra}
  (func (export "etherws_abi_version") (result i32) i32.const 1)
  (func (export "etherws_frame_buffer") (result i32) i32.const 1024)
  (func (export "etherws_frame_capacity") (result i32) i32.const 65600)
  (func (export "etherws_filter") (param $len i32) (param i32 i32 i32) (result i32) {body}))"#
    )
}

fn chain(host: &Host, bodies: &[(&str, &str)]) -> Chain {
    chain_with(host, "", bodies)
}

fn chain_with(host: &Host, extra: &str, bodies: &[(&str, &str)]) -> Chain {
    let dir = std::env::temp_dir().join(format!("etherws-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let specs = bodies
        .iter()
        .map(|(name, body)| {
            let p: PathBuf = dir.join(format!("{name}.wat"));
            std::fs::write(&p, module_with(extra, body)).unwrap();
            FilterSpec::parse(p.to_str().unwrap()).unwrap()
        })
        .collect();
    Chain::load(host, specs, 1522, "ingress").unwrap()
}

fn bench(c: &mut Criterion) {
    let host = Host::new().unwrap();
    let ctx = FilterContext {
        direction: Direction::Ingress,
        port: PortId(1),
        port_kind: PortKind::Link,
    };
    let cases: Vec<(&str, Box<dyn FilterChain>)> = vec![
        ("none", Box::new(NoFilter)),
        ("pass", Box::new(chain(&host, &[("pass", PASS)]))),
        ("rewrite", Box::new(chain(&host, &[("rewrite", REWRITE)]))),
        (
            "pass3",
            Box::new(chain(&host, &[("a", PASS), ("b", PASS), ("c", PASS)])),
        ),
    ];
    let mut g = c.benchmark_group("filter_chain");
    for size in [64usize, 1500] {
        let mut bytes = vec![0u8; size];
        bytes[..6].fill(0xff);
        bytes[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let frame = Frame::new(bytes);
        g.throughput(Throughput::Elements(1));
        for (name, chain) in &cases {
            g.bench_with_input(BenchmarkId::new(*name, size), &frame, |b, f| {
                b.iter(|| {
                    let mut f = f.clone();
                    let v = chain.filter(&ctx, &mut f);
                    std::hint::black_box((v, f))
                })
            });
        }
    }
    g.finish();
}

/// Two threads each filter one 1500-byte frame `iters` times through
/// `chain` at once (as the egress chains of `iters` ports on a node with
/// `--threads 2` would for a flooded frame); returns the wall time from
/// their common start to the end of the later one.
fn two_threads(chain: &Chain, iters: u64) -> Duration {
    let start = Barrier::new(3);
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let start = &start;
            s.spawn(move || {
                let ctx = FilterContext {
                    direction: Direction::Egress,
                    port: PortId(1 + t),
                    port_kind: PortKind::Link,
                };
                // A frame per thread: sharing one would make the threads
                // contend on its reference count, not on the filters.
                let mut bytes = vec![0u8; 1500];
                bytes[..6].fill(0xff);
                bytes[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
                let mut frame = Frame::new(bytes);
                start.wait();
                for _ in 0..iters {
                    // Pass filters: the frame comes back unchanged.
                    std::hint::black_box(chain.filter(&ctx, &mut frame));
                }
            });
        }
        start.wait();
        let t0 = Instant::now();
        // The scope joins both threads before returning.
        t0
    })
    .elapsed()
}

fn bench_threads(c: &mut Criterion) {
    // A pool of two instances. Each sample starts two fresh threads, which
    // take consecutive thread numbers and so different instances.
    // Criterion's time is per pair of frames (one on each thread), its
    // throughput counts both.
    let host = Host::new().unwrap().with_instances(2);
    let pass3 = [("a", PASS), ("b", PASS), ("c", PASS)];
    let replicable = [("ra", PASS), ("rb", PASS), ("rc", PASS)];
    let cases = [
        ("single", chain(&host, &pass3)),
        ("replicable", chain_with(&host, REPLICABLE, &replicable)),
    ];
    let mut g = c.benchmark_group("filter_chain_2_threads");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.throughput(Throughput::Elements(2));
    for (name, chain) in &cases {
        g.bench_function(BenchmarkId::new("pass3", *name), |b| {
            b.iter_custom(|iters| two_threads(chain, iters))
        });
    }
    g.finish();
    for (name, chain) in &cases {
        let instances: Vec<usize> = chain.filters().iter().map(|f| f.instances()).collect();
        println!("filter_chain_2_threads/pass3/{name}: instances {instances:?}");
    }
}

criterion_group!(benches, bench, bench_threads);
criterion_main!(benches);
