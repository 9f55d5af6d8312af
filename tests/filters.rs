//! End-to-end: WASM filters in a running node, driven through the binary.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

const UP: Duration = Duration::from_secs(30);

fn library(name: &str) -> String {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("filters/library/wasm/{name}.wasm"));
    assert!(
        p.exists(),
        "{} missing: run filters/library/build.sh",
        p.display()
    );
    p.display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("etherws-filter-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A module that accepts any configuration and passes every frame.
const PASS_ANY: &str = r#"(module
  (memory (export "memory") 2)
  (func (export "etherws_abi_version") (result i32) i32.const 1)
  (func (export "etherws_frame_buffer") (result i32) i32.const 1024)
  (func (export "etherws_frame_capacity") (result i32) i32.const 65536)
  (func (export "etherws_init") (param i32) (result i32) i32.const 0)
  (func (export "etherws_filter") (param $len i32) (param i32 i32 i32) (result i32) local.get $len))"#;

/// Sends `n` bytes over TCP from `cli` to `srv`'s tunnel address; returns
/// the bytes received.
fn tcp_transfer(h: &TwoHosts, n: usize) -> usize {
    let listener = h
        .srv
        .enter(|| TcpListener::bind("198.19.0.1:5002").unwrap());
    let rx = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut total = 0;
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => total += k,
            }
        }
        total
    });
    let mut s = h
        .cli
        .enter(|| TcpStream::connect("198.19.0.1:5002").unwrap());
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&vec![0x5a; n]).unwrap();
    drop(s);
    rx.join().unwrap()
}

#[test]
fn icmp_dropped_by_protocol_filter_while_tcp_passes() {
    if !root_or_skip("icmp_filter") {
        return;
    }
    let f = format!("{}:drop_ipproto=1", library("ethertype"));
    let h = two_hosts("icmp", &["--filter", &f]);
    let _c = start_client(&h.cli, WS_URL, 2);
    // TCP (and ARP) cross the tunnel...
    assert!(
        tcp_reachable(&h.cli, "198.19.0.1:9", UP),
        "{}",
        h.server.log()
    );
    assert_eq!(tcp_transfer(&h, 1 << 20), 1 << 20);
    // ...ICMP does not.
    for _ in 0..3 {
        assert!(
            !h.cli.ping_once(SRV_TAP),
            "ping crossed an ICMP-dropping filter"
        );
    }
    let report = h.server.report();
    let dropped: u64 = report
        .lines()
        .find(|l| l.starts_with("filter ingress ethertype:"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("dropped="))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no filter line in report:\n{report}"));
    assert!(dropped >= 3, "{report}");
}

/// Opens an AF_PACKET socket on `dev` in the calling thread's namespace;
/// returns it with the device's index.
fn packet_socket(dev: &str) -> (std::os::fd::OwnedFd, i32) {
    use std::os::fd::FromRawFd;
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: plain libc calls; the fd is owned by the returned OwnedFd.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        assert!(ifindex > 0, "no device {dev}");
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        );
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        (std::os::fd::OwnedFd::from_raw_fd(fd), ifindex)
    }
}

