//! Hostile and broken modules: each is refused at load with a clear message,
//! or faults at run time without harm, and the chain keeps working.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use etherws_core::{Direction, FilterChain, FilterContext, Frame, PortId, PortKind, Verdict};
use etherws_filter::{Chain, FilterError, FilterSpec, Host};

const MAX_FRAME: usize = 1522;

/// A valid filter whose entry point body is `body` (locals: $len $dir $port $kind).
fn module(body: &str) -> String {
    module_with("", body, "i32.const 1")
}

fn module_with(extra: &str, body: &str, version: &str) -> String {
    format!(
        r#"(module
  {extra}
  (memory (export "memory") 1)
  (func (export "etherws_abi_version") (result i32) {version})
  (func (export "etherws_frame_buffer") (result i32) i32.const 1024)
  (func (export "etherws_frame_capacity") (result i32) i32.const 2048)
  (func (export "etherws_filter") (param $len i32) (param $dir i32) (param $port i32) (param $kind i32) (result i32)
    {body}))"#
    )
}

fn write(name: &str, wat: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("etherws-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.wat"));
    std::fs::File::create(&p)
        .unwrap()
        .write_all(wat.as_bytes())
        .unwrap();
    p
}

fn load(name: &str, wat: &str, opts: &str) -> Result<Chain, FilterError> {
    let host = Host::new().unwrap();
    let p = write(name, wat);
    let spec = FilterSpec::parse(&format!("{}{opts}", p.display())).unwrap();
    Chain::load(&host, vec![spec], MAX_FRAME, "ingress")
}

fn ctx() -> FilterContext {
    FilterContext {
        direction: Direction::Ingress,
        port: PortId(1),
        port_kind: PortKind::Link,
    }
}

fn frame() -> Frame {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    f.resize(60, 0);
    Frame::new(f)
}

fn err(r: Result<Chain, FilterError>) -> String {
    match r {
        Ok(_) => panic!("module was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_pass_filter_passes_unchanged() {
    let c = load("pass", &module("local.get $len"), "").unwrap();
    let mut f = frame();
    assert_eq!(c.filter(&ctx(), &mut f), Verdict::Pass);
    assert_eq!(f, frame());
    let fl = c.filters();
    assert_eq!(fl[0].stats().passed(), 1);
    assert_eq!(fl[0].stats().rewritten(), 0);
}

#[test]
fn missing_export_is_named() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "etherws_abi_version") (result i32) i32.const 1))"#;
    let e = err(load("missing", wat, ""));
    assert!(
        e.contains("missing required export `etherws_frame_buffer`"),
        "{e}"
    );
}

#[test]
fn wrong_export_type_is_named() {
    let wat = module("local.get $len").replace(
        r#"(func (export "etherws_frame_capacity") (result i32) i32.const 2048)"#,
        r#"(func (export "etherws_frame_capacity") (result i64) i64.const 2048)"#,
    );
    let e = err(load("wrongtype", &wat, ""));
    assert!(
        e.contains("`etherws_frame_capacity` has the wrong type"),
        "{e}"
    );
}

#[test]
fn wrong_abi_version_is_refused() {
    let e = err(load(
        "v2",
        &module_with("", "local.get $len", "i32.const 2"),
        "",
    ));
    assert!(
        e.contains("ABI version 2") && e.contains("supports version 1"),
        "{e}"
    );
}

#[test]
fn unknown_import_is_refused_by_name() {
    let wat = module_with(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        "local.get $len",
        "i32.const 1",
    );
    let e = err(load("wasi", &wat, ""));
    assert!(e.contains("wasi_snapshot_preview1::fd_write"), "{e}");
}

#[test]
fn small_buffer_is_refused() {
    let wat = module("local.get $len").replace("i32.const 2048", "i32.const 100");
    let e = err(load("small", &wat, ""));
    assert!(e.contains("capacity 100"), "{e}");
}

#[test]
fn config_without_init_is_refused() {
    let e = err(load("noinit", &module("local.get $len"), ":x=1"));
    assert!(e.contains("no etherws_init"), "{e}");
}

#[test]
fn init_can_reject_config() {
    let wat = module_with(
        r#"(func (export "etherws_init") (param i32) (result i32) i32.const 7)"#,
        "local.get $len",
        "i32.const 1",
    );
    let e = err(load("reject", &wat, ":x=1"));
    assert!(
        e.contains("rejected its configuration") && e.contains("code 7"),
        "{e}"
    );
}

