//! The ws transport over loopback, no root needed: handshakes (the spec's
//! vectors), one frame per message both ways against tungstenite as an
//! independent peer, text/runt/oversize, close codes (the spec's vectors),
//! the close a detaching node sends, and Pong merging.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use etherws_core::{Frame, Node, Registry};
use etherws_ws::codec::{self, Decoder, Event, Role};
use etherws_ws::{Ws, WsConfig};
use futures::{SinkExt, StreamExt};
use tungstenite::Message;
use url::Url;

mod common;

use common::{wait, T};

/// A server on 127.0.0.1 (ephemeral port) serving `path`.
fn server(path: &str) -> (String, Node) {
    let (addr, node, _) = common::serve(Ws::default(), &format!("ws://127.0.0.1:0{path}"));
    (addr, node)
}

fn connect_raw(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

fn tungstenite_client(addr: &str, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let (ws, resp) =
        tungstenite::client::client(format!("ws://{addr}{path}"), connect_raw(addr)).unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

fn eth(dst: [u8; 6], src: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// Reads frames until a binary message arrives.
fn next_binary(ws: &mut tungstenite::WebSocket<TcpStream>) -> Vec<u8> {
    loop {
        match ws.read().expect("link dropped") {
            Message::Binary(b) => return b.to_vec(),
            _ => continue,
        }
    }
}

#[test]
fn frames_cross_one_per_message_between_tungstenite_clients() {
    let (addr, node) = server("/");
    let mut a = tungstenite_client(&addr, "/");
    let mut b = tungstenite_client(&addr, "/");
    assert!(wait(|| node.ports().len() == 2));
    // Every size from the smallest frame to max frame, each as one message.
    for len in [14, 15, 60, 61, 125, 126, 127, 1000, 1514, 1522] {
        let f = eth([0xff; 6], 0xa, len);
        a.send(Message::binary(f.clone())).unwrap();
        assert_eq!(next_binary(&mut b), f, "{len}");
    }
    // Text, runt and oversize are dropped and counted; the link stays.
    a.send(Message::text("hello")).unwrap();
    a.send(Message::binary(vec![0u8; 5])).unwrap();
    a.send(Message::binary(eth([0xff; 6], 0xa, 1523))).unwrap();
    a.send(Message::binary(eth([0xff; 6], 0xa, 20000))).unwrap();
    let f = eth([0xff; 6], 0xa, 64);
    a.send(Message::binary(f.clone())).unwrap();
    assert_eq!(next_binary(&mut b), f);
    let ports = node.ports();
    let pa = &ports[0].counts;
    use etherws_core::DropReason::*;
    assert_eq!(
        (pa.drops(NotAFrame), pa.drops(Runt), pa.drops(Oversize)),
        (1, 1, 2)
    );
    assert_eq!(pa.rx_frames, 10 + 4);
}

#[test]
fn our_client_talks_to_a_tungstenite_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        #[allow(clippy::result_large_err)] // tungstenite's callback signature
        let cb = |req: &tungstenite::handshake::server::Request,
                  mut resp: tungstenite::handshake::server::Response| {
            // Offloads are on by default, so the client offers the vnet
            // subprotocol first; this server, like any peer without the
            // capability, picks plain frames.
            let offered = req.headers().get("sec-websocket-protocol").unwrap();
            assert_eq!(offered, "etherws.vnet.v1, etherws.v1");
            assert!(req
                .headers()
                .get("user-agent")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("etherws/"));
            resp.headers_mut()
                .insert("sec-websocket-protocol", "etherws.v1".parse().unwrap());
            assert_eq!(
                req.headers().get("x-tenant").unwrap(),
                "blue",
                "a -H header"
            );
            Ok(resp)
        };
        let mut ws = tungstenite::accept_hdr(s, cb).unwrap();
        // Echo binary messages until the client closes.
        loop {
            match ws.read() {
                Ok(Message::Binary(b)) => ws.send(Message::Binary(b)).unwrap(),
                Ok(Message::Close(c)) => {
                    // Reading on sends tungstenite's reply, then ends.
                    while ws.read().is_ok() {}
                    return c.map(|c| u16::from(c.code));
                }
                Ok(_) => {}
                Err(e) => panic!("server: {e}"),
            }
        }
    });
    smol::block_on(async {
        let url = Url::parse(&format!("ws://{addr}/x")).unwrap();
        let cfg = WsConfig {
            client: etherws_ws::ClientConfig {
                headers: vec![("X-Tenant".into(), "blue".into())],
                proxy: etherws_ws::ProxyChoice::Direct,
                ..Default::default()
            },
            ..WsConfig::default()
        };
        let params = cfg.link_params();
        let reg = Registry::new().with(Ws::new(cfg));
        let mut link = reg.connect(&url, &params).await.unwrap();
        assert!(!link.offload, "the server chose plain frames");
        for len in [14usize, 1522, 200] {
            let f = eth([2, 0, 0, 0, 0, 1], 2, len);
            link.tx.send(Frame::new(f.clone())).await.unwrap();
            let back = link.rx.next().await.unwrap().unwrap();
            assert_eq!(back.as_ref(), &f[..]);
        }
        link.tx.close().await.unwrap();
        // The server's echo of our Close ends the stream.
        assert!(link.rx.next().await.is_none());
    });
    assert_eq!(server.join().unwrap(), Some(codec::close::GOING_AWAY));
}

