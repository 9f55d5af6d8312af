//! The client side: dial (directly or through an HTTP CONNECT proxy),
//! TLS for `wss://`, the upgrade request, and the link.

use std::sync::Arc;

use etherws_core::{Link, PeerInfo, TransportError};
use futures::AsyncWriteExt;
use smol::net::TcpStream;
use url::Url;

use crate::handshake::{self, ClientRequest, ResponseError, MAX_HEAD};
use crate::link::{self, LinkParams};
use crate::proxy::{self, Proxy};
use crate::socket::{tune, IntoHalves};
use crate::tls::{self, ClientTlsFiles, TlsClient};
use crate::{host_port, io_err, read_head, timeout, HeadError, ProxyChoice, Role, WsConfig};

/// Dials `url` (`ws://` or `wss://`) and returns the established link.
pub(crate) async fn connect(cfg: Arc<WsConfig>, url: Url) -> Result<Link, TransportError> {
    let (host, port) = host_port(&url)?;
    let what = format!("connecting to {host}:{port}");
    timeout(
        cfg.handshake_timeout,
        what,
        dial(cfg.clone(), url, host, port),
    )
    .await
}

fn proxy_for(cfg: &WsConfig, url: &Url) -> Option<Proxy> {
    match &cfg.client.proxy {
        ProxyChoice::Direct => None,
        ProxyChoice::Via(p) => Some(p.clone()),
        ProxyChoice::FromEnv => Proxy::from_env(url),
    }
}

async fn dial(
    cfg: Arc<WsConfig>,
    url: Url,
    host: String,
    port: u16,
) -> Result<Link, TransportError> {
    let proxy = proxy_for(&cfg, &url);
    let (dial_host, dial_port) = match &proxy {
        Some(p) => (p.host.clone(), p.port),
        None => (host.clone(), port),
    };
    let what = match &proxy {
        Some(p) => format!("connecting to proxy {}:{}", p.host, p.port),
        None => format!("connecting to {host}:{port}"),
    };
    let mut tcp = TcpStream::connect((dial_host.as_str(), dial_port))
        .await
        .map_err(io_err(what))?;
    tune(&tcp, cfg.keepalive, cfg.tcp_congestion.as_deref());
    let remote = tcp
        .peer_addr()
        .map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
    let via = match &proxy {
        Some(p) => {
            proxy::connect(&mut tcp, p, &host, port)
                .await
                .map_err(|e| {
                    TransportError::Rejected(format!("proxy {}:{}: {e}", p.host, p.port))
                })?;
            format!(" via proxy {remote}")
        }
        None => String::new(),
    };
    let peer_name = format!("{host}:{port}{}{via}", url.path());
    if url.scheme() == "wss" {
        let tls = match &cfg.client.tls {
            Some(t) => t.clone(),
            None => Arc::new(
                TlsClient::new(ClientTlsFiles::default())
                    .map_err(|e| TransportError::Handshake(e.to_string()))?,
            ),
        };
        let name = tls.server_name(&host).map_err(|e| TransportError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let stream = tls.connector().connect(name, tcp).await.map_err(|e| {
            TransportError::Handshake(format!("TLS with {host}:{port}: {}", tls::explain(&e)))
        })?;
        upgrade(&cfg, &url, &host, port, stream, "wss", peer_name).await
    } else {
        upgrade(&cfg, &url, &host, port, tcp, "ws", peer_name).await
    }
}

/// Sends the upgrade request on `stream`, checks the answer, makes the link.
async fn upgrade<S: IntoHalves>(
    cfg: &WsConfig,
    url: &Url,
    host: &str,
    port: u16,
    mut stream: S,
    scheme: &'static str,
    peer_name: String,
) -> Result<Link, TransportError> {
    let default_port = if scheme == "wss" { 443 } else { 80 };
    let host_header = match (host.contains(':'), port == default_port) {
        (true, true) => format!("[{host}]"),
        (true, false) => format!("[{host}]:{port}"),
        (false, true) => host.to_string(),
        (false, false) => format!("{host}:{port}"),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut headers = cfg.client.headers.clone();
    if let Some((u, p)) = &cfg.client.credentials {
        headers.push(("Authorization".into(), crate::auth::basic_header(u, p)));
    }
    let key = handshake::new_key();
    let req = ClientRequest {
        host: &host_header,
        target: &target,
        key: &key,
        headers: &headers,
        vnet: cfg.offload,
    };
    stream
        .write_all(&req.to_http())
        .await
        .map_err(io_err(format!(
            "sending the upgrade request to {peer_name}"
        )))?;
    let (head, leftover) = match read_head(&mut stream).await {
        Ok(h) => h,
        Err(HeadError::Io(e)) => {
            return Err(io_err(format!("reading the upgrade answer of {peer_name}"))(e))
        }
        Err(HeadError::Eof) => {
            return Err(TransportError::Handshake(format!(
                "{peer_name} closed the connection during the upgrade"
            )))
        }
        Err(HeadError::TooLong) => {
            return Err(TransportError::Handshake(format!(
                "{peer_name} sent an HTTP head longer than {MAX_HEAD} bytes"
            )))
        }
        Err(HeadError::Tls) => {
            return Err(TransportError::Handshake(format!(
                "{peer_name} answered with TLS: it is a wss:// server (use wss://)"
            )))
        }
    };
    let vnet = match handshake::parse_response(&head, &key, cfg.offload) {
        Ok(protocol) => protocol.as_deref() == Some(handshake::SUBPROTOCOL_VNET),
        Err(ResponseError::Status(401, reason)) => {
            let why = if cfg.client.credentials.is_some() {
                "wrong user or password"
            } else {
                "the server requires a user and password (--user)"
            };
            return Err(TransportError::Rejected(format!(
                "HTTP 401 {reason}: {why}"
            )));
        }
        Err(ResponseError::Status(429, reason)) => {
            return Err(TransportError::Rejected(format!(
                "HTTP 429 {reason}: too many failed logins from this address; the server \
                 checks one attempt at a time and slows them down (wait, then retry)"
            )))
        }
        Err(ResponseError::Status(code, reason)) => {
            return Err(TransportError::Rejected(format!("HTTP {code} {reason}")))
        }
        Err(ResponseError::Invalid(why)) => {
            return Err(TransportError::Handshake(format!("{peer_name}: {why}")))
        }
    };
    let (read, write) = stream.into_halves();
    Ok(link::make_link(
        read,
        write,
        LinkParams {
            role: Role::Client,
            leftover,
            max_frame: cfg.max_frame,
            hard_limit: cfg.hard_limit(),
            keepalive: cfg.keepalive,
            vnet,
            guard: None,
        },
        PeerInfo {
            scheme,
            remote: peer_name,
        },
    )
    .0)
}
