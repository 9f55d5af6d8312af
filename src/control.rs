//! The control socket: a Unix socket (default `/run/etherws/NAME.sock`,
//! mode 0600) speaking JSON-RPC 2.0, one request and one answer per line
//! (spec/control.md). `etherws status`, `etherws fdb` and `etherws ctl`
//! are its clients; `kick`, `reload` and `port add`/`port del` act on the
//! running node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etherws_core::{LinkParams, PortConfig, PortId, PortKind, Registry};
use futures::{AsyncBufReadExt, AsyncWriteExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use smol::net::unix::{UnixListener, UnixStream};
use url::Url;

use crate::node::{run_port, Wired};
use crate::runtime::Ex;
use crate::status::Snapshot;

/// Where control sockets live by default.
pub const DIR: &str = "/run/etherws";

/// A request longer than this is refused (the socket is root's, but a
/// bound is a bound).
const MAX_REQUEST: usize = 64 * 1024;

/// The default socket of node `name`.
pub fn default_path(name: &str) -> PathBuf {
    Path::new(DIR).join(format!("{name}.sock"))
}

/// A JSON-RPC 2.0 request.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    pub id: Value,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

/// A link this node dials at runtime (`ctl port add`), redialled with
/// back-off until `port del`.
struct Dialer {
    url: Url,
    /// The port it has now (0: none, between attempts).
    port: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

/// What the control socket acts on.
pub struct Service {
    pub wired: Arc<Wired>,
    pub ex: Ex,
    pub registry: Registry,
    pub params: LinkParams,
    dialers: Mutex<BTreeMap<u32, Dialer>>,
    next_dialer: AtomicU32,
}

impl Service {
    pub fn new(wired: Arc<Wired>, ex: Ex, registry: Registry, params: LinkParams) -> Arc<Self> {
        Arc::new(Service {
            wired,
            ex,
            registry,
            params,
            dialers: Mutex::default(),
            next_dialer: AtomicU32::new(1),
        })
    }

    fn dialers(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Dialer>> {
        self.dialers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers one request: its result, or an error message.
    async fn call(self: &Arc<Self>, method: &str, params: &Value) -> Result<Value, String> {
        let str_param = |k: &str| {
            params
                .get(k)
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .or_else(|| Some(v.to_string()))
                })
                .ok_or_else(|| format!("{method} needs the parameter {k:?}"))
        };
        match method {
            "status" => {
                serde_json::to_value(Snapshot::take(&self.wired)).map_err(|e| e.to_string())
            }
            "fdb" => {
                serde_json::to_value(Snapshot::take(&self.wired).fdb).map_err(|e| e.to_string())
            }
            "reload" => Ok(json!({ "lines": crate::node::reload(&self.wired).await })),
            "kick" => {
                let target = str_param("target")?;
                let ended = self.kick(&target);
                if ended.is_empty() {
                    return Err(format!(
                        "no port {target:?} and no user {target:?} has a link"
                    ));
                }
                Ok(json!({ "ended": ended }))
            }
            "port.add" => {
                let url = str_param("url")?;
                let url = Url::parse(&url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
                self.registry.resolve(&url).map_err(|e| e.to_string())?;
                Ok(json!({ "dialer": self.dial(url.clone()), "url": url.as_str() }))
            }
            "port.del" => {
                let port = str_param("port")?;
                let id: u32 = port
                    .parse()
                    .map_err(|_| format!("{port:?} is not a port number"))?;
                self.port_del(id)
            }
            other => Err(format!(
                "unknown method {other:?} (status, fdb, reload, kick, port.add, port.del)"
            )),
        }
    }

    /// Ends the port numbered `target`, or every port of the user so named.
    fn kick(&self, target: &str) -> Vec<u32> {
        let ports = self.wired.node.ports();
        let hit: Vec<u32> = ports
            .iter()
            .filter(|p| p.id.0.to_string() == target || p.user.as_deref() == Some(target))
            .map(|p| p.id.0)
            .collect();
        for id in &hit {
            log::info!("ctl: kick {target}: port {id} detached");
            self.wired.node.detach(PortId(*id));
        }
        hit
    }

    /// Starts dialing `url` as a client port, redialled until `port del`.
    fn dial(self: &Arc<Self>, url: Url) -> u32 {
        let n = self.next_dialer.fetch_add(1, Relaxed);
        let port = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        self.dialers().insert(
            n,
            Dialer {
                url: url.clone(),
                port: port.clone(),
                stop: stop.clone(),
            },
        );
        let me = self.clone();
        log::info!("ctl: port add {url}");
        self.ex
            .spawn(async move {
                let mut wait = Duration::from_millis(100);
                while !stop.load(Relaxed) && !me.wired.node.is_closing() {
                    match me.registry.connect(&url, &me.params).await {
                        Ok(link) => {
                            log::info!("ctl: connected to {url} ({})", link.peer);
                            wait = Duration::from_millis(100);
                            let p =
                                me.wired
                                    .node
                                    .attach(link, PortKind::Link, PortConfig::default());
                            port.store(p.id.0, Relaxed);
                            let end = run_port(&me.ex, p).await;
                            port.store(0, Relaxed);
                            if !stop.load(Relaxed) {
                                log::warn!("ctl: link to {url} ended ({end:?}); redialing");
                            }
                        }
                        Err(e) => {
                            log::warn!("ctl: cannot connect to {url}: {e}; retrying in {wait:?}");
                            smol::Timer::after(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(30));
                        }
                    }
                }
                me.dialers().remove(&n);
            })
            .detach();
        n
    }

    /// Ends port `id`; a port made by `port add` is not redialled.
    fn port_del(&self, id: u32) -> Result<Value, String> {
        let dialed = self
            .dialers()
            .iter()
            .find(|(_, d)| d.port.load(Relaxed) == id)
            .map(|(n, d)| {
                d.stop.store(true, Relaxed);
                (*n, d.url.to_string())
            });
        if !self.wired.node.detach(PortId(id)) {
            return Err(format!("no port {id}"));
        }
        log::info!("ctl: port del {id}");
        Ok(match dialed {
            Some((n, url)) => json!({ "ended": id, "dialer": n, "url": url }),
            None => json!({ "ended": id }),
        })
    }
}

/// Binds the control socket at `path` (its directory made if need be),
/// mode 0600. A live socket there (another node answers) is left alone:
/// the node runs without one and says so.
pub fn bind(path: &Path) -> Result<Option<UnixListener>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("cannot make the control socket's folder {}", dir.display())
        })?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            log::warn!(
                "control socket {} is in use by another etherws; running without one \
                 (give --control PATH)",
                path.display()
            );
            return Ok(None);
        }
        // A stale socket of a node that is gone.
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(Some(l))
}