fn expand_request(spec: &str) -> Vec<u8> {
    let mut s = spec.replace("\\r\\n", "\r\n");
    while let Some(i) = s.find("{pad:") {
        let j = s[i..].find('}').unwrap() + i;
        let n: usize = s[i + 5..j].parse().unwrap();
        s.replace_range(i..=j, &format!("X-Pad: {}\r\n", "a".repeat(n)));
    }
    s.into_bytes()
}

#[test]
fn handshake_vectors_get_their_status() {
    let (addr, _node) = server("/tunnel");
    let src = include_str!("../../../spec/vectors/ws-handshake.txt");
    let mut n = 0;
    for line in src
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (name, rest) = line.split_once(char::is_whitespace).unwrap();
        let (status, req) = rest.trim_start().split_once(char::is_whitespace).unwrap();
        let status: u16 = status.parse().unwrap();
        let req = expand_request(req.trim_start());
        let mut s = connect_raw(&addr);
        s.write_all(&req).unwrap();
        let mut resp = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the head (a refusal is then closed by the server).
        while !resp.windows(4).any(|w| w == b"\r\n\r\n") {
            let k = s.read(&mut buf).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(k > 0, "{name}: closed without an answer");
            resp.extend_from_slice(&buf[..k]);
        }
        let head = String::from_utf8_lossy(&resp).to_string();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: expected {status}, got {head}"
        );
        if status == 426 {
            assert!(
                head.contains("Sec-WebSocket-Version: 13\r\n"),
                "{name}: {head}"
            );
        }
        if status != 101 {
            // Then the server closes the connection.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
        n += 1;
    }
    assert!(n >= 15, "too few handshake vectors");
}

/// A valid upgrade by hand (mask 0 frames follow).
fn raw_upgrade(addr: &str) -> TcpStream {
    let mut s = connect_raw(addr);
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1);
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    s
}

/// Reads server frames until its Close; returns the Close's code.
fn read_close(s: &mut TcpStream) -> Result<Option<u16>, String> {
    let mut d = Decoder::new(Role::Client, 100_000, 100_000);
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let k = s.read(&mut buf).map_err(|e| e.to_string())?;
        if k == 0 {
            return Err("closed without a Close frame".into());
        }
        pending.extend_from_slice(&buf[..k]);
        loop {
            let (n, ev) = d.decode(&pending).map_err(|v| v.to_string())?;
            pending.drain(..n);
            match ev {
                Some(Event::Close(c)) => return Ok(c.map(|(code, _)| code)),
                Some(_) => continue,
                None => break,
            }
        }
    }
}

