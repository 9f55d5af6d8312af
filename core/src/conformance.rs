//! The transport conformance kit (feature `conformance`): what every
//! transport must do, checked over loopback. A transport's tests call
//! [`run`] with a [`Setup`]; each check panics with its name and what went
//! wrong. The contract checked is `spec/transport.md` §"What a link
//! guarantees".
//!
//! ```ignore
//! let setup = Setup::new(Arc::new(MyTransport::default()), "my://127.0.0.1:0", |addr| {
//!     format!("my://{addr}").parse().unwrap()
//! }, "my://127.0.0.1:1");
//! smol::block_on(etherws_core::conformance::run(&setup));
//! ```
//!
//! The kit runs under any executor (its timers are async-io's) and spawns
//! nothing: sender and receiver of a check are joined in one task.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{self, BoxFuture, Either};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use url::Url;

use crate::frame::Frame;
use crate::transport::{FrameSink, FrameStream, Link, LinkError, LinkParams, Listener, Transport};

/// Opens a connection to the listener at the given address that never
/// says anything, and keeps it open while the returned value lives.
pub type SilentOpener = Box<dyn Fn(&str) -> BoxFuture<'static, Box<dyn Any + Send>> + Send + Sync>;

/// How a transport treats a receiver that does not keep up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowReader {
    /// The sender's `poll_ready` pends (TCP-like): nothing is lost.
    Backpressure,
    /// Frames beyond the transport's buffers are dropped (datagrams).
    Drops,
}

/// What the kit needs to know about a transport.
pub struct Setup {
    /// The transport under test: it listens, and dials unless `dialer`.
    pub transport: Arc<dyn Transport>,
    /// A dial-only transport (e.g. one that runs a command) dials the
    /// listener of `transport` instead.
    pub dialer: Option<Arc<dyn Transport>>,
    /// Where to listen, usually with port 0.
    pub listen: Url,
    /// The URL to dial, from the listener's `local_addr()`.
    pub connect_to: Box<dyn Fn(&str) -> Url + Send + Sync>,
    /// A URL where nobody answers: `connect` must fail within
    /// `params.handshake_timeout` (plus slack) with a `TransportError`.
    /// A refused TCP port fails at once; a UDP port nobody serves checks
    /// the timeout path of a transport that ignores ICMP (quic).
    pub unreachable: Url,
    /// Passed to listen and connect. The kit checks every frame size up
    /// to `params.max_frame`.
    pub params: LinkParams,
    /// Also check frames of 64 KiB + 22 bytes (a TAP MTU of 65535, not
    /// the 9000-byte "jumbo" of Ethernet): set it when the transport
    /// carries those (the kit raises max frame for that check).
    pub jumbo: bool,
    /// Opens a silent connection, to check that it holds up no `accept`.
    /// Only for a transport whose links start with a handshake (the
    /// silent peer then stays pending); where any connection is a link
    /// at once, leave it `None` (the kit would wait for it to echo).
    pub silent: Option<SilentOpener>,
    pub slow_reader: SlowReader,
    /// The most bytes of frames a stalled link may hold between the two
    /// ends: its documented buffers plus the kernel's (for TCP on
    /// loopback, `net.ipv4.tcp_wmem` + `tcp_rmem` maxima: some 10 MiB).
    pub buffer_bound: usize,
}

impl Setup {
    /// A setup with defaults: MTU 1500, a 3 s handshake timeout, no
    /// keepalive, backpressure, 64 MiB of buffers at most.
    pub fn new(
        transport: Arc<dyn Transport>,
        listen: &str,
        connect_to: impl Fn(&str) -> Url + Send + Sync + 'static,
        unreachable: &str,
    ) -> Self {
        Setup {
            transport,
            dialer: None,
            listen: listen.parse().expect("listen URL"),
            connect_to: Box::new(connect_to),
            unreachable: unreachable.parse().expect("unreachable URL"),
            params: LinkParams::default()
                .with_handshake_timeout(Duration::from_secs(3))
                .with_keepalive(None),
            jumbo: false,
            silent: None,
            slow_reader: SlowReader::Backpressure,
            buffer_bound: 64 << 20,
        }
    }
}

/// The longest any single wait in the kit may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// Runs every check in order; panics on the first failure.
pub async fn run(setup: &Setup) {
    let t0 = Instant::now();
    sizes(setup, &setup.params).await;
    if setup.jumbo {
        let jumbo = setup.params.clone().with_jumbo();
        sizes(setup, &jumbo).await;
    }
    oversize(setup).await;
    close_seen(setup, true).await;
    close_seen(setup, false).await;
    many_links(setup).await;
    slow_reader(setup).await;
    unreachable(setup).await;
    log::info!("conformance: all checks passed in {:?}", t0.elapsed());
}

