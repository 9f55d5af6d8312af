//! One WebSocket connection as a [`Link`]: a reader half and a writer half
//! over the two halves of the socket, each driven by its own task with no
//! lock between them on the data path.
//!
//! Control traffic the reader must answer (Pong, the Close reply) is handed
//! to the writer through [`Shared`]: the latest Ping payload only (Pongs
//! merge, RFC 6455 §5.5.3), and the writer's waker is woken so the node's
//! writer task polls `poll_flush` even when it has no frame to send (the
//! contract in spec/transport.md).
//!
//! Keepalive: the writer sends a Ping when nothing was received for the
//! ping interval, and fails the link when nothing at all (frames, Pongs,
//! anything) arrived for interval + timeout, so a peer that vanished
//! without a FIN is noticed; a timer in the writer's `poll_flush` drives it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etherws_core::keepalive::{Due, KeepaliveMachine};
use etherws_core::{Frame, Link, LinkError, PeerInfo};
use futures::io::{AsyncRead, AsyncWrite};
use futures::task::AtomicWaker;
use futures::{FutureExt, Sink, Stream};
use smol::Timer;

use crate::codec::{self, close, op, Decoder, Event, Role};
use etherws_core::offload;

/// A message of the offload subprotocol: the virtio-net header, then the
/// frame. A message too short for it, or with a header we cannot honour, is
/// dropped and counted (not a frame), the link stays up.
fn vnet_frame(b: bytes::Bytes) -> Result<Frame, LinkError> {
    offload::decode_message(b).map_err(|_| LinkError::NotAFrame("bad offload header"))
}

/// Bytes read from the socket at a time. The decoder streams payloads, so
/// this bounds nothing about frame sizes; it is the per-link read buffer.
pub const READ_BUF: usize = 16 * 1024;
/// `poll_ready` pushes back once this many bytes wait to be written.
pub const WRITE_HIGH: usize = 64 * 1024;
/// Control frames handled in one `poll_next` before yielding.
const CONTROL_BURST: usize = 64;
/// Socket reads in one `poll_next` that completed no frame before yielding
/// (a peer sending endless empty fragments must not pin a thread).
const READ_BURST: usize = 16;

pub use etherws_core::Keepalive;

/// What a link needs besides its two halves.
pub(crate) struct LinkParams {
    pub role: Role,
    pub leftover: Vec<u8>,
    pub max_frame: usize,
    pub hard_limit: usize,
    pub keepalive: Option<Keepalive>,
    /// Every message carries the frame's virtio-net header first (the
    /// offload subprotocol was negotiated).
    pub vnet: bool,
    /// Kept as long as the link lives (e.g. the server's client count).
    pub guard: Option<Box<dyn Send + Sync>>,
}

/// State the two halves share.
pub(crate) struct Shared {
    ctl: Mutex<Control>,
    writer: AtomicWaker,
    reader: AtomicWaker,
    /// The link's start, and when it last received anything (ns after it).
    born: Instant,
    last_rx: AtomicU64,
    /// Set from outside (credentials revoked): the reader ends the link.
    revoked: AtomicBool,
    /// The last keepalive Ping: its number and when it was queued (ns
    /// after `born`); and the round trip of the last one answered (ns, 0:
    /// none yet).
    ping_seq: AtomicU64,
    ping_at: AtomicU64,
    rtt: AtomicU64,
    _guard: Option<Box<dyn Send + Sync>>,
}

#[derive(Default)]
struct Control {
    /// The latest Ping payload not yet answered.
    pong: Option<Bytes>,
    /// The peer's Close arrived (with its code, if any).
    peer_close: Option<Option<u16>>,
    /// The reason text of the peer's Close, if any.
    peer_reason: String,
    /// We fail the connection with this code (the peer broke the protocol).
    fail: Option<u16>,
}

