//! End-to-end: TAP offloads (super-frames) and peers without them. An
//! offloading node must interoperate with an etherws started with
//! `--no-offload` and with a raw-frame client (Python `websockets`), and
//! its software segmentation must match the kernel's own. Namespaces,
//! 198.18.0.0/15 only.

mod common;

use std::time::Duration;

use common::*;

const UP: Duration = Duration::from_secs(30);

#[test]
fn an_offloading_server_and_a_client_without_offloads() {
    if !root_or_skip("offload_server") {
        return;
    }
    let h = two_hosts("ofs", &[]);
    let c = client_with(&h.cli, "client", &[WS_URL], &["--no-offload"], 2);
    both_ways(&h, "server offloads, client does not");
    // The server cut its super-frames for the client: no bad offload drops.
    let report = h.server.report();
    assert!(!report.contains("drop_bad_offload"), "{report}");
    drop(c);
}

#[test]
fn a_server_without_offloads_and_an_offloading_client() {
    if !root_or_skip("offload_client") {
        return;
    }
    let h = two_hosts("ofc", &["--no-offload"]);
    let _c = start_client(&h.cli, WS_URL, 2);
    both_ways(&h, "client offloads, server does not");
}

#[test]
fn two_offloading_nodes_carry_super_frames_whole() {
    if !root_or_skip("offload_both") {
        return;
    }
    let h = two_hosts("ofb", &[]);
    let c = start_client(&h.cli, WS_URL, 2);
    both_ways(&h, "both offload");
    // Super-frames crossed whole: far fewer frames than 1448-byte segments
    // would need for 40 MB.
    let report = c.report();
    let line = port_line(&report, "ws://").unwrap();
    let tx: u64 = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("tx_frames="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        tx < 20 * 1024 * 1024 / 1448 / 2,
        "{tx} frames for 20 MB: no super-frames?\n{report}"
    );
}

/// A raw-frame client (Python `websockets`, from Debian's
/// python3-websockets) asks the server's TAP for its MAC (ARP) and pings
/// it (ICMP echo), frames built by hand. It offers no subprotocol, so it
/// must get plain, complete frames from an offloading server.
const PY_CLIENT: &str = r#"
import asyncio, struct, sys, websockets

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

async def main(url):
    me = bytes.fromhex("020000000077")
    my_ip, srv_ip = bytes([198, 19, 0, 77]), bytes([198, 19, 0, 1])
    async with websockets.connect(url, max_size=None) as ws:
        arp = b"\xff" * 6 + me + b"\x08\x06" + bytes.fromhex("0001080006040001") + me + my_ip + bytes(6) + srv_ip
        await ws.send(arp.ljust(60, b"\0"))
        srv_mac = None
        while srv_mac is None:
            f = await asyncio.wait_for(ws.recv(), 10)
            if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[28:32] == srv_ip:
                srv_mac = f[22:28]
        payload = b"etherws-offload-interop" * 40
        icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + payload
        icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 7, 0, 64, 1, 0, my_ip, srv_ip)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        await ws.send(srv_mac + me + b"\x08\x00" + ip + icmp)
        while True:
            f = await asyncio.wait_for(ws.recv(), 10)
            if f[12:14] != b"\x08\x00" or f[23] != 1 or f[34] != 0:
                continue
            ihl = (f[14] & 15) * 4
            assert csum(f[14:14 + ihl]) == 0, "IPv4 header checksum"
            assert csum(f[14 + ihl:]) == 0, "ICMP checksum: the frame was not finished"
            assert f[14 + ihl + 8:] == payload, "payload"
            print("echo reply ok", len(f))
            return

asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn a_python_websockets_client_gets_plain_frames_from_an_offloading_server() {
    if !root_or_skip("offload_python") {
        return;
    }
    let h = two_hosts("ofp", &[]);
    let script = scratch(&format!("{}.py", unique("pyclient")));
    std::fs::write(&script, PY_CLIENT).unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &h.cli.name, "/usr/bin/python3"])
        .arg(&script)
        .arg(WS_URL)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("echo reply ok"),
        "python client failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.server.log()
    );
}

/// A raw-frame client with a TCP stack behind it: Python `websockets`
/// bridging a TAP of its own (no vnet header, no subprotocol) to the
/// server, one frame per binary message, as any third-party client would.
const PY_TAP_BRIDGE: &str = r#"
import asyncio, fcntl, os, struct, sys, websockets

TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000

async def main(url, name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        loop = asyncio.get_running_loop()
        frames = asyncio.Queue(maxsize=4096)
        def readable():
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    return
                if not frames.full():
                    frames.put_nowait(frame)
        loop.add_reader(fd, readable)
        async def up():
            while True:
                await ws.send(await frames.get())
        async def down():
            async for m in ws:
                assert isinstance(m, bytes) and len(m) <= 1522, "a plain frame"
                os.write(fd, m)
        await asyncio.gather(up(), down())

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;

#[test]
fn a_python_tap_bridge_carries_ping_and_20_mb_both_ways_with_an_offloading_server() {
    if !root_or_skip("offload_python_tap") {
        return;
    }
    let h = two_hosts("ofq", &[]);
    let script = scratch(&format!("{}.py", unique("pytap")));
    std::fs::write(&script, PY_TAP_BRIDGE).unwrap();
    let (bridge, log) = spawn_in(
        &h.cli,
        "pytap",
        &[
            "/usr/bin/python3",
            script.to_str().unwrap(),
            WS_URL,
            "pytap0",
        ],
    );
    let ns = h.cli.name.clone();
    let exists = poll(UP, || {
        std::process::Command::new("ip")
            .args(["-n", &ns, "link", "show", "pytap0"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        exists,
        "the Python bridge made no TAP:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    h.cli.ip(&["addr", "add", "198.19.0.2/24", "dev", "pytap0"]);
    h.cli.ip(&["link", "set", "pytap0", "up"]);
    both_ways(&h, "Python TAP bridge, offloading server");
    let report = h.server.report();
    assert!(!report.contains("drop_bad_offload"), "{report}");
    drop(bridge);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log.contains("AssertionError"),
        "a super-frame reached the bridge:\n{log}"
    );
}

mod kernel_gso {
    //! The kernel's own segmentation as the reference for ours.

    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use etherws_core::offload::{self, VnetHdr};
    use etherws_core::tap::{MacPolicy, Tap, TapConfig};
    use etherws_core::{Frame, Link};
    use futures::{SinkExt, StreamExt};

    use super::common::*;

    fn tap(ns: &Netns, name: &'static str, address: Option<(Ipv4Addr, u8)>, offload: bool) -> Link {
        ns.enter(move || {
            Tap::create(&TapConfig {
                name: name.into(),
                mtu: 1500,
                address,
                // Distinct MACs: both ends are "gso0", and equal
                // link-local addresses would fail duplicate detection.
                mac: MacPolicy::Random,
                offload,
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_link()
        })
    }

    /// Keeps up to 40 super-frames and 20 frames that only need their
    /// checksum completed.
    fn keep(seen: &Mutex<Vec<(Vec<u8>, VnetHdr)>>, f: &Frame, h: VnetHdr) {
        let mut s = seen.lock().unwrap();
        let n = s.iter().filter(|(_, k)| k.is_gso() == h.is_gso()).count();
        if n < if h.is_gso() { 40 } else { 20 } {
            s.push((f.as_ref().to_vec(), h));
        }
    }

    /// TCP from `a` to `b` (IPv4 198.19.9.0/24, or IPv6 link-local)
    /// across two offloading TAPs joined by a relay of ours; returns the
    /// super-frames the sending TAP handed over.
    fn capture(tag: &str, v6: bool) -> Vec<(Vec<u8>, VnetHdr)> {
        let base = unique(tag);
        let a = Netns::new(format!("{base}-a"));
        let b = Netns::new(format!("{base}-b"));
        let la = tap(&a, "gso0", Some((Ipv4Addr::new(198, 19, 9, 1), 24)), true);
        let lb = tap(&b, "gso0", Some((Ipv4Addr::new(198, 19, 9, 2), 24)), true);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relay = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                smol::block_on(async move {
                    // Both ways (the receiver's ACKs carry checksum
                    // offload only), keeping what has offload metadata.
                    let seen = &seen;
                    let fwd = |mut rx: etherws_core::FrameStream,
                               mut tx: etherws_core::FrameSink| async move {
                        while let Some(Ok(f)) = rx.next().await {
                            if let Some(h) = f.meta.vnet.filter(|h| !h.is_plain()) {
                                keep(seen, &f, h);
                            }
                            if tx.send(f).await.is_err() {
                                break;
                            }
                        }
                    };
                    let (fwd_ab, fwd_ba) = (fwd(la.rx, lb.tx), fwd(lb.rx, la.tx));
                    let done = async {
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            smol::Timer::after(Duration::from_millis(20)).await;
                        }
                    };
                    futures::future::select(
                        Box::pin(done),
                        Box::pin(futures::future::join(fwd_ab, fwd_ba)),
                    )
                    .await;
                });
            })
        };
        let (listen, to) = if v6 {
            let _ = link_local(&a, "gso0"); // the source must be usable too
            let ll: std::net::Ipv6Addr = link_local(&b, "gso0").parse().unwrap();
            let scope = |ns: &Netns| -> u32 {
                let out = ns.ip(&["-o", "link", "show", "dev", "gso0"]);
                out.split(':').next().unwrap().trim().parse().unwrap()
            };
            let at = |s| std::net::SocketAddr::V6(std::net::SocketAddrV6::new(ll, 5020, 0, s));
            (at(scope(&b)), at(scope(&a)))
        } else {
            let v4 = "198.19.9.2:5020".parse().unwrap();
            (v4, v4)
        };
        let (_n, ok) = tcp_transfer_via(&a, &b, listen, to, 4 << 20);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        relay.join().unwrap();
        assert!(ok, "the transfer across the relay failed");
        let s = seen.lock().unwrap().clone();
        s
    }

    fn link_local(ns: &Netns, dev: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The long form says "tentative" until duplicate address
            // detection is done; the address cannot be bound before.
            let out = ns.ip(&["-6", "addr", "show", "dev", dev]);
            if let Some(a) = out.split_whitespace().find(|w| w.starts_with("fe80:")) {
                if !out.contains("tentative") {
                    return a.split('/').next().unwrap().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no link-local address on {dev}: {out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Inserts an 802.1Q tag (VLAN 10) after the MACs, shifting the offsets.
    fn tagged(f: &[u8], h: &VnetHdr) -> (Vec<u8>, VnetHdr) {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        t.extend_from_slice(&f[12..]);
        let mut h = *h;
        h.hdr_len += 4;
        h.csum_start += 4;
        (t, h)
    }

    /// Writes each super-frame into a TAP bridged with a TAP that has no
    /// offloads: the kernel segments on the way out. Returns, per frame,
    /// the segments it produced.
    fn kernel_segments(tag: &str, frames: &[(Vec<u8>, VnetHdr)]) -> Vec<Vec<Vec<u8>>> {
        let ns = Netns::new(unique(tag));
        let mut c = tap(&ns, "kin0", None, true);
        let mut d = tap(&ns, "kout0", None, false);
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        for dev in ["kin0", "kout0"] {
            ns.ip(&["link", "set", dev, "master", "br0"]);
        }
        // Frames of both directions go in at kin0: without learning, the
        // bridge floods them all to kout0.
        ns.ip(&[
            "link",
            "set",
            "kin0",
            "type",
            "bridge_slave",
            "learning",
            "off",
        ]);
        ns.ip(&["link", "set", "br0", "up"]);
        // No IPv6 chatter of the bridge's own on the ports.
        let _ = ns.ip(&["link", "set", "br0", "addrgenmode", "none"]);
        let mut all = Vec::new();
        smol::block_on(async {
            for (f, h) in frames {
                c.tx.send(Frame::with_vnet(f.clone(), Some(*h)))
                    .await
                    .unwrap();
                let want = if h.is_gso() {
                    (f.len() - usize::from(h.hdr_len)).div_ceil(usize::from(h.gso_size))
                } else {
                    1
                };
                let mut got = Vec::new();
                while got.len() < want {
                    let next = futures::future::select(
                        d.rx.next(),
                        Box::pin(smol::Timer::after(Duration::from_secs(5))),
                    )
                    .await;
                    match next {
                        futures::future::Either::Left((Some(Ok(seg)), _)) => {
                            // Only the segments of this super-frame (same
                            // L3/L4 header start).
                            let ours = seg.as_ref()[..12] == f[..12]
                                && if h.is_gso() {
                                    seg.len() > usize::from(h.hdr_len)
                                } else {
                                    seg.len() == f.len()
                                };
                            if ours {
                                got.push(seg.as_ref().to_vec());
                            }
                        }
                        _ => panic!("the kernel gave {} of {want} segments", got.len()),
                    }
                }
                all.push(got);
            }
        });
        all
    }

    fn compare(tag: &str, frames: Vec<(Vec<u8>, VnetHdr)>) {
        assert!(!frames.is_empty(), "{tag}: no super-frame captured");
        let kernel = kernel_segments("kseg", &frames);
        for ((f, h), theirs) in frames.iter().zip(&kernel) {
            let mut ours = Vec::new();
            offload::finish(Frame::new(f.clone()), h, |s| ours.push(s.as_ref().to_vec())).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{tag}: segment count");
            for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
                assert_eq!(
                    o,
                    t,
                    "{tag}: segment {i} of a {}-byte super-frame differs",
                    f.len()
                );
            }
        }
        let gso = frames.iter().filter(|(_, h)| h.is_gso()).count();
        assert!(
            gso > 0,
            "{tag}: no GSO super-frame among the {} captured: segmentation untested",
            frames.len()
        );
        eprintln!(
            "{tag}: {gso} super-frames segmented and {} checksums completed exactly as the kernel does",
            frames.len() - gso
        );
    }

    #[test]
    fn software_segmentation_matches_the_kernels() {
        if !root_or_skip("kernel_gso") {
            return;
        }
        let v4 = capture("g4", false);
        let v6 = capture("g6", true);
        let v4_tagged: Vec<_> = v4.iter().take(10).map(|(f, h)| tagged(f, h)).collect();
        let v6_tagged: Vec<_> = v6.iter().take(10).map(|(f, h)| tagged(f, h)).collect();
        compare("TCP/IPv4", v4);
        compare("TCP/IPv6", v6);
        compare("TCP/IPv4 in VLAN 10", v4_tagged);
        compare("TCP/IPv6 in VLAN 10", v6_tagged);
    }
}

/// A filter that counts frames longer than max frame (1522) in a counter
/// `super`; it declares `CAP_SUPER_FRAMES` when `caps` is 1.
fn counting_filter(caps: u32) -> String {
    let wat = format!(
        r#"(module
  (import "etherws" "counter_define" (func $define (param i32 i32) (result i32)))
  (import "etherws" "counter_add" (func $add (param i32 i64)))
  (memory (export "memory") 2)
  (data (i32.const 0) "super")
  (global $id (mut i32) (i32.const -1))
  (func (export "etherws_abi_version") (result i32) i32.const 1)
  (func (export "etherws_capabilities") (result i32) i32.const {caps})
  (func (export "etherws_frame_buffer") (result i32) i32.const 1024)
  (func (export "etherws_frame_capacity") (result i32) i32.const 66000)
  (func (export "etherws_init") (param i32) (result i32)
    (global.set $id (call $define (i32.const 0) (i32.const 5))) i32.const 0)
  (func (export "etherws_filter") (param $len i32) (param i32 i32 i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 1522))
      (then (call $add (global.get $id) (i64.const 1))))
    i32.const 0))"#
    );
    let p = scratch(&format!("count-super-{caps}.wat"));
    std::fs::write(&p, wat).unwrap();
    p.display().to_string()
}

/// `filter <dir> <name> counter super=N` of a report.
fn super_count(report: &str, dir: &str) -> u64 {
    report
        .lines()
        .find(|l| l.starts_with(&format!("filter {dir} ")) && l.contains("counter super="))
        .and_then(|l| l.rsplit('=').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {dir} super counter in\n{report}"))
}

#[test]
fn filters_that_declare_super_frames_see_them_whole_and_others_do_not() {
    if !root_or_skip("offload_filters") {
        return;
    }
    for caps in [1, 0] {
        let f = counting_filter(caps);
        let tag = if caps == 1 { "off1" } else { "off0" };
        let h = two_hosts(tag, &["--filter", &f, "--egress-filter", &f]);
        let c = client_with(&h.cli, "client", &[WS_URL], &["--filter", &f], 2);
        both_ways(&h, &format!("filters with caps={caps}"));
        let (srv, cli) = (h.server.report(), c.report());
        let counts = [
            super_count(&srv, "ingress"),
            super_count(&srv, "egress"),
            super_count(&cli, "ingress"),
        ];
        if caps == 1 {
            assert!(
                counts.iter().all(|&n| n > 0),
                "super-frames reach declaring filters whole: {counts:?}\n{srv}\n{cli}"
            );
            assert!(!srv.contains("drop_ingress_filter") && !srv.contains("drop_egress_filter"));
        } else {
            assert_eq!(counts, [0; 3], "others see wire frames only");
        }
    }
}
