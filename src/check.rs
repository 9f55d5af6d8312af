//! `etherws check-config`: everything a start would read and bind, without
//! starting (no TAP, no link): certificates and keys, the htpasswd file,
//! pre-shared keys, filters, URLs, the authentication policy, and whether
//! the listening addresses are free. One line per check; exit 1 when any
//! failed, as `nginx -t`.

use std::ffi::OsString;

use anyhow::{bail, Result};
use clap::Parser;
use etherws_core::Registry;

use crate::cli::{Cli, Command};

struct Report {
    failed: usize,
}

impl Report {
    fn check<T>(&mut self, what: &str, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                println!("ok: {what}");
                Some(v)
            }
            Err(e) => {
                // One line: a compiler's multi-line excerpt is in the
                // node's own log when it starts.
                let text = format!("{e:#}");
                eprintln!("error: {what}: {}", text.lines().next().unwrap_or_default());
                self.failed += 1;
                None
            }
        }
    }
}

/// The arguments `args` stand for: a file (with `role = ...`) or a
/// command and its flags.
fn command_line(args: &[String]) -> Result<Vec<OsString>> {
    let roles = ["server", "client", "stdio"];
    let mut out: Vec<OsString> = vec!["etherws".into()];
    match args {
        [file] if !roles.contains(&file.as_str()) => {
            let f = crate::config::read(std::path::Path::new(file), None)?;
            let role = f.role.clone().unwrap_or_default();
            out.extend([role.into(), "--config".into(), file.into()]);
        }
        [role, ..] if roles.contains(&role.as_str()) => out.extend(args.iter().map(OsString::from)),
        _ => bail!("check-config FILE, or check-config server|client --config FILE [flags]"),
    }
    let (expanded, _) = crate::config::expand(out)?;
    Ok(expanded)
}

pub fn run(args: &[String], extra: Registry) -> Result<()> {
    let argv = command_line(args)?;
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad flags");
            bail!("{}", first.trim_start_matches("error: "));
        }
    };
    let mut r = Report { failed: 0 };
    match cli.command {
        Command::Server(a) => {
            let t = r.check(
                "TLS, htpasswd and keys",
                crate::transport::for_server(&a, extra),
            );
            let _ = r.check(
                "filters",
                crate::node::build_node(&a.tap, &a.switch).map(|_| ()),
            );
            if let Some(t) = t {
                let registry = t.registry();
                let schemes = registry.schemes();
                for l in &a.listen {
                    let what = format!("listener {l}");
                    let url = r.check(
                        &what,
                        crate::server::listen_url(l, &a.path, a.tls_cert.is_some(), &schemes)
                            .and_then(|u| {
                                let tr = registry.resolve(&u)?;
                                if t.gate.requires_auth() {
                                    crate::server::enforces_policy(&u, tr.authenticates())?;
                                }
                                Ok(u)
                            }),
                    );
                    if let Some(u) = url {
                        r.check(&format!("{u} is free"), free(&u));
                    }
                }
            }
            if let Some(m) = &a.service.metrics {
                r.check(&format!("--metrics {m} is free"), bind_tcp(m));
            }
            r.check("TAP", tap_name(&a.tap.tap));
        }
        Command::Client(a) => {
            let t = r.check(
                "TLS files and credentials",
                crate::transport::for_client(&a, extra),
            );
            let _ = r.check(
                "filters",
                crate::node::build_node(&a.tap, &a.switch).map(|_| ()),
            );
            if let Some(t) = t {
                let registry = t.registry();
                for u in &a.urls {
                    r.check(
                        &format!("server {u}"),
                        registry.resolve(u).map(|_| ()).map_err(Into::into),
                    );
                }
            }
            r.check("TAP", tap_name(&a.tap.tap));
        }
        Command::Stdio(a) => {
            let _ = r.check(
                "filters",
                crate::node::build_node(&a.tap, &a.switch).map(|_| ()),
            );
        }
        _ => bail!("check-config checks server, client and stdio configurations"),
    }
    if r.failed > 0 {
        bail!("{} check(s) failed", r.failed);
    }
    println!("configuration OK");
    Ok(())
}

fn bind_tcp(addr: &str) -> Result<()> {
    std::net::TcpListener::bind(addr)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{addr}: {e}"))
}

/// Whether a listener's address can be bound now (the TCP or UDP port).
fn free(u: &url::Url) -> Result<()> {
    let Ok((host, port)) = etherws_core::helpers::host_port(u, Some(8080)) else {
        return Ok(()); // unix: and the like
    };
    let addr = format!(
        "{}:{port}",
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        }
    );
    match u.scheme() {
        "udp" | "quic" => std::net::UdpSocket::bind(&addr)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{addr}/udp: {e}")),
        _ => bind_tcp(&addr),
    }
}

/// A TAP name that is free, or a TAP already; not another device.
fn tap_name(name: &str) -> Result<()> {
    if name.contains('%') {
        return Ok(());
    }
    let dev = std::path::Path::new("/sys/class/net").join(name);
    if !dev.exists() {
        return Ok(());
    }
    if dev.join("tun_flags").exists() {
        bail!("{name} exists already (another etherws, or a leftover TAP: `ip link del {name}`)");
    }
    bail!("{name} is a network interface of another kind, not a TAP: choose another --tap name");
}
