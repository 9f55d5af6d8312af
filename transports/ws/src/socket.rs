//! A connection's byte stream (TCP, or TLS over TCP) and how it splits
//! into the two halves a link's reader and writer own.

use std::time::Duration;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use smol::net::TcpStream;

use crate::link::Keepalive;

pub(crate) type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// A stream that can be split for a link.
pub(crate) trait IntoHalves: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn into_halves(self) -> (BoxRead, BoxWrite);
}

/// A socket splits without a lock: each half is a clone of it.
impl IntoHalves for TcpStream {
    fn into_halves(self) -> (BoxRead, BoxWrite) {
        (Box::new(self.clone()), Box::new(self))
    }
}

/// TLS state is one object; its halves share it through a lock held only
/// for each read or write.
impl IntoHalves for etherws_tls::futures_rustls::client::TlsStream<TcpStream> {
    fn into_halves(self) -> (BoxRead, BoxWrite) {
        let (r, w) = self.split();
        (Box::new(r), Box::new(w))
    }
}

impl IntoHalves for etherws_tls::futures_rustls::server::TlsStream<TcpStream> {
    fn into_halves(self) -> (BoxRead, BoxWrite) {
        let (r, w) = self.split();
        (Box::new(r), Box::new(w))
    }
}

/// TCP options every link gets: no Nagle delay, and with keepalive a
/// TCP_USER_TIMEOUT of interval + timeout, so data that the peer never
/// acknowledges (a cut cable while frames are queued) also ends the link;
/// the congestion control `cc` if one was asked for (`--tcp-cc`).
pub(crate) fn tune(tcp: &TcpStream, keepalive: Option<Keepalive>, cc: Option<&str>) {
    let _ = tcp.set_nodelay(true);
    let sock = socket2::SockRef::from(tcp);
    if let Some(k) = keepalive {
        let _ = sock.set_tcp_user_timeout(Some(k.dead_after().max(Duration::from_secs(1))));
    }
    if let Some(cc) = cc {
        if let Err(e) = sock.set_tcp_congestion(cc.as_bytes()) {
            // Once per process: the same error would repeat per link.
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log::warn!("TCP congestion control {cc:?} not set ({e}); links use the system's");
            }
        }
    }
}
