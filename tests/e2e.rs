//! End-to-end tests: the real `etherws` binary in network namespaces.
//! They need root; under CI=true they fail rather than skip without it.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use tungstenite::Message;

const UP: Duration = Duration::from_secs(30);

#[test]
fn two_hosts_ping_both_ways_and_tcp_transfer_is_byte_identical() {
    if !root_or_skip("two_hosts") {
        return;
    }
    let h = two_hosts("two", &[]);
    let _client = start_client(&h.cli, WS_URL, 2);
    assert!(
        h.cli.ping_until(SRV_TAP, UP),
        "client -> server ping failed:\n{}",
        h.server.log()
    );
    assert!(
        h.srv.ping_until("198.19.0.2", UP),
        "server -> client ping failed"
    );

    // 20 MB over TCP through the tunnel, hashed on both sides.
    let (received, intact) = tcp_transfer(&h.cli, &h.srv, "198.19.0.1:5001", 20 * 1024 * 1024);
    assert!(
        intact,
        "payload differs after the tunnel ({received} bytes)"
    );
}

#[test]
fn hub_and_spoke_client_to_client_through_server() {
    if !root_or_skip("hub_and_spoke") {
        return;
    }
    let base = unique("hub");
    let srv = Netns::new(format!("{base}-s"));
    let a = Netns::new(format!("{base}-a"));
    let b = Netns::new(format!("{base}-b"));
    // Server reachable from A at 198.18.0.1 and from B at 198.18.1.1.
    veth(&srv, "198.18.0.1/24", &a, "198.18.0.2/24");
    // A second veth pair in srv needs other device names.
    veth_named(&srv, "veth1", "198.18.1.1/24", &b, "veth0", "198.18.1.2/24");

    let server = start_server(&srv, &[]);
    let _ca = start_client(&a, "ws://198.18.0.1:8080/", 2);
    let _cb = start_client(&b, "ws://198.18.1.1:8080/", 3);
    assert!(
        a.ping_until("198.19.0.3", UP),
        "A -> B ping failed:\n{}",
        server.log()
    );
    assert!(b.ping_until("198.19.0.2", UP), "B -> A ping failed");

    let mac_a = a.mac("ethws0");
    let mac_b = b.mac("ethws0");
    let report = server.report();
    for mac in [&mac_a, &mac_b] {
        assert!(
            report.contains(&format!("mac {mac} port")),
            "{mac} not in server FDB:\n{report}"
        );
    }
    // Two link ports and the TAP.
    assert_eq!(
        report.lines().filter(|l| l.starts_with("port ")).count(),
        3,
        "{report}"
    );
}

