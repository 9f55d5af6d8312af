//! Helpers shared by the host's integration tests.

use std::path::Path;
use std::process::Command;

/// Whether the wasm32-unknown-unknown target is installed (tests that
/// build wasm run only then; the suite must pass without it).
pub fn wasm32_installed() -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib/wasm32-unknown-unknown")
        .exists()
}
