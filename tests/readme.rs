//! README's commands, word for word (issue 16, scope 7): every `etherws
//! server`, `client`, `passwd` and `status` line of its code blocks, the
//! nginx server block and the configuration file are run in namespaces,
//! with only test addresses, certificates and paths substituted. A README
//! that drifts from the program fails here.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use etherws_tls::testing::{write, Ca, KeyKind};

const UP: Duration = Duration::from_secs(30);

/// The README's fenced code blocks, each a list of lines with `\`
/// continuations joined.
fn blocks() -> Vec<Vec<String>> {
    let text = include_str!("../README.md");
    let mut out = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None => cur = Some(Vec::new()),
            }
            continue;
        }
        if let Some(b) = cur.as_mut() {
            let l = line.trim_end();
            if let Some(head) = l.strip_suffix('\\') {
                pending.push_str(head.trim_end());
                pending.push(' ');
                continue;
            }
            pending.push_str(l.trim_start());
            b.push(std::mem::take(&mut pending));
        }
    }
    out
}

/// The block whose lines contain `marker`.
fn block(marker: &str) -> Vec<String> {
    blocks()
        .into_iter()
        .find(|b| b.iter().any(|l| l.contains(marker)))
        .unwrap_or_else(|| panic!("README has no block with {marker:?}"))
}

/// The test's files, for README's /etc/etherws/ paths.
struct Files {
    dir: PathBuf,
}