fn hex_pieces(spec: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in spec {
        if let Some(n) = p.strip_prefix("zeros:") {
            out.extend(std::iter::repeat_n(0u8, n.parse().unwrap()));
        } else {
            assert!(p.len() % 2 == 0, "odd hex {p}");
            out.extend(
                (0..p.len() / 2).map(|i| u8::from_str_radix(&p[2 * i..2 * i + 2], 16).unwrap()),
            );
        }
    }
    out
}

#[test]
fn close_vectors_get_their_codes() {
    let (addr, node) = server("/");
    let src = include_str!("../../../spec/vectors/ws-close.txt");
    let mut n = 0;
    for line in src
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, code) = (f[0], f[1]);
        let want = if code == "none" {
            None
        } else {
            Some(code.parse::<u16>().unwrap())
        };
        let mut s = raw_upgrade(&addr);
        s.write_all(&hex_pieces(&f[2..])).unwrap();
        let got = read_close(&mut s).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
        n += 1;
    }
    assert!(n >= 20, "too few close vectors");
    // None of them crashed the server or left a port behind.
    assert!(wait(|| node.ports().is_empty()), "{:?}", node.ports());
    let mut ok = tungstenite_client(&addr, "/");
    ok.send(Message::binary(eth([0xff; 6], 1, 60))).unwrap();
}

#[test]
fn a_detaching_node_sends_close_1001_and_waits_for_the_answer() {
    let (addr, node) = server("/");
    let mut ws = tungstenite_client(&addr, "/");
    assert!(wait(|| node.ports().len() == 1));
    node.detach_all();
    match ws.read() {
        Ok(Message::Close(Some(c))) => assert_eq!(u16::from(c.code), codec::close::GOING_AWAY),
        other => panic!("expected Close 1001, got {other:?}"),
    }
    // Reading on sends tungstenite's reply; the server then closes.
    while ws.read().is_ok() {}
    // tungstenite answers the Close; the server then ends the connection.
    assert!(wait(|| node.live_ports() == 0));
}

#[test]
fn pings_get_pongs_and_never_reach_the_node() {
    let (addr, node) = server("/");
    let mut ws = tungstenite_client(&addr, "/");
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(wait(|| node.ports().len() == 1));
    assert_eq!(node.ports()[0].counts.rx_frames, 0);
}

#[test]
fn unanswered_pings_merge_while_the_peer_does_not_read() {
    // 20 MB of Pings from a peer that does not read: the server keeps at
    // most one Pong pending and stops queueing them at its write buffer's
    // high mark, so the link stays up (the memory bound is measured end to
    // end, RSS included, in tests/robustness.rs).
    let (addr, node) = server("/");
    let mut s = raw_upgrade(&addr);
    s.set_write_timeout(Some(T)).unwrap();
    let mut batch = Vec::new();
    let mut ping = Vec::new();
    codec::encode(&mut ping, codec::op::PING, &[7u8; 125], Some([1, 2, 3, 4]));
    while batch.len() < 1 << 20 {
        batch.extend_from_slice(&ping);
    }
    for i in 0..20 {
        s.write_all(&batch)
            .unwrap_or_else(|e| panic!("batch {i}: the server stopped reading: {e}"));
    }
    // Then a frame: once the node has it, the server has read every Ping.
    let mut marker = Vec::new();
    codec::encode(
        &mut marker,
        codec::op::BINARY,
        &eth([0xff; 6], 0x42, 60),
        Some([1, 2, 3, 4]),
    );
    s.write_all(&marker).unwrap();
    assert!(wait(|| node.ports().len() == 1));
    // Now read the Pongs until the server has read everything and nothing
    // more comes.
    let mut d = Decoder::new(Role::Client, 2000, 2000);
    let mut buf = vec![0u8; 65536];
    let mut pongs = 0usize;
    let mut pending = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let k = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(_) if node.ports()[0].counts.rx_frames == 1 => break,
            Err(_) if Instant::now() < deadline => continue,
            Err(e) => panic!("the server never read the frame behind the Pings: {e}"),
        };
        pending.extend_from_slice(&buf[..k]);
        loop {
            let (n, ev) = d.decode(&pending).unwrap();
            pending.drain(..n);
            match ev {
                Some(Event::Pong(_)) => pongs += 1,
                Some(other) => panic!("unexpected {other:?}"),
                None => break,
            }
        }
    }
    let sent = 20 * batch.len() / ping.len();
    assert!(pongs >= 1, "no Pong at all");
    // Pongs merge: while the server cannot write, the Pings it reads are
    // answered by one owed Pong, the newest (spec §5). Every Ping gets its
    // own Pong only while writing flows (into the socket buffers before we
    // read, and after). Without merging, all of them would come back.
    eprintln!("{pongs} Pongs for {sent} Pings");
    assert!(
        pongs * 2 < sent,
        "{pongs} Pongs for {sent} Pings: they did not merge"
    );
    assert_eq!(node.ports().len(), 1, "the link stays up");
}

