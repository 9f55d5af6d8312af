//! The client side: HELLO until WELCOME, then a link over a socket
//! connected to the server.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use etherws_core::futures::future::{self, Either};
use etherws_core::helpers::{host_port, io_error, timeout};
use etherws_core::url::Url;
use etherws_core::{Link, LinkParams, PeerInfo, TransportError};

use crate::link::{ClientRx, Shared, UdpTx};
use crate::wire::{self, kind, Replay};
use crate::{now_ms, UdpConfig, UdpStats, DEFAULT_PORT};

/// HELLO is repeated this often until WELCOME comes (or the handshake
/// times out).
const HELLO_EVERY: Duration = Duration::from_millis(500);

pub(crate) async fn connect(
    cfg: Arc<UdpConfig>,
    stats: Arc<UdpStats>,
    url: Url,
    params: LinkParams,
) -> Result<Link, TransportError> {
    let (host, port) = host_port(&url, Some(DEFAULT_PORT))?;
    let what = format!("udp handshake with {url}");
    timeout(params.handshake_timeout, what, async move {
        let addr = smol::net::resolve((host.as_str(), port))
            .await
            .map_err(io_error(format!("resolving {host}")))?
            .into_iter()
            .next()
            .ok_or_else(|| TransportError::Io {
                context: format!("resolving {host}"),
                error: io::ErrorKind::NotFound.into(),
            })?;
        let any = etherws_core::helpers::any_addr_for(&addr);
        let sock = Async::<UdpSocket>::bind(any).map_err(io_error("binding a UDP socket"))?;
        sock.get_ref()
            .connect(addr)
            .map_err(io_error(format!("connecting to {addr}")))?;
        hello(cfg, stats, Arc::new(sock), addr, &params).await
    })
    .await
}

async fn hello(
    cfg: Arc<UdpConfig>,
    stats: Arc<UdpStats>,
    sock: Arc<Async<UdpSocket>>,
    addr: SocketAddr,
    params: &LinkParams,
) -> Result<Link, TransportError> {
    let nonce: [u8; 16] = rand::random();
    let options = if cfg.offload && params.offload {
        wire::OPT_VNET
    } else {
        0
    };
    let mut counter = 1u64;
    let mut cookie = [0u8; 16];
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    let failed = |what: &str, e| TransportError::Io {
        context: what.to_string(),
        error: e,
    };
    loop {
        let key = cfg.psk.as_ref().map(|k| (k, counter));
        counter += 1;
        wire::encode(
            &mut out,
            kind::HELLO,
            0,
            key,
            &wire::hello(nonce, params.max_frame as u32, options, cookie),
        );
        sock.send(&out)
            .await
            .map_err(|e| failed("sending HELLO", e))?;
        let deadline = Timer::after(HELLO_EVERY);
        let mut deadline = std::pin::pin!(deadline);
        loop {
            let n = match future::select(Box::pin(sock.recv(&mut buf)), deadline.as_mut()).await {
                Either::Left((Ok(n), _)) => n,
                Either::Left((Err(e), _)) => return Err(failed("waiting for WELCOME", e)),
                Either::Right(_) => break, // say HELLO again
            };
            let Ok(d) = wire::decode(&buf[..n], cfg.psk.as_ref()) else {
                continue;
            };
            if d.kind == kind::COOKIE {
                // The server checks that we receive at our address: say
                // HELLO again at once, with its cookie.
                match wire::parse_cookie(d.payload) {
                    Some((echo, c)) if echo == nonce && c != cookie => {
                        cookie = c;
                        break;
                    }
                    _ => continue,
                }
            }
            let Some((echo, their_max, granted)) = wire::parse_welcome(d.payload) else {
                continue;
            };
            if d.kind != kind::WELCOME || echo != nonce || d.session == 0 {
                continue;
            }
            if (their_max as usize) < params.max_frame {
                log::warn!(
                    "udp: {addr} takes frames up to {their_max} bytes, we send up to {}: \
                     use the same --mtu on both ends",
                    params.max_frame
                );
            }
            let mut replay = Replay::default();
            replay.accept(d.counter);
            let sh = Arc::new(Shared {
                sock: sock.clone(),
                to: std::sync::Mutex::new(None),
                session: d.session,
                key: cfg.psk.clone(),
                counter: AtomicU64::new(counter),
                last_rx: AtomicU64::new(now_ms()),
                last_tx: AtomicU64::new(now_ms()),
                max_frame: params.max_frame,
                stats: stats.clone(),
                closed: AtomicBool::new(false),
                vnet: options & granted & wire::OPT_VNET != 0,
                queued: AtomicUsize::new(0),
                queued_frames: AtomicUsize::new(0),
                ping_at: AtomicU64::new(0),
                rtt_us: AtomicU64::new(0),
            });
            let vnet = sh.vnet;
            if options & wire::OPT_VNET != 0 && !vnet {
                log::info!("udp: {addr} does not take offload; frames are cut to the MTU here");
            }
            let probe: Arc<dyn etherws_core::LinkProbe> = sh.clone();
            let rx = ClientRx::new(sh.clone(), replay, params.keepalive);
            let tx = UdpTx::new(sh, params.keepalive);
            let mut link = Link::new(
                Box::pin(rx),
                Box::pin(tx),
                PeerInfo {
                    scheme: "udp",
                    remote: addr.to_string(),
                },
            );
            link.offload = vnet;
            link.offload_udp = vnet;
            link.probe = Some(probe);
            // Whole super-frames cross fragmented by choice (offload);
            // otherwise each frame is one datagram: clamp.
            link.mss_clamp = (params.clamp_mss && !vnet).then(|| crate::mss_for(cfg.psk.is_some()));
            return Ok(link);
        }
    }
}
