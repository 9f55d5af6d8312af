//! End-to-end robustness: misbehaving peers and an unlucky network against
//! the real binary in network namespaces (198.18.0.0/15 only). Each test
//! reports its measurements on stderr (`cargo test -- --nocapture`).
//! They need root; under CI=true they fail rather than skip without it.

mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etherws_ws::codec;

const UP: Duration = Duration::from_secs(30);

/// Sends UDP datagrams (1200 bytes) from `ns` to `dst` until `stop` is
/// set: 10,000 a second (about 100 Mbit/s, a flood the tunnel carries
/// without saturating, so a ping can still find room), at most 10 million
/// of them and for at most 300 s (every load loop is bounded).
fn udp_flood(ns: &Netns, dst: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let sock = ns.enter(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    std::thread::spawn(move || {
        let started = Instant::now();
        let payload = [0x5au8; 1200];
        let mut n = 0u64;
        let mut slot = Instant::now();
        while !stop.load(Relaxed) && n < 10_000_000 && started.elapsed() < Duration::from_secs(300)
        {
            // 100 datagrams per 10 ms slot. Errors (no route while the
            // tunnel is down, full buffers) are expected mid-flood.
            for _ in 0..100 {
                if sock.send_to(&payload, dst).is_ok() {
                    n += 1;
                }
            }
            slot += Duration::from_millis(10);
            if let Some(wait) = slot.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        n
    })
}

#[test]
fn twenty_kill9_rounds_under_a_flood_the_client_survives_and_ping_resumes() {
    if !root_or_skip("kill9_rounds") {
        return;
    }
    let mut h = two_hosts("k9", &[]);
    let mut client = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP), "{}", client.log());
    let stop = Arc::new(AtomicBool::new(false));
    let flood = udp_flood(&h.cli, "198.19.0.1:9", stop.clone());
    let mut worst = Duration::ZERO;
    for round in 1..=20 {
        h.server.kill();
        assert_eq!(
            client.wait_exit(Duration::from_millis(200)),
            None,
            "round {round}: the client exited:\n{}",
            client.log()
        );
        h.server = start_server(&h.srv, &[]);
        let t = Instant::now();
        let resumed = h.cli.ping_until(SRV_TAP, Duration::from_secs(5));
        let took = t.elapsed();
        worst = worst.max(took);
        assert!(
            resumed,
            "round {round}: ping did not resume within 5 s:\n{}",
            client.log()
        );
    }
    stop.store(true, Relaxed);
    let sent = flood.join().unwrap();
    assert!(
        sent > 1000,
        "the flood sent only {sent} datagrams: the rounds were not under load"
    );
    assert_eq!(
        client.wait_exit(Duration::from_millis(100)),
        None,
        "client alive at the end (an exit code, or 128 + a signal, means it died):\n{}",
        client.log()
    );
    let log = client.log();
    assert!(!log.contains("panic"), "{log}");
    eprintln!(
        "20 kill -9 rounds: ping resumed each time, worst {worst:?}; {sent} flood datagrams sent"
    );
    client.stop();
}

#[test]
fn a_peer_that_sends_pings_and_never_reads_cannot_grow_the_server() {
    if !root_or_skip("ping_flood") {
        return;
    }
    let h = two_hosts("pf", &[]);
    let _client = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP));
    let mut ws = raw_ws(&h.cli, "198.18.0.1:8080");
    let (_, before) = rss_kib(h.server.pid());
    // 200 MB of masked Pings, 125-byte payloads; the test never reads.
    let mut batch = Vec::new();
    while batch.len() < 1 << 20 {
        codec::encode(
            &mut batch,
            codec::op::PING,
            &[0x42; 125],
            Some([9, 8, 7, 6]),
        );
    }
    let t = Instant::now();
    let mut sent = 0usize;
    while sent < 200 * 1000 * 1000 {
        ws.get_mut()
            .write_all(&batch)
            .unwrap_or_else(|e| panic!("the server stopped reading after {sent} bytes: {e}"));
        sent += batch.len();
    }
    let (after, peak) = rss_kib(h.server.pid());
    eprintln!(
        "ping flood: {sent} bytes in {:?}; server RSS {before} KiB -> {after} KiB (peak {peak} KiB)",
        t.elapsed()
    );
    // The peak (VmHWM), not the RSS now: memory held during the flood and
    // freed before the read would otherwise pass.
    assert!(
        peak.saturating_sub(before) < 16 * 1024,
        "server peak RSS grew by {} KiB during the flood",
        peak.saturating_sub(before)
    );
    let _ = after;
    // Everyone else is still served, and so is the flooder.
    assert!(h.cli.ping_until(SRV_TAP, UP));
    assert!(h.srv.ping_until("198.19.0.2", UP));
}

