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
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Async;
use bytes::BytesMut;
use futures::{AsyncWrite, Sink, Stream};

use crate::frame::Frame;
use crate::log::LogLimiter;
use crate::transport::{Link, LinkError, PeerInfo};
use crate::wire::{self, MacAddr};

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
    /// Which MAC address the device gets.
    pub mac: MacPolicy,
    /// Open with `IFF_VNET_HDR` and enable checksum and TCP/UDP
    /// segmentation offload: the kernel hands over super-frames of up to
    /// 64 KiB and takes them back, one read or write each.
    pub offload: bool,
}

/// How a TAP device's MAC address is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MacPolicy {
    /// Stable across restarts: see [`persistent_mac`]. The default, so that
    /// a restarted node keeps the address its neighbours have cached.
    #[default]
    Persistent,
    /// Whatever random address the kernel assigns.
    Random,
    Fixed(MacAddr),
}

impl std::str::FromStr for MacPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "persistent" => Ok(MacPolicy::Persistent),
            "random" => Ok(MacPolicy::Random),
            mac => {
                let m: MacAddr = mac.parse().map_err(|_| {
                    format!("{mac:?} is not a MAC address, \"persistent\" or \"random\"")
                })?;
                if m.is_multicast() {
                    return Err(format!("{m} is a multicast address"));
                }
                Ok(MacPolicy::Fixed(m))
            }
        }
    }
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            name: "ethws%d".into(),
            mtu: 1500,
            address: None,
            mac: MacPolicy::Persistent,
            offload: false,
        }
    }
}

/// Why a TAP device could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapError {
    #[error("creating TAP device {name}: permission denied (need root or CAP_NET_ADMIN)")]
    PermissionDenied { name: String },
    #[error("creating TAP device {name}: {error}")]
    Create { name: String, error: tun::Error },
    /// A TAP of that name exists and another process holds it.
    #[error(
        "TAP device {name} exists and is in use (another etherws, or a VPN?): \
         stop it, or choose another name with --tap (ethws%d takes the first free one)"
    )]
    Busy { name: String },
    /// The name is taken by a device that is not a TAP.
    #[error(
        "{name} is a network interface of another kind, not a TAP device: \
         choose another name with --tap (to join a bridge, use --bridge)"
    )]
    NotATap { name: String },
    #[error("TAP device {name}: {error}")]
    Io { name: String, error: io::Error },
}

/// An open TAP device.
pub struct Tap {
    name: String,
    mac: MacAddr,
    mtu: u16,
    fd: Arc<Async<File>>,
    /// Opened with `IFF_VNET_HDR` and offloads on.
    vnet: bool,
    /// The kernel took UDP segmentation offload too (6.2 and later).
    uso: bool,
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
        // Brought up only after the MAC is set.
        c.layer(tun::Layer::L2).tun_name(&cfg.name).mtu(cfg.mtu);
        if cfg.offload {
            c.platform_config(|p| {
                p.vnet_hdr(true);
            });
        }
        if let Some((ip, prefix)) = cfg.address {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            c.address(ip).netmask(Ipv4Addr::from(mask));
        }
        let sys = std::path::Path::new("/sys/class/net").join(&cfg.name);
        if !cfg.name.contains('%') && sys.exists() && !sys.join("tun_flags").exists() {
            return Err(TapError::NotATap {
                name: cfg.name.clone(),
            });
        }
        let dev = tun::create(&c).map_err(|e| {
            let errno = match &e {
                tun::Error::Io(io) => io.raw_os_error(),
                _ => None,
            };
            if errno == Some(libc::EBUSY) || e.to_string().contains("os error 16") {
                TapError::Busy {
                    name: cfg.name.clone(),
                }
            } else if errno == Some(libc::EINVAL) && sys.exists() {
                TapError::NotATap {
                    name: cfg.name.clone(),
                }
            } else if is_eperm(&e) {
                TapError::PermissionDenied {
                    name: cfg.name.clone(),
                }
            } else {
                TapError::Create {
                    name: cfg.name.clone(),
                    error: e,
                }
            }
        })?;
        use tun::AbstractDevice;
        let mut dev = dev;
        let name = dev.tun_name().unwrap_or_else(|_| cfg.name.clone());
        let io_err = |error: io::Error| TapError::Io {
            name: name.clone(),
            error,
        };
        let mac = match cfg.mac {
            MacPolicy::Persistent => Some(persistent_mac(&name)),
            MacPolicy::Fixed(m) => Some(m),
            MacPolicy::Random => None,
        };
        if let Some(mac) = mac {
            set_mac(&name, mac).map_err(io_err)?;
        }
        let mac = get_mac(&name).map_err(io_err)?;
        let mut uso = false;
        if cfg.offload {
            use std::os::fd::AsRawFd;
            uso = set_offload(dev.as_raw_fd()).map_err(io_err)?;
        }
        dev.enabled(true)
            .map_err(|e| io_err(io::Error::other(e.to_string())))?;
        // SAFETY: into_raw_fd hands us sole ownership of the open descriptor.
        let file = unsafe { File::from_raw_fd(dev.into_raw_fd()) };
        let fd = Async::new(file).map_err(|error| TapError::Io {
            name: name.clone(),
            error,
        })?;
        Ok(Tap {
            name,
            mac,
            mtu: cfg.mtu,
            fd: Arc::new(fd),
            vnet: cfg.offload,
            uso,
        })
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The device's MAC address (the node pins it to the TAP's port: no
    /// link may use it as a source, spec/protocol.md §7).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Whether the device hands over super-frames (offloads on).
    pub fn offload(&self) -> bool {
        self.vnet
    }

