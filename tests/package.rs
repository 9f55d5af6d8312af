//! End-to-end: the Debian package (issue 16, acceptance 6). Builds the
//! .deb with cargo-deb from the binary under test, installs it with dpkg,
//! checks the installed binary, man pages, completions and units
//! (`systemd-analyze verify`), runs the client unit's ExecStart line as
//! systemd would (its user, capabilities, runtime and configuration
//! directories) to join a server, and removes the package.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const UP: Duration = Duration::from_secs(30);

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the package when the test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "etherws"]).output();
    }
}

#[test]
fn the_deb_installs_its_units_verify_and_the_client_unit_joins_a_server() {
    if !root_or_skip("package") {
        return;
    }
    let have = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("cargo-deb") || !have("dpkg") || !have("systemd-analyze") {
        assert!(
            std::env::var("CI").is_err(),
            "cargo-deb, dpkg and systemd-analyze are needed (./test.sh installs them)"
        );
        eprintln!("package: skipped (cargo-deb, dpkg or systemd-analyze missing)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    sh(Command::new(BIN)
        .arg("assets")
        .arg(root.join("target/assets")));
    let deb = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("etherws-test.deb");
    // The binary under test (the dev profile's), not a release build.
    sh(Command::new("cargo")
        .current_dir(root)
        .args(["deb", "--no-build", "--profile", "dev", "-o"])
        .arg(&deb));
    let _installed = Installed;
    sh(Command::new("dpkg").arg("-i").arg(&deb));
    let version = sh(Command::new("/usr/bin/etherws").arg("--version"));
    let rev = sh(Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--short=9", "HEAD"]));
    assert!(version.contains(rev.trim()), "{version} (HEAD {rev})");
    for f in [
        "/usr/share/man/man1/etherws.1.gz",
        "/usr/share/man/man1/etherws-server.1.gz",
        "/usr/share/man/man1/etherws-client.1.gz",
        "/usr/share/bash-completion/completions/etherws",
        "/usr/share/zsh/vendor-completions/_etherws",
        "/usr/share/fish/vendor_completions.d/etherws.fish",
        "/usr/share/doc/etherws/examples/server.toml",
        "/lib/systemd/system/etherws-server.service",
        "/lib/systemd/system/etherws-client@.service",
    ] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    sh(Command::new("man").args(["-w", "etherws-server"]));
    sh(Command::new("getent").args(["passwd", "etherws"]));
    // The installed units, as systemd reads them.
    for unit in ["etherws-server.service", "etherws-client@site.service"] {
        let out = Command::new("systemd-analyze")
            .args(["verify", unit])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains(unit),
            "{unit}: {text}"
        );
    }

    // A server, and the client unit's ExecStart with a config file.
    let h = two_hosts("pkg", &["--no-control"]);
    let conf = scratch(&unique("pkgconf"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("site.toml"),
        "role = \"client\"\nurls = [\"ws://198.18.0.1:8080/\"]\ntap = \"ethws0\"\naddress = \"198.19.0.2/24\"\n",
    )
    .unwrap();
    sh(Command::new("chown")
        .args(["-R", "root:etherws"])
        .arg(&conf));
    sh(Command::new("chmod").args(["0750"]).arg(&conf));
    let unit = std::fs::read_to_string("/lib/systemd/system/etherws-client@.service").unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart")
        .replace("%i", "site");
    let pre = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPre="))
        .expect("ExecStartPre")
        .replace("%i", "site");
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    assert!(unit.contains("User=etherws"), "{unit}");
    // What systemd does for the unit: RuntimeDirectory (a fresh
    // /run/etherws owned by the user), its configuration in /etc/etherws,
    // the user and its ambient capabilities; here in a mount namespace of
    // its own, so the host's /etc and /run stay as they are.
    let as_unit = |cmd: &str| {
        format!(
            "mount -t tmpfs tmpfs /run/etherws 2>/dev/null || {{ mkdir -p /run/etherws && mount -t tmpfs tmpfs /run/etherws; }}; \
             chown etherws:etherws /run/etherws && mount --bind {conf} /etc/etherws && \
             exec setpriv --reuid=etherws --regid=etherws --init-groups --inh-caps={caps} --ambient-caps={caps} -- {cmd}",
            conf = conf.display()
        )
    };
    std::fs::create_dir_all("/etc/etherws").unwrap();
    let check = Command::new("ip")
        .args([
            "netns",
            "exec",
            &h.cli.name,
            "unshare",
            "-m",
            "sh",
            "-c",
            &as_unit(&pre),
        ])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "ExecStartPre: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let (_client, log) = spawn_in(
        &h.cli,
        "unit",
        &["unshare", "-m", "sh", "-c", &as_unit(&exec)],
    );
    assert!(
        h.cli.ping_until(SRV_TAP, UP),
        "the unit's client did not join:\n{}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        h.server.log()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("control socket /run/etherws/site.sock"),
        "{text}"
    );
}
