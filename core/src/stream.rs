//! Frames over any byte stream (a pipe, a child's stdin/stdout, a Unix
//! socket, an SSH channel): the *stream framing* of spec/protocol.md §12.
//!
//! Each side first writes the 8-byte greeting [`GREETING`] and checks the
//! peer's, so a wrong program at the other end (a shell banner, a login
//! prompt) fails the handshake instead of being read as frames. Then each
//! record is a 4-byte big-endian length and that many bytes of frame; a
//! zero length is a keepalive and carries no frame.
//!
//! This is what `etherws stdio` speaks and what an `exec://`-style
//! transport builds on: [`handshake`] then [`link`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Sink, Stream};

use crate::frame::Frame;
use crate::helpers::{io_error, timeout};
use crate::keepalive::{KeepaliveMachine, Probing};
use crate::transport::{Keepalive, Link, LinkError, LinkParams, PeerInfo, TransportError};

/// What each side writes first: protocol name and version.
pub const GREETING: &[u8; 8] = b"etherws1";

/// Records longer than max frame + this fail the link; between the two
/// they are skipped and reported as [`LinkError::Oversize`].
pub const HEADROOM: usize = 64 * 1024;

/// The sink stops taking frames (`poll_ready` pends) while this many bytes
/// wait to be written.
const WRITE_HIGH: usize = 256 * 1024;

/// Exchanges greetings within `params.handshake_timeout`.
pub async fn handshake<R, W>(
    read: &mut R,
    write: &mut W,
    params: &LinkParams,
) -> Result<(), TransportError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    timeout(params.handshake_timeout, "stream greeting", async {
        write
            .write_all(GREETING)
            .await
            .map_err(io_error("writing the greeting"))?;
        write
            .flush()
            .await
            .map_err(io_error("writing the greeting"))?;
        let mut got = [0u8; 8];
        read.read_exact(&mut got)
            .await
            .map_err(io_error("reading the peer's greeting"))?;
        if &got != GREETING {
            return Err(TransportError::Handshake(format!(
                "the peer is not an etherws stream (it said {:?})",
                String::from_utf8_lossy(&got)
            )));
        }
        Ok(())
    })
    .await
}

/// A link over a stream's two halves, after [`handshake`]. `params` gives
/// max frame and keepalive.
pub fn link<R, W>(read: R, write: W, params: &LinkParams, peer: PeerInfo) -> Link
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let rx = StreamRx {
        read,
        buf: BytesMut::new(),
        scratch: vec![0; 64 * 1024],
        max_frame: params.max_frame,
        done: false,
        // The reader only asks when the link is dead; the writer only
        // when a heartbeat is due (each end sends its own, unanswered).
        keepalive: params.keepalive.map(machine),
        timer: None,
    };
    let tx = StreamTx {
        write,
        out: Vec::new(),
        written: 0,
        keepalive: params.keepalive.map(machine),
        timer: None,
        failed: false,
    };
    Link::new(Box::pin(rx), Box::pin(tx), peer)
}

/// The stream framing's keepalive: an empty record after every interval
/// without sending ([`Probing::Tx`]).
fn machine(k: Keepalive) -> KeepaliveMachine {
    KeepaliveMachine::new(k, Instant::now()).with_probing(Probing::Tx)
}

struct StreamRx<R> {
    read: R,
    buf: BytesMut,
    scratch: Vec<u8>,
    max_frame: usize,
    /// The stream ended (in order or after a fatal error).
    done: bool,
    keepalive: Option<KeepaliveMachine>,
    timer: Option<async_io::Timer>,
}

