//! wss://, mutual TLS, htpasswd authentication, back-off, keepalive,
//! limits, origin, X-Forwarded-For and HTTP CONNECT, over loopback (no
//! root). Certificates are made at test time (etherws_tls::testing).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eth, serve, wait, T};
use etherws_core::{Frame, Link, LinkParams, Node, NodeConfig, Registry, TransportError};
use etherws_tls::testing::{write, Ca, KeyKind};
use etherws_ws::auth::{Gate, Htpasswd};
use etherws_ws::proxy::Proxy;
use etherws_ws::tls::{ClientTlsFiles, ServerTlsFiles, TlsClient, TlsServer};
use etherws_ws::{ClientConfig, Keepalive, ProxyChoice, ServerConfig, Ws, WsConfig};
use futures::{SinkExt, StreamExt};
use url::Url;

fn dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("etherws-secure-{}-{tag}", std::process::id()))
}

/// Server TLS from a certificate for 127.0.0.1 signed by `ca`.
fn server_tls(ca: &Ca, kind: KeyKind, tag: &str, client_ca: Option<&Ca>) -> Arc<TlsServer> {
    let d = dir(tag);
    let issued = ca.server(&["127.0.0.1", "server.test"], kind);
    let files = ServerTlsFiles {
        cert: write(&d, "cert.pem", &issued.chain_pem),
        key: write(&d, "key.pem", &issued.key_pem),
        client_ca: client_ca.map(|c| write(&d, "client-ca.pem", &c.cert_pem())),
    };
    Arc::new(TlsServer::new(files).unwrap())
}

fn wss_server(tls: Arc<TlsServer>, server: ServerConfig) -> (String, Node) {
    let cfg = WsConfig {
        server: ServerConfig {
            tls: Some(tls),
            ..server
        },
        ..WsConfig::default()
    };
    let (addr, node, _) = serve(Ws::new(cfg), "wss://127.0.0.1:0/");
    (addr, node)
}

fn client(tls: ClientTlsFiles, credentials: Option<(&str, &str)>) -> Registry {
    let cfg = WsConfig {
        client: ClientConfig {
            tls: Some(Arc::new(TlsClient::new(tls).unwrap())),
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            proxy: ProxyChoice::Direct,
            ..ClientConfig::default()
        },
        ..WsConfig::default()
    };
    Registry::new().with(Ws::new(cfg))
}

fn ca_files(ca: &Ca, tag: &str) -> ClientTlsFiles {
    ClientTlsFiles {
        ca: Some(write(&dir(tag), "ca.pem", &ca.cert_pem())),
        ..ClientTlsFiles::default()
    }
}

fn connect(reg: &Registry, url: &str) -> Result<Link, TransportError> {
    smol::block_on(reg.connect(&Url::parse(url).unwrap(), &LinkParams::default()))
}

/// Two links from `reg` to `url`: a frame sent on one arrives on the other
/// through the server's switch.
fn frames_cross(reg: &Registry, url: &str) {
    let mut a = connect(reg, url).expect("first link");
    let mut b = connect(reg, url).expect("second link");
    smol::block_on(async {
        for len in [60, 1514] {
            let f = eth(0xa, len);
            a.tx.send(Frame::new(f.clone())).await.unwrap();
            let got = b.rx.next().await.unwrap().unwrap();
            assert_eq!(got.as_ref(), &f[..]);
        }
    });
}

#[test]
fn wss_carries_frames_with_each_key_kind() {
    let ca = Ca::new("test CA");
    for (i, kind) in [KeyKind::EcdsaP256, KeyKind::Ed25519, KeyKind::Rsa]
        .into_iter()
        .enumerate()
    {
        let tag = format!("kind{i}");
        let (addr, _node) = wss_server(server_tls(&ca, kind, &tag, None), ServerConfig::default());
        frames_cross(
            &client(ca_files(&ca, &tag), None),
            &format!("wss://{addr}/"),
        );
    }
}

