//! Command-line interface (clap 4 derive).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use url::Url;

/// Ethernet over WebSocket: a TAP tunnel and learning virtual switch.
///
/// A server accepts WebSocket clients and switches Ethernet frames between
/// them and its own TAP device (hub-and-spoke, MAC learning). A client joins
/// its TAP device to the server's segment. Frames travel one per binary
/// WebSocket message (see spec/protocol.md).
#[derive(Parser, Debug)]
#[command(name = "etherws", version = crate::status::VERSION, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (-q: warnings and errors only, -qq: errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
    /// Worker threads of the node. One (the default) hands each frame from
    /// reader to writer without a cross-thread wake-up: on a 2-core machine
    /// it measured faster, with lower latency and less CPU per GB, than one
    /// thread per core (bench/). Raise it on a server whose clients keep
    /// more than one core busy (TLS, heavy filters, many links). Each thread
    /// runs its own instance of a filter declaring CAP_REPLICABLE
    /// (spec/filter-abi.md 3.2); other filters take one frame at a time.
    #[arg(long, global = true, env = "ETHERWS_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Accept clients (ws, wss, udp...) and switch frames between them and
    /// a TAP.
    Server(ServerArgs),
    /// Join a TAP device to a server's Ethernet segment.
    Client(ClientArgs),
    /// Serve one link on stdin/stdout (the stream framing of
    /// spec/protocol.md §12), for `exec:` transports, e.g. over SSH:
    /// logs go to stderr, the report too.
    Stdio(StdioArgs),
    /// Show the running nodes (or one): their ports, users, addresses,
    /// counters, RTT, filters (as `wg show` does for WireGuard).
    Status(StatusArgs),
    /// Show a running node's forwarding table.
    Fdb(StatusArgs),
    /// Act on a running node: kick a port or user, reload, add or remove
    /// a link.
    Ctl(CtlArgs),
    /// Add or change a user's bcrypt entry in an htpasswd file (no
    /// apache2-utils needed).
    Passwd(PasswdArgs),
    /// Check a configuration without starting (as `nginx -t`): `etherws
    /// check-config FILE` (a file with `role = ...`) or `etherws
    /// check-config server --config FILE [flags]`. Loads certificates and
    /// keys, the htpasswd file and the filters, parses URLs and tries to
    /// bind the listeners; exits 0 when all is well, 1 otherwise.
    CheckConfig(CheckArgs),
    /// Self-contained demo: a server and two clients in network namespaces
    /// (needs root and iproute2), ping across the tunnel, then clean up.
    Demo(DemoArgs),
    /// Send ICMP echo requests (used by the demo inside namespaces; needs
    /// root for a raw socket).
    #[command(hide = true)]
    Ping(PingArgs),
    /// Write the man pages (DIR/man) and shell completions
    /// (DIR/completions) for packaging.
    #[command(hide = true)]
    Assets {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Running as a service: the control socket, metrics and the status page.
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// Read flags from this TOML file (spec/control.md §6): its keys are
    /// the long flags (`listen = ["0.0.0.0:443"]`, `tls-cert = "..."`);
    /// flags given here override the file's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The control socket (for `etherws status`, `fdb`, `ctl`), mode 0600.
    /// Default: /run/etherws/NAME.sock, NAME being the TAP device's name
    /// (`etherws` without a TAP).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Run without a control socket.
    #[arg(long, conflicts_with = "control")]
    pub no_control: bool,
    /// Serve Prometheus metrics at /metrics and a live status page at /
    /// on this address, e.g. 127.0.0.1:9477. Off unless given. Read only
    /// and without authentication: keep it on loopback or a network you
    /// trust.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
}

/// Which running node a command talks to.
#[derive(Args, Debug, Clone)]
pub struct NodeTarget {
    /// The node's control socket.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// The node's name (its socket is /run/etherws/NAME.sock). Without
    /// it or --control: every node running here.
    #[arg(long, short = 'n', value_name = "NAME")]
    pub node: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Machine-readable: the node's snapshot as JSON (spec/control.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: NodeTarget,
}

