//! End-to-end: the holes an adversarial probe found (issue 15), each
//! driven through the binary as an attacker would, in network namespaces
//! (198.18.0.0/15 only): listeners that skipped the password check, an
//! address that stalled everyone's logins, login timing that told which
//! names exist, MAC takeover, and spoofed udp:// HELLOs.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etherws_tls::testing::{write, Ca, KeyKind};

const UP: Duration = Duration::from_secs(30);

/// `secret` as bcrypt (cost 5), apr1 and {SHA}.
const BCRYPT_SECRET: &str = "$2y$05$UAfze34JEoG/nQgC2pj1SOOHT4lHMbfTmtCGQZILBBkcIijQAFjKe";
const APR1_SECRET: &str = "$apr1$Bq6.wxE8$NCLEFzOc00A1dYybKOEYU/";
const SHA_SECRET: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

fn port_count(report: &str) -> usize {
    report.lines().filter(|l| l.starts_with("port ")).count()
}

/// Issue 15, hole 1 and acceptance 1.
#[test]
fn every_listener_enforces_htpasswd_and_one_that_cannot_stops_the_start() {
    if !root_or_skip("policy") {
        return;
    }
    let d = files("policy");
    let ca = Ca::new("policy CA");
    let issued = ca.server(&["198.18.0.1"], KeyKind::EcdsaP256);
    let cert = s(&write(&d, "cert.pem", &issued.chain_pem));
    let key = s(&write(&d, "key.pem", &issued.key_pem));
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ca_pem = s(&write(&d, "ca.pem", &ca.cert_pem()));
    let htpasswd = s(&write(&d, "htpasswd", &format!("alice:{BCRYPT_SECRET}\n")));
    let right = s(&write(&d, "right", "secret\n"));
    let wrong = s(&write(&d, "wrong", "guess\n"));
    // 8080: wss (ADDR:PORT with a certificate), 8081: ws, 8443: quic.
    let h = two_hosts(
        "policy",
        &[
            "--listen",
            "ws://0.0.0.0:8081/",
            "--listen",
            "quic://0.0.0.0:8443",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--htpasswd",
            &htpasswd,
        ],
    );
    assert!(
        h.server
            .wait_log(UP, |l| l.matches("listening on").count() == 3),
        "{}",
        h.server.log()
    );
    // The plain ws:// listener is named in a warning about cleartext.
    assert!(
        h.server.log().contains("--htpasswd on ws://0.0.0.0:8081/")
            && h.server.log().contains("clear text"),
        "{}",
        h.server.log()
    );
    let urls = [
        "wss://198.18.0.1:8080/",
        "ws://198.18.0.1:8081/",
        "quic://198.18.0.1:8443",
    ];
    for url in urls {
        let tls: &[&str] = if url.starts_with("ws:") {
            &[]
        } else {
            &["--ca", &ca_pem]
        };
        for (label, creds) in [
            ("none", vec![]),
            ("wrong", vec!["--user", "alice", "--password-file", &wrong]),
        ] {
            let mut args = tls.to_vec();
            args.extend_from_slice(&creds);
            let mut c = once(&h.cli, label, url, &args);
            assert_eq!(c.wait_exit(UP), Some(1), "{url} {label}: {}", c.log());
            assert!(c.log().contains("401"), "{url} {label}: {}", c.log());
            let report = h.server.report();
            assert_eq!(
                port_count(&report),
                1,
                "{url} {label}: a port for it:\n{report}"
            );
        }
        let mut args = tls.to_vec();
        args.extend_from_slice(&["--user", "alice", "--password-file", &right]);
        let mut ok = once(&h.cli, "right", url, &args);
        assert!(
            ok.wait_log(UP, |l| l.contains("connected to")),
            "{url}: {}\n{}",
            ok.log(),
            h.server.log()
        );
        assert!(
            poll(UP, || h.server.report().lines().any(|l| l
                .starts_with("port ")
                && l.contains("alice@198.18.0.2"))),
            "{url}: no port for alice:\n{}",
            h.server.report()
        );
        ok.stop();
        assert!(poll(UP, || port_count(&h.server.report()) == 1));
    }
    let log = h.server.log();
    assert!(log.contains("QUIC 401"), "{log}");
    // With --htpasswd, a udp:// listener without a key does not start.
    let mut udp = h.srv.etherws(
        "udp-open",
        &[
            "server",
            "--no-tap",
            "--listen",
            "udp://0.0.0.0:9000",
            "--htpasswd",
            &htpasswd,
        ],
    );
    assert_eq!(udp.wait_exit(UP), Some(1), "{}", udp.log());
    let log = udp.log();
    assert!(
        log.contains("udp://0.0.0.0:9000") && log.contains("--psk-file"),
        "{log}"
    );
}