#[test]
fn a_wrong_ca_is_refused_naming_the_failure_and_insecure_connects() {
    let ca = Ca::new("right CA");
    let other = Ca::new("other CA");
    let (addr, _node) = wss_server(
        server_tls(&ca, KeyKind::EcdsaP256, "wrongca", None),
        ServerConfig::default(),
    );
    let url = format!("wss://{addr}/");
    let e = connect(&client(ca_files(&other, "wrongca-c"), None), &url)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("certificate verification failed") && e.contains("UnknownIssuer"),
        "{e}"
    );
    let insecure = ClientTlsFiles {
        insecure: true,
        ..ClientTlsFiles::default()
    };
    assert!(connect(&client(insecure, None), &url).is_ok());
    // A name the certificate does not carry is refused; --sni fixes it.
    let by_name = format!("wss://localhost:{}/", addr.rsplit(':').next().unwrap());
    let e = connect(&client(ca_files(&ca, "wrongca-n"), None), &by_name)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the server's certificate is for 127.0.0.1, server.test, not localhost"),
        "{e}"
    );
    let sni = ClientTlsFiles {
        sni: Some("server.test".into()),
        ..ca_files(&ca, "wrongca-s")
    };
    assert!(connect(&client(sni, None), &by_name).is_ok());
}

#[test]
fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let tls = server_tls(&ca, KeyKind::EcdsaP256, "mtls", Some(&clients));
    let (addr, node) = wss_server(tls, ServerConfig::default());
    let url = format!("wss://{addr}/");
    let e = connect(&client(ca_files(&ca, "mtls-none"), None), &url)
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let d = dir("mtls-c");
    let stranger = ca.client("stranger", KeyKind::EcdsaP256);
    let wrong = ClientTlsFiles {
        cert: Some(write(&d, "s.pem", &stranger.chain_pem)),
        key: Some(write(&d, "s.key", &stranger.key_pem)),
        ..ca_files(&ca, "mtls-c")
    };
    assert!(
        connect(&client(wrong, None), &url).is_err(),
        "a certificate of another CA"
    );
    let alice = clients.client("alice", KeyKind::Ed25519);
    let right = ClientTlsFiles {
        cert: Some(write(&d, "a.pem", &alice.chain_pem)),
        key: Some(write(&d, "a.key", &alice.key_pem)),
        ..ca_files(&ca, "mtls-c")
    };
    let _link = connect(&client(right, None), &url).expect("with the right certificate");
    assert!(
        wait(|| node.ports().len() == 1),
        "refused handshakes made no port"
    );
}

#[test]
fn certificates_are_reloaded_for_new_connections() {
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let d = dir("reload");
    let issued = first.server(&["127.0.0.1"], KeyKind::EcdsaP256);
    let files = ServerTlsFiles {
        cert: write(&d, "cert.pem", &issued.chain_pem),
        key: write(&d, "key.pem", &issued.key_pem),
        client_ca: None,
    };
    let tls = Arc::new(TlsServer::new(files).unwrap());
    let ws = Ws::new(WsConfig {
        server: ServerConfig {
            tls: Some(tls),
            ..ServerConfig::default()
        },
        ..WsConfig::default()
    });
    let (addr, _node, _) = serve(ws.clone(), "wss://127.0.0.1:0/");
    let url = format!("wss://{addr}/");
    let trusts_second = client(ca_files(&second, "reload-c"), None);
    let kept = connect(&client(ca_files(&first, "reload-k"), None), &url).unwrap();
    assert!(connect(&trusts_second, &url).is_err());
    let issued = second.server(&["127.0.0.1"], KeyKind::EcdsaP256);
    write(&d, "cert.pem", &issued.chain_pem);
    write(&d, "key.pem", &issued.key_pem);
    let (done, failed) = ws.reload();
    assert!(failed.is_empty() && !done.is_empty(), "{failed:?}");
    assert!(
        connect(&trusts_second, &url).is_ok(),
        "new certificate in use"
    );
    // The link made before the reload still works.
    drop(kept);
}

