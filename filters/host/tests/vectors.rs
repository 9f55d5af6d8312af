//! Conformance vectors (spec/filter-vectors/*.txt) run against every
//! library filter (filters/library/wasm/*.wasm).
//!
//! Grammar: `filter NAME` once; `config STRING` (`-` for empty) starts a
//! group run on a fresh instance; `case NAME DIRECTION HEX -> drop|pass|HEX`.

use std::path::{Path, PathBuf};

use etherws_core::{Direction, FilterChain, FilterContext, Frame, PortId, PortKind, Verdict};
use etherws_filter::{Chain, FilterSpec, Host};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex {s:?}");
    (0..s.len() / 2)
        .map(|i| {
            u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s:?}"))
        })
        .collect()
}

fn run_file(host: &Host, path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let mut filter: Option<String> = None;
    let mut chain: Option<Chain> = None;
    let mut cases = 0;
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), lineno + 1);
        if let Some(name) = line.strip_prefix("filter ") {
            filter = Some(name.trim().to_string());
        } else if let Some(cfg) = line.strip_prefix("config ") {
            let name = filter
                .as_deref()
                .unwrap_or_else(|| panic!("{at}: config before filter"));
            let wasm = root().join(format!("filters/library/wasm/{name}.wasm"));
            let cfg = cfg.trim();
            let spec = if cfg == "-" {
                wasm.display().to_string()
            } else {
                format!("{}:{cfg}", wasm.display())
            };
            let spec = FilterSpec::parse(&spec).unwrap();
            chain = Some(
                Chain::load(host, vec![spec], 1522, "ingress")
                    .unwrap_or_else(|e| panic!("{at}: {e}")),
            );
        } else if let Some(rest) = line.strip_prefix("case ") {
            let (lhs, expect) = rest
                .split_once("->")
                .unwrap_or_else(|| panic!("{at}: no ->"));
            let f: Vec<&str> = lhs.split_whitespace().collect();
            assert_eq!(f.len(), 3, "{at}: case NAME DIRECTION HEX");
            let direction = match f[1] {
                "ingress" => Direction::Ingress,
                "egress" => Direction::Egress,
                d => panic!("{at}: direction {d}"),
            };
            let input = hex(f[2]);
            let mut frame = Frame::new(input.clone());
            let ctx = FilterContext {
                direction,
                port: PortId(1),
                port_kind: PortKind::Link,
            };
            let c = chain
                .as_ref()
                .unwrap_or_else(|| panic!("{at}: case before config"));
            let v = c.filter(&ctx, &mut frame);
            match expect.trim() {
                "drop" => assert_eq!(v, Verdict::Drop, "{at}: case {}", f[0]),
                "pass" => {
                    assert_eq!(v, Verdict::Pass, "{at}: case {}", f[0]);
                    assert_eq!(
                        frame.as_ref(),
                        &input[..],
                        "{at}: case {} changed the frame",
                        f[0]
                    );
                }
                out => {
                    assert_eq!(v, Verdict::Pass, "{at}: case {}", f[0]);
                    assert_eq!(hex_str(frame.as_ref()), out, "{at}: case {} output", f[0]);
                }
            }
            let faults: u64 = c
                .filters()
                .iter()
                .map(|f| f.stats().faults.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            assert_eq!(faults, 0, "{at}: case {} faulted", f[0]);
            cases += 1;
        } else {
            panic!("{at}: unknown line {line:?}");
        }
    }
    cases
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn every_library_filter_meets_its_vectors() {
    let host = Host::new().unwrap();
    let dir = root().join("spec/filter-vectors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let wasm: Vec<String> = std::fs::read_dir(root().join("filters/library/wasm"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // Every library filter has vectors.
    for w in &wasm {
        assert!(
            dir.join(format!("{w}.txt")).exists(),
            "no vectors for library filter {w}"
        );
    }
    let mut total = 0;
    for f in &files {
        let n = run_file(&host, f);
        assert!(n > 0, "{}: no cases", f.display());
        eprintln!("{}: {n} cases", f.display());
        total += n;
    }
    assert!(total >= 20, "only {total} cases");
}

/// Library filters that only read headers (or rewrite a MAC) take
/// super-frames whole; those that count frames, change lengths or record
/// wire frames do not (spec/filter-abi.md 3.1, README).
#[test]
fn library_filters_declare_super_frames_where_they_may() {
    let host = Host::new().unwrap();
    for (name, cfg, whole) in [
        ("pass", "", true),
        ("ethertype", ":drop=0x86dd", true),
        ("macallow", ":allow=02:00:00:00:00:01", true),
        ("rewrite", "", true),
        ("vlan", ":mode=tag,vid=10", false),
        ("ratelimit", ":rate=1,burst=2", false),
        ("logger", "", false),
    ] {
        let wasm = root().join(format!("filters/library/wasm/{name}.wasm"));
        let spec = FilterSpec::parse(&format!("{}{cfg}", wasm.display())).unwrap();
        let chain = Chain::load(&host, vec![spec], 1522, "ingress").unwrap();
        assert_eq!(chain.max_super_frame() > 0, whole, "{name}");
    }
}