impl Shared {
    fn ctl(&self) -> std::sync::MutexGuard<'_, Control> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn heard(&self) {
        self.last_rx
            .store(self.born.elapsed().as_nanos() as u64, Relaxed);
    }

    /// A keepalive Ping numbered `seq` was queued now.
    fn pinged(&self, seq: u64) {
        self.ping_at
            .store(self.born.elapsed().as_nanos() as u64, Relaxed);
        self.ping_seq.store(seq, Relaxed);
    }

    /// A Pong arrived: the round trip, if it answers our last Ping.
    fn answered(&self, payload: &[u8]) {
        let seq = self.ping_seq.load(Relaxed);
        if seq > 0 && payload == seq.to_be_bytes() {
            let now = self.born.elapsed().as_nanos() as u64;
            let rtt = now.saturating_sub(self.ping_at.load(Relaxed)).max(1);
            self.rtt.store(rtt, Relaxed);
        }
    }
}

/// A handle on a live link, to end it from outside (credentials revoked).
#[derive(Clone)]
pub struct LinkHandle(std::sync::Weak<Shared>);

impl LinkHandle {
    /// Whether the link still exists.
    pub fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }

    /// Ends the link: it closes with `code` (e.g. 1008); false if it is
    /// gone already.
    pub fn close_with(&self, code: u16) -> bool {
        let Some(s) = self.0.upgrade() else {
            return false;
        };
        s.ctl().fail.get_or_insert(code);
        s.revoked.store(true, Relaxed);
        s.reader.wake();
        s.writer.wake();
        true
    }
}

/// The link's keepalive round trip, and the peer's Close, for status
/// views and the node's log.
impl etherws_core::LinkProbe for LinkHandle {
    fn rtt(&self) -> Option<Duration> {
        let ns = self.0.upgrade()?.rtt.load(Relaxed);
        (ns > 0).then(|| Duration::from_nanos(ns))
    }

    fn close_reason(&self) -> Option<String> {
        let s = self.0.upgrade()?;
        let c = s.ctl();
        let code = (*c.peer_close.as_ref()?)?;
        let meaning = match code {
            close::NORMAL => return None,
            close::GOING_AWAY => "going away: the server is shutting down or let us go",
            close::PROTOCOL => "protocol error",
            close::INVALID_DATA => "invalid data",
            close::POLICY => "policy violation: our credentials are no longer accepted",
            close::TOO_BIG => "a message was too big",
            close::INTERNAL => "an internal error of the peer",
            _ => "",
        };
        let reason = c.peer_reason.trim();
        Some(match (meaning.is_empty(), reason.is_empty()) {
            (false, true) => format!("{code} {meaning}"),
            (false, false) => format!("{code} {meaning}; it said {reason:?}"),
            (true, false) => format!("{code} {reason:?}"),
            (true, true) => format!("code {code}"),
        })
    }
}

/// A revoked user's link closes with 1008 (policy violation).
impl etherws_auth::Revocable for LinkHandle {
    fn is_alive(&self) -> bool {
        LinkHandle::is_alive(self)
    }
    fn revoke(&self) -> bool {
        self.close_with(close::POLICY)
    }
}