fn send_raw(sock: &std::os::fd::OwnedFd, ifindex: i32, frame: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: sockaddr_ll is plain data; sendto reads `frame` only.
    unsafe {
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&frame[..6]);
        let n = libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(
            n,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn vlan_retag_is_seen_on_the_far_tap() {
    if !root_or_skip("vlan_retag") {
        return;
    }
    // Server: frames tagged VLAN 10 entering from any port leave tagged 20.
    let server_filter = format!("{}:mode=retag,from=10,to=20", library("vlan"));
    let h = two_hosts("vlan", &["--filter", &server_filter]);
    let _c = start_client(&h.cli, WS_URL, 2);
    assert!(
        h.cli.ping_until(SRV_TAP, UP),
        "untagged traffic must still pass"
    );

    // Watch the server's TAP for VLAN 20 frames.
    let mut dump = KillOnDrop(Some(
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &h.srv.name,
                "tcpdump",
                "-i",
                "ethws0",
                "-nn",
                "-e",
                "-l",
                "-c",
                "1",
                "vlan 20",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump"),
    ));
    // Inject VLAN 10 frames into the client's TAP from its kernel side.
    let src = [0x02, 0, 0, 0, 0x10, 0x10];
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x88, 0xb5]);
    frame.extend_from_slice(b"etherws vlan retag test");
    frame.resize(60, 0);
    let (sock, ifindex) = h.cli.enter(|| packet_socket("ethws0"));
    let seen = poll(UP, || {
        send_raw(&sock, ifindex, &frame);
        matches!(dump.0.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    });
    let mut child = dump.0.take().unwrap();
    if !seen {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen,
        "no VLAN 20 frame on the server TAP: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("02:00:00:00:10:10") && text.contains("vlan 20"),
        "{text}"
    );
    let report = h.server.report();
    assert!(
        report.contains("fdb vlan 20 mac 02:00:00:00:10:10"),
        "{report}"
    );
    assert!(!report.contains("fdb vlan 10 mac"), "{report}");
}

#[test]
fn capture_filter_writes_a_pcap_tcpdump_can_read() {
    if !root_or_skip("capture") {
        return;
    }
    let pcap = scratch("cap.pcap");
    let f = format!("{}:capture={}", library("capture"), pcap.display());
    let mut h = two_hosts("cap", &["--filter", &f]);
    let _c = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP));
    for _ in 0..5 {
        assert!(h.cli.ping_once(SRV_TAP));
    }
    h.server.stop();
    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&pcap)
        .output()
        .expect("tcpdump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = text
        .lines()
        .filter(|l| l.contains("198.19.0.2 > 198.19.0.1: ICMP echo request"))
        .count();
    let replies = text
        .lines()
        .filter(|l| l.contains("198.19.0.1 > 198.19.0.2: ICMP echo reply"))
        .count();
    assert!(
        requests >= 6 && replies >= 6,
        "{requests} requests, {replies} replies in:\n{text}"
    );
}

#[test]
fn sighup_swaps_the_chain_live_and_keeps_it_on_a_broken_module() {
    if !root_or_skip("sighup") {
        return;
    }
    let module = scratch("live.wasm");
    std::fs::copy(library("ethertype"), &module).unwrap();
    let f = format!("{}:drop_ipproto=1", module.display());
    let h = two_hosts("hup", &["--filter", &f]);
    let client = start_client(&h.cli, WS_URL, 2);
    // The link is up (TCP crosses), ICMP is dropped by the filter.
    assert!(
        tcp_reachable(&h.cli, "198.19.0.1:9", UP),
        "{}",
        h.server.log()
    );
    let dropped = |h: &TwoHosts| -> u64 {
        let r = h.server.report();
        r.lines()
            .find(|l| l.starts_with("filter ingress live"))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|kv| kv.strip_prefix("dropped="))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let before = dropped(&h);
    assert!(!h.cli.ping_once(SRV_TAP), "ICMP must be dropped first");
    assert!(dropped(&h) > before, "the filter did not see the ping");

    // A broken module: refused, the old chain stays (ICMP still dropped).
    std::fs::write(&module, "(module this is not wasm").unwrap();
    h.server.signal(libc::SIGHUP);
    assert!(
        h.server.wait_log(UP, |l| l.contains("not reloaded")),
        "{}",
        h.server.log()
    );
    let before = dropped(&h);
    assert!(!h.cli.ping_once(SRV_TAP));
    assert!(dropped(&h) > before, "the old chain must still drop ICMP");

    // A pass-everything module: swapped in live, ping now works.
    std::fs::write(&module, PASS_ANY).unwrap();
    h.server.signal(libc::SIGHUP);
    assert!(
        h.server
            .wait_log(UP, |l| l.contains("ingress chain reloaded")),
        "{}",
        h.server.log()
    );
    assert!(h.cli.ping_until(SRV_TAP, UP));
    // The link was never dropped.
    assert_eq!(
        client.log().matches("connected to").count(),
        1,
        "{}",
        client.log()
    );
}

#[test]
fn a_looping_filter_never_stops_the_node() {
    if !root_or_skip("looping") {
        return;
    }
    let module = scratch("loop.wat");
    std::fs::write(
        &module,
        PASS_ANY.replace("local.get $len))", "(loop $l (br $l)) local.get $len))"),
    )
    .unwrap();
    let f = format!("{}:on_fault=open,fuel=100000", module.display());
    let h = two_hosts("loop", &["--filter", &f]);
    let _c = start_client(&h.cli, WS_URL, 2);
    assert!(
        h.cli.ping_until(SRV_TAP, UP),
        "fail-open filter must let traffic through"
    );
    let report = h.server.report();
    assert!(report.contains("filter ingress loop:"), "{report}");
    assert!(
        h.server.log().contains("fuel budget exhausted"),
        "{}",
        h.server.log()
    );
    assert!(!report.contains("faults=0 "), "{report}");
}
