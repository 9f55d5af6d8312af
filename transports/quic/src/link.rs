//! A QUIC connection's two halves as a link: datagrams in, datagrams out.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use etherws_core::futures::future::BoxFuture;
use etherws_core::futures::{FutureExt, Sink, Stream};
use etherws_core::{Frame, Link, LinkError, LinkParams, PeerInfo};
use quinn::{Connection, ConnectionError, Endpoint, SendDatagramError, VarInt};

use crate::frag::{self, Got, Reassembly};
use crate::QuicStats;

/// Close code of an orderly end.
const DONE: u32 = 0;

/// `endpoint` lives as long as the link (a server's too, so that links
/// close in order after the listener is gone); a `client` link owns its
/// endpoint and waits for it to go idle when it closes.
pub(crate) fn make(
    conn: Connection,
    endpoint: Endpoint,
    client: bool,
    params: &LinkParams,
    stats: Arc<QuicStats>,
    user: Option<String>,
) -> Link {
    let peer = PeerInfo {
        scheme: "quic",
        remote: conn.remote_address().to_string(),
    };
    let rx = QuicRx {
        conn: conn.clone(),
        read: None,
        reasm: Reassembly::new(params.max_frame + frag::PIECE_HEADER * frag::MAX_PIECES),
        lost_seen: 0,
        max_frame: params.max_frame,
        stats: stats.clone(),
        done: false,
        _endpoint: endpoint.clone(),
    };
    let tx = QuicTx {
        empty_space: conn.datagram_send_buffer_space(),
        conn,
        endpoint: client.then_some(endpoint),
        next_id: 0,
        stats,
        closing: None,
    };
    let probe = Arc::new(Session(tx.conn.clone()));
    let mut link = Link::new(Box::pin(rx), Box::pin(tx), peer);
    link.user = user;
    link.probe = Some(probe);
    link
}

/// An authenticated user's connection, for the gate: a removed user's
/// link is closed with code 1008 (as ws://'s).
pub(crate) struct Session(pub Connection);

/// QUIC's own smoothed round-trip estimate.
impl etherws_core::LinkProbe for Session {
    fn rtt(&self) -> Option<Duration> {
        Some(self.0.rtt())
    }
}

impl etherws_auth::Revocable for Session {
    fn is_alive(&self) -> bool {
        self.0.close_reason().is_none()
    }
    fn revoke(&self) -> bool {
        let alive = self.is_alive();
        self.0.close(
            VarInt::from_u32(crate::opening::code::REVOKED),
            b"credentials revoked",
        );
        alive
    }
}

struct QuicRx {
    conn: Connection,
    read: Option<BoxFuture<'static, Result<Bytes, ConnectionError>>>,
    reasm: Reassembly,
    lost_seen: u64,
    max_frame: usize,
    stats: Arc<QuicStats>,
    done: bool,
    /// The endpoint lives as long as the link.
    _endpoint: Endpoint,
}

impl Stream for QuicRx {
    type Item = Result<Frame, LinkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let read = this.read.get_or_insert_with(|| {
                let c = this.conn.clone();
                async move { c.read_datagram().await }.boxed()
            });
            let got = match read.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            this.read = None;
            let d = match got {
                Ok(d) => d,
                Err(ConnectionError::ApplicationClosed(c))
                    if c.error_code == VarInt::from_u32(DONE) =>
                {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Err(ConnectionError::LocallyClosed) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Err(e) => {
                    this.done = true;
                    let kind = match e {
                        ConnectionError::TimedOut => std::io::ErrorKind::TimedOut,
                        _ => std::io::ErrorKind::ConnectionAborted,
                    };
                    return Poll::Ready(Some(Err(LinkError::Io(std::io::Error::new(
                        kind,
                        e.to_string(),
                    )))));
                }
            };
            let got = this.reasm.push(d);
            if this.reasm.lost > this.lost_seen {
                this.stats
                    .incomplete
                    .fetch_add(this.reasm.lost - this.lost_seen, Relaxed);
                this.lost_seen = this.reasm.lost;
            }
            match got {
                Got::Frame(f) if f.len() > this.max_frame => {
                    return Poll::Ready(Some(Err(LinkError::Oversize(f.len()))))
                }
                Got::Frame(f) => return Poll::Ready(Some(Ok(Frame::new(f)))),
                Got::Piece => {}
                Got::Malformed => {
                    this.stats.malformed.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

struct QuicTx {
    conn: Connection,
    /// A client's own endpoint, to wait on at close.
    endpoint: Option<Endpoint>,
    next_id: u32,
    stats: Arc<QuicStats>,
    closing: Option<BoxFuture<'static, ()>>,
    /// `datagram_send_buffer_space()` with nothing queued (quinn keeps
    /// a little back for bookkeeping).
    empty_space: usize,
}

fn lost(e: ConnectionError) -> LinkError {
    LinkError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        e.to_string(),
    ))
}

impl Sink<Frame> for QuicTx {
    type Error = LinkError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        // quinn buffers a bounded amount and drops the oldest datagrams
        // beyond it: a congested path loses frames, it never blocks.
        Poll::Ready(match self.conn.close_reason() {
            Some(e) => Err(lost(e)),
            None => Ok(()),
        })
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), LinkError> {
        let max = self
            .conn
            .max_datagram_size()
            .ok_or_else(|| LinkError::Protocol("the peer does not take QUIC datagrams".into()))?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let datagrams = match frag::pieces(frame.bytes(), max, id) {
            Ok(d) => d,
            Err(frag::SplitError::TooLarge) => {
                let n = self.stats.too_large.fetch_add(1, Relaxed) + 1;
                if self.stats.log.check(std::time::Instant::now()).is_some() {
                    log::warn!("quic: a {}-byte frame needs more than 64 datagrams of {max} bytes; dropped ({n} so far)", frame.len());
                }
                return Ok(());
            }
        };
        for d in datagrams {
            match self.conn.send_datagram(d) {
                Ok(()) => {}
                // The path's datagram size shrank between the two calls:
                // this frame is lost, the link is not.
                Err(SendDatagramError::TooLarge) => {
                    self.stats.too_large.fetch_add(1, Relaxed);
                    return Ok(());
                }
                Err(SendDatagramError::ConnectionLost(e)) => return Err(lost(e)),
                Err(e) => return Err(LinkError::Protocol(e.to_string())),
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        Poll::Ready(match self.conn.close_reason() {
            Some(ConnectionError::LocallyClosed) | None => Ok(()),
            Some(e) => Err(lost(e)),
        })
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if self.closing.is_none() {
            let (conn, endpoint) = (self.conn.clone(), self.endpoint.clone());
            let empty = self.empty_space;
            self.closing = Some(
                async move {
                    // Closing discards datagrams not yet sent: let them go
                    // out first (at most a second), so the frames sent
                    // before the close arrive before it.
                    let t0 = std::time::Instant::now();
                    while conn.datagram_send_buffer_space() < empty
                        && conn.close_reason().is_none()
                        && t0.elapsed() < Duration::from_secs(1)
                    {
                        async_io::Timer::after(Duration::from_millis(1)).await;
                    }
                    conn.close(VarInt::from_u32(DONE), b"closed");
                    // A client waits (briefly) until its CONNECTION_CLOSE is out.
                    if let Some(ep) = endpoint {
                        let idle = ep.wait_idle();
                        let _ = etherws_core::futures::future::select(
                            Box::pin(idle),
                            async_io::Timer::after(Duration::from_secs(1)),
                        )
                        .await;
                    }
                }
                .boxed(),
            );
        }
        match self.closing.as_mut().expect("set").as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}
