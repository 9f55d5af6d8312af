//! Test hosts for end-to-end tests: network namespaces joined by veth
//! pairs (198.18.0.0/15 only, no route out), processes of the real binary
//! started inside them, and everything torn down on drop, also when a test
//! fails. Waits poll until ready; nothing sleeps a fixed time.

#![allow(dead_code)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_etherws");

/// True if end-to-end tests can run. As non-root they are skipped, except
/// under `CI=true`, where skipping would hide a failure: there they fail.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "{test}: end-to-end tests need root (CAP_NET_ADMIN) and must not be skipped under CI"
        );
    }
    eprintln!("{test}: skipped (needs root; run the suite as root)");
    false
}

/// A unique name prefix for this test's namespaces.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ewt{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Netns {
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n <ns> ...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// The MAC address of a device in this namespace.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-br", "link", "show", dev]);
        out.split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in {out:?}"))
            .to_string()
    }

    /// Starts the etherws binary in this namespace.
    pub fn etherws(&self, label: &str, args: &[&str]) -> Proc {
        Proc::start(label, &self.name, args)
    }

    /// Runs a command in this namespace; returns its stdout (or the error).
    pub fn run_in(&self, cmd: &[&str]) -> String {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string())
    }

    /// One `ping` attempt (1 echo, 1 s wait).
    pub fn ping_once(&self, addr: &str) -> bool {
        Command::new("ip")
            .args([
                "netns", "exec", &self.name, "ping", "-c1", "-W1", "-n", addr,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Pings until a reply arrives or `within` passes. An attempt that
    /// failed quicker than its 1 s wait (no route yet, ping missing) is
    /// followed by a pause, so a failing path does not fork pings in a
    /// tight loop and take the CPU from the binary under test.
    pub fn ping_until(&self, addr: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let t = Instant::now();
            if self.ping_once(addr) {
                return true;
            }
            if let Some(rest) = Duration::from_millis(200).checked_sub(t.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        false
    }

    /// Runs `f` on a thread that has entered this namespace; sockets made
    /// there stay in it when used from any thread afterwards.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on a valid namespace fd affects only this thread.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in namespace panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Joins two namespaces with a veth pair named `a_dev` in `a` and `b_dev`
/// in `b`, addressed and up.
pub fn veth_named(a: &Netns, a_dev: &str, a_addr: &str, b: &Netns, b_dev: &str, b_addr: &str) {
    run(
        "ip",
        &[
            "link", "add", a_dev, "netns", &a.name, "type", "veth", "peer", "name", b_dev, "netns",
            &b.name,
        ],
    );
    for (ns, dev, addr) in [(a, a_dev, a_addr), (b, b_dev, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
}

/// Joins two namespaces with a veth pair and addresses them.
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) {
    run(
        "ip",
        &[
            "link", "add", "veth0", "netns", &a.name, "type", "veth", "peer", "name", "veth0",
            "netns", &b.name,
        ],
    );
    for (ns, addr) in [(a, a_addr), (b, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", "veth0"]);
        ns.ip(&["link", "set", "veth0", "up"]);
    }
}

/// A process of the binary under test; killed and reaped on drop.
pub struct Proc {
    pub label: String,
    child: Option<Child>,
    log: PathBuf,
    out: PathBuf,
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("etherws-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

impl Proc {
    pub fn start(label: &str, ns: &str, args: &[&str]) -> Proc {
        Self::start_env(label, ns, args, &[])
    }

    /// Like [`Proc::start`], with extra environment variables.
    pub fn start_env(label: &str, ns: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let tag = unique(label);
        let log = scratch(&format!("{tag}.log"));
        let out = scratch(&format!("{tag}.out"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, BIN])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {label}: {e}"));
        Proc {
            label: label.to_string(),
            child: Some(child),
            log,
            out,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Polls the log (stderr) until `pred` holds or `within` passes.
    pub fn wait_log(&self, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
        poll(within, || pred(&self.log()))
    }

    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGUSR1, then waits for the whole new report (on stderr, after a
    /// line with the time); returns it.
    pub fn report(&self) -> String {
        let before = self.log().len();
        self.signal(libc::SIGUSR1);
        let mut text = String::new();
        assert!(
            poll(Duration::from_secs(10), || {
                let s = self.log();
                let new = &s[before.min(s.len())..];
                match (new.find("report of "), new.find("end of report\n")) {
                    (Some(a), Some(b)) if b > a => {
                        text = new[a..b + "end of report\n".len()].to_string();
                        true
                    }
                    _ => false,
                }
            }),
            "{}: no report on SIGUSR1; log:\n{}",
            self.label,
            self.log()
        );
        text
    }

    /// Waits for the process to exit by itself; returns its exit code,
    /// 128 + the signal for a process killed by one (as a shell says), and
    /// `None` only while it runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return st.code().or_else(|| st.signal().map(|s| 128 + s));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait; SIGKILL if it does not exit.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(10));
        if self.child.is_some() {
            self.kill();
        }
        code
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.label, self.log());
        }
    }
}

/// Polls `f` every 50 ms until it is true or `within` passes.
pub fn poll(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The standard two-host set-up: `srv` (198.18.0.1) and `cli` (198.18.0.2)
/// on a veth, server on port 8080 with TAP 198.19.0.1/24.
pub struct TwoHosts {
    pub srv: Netns,
    pub cli: Netns,
    pub server: Proc,
}

pub const SRV_UNDERLAY: &str = "198.18.0.1";
pub const SRV_TAP: &str = "198.19.0.1";
pub const WS_URL: &str = "ws://198.18.0.1:8080/";

pub fn two_hosts(tag: &str, server_args: &[&str]) -> TwoHosts {
    let base = unique(tag);
    let srv = Netns::new(format!("{base}-s"));
    let cli = Netns::new(format!("{base}-c"));
    veth(&srv, "198.18.0.1/24", &cli, "198.18.0.2/24");
    let server = start_server(&srv, server_args);
    TwoHosts { srv, cli, server }
}

pub fn start_server(ns: &Netns, extra: &[&str]) -> Proc {
    start_server_at(ns, "198.19.0.1/24", extra)
}

/// Like [`start_server`], with the server's TAP at `tap_cidr`.
pub fn start_server_at(ns: &Netns, tap_cidr: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "server",
        "--listen",
        "0.0.0.0:8080",
        "--tap",
        "ethws0",
        "--address",
        tap_cidr,
    ];
    args.extend_from_slice(extra);
    let p = ns.etherws("server", &args);
    assert!(
        p.wait_log(Duration::from_secs(30), |l| l.contains("listening on")),
        "server did not start:\n{}",
        p.log()
    );
    p
}

/// Waits until TCP to `addr` through the tunnel gets an answer (a refused
/// connection counts: the path works), proving the link is up without ICMP.
pub fn tcp_reachable(ns: &Netns, addr: &'static str, within: Duration) -> bool {
    poll(within, || {
        ns.enter(move || {
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))
        })
        .map_or_else(
            |e| e.kind() == std::io::ErrorKind::ConnectionRefused,
            |_| true,
        )
    })
}

/// A child process killed and reaped on drop (e.g. tcpdump).
pub struct KillOnDrop(pub Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a client with TAP address `198.19.0.<host>/24`.
pub fn start_client(ns: &Netns, url: &str, host: u8) -> Proc {
    let addr = format!("{}/24", Ipv4Addr::new(198, 19, 0, host));
    ns.etherws(
        "client",
        &["client", url, "--tap", "ethws0", "--address", &addr],
    )
}

/// Resident memory of a process, in KiB: (current, peak) from
/// /proc/PID/status (VmRSS, VmHWM). Panics when they cannot be read (the
/// process is gone or a zombie): a bound must never pass on a zero.
pub fn rss_kib(pid: i32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let field = |name: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} for process {pid} (a zombie?):\n{s}"))
    };
    let (rss, peak) = (field("VmRSS:"), field("VmHWM:"));
    assert!(
        rss > 0 && peak >= rss,
        "process {pid}: VmRSS {rss}, VmHWM {peak}"
    );
    (rss, peak)
}

/// A star: a server namespace joined to `n` client namespaces, each by its
/// own veth pair: server 198.18.<i>.1, client i 198.18.<i>.2 (i from 1).
pub struct Star {
    pub srv: Netns,
    pub clients: Vec<Netns>,
}

pub fn star(tag: &str, n: u8) -> Star {
    let base = unique(tag);
    let srv = Netns::new(format!("{base}-s"));
    let mut clients = Vec::new();
    for i in 1..=n {
        let c = Netns::new(format!("{base}-{i}"));
        let dev = format!("veth{i}");
        let (sa, ca) = (format!("198.18.{i}.1/24"), format!("198.18.{i}.2/24"));
        veth_named(&srv, &dev, &sa, &c, "veth0", &ca);
        clients.push(c);
    }
    Star { srv, clients }
}

impl Star {
    /// The ws URL client `i` (from 1) uses to reach the server.
    pub fn url(i: u8) -> String {
        format!("ws://198.18.{i}.1:8080/")
    }
}

/// A WebSocket client of our own making, in a namespace: tungstenite does
/// the handshake, then the test may write raw bytes on the socket.
pub fn raw_ws(ns: &Netns, server: &'static str) -> tungstenite::WebSocket<std::net::TcpStream> {
    let tcp = ns.enter(move || std::net::TcpStream::connect(server).unwrap());
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let url = format!("ws://{server}/");
    let (ws, _) = tungstenite::client::client(url, tcp).expect("raw WebSocket handshake");
    ws
}

/// Reads until a Close frame arrives; returns its code (None: no code).
/// Errors if the connection ends without one.
pub fn expect_close(
    ws: &mut tungstenite::WebSocket<std::net::TcpStream>,
) -> Result<Option<u16>, String> {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(c)) => return Ok(c.map(|c| u16::from(c.code))),
            Ok(_) => continue,
            Err(e) => return Err(format!("no Close frame: {e}")),
        }
    }
}

/// Raises this process's open-file limit to its hard limit.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Sends `total` bytes over TCP from `from` to `to_addr` (a listener
/// started in `to`); returns the bytes received and whether both hashes
/// match. Bounded: 120 s of socket timeouts at most.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_addr: &'static str,
    total: usize,
) -> (usize, bool) {
    let addr: std::net::SocketAddr = to_addr.parse().expect("a numeric address");
    tcp_transfer_via(from, to, addr, addr, total)
}

/// [`tcp_transfer`] with distinct listen and connect addresses: an IPv6
/// link-local address has a scope id per namespace.
pub fn tcp_transfer_via(
    from: &Netns,
    to: &Netns,
    listen: std::net::SocketAddr,
    to_addr: std::net::SocketAddr,
    total: usize,
) -> (usize, bool) {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let listener = to.enter(move || std::net::TcpListener::bind(listen).unwrap());
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    hash.update(&buf[..k]);
                    n += k;
                }
            }
        }
        (n, hash.finalize())
    });
    let mut s = from.enter(move || std::net::TcpStream::connect(to_addr).unwrap());
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut hash = Sha256::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut sent = 0;
    while sent < total {
        for b in chunk.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let k = chunk.len().min(total - sent);
        if s.write_all(&chunk[..k]).is_err() {
            break;
        }
        hash.update(&chunk[..k]);
        sent += k;
    }
    drop(s);
    let (n, rhash) = receiver.join().unwrap();
    (n, rhash == hash.finalize() && n == total)
}