#[test]
fn a_thousand_idle_clients_cost_under_64_kib_each() {
    if !root_or_skip("idle_clients") {
        return;
    }
    raise_fd_limit();
    let h = two_hosts("idle", &[]);
    let _client = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP));
    let (before, _) = rss_kib(h.server.pid());
    let mut idle = Vec::new();
    for i in 0..1000 {
        let ws = raw_ws(&h.cli, "198.18.0.1:8080");
        idle.push(ws);
        if i % 100 == 99 {
            // Keep the kernel's accept queue short.
            std::thread::yield_now();
        }
    }
    // Every one of them is a port: wait until the server counts them all.
    assert!(
        poll(UP, || h
            .server
            .report()
            .lines()
            .filter(|l| l.starts_with("port "))
            .count()
            >= 1002),
        "not all 1000 clients became ports"
    );
    let (after, _) = rss_kib(h.server.pid());
    let per = (after.saturating_sub(before)) * 1024 / 1000;
    eprintln!("1000 idle clients: server RSS {before} KiB -> {after} KiB, {per} bytes per client");
    assert!(per < 64 * 1024, "{per} bytes per idle client");
    // And the server still switches.
    assert!(h.cli.ping_until(SRV_TAP, UP));
    drop(idle);
}

#[test]
fn a_stopped_client_on_a_hub_holds_bounded_memory_and_drops_its_own_frames() {
    if !root_or_skip("stopped_client") {
        return;
    }
    let s = star("stop", 3);
    let server = start_server(&s.srv, &["--hub"]);
    let a = start_client(&s.clients[0], &Star::url(1), 2);
    let _b = start_client(&s.clients[1], &Star::url(2), 3);
    let c = start_client(&s.clients[2], &Star::url(3), 4);
    for (ns, who) in [
        (&s.clients[0], "A"),
        (&s.clients[1], "B"),
        (&s.clients[2], "C"),
    ] {
        assert!(
            ns.ping_until(SRV_TAP, UP),
            "{who} cannot reach the server:\n{}",
            server.log()
        );
    }
    assert!(
        s.clients[0].ping_until("198.19.0.3", UP),
        "A -> B:\n{}",
        a.log()
    );
    c.signal(libc::SIGSTOP);
    let t = Instant::now();
    let (n, intact) = tcp_transfer(&s.clients[0], &s.clients[1], "198.19.0.3:5003", 50 << 20);
    let took = t.elapsed();
    c.signal(libc::SIGCONT);
    let (rss, peak) = rss_kib(server.pid());
    let report = server.report();
    eprintln!("hub, C stopped: A -> B 50 MiB in {took:?}; server RSS {rss} KiB, peak {peak} KiB");
    if !intact {
        // Everything that says where the bytes stopped.
        let sockets: Vec<String> = std::iter::once(&s.srv)
            .chain(&s.clients)
            .map(|ns| format!("{}:\n{}", ns.name, ns.run_in(&["ss", "-tnmi"])))
            .collect();
        panic!(
            "transfer incomplete or corrupt: {n} bytes\nserver report:\n{report}\nA:\n{}\nB:\n{}\n{}",
            a.report(),
            _b.report(),
            sockets.join("\n")
        );
    }
    assert!(peak < 64 * 1024, "server peak RSS {peak} KiB");
    let c_line = report
        .lines()
        .find(|l| l.starts_with("port ") && l.contains("198.18.3.2"))
        .unwrap_or_else(|| panic!("no port for C:\n{report}"));
    assert!(c_line.contains("drop_queue_full="), "{c_line}");
    // A hub learns nothing.
    assert!(report.contains("fdb: 0 entries"), "{report}");
}

#[test]
fn hub_mode_floods_unicast_to_every_port() {
    if !root_or_skip("hub_floods") {
        return;
    }
    let s = star("hub", 3);
    let server = start_server(&s.srv, &["--hub"]);
    let _a = start_client(&s.clients[0], &Star::url(1), 2);
    let _b = start_client(&s.clients[1], &Star::url(2), 3);
    let _c = start_client(&s.clients[2], &Star::url(3), 4);
    assert!(
        s.clients[0].ping_until("198.19.0.3", UP),
        "{}",
        server.log()
    );
    // C must be a port before its counters are read.
    assert!(
        poll(UP, || port_line(&server.report(), "198.18.3.2").is_some()),
        "C never connected:\n{}",
        server.log()
    );
    let c_tx = |report: &str| {
        let line = report
            .lines()
            .find(|l| l.starts_with("port ") && l.contains("198.18.3.2"))
            .unwrap_or_else(|| panic!("no port for C:\n{report}"))
            .to_string();
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix("tx_frames="))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = c_tx(&server.report());
    for _ in 0..20 {
        assert!(s.clients[0].ping_once("198.19.0.3"));
    }
    let after = c_tx(&server.report());
    // 20 echo requests and 20 replies between A and B, all flooded to C.
    assert!(after - before >= 40, "C saw {} frames", after - before);
    assert!(server.report().contains("fdb: 0 entries"));
}