impl Setup {
    fn dialer(&self) -> &dyn Transport {
        self.dialer.as_deref().unwrap_or(&*self.transport)
    }
}

impl LinkParams {
    fn with_jumbo(mut self) -> Self {
        self.max_frame = self.max_frame.max(65536 + crate::wire::MAX_OVERHEAD);
        self
    }
}

async fn within<T>(what: &str, d: Duration, f: impl std::future::Future<Output = T>) -> T {
    match future::select(Box::pin(f), async_io::Timer::after(d)).await {
        Either::Left((v, _)) => v,
        Either::Right(_) => panic!("conformance: {what}: no result within {d:?}"),
    }
}

/// A listener and one link pair through it: (dialled end, accepted end).
async fn pair(setup: &Setup, params: &LinkParams) -> (Box<dyn Listener>, Link, Link) {
    let mut l = within(
        "listen",
        PATIENCE,
        setup.transport.listen(&setup.listen, params),
    )
    .await
    .unwrap_or_else(|e| panic!("conformance: listen on {}: {e}", setup.listen));
    let url = (setup.connect_to)(&l.local_addr());
    let (a, b) = link_through(setup, &mut *l, &url, params).await;
    (l, a, b)
}

async fn link_through(
    setup: &Setup,
    l: &mut dyn Listener,
    url: &Url,
    params: &LinkParams,
) -> (Link, Link) {
    let accepted = async {
        let pending = l.accept().await.expect("conformance: accept");
        pending
            .await
            .expect("conformance: the accepted link's handshake")
    };
    let (a, b) = within(
        "connect and accept",
        PATIENCE,
        future::join(setup.dialer().connect(url, params), accepted),
    )
    .await;
    let a = a.unwrap_or_else(|e| panic!("conformance: connect to {url}: {e}"));
    (a, b)
}

/// Frame `seq` of `len` bytes: a pattern the receiver can check.
fn frame(seq: usize, len: usize) -> Frame {
    let mut v = vec![0u8; len];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (seq.wrapping_mul(31) + i) as u8;
    }
    v[..8.min(len)].copy_from_slice(&(seq as u64).to_be_bytes()[..8.min(len)]);
    Frame::new(v)
}

fn check_frame(what: &str, f: &Frame, seq: usize, len: usize) {
    let want = frame(seq, len);
    assert_eq!(
        f.len(),
        len,
        "conformance: {what}: frame {seq} arrived with {} bytes, sent {len}",
        f.len()
    );
    assert!(
        f.bytes() == want.bytes(),
        "conformance: {what}: frame {seq} ({len} bytes) arrived changed"
    );
}

/// The sizes to send up to `max`: every size to 1600, then steps, then
/// `max` itself.
fn size_list(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (14..=max.min(1600)).collect();
    let mut s = 1601;
    while s < max {
        v.push(s);
        s += 4093;
    }
    if max > 1600 {
        v.push(max);
    }
    v
}

/// Sends `sizes` over `tx` while `rx` takes them, at most `window` in
/// flight (a datagram transport must not lose them to a full socket
/// buffer of the kit's own making), and checks each arrives whole and in
/// order.
async fn stream_sizes(what: &str, tx: &mut FrameSink, rx: &mut FrameStream, sizes: &[usize]) {
    let got = AtomicUsize::new(0);
    let window = 32;
    let send = async {
        for (seq, &len) in sizes.iter().enumerate() {
            while seq >= got.load(Relaxed) + window {
                async_io::Timer::after(Duration::from_micros(200)).await;
            }
            tx.feed(frame(seq, len))
                .await
                .unwrap_or_else(|e| panic!("conformance: {what}: sending frame {seq}: {e}"));
            if seq % 8 == 7 {
                tx.flush().await.expect("flush");
            }
        }
        tx.flush().await.expect("flush");
    };
    let recv = async {
        for (seq, &len) in sizes.iter().enumerate() {
            match rx.next().await {
                Some(Ok(f)) => check_frame(what, &f, seq, len),
                Some(Err(e)) => panic!("conformance: {what}: frame {seq} ({len} bytes): {e}"),
                None => panic!("conformance: {what}: the link ended before frame {seq}"),
            }
            got.store(seq + 1, Relaxed);
        }
    };
    within(what, PATIENCE * 3, future::join(send, recv)).await;
}

/// Every size from 14 bytes to max frame arrives intact and in order, both
/// ways at once.
pub async fn sizes(setup: &Setup, params: &LinkParams) {
    let (_l, mut a, mut b) = pair(setup, params).await;
    let list = size_list(params.max_frame);
    let what = format!("sizes 14..={}", params.max_frame);
    future::join(
        stream_sizes(
            &format!("{what}, dialled → accepted"),
            &mut a.tx,
            &mut b.rx,
            &list,
        ),
        stream_sizes(
            &format!("{what}, accepted → dialled"),
            &mut b.tx,
            &mut a.rx,
            &list,
        ),
    )
    .await;
    log::info!("conformance: {what}: ok");
}

