//! Helpers shared by the host's integration tests.

use std::path::Path;
use std::process::Command;

/// Whether the wasm32-unknown-unknown target is installed, for the tests
/// that build wasm from Rust sources. `./test.sh` installs it with rustup.
///
/// Without it such a test is skipped with a loud banner; under `CI=true` a
/// missing target fails the test instead, unless the test command could
/// not install it and said so (`ETHERWS_NO_WASM32=1`, set by `./test.sh`
/// after a failed `rustup target add`).
pub fn wasm32_installed(test: &str) -> bool {
    let found = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .is_some_and(|sysroot| {
            Path::new(&sysroot)
                .join("lib/rustlib/wasm32-unknown-unknown")
                .exists()
        });
    if found {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let excused = std::env::var("ETHERWS_NO_WASM32").is_ok_and(|v| v == "1");
    if ci && !excused {
        panic!(
            "{test}: the wasm32-unknown-unknown target is missing and CI=true: \
             run ./test.sh (it installs the target) or `rustup target add wasm32-unknown-unknown`"
        );
    }
    eprintln!(
        "\n*** {test}: SKIPPED: wasm32-unknown-unknown is not installed \
         (rustup target add wasm32-unknown-unknown); this test checks nothing here ***\n"
    );
    false
}
