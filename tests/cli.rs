//! CLI behaviour: clear errors and non-zero exits for bad input.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::*;

fn etherws(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_are_refused_with_a_clear_message() {
    let (code, err) = etherws(&["client", "not a url"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value"), "{err}");
    let (code, err) = etherws(&["server", "--mtu", "40"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--mtu"), "{err}");
    let (code, err) = etherws(&["server", "--threads", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--threads"), "{err}");
    let (code, err) = etherws(&["server", "--address", "198.18.0.1"]);
    assert_eq!(code, 2);
    assert!(err.contains("ADDRESS/PREFIX"), "{err}");
    let (code, err) = etherws(&["server", "--no-tap", "--listen", "nonsense"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--listen"), "{err}");
    let (code, err) = etherws(&["client", "--no-such-flag", "ws://198.18.0.1/"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn address_in_use_is_a_clear_error() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, err) = etherws(&["server", "--no-tap", "--listen", &addr]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot listen on") && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn unknown_scheme_is_a_clear_error() {
    if !root_or_skip("unknown_scheme") {
        return;
    }
    let ns = Netns::new(unique("scheme"));
    let mut p = ns.etherws("client", &["client", "--once", "gopher://198.18.0.1/"]);
    assert_eq!(p.wait_exit(std::time::Duration::from_secs(30)), Some(1));
    let log = p.log();
    assert!(
        log.contains("unknown URL scheme \"gopher\"") && log.contains("known: quic, udp, ws, wss"),
        "{log}"
    );
}

#[test]
fn unreachable_server_with_once_exits_non_zero() {
    if !root_or_skip("unreachable") {
        return;
    }
    let ns = Netns::new(unique("unreach"));
    // Loopback only: nothing listens there.
    let mut p = ns.etherws(
        "client",
        &["client", "--once", "ws://127.0.0.1:9/", "--tap", "ethws0"],
    );
    assert_eq!(
        p.wait_exit(std::time::Duration::from_secs(30)),
        Some(1),
        "{}",
        p.log()
    );
    assert!(
        p.log().contains("cannot connect to ws://127.0.0.1:9/"),
        "{}",
        p.log()
    );
}

#[test]
fn without_cap_net_admin_the_tap_error_says_so() {
    if !root_or_skip("no_cap") {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        panic!("setpriv (util-linux) is needed for this test");
    }
    let ns = Netns::new(unique("nocap"));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "setpriv",
            "--bounding-set",
            "-net_admin",
            "--inh-caps",
            "-net_admin",
            BIN,
        ])
        .args(["server", "--listen", "127.0.0.1:8080"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
}

/// The test helpers themselves: a process killed by a signal is reported
/// as exited (128 + the signal), not as still running, and a memory
/// reading of a process that is gone fails instead of reading 0 KiB.
#[test]
fn helpers_tell_a_killed_process_from_a_running_one() {
    if !root_or_skip("helpers") {
        return;
    }
    let ns = Netns::new(unique("helpers"));
    let mut p = ns.etherws(
        "server",
        &["server", "--no-tap", "--listen", "127.0.0.1:8099"],
    );
    assert!(p.wait_log(std::time::Duration::from_secs(30), |l| l
        .contains("listening on")));
    let pid = p.pid();
    // `ip netns exec` runs the binary in its place (exec), so the pid is ours.
    assert!(rss_kib(pid).0 > 0);
    assert_eq!(
        p.wait_exit(std::time::Duration::from_millis(100)),
        None,
        "running"
    );
    p.signal(libc::SIGKILL);
    assert_eq!(
        p.wait_exit(std::time::Duration::from_secs(10)),
        Some(128 + libc::SIGKILL)
    );
    let gone = std::panic::catch_unwind(|| rss_kib(pid));
    assert!(gone.is_err(), "rss_kib of a reaped process: {gone:?}");
}

/// systemd: READY=1 on the notify socket once listening, STOPPING=1 at
/// the end; under the journal, lines carry a priority and no timestamp.
#[test]
fn systemd_hears_ready_and_stopping_and_the_journal_gets_priorities() {
    use std::os::unix::fs::MetadataExt;
    if !root_or_skip("notify") {
        return;
    }
    let ns = Netns::new(unique("notify"));
    let sock_path = scratch(&format!("{}.notify", unique("n")));
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let log = scratch(&format!("{}.journal", unique("j")));
    let err = std::fs::File::create(&log).unwrap();
    let m = err.metadata().unwrap();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            BIN,
            "server",
            "--no-tap",
            "--no-control",
            "--listen",
            "127.0.0.1:8097",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()))
        .env("RUST_LOG", "info")
        .stderr(err)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.contains("READY=1"), "{first}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    let _ = child.wait();
    assert!(stopping, "no STOPPING=1");
    let text = std::fs::read_to_string(&log).unwrap();
    let listening = text
        .lines()
        .find(|l| l.contains("listening on"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        listening.starts_with("<6>listening on ws://127.0.0.1:8097/"),
        "{listening}"
    );
    let _ = std::fs::remove_file(sock_path);
}
