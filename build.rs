//! Build info: the git revision `etherws --version` and the metrics show.

use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args([
            "describe",
            "--always",
            "--dirty",
            "--abbrev=9",
            "--exclude=*",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        // A source tree without git (a tarball, a .deb build): say so.
        .unwrap_or_else(|| "no git".to_string());
    println!("cargo:rustc-env=ETHERWS_REV={rev}");
    // Rebuild when HEAD moves (a commit, a checkout).
    for f in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            let p = format!(".git/{r}");
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
