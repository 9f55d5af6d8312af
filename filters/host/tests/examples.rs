//! The example filters in examples/filters, written with the SDK, build for
//! wasm32 and do what their READMEs say. Runs only where the
//! wasm32-unknown-unknown target is installed.

mod common;

use common::wasm32_installed;

use std::path::{Path, PathBuf};
use std::process::Command;

use etherws_core::{Direction, FilterChain, FilterContext, Frame, PortId, PortKind, Verdict};
use etherws_filter::{Chain, FilterSpec, Host};

fn build_examples() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = root.join("target/wasm-examples");
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .current_dir(root.join("examples/filters"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("cargo");
    assert!(st.success(), "building examples/filters failed");
    target.join("wasm32-unknown-unknown/release")
}

fn chain(path: PathBuf, config: &str) -> Chain {
    let spec = FilterSpec::parse(&format!("{}:{config}", path.display())).unwrap();
    Chain::load(&Host::new().unwrap(), vec![spec], 1522, "ingress").unwrap()
}

/// An IPv4 frame from `src` with the given TTL.
fn ipv4(src: [u8; 6], ttl: u8) -> Frame {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, ttl, 17, 0, 0]);
    f.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
    f.resize(60, 0);
    Frame::new(f)
}

#[test]
fn example_filters_build_and_behave() {
    if !wasm32_installed("examples") {
        return;
    }
    let out = build_examples();
    let ctx = FilterContext {
        direction: Direction::Ingress,
        port: PortId(1),
        port_kind: PortKind::Tap,
    };
    let guard = chain(out.join("ttl_guard.wasm"), "min_ttl=2");
    assert_eq!(
        guard.filter(&ctx, &mut ipv4([2, 0, 0, 0, 0, 1], 1)),
        Verdict::Drop
    );
    assert_eq!(
        guard.filter(&ctx, &mut ipv4([2, 0, 0, 0, 0, 1], 64)),
        Verdict::Pass
    );

    let rw = chain(
        out.join("mac_rewrite.wasm"),
        "from=02:00:00:00:00:01,to=02:00:00:00:00:99",
    );
    let mut f = ipv4([2, 0, 0, 0, 0, 1], 64);
    assert_eq!(rw.filter(&ctx, &mut f), Verdict::Pass);
    assert_eq!(&f.as_ref()[6..12], &[2, 0, 0, 0, 0, 0x99]);
    let mut other = ipv4([2, 0, 0, 0, 0, 2], 64);
    assert_eq!(rw.filter(&ctx, &mut other), Verdict::Pass);
    assert_eq!(other, ipv4([2, 0, 0, 0, 0, 2], 64));
    let filters = rw.filters();
    assert_eq!(filters[0].stats().rewritten(), 1);
}