/// Builds the link (and a handle on it).
pub(crate) fn make_link<R, W>(
    read: R,
    write: W,
    p: LinkParams,
    peer: PeerInfo,
) -> (Link, LinkHandle)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::new(Shared {
        ctl: Mutex::default(),
        writer: AtomicWaker::new(),
        reader: AtomicWaker::new(),
        born: Instant::now(),
        last_rx: AtomicU64::new(0),
        revoked: AtomicBool::new(false),
        ping_seq: AtomicU64::new(0),
        ping_at: AtomicU64::new(0),
        rtt: AtomicU64::new(0),
        _guard: p.guard,
    });
    let handle = LinkHandle(Arc::downgrade(&shared));
    let mut buf = p.leftover;
    let end = buf.len();
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, 0);
    }
    let hooked = Arc::downgrade(&shared);
    let on_close: etherws_core::CloseHook = Arc::new(move |reason| {
        if let (Some(s), etherws_core::CloseReason::InternalError) = (hooked.upgrade(), reason) {
            s.ctl().fail.get_or_insert(close::INTERNAL);
        }
    });
    let link = Link {
        on_close: Some(on_close),
        rx: Box::pin(WsRx {
            io: read,
            buf,
            start: 0,
            end,
            dec: if p.vnet {
                let max = offload::MAX_SUPER + offload::VNET_HDR_LEN;
                Decoder::new(p.role, max, p.hard_limit.max(max))
            } else {
                Decoder::new(p.role, p.max_frame, p.hard_limit)
            },
            shared: shared.clone(),
            done: false,
            vnet: p.vnet,
        }),
        tx: Box::pin(WsTx {
            io: write,
            role: p.role,
            wbuf: Vec::new(),
            wpos: 0,
            shared,
            state: TxState::Open,
            keepalive: p.keepalive.map(|k| {
                let m = KeepaliveMachine::new(k, Instant::now());
                let t = Timer::at(m.poll_timeout());
                (m, t)
            }),
            pings: 0,
            pong_end: 0,
            ping_end: 0,
            vnet: p.vnet,
        }),
        peer,
        offload: p.vnet,
        // The peer node cuts them for its own TAP if its kernel must.
        offload_udp: p.vnet,
        user: None,
        probe: Some(Arc::new(handle.clone())),
        // A byte stream: TCP below cuts segments to the path.
        mss_clamp: None,
    };
    (link, handle)
}

struct WsRx<R> {
    io: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    dec: Decoder,
    shared: Arc<Shared>,
    done: bool,
    vnet: bool,
}

impl<R: AsyncRead + Unpin> Stream for WsRx<R> {
    type Item = Result<Frame, LinkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        this.shared.reader.register(cx.waker());
        if this.shared.revoked.load(Relaxed) {
            this.done = true;
            return Poll::Ready(Some(Err(LinkError::Ended(
                "its user's credentials were revoked (no longer in the htpasswd file): \
                 closed with 1008"
                    .into(),
            ))));
        }
        let mut controls = 0;
        let mut reads = 0;
        loop {
            if this.start < this.end {
                match this.dec.decode(&this.buf[this.start..this.end]) {
                    Err(v) => {
                        this.done = true;
                        this.shared.ctl().fail = Some(v.code());
                        this.shared.writer.wake();
                        return Poll::Ready(Some(Err(LinkError::Protocol(v.to_string()))));
                    }
                    Ok((n, ev)) => {
                        let ev_was_some = ev.is_some();
                        this.start += n;
                        match ev {
                            // The rest is a partial header: read more.
                            None => {}
                            Some(Event::Binary(b)) if this.vnet => {
                                return Poll::Ready(Some(vnet_frame(b)))
                            }
                            Some(Event::Binary(b)) => return Poll::Ready(Some(Ok(Frame::new(b)))),
                            Some(Event::Oversize(n)) => {
                                return Poll::Ready(Some(Err(LinkError::Oversize(n))))
                            }
                            Some(Event::Text(_)) => {
                                return Poll::Ready(Some(Err(LinkError::NotAFrame("text message"))))
                            }
                            Some(Event::Ping(p)) => {
                                this.shared.ctl().pong = Some(p);
                                this.shared.writer.wake();
                                controls += 1;
                            }
                            Some(Event::Pong(p)) => {
                                this.shared.answered(&p);
                                controls += 1;
                            }
                            Some(Event::Close(c)) => {
                                this.done = true;
                                {
                                    let mut ctl = this.shared.ctl();
                                    ctl.peer_close = Some(c.as_ref().map(|(code, _)| *code));
                                    ctl.peer_reason = c.map(|(_, r)| r).unwrap_or_default();
                                }
                                this.shared.writer.wake();
                                return Poll::Ready(None);
                            }
                        }
                        if controls >= CONTROL_BURST {
                            // A peer sending Pings at line rate must not
                            // monopolise this thread.
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        if this.start < this.end && ev_was_some {
                            continue;
                        }
                    }
                }
            }
            // Keep the unconsumed tail (at most a partial header) in front.
            if this.start == this.end {
                this.start = 0;
                this.end = 0;
            } else if this.start > 0 {
                this.buf.copy_within(this.start..this.end, 0);
                this.end -= this.start;
                this.start = 0;
            }
            if reads >= READ_BURST {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            reads += 1;
            let free = &mut this.buf[this.end..];
            match Pin::new(&mut this.io).poll_read(cx, free) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(LinkError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed without a WebSocket Close",
                    )))));
                }
                Poll::Ready(Ok(n)) => {
                    this.end += n;
                    this.shared.heard();
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(LinkError::Io(e))));
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxState {
    Open,
    /// Our Close is queued; no more frames.
    Closing,
    /// Closed or failed: every call answers `Closed`, the socket is left alone.
    Done,
}

