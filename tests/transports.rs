//! End-to-end tests of the transports besides ws: the real `etherws`
//! binary in network namespaces (198.18.0.0/15), over udp://.

mod common;

use std::time::Duration;

use common::*;

const UP: Duration = Duration::from_secs(30);
const UDP_URL: &str = "udp://198.18.0.1:8080";

fn udp_two_hosts(tag: &str, server_args: &[&str]) -> TwoHosts {
    let mut args = vec!["--listen", "udp://0.0.0.0:8080"];
    args.extend_from_slice(server_args);
    two_hosts(tag, &args)
}

/// Ping both ways, then 20 MB over TCP both ways, byte for byte; the
/// server's report lists the client's link under `scheme`.
fn ping_and_20_mb_both_ways(h: &TwoHosts, client: &Proc, scheme: &str) {
    // The first ping fails with the client's log too.
    assert!(
        h.cli.ping_until(SRV_TAP, UP),
        "client -> server ping over {scheme} failed:\n{}\n{}",
        h.server.log(),
        client.log()
    );
    both_ways(h, scheme);
    let report = h.server.report();
    assert!(
        report.contains(&format!("{scheme}://198.18.0.2:")),
        "{report}"
    );
}

/// A and B of a two-client star ping each other through the server; its
/// report lists two `scheme` links. Returns the report.
fn hub_switches(s: &Star, server: &Proc, scheme: &str) -> String {
    assert!(
        s.clients[0].ping_until("198.19.0.3", UP),
        "A -> B over the {scheme} hub failed:\n{}",
        server.log()
    );
    assert!(s.clients[1].ping_until("198.19.0.2", UP), "B -> A failed");
    let report = server.report();
    let links = report
        .lines()
        .filter(|l| l.starts_with("port ") && l.contains(&format!("{scheme}://")))
        .count();
    assert_eq!(links, 2, "{report}");
    report
}

#[test]
fn udp_ping_and_20_mb_both_ways_byte_identical() {
    if !root_or_skip("udp_two_hosts") {
        return;
    }
    let h = udp_two_hosts("udp2", &[]);
    let client = start_client(&h.cli, UDP_URL, 2);
    ping_and_20_mb_both_ways(&h, &client, "udp");
}

#[test]
fn udp_hub_switches_between_two_clients_beside_a_ws_listener() {
    if !root_or_skip("udp_hub") {
        return;
    }
    let s = star("udph", 2);
    // One server, two listeners: ws on TCP 8080 (start_server's), udp on
    // UDP 8080.
    let server = start_server(&s.srv, &["--listen", "udp://0.0.0.0:8080"]);
    assert!(
        server.log().contains("listening on ws://"),
        "{}",
        server.log()
    );
    let _a = start_client(&s.clients[0], "udp://198.18.1.1:8080", 2);
    let _b = start_client(&s.clients[1], "udp://198.18.2.1:8080", 3);
    let report = hub_switches(&s, &server, "udp");
    let mac_a = s.clients[0].mac("ethws0");
    assert!(report.contains(&format!("mac {mac_a} port")), "{report}");
}

/// A datagram of the udp:// wire format, sent from a socket in `ns`.
fn send_udp(ns: &Netns, to: &'static str, datagrams: Vec<Vec<u8>>) {
    ns.enter(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for d in datagrams {
            s.send_to(&d, to).unwrap();
        }
    });
}