/// Issue 15, hole 2 and acceptance 2: 64 connections held in their
/// handshake and 100 more refused from one address, a connect/close flood
/// from a second: a login from a third completes within a second, every
/// time.
#[test]
fn one_address_flooding_the_listener_does_not_delay_another_login() {
    if !root_or_skip("accept") {
        return;
    }
    raise_fd_limit();
    let d = files("accept");
    let htpasswd = s(&write(&d, "htpasswd", &format!("alice:{BCRYPT_SECRET}\n")));
    // A long handshake timeout: the held connections stay held for the
    // whole test.
    let h = two_hosts(
        "accept",
        &["--htpasswd", &htpasswd, "--handshake-timeout", "120"],
    );
    for a in ["198.18.0.3/24", "198.18.0.4/24"] {
        h.cli.ip(&["addr", "add", a, "dev", "veth0"]);
    }
    let server: SocketAddr = "198.18.0.1:8080".parse().unwrap();
    let from3: SocketAddr = "198.18.0.3:0".parse().unwrap();
    let held: Vec<socket2::Socket> = (0..164)
        .map(|_| {
            h.cli.enter(move || {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.bind(&from3.into()).unwrap();
                s.connect(&server.into()).unwrap();
                s
            })
        })
        .collect();
    assert!(
        h.server
            .wait_log(UP, |l| l.contains("--max-pending-per-ip")),
        "{}",
        h.server.log()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, cycles) = (stop.clone(), cycles.clone());
        let ns = h.cli.name.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
            // SAFETY: setns on a valid namespace fd affects only this thread.
            assert_eq!(
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) },
                0
            );
            let from: SocketAddr = "198.18.0.4:0".parse().unwrap();
            let t = Instant::now();
            while !stop.load(Relaxed) && t.elapsed() < Duration::from_secs(60) {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.bind(&from.into()).unwrap();
                if s.connect_timeout(&server.into(), Duration::from_secs(1))
                    .is_ok()
                {
                    cycles.fetch_add(1, Relaxed);
                }
                drop(s);
            }
        })
    };
    assert!(
        poll(UP, || cycles.load(Relaxed) > 300),
        "the flood did not start"
    );
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let (status, took) = login(
            &h.cli,
            "198.18.0.2",
            "198.18.0.1:8080",
            Some(("alice", "secret")),
        );
        assert_eq!(status, 101);
        worst = worst.max(took);
    }
    stop.store(true, Relaxed);
    flood.join().unwrap();
    eprintln!(
        "10 logins beside 164 held connections and {} connect/close cycles: worst {worst:?}",
        cycles.load(Relaxed)
    );
    assert!(worst < Duration::from_secs(1), "a login took {worst:?}");
    drop(held);
}

