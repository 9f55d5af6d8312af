//! The server side: accept, TLS for `wss://`, admission (pending
//! handshakes, client limits, origin, authentication with back-off), the
//! upgrade answer, and the link.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use etherws_core::{Link, Listener, PeerInfo, PendingLink, TransportError};
use futures::future::BoxFuture;
use futures::{AsyncWriteExt, FutureExt};
use smol::net::{TcpListener, TcpStream};
use url::Url;

use crate::auth::{basic_credentials, Denied};
use crate::handshake::{self, Refusal, UpgradeRequest, MAX_HEAD};
use crate::link::{self, LinkParams};
use crate::socket::{tune, IntoHalves};
use crate::{host_port, io_err, read_head, refuse, tls, HeadError, Role, WsConfig};

/// Binds `url` (`ws://` or `wss://`, the latter needing a server TLS
/// configuration).
pub(crate) async fn listen(
    cfg: Arc<WsConfig>,
    url: Url,
) -> Result<Box<dyn Listener>, TransportError> {
    let (host, port) = host_port(&url)?;
    let scheme: &'static str = if url.scheme() == "wss" { "wss" } else { "ws" };
    if scheme == "wss" && cfg.server.tls.is_none() {
        return Err(TransportError::BadUrl {
            url: url.to_string(),
            reason: "wss:// needs a certificate and key (--tls-cert, --tls-key)".into(),
        });
    }
    let tcp = bind(&host, port)
        .await
        .map_err(io_err(format!("listening on {}", join(&host, port))))?;
    let local = tcp
        .local_addr()
        .map_or_else(|_| join(&host, port), |a: SocketAddr| a.to_string());
    let path = if url.path().is_empty() {
        "/".to_string()
    } else {
        url.path().to_string()
    };
    Ok(Box::new(WsListener {
        tcp,
        local,
        shared: Arc::new(ServerShared {
            cfg,
            scheme,
            path,
            pending: AtomicUsize::new(0),
            pending_by_ip: Mutex::default(),
            clients: Mutex::default(),
        }),
    }))
}

/// `host:port`, with an IPv6 address in brackets.
fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connections the kernel completes before we accept them: std's 128 is
/// soon full when a flood arrives, and then everyone's SYN waits for a
/// retransmission (a second or more).
const BACKLOG: i32 = 1024;

/// Binds a listener with a backlog of [`BACKLOG`].
async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let addrs = smol::net::resolve((host, port)).await?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addrs {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(a),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.set_reuse_address(true)?;
        if a.is_ipv6() {
            let _ = sock.set_only_v6(false);
        }
        match sock.bind(&a.into()).and_then(|()| sock.listen(BACKLOG)) {
            Ok(()) => {
                let std: std::net::TcpListener = sock.into();
                std.set_nonblocking(true)?;
                return TcpListener::try_from(std).map_err(std::io::Error::other);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

struct WsListener {
    tcp: TcpListener,
    local: String,
    shared: Arc<ServerShared>,
}

/// What every connection's handshake shares.
struct ServerShared {
    cfg: Arc<WsConfig>,
    scheme: &'static str,
    path: String,
    /// Connections still in their handshake, and per address.
    pending: AtomicUsize,
    pending_by_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Links per client address (and their sum).
    clients: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Counts a connection in its handshake until dropped.
struct PendingGuard(Arc<ServerShared>, IpAddr);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Relaxed);
        let mut m = self.0.pending_by_ip();
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Counts a client's link until the link is gone.
struct ClientSlot(Arc<ServerShared>, IpAddr);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut c = self.0.clients();
        c.0 -= 1;
        if let Some(n) = c.1.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                c.1.remove(&self.1);
            }
        }
    }
}

