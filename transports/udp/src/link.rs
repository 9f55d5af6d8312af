//! A udp:// link's two halves. The sending half is the same on both
//! sides; the receiving half reads the client's own socket, or, on the
//! server, a queue its receive thread fills.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::{Async, ReadableOwned, Timer, WritableOwned};
use etherws_core::bytes::Bytes;
use etherws_core::futures::{Sink, Stream};
use etherws_core::keepalive::{KeepaliveMachine, Probing};
use etherws_core::offload::{self, VNET_HDR_LEN};
use etherws_core::{Frame, Keepalive, LinkError};

use crate::wire::{self, kind, Key, Replay};
use crate::{at_ms, now_ms, UdpStats};

/// The sink pends while this many datagrams wait for the socket.
const QUEUE_HIGH: usize = 256;

/// What both halves of one link share.
pub(crate) struct Shared {
    pub sock: Arc<Async<UdpSocket>>,
    /// The peer; `None` when the socket is connected to it (client).
    /// A server's link moves when its client's address changes (NAT
    /// rebinding, spec/protocol.md §13.2), hence the lock.
    pub to: std::sync::Mutex<Option<SocketAddr>>,
    pub session: u32,
    pub key: Option<Key>,
    /// The next counter for a keyed datagram we send.
    pub counter: AtomicU64,
    /// `now_ms()` of the last datagram received from / sent to the peer.
    pub last_rx: AtomicU64,
    pub last_tx: AtomicU64,
    pub max_frame: usize,
    pub stats: Arc<UdpStats>,
    /// The peer said CLOSE, or the link ended (server: the receive
    /// thread forgets the peer).
    pub closed: AtomicBool,
    /// FRAME payloads carry a virtio-net header first (offload agreed).
    pub vnet: bool,
    /// Server: bytes of frames queued toward the node (bounded by the
    /// receive thread at [`RX_QUEUE_BYTES`]).
    pub queued: AtomicUsize,
    /// Server: frames (and errors) queued toward the node (bounded by
    /// the receive thread at `UdpConfig::rx_queue`).
    pub queued_frames: AtomicUsize,
    /// Client: when our last PING went out (`now_us`, 0: none pending),
    /// and the round trip of the last one answered (µs, 0: none yet).
    pub ping_at: AtomicU64,
    pub rtt_us: AtomicU64,
}

/// The round trip of the client's PINGs, for status views.
impl etherws_core::LinkProbe for Shared {
    fn rtt(&self) -> Option<Duration> {
        let us = self.rtt_us.load(Relaxed);
        (us > 0).then(|| Duration::from_micros(us))
    }
}

/// Bytes of frames a server queues per client toward the node.
pub(crate) const RX_QUEUE_BYTES: usize = 4 << 20;

/// A FRAME payload as a frame: with `vnet`, the header first.
pub(crate) fn frame_from(payload: &[u8], vnet: bool, max_frame: usize) -> Result<Frame, LinkError> {
    if !vnet {
        if payload.len() > max_frame {
            return Err(LinkError::Oversize(payload.len()));
        }
        return Ok(Frame::new(Bytes::copy_from_slice(payload)));
    }
    let frame = offload::decode_message(Bytes::copy_from_slice(payload))
        .map_err(|_| LinkError::NotAFrame("bad offload header"))?;
    // A super-frame may exceed max frame (the node checks it against its
    // header); a plain one may not.
    if frame.len() > max_frame && !frame.meta.vnet.is_some_and(|h| h.is_gso()) {
        return Err(LinkError::Oversize(frame.len()));
    }
    Ok(frame)
}

impl Shared {
    /// Builds a datagram of `kind` around `payload` into `out`.
    pub fn encode(&self, out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
        self.encode_parts(out, kind, &[payload]);
    }

    /// [`Shared::encode`] with the payload in pieces.
    pub fn encode_parts(&self, out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
        let key = self
            .key
            .as_ref()
            .map(|k| (k, self.counter.fetch_add(1, Relaxed)));
        wire::encode_parts(out, kind, self.session, key, parts);
    }