#[derive(Args, Debug)]
pub struct CtlArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Subcommand, Debug)]
pub enum CtlAction {
    /// End a port (its number, from `etherws status`) or every link of a
    /// user. A client kicked this way reconnects unless it was removed
    /// from the htpasswd file.
    Kick {
        #[arg(value_name = "PORT|USER")]
        target: String,
    },
    /// Reload certificates, the htpasswd file and the filters (as SIGHUP).
    Reload,
    /// Add or remove a link port.
    Port {
        #[command(subcommand)]
        action: PortAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum PortAction {
    /// Dial another node as a client port (redialled with back-off until
    /// `port del`), e.g. to join two hubs.
    Add {
        #[arg(value_name = "URL", value_parser = parse_url)]
        url: Url,
    },
    /// End a port; a port made by `port add` is not redialled.
    Del {
        #[arg(value_name = "PORT")]
        port: u32,
    },
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// FILE, or a command and its flags (`server --config FILE ...`).
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// The htpasswd file (made, mode 0600, if it does not exist).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The user to add or change.
    #[arg(value_name = "USER")]
    pub user: String,
    /// Take the password from this file's first line instead of asking
    /// (or from $ETHERWS_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// bcrypt cost (4-31; each step doubles the time a check takes).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub cost: u32,
    /// Remove the user instead.
    #[arg(long, short = 'D')]
    pub delete: bool,
}

/// Options for the local TAP device.
#[derive(Args, Debug, Clone)]
pub struct TapArgs {
    /// Name of the TAP device to create; `%d` becomes the first free number.
    #[arg(long, default_value = "ethws%d", value_name = "NAME")]
    pub tap: String,
    /// MTU of the TAP device, in bytes (68 to 65535). Both ends of a tunnel
    /// should use the same MTU; a bigger MTU means fewer, larger messages
    /// and more throughput.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(68..))]
    pub mtu: u16,
    /// MAC address of the TAP device: an address, `random` (the kernel's),
    /// or `persistent`: derived from the machine id, network namespace and
    /// device name, so it survives restarts and peers' ARP caches stay valid.
    #[arg(long, default_value = "persistent", value_name = "MAC")]
    pub mac: etherws_core::tap::MacPolicy,
    /// Set this address on the TAP device, IPv4 or IPv6, e.g.
    /// 198.18.1.1/24 or fd00:e7e::1/64. Repeat for more.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub address: Vec<(IpAddr, u8)>,
    /// Put the TAP device into this existing Linux bridge (its ports then
    /// share the tunnel's segment), as `ip link set TAP master BRIDGE`.
    #[arg(long, value_name = "BRIDGE")]
    pub bridge: Option<String>,
    /// Run this shell command once the TAP is up (and addressed, and in
    /// its bridge); $ETHERWS_DEVICE names it, $ETHERWS_EVENT is `up`. A
    /// command that fails stops the start.
    #[arg(long, value_name = "CMD")]
    pub up: Option<String>,
    /// Run this shell command when the node ends, before the TAP goes;
    /// $ETHERWS_EVENT is `down`.
    #[arg(long, value_name = "CMD")]
    pub down: Option<String>,
    /// Turn offloads off: no super-frames from the TAP (IFF_VNET_HDR with
    /// checksum and segmentation offload) and none offered on links; every
    /// frame then crosses at most MTU-sized, one read, write and message
    /// each.
    #[arg(long)]
    pub no_offload: bool,
}

/// Options of the switch inside a node.
#[derive(Args, Debug, Clone)]
pub struct SwitchArgs {
    /// Flood every frame to every other port (no MAC learning).
    #[arg(long)]
    pub hub: bool,
    /// Seconds a learned MAC address stays in the forwarding table.
    #[arg(long, default_value_t = 300, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ageing: u64,
    /// Most entries (VLAN, MAC) the forwarding table holds, across all
    /// ports; when full, new stations are flooded, not learned. There is no
    /// per-port limit: a TAP may bridge many VMs.
    #[arg(long, default_value_t = etherws_core::switch::DEFAULT_MAX_ENTRIES, value_name = "N",
          value_parser = clap::value_parser!(usize))]
    pub fdb_max: usize,
    /// Frames queued per port before new ones are dropped (a slow peer
    /// loses its own frames instead of stalling the others).
    #[arg(long, default_value_t = etherws_core::node::DEFAULT_QUEUE_LEN, value_name = "FRAMES",
          value_parser = clap::value_parser!(usize))]
    pub queue: usize,
    /// Bytes of frames queued per port before new ones are dropped (with
    /// --queue, bounds the memory a slow peer can hold).
    #[arg(long, default_value_t = etherws_core::node::DEFAULT_QUEUE_BYTES, value_name = "BYTES",
          value_parser = clap::value_parser!(usize))]
    pub queue_bytes: usize,
    /// Storm control: most broadcast, multicast and unknown-unicast frames
    /// per second one port may flood to the others (0: no limit), in bursts
    /// of a tenth of a second's worth, 256 at most. Frames over it are
    /// dropped and counted as drop_storm.
    #[arg(long, default_value_t = etherws_core::node::DEFAULT_STORM_LIMIT, value_name = "FRAMES_PER_S")]
    pub storm_limit: u32,
    /// Port security: a station heard on one port within this many seconds
    /// cannot move to another; its frames from there are dropped and
    /// counted as drop_spoof (a peer cannot take over an active station's
    /// MAC). A station silent this long, or whose port ended (a client
    /// reconnecting), moves freely. 0: moves are never refused. The
    /// node's own TAP MAC is always pinned to the TAP: frames from links
    /// with it as source are dropped as drop_spoof.
    #[arg(long, default_value_t = etherws_core::switch::DEFAULT_MOVE_GUARD.as_secs(), value_name = "SECS")]
    pub move_guard: u64,
    /// Port security: most stations (source MACs) one link may have in
    /// the forwarding table; frames from further new sources are dropped
    /// and counted as drop_mac_limit (0: no limit). TAP ports are never
    /// limited.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_macs: usize,
    /// WASM filter for frames entering the node from any port, as
    /// FILE[:key=value,...] (.wasm or .wat). Repeat for a chain, in order.
    /// Keys name, on_fault=closed|open, unload_after, fuel, memory_mb and
    /// capture=PCAP are the host's; the rest is the filter's configuration
    /// (spec/filter-abi.md). SIGHUP reloads every chain.
    #[arg(long = "filter", value_name = "FILE[:k=v,...]")]
    pub filters: Vec<String>,
    /// WASM filter for frames leaving the node through any port (same
    /// syntax as --filter).
    #[arg(long = "egress-filter", value_name = "FILE[:k=v,...]")]
    pub egress_filters: Vec<String>,
    /// Log port counters every SECS seconds (0: never). SIGUSR1 prints
    /// counters and the forwarding table at any time.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub stats_interval: u64,
}