/// The switch fabric and the filters under two threads: three clients send
/// to each other at once through a server whose ports run on two threads,
/// so readers switch concurrently (the shared path) while stations are
/// learned (the exclusive one), and a replicable filter on each chain runs
/// an instance per thread. Every transfer must arrive whole.
#[test]
fn hub_on_two_threads_switches_and_filters_three_transfers_at_once() {
    if !root_or_skip("hub_on_two_threads") {
        return;
    }
    let star = star("hub2t", 3);
    let pass =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("filters/library/wasm/pass.wasm");
    let pass = pass.to_str().unwrap();
    let server = start_server(
        &star.srv,
        &["--threads", "2", "--filter", pass, "--egress-filter", pass],
    );
    let clients: Vec<Proc> = (1..=3u8)
        .map(|i| start_client(&star.clients[i as usize - 1], &Star::url(i), i + 1))
        .collect();
    for (i, c) in star.clients.iter().enumerate() {
        let next = format!("198.19.0.{}", (i + 1) % 3 + 2);
        assert!(
            c.ping_until(&next, UP),
            "client {} -> {next}:\n{}",
            i + 1,
            server.log()
        );
    }
    // 1 -> 2, 2 -> 3, 3 -> 1, all at once.
    let addrs: [&'static str; 3] = ["198.19.0.3:5001", "198.19.0.4:5002", "198.19.0.2:5003"];
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..3)
            .map(|i| {
                let (from, to) = (&star.clients[i], &star.clients[(i + 1) % 3]);
                let addr = addrs[i];
                s.spawn(move || tcp_transfer(from, to, addr, 20 << 20))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for (i, (n, ok)) in results.iter().enumerate() {
        assert!(
            ok,
            "transfer {} arrived with {n} bytes, not 20 MiB intact:\n{}",
            i + 1,
            server.log()
        );
    }
    let report = server.report();
    assert_eq!(
        report.lines().filter(|l| l.starts_with("port ")).count(),
        4,
        "three links and the TAP:\n{report}"
    );
    // Both chains saw the transfers, through at most one instance per
    // thread (which threads ran the ports is the executor's choice).
    for chain in ["ingress", "egress"] {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("filter {chain} pass")))
            .unwrap_or_else(|| panic!("no {chain} filter line:\n{report}"));
        let field = |k: &str| -> u64 {
            let v = line
                .split(&format!("{k}="))
                .nth(1)
                .unwrap_or_else(|| panic!("{k} in {line}"));
            v.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(field("passed") > 500, "{line}");
        assert!((1..=2).contains(&field("instances")), "{line}");
    }
    drop(clients);
}

#[test]
fn client_reconnects_after_server_restart() {
    if !root_or_skip("restart") {
        return;
    }
    let mut h = two_hosts("rst", &[]);
    let client = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP));
    h.server.kill();
    assert!(
        client.wait_log(UP, |l| l.contains("reconnecting")),
        "{}",
        client.log()
    );
    assert!(!h.cli.ping_once(SRV_TAP), "server is down, ping must fail");
    let _server = start_server(&h.srv, &[]);
    // The acceptance bound: traffic resumes within 10 s of the server's return.
    assert!(
        h.cli.ping_until(SRV_TAP, Duration::from_secs(10)),
        "ping did not resume within 10 s:\n{}",
        client.log()
    );
    let connects = client.log().matches("connected to").count();
    assert!(connects >= 2, "{}", client.log());
}

/// A frame that the spec's vector syntax describes.
fn vector_payload(spec: &str) -> Vec<u8> {
    if let Some(n) = spec.strip_prefix("zeros:") {
        return vec![0; n.parse().unwrap()];
    }
    if let Some(n) = spec.strip_prefix("frame:") {
        let n: usize = n.parse().unwrap();
        let mut f = vec![0u8; n];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        return f;
    }
    assert!(
        spec.len().is_multiple_of(2),
        "odd-length hex payload {spec:?}"
    );
    (0..spec.len() / 2)
        .map(|i| u8::from_str_radix(&spec[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

struct Vector {
    name: String,
    text: bool,
    payload: Vec<u8>,
    expect: String,
}

fn vectors() -> Vec<Vector> {
    let src = include_str!("../spec/vectors/ws-messages.txt");
    src.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "bad vector line {l:?}");
            let payload = vector_payload(f[2]);
            Vector {
                name: f[0].to_string(),
                text: f[1] == "text",
                payload,
                expect: f[3].to_string(),
            }
        })
        .collect()
}

/// An ARP request for `target` from a made-up station, as a raw client
/// would send it.
fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

fn report_counter(report: &str, port_name_part: &str, key: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.starts_with("port ") && l.contains(port_name_part))
        .unwrap_or_else(|| panic!("no port {port_name_part} in report:\n{report}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map_or(0, |v| v.parse().unwrap())
}

#[test]
fn bad_messages_are_counted_and_dropped_and_the_tunnel_keeps_working() {
    if !root_or_skip("bad_input") {
        return;
    }
    let h = two_hosts("bad", &[]);
    let _client = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP));

    let vectors = vectors();
    assert!(vectors.len() >= 8, "too few vectors");
    let tcp = h
        .cli
        .enter(|| TcpStream::connect("198.18.0.1:8080").unwrap());
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let local = tcp.local_addr().unwrap().to_string();
    let (mut ws, _) = tungstenite::client::client(WS_URL, tcp).expect("raw WebSocket handshake");
    let mut expect = std::collections::HashMap::<&str, u64>::new();
    for v in &vectors {
        let msg = if v.text {
            Message::text(String::from_utf8(v.payload.clone()).unwrap())
        } else {
            Message::binary(v.payload.clone())
        };
        ws.send(msg)
            .unwrap_or_else(|e| panic!("vector {}: {e}", v.name));
        *expect.entry(v.expect.as_str()).or_default() += 1;
    }
    // The link is still up both ways: an ARP request from the raw client
    // reaches the server's kernel, and its reply comes back on this socket.
    let mac = [2, 0, 0, 0, 0, 0x99];
    ws.send(Message::binary(arp_request(
        mac,
        [198, 19, 0, 99],
        [198, 19, 0, 1],
    )))
    .unwrap();
    let mut got_reply = false;
    let deadline = std::time::Instant::now() + UP;
    while std::time::Instant::now() < deadline {
        match ws.read().expect("raw client link dropped after bad input") {
            Message::Binary(b)
                if b.len() >= 22 && b[..6] == mac && b[12..14] == [0x08, 0x06] && b[21] == 2 =>
            {
                got_reply = true;
                break;
            }
            _ => {}
        }
    }
    assert!(got_reply, "no ARP reply came back to the raw client");

    let report = h.server.report();
    let n = |k| report_counter(&report, &local, k);
    assert_eq!(
        n("drop_runt"),
        expect.get("runt").copied().unwrap_or(0),
        "{report}"
    );
    assert_eq!(
        n("drop_oversize"),
        expect.get("oversize").copied().unwrap_or(0),
        "{report}"
    );
    assert_eq!(
        n("drop_not_a_frame"),
        expect.get("not_a_frame").copied().unwrap_or(0),
        "{report}"
    );
    assert_eq!(
        n("rx_frames"),
        (vectors.iter().filter(|v| !v.text).count() + 1) as u64,
        "{report}"
    );
    let log = h.server.log();
    assert!(
        log.contains("dropped frame"),
        "drops must be logged:\n{log}"
    );
    // And everyone else is still served.
    assert!(h.cli.ping_until(SRV_TAP, UP));
    assert!(h.srv.ping_until("198.19.0.2", UP));
}