    fn send_now(&self, d: &[u8]) -> io::Result<usize> {
        let to = *self.to.lock().unwrap_or_else(|e| e.into_inner());
        match to {
            Some(to) => self.sock.get_ref().send_to(d, to),
            None => self.sock.get_ref().send(d),
        }
    }

    /// A PONG arrived: the round trip of our last PING.
    pub fn ponged(&self) {
        let at = self.ping_at.swap(0, Relaxed);
        if at > 0 {
            self.rtt_us
                .store(crate::now_us().saturating_sub(at).max(1), Relaxed);
        }
    }

    /// Sends a control datagram if the socket takes it now (best effort:
    /// a lost PONG or CLOSE is covered by keepalive).
    pub fn send_control(&self, kind: u8, payload: &[u8]) {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out, kind, payload);
        if self.send_now(&out).is_ok() {
            self.last_tx.store(now_ms(), Relaxed);
        }
    }
}

/// What waits to be sent: the datagram is built (and, with a key, its
/// counter drawn) only when it goes out, so counters leave in order and
/// a control datagram sent at once never overtakes more than the
/// receiver's replay window.
enum Out {
    Frame(Frame),
    Ping,
}

/// The sending half: frames wait in a small queue that `poll_flush`
/// hands to the socket, one reused buffer at a time.
pub(crate) struct UdpTx {
    sh: Arc<Shared>,
    queue: VecDeque<Out>,
    /// The queue's front, built; kept across `WouldBlock`.
    buf: Vec<u8>,
    built: bool,
    writable: Option<Pin<Box<WritableOwned<UdpSocket>>>>,
    /// PING when nothing was sent or heard for the interval
    /// ([`Probing::Either`]: outbound traffic keeps a NAT's mapping).
    keepalive: Option<KeepaliveMachine>,
    timer: Option<Timer>,
}

impl UdpTx {
    pub fn new(sh: Arc<Shared>, keepalive: Option<Keepalive>) -> Self {
        UdpTx {
            sh,
            queue: VecDeque::new(),
            buf: Vec::new(),
            built: false,
            writable: None,
            keepalive: keepalive
                .map(|k| KeepaliveMachine::new(k, Instant::now()).with_probing(Probing::Either)),
            timer: None,
        }
    }

    /// Builds the queue's front into `buf`.
    fn build(&mut self) {
        let sh = &self.sh;
        match self.queue.front() {
            Some(Out::Frame(f)) if sh.vnet => {
                let h = offload::header_for(f);
                sh.encode_parts(&mut self.buf, kind::FRAME, &[&h, f.bytes()]);
            }
            Some(Out::Frame(f)) => sh.encode(&mut self.buf, kind::FRAME, f.bytes()),
            Some(Out::Ping) => {
                sh.ping_at.store(crate::now_us(), Relaxed);
                sh.encode(&mut self.buf, kind::PING, &[])
            }
            None => return,
        }
        self.built = true;
    }