/// `secret` hashed as bcrypt (cost 5, `$2y$` as htpasswd -B writes it),
/// {SHA} and SHA-512-crypt.
const BCRYPT: &str = "$2y$05$UAfze34JEoG/nQgC2pj1SOOHT4lHMbfTmtCGQZILBBkcIijQAFjKe";
const SHA: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
const SHA512: &str = "$6$rglXgNcdUGdkLgt8$btFmiGeEowUyQYSg/h9jsR9cBmzSBJeKZiTtf98OGpay6lZPoLv9RX5e6MItsW2rmXDfbssygQPyqHhGMpJmk/";

fn auth_server(tag: &str, users: &str) -> (String, Node, Arc<Gate>, PathBuf) {
    let path = write(&dir(tag), "htpasswd", users);
    let gate = Arc::new(Gate::with_htpasswd(Htpasswd::load(&path).unwrap()));
    let ws = Ws::new(WsConfig {
        server: ServerConfig {
            gate: gate.clone(),
            ..ServerConfig::default()
        },
        ..WsConfig::default()
    });
    let (addr, node, _) = serve(ws, "ws://127.0.0.1:0/");
    (addr, node, gate, path)
}

fn ws_client(credentials: Option<(&str, &str)>) -> Registry {
    Registry::new().with(Ws::new(WsConfig {
        client: ClientConfig {
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            proxy: ProxyChoice::Direct,
            ..ClientConfig::default()
        },
        ..WsConfig::default()
    }))
}

#[test]
fn htpasswd_users_get_in_and_others_get_401_and_no_port() {
    let users = format!("alice:{BCRYPT}\nbob:{SHA}\ncarol:{SHA512}\n");
    let (addr, node, _ws, _) = auth_server("auth", &users);
    let url = format!("ws://{addr}/");
    let mut links = Vec::new();
    for user in ["alice", "bob", "carol"] {
        links.push(
            connect(&ws_client(Some((user, "secret"))), &url)
                .unwrap_or_else(|e| panic!("{user}: {e}")),
        );
    }
    assert!(wait(|| node.ports().len() == 3));
    for (user, pass) in [("alice", "wrong"), ("bob", "Secret"), ("mallory", "secret")] {
        let e = connect(&ws_client(Some((user, pass))), &url)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("401") && e.contains("wrong user or password"),
            "{user}: {e}"
        );
    }
    let e = connect(&ws_client(None), &url).unwrap_err().to_string();
    assert!(e.contains("401") && e.contains("--user"), "{e}");
    assert_eq!(node.ports().len(), 3, "failed attempts made no port");
}

#[test]
fn repeated_failures_from_one_address_are_slowed_down() {
    let (addr, _node, _ws, _) = auth_server("backoff", &format!("bob:{SHA}\n"));
    let url = format!("ws://{addr}/");
    let timed = |creds: (&str, &str)| {
        let t = Instant::now();
        let r = connect(&ws_client(Some(creds)), &url);
        (r.is_ok(), t.elapsed())
    };
    for _ in 0..3 {
        assert!(!timed(("bob", "wrong")).0);
    }
    // The fourth attempt, right password included, waits 250 ms first.
    let (ok, took) = timed(("bob", "secret"));
    assert!(ok);
    assert!(took >= Duration::from_millis(250), "{took:?}");
    // Success forgave bob's failures.
    let (ok, took) = timed(("bob", "secret"));
    assert!(ok && took < Duration::from_millis(250), "{took:?}");
    // Three more failures: now two attempts at once from this address get
    // one check (after its delay) and one 429.
    for _ in 0..3 {
        assert!(!timed(("bob", "wrong")).0);
    }
    let both: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || connect(&ws_client(Some(("bob", "secret"))), &url))
        })
        .collect();
    let results: Vec<_> = both.into_iter().map(|t| t.join().unwrap()).collect();
    let refused: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("429"), "{refused:?}");
}