/// A raw client sends `n` frames, each from a new random source MAC, to
/// the broadcast address.
fn spoof_sources(ws: &mut tungstenite::WebSocket<std::net::TcpStream>, n: usize) {
    let mut batch = Vec::new();
    let mut x = 0x1234_5678u64;
    for i in 0..n {
        let mut f = vec![0xffu8; 6];
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        f.extend_from_slice(&[0x02, b[0], b[1], b[2], b[3], b[4]]);
        f.extend_from_slice(&[0x88, 0xb5]);
        f.resize(60, 0);
        codec::encode(&mut batch, codec::op::BINARY, &f, Some([1, 2, 3, 4]));
        if batch.len() > 1 << 20 || i + 1 == n {
            ws.get_mut()
                .write_all(&batch)
                .expect("spoofer link dropped");
            batch.clear();
        }
    }
}

#[test]
fn a_hundred_thousand_spoofed_macs_cap_the_table_and_not_the_log() {
    if !root_or_skip("spoofed_macs") {
        return;
    }
    let s = star("mac", 2);
    let server = start_server(&s.srv, &["--fdb-max", "20000"]);
    let a = start_client(&s.clients[0], &Star::url(1), 2);
    let b = start_client(&s.clients[1], &Star::url(2), 3);
    assert!(s.clients[1].ping_until(SRV_TAP, UP));
    assert!(s.clients[0].ping_until("198.19.0.3", UP));
    let lines = |p: &Proc| p.log().lines().count();
    let (s0, a0, b0) = (lines(&server), lines(&a), lines(&b));
    // B pings the server throughout the storm: none may be lost.
    let pinger = {
        let ns = s.clients[1].name.clone();
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args([
                    "netns", "exec", &ns, "ping", "-c", "100", "-i", "0.02", "-W", "2", "-q",
                    SRV_TAP,
                ])
                .output()
                .unwrap()
        })
    };
    let mut ws = raw_ws(&s.clients[0], "198.18.1.1:8080");
    let t = Instant::now();
    spoof_sources(&mut ws, 100_000);
    let ping = pinger.join().unwrap();
    let ping_out = String::from_utf8_lossy(&ping.stdout);
    // Let the periodic summary come out, then count.
    assert!(
        server.wait_log(UP, |l| l.contains("not learned (table full)")),
        "no fdb summary:\n{}",
        server.log()
    );
    // Counted before the report, which goes to the same stderr.
    let (ds, da, db) = (lines(&server) - s0, lines(&a) - a0, lines(&b) - b0);
    let report = server.report();
    let entries: usize = report
        .lines()
        .find_map(|l| {
            l.strip_prefix("fdb: ")?
                .strip_suffix(" entries")?
                .parse()
                .ok()
        })
        .unwrap();
    eprintln!(
        "100k spoofed MACs in {:?}: fdb {entries} entries (cap 20000); log lines added: server {ds}, A {da}, B {db}; ping: {}",
        t.elapsed(),
        ping_out.lines().find(|l| l.contains("packet loss")).unwrap_or("?")
    );
    assert!(entries <= 20000, "fdb has {entries} entries");
    assert!(
        ping.status.success() && ping_out.contains(" 0% packet loss"),
        "{ping_out}"
    );
    for (who, n) in [("server", ds), ("A", da), ("B", db)] {
        assert!(n < 100, "{who} logged {n} lines");
    }
}

#[test]
fn sigterm_on_the_server_sends_close_1001() {
    if !root_or_skip("server_close") {
        return;
    }
    let mut h = two_hosts("sc", &[]);
    let mut ws = raw_ws(&h.cli, "198.18.0.1:8080");
    assert!(h.server.wait_log(UP, |l| l.contains("attached: link")));
    h.server.signal(libc::SIGTERM);
    assert_eq!(expect_close(&mut ws), Ok(Some(codec::close::GOING_AWAY)));
    // Our answer lets the server finish promptly.
    let _ = ws.flush();
    assert_eq!(h.server.wait_exit(UP), Some(0), "{}", h.server.log());
}

#[test]
fn sigterm_on_the_client_sends_close_1001() {
    if !root_or_skip("client_close") {
        return;
    }
    let base = unique("cc");
    let srv = Netns::new(format!("{base}-s"));
    let cli = Netns::new(format!("{base}-c"));
    veth(&srv, "198.18.0.1/24", &cli, "198.18.0.2/24");
    // A WebSocket server of the test's own (tungstenite) stands in for the
    // etherws server.
    let listener = srv.enter(|| std::net::TcpListener::bind("198.18.0.1:8080").unwrap());
    let peer = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut ws = tungstenite::accept(s).expect("handshake");
        let code = expect_close(&mut ws);
        let _ = ws.flush();
        code
    });
    let mut client = start_client(&cli, WS_URL, 2);
    assert!(
        client.wait_log(UP, |l| l.contains("connected to")),
        "{}",
        client.log()
    );
    client.signal(libc::SIGTERM);
    assert_eq!(peer.join().unwrap(), Ok(Some(codec::close::GOING_AWAY)));
    assert_eq!(client.wait_exit(UP), Some(0), "{}", client.log());
}