struct WsTx<W> {
    io: W,
    role: Role,
    wbuf: Vec<u8>,
    wpos: usize,
    shared: Arc<Shared>,
    state: TxState,
    keepalive: Option<(KeepaliveMachine, Timer)>,
    /// Pings sent (their payload: a counter).
    pings: u64,
    /// Where in `wbuf` the last queued Pong and Ping end. A control frame
    /// may be queued past the high mark (it must not wait behind a full
    /// buffer of frames), but only one of each at a time: a new one waits
    /// until the previous one was written (`wpos` went past it).
    pong_end: usize,
    ping_end: usize,
    /// Each message starts with the frame's virtio-net header.
    vnet: bool,
}

impl<W: AsyncWrite + Unpin> WsTx<W> {
    fn mask(&self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(rand::random()),
            Role::Server => None,
        }
    }

    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Queues the Pong owed to the peer, if any (bounded: one at a time,
    /// and not while the buffer is over its high mark).
    fn queue_control(&mut self) -> bool {
        if self.state != TxState::Open || self.pong_end > self.wpos {
            return false;
        }
        let pong = self.shared.ctl().pong.take();
        match pong {
            Some(p) => {
                let mask = self.mask();
                codec::encode(&mut self.wbuf, op::PONG, &p, mask);
                self.pong_end = self.wbuf.len();
                true
            }
            None => false,
        }
    }

    /// Keepalive: Ping after `interval` of silence, fail after
    /// interval + timeout. Polls the timer with the task's waker, so the
    /// node's writer is woken when it is due.
    fn keepalive(&mut self, cx: &mut Context<'_>) -> Result<(), LinkError> {
        loop {
            let fired = match &mut self.keepalive {
                Some((_, t)) => t.poll_unpin(cx).is_ready(),
                None => return Ok(()),
            };
            if !fired {
                return Ok(());
            }
            let heard = self.shared.born + Duration::from_nanos(self.shared.last_rx.load(Relaxed));
            let Some((m, _)) = &mut self.keepalive else {
                return Ok(());
            };
            m.on_rx(heard);
            match m.poll(Instant::now()) {
                Due::Dead(silent) => {
                    let k = m.config();
                    self.state = TxState::Done;
                    return Err(LinkError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "keepalive: nothing received for {:.1}s (ping interval {:?} + timeout {:?})",
                            silent.as_secs_f64(),
                            k.interval,
                            k.timeout
                        ),
                    )));
                }
                // A Ping per interval of silence (one pending at most).
                Due::Probe if self.state == TxState::Open && self.ping_end <= self.wpos => {
                    self.pings += 1;
                    let mask = self.mask();
                    codec::encode(&mut self.wbuf, op::PING, &self.pings.to_be_bytes(), mask);
                    self.ping_end = self.wbuf.len();
                    self.shared.pinged(self.pings);
                }
                _ => {}
            }
            if let Some((m, t)) = &mut self.keepalive {
                t.set_at(m.poll_timeout());
            }
        }
    }

    /// Writes the buffer out; an error ends the sink for good.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        while self.wpos < self.wbuf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    return self.fail(io::Error::new(io::ErrorKind::WriteZero, "socket closed"))
                }
                Poll::Ready(Ok(n)) => self.wpos += n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return self.fail(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        self.pong_end = 0;
        self.ping_end = 0;
        if self.wbuf.capacity() > 4 * WRITE_HIGH {
            self.wbuf.shrink_to(WRITE_HIGH);
        }
        Poll::Ready(Ok(()))
    }

    fn fail(&mut self, e: io::Error) -> Poll<Result<(), LinkError>> {
        self.state = TxState::Done;
        self.wbuf = Vec::new();
        self.wpos = 0;
        Poll::Ready(Err(LinkError::Io(e)))
    }
}

