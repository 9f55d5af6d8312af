//! The example transport end to end: `etherws-custom client` in one
//! network namespace runs `etherws-custom stdio` in another through
//! `exec:` (no network between them at all: the pipe is the underlay),
//! and ping crosses. Needs root; skips without it unless CI=true.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_etherws-custom");

struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn run(&self, cmd: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Ends the client (SIGTERM, then SIGKILL) and reaps it; its `exec:`
/// child sees its stdin close and ends too.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc_kill(self.0.id() as i32, 15) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Whether to run: root is needed; without it the test skips, except
/// under CI=true, where it fails.
fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true needs root"
    );
    eprintln!("skipped: needs root");
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn spawn(ns: &Netns, log: &std::path::Path, args: &[&str]) -> Proc {
    Proc(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, BIN])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn ping_within(ns: &Netns, addr: &str, secs: u64) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if ns.run(&["ping", "-c", "1", "-W", "1", addr]) {
            return true;
        }
    }
    false
}

/// A Unix socket crosses network namespaces (it lives in the file
/// system): a server and a client of the example binary, joined by
/// `unix:` only.
#[test]
fn unix_transport_server_and_client_across_namespaces() {
    if !root_or_skip() {
        return;
    }
    let tag = format!("exu{}", std::process::id());
    let a = Netns::new(format!("{tag}-a"));
    let b = Netns::new(format!("{tag}-b"));
    let dir = std::env::temp_dir();
    let sock = dir.join(format!("{tag}.sock"));
    let url = format!("unix:{}", sock.display());
    let (slog, clog) = (
        dir.join(format!("{tag}-s.log")),
        dir.join(format!("{tag}-c.log")),
    );
    let server = spawn(
        &a,
        &slog,
        &[
            "server",
            "--listen",
            &url,
            "--tap",
            "ethws0",
            "--address",
            "198.19.0.1/24",
        ],
    );
    let t = Instant::now();
    while !sock.exists() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = spawn(
        &b,
        &clog,
        &[
            "client",
            &url,
            "--tap",
            "ethws0",
            "--address",
            "198.19.0.2/24",
        ],
    );
    let ok = ping_within(&b, "198.19.0.1", 30);
    let logs = format!(
        "server:\n{}\nclient:\n{}",
        std::fs::read_to_string(&slog).unwrap_or_default(),
        std::fs::read_to_string(&clog).unwrap_or_default()
    );
    assert!(ok, "no ping over unix: within 30 s:\n{logs}");
    assert!(logs.contains("listening on unix:"), "{logs}");
    // The plugin's counters are in the report, and it reloads, through
    // the Transport trait alone (the program names no unix: type).
    let server_log = || std::fs::read_to_string(&slog).unwrap_or_default();
    let wait = |what: &str| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if server_log().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let pid = server.0.id() as i32;
    unsafe { libc_kill(pid, 10) }; // SIGUSR1
    assert!(wait("unix links made: 1"), "{}", server_log());
    unsafe { libc_kill(pid, 1) }; // SIGHUP
    let listening = format!("reload: unix:{} still listening", sock.display());
    assert!(wait(&listening), "{}", server_log());
    std::fs::remove_file(&sock).unwrap();
    unsafe { libc_kill(pid, 1) };
    assert!(wait("the socket file is gone"), "{}", server_log());
    drop(client);
    drop(server);
    for f in [slog, clog] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn exec_transport_tunnels_ping_between_two_namespaces() {
    if !root_or_skip() {
        return;
    }
    let tag = format!("exa{}", std::process::id());
    let a = Netns::new(format!("{tag}-a"));
    let b = Netns::new(format!("{tag}-b"));
    let log = std::env::temp_dir().join(format!("{tag}-client.log"));
    let far = format!(
        "exec:ip netns exec {} {BIN} stdio --tap ethws0 --address 198.19.0.1/24",
        b.0
    );
    let client = Proc(
        Command::new("ip")
            .args(["netns", "exec", &a.0, BIN, "client", &far])
            .args(["--tap", "ethws0", "--address", "198.19.0.2/24"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let mut ok = false;
    while t.elapsed() < Duration::from_secs(30) {
        if a.run(&["ping", "-c", "1", "-W", "1", "198.19.0.1"]) {
            ok = true;
            break;
        }
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "no ping through exec: within 30 s:\n{text}");
    assert!(
        b.run(&["ping", "-c", "1", "-W", "2", "198.19.0.2"]),
        "no ping back:\n{text}"
    );
    assert!(text.contains("connected to exec:"), "{text}");
    drop(client);
    let _ = std::fs::remove_file(log);
}