/// A frame longer than max frame neither kills the link nor corrupts what
/// follows: it arrives (the node counts it), arrives as a non-fatal
/// `Oversize`, or is dropped by the sender; the next frame arrives intact.
pub async fn oversize(setup: &Setup) {
    let (_l, mut a, mut b) = pair(setup, &setup.params).await;
    let max = setup.params.max_frame;
    let send = async {
        a.tx.send(frame(0, max + 1)).await.unwrap_or_else(|e| {
            panic!("conformance: oversize: the sink failed on a frame of max+1: {e}")
        });
        a.tx.send(frame(1, 100))
            .await
            .expect("conformance: oversize: the next frame");
    };
    let recv = async {
        loop {
            match b.rx.next().await {
                Some(Ok(f)) if f.len() == max + 1 => continue, // delivered; the node counts it
                Some(Ok(f)) => {
                    check_frame("oversize: the frame after", &f, 1, 100);
                    return;
                }
                Some(Err(LinkError::Oversize(n))) => {
                    assert!(
                        n > max,
                        "conformance: oversize: Oversize({n}) for a frame ≤ max"
                    );
                }
                Some(Err(e)) => panic!("conformance: oversize: {e} (must not be fatal)"),
                None => panic!("conformance: oversize: the link ended"),
            }
        }
    };
    within("oversize", PATIENCE, future::join(send, recv)).await;
    log::info!("conformance: oversize: ok");
}

/// Closing one end's `tx` ends the other end's `rx` (after the frames sent
/// before it), with `dialled_closes` choosing which end closes.
pub async fn close_seen(setup: &Setup, dialled_closes: bool) {
    let (_l, a, b) = pair(setup, &setup.params).await;
    let (mut closer, mut seer) = if dialled_closes { (a, b) } else { (b, a) };
    let what = if dialled_closes {
        "close by the dialled end"
    } else {
        "close by the accepted end"
    };
    let go = async {
        closer.tx.send(frame(0, 60)).await.expect("send");
        closer
            .tx
            .close()
            .await
            .unwrap_or_else(|e| panic!("conformance: {what}: close: {e}"));
    };
    let see = async {
        match seer.rx.next().await {
            Some(Ok(f)) => check_frame(what, &f, 0, 60),
            other => panic!("conformance: {what}: the frame before the close: {other:?}"),
        }
        match seer.rx.next().await {
            None => {}
            Some(Err(e)) => panic!(
                "conformance: {what}: the other end saw an error ({e}), not the end of the stream"
            ),
            Some(Ok(f)) => panic!(
                "conformance: {what}: a {}-byte frame after the close",
                f.len()
            ),
        }
    };
    within(what, PATIENCE, future::join(go, see)).await;
    log::info!("conformance: {what}: ok");
}

/// One listener serves several links at once, and a silent connection
/// (if the transport has such a thing) holds up none of them.
pub async fn many_links(setup: &Setup) {
    let mut l = setup
        .transport
        .listen(&setup.listen, &setup.params)
        .await
        .expect("conformance: listen");
    let addr = l.local_addr();
    let url = (setup.connect_to)(&addr);
    let _silent = match &setup.silent {
        Some(open) => Some(open(&addr).await),
        None => None,
    };
    const N: usize = 4;
    let accepted = async {
        let mut pending = FuturesUnordered::new();
        let mut links = Vec::new();
        while links.len() < N {
            futures::select! {
                p = l.accept().fuse() => pending.push(p.expect("conformance: accept")),
                r = pending.select_next_some() => match r {
                    Ok(link) => links.push(link),
                    Err(e) => log::info!("conformance: many links: a refused connection: {e}"),
                },
            }
        }
        links
    };
    let dialled = future::join_all((0..N).map(|_| setup.dialer().connect(&url, &setup.params)));
    let (mut servers, clients) = within(
        "many links: connect and accept with a silent connection open",
        PATIENCE,
        future::join(accepted, dialled),
    )
    .await;
    let mut clients: Vec<Link> = clients
        .into_iter()
        .map(|c| c.expect("conformance: many links: connect"))
        .collect();
    // Each dialled link says who it is; each accepted one echoes.
    let exchange = async {
        for (i, c) in clients.iter_mut().enumerate() {
            c.tx.send(frame(i, 64)).await.expect("send");
        }
        for s in servers.iter_mut() {
            let f = s.rx.next().await.expect("frame").expect("frame");
            s.tx.send(f).await.expect("echo");
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let f = c.rx.next().await.expect("echo").expect("echo");
            check_frame("many links: echo", &f, i, 64);
        }
    };
    within("many links: one frame each way on each", PATIENCE, exchange).await;
    log::info!(
        "conformance: many links ({N}, silent connection open: {}): ok",
        setup.silent.is_some()
    );
}