#[test]
fn a_changed_htpasswd_file_takes_effect_and_removed_users_are_closed_with_1008() {
    let (addr, node, gate, path) = auth_server("change", &format!("alice:{SHA}\nbob:{SHA}\n"));
    let url = format!("ws://{addr}/");
    // Alice, connected through a raw client to see the close code.
    let tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    req.headers_mut().insert(
        "authorization",
        etherws_ws::auth::basic_header("alice", "secret")
            .parse()
            .unwrap(),
    );
    let (mut alice, _) = tungstenite::client::client(req, tcp).expect("alice gets in");
    assert!(wait(|| node.ports().len() == 1));
    // Bob's password changes; the file is noticed on the next attempt.
    let new_sha = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="; // "password"
    std::fs::write(&path, format!("alice:{SHA}\nbob:{new_sha}\n")).unwrap();
    assert!(connect(&ws_client(Some(("bob", "secret"))), &url).is_err());
    assert!(connect(&ws_client(Some(("bob", "password"))), &url).is_ok());
    // Alice is removed: the file's change (which the server looks for
    // once a second) closes her link with 1008, no SIGHUP needed.
    std::fs::write(&path, format!("bob:{new_sha}\n")).unwrap();
    let line = gate.refresh().expect("the change is seen");
    assert!(line.contains("1 links of removed users closed"), "{line}");
    loop {
        match alice.read() {
            Ok(tungstenite::Message::Close(Some(c))) => {
                assert_eq!(u16::from(c.code), 1008);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no Close 1008: {e}"),
        }
    }
}

fn keepalive(ms: u64) -> Option<Keepalive> {
    Some(Keepalive {
        interval: Duration::from_millis(ms),
        timeout: Duration::from_millis(ms),
    })
}

#[test]
fn the_server_drops_a_silent_peer_and_keeps_one_that_answers_pings() {
    let cfg = WsConfig {
        keepalive: keepalive(300),
        ..WsConfig::default()
    };
    let (addr, node, _) = serve(Ws::new(cfg), "ws://127.0.0.1:0/");
    // One that reads (tungstenite answers Pings while reading).
    let tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (mut lively, _) = tungstenite::client::client(format!("ws://{addr}/"), tcp).unwrap();
    let reader = std::thread::spawn(move || {
        let t = Instant::now();
        let mut pings = 0;
        while t.elapsed() < Duration::from_secs(3) {
            if let Ok(tungstenite::Message::Ping(_)) = lively.read() {
                pings += 1;
            }
        }
        (pings, lively)
    });
    // One that completes the handshake, then neither reads nor writes.
    let mut silent = TcpStream::connect(&addr).unwrap();
    silent
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    assert!(wait(|| node.ports().len() == 2));
    let t = Instant::now();
    assert!(wait(|| node.ports().len() == 1), "the silent peer stayed");
    let took = t.elapsed();
    let (pings, _lively) = reader.join().unwrap();
    assert!(pings >= 2, "{pings} pings");
    assert_eq!(node.ports().len(), 1, "the answering peer was dropped");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn the_client_notices_a_server_that_stopped_answering() {
    // A server that completes the handshake, then goes silent.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let ws = tungstenite::accept(s).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        drop(ws);
    });
    let cfg = WsConfig {
        keepalive: keepalive(300),
        client: ClientConfig {
            proxy: ProxyChoice::Direct,
            ..ClientConfig::default()
        },
        ..WsConfig::default()
    };
    let params = cfg.link_params();
    let reg = Registry::new().with(Ws::new(cfg));
    let node = Node::new(NodeConfig::for_mtu(1500));
    let url = Url::parse(&format!("ws://{addr}/")).unwrap();
    let link = smol::block_on(reg.connect(&url, &params)).unwrap();
    let t = Instant::now();
    let n = node.clone();
    std::thread::spawn(move || smol::block_on(common::run_link(&n, link)));
    assert!(wait(|| node.ports().len() == 1));
    assert!(
        wait(|| node.ports().is_empty()),
        "the dead server was not noticed"
    );
    let took = t.elapsed();
    // Interval 300 ms + timeout 300 ms; the bound only catches "never".
    assert!(took < Duration::from_secs(5), "noticed after {took:?}");
    frozen.join().unwrap();
}