fn files(tag: &str) -> Files {
    let dir = scratch(&unique(tag));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("README CA");
    let issued = ca.server(&["198.18.0.1", "vpn.example.org"], KeyKind::EcdsaP256);
    write(&dir, "fullchain.pem", &issued.chain_pem);
    let key = write(&dir, "privkey.pem", &issued.key_pem);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    write(&dir, "ca.pem", &ca.cert_pem());
    let pw = write(&dir, "password", "secret\n");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let psk = write(&dir, "psk", "a pre-shared key of some length\n");
    std::fs::set_permissions(&psk, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    Files { dir }
}

impl Files {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// README's line with test paths and addresses; `etherws` is the
    /// binary under test, and each node gets a control socket of its own.
    fn substitute(&self, line: &str, label: &str) -> String {
        let d = self.dir.display().to_string();
        let repo = env!("CARGO_MANIFEST_DIR");
        let node = line.starts_with("etherws server") || line.starts_with("etherws client");
        let mut l = line
            .replace("/etc/etherws/", &format!("{d}/"))
            .replace(
                "filters/library/wasm/",
                &format!("{repo}/filters/library/wasm/"),
            )
            .replace("/tmp/out.pcap", &format!("{d}/out.pcap"))
            .replace("host1", "198.18.0.1")
            .replace("vpn.example.org", "198.18.0.1");
        if let Some(rest) = l.strip_prefix("etherws ") {
            l = format!("{BIN} {rest}");
        }
        if node {
            l.push_str(&format!(" --control {d}/{label}.sock"));
        }
        if line.starts_with("etherws client") && (l.contains("wss://") || l.contains("quic://")) {
            l.push_str(&format!(" --ca {d}/ca.pem"));
        }
        if line.starts_with("etherws status") {
            l.push_str(&format!(" --control {d}/server.sock"));
        }
        l
    }
}

/// Starts `cmd` (a shell line) in `ns`; killed on drop.
fn spawn(ns: &Netns, label: &str, cmd: &str) -> (KillOnDrop, PathBuf) {
    let log = scratch(&format!("{}.log", unique(label)));
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "sh",
            "-c",
            &format!("exec {cmd}"),
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (KillOnDrop(Some(child)), log)
}

/// Runs `cmd` in `ns` to its end; its output, or the failure.
fn run_line(ns: &Netns, cmd: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sh", "-c", cmd])
        .env("ETHERWS_PASSWORD", "secret")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "README's `{cmd}` failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn wait_for(log: &Path, what: &str) -> bool {
    poll(UP, || {
        std::fs::read_to_string(log).is_ok_and(|l| l.contains(what))
    })
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Two hosts: host1 (198.18.0.1) and host2 (198.18.0.2).
fn hosts(tag: &str) -> (Netns, Netns) {
    let base = unique(tag);
    let h1 = Netns::new(format!("{base}-1"));
    let h2 = Netns::new(format!("{base}-2"));
    veth(&h1, "198.18.0.1/24", &h2, "198.18.0.2/24");
    (h1, h2)
}

/// Runs a block's `hostN# ...` lines: servers and clients started (and
/// waited for), other commands run to their end.
fn run_host_block(tag: &str, marker: &str) {
    let f = files(tag);
    let (h1, h2) = hosts(tag);
    let mut running = Vec::new();
    for line in block(marker) {
        let (host, cmd) = match line.split_once("# ") {
            Some((h, c)) if h.starts_with("host") => (h.to_string(), c.to_string()),
            _ => continue,
        };
        let ns = match host.as_str() {
            "host1" => &h1,
            "host2" => &h2,
            // host3 runs the example program etherws-custom over SSH:
            // tested by examples/custom-transport/tests.
            _ => continue,
        };
        let label = if cmd.starts_with("etherws server") {
            "server"
        } else {
            "client"
        };
        let cmd = f.substitute(&cmd, label);
        if cmd.contains(" server ") {
            let (p, log) = spawn(ns, label, &cmd);
            assert!(wait_for(&log, "listening on"), "`{cmd}`:\n{}", read(&log));
            running.push((p, log));
        } else if cmd.contains(" client ") {
            let (p, log) = spawn(ns, label, &cmd);
            assert!(wait_for(&log, "connected to"), "`{cmd}`:\n{}", read(&log));
            running.push((p, log));
        } else if let Some(target) = cmd.strip_prefix("ping ") {
            assert!(ns.ping_until(target.trim(), UP), "README's ping {target}");
        } else {
            run_line(ns, &cmd);
        }
    }
    assert!(
        running.len() >= 2,
        "the block started {} nodes",
        running.len()
    );
    // Whatever the block pinged or not: the TAPs are one segment.
    assert!(
        h2.ping_until("198.18.1.1", UP),
        "{}",
        running
            .iter()
            .map(|(_, l)| read(l))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn readme_usage_block_runs_as_written() {
    if !root_or_skip("readme_usage") {
        return;
    }
    run_host_block("rdu", "host2# ping 198.18.1.1");
}

#[test]
fn readme_transports_block_runs_as_written() {
    if !root_or_skip("readme_transports") {
        return;
    }
    run_host_block("rdt", "host2# etherws client udp://");
}

/// The internet section: passwd, certificate (test-made), server,
/// client, status, metrics.
#[test]
fn readme_internet_walk_runs_as_written() {
    if !root_or_skip("readme_internet") {
        return;
    }
    let f = files("rdi");
    let (h1, h2) = hosts("rdi");
    let mut running = Vec::new();
    let mut saw = (false, false);
    for line in block("etherws passwd /etc/etherws/htpasswd alice") {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let label = if line.starts_with("etherws client") {
            "client"
        } else {
            "server"
        };
        let cmd = f.substitute(&line, label);
        if line.starts_with("etherws server") {
            let (p, log) = spawn(&h1, "server", &cmd);
            assert!(
                wait_for(&log, "listening on wss://"),
                "`{cmd}`:\n{}",
                read(&log)
            );
            running.push((p, log));
        } else if line.starts_with("etherws client") {
            let (p, log) = spawn(&h2, "client", &cmd);
            assert!(
                wait_for(&log, "connected to wss://"),
                "`{cmd}`:\n{}",
                read(&log)
            );
            running.push((p, log));
            assert!(h2.ping_until("198.18.1.1", UP), "{}", read(&running[0].1));
        } else if line.starts_with("etherws status") {
            let out = run_line(&h1, &cmd);
            assert!(out.contains("user: alice"), "{out}");
            saw.0 = true;
        } else if line.starts_with("curl") {
            let out = run_line(&h1, &cmd);
            assert!(
                out.contains("etherws_port_rx_bytes_total{") && out.contains("user=\"alice\""),
                "{out}"
            );
            saw.1 = true;
        } else {
            run_line(&h1, &cmd);
        }
    }
    assert_eq!(
        saw,
        (true, true),
        "the block lost its status or metrics line"
    );
    assert!(read(&f.dir.join("htpasswd")).starts_with("alice:$2y$"));
}

/// The nginx server block, run by the real nginx in front of README's
/// etherws line; the internet section's client reaches it.
#[test]
fn readme_nginx_block_runs_as_written() {
    if !root_or_skip("readme_nginx") {
        return;
    }
    let f = files("rdn");
    let (h1, h2) = hosts("rdn");
    let b = block("proxy_pass http://127.0.0.1:8080;");
    run_line(
        &h1,
        &format!(
            "ETHERWS_PASSWORD=secret {BIN} passwd {} alice",
            f.path("htpasswd")
        ),
    );
    let server_line = b
        .iter()
        .find_map(|l| l.strip_prefix("# etherws server"))
        .expect("the block names its etherws server line");
    let server = f.substitute(
        &format!("etherws server{server_line} --tap ethws0 --address 198.18.1.1/24"),
        "server",
    );
    let (_s, slog) = spawn(&h1, "server", &server);
    assert!(
        wait_for(&slog, "listening on ws://127.0.0.1:8080/"),
        "{}",
        read(&slog)
    );
    let site: String = b
        .iter()
        .filter(|l| !l.starts_with('#'))
        .map(|l| f.substitute(l, "nginx"))
        .collect::<Vec<_>>()
        .join("\n");
    let prefix = f.dir.display().to_string();
    let conf = write(
        &f.dir,
        "nginx.conf",
        &format!(
            "daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n\
             client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
             fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
             {site}\n}}\n"
        ),
    );
    let (_nginx, nlog) = spawn_in(
        &h1,
        "nginx",
        &["nginx", "-p", &prefix, "-c", &conf.display().to_string()],
    );
    assert!(
        listening(&h1, "198.18.0.1:443", UP),
        "nginx: {}",
        read(&nlog)
    );
    let client = block("etherws client wss://vpn.example.org/ --user alice")
        .into_iter()
        .find(|l| l.starts_with("etherws client wss://"))
        .unwrap();
    let client = f.substitute(&client, "client");
    let (_c, clog) = spawn(&h2, "client", &client);
    assert!(
        h2.ping_until("198.18.1.1", UP),
        "{}\n{}\n{}",
        read(&clog),
        read(&slog),
        read(&nlog)
    );
    // etherws saw the client's address, as nginx forwarded it.
    assert!(
        read(&slog).contains("198.18.0.2 (via 127.0.0.1:"),
        "{}",
        read(&slog)
    );
}

/// The filters block's two servers, each with a client.
#[test]
fn readme_filters_block_runs_as_written() {
    if !root_or_skip("readme_filters") {
        return;
    }
    let f = files("rdf");
    let lines: Vec<String> = block("--filter filters/library/wasm/ethertype.wasm")
        .into_iter()
        .filter(|l| l.starts_with("etherws server"))
        .collect();
    assert_eq!(lines.len(), 2);
    for (i, line) in lines.iter().enumerate() {
        let (h1, h2) = hosts(&format!("rdf{i}"));
        let cmd = f.substitute(line, &format!("server{i}"));
        let (_s, slog) = spawn(&h1, "server", &cmd);
        assert!(
            wait_for(&slog, "listening on ws://0.0.0.0:8080/"),
            "`{cmd}`:\n{}",
            read(&slog)
        );
        assert!(read(&slog).contains("filter"), "{}", read(&slog));
        let client = f.substitute(
            "etherws client ws://host1:8080/ --tap ethws0",
            &format!("client{i}"),
        );
        let (_c, clog) = spawn(&h2, "client", &client);
        assert!(wait_for(&clog, "connected to"), "{}", read(&clog));
    }
}

/// The configuration file of "Running as a service".
#[test]
fn readme_config_file_runs_as_written() {
    if !root_or_skip("readme_config") {
        return;
    }
    let f = files("rdc");
    let (h1, _h2) = hosts("rdc");
    let toml: Vec<String> = block("metrics = \"127.0.0.1:9477\"")
        .into_iter()
        .map(|l| f.substitute(&l, "x"))
        .collect();
    let conf = write(&f.dir, "server.toml", &(toml.join("\n") + "\n"));
    write(
        &f.dir,
        "htpasswd",
        "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n",
    );
    let check = run_line(&h1, &format!("{BIN} check-config {}", conf.display()));
    assert!(check.contains("configuration OK"), "{check}");
    let (_s, slog) = spawn(
        &h1,
        "server",
        &format!(
            "{BIN} server --config {} --control {}",
            conf.display(),
            f.path("s.sock")
        ),
    );
    assert!(wait_for(&slog, "listening on quic://"), "{}", read(&slog));
    assert!(
        wait_for(&slog, "metrics on http://127.0.0.1:9477/metrics"),
        "{}",
        read(&slog)
    );
}
