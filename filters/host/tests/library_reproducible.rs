//! The committed library modules (filters/library/wasm) are what their
//! sources build to. Runs only where the wasm32-unknown-unknown target is
//! installed (the suite must pass without it: the modules are committed).

mod common;

use common::wasm32_installed;

use std::path::Path;
use std::process::Command;

#[test]
fn committed_library_wasm_matches_its_sources() {
    if !wasm32_installed("library_reproducible") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::env::temp_dir().join(format!("etherws-wasm-check-{}", std::process::id()));
    let target = root.join("target/wasm-check");
    let st = Command::new("sh")
        .arg(root.join("filters/library/build.sh"))
        .env("ETHERWS_WASM_OUT", &out)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("running build.sh");
    assert!(st.success(), "build.sh failed");
    let committed = root.join("filters/library/wasm");
    let mut n = 0;
    for e in std::fs::read_dir(&committed).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        let built = std::fs::read(out.join(name)).unwrap_or_else(|_| panic!("{name:?} not built"));
        assert!(
            built == std::fs::read(&p).unwrap(),
            "{name:?}: committed module differs from its source; run filters/library/build.sh and commit"
        );
        n += 1;
    }
    assert!(n >= 6);
    let _ = std::fs::remove_dir_all(&out);
}