/// Starts a program (not ours: nginx, tinyproxy...) in a namespace, its
/// output to a log file; killed and reaped on drop.
pub fn spawn_in(ns: &Netns, label: &str, cmd: &[&str]) -> (KillOnDrop, PathBuf) {
    let log = scratch(&format!("{}.log", unique(label)));
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {label}: {e}"));
    (KillOnDrop(Some(child)), log)
}

/// Waits until something listens on `addr` (TCP) inside `ns`.
pub fn listening(ns: &Netns, addr: &'static str, within: Duration) -> bool {
    poll(within, || {
        ns.enter(move || {
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500))
        })
        .is_ok()
    })
}

/// The `port ...` line of a report whose name contains `part`.
pub fn port_line(report: &str, part: &str) -> Option<String> {
    report
        .lines()
        .find(|l| l.starts_with("port ") && l.contains(part))
        .map(str::to_string)
}

/// A client of `urls` in `ns` with TAP ethws0 at 198.19.0.`host`/24, plus
/// `extra` flags.
pub fn client_with(ns: &Netns, label: &str, urls: &[&str], extra: &[&str], host: u8) -> Proc {
    let addr = format!("198.19.0.{host}/24");
    let mut args = vec!["client"];
    args.extend_from_slice(urls);
    args.extend_from_slice(&["--tap", "ethws0", "--address", &addr]);
    args.extend_from_slice(extra);
    ns.etherws(label, &args)
}