#[test]
fn udp_stray_and_unauthenticated_datagrams_create_no_port() {
    use etherws_udp::wire::{self, kind};
    if !root_or_skip("udp_psk") {
        return;
    }
    let dir = scratch(&unique("psk"));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.key");
    let bad = dir.join("bad.key");
    std::fs::write(&good, "correct horse battery staple 1\n").unwrap();
    std::fs::write(&bad, "a different key of some length\n").unwrap();
    let h = udp_two_hosts("udpk", &["--psk-file", good.to_str().unwrap()]);

    // Junk, a frame for no session, a HELLO without a key, a HELLO with
    // the wrong key: none may become a port.
    let wrong = wire::Key::new(b"a different key of some length").unwrap();
    let hello = wire::hello([7; 16], 1522, 0, [0; 16]);
    let mut d = Vec::new();
    let mut datagrams = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x13, 0, 0, 0, 0, 0, 0, 1, 0xff],
    ];
    wire::encode(&mut d, kind::HELLO, 0, None, &hello);
    datagrams.push(d.clone());
    wire::encode(&mut d, kind::HELLO, 0, Some((&wrong, 1)), &hello);
    datagrams.push(d.clone());
    send_udp(&h.cli, "198.18.0.1:8080", datagrams);
    // A client with the wrong key gets no answer.
    let bad = bad.to_str().unwrap();
    let mut wrong_client = once(
        &h.cli,
        "client",
        UDP_URL,
        &["--handshake-timeout", "2", "--psk-file", bad],
    );
    assert!(
        wrong_client.wait_exit(UP).is_some_and(|c| c != 0),
        "{}",
        wrong_client.log()
    );
    assert!(
        wrong_client.log().contains("timed out"),
        "{}",
        wrong_client.log()
    );
    let report = h.server.report();
    assert!(!report.contains("udp://"), "a port appeared:\n{report}");
    let count = |name: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("udp unauthenticated datagrams:") >= 3, "{report}");
    assert!(count("udp stray datagrams:") >= 1, "{report}");

    // The right key works.
    let good = good.to_str().unwrap();
    let _client = client_with(&h.cli, "client", &[UDP_URL], &["--psk-file", good], 2);
    assert!(
        h.cli.ping_until(SRV_TAP, UP),
        "ping with the right key failed:\n{}",
        h.server.log()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A CA, and a server certificate for 198.18.0.0/22's server addresses,
/// as files: (dir, cert, key, ca).
fn quic_pki(tag: &str) -> (std::path::PathBuf, String, String, String) {
    use etherws_tls::testing::{write, Ca, KeyKind};
    let d = scratch(&unique(tag));
    let ca = Ca::new("quic test CA");
    let issued = ca.server(
        &["198.18.0.1", "198.18.1.1", "198.18.2.1"],
        KeyKind::EcdsaP256,
    );
    let s = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
    let cert = s(write(&d, "cert.pem", &issued.chain_pem));
    let key = s(write(&d, "key.pem", &issued.key_pem));
    let ca = s(write(&d, "ca.pem", &ca.cert_pem()));
    (d, cert, key, ca)
}

#[test]
fn quic_ping_and_20_mb_both_ways_byte_identical_and_a_wrong_ca_is_refused() {
    if !root_or_skip("quic_two_hosts") {
        return;
    }
    let (d, cert, key, ca) = quic_pki("quic2");
    let h = two_hosts(
        "quic2",
        &[
            "--listen",
            "quic://0.0.0.0:8443",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert!(
        h.server
            .wait_log(UP, |l| l.contains("listening on quic://")),
        "{}",
        h.server.log()
    );
    let url = "quic://198.18.0.1:8443";
    let client = client_with(&h.cli, "client", &[url], &["--ca", &ca], 2);
    ping_and_20_mb_both_ways(&h, &client, "quic");

    // A client that trusts no such CA gets no link, and says why.
    let other = quic_pki("quic2o");
    let mut wrong = once(&h.cli, "client", url, &["--ca", &other.3]);
    assert!(
        wrong.wait_exit(UP).is_some_and(|c| c != 0),
        "{}",
        wrong.log()
    );
    assert!(
        wrong.log().to_lowercase().contains("certificate"),
        "{}",
        wrong.log()
    );
    let _ = std::fs::remove_dir_all(d);
    let _ = std::fs::remove_dir_all(other.0);
}

#[test]
fn quic_hub_switches_between_two_clients() {
    if !root_or_skip("quic_hub") {
        return;
    }
    let (d, cert, key, ca) = quic_pki("quich");
    let s = star("quich", 2);
    let server = start_server(
        &s.srv,
        &[
            "--listen",
            "quic://0.0.0.0:8443",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    let ca = ["--ca", ca.as_str()];
    let _a = client_with(&s.clients[0], "client", &["quic://198.18.1.1:8443"], &ca, 2);
    let _b = client_with(&s.clients[1], "client", &["quic://198.18.2.1:8443"], &ca, 3);
    hub_switches(&s, &server, "quic");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn udp_offload_carries_super_frames_and_20_mb_both_ways() {
    if !root_or_skip("udp_offload") {
        return;
    }
    let h = udp_two_hosts("udpo", &["--udp-offload"]);
    let client = client_with(&h.cli, "client", &[UDP_URL], &["--udp-offload"], 2);
    ping_and_20_mb_both_ways(&h, &client, "udp");
    let log = h.server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("attached: link udp://") && l.contains("(offload")),
        "offload was not agreed:\n{log}"
    );
}

/// The packets matching `filter` on `dev` in `ns` while `work` runs, as
/// `tcpdump -v` prints them (tcpdump started and stopped by the test).
fn capture(ns: &Netns, dev: &str, filter: &str, work: impl FnOnce()) -> String {
    let pcap = scratch(&format!("{}.pcap", unique("cap")));
    let (cap, log) = spawn_in(
        ns,
        "tcpdump",
        &[
            "tcpdump",
            "-i",
            dev,
            "-n",
            "-U",
            "-w",
            pcap.to_str().unwrap(),
            filter,
        ],
    );
    assert!(
        poll(UP, || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("listening on"))),
        "tcpdump did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    work();
    std::thread::sleep(std::time::Duration::from_millis(300)); // the last packets out
    drop(cap);
    let out = std::process::Command::new("tcpdump")
        .args(["-n", "-v", "-r", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&pcap);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 18, acceptance 2: at the default MTU over a 1500-byte underlay,
/// SYNs crossing udp:// announce an MSS whose segments fit one datagram:
/// a 20 MB transfer makes no IP fragment on the underlay; without the
/// clamp, the same transfer does (the capture sees them).
#[test]
fn udp_clamps_the_mss_so_full_size_frames_cross_without_ip_fragments() {
    if !root_or_skip("mss_clamp") {
        return;
    }
    let fragments = "ip[6:2] & 0x3fff != 0";
    for clamp in [true, false] {
        let off: &[&str] = if clamp { &[] } else { &["--no-mss-clamp"] };
        let h = udp_two_hosts(if clamp { "mssc" } else { "mssn" }, off);
        let _c = client_with(&h.cli, "client", &[UDP_URL], off, 2);
        assert!(h.cli.ping_until(SRV_TAP, UP), "{}", h.server.log());
        let mut syns = String::new();
        let frags = capture(&h.srv, "veth0", fragments, || {
            syns = capture(&h.srv, "ethws0", "tcp[tcpflags] & tcp-syn != 0", || {
                let port = if clamp {
                    "198.19.0.1:5041"
                } else {
                    "198.19.0.1:5042"
                };
                let (got, ok) = tcp_transfer(&h.cli, &h.srv, port, 20 << 20);
                assert!(ok, "20 MB over udp (clamp {clamp}): {got} bytes");
            });
        });
        // (tcpdump -v prints a packet on two lines; the first starts with
        // its time)
        let n = frags
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .count();
        eprintln!("udp, mss clamp {clamp}: {n} IP fragments on the underlay in 20 MB; SYNs at the server:\n{syns}");
        if clamp {
            assert_eq!(n, 0, "fragments with the clamp on:\n{frags}");
            assert!(
                syns.contains("mss 1406"),
                "the SYN was not clamped:\n{syns}"
            );
        } else {
            assert!(
                n > 1000,
                "the capture saw {n} fragments without the clamp: it cannot tell"
            );
            assert!(syns.contains("mss 1460"), "{syns}");
        }
    }
}

/// A NAT in a thread: datagrams from the client (on `listen`) go to
/// `server` from an outside socket that `rebind` replaces, as a NAT does
/// when its mapping expires; answers to the old socket are dropped, as a
/// NAT drops them. Bounded: it stops after `stop` or 120 s.
struct Nat {
    rebind: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Nat {
    fn start(ns: &Netns, listen: &'static str, server: &'static str) -> Nat {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        use std::sync::Arc;
        let rebind = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (rebind.clone(), stop.clone());
        let path = format!("/var/run/netns/{}", ns.name);
        let thread = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on a valid namespace fd affects only this thread.
            assert_eq!(
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) },
                0
            );
            let inside = std::net::UdpSocket::bind(listen).unwrap();
            let outs = [
                std::net::UdpSocket::bind("0.0.0.0:0").unwrap(),
                std::net::UdpSocket::bind("0.0.0.0:0").unwrap(),
            ];
            for s in std::iter::once(&inside).chain(&outs) {
                s.set_nonblocking(true).unwrap();
            }
            let mut client = None;
            let mut buf = vec![0u8; 65536];
            let t = std::time::Instant::now();
            while !st.load(Relaxed) && t.elapsed() < std::time::Duration::from_secs(120) {
                let cur = usize::from(r.load(Relaxed));
                let mut busy = false;
                while let Ok((n, from)) = inside.recv_from(&mut buf) {
                    client = Some(from);
                    let _ = outs[cur].send_to(&buf[..n], server);
                    busy = true;
                }
                for (i, o) in outs.iter().enumerate() {
                    while let Ok((n, _)) = o.recv_from(&mut buf) {
                        busy = true;
                        if i == cur {
                            if let Some(c) = client {
                                let _ = inside.send_to(&buf[..n], c);
                            }
                        }
                    }
                }
                if !busy {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
        });
        Nat {
            rebind,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Issue 18 scope 6: a client whose public address changes (the NAT's
/// mapping moved to another port) keeps its session: the next
/// authenticated datagram moves it, as WireGuard roams, instead of a
/// keepalive failure and a new HELLO. Without a key there is no roaming.
#[test]
fn udp_roams_when_the_clients_address_changes() {
    use std::sync::atomic::Ordering::Relaxed;
    if !root_or_skip("udp_roam") {
        return;
    }
    let d = files("roam");
    let psk = s(&write_file(&d, "psk", "a key for the roaming test\n"));
    let h = udp_two_hosts("roam", &["--psk-file", &psk]);
    let nat = Nat::start(&h.cli, "127.0.0.1:7777", "198.18.0.1:8080");
    let client = client_with(
        &h.cli,
        "client",
        &["udp://127.0.0.1:7777"],
        &["--psk-file", &psk],
        2,
    );
    assert!(
        h.cli.ping_until(SRV_TAP, UP),
        "{}\n{}",
        client.log(),
        h.server.log()
    );
    nat.rebind.store(true, Relaxed);
    // Pings resume at once (keepalive would take 25 s).
    assert!(
        h.cli.ping_until(SRV_TAP, std::time::Duration::from_secs(5)),
        "no ping after the address changed:\n{}",
        h.server.log()
    );
    assert!(
        h.server.wait_log(UP, |l| l.contains("moved from")
            && l.contains("NAT rebinding")),
        "{}",
        h.server.log()
    );
    assert_eq!(
        client.log().matches("connected to").count(),
        1,
        "{}",
        client.log()
    );
    let report = h.server.report();
    assert!(
        report.contains("udp sessions moved (NAT rebinding): 1"),
        "{report}"
    );
    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("port ") && l.contains("udp://"))
            .count(),
        1,
        "one session, moved:\n{report}"
    );
}

fn write_file(d: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    p
}

/// udp:// keepalive (core's machine on both ends): PING/PONG keep an idle
/// link past twice its dead-line, and a
/// peer that freezes is noticed by the dead-line.
#[test]
fn udp_keepalive_holds_an_idle_link_and_notices_a_frozen_peer() {
    if !root_or_skip("udp_keepalive") {
        return;
    }
    let ka = ["--ping-interval", "1", "--ping-timeout", "2"];
    let h = udp_two_hosts("udpka", &ka);
    let client = client_with(&h.cli, "client", &[UDP_URL], &ka, 2);
    assert!(
        h.cli.ping_until(SRV_TAP, UP),
        "{}\n{}",
        client.log(),
        h.server.log()
    );
    // 8 s without a frame: over twice the dead-line of 3 s. Nothing may
    // end the link meanwhile (a wait that sees the line fails the test).
    let ended = h
        .server
        .wait_log(Duration::from_secs(8), |l| l.contains("nothing heard"));
    assert!(!ended, "the idle link died:\n{}", h.server.log());
    assert!(!client.log().contains("nothing heard"), "{}", client.log());
    assert_eq!(
        client.log().matches("connected to").count(),
        1,
        "{}",
        client.log()
    );
    // Freeze the client: the server ends its port at the dead-line.
    client.signal(libc::SIGSTOP);
    let noticed = h.server.wait_log(UP, |l| {
        l.contains("nothing heard from the peer for 3s") && l.contains("udp://198.18.0.2:")
    });
    client.signal(libc::SIGCONT);
    assert!(noticed, "{}", h.server.log());
}
