//! In-memory links and the `mem://` transport, for tests of nodes,
//! filters and transports (feature `testing`). No sockets, no runtime:
//! a pair of bounded `futures` channels per link.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use url::Url;

use crate::helpers::bad_url;
use crate::transport::{
    Link, LinkError, LinkParams, Listener, PeerInfo, PendingLink, Transport, TransportError,
};

/// Two links joined back to back: a frame sent on one's `tx` comes out of
/// the other's `rx`. Each direction holds at most `capacity` frames
/// (then `poll_ready` pends: backpressure); closing a `tx` ends the other
/// `rx`.
pub fn pair(capacity: usize, a: &str, b: &str) -> (Link, Link) {
    let (a_tx, b_rx) = mpsc::channel(capacity);
    let (b_tx, a_rx) = mpsc::channel(capacity);
    let end = |tx: mpsc::Sender<_>, rx: mpsc::Receiver<_>, remote: &str| {
        Link::new(
            Box::pin(rx.map(Ok)),
            Box::pin(tx.sink_map_err(|_| LinkError::Closed)),
            PeerInfo {
                scheme: "mem",
                remote: remote.to_string(),
            },
        )
    };
    (end(a_tx, a_rx, b), end(b_tx, b_rx, a))
}

type Backlog = mpsc::UnboundedSender<Link>;

/// The `mem://NAME` transport: `listen("mem://x")` registers the name in
/// this value (and its clones); `connect("mem://x")` makes a [`pair`] and
/// hands one end to that listener. Connecting to a name nobody listens on
/// fails at once with a "connection refused" I/O error.
#[derive(Clone, Default)]
pub struct Mem {
    names: Arc<Mutex<HashMap<String, Backlog>>>,
    /// Frames per direction of each link.
    pub capacity: usize,
}

impl Mem {
    pub fn new(capacity: usize) -> Self {
        Mem {
            names: Arc::default(),
            capacity,
        }
    }
}

fn name(url: &Url) -> Result<String, TransportError> {
    url.host_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .ok_or_else(|| bad_url(url, "mem:// needs a name: mem://NAME"))
}

impl Transport for Mem {
    fn schemes(&self) -> &[&'static str] {
        &["mem"]
    }

    fn connect(
        &self,
        url: &Url,
        _params: &LinkParams,
    ) -> BoxFuture<'static, Result<Link, TransportError>> {
        let r = name(url).and_then(|n| {
            let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            let backlog = names.get(&n).ok_or_else(|| TransportError::Io {
                context: format!("connecting to mem://{n}"),
                error: std::io::ErrorKind::ConnectionRefused.into(),
            })?;
            let (ours, theirs) = pair(self.capacity.max(1), &n, "client");
            backlog
                .unbounded_send(theirs)
                .map_err(|_| TransportError::Io {
                    context: format!("connecting to mem://{n}"),
                    error: std::io::ErrorKind::ConnectionRefused.into(),
                })?;
            Ok(ours)
        });
        futures::future::ready(r).boxed()
    }

    fn listen(
        &self,
        url: &Url,
        _params: &LinkParams,
    ) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
        let r = name(url).map(|n| {
            let (tx, rx) = mpsc::unbounded();
            self.names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(n.clone(), tx);
            Box::new(MemListener {
                name: n,
                backlog: rx,
                names: self.names.clone(),
            }) as Box<dyn Listener>
        });
        futures::future::ready(r).boxed()
    }
}

struct MemListener {
    name: String,
    backlog: mpsc::UnboundedReceiver<Link>,
    names: Arc<Mutex<HashMap<String, Backlog>>>,
}

impl Listener for MemListener {
    fn accept(&mut self) -> BoxFuture<'_, Result<PendingLink, TransportError>> {
        async move {
            match self.backlog.next().await {
                Some(link) => Ok(futures::future::ready(Ok(link)).boxed()),
                None => futures::future::pending().await,
            }
        }
        .boxed()
    }

    fn local_addr(&self) -> String {
        self.name.clone()
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.name);
    }
}
