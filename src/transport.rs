//! The transports this program knows, configured from the command line,
//! and the link parameters every one of them gets.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etherws_auth::{Gate, Htpasswd};
use etherws_core::{Keepalive, LinkParams, Registry};
use etherws_quic::{Quic, QuicConfig};
use etherws_tls::{ClientTlsFiles, ServerTlsFiles, TlsClient, TlsServer};
use etherws_udp::{Key, Udp, UdpConfig};
use etherws_ws::proxy::Proxy;
use etherws_ws::{ClientConfig, ProxyChoice, ServerConfig, Ws, WsConfig};

use crate::cli::{ClientArgs, LinkArgs, ServerArgs, SwitchArgs, TapArgs};

/// The built-in transports (kept by value for SIGHUP and the report), a
/// program's own, and what every link gets.
pub struct Transports {
    pub ws: Ws,
    pub udp: Udp,
    pub quic: Quic,
    pub extra: Registry,
    pub params: LinkParams,
    /// Who may make a link (server), shared by every listener.
    pub gate: Arc<Gate>,
}

impl Transports {
    /// Every transport, keyed by URL scheme; `extra`'s win.
    pub fn registry(&self) -> Registry {
        Registry::new()
            .with(self.ws.clone())
            .with(self.udp.clone())
            .with(self.quic.clone())
            .merge(&self.extra)
    }
}

/// What every link gets, from the node's MTU and the link options.
pub fn link_params(link: &LinkArgs, tap: &TapArgs, sw: &SwitchArgs) -> LinkParams {
    LinkParams::new(crate::node::node_config(tap, sw).max_frame)
        .with_offload(!tap.no_offload)
        .with_handshake_timeout(Duration::from_secs(link.handshake_timeout))
        .with_clamp_mss(!link.no_mss_clamp)
        .with_keepalive((link.ping_interval > 0).then(|| Keepalive {
            interval: Duration::from_secs(link.ping_interval),
            timeout: Duration::from_secs(link.ping_timeout),
        }))
}

/// Warns when a secret file can be read by others than its owner.
pub fn warn_if_shared(path: &std::path::Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            log::warn!(
                "{what} {} can be read by {} (mode {:o}): make it private (chmod 600)",
                path.display(),
                if mode & 0o007 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                mode & 0o777
            );
        }
    }
}

fn udp(link: &LinkArgs, max_peers: usize, max_per_ip: usize) -> Result<Udp> {
    let psk = match &link.psk_file {
        Some(f) => {
            warn_if_shared(f, "--psk-file");
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read --psk-file {}", f.display()))?;
            let line = text.lines().next().unwrap_or("").trim();
            Some(
                Key::new(line.as_bytes())
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("--psk-file {}", f.display()))?,
            )
        }
        None => None,
    };
    Ok(Udp::new(UdpConfig {
        psk,
        offload: link.udp_offload,
        max_peers,
        max_peers_per_ip: if max_per_ip > 0 {
            max_per_ip
        } else {
            etherws_udp::DEFAULT_MAX_PER_IP
        },
        ..UdpConfig::default()
    }))
}

pub fn for_server(a: &ServerArgs, extra: Registry) -> Result<Transports> {
    let mut cfg = WsConfig {
        tcp_congestion: a.link.tcp_cc.clone(),
        ..WsConfig::default()
    };
    // The same files serve wss:// and quic://.
    let tls_files = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: a.client_ca.clone(),
        }),
        _ => None,
    };
    let tls = match &tls_files {
        Some(f) => {
            warn_if_shared(&f.key, "--tls-key");
            Some(Arc::new(
                TlsServer::new(f.clone()).context("cannot set up TLS")?,
            ))
        }
        None => None,
    };
    let gate = Arc::new(match &a.htpasswd {
        Some(p) => {
            let file = Htpasswd::load(p).context("cannot use --htpasswd")?;
            if file.is_empty() {
                log::warn!(
                    "--htpasswd {}: the file has no users: every login fails until one is added \
                     (etherws passwd FILE USER)",
                    p.display()
                );
            }
            Gate::with_htpasswd(file)
        }
        None => Gate::open(),
    });
    cfg.server = ServerConfig {
        tls,
        gate: gate.clone(),
        origins: a.origins.clone(),
        trust_proxy: a.trust_proxy,
        max_clients: a.max_clients,
        max_clients_per_ip: a.max_clients_per_ip,
        max_pending: a.max_pending.max(1),
        max_pending_per_ip: a.max_pending_per_ip,
    };
    let quic = Quic::new(QuicConfig {
        server: tls_files,
        congestion: a.link.quic_cc,
        max_peers: a.max_clients,
        gate: gate.clone(),
        ..QuicConfig::default()
    });
    Ok(Transports {
        ws: Ws::new(cfg),
        udp: udp(&a.link, a.max_clients, a.max_clients_per_ip)?,
        quic,
        extra,
        params: link_params(&a.link, &a.tap, &a.switch),
        gate,
    })
}