/// Issue 15, hole 3 and acceptance 3: a wrong password costs the same
/// for a bcrypt, an apr1 and a {SHA} user as for a name that does not
/// exist. Each login comes from an address of its own round (three
/// failures per address: no back-off in the way).
#[test]
fn a_failed_login_takes_as_long_whatever_the_user_name() {
    if !root_or_skip("timing") {
        return;
    }
    let d = files("timing");
    let htpasswd = s(&write(
        &d,
        "htpasswd",
        &format!("alice:{BCRYPT_SECRET}\nbob:{APR1_SECRET}\ncarol:{SHA_SECRET}\n"),
    ));
    let h = two_hosts("timing", &["--htpasswd", &htpasswd]);
    const ROUNDS: usize = 50;
    // One address per round: each sends one failure per name (4 in all;
    // the back-off starts after 3 from one address, so every round's
    // "nobody" comes from a second address of its own).
    for i in 0..ROUNDS {
        for j in [10, 100] {
            let a = format!("198.18.0.{}/24", j + i);
            h.cli.ip(&["addr", "add", &a, "dev", "veth0"]);
        }
    }
    let names = ["alice", "bob", "carol", "nobody"];
    let mut total = [Duration::ZERO; 4];
    for i in 0..ROUNDS {
        for (k, name) in names.iter().enumerate() {
            let from = if k == 3 { 100 + i } else { 10 + i };
            let from = format!("198.18.0.{from}");
            let (status, took) = login(&h.cli, &from, "198.18.0.1:8080", Some((name, "wrong")));
            assert_eq!(status, 401, "{name} from {from}");
            total[k] += took;
        }
    }
    let mean: Vec<f64> = total
        .iter()
        .map(|t| t.as_secs_f64() * 1000.0 / ROUNDS as f64)
        .collect();
    eprintln!(
        "mean of {ROUNDS} wrong-password logins: bcrypt alice {:.2} ms, apr1 bob {:.2} ms, \
         {{SHA}} carol {:.2} ms, unknown name {:.2} ms",
        mean[0], mean[1], mean[2], mean[3]
    );
    for (k, name) in names[..3].iter().enumerate() {
        let ratio = mean[k] / mean[3];
        assert!(
            (0.8..1.2).contains(&ratio),
            "{name}: {:.2} ms against {:.2} ms for an unknown name ({ratio:.2}x)",
            mean[k],
            mean[3]
        );
    }
    assert!(
        !h.server.log().contains("one attempt at a time"),
        "back-off got in the way"
    );
}

/// A raw WebSocket client on the hub: sends frames, counts what reaches it.
struct Attacker {
    ws: tungstenite::WebSocket<TcpStream>,
}

impl Attacker {
    fn new(ns: &Netns, server: &'static str) -> Attacker {
        let ws = raw_ws(ns, server);
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        Attacker { ws }
    }

    /// This client's port id in a report.
    fn port_id(&self, report: &str) -> String {
        let me = format!("ws://{}", self.ws.get_ref().local_addr().unwrap());
        port_line(report, &format!("{me}:"))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
            .unwrap_or_else(|| panic!("no port for {me}:\n{report}"))
    }