/// Options of every link, on both sides.
#[derive(Args, Debug, Clone)]
pub struct LinkArgs {
    /// Send a keepalive (WebSocket Ping, udp PING) after this many seconds
    /// without receiving anything (0: no keepalive). Keep it below the idle timeout of any
    /// proxy on the way (often 60 s).
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub ping_interval: u64,
    /// Close a link (and, on the client, reconnect) when nothing at all
    /// arrived for the ping interval plus this many seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_timeout: u64,
    /// Seconds a connection may take from TCP connect (or accept) to the
    /// end of the TLS and WebSocket handshakes.
    #[arg(long, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout: u64,
    /// udp:// only: authenticate every datagram with the key in this file
    /// (its first line, at least 16 bytes; both ends need the same).
    /// udp:// never encrypts: anyone on the path still reads the frames.
    #[arg(long, value_name = "FILE")]
    pub psk_file: Option<PathBuf>,
    /// ws:// and wss:// only: the TCP congestion control of the link's
    /// connection (e.g. cubic, bbr; default: the system's).
    #[arg(long, value_name = "ALGO")]
    pub tcp_cc: Option<String>,
    /// udp:// only: carry super-frames whole (offered by a client, granted
    /// by a server; both ends need it). Far faster on a clean path; on a
    /// lossy one each lost IP fragment loses a whole 64 KiB super-frame.
    #[arg(long)]
    pub udp_offload: bool,
    /// udp:// only: do not clamp TCP's MSS. By default SYNs that cross a
    /// udp:// link announce at most what fits one datagram on a 1500-byte
    /// path (1406 bytes, 1382 with --psk-file), so full-size frames cross
    /// without IP fragments (a lost fragment loses the frame).
    #[arg(long)]
    pub no_mss_clamp: bool,
    /// quic:// only: QUIC's congestion control (cubic, bbr, newreno).
    #[arg(long, default_value = "cubic", value_name = "ALGO")]
    pub quic_cc: etherws_quic::Congestion,
}