/// The password for `--user`: the file's first line, else
/// $ETHERWS_PASSWORD, else a prompt on the terminal.
fn password(a: &ClientArgs, user: &str) -> Result<String> {
    if let Some(f) = &a.password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --password-file {}", f.display()))?;
        return Ok(text.lines().next().unwrap_or("").to_string());
    }
    if let Ok(p) = std::env::var("ETHERWS_PASSWORD") {
        return Ok(p);
    }
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Password for {user}: "))
            .context("cannot read the password");
    }
    bail!("--user {user} needs a password: --password-file FILE, $ETHERWS_PASSWORD, or a terminal to ask on")
}

pub fn for_client(a: &ClientArgs, extra: Registry) -> Result<Transports> {
    let mut cfg = WsConfig {
        tcp_congestion: a.link.tcp_cc.clone(),
        ..WsConfig::default()
    };
    let wss = a.urls.iter().any(|u| u.scheme() == "wss");
    let quic = a.urls.iter().any(|u| u.scheme() == "quic");
    let tls_files = ClientTlsFiles {
        ca: a.ca.clone(),
        cert: a.cert.clone(),
        key: a.key.clone(),
        insecure: a.insecure,
        sni: a.sni.clone(),
    };
    if !wss && !quic && (a.ca.is_some() || a.cert.is_some() || a.insecure || a.sni.is_some()) {
        bail!("--ca, --cert, --insecure and --sni apply to wss:// and quic:// URLs only");
    }
    if let Some(k) = &a.key {
        warn_if_shared(k, "--key");
    }
    let tls = if wss {
        Some(Arc::new(
            TlsClient::new(tls_files.clone()).context("cannot set up TLS")?,
        ))
    } else {
        None
    };
    if a.insecure {
        log::warn!(
            "--insecure: the server's certificate is NOT verified; anyone on the path can read and change this tunnel"
        );
    }
    let credentials = match &a.user {
        Some(u) => {
            if a.urls.iter().any(|url| url.scheme() == "ws") {
                log::warn!("--user over ws:// sends the password in clear text; use wss://");
            }
            Some((u.clone(), password(a, u)?))
        }
        None => None,
    };
    let proxy = match (&a.proxy, a.no_proxy) {
        (Some(p), _) => ProxyChoice::Via(Proxy::parse(p).map_err(anyhow::Error::msg)?),
        (None, true) => ProxyChoice::Direct,
        (None, false) => ProxyChoice::FromEnv,
    };
    cfg.client = ClientConfig {
        tls,
        credentials,
        headers: a.headers.clone(),
        proxy,
    };
    if quic {
        // Fail now, not at the first connect, on unreadable files.
        etherws_tls::client_config(&tls_files).context("cannot set up TLS for quic://")?;
    }
    let quic = Quic::new(QuicConfig {
        client: tls_files,
        congestion: a.link.quic_cc,
        credentials: cfg.client.credentials.clone(),
        ..QuicConfig::default()
    });
    Ok(Transports {
        ws: Ws::new(cfg),
        udp: udp(&a.link, 0, 0)?,
        quic,
        extra,
        params: link_params(&a.link, &a.tap, &a.switch),
        gate: Arc::new(Gate::open()),
    })
}
