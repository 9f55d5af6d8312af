//! Per-frame cost of the filter chain: no filter, one pass filter, one
//! rewrite filter, a chain of three, at 64 and 1500 bytes.
//!
//!     cargo bench -p etherws-filter --bench chain

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherws_core::{Direction, FilterChain, FilterContext, Frame, NoFilter, PortId, PortKind};
use etherws_filter::{Chain, FilterSpec, Host};

/// Returns 0: pass unchanged (the fast path).
const PASS: &str = "i32.const 0";
/// Flips the locally-administered bit of the source MAC back and forth, so
/// the frame really changes on every call.
const REWRITE: &str = "(i32.store8 (i32.const 1030) (i32.xor (i32.load8_u (i32.const 1030)) (i32.const 2))) local.get $len";

fn module(body: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "etherws_abi_version") (result i32) i32.const 1)
  (func (export "etherws_frame_buffer") (result i32) i32.const 1024)
  (func (export "etherws_frame_capacity") (result i32) i32.const 65600)
  (func (export "etherws_filter") (param $len i32) (param i32 i32 i32) (result i32) {body}))"#
    )
}

fn chain(host: &Host, bodies: &[(&str, &str)]) -> Chain {
    let dir = std::env::temp_dir().join(format!("etherws-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let specs = bodies
        .iter()
        .map(|(name, body)| {
            let p: PathBuf = dir.join(format!("{name}.wat"));
            std::fs::write(&p, module(body)).unwrap();
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

criterion_group!(benches, bench);
criterion_main!(benches);