/// Serves the control socket until the node ends; removes it then.
pub async fn serve(svc: Arc<Service>, listener: UnixListener, path: PathBuf) {
    let _remove = RemoveOnDrop(path);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            smol::Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let svc = svc.clone();
        svc.ex
            .clone()
            .spawn(async move {
                if let Err(e) = session(&svc, stream).await {
                    log::debug!("control: {e:#}");
                }
            })
            .detach();
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One client: requests in, answers out, a line each.
async fn session(svc: &Arc<Service>, stream: UnixStream) -> Result<()> {
    let mut reader = futures::io::BufReader::new(stream.clone());
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_REQUEST as u64)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(req) if req.jsonrpc == "2.0" => match svc.call(&req.method, &req.params).await {
                Ok(result) => json!({ "jsonrpc": "2.0", "id": req.id, "result": result }),
                Err(message) => json!({
                    "jsonrpc": "2.0", "id": req.id,
                    "error": { "code": -32000, "message": message }
                }),
            },
            Ok(req) => json!({
                "jsonrpc": "2.0", "id": req.id,
                "error": { "code": -32600, "message": "jsonrpc must be \"2.0\"" }
            }),
            Err(e) => json!({
                "jsonrpc": "2.0", "id": null,
                "error": { "code": -32700, "message": format!("not a request: {e}") }
            }),
        };
        let mut out = answer.to_string();
        out.push('\n');
        writer.write_all(out.as_bytes()).await?;
        if n >= MAX_REQUEST {
            return Ok(());
        }
    }
}

use futures::AsyncReadExt as _;

/// The client side (`etherws status`, `fdb`, `ctl`): one call on `path`.
pub fn call(path: &Path, method: &str, params: Value) -> Result<Value> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach the node's control socket {} (is it running? as root?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let req = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    s.write_all(format!("{req}\n").as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(&s)
        .read_line(&mut line)
        .context("no answer from the node")?;
    let v: Value = serde_json::from_str(&line).context("the node's answer is not JSON")?;
    if let Some(e) = v.get("error") {
        bail!(
            "{}",
            e.get("message").and_then(Value::as_str).unwrap_or("error")
        );
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}

/// The sockets of the nodes running here, by name.
pub fn running() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let name = p.file_name()?.to_str()?.strip_suffix(".sock")?.to_string();
            Some((name, p))
        })
        .collect();
    v.sort();
    v
}

/// The socket a command means: `--control PATH`, a node's name, or the
/// only node running.
pub fn resolve(control: Option<&Path>, name: Option<&str>) -> Result<Vec<PathBuf>> {
    if let Some(p) = control {
        return Ok(vec![p.to_path_buf()]);
    }
    if let Some(n) = name {
        return Ok(vec![default_path(n)]);
    }
    let all = running();
    if all.is_empty() {
        bail!("no etherws node is running here (no socket in {DIR}; give --control PATH)");
    }
    Ok(all.into_iter().map(|(_, p)| p).collect())
}