/// A receiver that does not read: the sender is pushed back or frames are
/// dropped, as the setup says, and never more than `buffer_bound` bytes
/// wait in between.
pub async fn slow_reader(setup: &Setup) {
    let (_l, mut a, mut b) = pair(setup, &setup.params).await;
    let len = 1400;
    let cap = (setup.buffer_bound * 3 / len).max(1000);
    let t0 = Instant::now();
    let mut sent = 0usize;
    let mut blocked = false;
    // Send while the other end reads nothing, until the sink pushes back
    // for 300 ms, 3 s pass, or 3 × buffer_bound bytes went in.
    while sent < cap && t0.elapsed() < Duration::from_secs(3) {
        let fed = future::select(
            Box::pin(a.tx.feed(frame(sent, len))),
            async_io::Timer::after(Duration::from_millis(300)),
        )
        .await;
        match fed {
            Either::Left((r, _)) => {
                r.unwrap_or_else(|e| panic!("conformance: slow reader: sending: {e}"));
                sent += 1;
                if sent.is_multiple_of(64) {
                    let flushed = future::select(
                        a.tx.flush(),
                        async_io::Timer::after(Duration::from_millis(300)),
                    )
                    .await;
                    if let Either::Right(_) = flushed {
                        blocked = true;
                        break;
                    }
                }
            }
            Either::Right(_) => {
                blocked = true;
                break;
            }
        }
    }
    // Now read everything that is there.
    let mut got = 0usize;
    let mut last = None;
    loop {
        let next = future::select(
            b.rx.next(),
            async_io::Timer::after(Duration::from_millis(1000)),
        )
        .await;
        match next {
            Either::Left((Some(Ok(f)), _)) => {
                let seq = u64::from_be_bytes(f.bytes()[..8].try_into().unwrap()) as usize;
                check_frame("slow reader", &f, seq, len);
                if let Some(l) = last {
                    assert!(seq > l, "conformance: slow reader: frame {seq} after {l}");
                }
                if setup.slow_reader == SlowReader::Backpressure {
                    assert_eq!(seq, got, "conformance: slow reader: frame {got} lost");
                }
                last = Some(seq);
                got += 1;
            }
            Either::Left((other, _)) => panic!("conformance: slow reader: {other:?}"),
            Either::Right(_) => break,
        }
    }
    let held = got * len;
    match setup.slow_reader {
        SlowReader::Backpressure => {
            assert!(
                blocked,
                "conformance: slow reader: {sent} frames ({} MB) went in with nobody reading and no push-back",
                (sent * len) >> 20
            );
            // Nothing lost: what was sent before the push-back arrived.
            assert!(
                got + 64 >= sent,
                "conformance: slow reader: sent {sent}, got {got}"
            );
        }
        // A transport that drops must have dropped: everything arriving
        // with nobody reading means it buffered without bound (the
        // `held` check below says how much).
        SlowReader::Drops => assert!(
            got < sent,
            "conformance: slow reader: all {sent} frames arrived although the reader \
             stalled; a dropping transport must drop"
        ),
    }
    assert!(
        held <= setup.buffer_bound,
        "conformance: slow reader: {held} bytes were held for a stalled reader (bound {})",
        setup.buffer_bound
    );
    log::info!(
        "conformance: slow reader: sent {sent}, received {got} ({} KiB held), {:?}: ok",
        held >> 10,
        setup.slow_reader
    );
}

/// `connect` to a place where nobody answers fails with a
/// `TransportError` within the handshake timeout (plus 3 s of slack).
pub async fn unreachable(setup: &Setup) {
    let t0 = Instant::now();
    let limit = setup.params.handshake_timeout + Duration::from_secs(3);
    let r = within(
        "connect to nothing",
        limit,
        setup.dialer().connect(&setup.unreachable, &setup.params),
    )
    .await;
    match r {
        Ok(_) => panic!("conformance: connect to {} succeeded", setup.unreachable),
        Err(e) => log::info!(
            "conformance: connect to nothing failed in {:?} ({e}): ok",
            t0.elapsed()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Mem;

    #[test]
    fn the_mem_transport_conforms() {
        let mut setup = Setup::new(
            Arc::new(Mem::new(64)),
            "mem://kit",
            |addr| format!("mem://{addr}").parse().unwrap(),
            "mem://nobody",
        );
        setup.jumbo = true;
        futures::executor::block_on(run(&setup));
    }
}
