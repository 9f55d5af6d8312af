//! End-to-end: running etherws as a service (issue 16): the control
//! socket with `etherws status`, `fdb` and `ctl`, Prometheus metrics
//! scraped by a real Prometheus, and the status page in a real headless
//! Chromium. Namespaces and 198.18.0.0/15 only.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use etherws_tls::testing::{write, Ca, KeyKind};
use serde_json::Value;

const UP: Duration = Duration::from_secs(30);
const SHA_SECRET: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

/// Runs the binary here (not in a namespace: the control socket is a
/// file); its stdout, or the failure with stderr.
fn etherws(args: &[&str]) -> Result<String, String> {
    let out = Command::new(BIN).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn status(sock: &str) -> Value {
    // The socket comes up once the node's listeners are.
    assert!(
        poll(UP, || Path::new(sock).exists()),
        "no control socket {sock}"
    );
    let out = etherws(&["status", "--json", "--control", sock]).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn link_ports(st: &Value) -> Vec<Value> {
    st["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "link")
        .cloned()
        .collect()
}

/// A GET on `addr` from inside `ns`: (status, body).
fn http_get(ns: &Netns, addr: &'static str, path: &str) -> (u16, String) {
    let path = path.to_string();
    ns.enter(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    })
}

/// Acceptance 2: status of a hub with a ws, a wss and a udp client;
/// kick; and a hub dialing another with `ctl port add` / `port del`.
#[test]
fn status_shows_every_client_and_ctl_acts_on_the_node() {
    if !root_or_skip("status") {
        return;
    }
    let d = files("status");
    let ca = Ca::new("status CA");
    let issued = ca.server(&["198.18.2.1"], KeyKind::EcdsaP256);
    let cert = s(&write(&d, "cert.pem", &issued.chain_pem));
    let key = s(&write(&d, "key.pem", &issued.key_pem));
    let ca_pem = s(&write(&d, "ca.pem", &ca.cert_pem()));
    let psk = s(&write(&d, "psk", "a key shared by the udp clients\n"));
    for f in [&key, &psk] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let htpasswd = s(&write(
        &d,
        "htpasswd",
        &format!("alice:{SHA_SECRET}\nbob:{SHA_SECRET}\n"),
    ));
    let secret = s(&write(&d, "secret", "secret\n"));
    let sock = s(&d.join("hub.sock"));
    let st = star("status", 3);
    let keep = ["--ping-interval", "1", "--ping-timeout", "5"];
    let mut args = vec![
        "--listen",
        "ws://0.0.0.0:8081/",
        "--listen",
        "wss://0.0.0.0:8443/",
        "--listen",
        "udp://0.0.0.0:9000",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--psk-file",
        &psk,
        "--htpasswd",
        &htpasswd,
        "--control",
        &sock,
    ];
    args.extend_from_slice(&keep);
    let server = start_server(&st.srv, &args);
    let mut alice_args = vec!["--user", "alice", "--password-file", &secret];
    alice_args.extend_from_slice(&keep);
    let alice = client_with(
        &st.clients[0],
        "alice",
        &["ws://198.18.1.1:8081/"],
        &alice_args,
        2,
    );
    let mut bob_args = vec!["--user", "bob", "--password-file", &secret, "--ca", &ca_pem];
    bob_args.extend_from_slice(&keep);
    let _bob = client_with(
        &st.clients[1],
        "bob",
        &["wss://198.18.2.1:8443/"],
        &bob_args,
        3,
    );
    let mut udp_args = vec!["--psk-file", psk.as_str()];
    udp_args.extend_from_slice(&keep);
    let _udp = client_with(
        &st.clients[2],
        "udp",
        &["udp://198.18.3.1:9000"],
        &udp_args,
        4,
    );
    for ns in &st.clients {
        assert!(ns.ping_until(SRV_TAP, UP), "{}", server.log());
    }
    // A known amount of traffic from alice.
    let (n, ok) = tcp_transfer(&st.clients[0], &st.srv, "198.19.0.1:5031", 2 << 20);
    assert!(ok, "{n}");
    // Wait until every link has a keepalive round trip (1 s of silence).
    let st0 = {
        let mut last = Value::Null;
        assert!(
            poll(UP, || {
                last = status(&sock);
                let links = link_ports(&last);
                links.len() == 3 && links.iter().all(|p| p["rtt_ms"].as_f64().is_some())
            }),
            "{last:#}"
        );
        last
    };
    let links = link_ports(&st0);
    let by = |pred: &dyn Fn(&Value) -> bool| links.iter().find(|p| pred(p)).cloned().unwrap();
    let a = by(&|p| p["user"] == "alice");
    let b = by(&|p| p["user"] == "bob");
    let u = by(&|p| p["transport"] == "udp");
    assert_eq!(a["transport"], "ws");
    assert_eq!(b["transport"], "wss");
    assert!(
        a["remote"].as_str().unwrap().starts_with("198.18.1.2:"),
        "{a}"
    );
    assert!(
        b["remote"].as_str().unwrap().starts_with("198.18.2.2:"),
        "{b}"
    );
    assert!(
        u["remote"].as_str().unwrap().starts_with("198.18.3.2:"),
        "{u}"
    );
    assert!(u["user"].is_null());
    let now = st0["now"].as_f64().unwrap();
    for p in [&a, &b, &u] {
        let since = p["since"].as_f64().unwrap();
        assert!(since > now - 120.0 && since <= now, "{p}");
        let last = p["last_rx"].as_f64().expect("a frame received");
        assert!(last <= now + 1.0 && last > now - 30.0, "{p}");
        assert!(p["rtt_ms"].as_f64().unwrap() > 0.0, "{p}");
        assert!(
            p["rx_frames"].as_u64().unwrap() > 0 && p["tx_frames"].as_u64().unwrap() > 0,
            "{p}"
        );
    }
    assert!(
        a["rx_bytes"].as_u64().unwrap() >= 2 << 20,
        "alice sent 2 MiB: {a}"
    );
    // The human view and the table.
    let human = etherws(&["status", "--control", &sock]).unwrap();
    assert!(
        human.contains("user: alice") && human.contains("keepalive rtt"),
        "{human}"
    );
    let fdb = etherws(&["fdb", "--control", &sock]).unwrap();
    assert!(fdb.lines().count() >= 4, "{fdb}");

    // kick alice: her link ends (and her client reconnects, as a new port).
    let out = etherws(&["ctl", "--control", &sock, "kick", "alice"]).unwrap();
    assert!(out.contains(&format!("ended port {}", a["id"])), "{out}");
    assert!(
        poll(UP, || link_ports(&status(&sock))
            .iter()
            .all(|p| p["id"] != a["id"])),
        "alice's port stayed"
    );
    assert!(
        alice.wait_log(UP, |l| l.matches("connected to").count() >= 2),
        "{}",
        alice.log()
    );
    let e = etherws(&["ctl", "--control", &sock, "kick", "nobody"]).unwrap_err();
    assert!(e.contains("no port \"nobody\""), "{e}");
    assert!(server.log().contains("ctl: kick alice"));
}

#[test]
fn ctl_port_add_joins_two_hubs_and_port_del_parts_them() {
    if !root_or_skip("port_add") {
        return;
    }
    let d = files("portadd");
    let sock = s(&d.join("a.sock"));
    // client a — hub A — hub B — client b, each hop its own veth.
    let base = unique("padd");
    let ca = Netns::new(format!("{base}-ca"));
    let ha = Netns::new(format!("{base}-ha"));
    let hb = Netns::new(format!("{base}-hb"));
    let cb = Netns::new(format!("{base}-cb"));
    veth_named(&ha, "veth1", "198.18.1.1/24", &ca, "veth0", "198.18.1.2/24");
    veth_named(&ha, "veth2", "198.18.2.1/24", &hb, "veth2", "198.18.2.2/24");
    veth_named(&hb, "veth3", "198.18.3.1/24", &cb, "veth0", "198.18.3.2/24");
    let hub = |ns: &Netns, extra: &[&str]| {
        let mut a = vec!["server", "--no-tap", "--listen", "0.0.0.0:8080"];
        a.extend_from_slice(extra);
        let p = ns.etherws("hub", &a);
        assert!(
            p.wait_log(UP, |l| l.contains("listening on")),
            "{}",
            p.log()
        );
        p
    };
    let hub_a = hub(&ha, &["--control", &sock]);
    let _hub_b = hub(&hb, &["--no-control"]);
    let _a = client_with(&ca, "a", &["ws://198.18.1.1:8080/"], &[], 2);
    let _b = client_with(&cb, "b", &["ws://198.18.3.1:8080/"], &[], 3);
    assert!(!ca.ping_once("198.19.0.3"), "the hubs are not joined yet");
    let out = etherws(&[
        "ctl",
        "--control",
        &sock,
        "port",
        "add",
        "ws://198.18.2.2:8080/",
    ])
    .unwrap();
    assert!(out.contains("dialing ws://198.18.2.2:8080/"), "{out}");
    assert!(ca.ping_until("198.19.0.3", UP), "{}", hub_a.log());
    assert!(cb.ping_until("198.19.0.2", UP));
    let uplink = link_ports(&status(&sock))
        .into_iter()
        .find(|p| p["remote"].as_str().unwrap().starts_with("198.18.2.2:8080"))
        .unwrap_or_else(|| panic!("no uplink port:\n{}", hub_a.log()));
    let id = uplink["id"].to_string();
    let out = etherws(&["ctl", "--control", &sock, "port", "del", &id]).unwrap();
    assert!(out.contains(&format!("port {id} ended")), "{out}");
    assert!(
        poll(UP, || !ca.ping_once("198.19.0.3")),
        "the hubs are still joined"
    );
    // And it is not redialled.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        link_ports(&status(&sock))
            .iter()
            .all(|p| !p["remote"].as_str().unwrap().starts_with("198.18.2.2:8080")),
        "redialled:\n{}",
        hub_a.log()
    );
}

/// Acceptance 3: a real Prometheus scrapes the node every second; PromQL
/// sees a port's rx bytes grow by a 10 MB transfer; promtool is content.
#[test]
fn prometheus_scrapes_the_metrics_and_promtool_checks_them() {
    if !root_or_skip("prometheus") {
        return;
    }
    let d = files("prom");
    let h = two_hosts("prom", &["--metrics", "127.0.0.1:9477", "--no-control"]);
    let _c = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP), "{}", h.server.log());
    let (status, body) = http_get(&h.srv, "127.0.0.1:9477", "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("etherws_port_rx_bytes_total{"), "{body}");
    assert!(body.contains("etherws_build_info{"), "{body}");
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(body.as_bytes())
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = write(
        &d,
        "prometheus.yml",
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: etherws\n    static_configs:\n      - targets: ['127.0.0.1:9477']\n",
    );
    let data = d.join("data");
    let (_prom, plog) = spawn_in(
        &h.srv,
        "prometheus",
        &[
            "prometheus",
            &format!("--config.file={}", s(&conf)),
            &format!("--storage.tsdb.path={}", s(&data)),
            "--web.listen-address=127.0.0.1:9090",
        ],
    );
    assert!(
        listening(&h.srv, "127.0.0.1:9090", UP),
        "prometheus did not start: {}",
        std::fs::read_to_string(&plog).unwrap_or_default()
    );
    let query = "/api/v1/query?query=etherws_port_rx_bytes_total%7Btransport%3D%22ws%22%7D";
    let value = || -> Option<f64> {
        let (_, body) = http_get(&h.srv, "127.0.0.1:9090", query);
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let mut before = 0.0;
    assert!(
        poll(UP, || value().map(|v| before = v).is_some()),
        "no sample scraped: {}",
        std::fs::read_to_string(&plog).unwrap_or_default()
    );
    let (n, ok) = tcp_transfer(&h.cli, &h.srv, "198.19.0.1:5032", 10 << 20);
    assert!(ok, "{n}");
    let mut after = 0.0;
    assert!(
        poll(UP, || value().is_some_and(|v| {
            after = v;
            v >= before + (10 << 20) as f64
        })),
        "PromQL: rx bytes {before} -> {after}"
    );
    eprintln!("prometheus: etherws_port_rx_bytes_total {{transport=\"ws\"}} {before} -> {after}");
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> Option<std::process::Output>;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> Option<std::process::Output> {
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(input).ok()?;
        child.wait_with_output().ok()
    }
}

/// Runs headless Chromium in `ns` on `url`: the DOM once the page's
/// script ran for a few (virtual) seconds, and a screenshot at `png`.
fn chromium(ns: &Netns, url: &str, png: Option<&Path>) -> String {
    let profile = scratch(&unique("chromium"));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, "chromium"]).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        "--virtual-time-budget=6000",
        &format!("--user-data-dir={}", s(&profile)),
    ]);
    match png {
        Some(p) => cmd.arg(format!("--screenshot={}", s(p))),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("running chromium");
    let _ = std::fs::remove_dir_all(profile);
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rx bytes the page shows for `port`, from the DOM.
fn page_rx(dom: &str, port: u64) -> Option<u64> {
    let row = dom.split(&format!("data-port=\"{port}\"")).nth(1)?;
    let cell = row.split("class=\"rx-bytes\" data-bytes=\"").nth(1)?;
    cell.split('"').next()?.parse().ok()
}

/// Acceptance 4: the page, in a real Chromium, shows the hub's ports and
/// its numbers move with traffic.
#[test]
fn the_status_page_shows_the_ports_and_moves_with_traffic_in_chromium() {
    if !root_or_skip("page") {
        return;
    }
    let h = two_hosts("page", &["--metrics", "127.0.0.1:9478", "--no-control"]);
    let _c = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP), "{}", h.server.log());
    let url = "http://127.0.0.1:9478/";
    let dom = chromium(&h.srv, url, None);
    assert!(dom.contains("class=\"port\" data-port=\"1\""), "{dom}");
    assert!(dom.contains("class=\"port\" data-port=\"2\""), "{dom}");
    assert!(dom.contains("ws://198.18.0.2:"), "{dom}");
    let before = page_rx(&dom, 2).expect("rx bytes of port 2 on the page");
    let (n, ok) = tcp_transfer(&h.cli, &h.srv, "198.19.0.1:5033", 5 << 20);
    assert!(ok, "{n}");
    let dom = chromium(&h.srv, url, None);
    let after = page_rx(&dom, 2).unwrap();
    assert!(
        after >= before + (5 << 20),
        "the page showed {before} then {after} bytes"
    );
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    chromium(&h.srv, url, Some(&shot));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("status page screenshot: {}", shot.display());
}

