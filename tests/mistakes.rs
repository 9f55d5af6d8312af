//! End-to-end: the mistakes a user makes get one clear line and the right
//! exit code (issue 16, scope 8), each through the binary.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::*;
use etherws_tls::testing::{write, Ca, KeyKind};

const UP: Duration = Duration::from_secs(30);
const SHA_SECRET: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

/// Runs the binary in `ns` as user nobody: (exit code, stderr).
fn as_nobody(ns: &Netns, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            BIN,
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary here: (exit code, stderr).
fn run_here(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_tap_name_in_use_or_of_another_device_is_named_and_explained() {
    if !root_or_skip("tap_names") {
        return;
    }
    let h = two_hosts("tapname", &[]);
    let mut second = h.srv.etherws(
        "second",
        &[
            "server",
            "--listen",
            "0.0.0.0:8090",
            "--tap",
            "ethws0",
            "--no-control",
        ],
    );
    assert_eq!(second.wait_exit(UP), Some(1), "{}", second.log());
    assert!(
        second
            .log()
            .contains("TAP device ethws0 exists and is in use"),
        "{}",
        second.log()
    );
    let mut veth = h.srv.etherws(
        "veth",
        &[
            "server",
            "--listen",
            "0.0.0.0:8091",
            "--tap",
            "veth0",
            "--no-control",
        ],
    );
    assert_eq!(veth.wait_exit(UP), Some(1), "{}", veth.log());
    assert!(
        veth.log()
            .contains("veth0 is a network interface of another kind, not a TAP"),
        "{}",
        veth.log()
    );
    // Neither message is the kernel's bare errno.
    for p in [&second, &veth] {
        assert!(
            !p.log().contains("os error 16") && !p.log().contains("os error 22"),
            "{}",
            p.log()
        );
    }
}

#[test]
fn tls_mistakes_are_said_in_words() {
    if !root_or_skip("tls_words") {
        return;
    }
    let d = files("tlswords");
    let ca = Ca::new("words CA");
    let issued = ca.server(&["198.18.0.1", "etherws.test"], KeyKind::EcdsaP256);
    let cert = s(&write(&d, "cert.pem", &issued.chain_pem));
    let key = s(&write(&d, "key.pem", &issued.key_pem));
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ca_pem = s(&write(&d, "ca.pem", &ca.cert_pem()));
    let h = two_hosts("tlswords", &["--tls-cert", &cert, "--tls-key", &key]);
    // A name the certificate does not have.
    let mut c = once(
        &h.cli,
        "name",
        "wss://198.18.0.1:8080/",
        &["--ca", &ca_pem, "--sni", "vpn.example.org"],
    );
    assert_eq!(c.wait_exit(UP), Some(1), "{}", c.log());
    let log = c.log();
    assert!(
        log.contains(
            "the server's certificate is for 198.18.0.1, etherws.test, not vpn.example.org"
        ),
        "{log}"
    );
    assert!(!log.contains("NotValidForNameContext"), "{log}");
    // A key this user cannot read, and a file that is no key.
    let (code, err) = as_nobody(
        &h.srv,
        &[
            "check-config",
            "server",
            "--no-tap",
            "--listen",
            "0.0.0.0:18450",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot be read by this user"), "{err}");
    assert!(!err.contains("expected a PEM"), "{err}");
    let junk = s(&write(&d, "junk.key", "not a key\n"));
    let (code, err) = run_here(&[
        "check-config",
        "server",
        "--no-tap",
        "--listen",
        "0.0.0.0:18451",
        "--tls-cert",
        &cert,
        "--tls-key",
        &junk,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("holds no private key (expected a PEM RSA, ECDSA or Ed25519 key)"),
        "{err}"
    );
}

#[test]
fn listen_and_url_slips_get_one_clear_line() {
    if !root_or_skip("slips") {
        return;
    }
    let ns = Netns::new(unique("slips"));
    // `:18080` is every address.
    let mut p = ns.etherws(
        "colon",
        &["server", "--no-tap", "--no-control", "--listen", ":18080"],
    );
    assert!(
        p.wait_log(UP, |l| l.contains("listening on ws://0.0.0.0:18080/")),
        "{}",
        p.log()
    );
    p.stop();
    let (code, err) = run_here(&["server", "--no-tap", "--no-control", "--listen", "::1:8081"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs brackets: [::1]:8081"), "{err}");
    let (code, err) = run_here(&["client", "198.18.0.1:8080"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("did you mean ws://198.18.0.1:8080/"), "{err}");
    let (code, err) = run_here(&["client", "ws:/198.18.0.1:8080"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("two slashes"), "{err}");
    // A port below 1024 without the capability: the port shown, the
    // capability named.
    let d = files("slips");
    let ca = Ca::new("slips CA");
    let issued = ca.server(&["198.18.0.1"], KeyKind::EcdsaP256);
    let cert = s(&write(&d, "cert.pem", &issued.chain_pem));
    let key = s(&write(&d, "key.pem", &issued.key_pem));
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, err) = as_nobody(
        &ns,
        &[
            "server",
            "--no-tap",
            "--no-control",
            "--listen",
            "0.0.0.0:443",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot listen on wss://0.0.0.0:443/") && err.contains("CAP_NET_BIND_SERVICE"),
        "{err}"
    );
    // `exec:` is the example program's.
    let (code, err) = run_here(&["client", "exec:cat", "--tap", "ethws9"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("etherws-custom"), "{err}");
}

#[test]
fn a_refused_login_is_final_and_closes_say_why() {
    if !root_or_skip("final401") {
        return;
    }
    let d = files("final401");
    let htpasswd = write(
        &d,
        "htpasswd",
        &format!("alice:{SHA_SECRET}\nbob:{SHA_SECRET}\n"),
    );
    let right = s(&write(&d, "right", "secret\n"));
    let wrong = s(&write(&d, "wrong", "nope\n"));
    let h = two_hosts("final401", &["--htpasswd", &s(&htpasswd)]);
    // A wrong password, without --once: one try, exit 1, saying why.
    let mut c = client_with(
        &h.cli,
        "wrong",
        &[WS_URL],
        &["--user", "alice", "--password-file", &wrong],
        2,
    );
    assert_eq!(c.wait_exit(UP), Some(1), "{}", c.log());
    assert!(
        c.log().contains("not retrying a refused login"),
        "{}",
        c.log()
    );
    assert_eq!(c.log().matches("401").count(), 1, "{}", c.log());
    // With --retry-auth it keeps trying (and logs retries sparingly).
    let r = h.cli.etherws(
        "retry",
        &[
            "client",
            WS_URL,
            "--tap",
            "ethws5",
            "--user",
            "alice",
            "--password-file",
            &wrong,
            "--retry-auth",
            "--no-control",
        ],
    );
    assert!(
        r.wait_log(UP, |l| l.matches("401").count() >= 2),
        "{}",
        r.log()
    );
    // 429 explained: failures from this address make the server check one
    // attempt at a time.
    let mut both: Vec<Proc> = (0..2)
        .map(|i| {
            once(
                &h.cli,
                &format!("busy{i}"),
                WS_URL,
                &["--user", "bob", "--password-file", &wrong],
            )
        })
        .collect();
    let mut explained = false;
    for p in &mut both {
        p.wait_exit(UP);
        explained |= p.log().contains("too many failed logins from this address");
    }
    assert!(explained, "{}\n{}", both[0].log(), both[1].log());
    drop(r);

    // A user removed from the file: the server says it ended the link,
    // the client says why the server closed it.
    let bob = client_with(
        &h.cli,
        "bob",
        &[WS_URL],
        &["--user", "bob", "--password-file", &right, "--retry-auth"],
        3,
    );
    assert!(
        bob.wait_log(UP, |l| l.contains("connected to")),
        "{}",
        bob.log()
    );
    std::fs::write(&htpasswd, format!("alice:{SHA_SECRET}\n")).unwrap();
    assert!(
        h.server.wait_log(UP, |l| l.contains("ended after")
            && l.contains("credentials were revoked")),
        "{}",
        h.server.log()
    );
    assert!(
        bob.wait_log(UP, |l| l.contains("closed by peer (1008 policy violation")),
        "{}",
        bob.log()
    );
}

#[test]
fn the_exit_report_goes_to_stderr_and_not_with_quiet_and_refusals_name_the_forwarded_address() {
    if !root_or_skip("report_quiet") {
        return;
    }
    let h = two_hosts("rq", &["--trust-proxy"]);
    let mut loud = start_client(&h.cli, WS_URL, 2);
    assert!(h.cli.ping_until(SRV_TAP, UP));
    let quiet = h.cli.etherws(
        "quiet",
        &["client", WS_URL, "--tap", "ethws6", "-q", "--no-control"],
    );
    assert!(poll(UP, || port_line(&h.server.report(), "198.18.0.2").is_some()));
    loud.stop();
    let mut quiet = quiet;
    quiet.stop();
    assert!(loud.log().contains("end of report"), "{}", loud.log());
    assert!(loud.stdout().is_empty(), "{}", loud.stdout());
    assert!(!quiet.log().contains("report of"), "{}", quiet.log());
    assert!(quiet.stdout().is_empty());
    // A request refused before it was checked (a wrong path), behind a
    // trusted proxy: the log names the address the proxy forwarded.
    h.cli.enter(|| {
        let mut t = std::net::TcpStream::connect("198.18.0.1:8080").unwrap();
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.write_all(b"GET /wrong HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.18.77.7\r\n\r\n")
            .unwrap();
        let _ = t.read(&mut [0u8; 256]);
    });
    assert!(
        h.server
            .wait_log(UP, |l| l.contains("198.18.77.7 (via 198.18.0.2:")
                && l.contains("404")),
        "{}",
        h.server.log()
    );
}
