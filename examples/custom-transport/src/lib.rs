//! Two transports written against etherws-core's public API alone, as a
//! third party would (spec/transport.md):
//!
//! - `exec:COMMAND ARGS...` runs a command and speaks the stream framing
//!   (spec/protocol.md §12) over its stdin and stdout. With `etherws stdio`
//!   at the other end, `exec:ssh host etherws stdio` tunnels over SSH
//!   with no port opened on the host. Dial only.
//! - `unix:PATH` carries the same framing over a Unix stream socket:
//!   listen and dial, for tunnels between containers on one host.
//!
//! `src/main.rs` registers both in a complete `etherws` program.

// The plugin guide's code, compiled as written: `cargo test --doc` here
// builds every Rust block of spec/transport.md against this crate.
#[cfg(doctest)]
#[doc = include_str!("../../../spec/transport.md")]
pub struct TransportGuide;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use etherws_core::futures::future::BoxFuture;
use etherws_core::futures::{AsyncRead, AsyncWrite, FutureExt};
use etherws_core::helpers::{bad_url, bound, io_error, timeout};
use etherws_core::url::Url;
use etherws_core::{
    stream, Link, LinkParams, Listener, PeerInfo, PendingLink, Transport, TransportError,
};

/// `exec:COMMAND ARGS...`: the command line is the URL's path, split like
/// a shell would (quotes, backslashes; no variables or globs), e.g.
/// `exec:ssh -T host etherws stdio`.
#[derive(Clone, Debug, Default)]
pub struct Exec;

impl Exec {
    fn command(url: &Url) -> Result<Vec<String>, TransportError> {
        let path = percent_decode(url.path());
        let argv = shell_words::split(&path).map_err(|e| bad_url(url, e.to_string()))?;
        if argv.is_empty() {
            return Err(bad_url(
                url,
                "exec: needs a command, e.g. exec:ssh host etherws stdio",
            ));
        }
        Ok(argv)
    }
}

/// `%20` and friends back to bytes (a URL given with escapes).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The child's stdin, holding the child: dropping the link's sending half
/// ends the process (`kill_on_drop`).
struct ChildIn {
    /// `None` once closed: the pipe's `poll_close` only flushes, and the
    /// peer sees the end of the stream only when the descriptor closes.
    stdin: Option<smol::process::ChildStdin>,
    _child: Arc<smol::process::Child>,
}

fn closed() -> std::io::Error {
    std::io::ErrorKind::BrokenPipe.into()
}

impl AsyncWrite for ChildIn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.stdin {
            Some(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            None => std::task::Poll::Ready(Err(closed())),
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.stdin {
            Some(s) => std::pin::Pin::new(s).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(s) = &mut self.stdin {
            std::task::ready!(std::pin::Pin::new(s).poll_close(cx))?;
        }
        self.stdin = None;
        std::task::Poll::Ready(Ok(()))
    }
}

impl Transport for Exec {
    fn schemes(&self) -> &[&'static str] {
        &["exec"]
    }

    fn connect(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Link, TransportError>> {
        let (url, params) = (url.clone(), params.clone());
        async move {
            let argv = Exec::command(&url)?;
            let shown = argv.join(" ");
            let mut child = smol::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(smol::process::Stdio::piped())
                .stdout(smol::process::Stdio::piped())
                // Its messages (ssh's prompts, the far end's log) show.
                .stderr(smol::process::Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(io_error(format!("running {shown:?}")))?;
            let mut stdin = child.stdin.take().expect("piped");
            let mut stdout = child.stdout.take().expect("piped");
            // Under `params.handshake_timeout` (the handshake's own).
            stream::handshake(&mut stdout, &mut stdin, &params).await?;
            let write = ChildIn {
                stdin: Some(stdin),
                _child: Arc::new(child),
            };
            Ok(stream::link(
                stdout,
                write,
                &params,
                PeerInfo {
                    scheme: "exec",
                    remote: shown,
                },
            ))
        }
        .boxed()
    }

    fn listen(
        &self,
        url: &Url,
        _params: &LinkParams,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
        let e = bad_url(
            url,
            "exec: only dials; run `etherws stdio` at the other end",
        );
        async move { Err(e) }.boxed()
    }
}

/// `unix:PATH` (or `unix:///PATH`): the stream framing over a Unix
/// stream socket. Listening removes a stale socket file first.
///
/// It takes part in the program's reload and report through the
/// `Transport` trait alone: `counters` says how many links it made and
/// how many greetings failed, `reload` checks that each socket it listens
/// on is still there (a cleaner may have removed it).
#[derive(Clone, Debug, Default)]
pub struct Unix {
    state: Arc<UnixState>,
}

#[derive(Debug, Default)]
struct UnixState {
    links: AtomicU64,
    failed: AtomicU64,
    /// The socket paths listened on.
    listening: Mutex<Vec<String>>,
}

fn unix_path(url: &Url) -> Result<String, TransportError> {
    let p = percent_decode(url.path());
    if p.is_empty() {
        return Err(bad_url(
            url,
            "unix: needs a socket path, e.g. unix:/run/etherws.sock",
        ));
    }
    Ok(p)
}

async fn handshake_link<R, W>(
    mut r: R,
    mut w: W,
    params: LinkParams,
    remote: String,
    state: Arc<UnixState>,
) -> Result<Link, TransportError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    if let Err(e) = stream::handshake(&mut r, &mut w, &params).await {
        state.failed.fetch_add(1, Relaxed);
        return Err(e);
    }
    state.links.fetch_add(1, Relaxed);
    Ok(stream::link(
        r,
        w,
        &params,
        PeerInfo {
            scheme: "unix",
            remote,
        },
    ))
}

impl Transport for Unix {
    fn schemes(&self) -> &[&'static str] {
        &["unix"]
    }