impl<R> StreamRx<R> {
    /// One record from `buf`, if a whole one is there.
    fn record(&mut self) -> Option<Result<Option<Frame>, LinkError>> {
        if self.buf.len() < 4 {
            return None;
        }
        let n = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
        if n > self.max_frame + HEADROOM {
            return Some(Err(LinkError::Protocol(format!(
                "{n}-byte record exceeds max frame {} + {HEADROOM}",
                self.max_frame
            ))));
        }
        if self.buf.len() < 4 + n {
            self.buf.reserve(4 + n - self.buf.len());
            return None;
        }
        self.buf.advance(4);
        let body = self.buf.split_to(n).freeze();
        Some(match n {
            0 => Ok(None),
            n if n > self.max_frame => Err(LinkError::Oversize(n)),
            _ => Ok(Some(Frame::new(body))),
        })
    }
}

impl<R: AsyncRead + Unpin> Stream for StreamRx<R> {
    type Item = Result<Frame, LinkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.record() {
                Some(Ok(None)) => continue, // keepalive
                Some(Ok(Some(f))) => return Poll::Ready(Some(Ok(f))),
                Some(Err(e)) => {
                    this.done = e.is_fatal();
                    return Poll::Ready(Some(Err(e)));
                }
                None => {}
            }
            match Pin::new(&mut this.read).poll_read(cx, &mut this.scratch) {
                Poll::Ready(Ok(0)) => {
                    this.done = true;
                    if this.buf.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(LinkError::Protocol(
                        "the stream ended in the middle of a frame".into(),
                    ))));
                }
                Poll::Ready(Ok(n)) => {
                    this.buf.extend_from_slice(&this.scratch[..n]);
                    if let Some(m) = &mut this.keepalive {
                        m.on_rx(Instant::now());
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(LinkError::Io(e))));
                }
                Poll::Pending => {
                    let Some(m) = &this.keepalive else {
                        return Poll::Pending;
                    };
                    // The deadline only moves later: an armed timer that
                    // has not fired needs no look (re-arming costs a
                    // reactor round trip).
                    if let Some(t) = &mut this.timer {
                        if Pin::new(t).poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    let deadline = m.dead_at();
                    if Instant::now() >= deadline {
                        this.done = true;
                        return Poll::Ready(Some(Err(LinkError::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("nothing received for {:?}", m.config().dead_after()),
                        )))));
                    }
                    match &mut this.timer {
                        Some(t) => {
                            t.set_at(deadline);
                        }
                        None => this.timer = Some(async_io::Timer::at(deadline)),
                    }
                    // Polled at the top of the next round.
                }
            }
        }
    }
}

use std::future::Future;

struct StreamTx<W> {
    write: W,
    /// Records not yet written; `written` bytes of it are.
    out: Vec<u8>,
    written: usize,
    keepalive: Option<KeepaliveMachine>,
    timer: Option<async_io::Timer>,
    failed: bool,
}