    /// For `run`, sends broadcast ARP requests from `src`, ten every few
    /// milliseconds, and counts the IPv4 ICMP echo requests sent to it.
    fn spoof(&mut self, src: [u8; 6], run: Duration) -> (u64, u64) {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&src);
        frame.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        frame.extend_from_slice(&src);
        frame.extend_from_slice(&[198, 19, 0, 99, 0, 0, 0, 0, 0, 0, 198, 19, 0, 250]);
        frame.resize(60, 0);
        let (mut sent, mut echoes) = (0, 0);
        let t = Instant::now();
        while t.elapsed() < run {
            // Ten at a time: over 1000 frames a second.
            for _ in 0..10 {
                let _ = self
                    .ws
                    .send(tungstenite::Message::Binary(frame.clone().into()));
                sent += 1;
            }
            while let Ok(m) = self.ws.read() {
                if let tungstenite::Message::Binary(b) = m {
                    // IPv4 (0x0800), ICMP (1), echo request (8).
                    if b.len() > 34 && b[12..14] == [8, 0] && b[23] == 1 && b[34] == 8 {
                        echoes += 1;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (sent, echoes)
    }
}

fn mac_bytes(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// `ping -c COUNT -i 0.2` in the background: the received count.
fn pings(ns: &Netns, to: &str, count: u32) -> std::thread::JoinHandle<u32> {
    let (ns, to) = (ns.name.clone(), to.to_string());
    std::thread::spawn(move || {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "ping", "-n", "-i", "0.2", "-W", "1"])
            .args(["-c", &count.to_string(), &to])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.split(", ")
                    .nth(1)?
                    .strip_suffix(" received")
                    .map(str::to_string)
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    })
}

fn drops(report: &str, part: &str, reason: &str) -> u64 {
    port_line(report, part)
        .and_then(|l| {
            l.split_whitespace().find_map(|w| {
                w.strip_prefix(&format!("drop_{reason}="))
                    .map(str::to_string)
            })
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Issue 15, hole 4 and acceptance 4: a peer spoofing the server TAP's
/// MAC, then another client's, gets nothing and costs nobody a ping.
#[test]
fn a_peer_cannot_take_over_the_server_s_mac_or_an_active_client_s() {
    if !root_or_skip("spoof") {
        return;
    }
    let st = star("spoof", 3);
    let server = start_server(
        &st.srv,
        &["--listen", "udp://0.0.0.0:9000", "--move-guard", "3"],
    );
    // A: ws client (198.19.0.2), B: udp client (198.19.0.3), the
    // attacker: a raw WebSocket client from the third namespace.
    let mut a = start_client(&st.clients[0], &Star::url(1), 2);
    let _b = start_client(&st.clients[1], "udp://198.18.2.1:9000", 3);
    for ns in &st.clients[..2] {
        assert!(ns.ping_until(SRV_TAP, UP), "{}", server.log());
    }
    assert!(st.srv.ping_until("198.19.0.2", UP));
    let mut evil = Attacker::new(&st.clients[2], "198.18.3.1:8080");
    let tap_mac = mac_bytes(&st.srv.mac("ethws0"));
    let a_mac = mac_bytes(&st.clients[0].mac("ethws0"));

    // 1. The server TAP's MAC, while both clients ping the server.
    let (pa, pb) = (
        pings(&st.clients[0], SRV_TAP, 30),
        pings(&st.clients[1], SRV_TAP, 30),
    );
    let (sent, stolen) = evil.spoof(tap_mac, Duration::from_secs(7));
    let (got_a, got_b) = (pa.join().unwrap(), pb.join().unwrap());
    eprintln!("spoofing the server TAP: {sent} frames; A {got_a}/30, B {got_b}/30 replies; {stolen} echo requests reached the attacker");
    assert_eq!((got_a, got_b), (30, 30), "{}", server.log());
    assert_eq!(stolen, 0, "the attacker received echo requests");

    // 2. A's MAC, while the server pings A.
    let p = pings(&st.srv, "198.19.0.2", 30);
    let (sent, stolen) = evil.spoof(a_mac, Duration::from_secs(7));
    let got = p.join().unwrap();
    eprintln!("spoofing client A: {sent} frames; server -> A {got}/30 replies; {stolen} echo requests reached the attacker");
    assert_eq!(got, 30, "{}", server.log());
    assert_eq!(stolen, 0, "the attacker received echo requests for A");

    let report = server.report();
    let spoofs = drops(&report, "198.18.3.2", "spoof");
    assert!(spoofs > 1000, "drop_spoof={spoofs}:\n{report}");
    let log = server.log();
    assert!(
        log.contains("is this node's own address") && log.contains("is active on port"),
        "{log}"
    );
    // The per-port line is rate-limited: far fewer lines than drops.
    assert!(log.matches("dropped frame (spoof)").count() < 40, "{log}");

    // 3. A reconnects (a new port): its MAC works at once from there.
    a.stop();
    let _a2 = start_client(&st.clients[0], &Star::url(1), 2);
    assert!(st.clients[0].ping_until(SRV_TAP, UP), "{}", server.log());
    assert!(st.srv.ping_until("198.19.0.2", UP));

    // 4. A station silent for the guard time on one port moves to
    // another; right after, the first may not take it back.
    let roamer = [0x02, 0x42, 0, 0, 0, 0x77];
    let mut first = Attacker::new(&st.clients[2], "198.18.3.1:8080");
    let (first_port, evil_port) = {
        let report = server.report();
        (first.port_id(&report), evil.port_id(&report))
    };
    first.spoof(roamer, Duration::from_millis(50));
    assert_eq!(
        fdb_port(&server.report(), "02:42:00:00:00:77"),
        Some(first_port.clone())
    );
    evil.spoof(roamer, Duration::from_millis(50));
    assert_eq!(
        fdb_port(&server.report(), "02:42:00:00:00:77"),
        Some(first_port.clone()),
        "moved within the guard time"
    );
    std::thread::sleep(Duration::from_millis(3500)); // past --move-guard 3
    evil.spoof(roamer, Duration::from_millis(50));
    assert_eq!(
        fdb_port(&server.report(), "02:42:00:00:00:77"),
        Some(evil_port.clone()),
        "did not move after the guard time"
    );
    first.spoof(roamer, Duration::from_millis(50));
    assert_eq!(
        fdb_port(&server.report(), "02:42:00:00:00:77"),
        Some(evil_port)
    );
}

/// The port a MAC is learned on, from a report's `fdb` lines.
fn fdb_port(report: &str, mac: &str) -> Option<String> {
    report
        .lines()
        .find(|l| l.starts_with("fdb vlan") && l.contains(mac))
        .and_then(|l| l.split_whitespace().nth(6).map(str::to_string))
}

/// Sends `n` udp:// HELLOs with the right key from random source
/// addresses of 198.18.128.0/17 (raw IP, from inside `ns`).
fn spoofed_hellos(ns: &Netns, key: &str, to: &str, n: u32) {
    let script = r#"
import hmac, hashlib, os, random, socket, struct, sys, time
key, dst, port, n = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(n):
    payload = os.urandom(16) + struct.pack(">QIB", int(time.time()), 1522, 0) + bytes(16)
    d = bytes([0x11, 1, 0, 0]) + bytes(4) + struct.pack(">Q", 1) + payload
    d += hmac.new(key, d, hashlib.sha256).digest()[:16]
    src = "198.18.%d.%d" % (random.randint(128, 255), random.randint(1, 254))
    sport = random.randint(1024, 65535)
    udp = struct.pack(">HHHH", sport, port, 8 + len(d), 0) + d
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + udp, (dst, 0))
    if i % 100 == 99:
        time.sleep(0.01)
"#;
    let (host, port) = to.split_once(':').unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", script])
        .args([key, host, port, &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spoofer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 15, hole 5 and acceptance 5.
#[test]
fn spoofed_udp_hellos_with_the_right_key_create_nothing() {
    if !root_or_skip("hello_flood") {
        return;
    }
    let d = files("hello");
    let key = "a pre-shared key every udp client has";
    let psk = s(&write(&d, "psk", &format!("{key}\n")));
    std::fs::set_permissions(&psk, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let h = two_hosts(
        "hello",
        &["--listen", "udp://0.0.0.0:9000", "--psk-file", &psk],
    );
    // The server accepts packets from the spoofed sources (no reverse
    // path check) and has a route back to them: its answers go out, to
    // nobody.
    for k in ["all", "default", "veth0"] {
        h.srv
            .run_in(&["sysctl", "-qw", &format!("net.ipv4.conf.{k}.rp_filter=0")]);
    }
    h.srv
        .ip(&["route", "add", "198.18.128.0/17", "via", "198.18.0.2"]);
    let _client = client_with(
        &h.cli,
        "client",
        &["udp://198.18.0.1:9000"],
        &["--psk-file", &psk],
        2,
    );
    assert!(h.cli.ping_until(SRV_TAP, UP), "{}", h.server.log());
    let (rss, _) = rss_kib(h.server.pid());
    let p = pings(&h.cli, SRV_TAP, 20);
    spoofed_hellos(&h.cli, key, "198.18.0.1:9000", 5000);
    let got = p.join().unwrap();
    let (_, peak) = rss_kib(h.server.pid());
    let report = h.server.report();
    eprintln!(
        "5000 spoofed keyed HELLOs: RSS {rss} KiB -> peak {peak} KiB; the client got {got}/20 replies"
    );
    assert_eq!(port_count(&report), 2, "ports appeared:\n{report}");
    let cookies = report
        .lines()
        .find_map(|l| l.strip_prefix("udp cookies sent (HELLOs without a valid cookie): "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    // (A few may be lost in the server's socket buffer: the sender is
    // paced, not flow-controlled.)
    assert!(cookies >= 4500, "cookies sent: {cookies}\n{report}");
    assert!(
        peak.saturating_sub(rss) < 4 * 1024,
        "RSS grew by {} KiB",
        peak - rss
    );
    assert_eq!(
        got,
        20,
        "the legitimate client lost pings:\n{}",
        h.server.log()
    );
}

/// Smaller defects of the probe: a wss:// client at a plain ws://
/// listener is answered at once (not held for the handshake timeout) and
/// told what is wrong, on both ends.
#[test]
fn a_wss_client_at_a_plain_listener_is_told_at_once() {
    if !root_or_skip("tls_plain") {
        return;
    }
    let h = two_hosts("tlsplain", &["--handshake-timeout", "60"]);
    let mut c = once(
        &h.cli,
        "wss",
        "wss://198.18.0.1:8080/",
        &["--insecure", "--handshake-timeout", "60"],
    );
    // Well inside the 60 s either side would otherwise wait.
    assert_eq!(c.wait_exit(UP), Some(1), "{}", c.log());
    assert!(c.log().contains("did not answer in TLS"), "{}", c.log());
    assert!(
        h.server.wait_log(UP, |l| l
            .contains("plain ws:// listener and the client spoke TLS")),
        "{}",
        h.server.log()
    );
}

/// Smaller defects: secret files others can read are warned about, an
/// empty htpasswd file too, and a truncated hash stops the start.
#[test]
fn careless_secret_files_are_warned_about_and_a_truncated_hash_is_refused() {
    if !root_or_skip("files") {
        return;
    }
    let d = files("careless");
    let ca = Ca::new("careless CA");
    let issued = ca.server(&["198.18.0.1"], KeyKind::EcdsaP256);
    let cert = s(&write(&d, "cert.pem", &issued.chain_pem));
    let key = s(&write(&d, "key.pem", &issued.key_pem));
    let psk = s(&write(&d, "psk", "a key of at least sixteen bytes\n"));
    let empty = s(&write(&d, "empty", "# nobody yet\n"));
    for f in [&key, &psk] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    let h = two_hosts(
        "careless",
        &[
            "--listen",
            "udp://0.0.0.0:9000",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--psk-file",
            &psk,
            "--htpasswd",
            &empty,
        ],
    );
    let log = h.server.log();
    for what in [format!("--tls-key {key}"), format!("--psk-file {psk}")] {
        assert!(
            log.lines()
                .any(|l| l.contains(&what) && l.contains("everyone") && l.contains("chmod 600")),
            "no warning for {what}:\n{log}"
        );
    }
    assert!(log.contains("has no users"), "{log}");
    let cut = &BCRYPT_SECRET[..30];
    let truncated = s(&write(
        &d,
        "truncated",
        &format!("alice:{SHA_SECRET}\nbob:{cut}\n"),
    ));
    let mut p = h.srv.etherws(
        "truncated",
        &[
            "server",
            "--no-tap",
            "--listen",
            "0.0.0.0:8090",
            "--htpasswd",
            &truncated,
        ],
    );
    assert_eq!(p.wait_exit(UP), Some(1), "{}", p.log());
    let log = p.log();
    assert!(
        log.contains("line 2") && log.contains("user bob") && log.contains("truncated"),
        "{log}"
    );
}

/// Smaller defects: removing a user from the file ends their links when
/// the file changes, as --help says, with no SIGHUP.
#[test]
fn removing_a_user_from_the_file_ends_their_links_without_a_sighup() {
    if !root_or_skip("revoke") {
        return;
    }
    let d = files("revoke");
    let htpasswd = write(
        &d,
        "htpasswd",
        &format!("alice:{SHA_SECRET}\nbob:{SHA_SECRET}\n"),
    );
    let secret = s(&write(&d, "secret", "secret\n"));
    let h = two_hosts("revoke", &["--htpasswd", &s(&htpasswd)]);
    let bob = client_with(
        &h.cli,
        "bob",
        &[WS_URL],
        &["--user", "bob", "--password-file", &secret],
        2,
    );
    assert!(h.cli.ping_until(SRV_TAP, UP), "{}", h.server.log());
    assert!(port_line(&h.server.report(), "bob@").is_some());
    std::fs::write(&htpasswd, format!("alice:{SHA_SECRET}\n")).unwrap();
    assert!(
        h.server
            .wait_log(UP, |l| l.contains("1 links of removed users closed")),
        "{}",
        h.server.log()
    );
    assert!(
        poll(UP, || port_line(&h.server.report(), "bob@").is_none()),
        "bob's port stayed:\n{}",
        h.server.report()
    );
    assert!(!h.server.log().contains("SIGHUP"));
    // bob's client was closed with 1008 and cannot come back.
    assert!(bob.wait_log(UP, |l| l.contains("401")), "{}", bob.log());
}