    fn connect(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Link, TransportError>> {
        let (path, params) = (unix_path(url), params.clone());
        let state = self.state.clone();
        async move {
            let path = path?;
            // The caller prints the URL: the context says what failed.
            timeout(params.handshake_timeout, "connecting", async {
                let s = smol::net::unix::UnixStream::connect(&path)
                    .await
                    .map_err(io_error("connecting"))?;
                // The socket's two clones are independent halves (no lock).
                handshake_link(s.clone(), s, params.clone(), path.clone(), state).await
            })
            .await
        }
        .boxed()
    }

    fn listen(
        &self,
        url: &Url,
        params: &LinkParams,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
        // Binds now: a bind error is this future's error.
        let r = unix_path(url).and_then(|path| {
            let _ = std::fs::remove_file(&path);
            let l = smol::net::unix::UnixListener::bind(&path)
                .map_err(io_error(format!("binding unix:{path}")))?;
            lock(&self.state.listening).push(path.clone());
            Ok(UnixListener {
                l,
                path,
                params: params.clone(),
                state: self.state.clone(),
            })
        });
        bound(r)
    }

    fn reload(&self) -> Vec<Result<String, String>> {
        lock(&self.state.listening)
            .iter()
            .map(|p| {
                if std::path::Path::new(p).exists() {
                    Ok(format!("unix:{p} still listening"))
                } else {
                    Err(format!(
                        "unix:{p}: the socket file is gone; clients cannot reach it until a restart"
                    ))
                }
            })
            .collect()
    }

    fn counters(&self) -> Vec<(String, u64)> {
        vec![
            ("unix links made".into(), self.state.links.load(Relaxed)),
            (
                "unix greetings failed".into(),
                self.state.failed.load(Relaxed),
            ),
        ]
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct UnixListener {
    l: smol::net::unix::UnixListener,
    path: String,
    params: LinkParams,
    state: Arc<UnixState>,
}

impl Listener for UnixListener {
    fn accept(&mut self) -> BoxFuture<'_, Result<PendingLink, TransportError>> {
        async move {
            let (s, _) = self
                .l
                .accept()
                .await
                .map_err(io_error("accepting on a unix socket"))?;
            let (params, remote) = (self.params.clone(), format!("{} (accepted)", self.path));
            // The greeting runs in the pending link, under the handshake's
            // own timeout: a silent peer holds up nobody.
            let state = self.state.clone();
            Ok(handshake_link(s.clone(), s, params, remote, state).boxed() as PendingLink)
        }
        .boxed()
    }

    fn local_addr(&self) -> String {
        self.path.clone()
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        lock(&self.state.listening).retain(|p| *p != self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_urls_split_like_a_shell() {
        let u: Url = "exec:ssh -T host 'etherws stdio'".parse().unwrap();
        assert_eq!(
            Exec::command(&u).unwrap(),
            ["ssh", "-T", "host", "etherws stdio"]
        );
        let u: Url = "exec:ip%20netns%20exec%20b%20etherws%20stdio"
            .parse()
            .unwrap();
        assert_eq!(
            Exec::command(&u).unwrap(),
            ["ip", "netns", "exec", "b", "etherws", "stdio"]
        );
        assert!(Exec::command(&"exec:".parse().unwrap()).is_err());
    }
}