/// The status of `sock` with what differs between two equal nodes
/// (times, ports' addresses, counters of traffic) left out.
fn shape(st: &Value) -> Value {
    serde_json::json!({
        "role": st["role"],
        "name": st["name"],
        "listeners": st["listeners"],
        "settings": st["settings"],
        "filters": st["filters"].as_array().unwrap().iter()
            .map(|f| serde_json::json!([f["chain"], f["name"]])).collect::<Vec<_>>(),
        "counters": st["counters"].as_object().unwrap().keys().collect::<Vec<_>>(),
        "ports": st["ports"].as_array().unwrap().iter()
            .map(|p| serde_json::json!([p["kind"], p["transport"]])).collect::<Vec<_>>(),
    })
}

/// Acceptance 5: a config file equal to a command line makes the same
/// node; `check-config` passes it, and fails a mismatched key, a bad
/// htpasswd line and a filter that does not load, each in one line.
#[test]
fn a_config_file_makes_the_node_its_flags_make_and_check_config_tells_what_is_wrong() {
    if !root_or_skip("config") {
        return;
    }
    let d = files("config");
    let filter = s(&write(&d, "pass.wasm", ""));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("filters/library/wasm/pass.wasm"),
        &filter,
    )
    .unwrap();
    let psk = s(&write(&d, "psk", "sixteen bytes or more of key\n"));
    std::fs::set_permissions(&psk, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let htpasswd = s(&write(&d, "htpasswd", &format!("alice:{SHA_SECRET}\n")));
    let flags_sock = s(&d.join("flags.sock"));
    let file_sock = s(&d.join("file.sock"));
    // (start_server gives --listen 0.0.0.0:8080, TAP and address first.)
    let flags = [
        "--listen",
        "udp://0.0.0.0:9000",
        "--psk-file",
        &psk,
        "--htpasswd",
        &htpasswd,
        "--mtu",
        "1400",
        "--storm-limit",
        "500",
        "--hub",
        "--move-guard",
        "3",
        "--filter",
        &filter,
        "--ping-interval",
        "7",
    ];
    let conf = write(
        &d,
        "server.toml",
        &format!(
            "role = \"server\"\nlisten = [\"0.0.0.0:8080\", \"udp://0.0.0.0:9000\"]\n\
             psk-file = \"{psk}\"\nhtpasswd = \"{htpasswd}\"\nmtu = 1400\nstorm-limit = 500\n\
             hub = true\nmove-guard = 3\nfilter = [\"{filter}\"]\nping-interval = 7\n\
             tap = \"ethws0\"\naddress = \"198.19.0.1/24\"\ncontrol = \"{file_sock}\"\n"
        ),
    );
    let a = two_hosts("cfga", &[&flags[..], &["--control", &flags_sock]].concat());
    let b_ns = Netns::new(unique("cfgb"));
    let b = b_ns.etherws("server-file", &["server", "--config", &s(&conf)]);
    assert!(
        b.wait_log(UP, |l| l.matches("listening on").count() == 2),
        "{}",
        b.log()
    );
    let (sa, sb) = (status(&flags_sock), status(&file_sock));
    assert_eq!(shape(&sa), shape(&sb), "flags:\n{sa:#}\nfile:\n{sb:#}");
    assert_eq!(sa["settings"]["mtu"], "1400");
    assert_eq!(sa["settings"]["hub"], "true");
    // A flag on the command line wins over the file's.
    let c_ns = Netns::new(unique("cfgc"));
    let c_sock = s(&d.join("c.sock"));
    let c = c_ns.etherws(
        "server-file-mtu",
        &[
            "server",
            "--config",
            &s(&conf),
            "--mtu",
            "1300",
            "--control",
            &c_sock,
        ],
    );
    assert!(
        c.wait_log(UP, |l| l.contains("listening on")),
        "{}",
        c.log()
    );
    assert_eq!(status(&c_sock)["settings"]["mtu"], "1300");
    let _ = (&a, &b, &c);

    // check-config: all well...
    let ok = etherws(&["check-config", &s(&conf)]);
    assert!(ok.is_ok(), "{ok:?}");
    assert!(ok.unwrap().contains("configuration OK"));
    // ...a key that is not the certificate's...
    let ca = Ca::new("config CA");
    let one = ca.server(&["198.18.0.1"], KeyKind::EcdsaP256);
    let other = ca.server(&["198.18.0.1"], KeyKind::EcdsaP256);
    let cert = s(&write(&d, "cert.pem", &one.chain_pem));
    let wrong_key = s(&write(&d, "other.key", &other.key_pem));
    let e = etherws(&[
        "check-config",
        "server",
        "--no-tap",
        "--listen",
        "0.0.0.0:18443",
        "--tls-cert",
        &cert,
        "--tls-key",
        &wrong_key,
    ])
    .unwrap_err();
    let line = e
        .lines()
        .find(|l| l.starts_with("error: TLS"))
        .unwrap_or_else(|| panic!("{e}"));
    assert!(line.contains("does not belong to the certificate"), "{e}");
    // ...a bad htpasswd line...
    let bad = s(&write(&d, "bad.htpasswd", "alice:{SHA}short\n"));
    let e = etherws(&[
        "check-config",
        "server",
        "--no-tap",
        "--listen",
        "0.0.0.0:18444",
        "--htpasswd",
        &bad,
    ])
    .unwrap_err();
    let line = e
        .lines()
        .find(|l| l.starts_with("error: TLS, htpasswd"))
        .unwrap_or_else(|| panic!("{e}"));
    assert!(
        line.contains("line 1") && line.contains("user alice"),
        "{e}"
    );
    // ...and a filter that does not load.
    let broken = s(&write(&d, "broken.wat", "(module this is not wasm"));
    let e = etherws(&[
        "check-config",
        "server",
        "--no-tap",
        "--listen",
        "0.0.0.0:18445",
        "--filter",
        &broken,
    ])
    .unwrap_err();
    let line = e
        .lines()
        .find(|l| l.starts_with("error: filters"))
        .unwrap_or_else(|| panic!("{e}"));
    assert!(line.contains("broken.wat"), "{e}");
    // A port in use is found too (a's server holds 8080 in its namespace:
    // here, on the host, a listener of our own).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let e = etherws(&[
        "check-config",
        "server",
        "--no-tap",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .unwrap_err();
    assert!(e.contains("Address already in use"), "{e}");
}