#[derive(Args, Debug)]
pub struct StdioArgs {
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub tap: TapArgs,
    #[command(flatten)]
    pub switch: SwitchArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Where to listen: ADDR:PORT serves ws:// (wss:// with --tls-cert)
    /// on --path; a URL names its transport, e.g. udp://0.0.0.0:8080 or
    /// quic://0.0.0.0:8443 (needs --tls-cert). Repeat to serve several at
    /// once.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR:PORT|URL")]
    pub listen: Vec<String>,
    /// The only URL path served; WebSocket requests for other paths are
    /// refused with HTTP 404.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Do not create a TAP device: relay between clients only.
    #[arg(long, conflicts_with_all = ["tap", "address", "mac", "bridge", "up", "down"])]
    pub no_tap: bool,
    /// Serve wss:// (TLS) with this certificate (PEM: the server's
    /// certificate first, then its chain); quic:// listeners use it too.
    /// Re-read on SIGHUP (for wss://).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: RSA, ECDSA or Ed25519).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: require client certificates signed by this CA (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Require a user and password from this Apache htpasswd file (bcrypt,
    /// {SHA}, apr1 or SHA-crypt hashes) on every listener: HTTP Basic on
    /// ws:// and wss://, the opening exchange on quic://. A listener that
    /// cannot check users (udp:// without --psk-file, a plugin transport)
    /// stops the start. Re-read when it changes (looked at every second)
    /// and on SIGHUP; links of removed users are closed.
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Accept browser requests only from this origin (repeat for more),
    /// e.g. https://example.org. Requests without an Origin header (any
    /// non-browser client) are not affected.
    #[arg(long = "origin", value_name = "ORIGIN")]
    pub origins: Vec<String>,
    /// Behind a reverse proxy you trust: take the client's address from
    /// the last X-Forwarded-For entry (for logs, limits and back-off).
    #[arg(long)]
    pub trust_proxy: bool,
    /// Most clients at once (0: no limit); more get HTTP 503.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_clients: usize,
    /// Most clients at once from one address (0: no limit; udp:// then
    /// allows 64 sessions per address).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_clients_per_ip: usize,
    /// Most connections still in their handshake at once; more are closed
    /// at once.
    #[arg(long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(usize))]
    pub max_pending: usize,
    /// Most connections from one address still in their handshake at once
    /// (0: no limit).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_pending_per_ip: usize,
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub tap: TapArgs,
    #[command(flatten)]
    pub switch: SwitchArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Server URL, e.g. ws://host:8080/, wss://host/, udp://host:8080 or
    /// quic://host:8443.
    /// Give several for
    /// failover: they are tried in order, and while on a later one the
    /// earlier ones are retried every --failback seconds.
    #[arg(value_name = "URL", required = true, num_args = 1.., value_parser = parse_url)]
    pub urls: Vec<Url>,
    /// Trust this CA (PEM) for wss:// instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not verify the server's certificate (testing only: anyone on the
    /// path can read and change the traffic).
    #[arg(long)]
    pub insecure: bool,
    /// Verify (and send as SNI) this name instead of the URL's host.
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Mutual TLS: present this certificate (PEM, with its chain).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// HTTP Basic authentication as this user. The password comes from
    /// --password-file, else $ETHERWS_PASSWORD, else a prompt on the
    /// terminal.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// File whose first line is the password.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
    /// Extra request header, e.g. -H 'X-Tenant: blue' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Reach the server through this HTTP CONNECT proxy,
    /// http://[user:password@]host:port. Without it, $https_proxy (wss),
    /// $http_proxy (ws), $all_proxy and $no_proxy are honoured.
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    pub proxy: Option<String>,
    /// Ignore the proxy environment variables.
    #[arg(long)]
    pub no_proxy: bool,
    /// With several URLs: while on a later one, retry the earlier ones
    /// every SECS seconds and move back when one answers (0: never).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub failback: u64,
    /// Exit instead of reconnecting when the first connection fails or the
    /// link drops.
    #[arg(long)]
    pub once: bool,
    /// Keep retrying when the server refuses our user and password (HTTP
    /// or QUIC 401). Without it a 401 is final: the client exits with 1
    /// (a wrong password does not get better by retrying).
    #[arg(long)]
    pub retry_auth: bool,
    /// Longest wait between reconnection attempts, in seconds (the wait
    /// doubles from 100 ms up to this, with jitter).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub max_backoff: u64,
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub tap: TapArgs,
    #[command(flatten)]
    pub switch: SwitchArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the logs of the demo's server and clients in this directory
    /// (default: a temporary directory, removed on success).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PingArgs {
    /// IPv4 address to ping.
    pub target: Ipv4Addr,
    /// Echo requests to time after the first reply.
    #[arg(long, default_value_t = 3)]
    pub count: u32,
    /// Seconds to keep trying until the first reply arrives.
    #[arg(long, default_value_t = 20)]
    pub wait: u64,
}

