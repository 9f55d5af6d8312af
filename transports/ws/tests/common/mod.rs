//! Helpers shared by the ws transport's loopback tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use etherws_core::{Node, NodeConfig, PortConfig, PortKind, Registry, TransportError};
use url::Url;

pub const T: Duration = Duration::from_secs(10);

/// Serves `url` (port 0) with `transport`, attaching every link to a node
/// whose ports run on a background executor. Returns the bound address,
/// the node, and a receiver of refused connections' errors.
pub fn serve(
    transport: etherws_ws::Ws,
    url: &str,
) -> (String, Node, async_channel::Receiver<TransportError>) {
    serve_node(Node::new(NodeConfig::for_mtu(1500)), transport, url)
}

/// [`serve`] with a node of the caller's.
pub fn serve_node(
    node: Node,
    transport: etherws_ws::Ws,
    url: &str,
) -> (String, Node, async_channel::Receiver<TransportError>) {
    let url = Url::parse(url).unwrap();
    let params = transport.config().link_params();
    let reg = Registry::new().with(transport);
    let mut listener = smol::block_on(reg.listen(&url, &params)).unwrap();
    let addr = listener.local_addr();
    let (etx, erx) = async_channel::unbounded();
    let n = node.clone();
    std::thread::spawn(move || {
        let ex = Arc::new(smol::Executor::new());
        let ex2 = ex.clone();
        smol::block_on(ex.run(async move {
            loop {
                let pending = match listener.accept().await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = etx.send(e).await;
                        continue;
                    }
                };
                let n = n.clone();
                let etx = etx.clone();
                ex2.spawn(async move {
                    match pending.await {
                        Ok(link) => run_link(&n, link).await,
                        Err(e) => {
                            let _ = etx.send(e).await;
                        }
                    }
                })
                .detach();
            }
        }));
    });
    (addr, node, erx)
}

/// Attaches `link` to `node` and runs the port until it ends.
pub async fn run_link(node: &Node, link: etherws_core::Link) {
    let p = node.attach(link, PortKind::Link, PortConfig::default());
    let w = smol::spawn(p.writer);
    p.reader.await;
    w.await;
}

/// Polls `f` every 10 ms for up to [`T`].
pub fn wait(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + T;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A broadcast frame of `len` bytes from station `src`.
pub fn eth(src: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}