#[test]
fn limits_answer_503_and_a_slowloris_cannot_hold_the_listener() {
    let cfg = WsConfig {
        handshake_timeout: Duration::from_secs(30),
        server: ServerConfig {
            max_clients: 1,
            max_pending: 3,
            ..ServerConfig::default()
        },
        ..WsConfig::default()
    };
    let (addr, node, refused) = serve(Ws::new(cfg), "ws://127.0.0.1:0/");
    let url = format!("ws://{addr}/");
    let _first = connect(&ws_client(None), &url).unwrap();
    assert!(wait(|| node.ports().len() == 1));
    let e = connect(&ws_client(None), &url).unwrap_err().to_string();
    assert!(e.contains("503"), "{e}");
    // Three connections that never finish their handshake fill the
    // pending slots; the next is closed at once, and counted.
    let silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    assert!(wait(|| !refused.is_empty())); // the 503 above
    while refused.try_recv().is_ok() {}
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra.set_read_timeout(Some(T)).unwrap();
    // Closed at once: end of stream (or a reset), never a read timeout.
    let t = Instant::now();
    match extra.read(&mut [0u8; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("not closed at once: {other:?} after {:?}", t.elapsed()),
    }
    let e = smol::block_on(refused.recv()).unwrap().to_string();
    assert!(e.contains("already in their handshake"), "{e}");
    drop(silent);
    drop(_first);
    assert!(wait(|| node.ports().is_empty()));
    assert!(connect(&ws_client(None), &url).is_ok(), "served again");
}

#[test]
fn origins_and_forwarded_addresses() {
    let cfg = WsConfig {
        server: ServerConfig {
            origins: vec!["https://ok.example".into()],
            trust_proxy: true,
            ..ServerConfig::default()
        },
        ..WsConfig::default()
    };
    let (addr, node, _) = serve(Ws::new(cfg), "ws://127.0.0.1:0/");
    let attempt = |headers: &[(&'static str, &str)]| {
        let mut req =
            tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/"))
                .unwrap();
        for (n, v) in headers {
            req.headers_mut().insert(*n, v.parse().unwrap());
        }
        match tungstenite::client::client(req, TcpStream::connect(&addr).unwrap()) {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                Err(r.status().as_u16())
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(
        attempt(&[("origin", "https://evil.example")]).err(),
        Some(403)
    );
    let _ok = attempt(&[
        ("origin", "https://ok.example"),
        ("x-forwarded-for", "198.18.7.7, 198.18.5.5"),
    ])
    .unwrap();
    assert!(wait(|| node.ports().len() == 1));
    // A client's own X-Forwarded-For line first, the proxy's (with a port)
    // last: the proxy's entry counts.
    let mut req =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/"))
            .unwrap();
    req.headers_mut()
        .append("x-forwarded-for", "203.0.113.7".parse().unwrap());
    req.headers_mut()
        .append("x-forwarded-for", "198.18.6.6:4444".parse().unwrap());
    let _two = tungstenite::client::client(req, TcpStream::connect(&addr).unwrap()).unwrap();
    assert!(wait(|| node.ports().len() == 2));
    assert!(
        node.ports()
            .iter()
            .any(|p| p.name.contains("198.18.6.6 (via")),
        "{:?}",
        node.ports()
    );
    let names: Vec<String> = node.ports().iter().map(|p| p.name.clone()).collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("198.18.5.5 (via 127.0.0.1:")),
        "{names:?}"
    );
}

/// A minimal HTTP CONNECT proxy for one tunnel: checks the request (and
/// `Proxy-Authorization` when `auth` is set), then relays both ways.
fn connect_proxy(auth: Option<&'static str>) -> (String, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        if let Some(a) = auth {
            if !head.contains(&format!("Proxy-Authorization: {a}\r\n")) {
                c.write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                )
                .unwrap();
                return head;
            }
        }
        let target = head.split_whitespace().nth(1).unwrap().to_string();
        let mut s = TcpStream::connect(&target).unwrap();
        c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut s2);
            let _ = s2.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut s, &mut c);
        let _ = c.shutdown(std::net::Shutdown::Write);
        head
    });
    (addr, h)
}