#[test]
fn a_port_ended_by_a_bug_closes_with_1011_and_the_rest_go_on() {
    use etherws_core::{FilterChain, FilterContext, NoFilter, NodeConfig, Verdict};
    /// Panics on frames from station 0x66.
    struct Buggy;
    impl FilterChain for Buggy {
        fn is_empty(&self) -> bool {
            false
        }
        fn filter(&self, _: &FilterContext, f: &mut Frame) -> Verdict {
            assert!(f.as_ref()[11] != 0x66, "a bug");
            Verdict::Pass
        }
    }
    let node = Node::with_filters(
        NodeConfig::for_mtu(1500),
        std::sync::Arc::new(Buggy),
        std::sync::Arc::new(NoFilter),
    );
    let (addr, node, _) = common::serve_node(node, Ws::default(), "ws://127.0.0.1:0/");
    let mut victim = tungstenite_client(&addr, "/");
    let mut other = tungstenite_client(&addr, "/");
    let mut third = tungstenite_client(&addr, "/");
    assert!(wait(|| node.ports().len() == 3));
    victim
        .send(Message::binary(eth([0xff; 6], 0x66, 60)))
        .unwrap();
    match victim.read() {
        Ok(Message::Close(Some(c))) => assert_eq!(u16::from(c.code), codec::close::INTERNAL),
        other => panic!("expected Close 1011, got {other:?}"),
    }
    let f = eth([0xff; 6], 0x11, 60);
    other.send(Message::binary(f.clone())).unwrap();
    assert_eq!(next_binary(&mut third), f);

    // The same bug on the way out (an egress filter, in the writer): the
    // port whose writer panicked gets 1011 too.
    let node = Node::with_filters(
        NodeConfig::for_mtu(1500),
        std::sync::Arc::new(NoFilter),
        std::sync::Arc::new(Buggy),
    );
    let (addr, node, _) = common::serve_node(node, Ws::default(), "ws://127.0.0.1:0/");
    let mut sender = tungstenite_client(&addr, "/");
    let mut receiver = tungstenite_client(&addr, "/");
    assert!(wait(|| node.ports().len() == 2));
    sender
        .send(Message::binary(eth([0xff; 6], 0x66, 60)))
        .unwrap();
    match receiver.read() {
        Ok(Message::Close(Some(c))) => assert_eq!(u16::from(c.code), codec::close::INTERNAL),
        other => panic!("expected Close 1011 from the writer's panic, got {other:?}"),
    }
    assert!(wait(|| node.ports().len() == 1), "only that port ended");
}