/// `etherws passwd` writes lines the server takes; `--version` names the
/// revision.
#[test]
fn passwd_makes_users_the_server_accepts_and_version_names_the_revision() {
    if !root_or_skip("passwd") {
        return;
    }
    let d = files("passwd");
    let file = d.join("htpasswd");
    let pw = s(&write(&d, "pw", "correct horse\n"));
    etherws(&[
        "passwd",
        &s(&file),
        "carol",
        "--password-file",
        &pw,
        "--cost",
        "4",
    ])
    .unwrap();
    etherws(&[
        "passwd",
        &s(&file),
        "dave",
        "--password-file",
        &pw,
        "--cost",
        "4",
    ])
    .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("carol:$2y$04$") && text.contains("\ndave:$2y$"),
        "{text}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let h = two_hosts("passwd", &["--htpasswd", &s(&file)]);
    let mut c = once(
        &h.cli,
        "carol",
        WS_URL,
        &["--user", "carol", "--password-file", &pw],
    );
    assert!(
        c.wait_log(UP, |l| l.contains("connected to")),
        "{}",
        c.log()
    );
    c.stop();
    etherws(&["passwd", "-D", &s(&file), "carol"]).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("carol") && text.contains("dave:"), "{text}");
    let v = etherws(&["--version"]).unwrap();
    let rev = String::from_utf8_lossy(
        &Command::new("git")
            .args(["rev-parse", "--short=9", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    assert!(v.contains(&format!("({rev}")), "{v} does not name {rev}");
}

/// Scope 6: the TAP joins an existing bridge (a "VM" behind it is reached
/// through the tunnel), takes IPv6 and several addresses, and runs the
/// --up and --down hooks with the device in their environment.
#[test]
fn the_tap_joins_a_bridge_takes_ipv6_addresses_and_runs_hooks() {
    if !root_or_skip("bridge") {
        return;
    }
    let d = files("bridge");
    let base = unique("br");
    let srv = Netns::new(format!("{base}-s"));
    let cli = Netns::new(format!("{base}-c"));
    let vm = Netns::new(format!("{base}-v"));
    veth(&srv, "198.18.0.1/24", &cli, "198.18.0.2/24");
    srv.ip(&["link", "add", "br0", "type", "bridge"]);
    srv.ip(&["link", "set", "br0", "up"]);
    // The "VM": a namespace on the server's bridge.
    run(
        "ip",
        &[
            "link", "add", "vmport", "netns", &srv.name, "type", "veth", "peer", "name", "eth0",
            "netns", &vm.name,
        ],
    );
    srv.ip(&["link", "set", "vmport", "master", "br0"]);
    srv.ip(&["link", "set", "vmport", "up"]);
    vm.ip(&["addr", "add", "198.19.0.50/24", "dev", "eth0"]);
    vm.ip(&["addr", "add", "fd00:e7e::50/64", "dev", "eth0", "nodad"]);
    vm.ip(&["link", "set", "eth0", "up"]);
    let marks = s(&d.join("hooks"));
    let up = format!("echo \"$ETHERWS_EVENT $ETHERWS_DEVICE\" >> {marks}");
    let server = srv.etherws(
        "server",
        &[
            "server",
            "--listen",
            "0.0.0.0:8080",
            "--tap",
            "ethws0",
            "--bridge",
            "br0",
            "--no-control",
            "--up",
            &up,
            "--down",
            &up,
        ],
    );
    assert!(
        server.wait_log(UP, |l| l.contains("listening on")),
        "{}",
        server.log()
    );
    assert!(server.log().contains("in bridge br0"), "{}", server.log());
    let master = srv.run_in(&["cat", "/sys/class/net/ethws0/master/uevent"]);
    assert!(master.contains("INTERFACE=br0"), "{master}");
    let mut client = client_with(
        &cli,
        "client",
        &["ws://198.18.0.1:8080/"],
        &[
            "--address",
            "fd00:e7e::2/64",
            "--address",
            "198.19.0.3/24",
            "--no-control",
        ],
        2,
    );
    // The VM, behind the server's bridge, over IPv4 and IPv6.
    assert!(
        cli.ping_until("198.19.0.50", UP),
        "{}\n{}",
        client.log(),
        server.log()
    );
    assert!(cli.ping_until("198.19.0.3", UP));
    let six = poll(UP, || {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &cli.name,
                "ping",
                "-6",
                "-c1",
                "-W1",
                "fd00:e7e::50",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        six,
        "no IPv6 through the tunnel:\n{}",
        cli.ip(&["addr", "show", "ethws0"])
    );
    let addrs = cli.ip(&["addr", "show", "ethws0"]);
    assert!(
        addrs.contains("198.19.0.2/24")
            && addrs.contains("198.19.0.3/24")
            && addrs.contains("fd00:e7e::2/64"),
        "{addrs}"
    );
    client.stop();
    let mut server = server;
    server.stop();
    let text = std::fs::read_to_string(&marks).unwrap_or_default();
    assert_eq!(text, "up ethws0\ndown ethws0\n", "{}", server.log());
}