fn via(proxy: &str) -> Registry {
    Registry::new().with(Ws::new(WsConfig {
        client: ClientConfig {
            proxy: ProxyChoice::Via(Proxy::parse(proxy).unwrap()),
            ..ClientConfig::default()
        },
        ..WsConfig::default()
    }))
}

#[test]
fn http_connect_proxies_with_and_without_auth() {
    let (addr, node, _) = serve(Ws::default(), "ws://127.0.0.1:0/");
    let url = format!("ws://{addr}/");
    let (p, h) = connect_proxy(None);
    let link = connect(&via(&p), &url).expect("through the proxy");
    assert!(wait(|| node.ports().len() == 1));
    drop(link);
    let head = h.join().unwrap();
    assert!(
        head.starts_with(&format!("CONNECT {addr} HTTP/1.1\r\n")),
        "{head}"
    );
    // With credentials (user "u", password "p w").
    let (p, h) = connect_proxy(Some("Basic dTpwIHc="));
    let _link = connect(&via(&format!("http://u:p%20w@{p}")), &url).expect("with proxy auth");
    drop(_link);
    h.join().unwrap();
    let (p, h) = connect_proxy(Some("Basic dTpwIHc="));
    let e = connect(&via(&p), &url).unwrap_err().to_string();
    assert!(e.contains("407"), "{e}");
    h.join().unwrap();
    // wss through the proxy: TLS end to end (the proxy relays bytes only).
    let ca = Ca::new("proxy test CA");
    let (waddr, wnode) = wss_server(
        server_tls(&ca, KeyKind::EcdsaP256, "proxy-wss", None),
        ServerConfig::default(),
    );
    let (p, h) = connect_proxy(None);
    let reg = Registry::new().with(Ws::new(WsConfig {
        client: ClientConfig {
            tls: Some(Arc::new(
                TlsClient::new(ca_files(&ca, "proxy-wss-c")).unwrap(),
            )),
            proxy: ProxyChoice::Via(Proxy::parse(&p).unwrap()),
            ..ClientConfig::default()
        },
        ..WsConfig::default()
    }));
    let link = connect(&reg, &format!("wss://{waddr}/")).expect("wss through the proxy");
    assert!(wait(|| wnode.ports().len() == 1));
    drop(link);
    assert!(h.join().unwrap().starts_with(&format!("CONNECT {waddr} ")));
}

#[test]
fn a_per_address_limit_answers_503_to_that_address_only() {
    let cfg = WsConfig {
        server: ServerConfig {
            max_clients_per_ip: 2,
            trust_proxy: true,
            ..ServerConfig::default()
        },
        ..WsConfig::default()
    };
    let (addr, node, _) = serve(Ws::new(cfg), "ws://127.0.0.1:0/");
    let from = |ip: &'static str| {
        let mut req =
            tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/"))
                .unwrap();
        req.headers_mut()
            .insert("x-forwarded-for", ip.parse().unwrap());
        match tungstenite::client::client(req, TcpStream::connect(&addr).unwrap()) {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                Err(r.status().as_u16())
            }
            Err(e) => panic!("{e}"),
        }
    };
    let _a1 = from("198.18.9.1").unwrap();
    let _a2 = from("198.18.9.1").unwrap();
    assert_eq!(from("198.18.9.1").err(), Some(503));
    let _b = from("198.18.9.2").expect("another address is not limited");
    assert!(wait(|| node.ports().len() == 3));
}