#[test]
fn wrong_path_gets_404_and_server_keeps_serving() {
    if !root_or_skip("wrong_path") {
        return;
    }
    let h = two_hosts("path", &["--path", "/tunnel"]);
    let mut wrong = h.cli.etherws(
        "client-wrong",
        &[
            "client",
            "--once",
            "ws://198.18.0.1:8080/other",
            "--tap",
            "ethws9",
        ],
    );
    assert_eq!(wrong.wait_exit(UP), Some(1), "{}", wrong.log());
    assert!(wrong.log().contains("404"), "{}", wrong.log());
    let _ok = start_client(&h.cli, "ws://198.18.0.1:8080/tunnel", 2);
    assert!(h.cli.ping_until(SRV_TAP, UP), "{}", h.server.log());
}

#[test]
fn demo_exits_zero_and_prints_summary() {
    if !root_or_skip("demo") {
        return;
    }
    let out = std::process::Command::new(BIN)
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("summary"), "{stdout}");
    assert!(stdout.contains("client A -> client B"), "{stdout}");
    let switched: u64 = stdout
        .split("server switched ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in:\n{stdout}"));
    assert!(switched > 0, "{stdout}");
}

#[test]
fn a_message_past_the_hard_limit_closes_only_that_link() {
    if !root_or_skip("hard_limit") {
        return;
    }
    let h = two_hosts("hard", &[]);
    let _client = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP));
    let tcp = h
        .cli
        .enter(|| TcpStream::connect("198.18.0.1:8080").unwrap());
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut ws, _) = tungstenite::client::client(WS_URL, tcp).expect("raw WebSocket handshake");
    // MTU 1500: max frame 1522, hard limit 1522 + 65536 (spec/protocol.md §4).
    let _ = ws.send(Message::binary(vec![0u8; 1522 + 65536 + 1]));
    // The server must answer with Close 1009 (message too big); a read
    // timeout or a bare disconnect is a failure.
    assert_eq!(expect_close(&mut ws), Ok(Some(1009)), "{}", h.server.log());
    // Everyone else is still served.
    assert!(h.cli.ping_until(SRV_TAP, UP), "{}", h.server.log());
}