impl ServerShared {
    fn pending_by_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.pending_by_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection into its handshake, or says why not.
    fn start_handshake(self: &Arc<Self>, ip: IpAddr) -> Result<PendingGuard, String> {
        let s = &self.cfg.server;
        let mut by_ip = self.pending_by_ip();
        let of_ip = by_ip.get(&ip).copied().unwrap_or(0);
        if s.max_pending_per_ip > 0 && of_ip >= s.max_pending_per_ip {
            return Err(format!(
                "{of_ip} connections from {ip} already in their handshake (--max-pending-per-ip)"
            ));
        }
        if self.pending.fetch_add(1, Relaxed) >= s.max_pending {
            self.pending.fetch_sub(1, Relaxed);
            return Err(format!(
                "{} connections already in their handshake (--max-pending)",
                s.max_pending
            ));
        }
        *by_ip.entry(ip).or_insert(0) += 1;
        Ok(PendingGuard(self.clone(), ip))
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a client slot for `ip`, or says why not (503).
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ClientSlot, Refusal> {
        let s = &self.cfg.server;
        let mut c = self.clients();
        let of_ip = c.1.get(&ip).copied().unwrap_or(0);
        let full = if s.max_clients > 0 && c.0 >= s.max_clients {
            Some(format!("server full ({} clients, --max-clients)", c.0))
        } else if s.max_clients_per_ip > 0 && of_ip >= s.max_clients_per_ip {
            Some(format!(
                "{of_ip} clients from {ip} already (--max-clients-per-ip)"
            ))
        } else {
            None
        };
        if let Some(why) = full {
            return Err(Refusal::new(503, "Service Unavailable", why).header("Retry-After", "10"));
        }
        c.0 += 1;
        *c.1.entry(ip).or_insert(0) += 1;
        Ok(ClientSlot(self.clone(), ip))
    }
}

impl Listener for WsListener {
    fn accept(&mut self) -> BoxFuture<'_, Result<PendingLink, TransportError>> {
        async move {
            let (tcp, addr) = self
                .tcp
                .accept()
                .await
                .map_err(io_err(format!("accepting on {}", self.local)))?;
            let shared = self.shared.clone();
            let guard = match shared.start_handshake(addr.ip()) {
                Ok(g) => g,
                Err(why) => {
                    drop(tcp);
                    return Err(TransportError::Refused(format!(
                        "{addr}: {why}; closed at once"
                    )));
                }
            };
            let what = format!("handshake with {addr}");
            let pending: PendingLink = async move {
                let _guard = guard;
                let t = shared.cfg.handshake_timeout;
                crate::timeout(t, what, handshake_with(shared, tcp, addr)).await
            }
            .boxed();
            Ok(pending)
        }
        .boxed()
    }

    fn local_addr(&self) -> String {
        self.local.clone()
    }
}

/// TLS (for wss), then the upgrade.
async fn handshake_with(
    shared: Arc<ServerShared>,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<Link, TransportError> {
    tune(
        &tcp,
        shared.cfg.keepalive,
        shared.cfg.tcp_congestion.as_deref(),
    );
    match &shared.cfg.server.tls {
        Some(t) if shared.scheme == "wss" => {
            let stream = t.acceptor().accept(tcp).await.map_err(|e| {
                TransportError::Handshake(format!("TLS with {addr}: {}", tls::explain(&e)))
            })?;
            upgrade(shared, stream, addr).await
        }
        _ => upgrade(shared, tcp, addr).await,
    }
}

/// The client's address: the TCP peer's, or with `trust_proxy` the last
/// `X-Forwarded-For` entry (the one the trusted proxy added).
fn client_ip(shared: &ServerShared, req: &UpgradeRequest, addr: SocketAddr) -> IpAddr {
    if shared.cfg.server.trust_proxy {
        // Every X-Forwarded-For line, in order, as one list: its last
        // entry is the one the trusted proxy appended (a client's own line
        // may come first).
        let last = req
            .headers
            .iter()
            .filter(|(n, _)| n == "x-forwarded-for")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty());
        if let Some(ip) = last.and_then(parse_forwarded) {
            return ip;
        }
    }
    addr.ip()
}

