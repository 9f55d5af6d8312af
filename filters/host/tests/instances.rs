//! Instances per thread (spec/filter-abi.md §3.2): a filter declaring
//! `CAP_REPLICABLE` gets an instance for each thread that calls it, each
//! initialised with the filter's configuration, and a fault takes down only
//! the instance that trapped; a filter without it keeps exactly one.
//!
//! A thread's slot is its number (taken on its first call of a replicable
//! filter, process-wide) modulo the pool size. The hosts here have the
//! largest pool, `MAX_INSTANCES`: this binary starts fewer threads than
//! that, so two threads never share a slot whatever order the tests run in.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Barrier;

use etherws_core::{Direction, FilterChain, FilterContext, Frame, PortId, PortKind, Verdict};
use etherws_filter::{Chain, FilterSpec, Host, MAX_INSTANCES};

const MAX_FRAME: usize = 1522;

/// A module whose entry point body is `body` (locals: $len), with `extra`
/// fields and an `etherws_capabilities` export returning `caps`.
fn module(caps: i32, extra: &str, body: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  {extra}
  (func (export "etherws_abi_version") (result i32) i32.const 1)
  (func (export "etherws_frame_buffer") (result i32) i32.const 1024)
  (func (export "etherws_frame_capacity") (result i32) i32.const 2048)
  (func (export "etherws_capabilities") (result i32) i32.const {caps})
  (func (export "etherws_filter") (param $len i32) (param i32 i32 i32) (result i32)
    {body}))"#
    )
}

/// Passes every frame.
const PASS: &str = "i32.const 0";
/// Traps on a frame whose first byte is 0xff, passes the others.
const TRAP_ON_FF: &str =
    "(if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 0xff)) (then unreachable)) i32.const 0";

fn host() -> Host {
    Host::new().unwrap().with_instances(MAX_INSTANCES)
}

fn load(host: &Host, name: &str, wat: &str, config: &str) -> Chain {
    let dir = std::env::temp_dir().join(format!("etherws-instances-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.wat"));
    std::fs::write(&p, wat).unwrap();
    let spec = FilterSpec::parse(&format!("{}{config}", p.display())).unwrap();
    Chain::load(host, vec![spec], MAX_FRAME, "ingress").unwrap()
}

fn ctx() -> FilterContext {
    FilterContext {
        direction: Direction::Ingress,
        port: PortId(1),
        port_kind: PortKind::Link,
    }
}

fn frame(first: u8) -> Frame {
    let mut f = vec![first, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.resize(60, 0);
    Frame::new(f)
}

/// Filters 100 frames from each of two threads at once; returns their
/// verdicts.
fn from_two_threads(c: &Chain) -> Vec<Verdict> {
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        let run = || {
            start.wait();
            (0..100)
                .map(|_| c.filter(&ctx(), &mut frame(2)))
                .collect::<Vec<_>>()
        };
        let (a, b) = (s.spawn(run), s.spawn(run));
        let mut v = a.join().unwrap();
        v.extend(b.join().unwrap());
        v
    })
}

#[test]
fn a_replicable_filter_gets_an_instance_per_thread_and_a_plain_one_keeps_one() {
    let host = host();
    let plain = load(&host, "plain", &module(0, "", PASS), "");
    let replicable = load(&host, "replicable", &module(2, "", PASS), "");
    let super_and_replicable = load(&host, "both", &module(3, "", PASS), "");
    let f = |c: &Chain| c.filters()[0].clone();
    // One instance made at load, whatever the pool.
    assert_eq!(f(&replicable).instances(), 1);
    assert_eq!(f(&replicable).max_instances(), MAX_INSTANCES);
    assert_eq!(f(&plain).max_instances(), 1);

    for c in [&plain, &replicable, &super_and_replicable] {
        assert_eq!(from_two_threads(c), vec![Verdict::Pass; 200]);
        assert!(f(c).is_ready());
        assert_eq!(f(c).stats().passed(), 200);
    }
    assert_eq!(f(&plain).instances(), 1, "without the bit: one instance");
    assert_eq!(f(&replicable).instances(), 2, "one per thread");
    assert_eq!(f(&super_and_replicable).instances(), 2, "bits combine");
    assert_eq!(super_and_replicable.max_super_frame(), 2048);
    assert!(
        replicable
            .report()
            .iter()
            .any(|l| l.starts_with("filter ingress replicable: calls=200 ")
                && l.ends_with(" instances=2")),
        "{:?}",
        replicable.report()
    );

    // A pool of one: the instance made at load serves every thread.
    let one = load(
        &Host::new().unwrap().with_instances(1),
        "one",
        &module(2, "", PASS),
        "",
    );
    assert_eq!(from_two_threads(&one), vec![Verdict::Pass; 200]);
    assert_eq!(f(&one).instances(), 1);
}