impl<W: AsyncWrite + Unpin> Sink<Frame> for WsTx<W> {
    type Error = LinkError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = self.get_mut();
        if this.state != TxState::Open {
            return Poll::Ready(Err(LinkError::Closed));
        }
        this.shared.writer.register(cx.waker());
        if this.pending() >= WRITE_HIGH {
            std::task::ready!(this.write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, frame: Frame) -> Result<(), LinkError> {
        let this = self.get_mut();
        if this.state != TxState::Open {
            return Err(LinkError::Closed);
        }
        let mask = this.mask();
        if this.vnet {
            let h = offload::header_for(&frame);
            codec::encode_parts(&mut this.wbuf, op::BINARY, &[&h, frame.as_ref()], mask);
        } else {
            codec::encode(&mut this.wbuf, op::BINARY, frame.as_ref(), mask);
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = self.get_mut();
        if this.state == TxState::Done {
            return Poll::Ready(Err(LinkError::Closed));
        }
        this.shared.writer.register(cx.waker());
        this.keepalive(cx)?;
        this.queue_control();
        std::task::ready!(this.write_out(cx))?;
        // A Pong owed while the buffer was draining goes out now.
        if this.queue_control() {
            std::task::ready!(this.write_out(cx))?;
        }
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(Err(e)) => this.fail(e),
            other => other.map_err(LinkError::Io),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = self.get_mut();
        if this.state == TxState::Done {
            return Poll::Ready(Ok(()));
        }
        if this.state == TxState::Open {
            this.queue_control();
            // Echo the peer's code, else say why we close.
            let (code, reason) = {
                let c = this.shared.ctl();
                match (c.fail, c.peer_close) {
                    (Some(code), _) => (Some(code), close::reason(code)),
                    (None, Some(echo)) => (echo, ""),
                    (None, None) => (Some(close::GOING_AWAY), close::reason(close::GOING_AWAY)),
                }
            };
            let payload = code.map_or_else(Vec::new, |c| codec::close_payload(c, reason));
            let mask = this.mask();
            codec::encode(&mut this.wbuf, op::CLOSE, &payload, mask);
            this.state = TxState::Closing;
        }
        std::task::ready!(this.write_out(cx))?;
        let r = std::task::ready!(Pin::new(&mut this.io).poll_close(cx));
        this.state = TxState::Done;
        this.wbuf = Vec::new();
        Poll::Ready(r.map_err(LinkError::Io))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    /// A writer that takes nothing while closed, everything while open.
    struct Gate {
        open: Arc<AtomicBool>,
        taken: Arc<Mutex<Vec<u8>>>,
    }

    impl AsyncWrite for Gate {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            if !self.open.load(Relaxed) {
                return Poll::Pending;
            }
            self.taken.lock().unwrap().extend_from_slice(b);
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A server end at MTU 1500, without keepalive.
    fn server(vnet: bool) -> LinkParams {
        LinkParams {
            role: Role::Server,
            leftover: Vec::new(),
            max_frame: 1522,
            hard_limit: 70_000,
            keepalive: None,
            vnet,
            guard: None,
        }
    }

    fn peer() -> PeerInfo {
        PeerInfo {
            scheme: "ws",
            remote: "test".into(),
        }
    }

    #[test]
    fn a_pong_goes_out_behind_a_full_write_buffer() {
        let mut ping = Vec::new();
        codec::encode(&mut ping, op::PING, b"hello", Some([1, 2, 3, 4]));
        let open = Arc::new(AtomicBool::new(false));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate {
            open: open.clone(),
            taken: taken.clone(),
        };
        let (mut link, _) = make_link(futures::io::Cursor::new(ping), gate, server(false), peer());
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        // Fill the write buffer past its high mark: the sink pushes back.
        let frame = Frame::new(vec![0u8; 1514]);
        while link.tx.as_mut().poll_ready(&mut cx).is_ready() {
            link.tx.as_mut().start_send(frame.clone()).unwrap();
        }
        // The peer's Ping arrives now.
        assert!(link.rx.as_mut().poll_next(&mut cx).is_ready());
        assert!(link.tx.as_mut().poll_flush(&mut cx).is_pending());
        // The socket takes everything: the Pong must go out with it, with
        // no other wake-up to come.
        open.store(true, Relaxed);
        assert!(matches!(
            link.tx.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let bytes = taken.lock().unwrap().clone();
        let mut dec = Decoder::new(Role::Client, 2000, 2000);
        let (mut at, mut pongs) = (0, 0);
        while at < bytes.len() {
            let (n, ev) = dec.decode(&bytes[at..]).unwrap();
            at += n;
            if let Some(Event::Pong(p)) = ev {
                assert_eq!(&p[..], b"hello");
                pongs += 1;
            }
            if n == 0 {
                break;
            }
        }
        assert_eq!(pongs, 1);
    }

    /// With the offload subprotocol, each message is the virtio-net header
    /// and the frame: received headers become the frame's metadata, a bad
    /// one drops that message only, and sent frames carry theirs (zeroes
    /// when they have none).
    #[test]
    fn vnet_messages_carry_the_header_both_ways() {
        use etherws_core::offload::{gso, VnetHdr, F_NEEDS_CSUM};
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: gso::TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let frame = vec![7u8; 3000];
        let mut input = Vec::new();
        let m = Some([1, 2, 3, 4]);
        codec::encode_parts(&mut input, op::BINARY, &[&h.to_bytes(), &frame], m);
        codec::encode(&mut input, op::BINARY, &[0u8; 5], m); // too short
        codec::encode_parts(&mut input, op::BINARY, &[&[0u8; 10], &frame[..60]], m);
        let taken = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate {
            open: Arc::new(AtomicBool::new(true)),
            taken: taken.clone(),
        };
        let (mut link, _) = make_link(futures::io::Cursor::new(input), gate, server(true), peer());
        assert!(link.offload);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut next = || match link.rx.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(r)) => r,
            other => panic!("no message: {other:?}"),
        };
        let super_frame = next().unwrap();
        assert_eq!(super_frame.as_ref(), &frame[..]);
        assert_eq!(super_frame.meta.vnet, Some(h));
        assert!(matches!(next(), Err(LinkError::NotAFrame(_))));
        let plain = next().unwrap();
        assert_eq!((plain.len(), plain.meta.vnet), (60, None));
        // Sending: the header goes first.
        let out = Frame::with_vnet(frame.clone(), Some(h));
        assert!(link.tx.as_mut().poll_ready(&mut cx).is_ready());
        link.tx.as_mut().start_send(out).unwrap();
        link.tx
            .as_mut()
            .start_send(Frame::new(vec![9u8; 60]))
            .unwrap();
        assert!(link.tx.as_mut().poll_flush(&mut cx).is_ready());
        let bytes = taken.lock().unwrap().clone();
        let mut dec = Decoder::new(Role::Client, 70_000, 70_000);
        let mut msgs = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (n, ev) = dec.decode(&bytes[at..]).unwrap();
            at += n;
            if let Some(Event::Binary(b)) = ev {
                msgs.push(b);
            }
        }
        assert_eq!(msgs.len(), 2);
        assert_eq!(VnetHdr::parse(&msgs[0]).unwrap(), h);
        assert_eq!(&msgs[0][10..], &frame[..]);
        assert_eq!(&msgs[1][..10], &[0u8; 10]);
        assert_eq!(&msgs[1][10..], &[9u8; 60]);
    }
}