/// The forwarded client address of a request that was refused before it
/// was fully checked (a wrong path, a bad upgrade), with `trust_proxy`.
fn forwarded_in(shared: &ServerShared, head: &[u8]) -> Option<IpAddr> {
    if !shared.cfg.server.trust_proxy {
        return None;
    }
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEAD / 128];
    let mut req = httparse::Request::new(&mut hdrs);
    let _ = req.parse(head);
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|h| {
            String::from_utf8_lossy(h.value)
                .split(',')
                .map(|v| v.trim().to_string())
                .collect::<Vec<_>>()
        })
        .rfind(|v| !v.is_empty())
        .and_then(|v| parse_forwarded(&v))
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:5678`.
fn parse_forwarded(v: &str) -> Option<IpAddr> {
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    if let Ok(sa) = v.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    v.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

async fn upgrade<S: IntoHalves>(
    shared: Arc<ServerShared>,
    mut stream: S,
    addr: SocketAddr,
) -> Result<Link, TransportError> {
    let (head, leftover) = match read_head(&mut stream).await {
        Ok(h) => h,
        Err(HeadError::Io(e)) => return Err(io_err(format!("reading the request of {addr}"))(e)),
        Err(HeadError::Eof) => {
            return Err(TransportError::Handshake(format!(
                "{addr} closed the connection before its request was complete"
            )))
        }
        Err(HeadError::Tls) => {
            let r = Refusal::new(
                400,
                "Bad Request",
                "this is a plain ws:// listener and the client spoke TLS: use ws:// here, \
                 or the server's wss:// listener",
            );
            refuse(&mut stream, &r).await;
            return Err(TransportError::Refused(format!("{addr}: {r}")));
        }
        Err(HeadError::TooLong) => {
            let r = Refusal::new(
                431,
                "Request Header Fields Too Large",
                format!("request head longer than {MAX_HEAD} bytes"),
            );
            refuse(&mut stream, &r).await;
            return Err(TransportError::Refused(format!("{addr}: {r}")));
        }
    };
    let req = match handshake::parse_request(&head, &shared.path) {
        Ok(r) => r,
        Err(r) => {
            refuse(&mut stream, &r).await;
            // Behind a trusted proxy, say whom it was from.
            let who = match forwarded_in(&shared, &head) {
                Some(ip) => format!("{ip} (via {addr})"),
                None => addr.to_string(),
            };
            return Err(TransportError::Refused(format!("{who}: {r}")));
        }
    };
    let ip = client_ip(&shared, &req, addr);
    let who = if ip == addr.ip() {
        addr.to_string()
    } else {
        format!("{ip} (via {addr})")
    };
    let admitted = admit(&shared, &req, ip).await;
    let (protocol, user, slot) = match admitted {
        Ok(a) => a,
        Err(r) => {
            refuse(&mut stream, &r).await;
            return Err(TransportError::Refused(format!("{who}: {r}")));
        }
    };
    stream
        .write_all(&handshake::switching_protocols(&req.key, protocol))
        .await
        .map_err(io_err(format!("answering {who}")))?;
    let (read, write) = stream.into_halves();
    let cfg = &shared.cfg;
    let (link, handle) = link::make_link(
        read,
        write,
        LinkParams {
            role: Role::Server,
            leftover,
            max_frame: cfg.max_frame,
            hard_limit: cfg.hard_limit(),
            keepalive: cfg.keepalive,
            vnet: protocol == Some(handshake::SUBPROTOCOL_VNET),
            guard: Some(Box::new(slot)),
        },
        PeerInfo {
            scheme: shared.scheme,
            remote: who,
        },
    );
    let mut link = link;
    if let Some(u) = user {
        link.user = Some(u.clone());
        shared.cfg.server.gate.register(u, Box::new(handle));
    }
    Ok(link)
}

/// The HTTP answer to a refused login.
fn refusal(d: Denied) -> Refusal {
    match d {
        Denied::Throttled => {
            Refusal::new(429, "Too Many Requests", d.detail()).header("Retry-After", "5")
        }
        _ => Refusal::new(401, "Unauthorized", d.detail()).header(
            "WWW-Authenticate",
            "Basic realm=\"etherws\", charset=\"UTF-8\"",
        ),
    }
}

/// Limits, origin, authentication, subprotocol: the answer's subprotocol,
/// the authenticated user, and the client's slot; or the refusal.
async fn admit(
    shared: &Arc<ServerShared>,
    req: &UpgradeRequest,
    ip: IpAddr,
) -> Result<(Option<&'static str>, Option<String>, ClientSlot), Refusal> {
    let s = &shared.cfg.server;
    if !s.origins.is_empty() {
        if let Some(origin) = req.header("origin") {
            if !s.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                return Err(Refusal::new(
                    403,
                    "Forbidden",
                    format!("origin {origin} not allowed"),
                ));
            }
        }
    }
    let creds = req.header("authorization").and_then(basic_credentials);
    let user = s.gate.check(ip, creds).await.map_err(refusal)?;
    let protocol = handshake::select_protocol(&req.protocols, shared.cfg.offload)?;
    let slot = shared.admit(ip)?;
    Ok((protocol, user, slot))
}