#[test]
fn a_trap_rebuilds_only_the_instance_that_trapped() {
    let c = load(&host(), "trapff", &module(2, "", TRAP_ON_FF), "");
    let f = c.filters()[0].clone();
    let step = Barrier::new(3);
    // Thread A traps once between its two good frames; thread B filters
    // before and after, and must meet its own instance, live, both times.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            let first = c.filter(&ctx(), &mut frame(2));
            step.wait(); // 1: both threads have an instance
            step.wait(); // checked
            let trapped = c.filter(&ctx(), &mut frame(0xff));
            step.wait(); // 2: A's instance is down
            step.wait(); // 3: checked
            let rebuilt = c.filter(&ctx(), &mut frame(2));
            vec![first, trapped, rebuilt]
        });
        let b = s.spawn(|| {
            let first = c.filter(&ctx(), &mut frame(2));
            for _ in 0..4 {
                step.wait();
            }
            let after = c.filter(&ctx(), &mut frame(2));
            vec![first, after]
        });
        step.wait();
        let both = (f.instances(), f.is_ready());
        step.wait();
        step.wait();
        let one_down = (f.instances(), f.is_ready(), f.stats().faults.load(Relaxed));
        step.wait();
        assert_eq!(both, (2, true), "an instance per thread");
        assert_eq!(one_down, (1, false, 1), "only A's instance went down");
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, vec![Verdict::Pass, Verdict::Drop, Verdict::Pass]);
    assert_eq!(b, vec![Verdict::Pass, Verdict::Pass]);
    assert_eq!((f.instances(), f.is_ready()), (2, true), "A's was rebuilt");
    let s = f.stats();
    assert_eq!(s.faults.load(Relaxed), 1);
    assert_eq!(s.bypassed.load(Relaxed), 0, "no frame met a down instance");
    assert_eq!((s.passed(), s.dropped()), (4, 1));
    assert!(s.last_fault().unwrap().contains("`unreachable`"));
}

#[test]
fn every_instance_is_initialised_with_the_configuration() {
    // Passes only if its `etherws_init` was given exactly "x=1".
    let init = r#"(global $ok (mut i32) (i32.const 0))
  (func (export "etherws_init") (param $n i32) (result i32)
    (global.set $ok (i32.and
      (i32.eq (local.get $n) (i32.const 3))
      (i32.eq (i32.and (i32.load (i32.const 1024)) (i32.const 0xffffff))
              (i32.const 0x313d78))))
    i32.const 0)"#;
    let body = "(if (result i32) (global.get $ok) (then i32.const 0) (else i32.const -1))";
    let host = host();
    let c = load(&host, "configured", &module(2, init, body), ":x=1");
    assert_eq!(from_two_threads(&c), vec![Verdict::Pass; 200]);
    assert_eq!(c.filters()[0].instances(), 2);
    // The module does check: another configuration drops.
    let other = load(&host, "misconfigured", &module(2, init, body), ":x=2");
    assert_eq!(other.filter(&ctx(), &mut frame(2)), Verdict::Drop);
}

#[test]
fn library_filters_replicate_only_when_they_keep_no_state() {
    let host = host();
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../library/wasm");
    let cases = [
        ("pass", "", true),
        ("rewrite", "", true),
        ("ethertype", ":drop=0x0806", true),
        ("macallow", ":allow=02:00:00:00:00:01", true),
        ("vlan", ":mode=untag", true),
        // Token buckets, and the `sample=N` count: state across frames.
        ("ratelimit", ":rate=10", false),
        ("logger", "", false),
        ("capture", "", false),
    ];
    for (name, config, replicable) in cases {
        let spec = format!("{}{config}", lib.join(format!("{name}.wasm")).display());
        let c = Chain::load(
            &host,
            vec![FilterSpec::parse(&spec).unwrap()],
            MAX_FRAME,
            "ingress",
        )
        .unwrap();
        let max = c.filters()[0].max_instances();
        assert_eq!(max > 1, replicable, "{name}: {max} instances at most");
    }
}
