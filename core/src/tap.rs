//! Linux TAP devices as links.
//!
//! The device is created with the `tun` crate (`Layer::L2`, no packet
//! information header), then its file descriptor is handed to `async-io`'s
//! reactor. One `read` returns one frame; one `write` sends one frame.
//! Received frames are cut from a large shared buffer, so reading does not
//! allocate per frame.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Async;
use bytes::BytesMut;
use futures::{AsyncRead, AsyncWrite, Sink, Stream};

use crate::frame::Frame;
use crate::transport::{Link, LinkError, PeerInfo};
use crate::wire;

/// Largest MTU a TAP accepts here (the IPv4 total-length limit).
pub const MAX_MTU: u32 = 65535;

/// How to create a TAP device.
#[derive(Clone, Debug)]
pub struct TapConfig {
    /// Interface name; `%d` is replaced by the kernel with the first free
    /// number (default `ethws%d`).
    pub name: String,
    pub mtu: u16,
    /// Optional IPv4 address and prefix length to set on the device.
    pub address: Option<(Ipv4Addr, u8)>,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            name: "ethws%d".into(),
            mtu: 1500,
            address: None,
        }
    }
}

/// Why a TAP device could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapError {
    #[error("creating TAP device {name}: permission denied (need root or CAP_NET_ADMIN)")]
    PermissionDenied { name: String },
    #[error("creating TAP device {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: tun::Error,
    },
    #[error("TAP device {name}: {source}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// An open TAP device.
pub struct Tap {
    name: String,
    mtu: u16,
    fd: Arc<Async<File>>,
}

fn is_eperm(e: &tun::Error) -> bool {
    match e {
        tun::Error::Io(io) => io.raw_os_error() == Some(libc::EPERM),
        other => other.to_string().contains("Operation not permitted"),
    }
}

impl Tap {
    /// Creates the device, sets MTU (and address), and brings it up.
    pub fn create(cfg: &TapConfig) -> Result<Tap, TapError> {
        let mut c = tun::Configuration::default();
        c.layer(tun::Layer::L2)
            .tun_name(&cfg.name)
            .mtu(cfg.mtu)
            .up();
        if let Some((ip, prefix)) = cfg.address {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            c.address(ip).netmask(Ipv4Addr::from(mask));
        }
        let dev = tun::create(&c).map_err(|e| {
            if is_eperm(&e) {
                TapError::PermissionDenied {
                    name: cfg.name.clone(),
                }
            } else {
                TapError::Create {
                    name: cfg.name.clone(),
                    source: e,
                }
            }
        })?;
        use tun::AbstractDevice;
        let name = dev.tun_name().unwrap_or_else(|_| cfg.name.clone());
        // SAFETY: into_raw_fd hands us sole ownership of the open descriptor.
        let file = unsafe { File::from_raw_fd(dev.into_raw_fd()) };
        let fd = Async::new(file).map_err(|source| TapError::Io {
            name: name.clone(),
            source,
        })?;
        Ok(Tap {
            name,
            mtu: cfg.mtu,
            fd: Arc::new(fd),
        })
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Turns the device into a link (rx: frames the host sends out of the
    /// TAP; tx: frames delivered to the host). The device goes away when
    /// both halves are dropped.
    pub fn into_link(self) -> Link {
        let max_frame = usize::from(self.mtu) + wire::MAX_OVERHEAD;
        Link {
            rx: Box::pin(TapRx {
                fd: self.fd.clone(),
                buf: BytesMut::new(),
                max_frame,
            }),
            tx: Box::pin(TapTx {
                fd: self.fd,
                queue: VecDeque::new(),
                name: self.name.clone(),
            }),
            peer: PeerInfo {
                scheme: "tap",
                remote: self.name,
            },
        }
    }
}

/// Frames are read into slices of one chunk; a chunk is replaced when less
/// than one maximal frame is left, and freed when its last frame is.
const CHUNK_FRAMES: usize = 64;

struct TapRx {
    fd: Arc<Async<File>>,
    buf: BytesMut,
    max_frame: usize,
}

impl Stream for TapRx {
    type Item = Result<Frame, LinkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.buf.len() < this.max_frame {
            let size = (this.max_frame * CHUNK_FRAMES).max(256 * 1024);
            this.buf = BytesMut::zeroed(size);
        }
        let max = this.max_frame;
        match Pin::new(&mut &*this.fd).poll_read(cx, &mut this.buf[..max]) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => Poll::Ready(None),
            Poll::Ready(Ok(n)) => Poll::Ready(Some(Ok(Frame::new(this.buf.split_to(n).freeze())))),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(LinkError::Io(e)))),
        }
    }
}

/// Frames queue in `start_send` and are written, one `write` each, in
/// `poll_flush`.
struct TapTx {
    fd: Arc<Async<File>>,
    queue: VecDeque<Frame>,
    name: String,
}

const TAP_TX_QUEUE: usize = 256;

impl TapTx {
    fn write_queued(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        while let Some(frame) = self.queue.front() {
            match Pin::new(&mut &*self.fd).poll_write(cx, frame.as_ref()) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
                // The device refuses this frame (down, or a frame the kernel
                // rejects): lose the frame, keep the port.
                Poll::Ready(Err(e))
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE | libc::ENOBUFS)
                    ) =>
                {
                    log::debug!("{}: write of {} bytes refused: {e}", self.name, frame.len());
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(LinkError::Io(e))),
            }
            self.queue.pop_front();
        }
        Poll::Ready(Ok(()))
    }
}

impl Sink<Frame> for TapTx {
    type Error = LinkError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = self.get_mut();
        if this.queue.len() >= TAP_TX_QUEUE {
            this.write_queued(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), LinkError> {
        self.get_mut().queue.push_back(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.get_mut().write_queued(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.poll_flush(cx)
    }
}