    /// Turns the device into a link (rx: frames the host sends out of the
    /// TAP; tx: frames delivered to the host). The device goes away when
    /// both halves are dropped.
    pub fn into_link(self) -> Link {
        let max_frame = usize::from(self.mtu) + wire::MAX_OVERHEAD;
        let vnet = self.vnet;
        let mut link = Link::new(
            Box::pin(TapRx {
                fd: self.fd.clone(),
                buf: BytesMut::new(),
                max_frame: if vnet {
                    crate::offload::VNET_HDR_LEN + crate::offload::MAX_SUPER
                } else {
                    max_frame
                },
                vnet,
            }),
            Box::pin(TapTx {
                fd: self.fd,
                queue: VecDeque::new(),
                queued_bytes: 0,
                name: self.name.clone(),
                refused: 0,
                log_limit: LogLimiter::default(),
                vnet,
            }),
            PeerInfo {
                scheme: "tap",
                remote: self.name,
            },
        );
        link.offload = vnet;
        link.offload_udp = self.uso;
        link
    }
}

use libc::{
    TUNSETOFFLOAD, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6,
};

/// Enables checksum and TCP (and, where the kernel has it, UDP)
/// segmentation offload on a TAP opened with `IFF_VNET_HDR`. Returns
/// whether UDP segmentation is on.
fn set_offload(fd: std::os::fd::RawFd) -> io::Result<bool> {
    let tcp = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    for (flags, uso) in [(tcp | TUN_F_USO4 | TUN_F_USO6, true), (tcp, false)] {
        // SAFETY: a valid TAP descriptor and an integer argument.
        if unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, flags) } == 0 {
            return Ok(uso);
        }
    }
    Err(io::Error::last_os_error())
}

/// A device's MAC address (SIOCGIFHWADDR).
fn get_mac(name: &str) -> io::Result<MacAddr> {
    hwaddr(name, None)
}

/// Sets a device's MAC address (SIOCSIFHWADDR).
fn set_mac(name: &str, mac: MacAddr) -> io::Result<()> {
    hwaddr(name, Some(mac)).map(|_| ())
}

/// Reads, or sets, a device's hardware address.
fn hwaddr(name: &str, set: Option<MacAddr>) -> io::Result<MacAddr> {
    // SAFETY: a plain socket for ioctls; closed by OwnedFd on return.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sock is a fresh descriptor we own.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let op = match set {
        Some(mac) => {
            // SAFETY: writing the hwaddr member of the union we then pass
            // to the ioctl.
            unsafe {
                req.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
                for (d, s) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac.0) {
                    *d = s as libc::c_char;
                }
            }
            libc::SIOCSIFHWADDR
        }
        None => libc::SIOCGIFHWADDR,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: valid socket, valid ifreq for SIOCSIFHWADDR/SIOCGIFHWADDR.
    if unsafe { libc::ioctl(sock.as_raw_fd(), op, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut mac = [0u8; 6];
    // SAFETY: the kernel filled (or we set) the hwaddr member.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    for (m, d) in mac.iter_mut().zip(data) {
        *m = d as u8;
    }
    Ok(MacAddr(mac))
}