impl<W: AsyncWrite + Unpin> StreamTx<W> {
    /// Writes what is buffered; `Ready(Ok)` once all of it is.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if self.failed {
            return Poll::Ready(Err(LinkError::Closed));
        }
        while self.written < self.out.len() {
            match Pin::new(&mut self.write).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    self.failed = true;
                    return Poll::Ready(Err(LinkError::Io(io::ErrorKind::WriteZero.into())));
                }
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    if let Some(m) = &mut self.keepalive {
                        m.on_tx(Instant::now());
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.failed = true;
                    return Poll::Ready(Err(LinkError::Io(e)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Queues a keepalive record when nothing was sent for the interval,
    /// and arms a timer for the next one.
    fn keepalive(&mut self, cx: &mut Context<'_>) {
        let Some(m) = &mut self.keepalive else { return };
        loop {
            // As in the reader: only a timer that fired is re-armed.
            if let Some(t) = &mut self.timer {
                if Pin::new(t).poll(cx).is_pending() {
                    return;
                }
            }
            if m.probe_due(Instant::now()) {
                // Anything already buffered goes out anyway and does as well.
                if self.out.is_empty() {
                    self.out.extend_from_slice(&0u32.to_be_bytes());
                }
                continue;
            }
            let due = m.next_probe();
            match &mut self.timer {
                Some(t) => {
                    t.set_at(due);
                }
                None => self.timer = Some(async_io::Timer::at(due)),
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> Sink<Frame> for StreamTx<W> {
    type Error = LinkError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = &mut *self;
        if this.out.len() - this.written < WRITE_HIGH {
            return Poll::Ready(if this.failed {
                Err(LinkError::Closed)
            } else {
                Ok(())
            });
        }
        // Full: the node does not flush while it waits here, so write now.
        this.poll_write_out(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), LinkError> {
        if self.failed {
            return Err(LinkError::Closed);
        }
        let b = frame.into_bytes();
        self.out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.out.extend_from_slice(&b);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = &mut *self;
        this.keepalive(cx);
        match this.poll_write_out(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        Pin::new(&mut this.write)
            .poll_flush(cx)
            .map_err(LinkError::Io)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = &mut *self;
        match this.poll_write_out(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        Pin::new(&mut this.write)
            .poll_close(cx)
            .map_err(LinkError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::{SinkExt, StreamExt};

    /// Every item a link reading `wire` (and writing nowhere) yields.
    fn frames_of(wire: Vec<u8>) -> Vec<Result<Frame, LinkError>> {
        let link = link(
            futures::io::Cursor::new(wire),
            futures::io::sink(),
            &params(),
            PeerInfo {
                scheme: "t",
                remote: "t".into(),
            },
        );
        block_on(link.rx.collect::<Vec<_>>())
    }

    fn params() -> LinkParams {
        LinkParams::new(1518).with_keepalive(None)
    }

    #[test]
    fn records_keepalives_oversize_and_a_cut_end() {
        let mut wire = Vec::new();
        for rec in [
            &b"abcdefghijklmn"[..],
            &[],
            &[7u8; 2000][..],
            &b"xyzxyzxyzxyzxy"[..],
        ] {
            wire.extend_from_slice(&(rec.len() as u32).to_be_bytes());
            wire.extend_from_slice(rec);
        }
        wire.extend_from_slice(&[0, 0, 0, 20, 1, 2]); // cut mid-frame
        let got = frames_of(wire);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(&got[0].as_ref().unwrap().bytes()[..], b"abcdefghijklmn");
        assert!(matches!(got[1], Err(LinkError::Oversize(2000))));
        assert_eq!(&got[2].as_ref().unwrap().bytes()[..], b"xyzxyzxyzxyzxy");
        assert!(matches!(&got[3], Err(e) if e.is_fatal()));
    }

    #[test]
    fn a_huge_length_is_fatal_and_the_stream_ends() {
        let wire = (10_000_000u32).to_be_bytes().to_vec();
        let got = frames_of(wire);
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Err(LinkError::Protocol(_))));
    }

    #[test]
    fn greeting_mismatch_fails_the_handshake() {
        let mut r = futures::io::Cursor::new(b"Welcome!".to_vec());
        let mut w = Vec::new();
        let e = block_on(handshake(
            &mut r,
            &mut futures::io::Cursor::new(&mut w),
            &params(),
        ));
        assert!(matches!(e, Err(TransportError::Handshake(_))), "{e:?}");
        assert_eq!(&w[..], GREETING);
    }

    /// A writer whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl AsyncWrite for Shared {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().extend_from_slice(b);
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn sink_writes_records() {
        let shared = Shared::default();
        {
            let mut link = link(
                futures::io::empty(),
                shared.clone(),
                &params(),
                PeerInfo {
                    scheme: "t",
                    remote: "t".into(),
                },
            );
            block_on(link.tx.send(Frame::new(vec![1u8; 14]))).unwrap();
        }
        let out = shared.0.lock().unwrap();
        assert_eq!(&out[..4], &[0, 0, 0, 14]);
        assert_eq!(&out[4..], &[1u8; 14]);
    }
}