/// Runs 3 frames through a faulting filter; returns the verdicts and the
/// fault count. A trap discards the instance: the second frame rebuilds it
/// at once (the first fault has no back-off) and faults again; the third
/// meets the back-off and follows the policy without a call (`bypassed`).
fn run_faulty(name: &str, body: &str, opts: &str) -> (Vec<Verdict>, u64) {
    let c = load(name, &module(body), opts).expect("loads");
    let v = (0..3).map(|_| c.filter(&ctx(), &mut frame())).collect();
    let faults = c.filters()[0].stats().faults.load(Relaxed);
    (v, faults)
}

#[test]
fn trap_is_a_fault_and_fail_closed_drops() {
    let (v, faults) = run_faulty("trap", "unreachable", "");
    assert_eq!(v, vec![Verdict::Drop; 3]);
    assert_eq!(faults, 2, "two calls trapped, the third was bypassed");
}

#[test]
fn fail_open_passes_faulting_frames() {
    let (v, faults) = run_faulty("trapopen", "unreachable", ":on_fault=open");
    assert_eq!(v, vec![Verdict::Pass; 3]);
    assert_eq!(faults, 2);
}

#[test]
fn a_filter_that_traps_on_every_frame_is_rebuilt_with_back_off() {
    let c = load("alwaystrap", &module("unreachable"), "").unwrap();
    for _ in 0..2000 {
        assert_eq!(c.filter(&ctx(), &mut frame()), Verdict::Drop);
    }
    let filters = c.filters();
    let f = &filters[0];
    let (faults, bypassed) = (
        f.stats().faults.load(Relaxed),
        f.stats().bypassed.load(Relaxed),
    );
    // Rebuilds wait 0, 10, 20, 40 ... ms, capped at 1 s: a handful of
    // rebuilds however fast the frames come, not one per frame.
    assert!((2..=30).contains(&faults), "{faults} faults");
    assert_eq!(faults + bypassed, 2000);
    let cause = f.stats().last_fault().unwrap();
    assert!(cause.contains("`unreachable` instruction"), "{cause}");
}