/// A MAC address that stays the same when the node restarts, so neighbours'
/// ARP/ND caches stay valid across a restart (systemd's
/// `MACAddressPolicy=persistent` does the same for virtual devices).
/// Derived from the machine id, the network namespace and the device name:
/// two nodes in different namespaces of one machine get different MACs.
/// Locally administered, unicast.
pub fn persistent_mac(device: &str) -> MacAddr {
    use std::os::unix::fs::MetadataExt;
    let machine = [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/proc/sys/kernel/hostname",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .unwrap_or_default();
    let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    // FNV-1a, 64 bits: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in machine
        .trim()
        .bytes()
        .chain(netns.to_le_bytes())
        .chain(device.bytes())
        .chain(*b"etherws")
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// Frames are read into one buffer of max frame + 1 bytes. A frame that
/// fills at least half of it takes the buffer along (no copy; at most 2×
/// its size pinned) and a new one is made; a smaller frame is copied out
/// into a buffer of its own size and the read buffer is reused. Either way
/// a queued frame pins at most twice its own size, never a shared chunk.
struct TapRx {
    fd: Arc<Async<File>>,
    buf: BytesMut,
    /// The largest read (with the virtio-net header when `vnet`).
    max_frame: usize,
    /// Each read starts with a virtio-net header.
    vnet: bool,
}

impl Stream for TapRx {
    type Item = Result<Frame, LinkError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // One byte more than the largest frame: the kernel truncates a
        // longer frame silently, so a full read means "too long", and the
        // node counts it as oversize instead of forwarding a cut frame.
        let want = this.max_frame + 1;
        if this.buf.capacity() < want {
            // Not zeroed: read(2) writes before we look.
            this.buf = BytesMut::with_capacity(want);
        }
        this.buf.clear();
        loop {
            let spare = this.buf.spare_capacity_mut();
            // SAFETY: reading into the buffer's spare capacity, `want` bytes
            // at most (checked above); the kernel initialises what it reports.
            let n = unsafe { libc::read(this.fd.as_raw_fd(), spare.as_mut_ptr().cast(), want) };
            if n > 0 {
                let n = n as usize;
                let frame = if 2 * n >= want {
                    // SAFETY: the kernel initialised n bytes.
                    unsafe { this.buf.set_len(n) };
                    std::mem::take(&mut this.buf).freeze()
                } else {
                    // SAFETY: as above; the slice is copied out at once.
                    let data = unsafe { std::slice::from_raw_parts(this.buf.as_ptr(), n) };
                    bytes::Bytes::copy_from_slice(data)
                };
                if !this.vnet {
                    return Poll::Ready(Some(Ok(Frame::new(frame))));
                }
                return Poll::Ready(Some(
                    crate::offload::decode_message(frame)
                        .map_err(|_| LinkError::NotAFrame("bad offload header from the TAP")),
                ));
            }
            if n == 0 {
                return Poll::Ready(None);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => match this.fd.poll_readable(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(LinkError::Io(e)))),
                    Poll::Pending => return Poll::Pending,
                },
                io::ErrorKind::Interrupted => continue,
                _ => return Poll::Ready(Some(Err(LinkError::Io(e)))),
            }
        }
    }
}

/// Frames queue in `start_send` and are written, one `write` each, in
/// `poll_flush`.
struct TapTx {
    fd: Arc<Async<File>>,
    queue: VecDeque<Frame>,
    /// Bytes of frame data in `queue`.
    queued_bytes: usize,
    name: String,
    /// Frames the kernel refused (device down, invalid frame); dropped.
    refused: u64,
    log_limit: LogLimiter,
    /// Each write starts with a virtio-net header.
    vnet: bool,
}

/// `poll_ready` pushes back at this many queued frames or bytes.
const TAP_TX_QUEUE: usize = 256;
const TAP_TX_BYTES: usize = 1024 * 1024;

impl TapTx {
    fn write_queued(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        while let Some(frame) = self.queue.front() {
            let written = if self.vnet {
                // The header and the frame in one writev: no copy.
                let h = crate::offload::header_for(frame);
                let parts = [io::IoSlice::new(&h), io::IoSlice::new(frame.as_ref())];
                Pin::new(&mut &*self.fd).poll_write_vectored(cx, &parts)
            } else {
                Pin::new(&mut &*self.fd).poll_write(cx, frame.as_ref())
            };
            match written {
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
                    self.refused += 1;
                    if let Some(suppressed) = self.log_limit.check(std::time::Instant::now()) {
                        log::warn!(
                            "{}: kernel refused a {}-byte frame: {e} ({} refused in all{})",
                            self.name,
                            frame.len(),
                            self.refused,
                            if suppressed > 0 {
                                ", some lines suppressed"
                            } else {
                                ""
                            }
                        );
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(LinkError::Io(e))),
            }
            if let Some(f) = self.queue.pop_front() {
                self.queued_bytes -= f.len();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Sink<Frame> for TapTx {
    type Error = LinkError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        let this = self.get_mut();
        if this.queue.len() >= TAP_TX_QUEUE || this.queued_bytes >= TAP_TX_BYTES {
            this.write_queued(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), LinkError> {
        let this = self.get_mut();
        this.queued_bytes += item.len();
        this.queue.push_back(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.get_mut().write_queued(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_mac_is_stable_unicast_and_local() {
        let a = persistent_mac("ethws0");
        assert_eq!(a, persistent_mac("ethws0"));
        assert_ne!(a, persistent_mac("ethws1"));
        assert!(a.is_unicast() && a.is_local());
    }

    #[test]
    fn mac_policy_parses() {
        assert_eq!("random".parse::<MacPolicy>(), Ok(MacPolicy::Random));
        assert_eq!(
            "02:00:00:00:00:01".parse::<MacPolicy>(),
            Ok(MacPolicy::Fixed(MacAddr([2, 0, 0, 0, 0, 1])))
        );
        assert!("01:00:5e:00:00:01".parse::<MacPolicy>().is_err());
        assert!("nope".parse::<MacPolicy>().is_err());
    }
}