/// A `--once` client with a TAP of its own (no address).
pub fn once(ns: &Netns, label: &str, url: &str, extra: &[&str]) -> Proc {
    static N: AtomicU32 = AtomicU32::new(10);
    let tap = format!("ethws{}", N.fetch_add(1, Ordering::Relaxed));
    let mut args = vec!["client", "--once", url, "--tap", &tap];
    args.extend_from_slice(extra);
    ns.etherws(label, &args)
}

/// Ping both ways through the tunnel of [`two_hosts`] (client at
/// 198.19.0.2), then 20 MB over TCP both ways, byte for byte.
pub fn both_ways(h: &TwoHosts, tag: &str) {
    let up = Duration::from_secs(30);
    assert!(
        h.cli.ping_until(SRV_TAP, up),
        "{tag}: client -> server ping:\n{}",
        h.server.log()
    );
    assert!(
        h.srv.ping_until("198.19.0.2", up),
        "{tag}: server -> client ping"
    );
    let (n, ok) = tcp_transfer(&h.cli, &h.srv, "198.19.0.1:5010", 20 << 20);
    assert!(ok, "{tag}: client -> server 20 MB: {n} bytes or corrupt");
    let (n, ok) = tcp_transfer(&h.srv, &h.cli, "198.19.0.2:5011", 20 << 20);
    assert!(ok, "{tag}: server -> client 20 MB: {n} bytes or corrupt");
}

/// A WebSocket upgrade as raw HTTP from `from` (an address of the
/// namespace) to `to`, with Basic credentials if given: the answer's
/// status and how long it took from the request to the answer.
pub fn login(ns: &Netns, from: &str, to: &str, creds: Option<(&str, &str)>) -> (u16, Duration) {
    let from: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    let to: std::net::SocketAddr = to.parse().unwrap();
    let auth = creds
        .map(|(u, p)| format!("Authorization: {}\r\n", etherws_auth::basic_header(u, p)))
        .unwrap_or_default();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    );
    // Timed from the connect: a listener that does not accept shows as a
    // connect that waits (or a SYN retransmitted).
    let t = Instant::now();
    let mut sock = ns.enter(move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&from.into()).unwrap();
        s.connect_timeout(&to.into(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect {to} from {from}: {e}"));
        std::net::TcpStream::from(s)
    });
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    use std::io::{Read, Write};
    sock.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer from {to} after {:?}: {e}", t.elapsed()),
        }
    }
    let took = t.elapsed();
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {line:?}"));
    (status, took)
}

/// A scratch directory for one test's files.
pub fn files(tag: &str) -> PathBuf {
    let d = scratch(&unique(tag));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as an argument.
pub fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}