#[test]
fn infinite_loop_is_cut_by_fuel() {
    // Default fuel budget. The cause must be fuel, not the wall-clock
    // deadline: with fuel metering off this test fails.
    let c = load("loop", &module("(loop $l (br $l)) local.get $len"), "").unwrap();
    let t = Instant::now();
    assert_eq!(c.filter(&ctx(), &mut frame()), Verdict::Drop);
    let took = t.elapsed();
    eprintln!("infinite loop cut after {took:?} (default fuel)");
    let filters = c.filters();
    let stats = filters[0].stats();
    assert_eq!(stats.faults.load(Relaxed), 1);
    let cause = stats.last_fault().unwrap();
    assert!(
        cause.contains("out of fuel"),
        "cut by something else: {cause}"
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

#[test]
fn memory_grow_past_cap_fails_and_the_fault_is_contained() {
    // Ask for 64 MiB more (cap 16 MiB): memory.grow returns -1; the module
    // then traps, which is a fault.
    let body = "(if (i32.eq (memory.grow (i32.const 1024)) (i32.const -1)) (then unreachable)) local.get $len";
    let (v, faults) = run_faulty("grow", body, "");
    assert_eq!(v, vec![Verdict::Drop; 3]);
    assert_eq!(faults, 2);
    // The cap counts the module's initial page: with memory_mb=1 (16
    // pages of 64 KiB) and 1 page to start, exactly 15 grows of one page
    // succeed; then memory.grow returns -1 (not a trap). This filter passes
    // while its grow succeeds and drops once it fails.
    let ok = "(if (result i32) (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) \
              (then i32.const -1) (else local.get $len))";
    let c = load("growcap", &module(ok), ":memory_mb=1").unwrap();
    let v: Vec<Verdict> = (0..20).map(|_| c.filter(&ctx(), &mut frame())).collect();
    let mut want = vec![Verdict::Pass; 15];
    want.extend([Verdict::Drop; 5]);
    assert_eq!(v, want);
    assert_eq!(c.filters()[0].stats().faults.load(Relaxed), 0);
}

#[test]
fn verdict_beyond_buffer_is_a_fault() {
    let (v, faults) = run_faulty("big", "i32.const 4096", "");
    assert_eq!(v, vec![Verdict::Drop; 3]);
    assert_eq!(faults, 3);
    let (v, _) = run_faulty("neg", "i32.const -5", "");
    assert_eq!(v, vec![Verdict::Drop; 3]);
    let (v, _) = run_faulty("short", "i32.const 13", "");
    assert_eq!(v, vec![Verdict::Drop; 3]);
}

#[test]
fn unload_after_consecutive_faults() {
    let (v, faults) = run_faulty("unload", "unreachable", ":unload_after=2");
    // Two faults drop (closed), then the filter is gone and frames pass.
    assert_eq!(v, vec![Verdict::Drop, Verdict::Drop, Verdict::Pass]);
    assert_eq!(faults, 2);
}

#[test]
fn a_fault_does_not_poison_the_instance() {
    // Traps on port 1 only; port 2 frames pass before and after.
    let body = "(if (i32.eq (local.get $port) (i32.const 1)) (then unreachable)) local.get $len";
    let c = load("p1", &module(body), "").unwrap();
    let p2 = FilterContext {
        port: PortId(2),
        ..ctx()
    };
    assert_eq!(c.filter(&p2, &mut frame()), Verdict::Pass);
    assert_eq!(c.filter(&ctx(), &mut frame()), Verdict::Drop);
    assert_eq!(c.filter(&p2, &mut frame()), Verdict::Pass);
}

#[test]
fn rewrite_in_place_and_grow() {
    // Sets byte 0 to 0x02 and grows the frame by 4 bytes.
    let body =
        "(i32.store8 (i32.const 1024) (i32.const 2)) (i32.add (local.get $len) (i32.const 4))";
    let c = load("rw", &module(body), "").unwrap();
    let mut f = frame();
    assert_eq!(c.filter(&ctx(), &mut f), Verdict::Pass);
    assert_eq!(f.len(), 64);
    assert_eq!(f.as_ref()[0], 2);
    assert_eq!(c.filters()[0].stats().rewritten(), 1);
}

#[test]
fn reload_keeps_old_chain_on_error() {
    let host = Host::new().unwrap();
    let p = write("reload", &module("i32.const -1"));
    let c = Chain::load(
        &host,
        vec![FilterSpec::parse(p.to_str().unwrap()).unwrap()],
        MAX_FRAME,
        "ingress",
    )
    .unwrap();
    assert_eq!(c.filter(&ctx(), &mut frame()), Verdict::Drop);
    std::fs::write(&p, "(module garbage").unwrap();
    assert!(c.reload().is_err());
    assert_eq!(
        c.filter(&ctx(), &mut frame()),
        Verdict::Drop,
        "old chain still in place"
    );
    std::fs::write(&p, module("local.get $len")).unwrap();
    assert_eq!(c.reload().unwrap(), 1);
    assert_eq!(
        c.filter(&ctx(), &mut frame()),
        Verdict::Pass,
        "new chain swapped in"
    );
}

#[test]
fn out_of_bounds_import_pointer_is_a_fault() {
    let wat = module_with(
        r#"(import "etherws" "log" (func $log (param i32 i32 i32)))"#,
        "(call $log (i32.const 2) (i32.const 65000) (i32.const 10000)) local.get $len",
        "i32.const 1",
    );
    let c = load("oob", &wat, "").unwrap();
    assert_eq!(c.filter(&ctx(), &mut frame()), Verdict::Drop);
    assert_eq!(c.filters()[0].stats().faults.load(Relaxed), 1);
}

#[test]
fn wall_clock_deadline_backs_up_fuel() {
    // With (practically) unlimited fuel, the epoch deadline cuts the loop.
    let c = load(
        "epoch",
        &module("(loop $l (br $l)) local.get $len"),
        ":fuel=10000000000",
    )
    .unwrap();
    let t = Instant::now();
    assert_eq!(c.filter(&ctx(), &mut frame()), Verdict::Drop);
    let took = t.elapsed();
    eprintln!("epoch deadline cut the loop after {took:?}");
    let filters = c.filters();
    let stats = filters[0].stats();
    assert_eq!(stats.faults.load(Relaxed), 1);
    let cause = stats.last_fault().unwrap();
    assert!(
        cause.contains("epoch interrupt"),
        "cut by something else: {cause}"
    );
    // The deadline is 100 ms; this bound only catches a hang.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

#[test]
fn counters_and_logs_from_a_guest() {
    let wat = module_with(
        r#"(import "etherws" "counter_define" (func $def (param i32 i32) (result i32)))
           (import "etherws" "counter_add" (func $add (param i32 i64)))
           (import "etherws" "log" (func $log (param i32 i32 i32)))
           (data (i32.const 16) "seen")
           (global $id (mut i32) (i32.const -1))
           (func (export "etherws_init") (param i32) (result i32)
             (global.set $id (call $def (i32.const 16) (i32.const 4))) i32.const 0)"#,
        "(call $add (global.get $id) (i64.const 2)) (call $log (i32.const 3) (i32.const 16) (i32.const 4)) i32.const 0",
        "i32.const 1",
    );
    let c = load("counters", &wat, "").unwrap();
    for _ in 0..3 {
        assert_eq!(c.filter(&ctx(), &mut frame()), Verdict::Pass);
    }
    let filters = c.filters();
    assert_eq!(filters[0].stats().custom(), vec![("seen".to_string(), 6)]);
    assert!(
        c.report().iter().any(|l| l.ends_with("counter seen=6")),
        "{:?}",
        c.report()
    );
}

#[test]
fn initial_memory_over_the_cap_is_refused_at_load() {
    // 300 pages = 18.75 MiB > the default 16 MiB cap.
    let wat = module("local.get $len").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 300)",
    );
    let e = err(load("bigmem", &wat, ""));
    assert!(e.contains("faulted while loading"), "{e}");
    assert!(load("bigmem-ok", &wat, ":memory_mb=32").is_ok());
}

/// A module declaring `caps` through `etherws_capabilities`.
fn with_caps(caps: &str, body: &str) -> String {
    module_with(
        &format!(r#"(func (export "etherws_capabilities") (result i32) {caps})"#),
        body,
        "i32.const 1",
    )
}

/// A frame as an offloading TAP hands it over: with a (checksum-only)
/// virtio-net header.
fn offloaded() -> Frame {
    let hdr = etherws_core::offload::VnetHdr {
        flags: 0,
        ..Default::default()
    };
    Frame::with_vnet(frame().bytes().clone(), Some(hdr))
}

#[test]
fn super_frames_only_for_filters_that_declare_them() {
    let plain = load("nocap", &module("i32.const 0"), "").unwrap();
    assert_eq!(plain.max_super_frame(), 0, "no export: finish first");
    let cap = load("cap", &with_caps("i32.const 1", "i32.const 0"), "").unwrap();
    assert_eq!(cap.max_super_frame(), 2048, "whole, up to the buffer");
    let unknown = load("capx", &with_caps("i32.const 0x10", "i32.const 0"), "").unwrap();
    assert_eq!(unknown.max_super_frame(), 0, "unknown bits are ignored");
    // One filter without the capability makes the chain finish frames.
    let host = Host::new().unwrap();
    let specs = [
        ("m1", module("i32.const 0")),
        ("m2", with_caps("i32.const 1", "i32.const 0")),
    ]
    .iter()
    .map(|(n, w)| FilterSpec::parse(&write(n, w).display().to_string()).unwrap())
    .collect();
    let mixed = Chain::load(&host, specs, MAX_FRAME, "ingress").unwrap();
    assert_eq!(mixed.max_super_frame(), 0);
    let e = err(load(
        "capty",
        &module_with(
            r#"(func (export "etherws_capabilities") (param i32) (result i32) i32.const 1)"#,
            "i32.const 0",
            "i32.const 1",
        ),
        "",
    ));
    assert!(e.contains("etherws_capabilities"), "{e}");
}

#[test]
fn a_super_frame_rewrite_keeps_its_length_or_faults() {
    // Same length, byte 0 changed: a rewrite.
    let same = "(i32.store8 (i32.const 1024) (i32.const 2)) local.get $len";
    let c = load("samelen", &with_caps("i32.const 1", same), "").unwrap();
    let mut f = offloaded();
    assert_eq!(c.filter(&ctx(), &mut f), Verdict::Pass);
    assert_eq!((f.len(), f.as_ref()[0]), (60, 2));
    assert!(f.meta.vnet.is_some(), "the header stays with the frame");
    // Grown by a tag: a fault (fail-closed drops), while the same
    // verdict on a wire frame is a rewrite.
    let grow = "(i32.add (local.get $len) (i32.const 4))";
    let c = load("grow", &with_caps("i32.const 1", grow), "").unwrap();
    assert_eq!(c.filter(&ctx(), &mut offloaded()), Verdict::Drop);
    let fault = c.filters()[0].stats().last_fault().unwrap();
    assert!(fault.contains("must keep its length"), "{fault}");
    assert_eq!(c.filter(&ctx(), &mut frame()), Verdict::Pass);
}