/// Parses a server URL, refusing the slips a URL parser forgives: no
/// scheme (`host:8080` would be read as scheme `host`), and `ws:/host`
/// (read as `ws://host/`).
pub fn parse_url(s: &str) -> Result<Url, String> {
    let network = ["ws", "wss", "udp", "quic"];
    match s.split_once(':') {
        Some((scheme, rest))
            if network.contains(&scheme.to_ascii_lowercase().as_str())
                && !rest.starts_with("//") =>
        {
            return Err(format!("{s:?}: write {scheme}://HOST..., with two slashes"));
        }
        Some((scheme, rest))
            if scheme.parse::<std::net::IpAddr>().is_ok()
                || rest
                    .split('/')
                    .next()
                    .is_some_and(|p| p.parse::<u16>().is_ok())
                || scheme.contains('.') =>
        {
            return Err(format!("{s:?} has no scheme: did you mean ws://{s}/ ?"));
        }
        None => return Err(format!("{s:?} has no scheme: did you mean ws://{s}/ ?")),
        _ => {}
    }
    Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))
}

/// Parses `Name: value` (an HTTP header line, without CR or LF).
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not NAME: VALUE"))?;
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("{name:?} is not a header name"));
    }
    if value.contains(['\r', '\n']) {
        return Err("a header value cannot contain line breaks".into());
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Parses `198.18.1.1/24` or `fd00:e7e::1/64`.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = s.split_once('/').ok_or_else(|| {
        format!("{s:?} is not ADDRESS/PREFIX (e.g. 198.18.1.1/24 or fd00:e7e::1/64)")
    })?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("{prefix:?} is not a prefix length 0-{max}"))?;
    Ok((ip, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("198.18.1.1/24"),
            Ok(("198.18.1.1".parse::<IpAddr>().unwrap(), 24))
        );
        assert!(parse_cidr("198.18.1.1").is_err());
        assert!(parse_cidr("198.18.1.1/33").is_err());
        assert_eq!(
            parse_cidr("fd00:e7e::1/64"),
            Ok(("fd00:e7e::1".parse().unwrap(), 64))
        );
        assert!(parse_cidr("fd00::1/129").is_err());
    }

    #[test]
    fn client_urls_refuse_the_usual_slips() {
        assert!(parse_url("ws://198.18.0.1:8080/").is_ok());
        assert!(parse_url("unix:/run/x.sock").is_ok());
        assert!(parse_url("exec:ssh host etherws stdio").is_ok());
        let e = parse_url("198.18.0.1:8080").unwrap_err();
        assert!(e.contains("did you mean ws://198.18.0.1:8080/"), "{e}");
        let e = parse_url("vpn.example.org:443").unwrap_err();
        assert!(e.contains("did you mean ws://"), "{e}");
        let e = parse_url("localhost:8080").unwrap_err();
        assert!(e.contains("no scheme"), "{e}");
        let e = parse_url("ws:/host").unwrap_err();
        assert!(e.contains("two slashes"), "{e}");
        assert!(parse_url("vpn.example.org").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("X-Tenant: blue"),
            Ok(("X-Tenant".into(), "blue".into()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
        assert!(parse_header("X: a\r\nInjected: b").is_err());
    }
}