    fn send_queue(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let mut sent = false;
        while !self.queue.is_empty() {
            if !self.built {
                self.build();
            }
            match self.sh.send_now(&self.buf) {
                Ok(_) => sent = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let w = self
                        .writable
                        .get_or_insert_with(|| Box::pin(self.sh.sock.clone().writable_owned()));
                    match w.as_mut().poll(cx) {
                        Poll::Ready(_) => {
                            self.writable = None;
                            continue;
                        }
                        Poll::Pending => break,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMSGSIZE, ECONNREFUSED (ICMP from the peer's host),
                    // ENOBUFS...: this datagram is lost, not the link;
                    // keepalive notices a peer that is gone.
                    let len = self.buf.len();
                    self.sh.stats.note(
                        &self.sh.stats.send_errors,
                        format_args!("a {len}-byte datagram was not sent: {e}"),
                    );
                }
            }
            self.queue.pop_front();
            self.built = false;
        }
        if sent {
            self.sh.last_tx.store(now_ms(), Relaxed);
        }
        if self.queue.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// Queues a PING when the link was quiet for the interval, and arms
    /// the timer for the next look.
    fn keepalive(&mut self, cx: &mut Context<'_>) {
        let Some(m) = &mut self.keepalive else { return };
        loop {
            // The timer is re-armed only when it fired (arming costs a
            // reactor round trip).
            if let Some(t) = &mut self.timer {
                if Pin::new(t).poll(cx).is_pending() {
                    return;
                }
            }
            // The halves (and the server's receive thread) share their
            // times as atomics on the crate's clock.
            m.on_rx(at_ms(self.sh.last_rx.load(Relaxed)));
            m.on_tx(at_ms(self.sh.last_tx.load(Relaxed)));
            let now = Instant::now();
            if m.probe_due(now) {
                self.queue.push_back(Out::Ping);
                self.sh.last_tx.store(now_ms(), Relaxed);
                continue;
            }
            let at = m.next_probe();
            match &mut self.timer {
                Some(t) => {
                    t.set_at(at);
                }
                None => self.timer = Some(Timer::at(at)),
            }
        }
    }

    /// Queues one frame, or drops it (counted) when no datagram can hold
    /// it.
    fn queue_frame(&mut self, frame: Frame) {
        let sh = &self.sh;
        let len = frame.len();
        let hdr_len = if sh.vnet { VNET_HDR_LEN } else { 0 };
        if len + hdr_len + wire::overhead(sh.key.is_some()) > wire::MAX_DATAGRAM {
            sh.stats.note(
                &sh.stats.oversize,
                format_args!("a {len}-byte frame does not fit in a datagram; dropped"),
            );
            return;
        }
        self.queue.push_back(Out::Frame(frame));
    }
}

impl Sink<Frame> for UdpTx {
    type Error = LinkError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if self.queue.len() < QUEUE_HIGH {
            return Poll::Ready(Ok(()));
        }
        match self.send_queue(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending if self.queue.len() < QUEUE_HIGH => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), LinkError> {
        let vnet = self.sh.vnet;
        let room = wire::MAX_DATAGRAM
            - wire::overhead(self.sh.key.is_some())
            - if vnet { VNET_HDR_LEN } else { 0 };
        match frame.meta.vnet {
            // A super-frame too large for one datagram: cut here (the
            // node's own cutting is for ports that take no offload).
            Some(h) if frame.len() > room => {
                if let Err(e) = offload::finish(frame, &h, |f| self.queue_frame(f)) {
                    self.sh.stats.note(
                        &self.sh.stats.oversize,
                        format_args!("a super-frame could not be cut: {e}; dropped"),
                    );
                }
            }
            _ => self.queue_frame(frame),
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.keepalive(cx);
        self.send_queue(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        match self.send_queue(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if !self.sh.closed.swap(true, Relaxed) {
            self.sh.send_control(kind::CLOSE, &[]);
        }
        Poll::Ready(Ok(()))
    }
}

/// Fails the link when nothing was heard for the keepalive's dead-line
/// (shared by the two receiving halves).
struct Liveness {
    machine: Option<KeepaliveMachine>,
    timer: Option<Timer>,
}

impl Liveness {
    fn new(keepalive: Option<Keepalive>) -> Self {
        Liveness {
            machine: keepalive.map(|k| KeepaliveMachine::new(k, Instant::now())),
            timer: None,
        }
    }
}

impl Liveness {
    /// `Ready(err)` when the peer has been silent too long; otherwise
    /// arms the timer and returns `Pending`.
    fn poll(&mut self, sh: &Shared, cx: &mut Context<'_>) -> Poll<LinkError> {
        let Some(m) = &mut self.machine else {
            return Poll::Pending;
        };
        loop {
            // The deadline only moves later: an armed timer that has not
            // fired needs no look (re-arming costs a reactor round trip).
            if let Some(t) = &mut self.timer {
                if Pin::new(t).poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            m.on_rx(at_ms(sh.last_rx.load(Relaxed)));
            let at = m.dead_at();
            if Instant::now() >= at {
                let dead = m.config().dead_after();
                return Poll::Ready(LinkError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing heard from the peer for {dead:?}"),
                )));
            }
            match &mut self.timer {
                Some(t) => {
                    t.set_at(at);
                }
                None => self.timer = Some(Timer::at(at)),
            }
        }
    }
}

/// The client's receiving half: reads its connected socket.
pub(crate) struct ClientRx {
    sh: Arc<Shared>,
    buf: Vec<u8>,
    replay: Replay,
    readable: Option<Pin<Box<ReadableOwned<UdpSocket>>>>,
    live: Liveness,
    done: bool,
}

impl ClientRx {
    pub fn new(sh: Arc<Shared>, replay: Replay, keepalive: Option<Keepalive>) -> Self {
        ClientRx {
            sh,
            buf: vec![0; 65536],
            replay,
            readable: None,
            live: Liveness::new(keepalive),
            done: false,
        }
    }

    /// One received datagram: a frame to hand up, or nothing.
    fn handle(&mut self, n: usize) -> Option<Result<Frame, LinkError>> {
        let sh = &self.sh;
        let d = match wire::decode(&self.buf[..n], sh.key.as_ref()) {
            Ok(d) if d.session == sh.session => d,
            Ok(_) | Err(wire::Reject::Malformed) => {
                sh.stats.note(
                    &sh.stats.stray,
                    format_args!("a stray {n}-byte datagram from the server's address"),
                );
                return None;
            }
            Err(wire::Reject::Unauthenticated) => {
                sh.stats.note(
                    &sh.stats.unauthenticated,
                    format_args!("an unauthenticated {n}-byte datagram from the server's address"),
                );
                return None;
            }
        };
        if sh.key.is_some() && !self.replay.accept(d.counter) {
            sh.stats.note(
                &sh.stats.replayed,
                format_args!("a replayed datagram (counter {})", d.counter),
            );
            return None;
        }
        sh.last_rx.store(now_ms(), Relaxed);
        match d.kind {
            kind::FRAME => Some(frame_from(d.payload, sh.vnet, sh.max_frame)),
            kind::PING => {
                sh.send_control(kind::PONG, &[]);
                None
            }
            kind::CLOSE => {
                self.done = true;
                sh.closed.store(true, Relaxed);
                None
            }
            kind::PONG => {
                sh.ponged();
                None
            }
            _ => None, // a repeated WELCOME
        }
    }
}

impl Stream for ClientRx {
    type Item = Result<Frame, LinkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.sh.sock.get_ref().recv(&mut this.buf) {
                Ok(n) => {
                    if let Some(item) = this.handle(n) {
                        return Poll::Ready(Some(item));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let r = this
                        .readable
                        .get_or_insert_with(|| Box::pin(this.sh.sock.clone().readable_owned()));
                    if r.as_mut().poll(cx).is_ready() {
                        this.readable = None;
                        continue;
                    }
                    return match this.live.poll(&this.sh, cx) {
                        Poll::Ready(e) => {
                            this.done = true;
                            Poll::Ready(Some(Err(e)))
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
                // ICMP port unreachable for an earlier datagram: the
                // server may be restarting; keepalive decides.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(LinkError::Io(e))));
                }
            }
        }
    }
}

/// The server's receiving half: frames the receive thread queued.
pub(crate) struct ServerRx {
    sh: Arc<Shared>,
    rx: Pin<Box<async_channel::Receiver<Result<Frame, LinkError>>>>,
    live: Liveness,
    done: bool,
}

impl ServerRx {
    pub fn new(
        sh: Arc<Shared>,
        rx: async_channel::Receiver<Result<Frame, LinkError>>,
        keepalive: Option<Keepalive>,
    ) -> Self {
        ServerRx {
            sh,
            rx: Box::pin(rx),
            live: Liveness::new(keepalive),
            done: false,
        }
    }
}

impl Stream for ServerRx {
    type Item = Result<Frame, LinkError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.rx.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                if let Ok(f) = &item {
                    this.sh.queued.fetch_sub(f.len(), Relaxed);
                }
                this.sh.queued_frames.fetch_sub(1, Relaxed);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.live.poll(&this.sh, cx) {
                Poll::Ready(e) => {
                    this.done = true;
                    this.sh.closed.store(true, Relaxed);
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for ServerRx {
    fn drop(&mut self) {
        // The receive thread forgets this peer on its next sweep.
        self.sh.closed.store(true, Relaxed);
    }
}
