//! Offload metadata (the Linux virtio-net header a TAP device opened with
//! `IFF_VNET_HDR` puts before each frame) and the software fallback for a
//! port that cannot take it: segmenting a TCP or UDP super-frame into
//! wire-sized frames and completing a partial checksum, as the kernel's GSO
//! does. Sans-IO: bytes in, frames out.
//!
//! A super-frame is one frame of up to 64 KiB whose TCP (or UDP) payload
//! the kernel would otherwise have cut into `gso_size` pieces; carrying it
//! whole saves one read, one write and one message per piece.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::Frame;
use crate::wire::ethertype;

/// Size of the header on the wire and on the TAP (`struct virtio_net_hdr`,
/// little-endian).
pub const VNET_HDR_LEN: usize = 10;

/// Largest super-frame: a 64 KiB IP packet plus the Ethernet header and two
/// VLAN tags.
pub const MAX_SUPER: usize = 65536 + crate::wire::MAX_OVERHEAD;

/// `flags`: the L4 checksum is partial (pseudo-header only) and must be
/// completed from `csum_start`, storing at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified.
pub const F_DATA_VALID: u8 = 2;

/// `gso_type` values.
pub mod gso {
    pub const NONE: u8 = 0;
    pub const TCPV4: u8 = 1;
    pub const UDP: u8 = 3;
    pub const TCPV6: u8 = 4;
    pub const UDP_L4: u8 = 5;
    /// Flag: the TCP segments carry ECN (CWR on the first only).
    pub const ECN: u8 = 0x80;
}

/// The virtio-net header of a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers (Ethernet to L4) before the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

/// Why a header or a super-frame cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    #[error("bad offload header: {0}")]
    Header(&'static str),
    #[error("cannot segment: {0}")]
    Segment(&'static str),
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Result<VnetHdr, OffloadError> {
        if b.len() < VNET_HDR_LEN {
            return Err(OffloadError::Header("shorter than 10 bytes"));
        }
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let h = VnetHdr {
            // Other bits (e.g. RSC_INFO) mean nothing here: cleared, so
            // they never reach a kernel that might read them.
            flags: b[0] & (F_NEEDS_CSUM | F_DATA_VALID),
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        };
        match h.gso_type & !gso::ECN {
            gso::NONE | gso::TCPV4 | gso::TCPV6 | gso::UDP_L4 => {}
            gso::UDP => {
                return Err(OffloadError::Header(
                    "UFO (IP fragmentation) is not supported",
                ))
            }
            _ => return Err(OffloadError::Header("unknown gso_type")),
        }
        if h.is_gso() && h.gso_size == 0 {
            return Err(OffloadError::Header("gso_size 0"));
        }
        Ok(h)
    }

    pub fn write(&self, out: &mut [u8; VNET_HDR_LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        self.write(&mut b);
        b
    }

    /// A super-frame that must be cut into segments.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !gso::ECN != gso::NONE
    }

    /// A UDP super-frame (USO), which not every kernel takes.
    pub fn is_udp_gso(&self) -> bool {
        self.is_gso() && self.gso_type & !gso::ECN == gso::UDP_L4
    }

    /// Whether the frame needs nothing done to be sent as it is.
    pub fn is_plain(&self) -> bool {
        !self.is_gso() && self.flags & F_NEEDS_CSUM == 0
    }
}

/// A message that starts with a virtio-net header (a TAP read, a ws or udp
/// message of an offload link) as the frame after it, the header its
/// metadata (none when plain). The one decoder of such messages.
pub fn decode_message(msg: Bytes) -> Result<Frame, OffloadError> {
    let h = VnetHdr::parse(&msg)?;
    let data = msg.slice(VNET_HDR_LEN..);
    Ok(Frame::with_vnet(data, (!h.is_plain()).then_some(h)))
}

/// The virtio-net header that goes before `frame` on a TAP or link that
/// carries offload metadata (all zeros for a plain frame). The one encoder.
pub fn header_for(frame: &Frame) -> [u8; VNET_HDR_LEN] {
    frame.meta.vnet.unwrap_or_default().to_bytes()
}

/// Internet checksum (RFC 1071) of `data` added to `sum`, not folded.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// The Internet checksum (RFC 1071) of `data`: what an IPv4 header or
/// an ICMP message carries.
pub fn internet_checksum(data: &[u8]) -> u16 {
    fold(sum16(0, data))
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Where the L3 header starts and which ethertype it has: the wire view's
/// VLAN walk (at most two tags, as the switch sees them).
fn l3(frame: &[u8]) -> Result<(usize, u16), OffloadError> {
    let view = crate::wire::EthernetFrame::new_checked(frame)
        .map_err(|_| OffloadError::Segment("truncated Ethernet header"))?;
    let et = view.ethertype();
    if et == ethertype::VLAN || et == ethertype::QINQ {
        return Err(OffloadError::Segment("more than two VLAN tags"));
    }
    Ok((view.header_len(), et))
}

/// The pseudo-header sum (without the length) for an L4 protocol.
fn pseudo(frame: &[u8], l3_off: usize, et: u16, proto: u8) -> Result<u32, OffloadError> {
    let s = match et {
        ethertype::IPV4 => {
            let ip = frame
                .get(l3_off..l3_off + 20)
                .ok_or(OffloadError::Segment("short IPv4"))?;
            sum16(0, &ip[12..20])
        }
        ethertype::IPV6 => {
            let ip = frame
                .get(l3_off..l3_off + 40)
                .ok_or(OffloadError::Segment("short IPv6"))?;
            sum16(0, &ip[8..40])
        }
        _ => return Err(OffloadError::Segment("not IPv4 or IPv6")),
    };
    Ok(s + u32::from(proto))
}

/// Completes a partial L4 checksum in place: the field at
/// `csum_start + csum_offset` holds the pseudo-header sum; the result covers
/// it and everything from `csum_start` on.
pub fn complete_checksum(frame: &mut [u8], h: &VnetHdr) -> Result<(), OffloadError> {
    let start = usize::from(h.csum_start);
    let at = start + usize::from(h.csum_offset);
    if at + 2 > frame.len() || start > frame.len() {
        return Err(OffloadError::Header("checksum offsets beyond the frame"));
    }
    // 0 goes out as 0xffff (the same in ones' complement), as Linux does:
    // a UDP checksum of 0 would mean "none".
    let c = match fold(sum16(0, &frame[start..])) {
        0 => 0xffff,
        c => c,
    };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Makes `frame` (with header `h`) ready for a port without offloads:
/// completes its checksum, or cuts a super-frame into segments of
/// `gso_size` payload bytes each with their headers, lengths, IPv4 ids,
/// TCP sequence numbers and flags, and checksums set, as the kernel's GSO
/// would. Each resulting frame goes to `out`; on an error none has.
pub fn finish(frame: Frame, h: &VnetHdr, mut out: impl FnMut(Frame)) -> Result<(), OffloadError> {
    if !h.is_gso() {
        if h.flags & F_NEEDS_CSUM != 0 {
            // In place when nothing else holds the frame (a TAP read or a
            // received message usually owns its buffer alone).
            let mut b = frame
                .into_bytes()
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
            complete_checksum(&mut b, h)?;
            out(Frame::new(b.freeze()));
        } else {
            out(Frame::new(frame.into_bytes()));
        }
        return Ok(());
    }
    segment(frame.bytes(), h, &mut out)
}

/// Most bytes the segments of one super-frame may add up to (headers
/// repeated in each): twice [`MAX_SUPER`], so finishing a peer's frame at
/// most doubles the memory and bandwidth it costs.
pub const MAX_FINISHED: usize = 2 * MAX_SUPER;

/// Most segments one super-frame may be cut into: bounds the work and the
/// memory one frame from a peer can cost (a 64 KiB frame with the smallest
/// TCP MSS the kernel sends, 48 bytes, makes about 1400).
pub const MAX_SEGMENTS: usize = 4096;

/// Where a super-frame's headers are.
struct Layout {
    l3_off: usize,
    et: u16,
    l4_off: usize,
    l4_len: usize,
    tcp: bool,
    v4: bool,
}

impl Layout {
    /// Headers repeated in every segment.
    fn hdrs(&self) -> usize {
        self.l4_off + self.l4_len
    }
}

fn layout(f: &[u8], h: &VnetHdr) -> Result<Layout, OffloadError> {
    let (l3_off, et) = l3(f)?;
    let l4_off = usize::from(h.csum_start);
    if l4_off <= l3_off || l4_off >= f.len() {
        return Err(OffloadError::Segment("csum_start is not an L4 header"));
    }
    let tcp = matches!(h.gso_type & !gso::ECN, gso::TCPV4 | gso::TCPV6);
    let (proto, l4_len) = if tcp {
        let doff = f
            .get(l4_off + 12)
            .ok_or(OffloadError::Segment("short TCP header"))?
            >> 4;
        (6u8, usize::from(doff) * 4)
    } else {
        (17u8, 8)
    };
    if l4_off + l4_len > f.len() || (tcp && l4_len < 20) {
        return Err(OffloadError::Segment("headers beyond the frame"));
    }
    // The L4 header follows the IP header directly: IPv4 options are
    // fine, IPv6 extension headers are not (the kernel does not make such
    // super-frames either).
    let v4 = match et {
        ethertype::IPV4
            if f[l3_off] & 0x0f >= 5 && l4_off == l3_off + usize::from(f[l3_off] & 0x0f) * 4 =>
        {
            true
        }
        ethertype::IPV6 if l4_off == l3_off + 40 => false,
        ethertype::IPV4 | ethertype::IPV6 => {
            return Err(OffloadError::Segment(
                "csum_start is not where the IP header ends",
            ))
        }
        _ => return Err(OffloadError::Segment("not IPv4 or IPv6")),
    };
    if tcp && (h.gso_type & !gso::ECN == gso::TCPV4) != v4 {
        return Err(OffloadError::Segment(
            "gso_type is for the other IP version",
        ));
    }
    let ip_proto = if v4 { f[l3_off + 9] } else { f[l3_off + 6] };
    if ip_proto != proto {
        return Err(OffloadError::Segment(
            "IP protocol does not match gso_type (extension headers?)",
        ));
    }
    Ok(Layout {
        l3_off,
        et,
        l4_off,
        l4_len,
        tcp,
        v4,
    })
}

/// Why a frame with offload metadata from a peer cannot be switched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    /// A frame (or one of its segments) longer than max frame.
    #[error("{0} bytes > max frame (offloaded frame)")]
    Oversize(usize),
    /// Metadata that does not describe the frame.
    #[error(transparent)]
    Bad(OffloadError),
}

/// Checks, before switching, that a frame with header `h` can be finished
/// into frames of at most `max_frame` bytes: offsets inside the frame, a
/// super-frame of at most [`MAX_SUPER`] bytes and [`MAX_SEGMENTS`]
/// segments whose headers can be found. Frames from peers are checked here
/// so that a port without offloads never gets anything it would not accept
/// from the wire.
pub fn check(frame: &[u8], h: &VnetHdr, max_frame: usize) -> Result<(), Unfit> {
    if h.flags & F_NEEDS_CSUM != 0 {
        let start = usize::from(h.csum_start);
        if start < 14 || start + usize::from(h.csum_offset) + 2 > frame.len() {
            return Err(Unfit::Bad(OffloadError::Header(
                "checksum offsets beyond the frame",
            )));
        }
    }
    if !h.is_gso() {
        return if frame.len() > max_frame {
            Err(Unfit::Oversize(frame.len()))
        } else {
            Ok(())
        };
    }
    if frame.len() > MAX_SUPER {
        return Err(Unfit::Oversize(frame.len()));
    }
    let bad = |why| Err(Unfit::Bad(OffloadError::Header(why)));
    if h.gso_size == 0 {
        return bad("gso_size 0");
    }
    if usize::from(h.hdr_len) > frame.len() {
        return bad("hdr_len beyond the frame");
    }
    let l = layout(frame, h).map_err(Unfit::Bad)?;
    // The checksum goes where the L4 header has it, nowhere else: a TAP
    // or peer that finishes the frame later must not change bytes that
    // filters and the switch have seen.
    if h.flags & F_NEEDS_CSUM == 0 || usize::from(h.csum_offset) != if l.tcp { 16 } else { 6 } {
        return bad("segmentation without the L4 checksum offsets");
    }
    let seg = l.hdrs() + usize::from(h.gso_size);
    if seg > max_frame && frame.len() > max_frame {
        return Err(Unfit::Oversize(seg));
    }
    let payload = frame.len() - l.hdrs();
    let n = payload.div_ceil(usize::from(h.gso_size));
    if n > MAX_SEGMENTS {
        return Err(Unfit::Bad(OffloadError::Segment("more than 4096 segments")));
    }
    // Tiny segments repeat the headers many times: bound what one frame
    // from a peer may become.
    if n * l.hdrs() + payload > MAX_FINISHED {
        return Err(Unfit::Bad(OffloadError::Segment(
            "segments would add up to more than twice the largest super-frame",
        )));
    }
    Ok(())
}

fn segment(f: &Bytes, h: &VnetHdr, out: &mut impl FnMut(Frame)) -> Result<(), OffloadError> {
    let l = layout(f, h)?;
    let Layout {
        l3_off,
        et,
        l4_off,
        l4_len,
        tcp,
        v4,
    } = l;
    let hdrs = l.hdrs();
    let proto = if tcp { 6 } else { 17 };
    if usize::from(h.gso_size) == 0 {
        return Err(OffloadError::Header("gso_size 0"));
    }
    let pseudo_base = pseudo(f, l3_off, et, proto)?;
    let payload = &f[hdrs..];
    let mss = usize::from(h.gso_size);
    let n = payload.len().div_ceil(mss).max(1);
    let ip_id = u16::from_be_bytes([f[l3_off + 4], f[l3_off + 5]]);
    let seq0 = if tcp {
        u32::from_be_bytes([f[l4_off + 4], f[l4_off + 5], f[l4_off + 6], f[l4_off + 7]])
    } else {
        0
    };
    let flags0 = if tcp { f[l4_off + 13] } else { 0 };
    for i in 0..n {
        let piece = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let mut s = BytesMut::with_capacity(hdrs + piece.len());
        s.put_slice(&f[..hdrs]);
        s.put_slice(piece);
        let l4_total = l4_len + piece.len();
        if v4 {
            let total = (l4_off - l3_off + l4_total) as u16;
            s[l3_off + 2..l3_off + 4].copy_from_slice(&total.to_be_bytes());
            let id = ip_id.wrapping_add(i as u16);
            s[l3_off + 4..l3_off + 6].copy_from_slice(&id.to_be_bytes());
            s[l3_off + 10..l3_off + 12].copy_from_slice(&[0, 0]);
            let c = fold(sum16(0, &s[l3_off..l4_off]));
            s[l3_off + 10..l3_off + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let plen = (l4_off - l3_off - 40 + l4_total) as u16;
            s[l3_off + 4..l3_off + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let csum_at;
        if tcp {
            let seq = seq0.wrapping_add((i * mss) as u32);
            s[l4_off + 4..l4_off + 8].copy_from_slice(&seq.to_be_bytes());
            let mut fl = flags0;
            if i + 1 < n {
                fl &= !(0x01 | 0x08); // FIN and PSH only on the last segment
            }
            if i > 0 {
                fl &= !0x80; // CWR only on the first
            }
            s[l4_off + 13] = fl;
            csum_at = l4_off + 16;
        } else {
            s[l4_off + 4..l4_off + 6].copy_from_slice(&(l4_total as u16).to_be_bytes());
            csum_at = l4_off + 6;
        }
        s[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let sum = sum16(pseudo_base + l4_total as u32, &s[l4_off..]);
        let mut c = fold(sum);
        if !tcp && c == 0 {
            c = 0xffff; // UDP: 0 means "no checksum"
        }
        s[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        out(Frame::new(s.freeze()));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4 TCP super-frame (optionally VLAN-tagged) carrying `payload`,
    /// with a partial checksum as the kernel hands it over.
    pub(crate) fn tcp4_super(payload: &[u8], vlan: bool, mss: u16) -> (Vec<u8>, VnetHdr) {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let l3 = f.len();
        let total = (20 + 32 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
        f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[198, 19, 0, 2, 198, 19, 0, 1]);
        let c = fold(sum16(0, &f[l3..l3 + 20]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let l4 = f.len();
        // TCP: ports, seq, ack, doff 8 (with 12 bytes of options), ACK|PSH|FIN.
        f.extend_from_slice(&[
            0x9c, 0x40, 0x13, 0x89, 0, 0, 0x10, 0, 0, 0, 0, 1, 0x80, 0x99, 0xff, 0xff,
        ]);
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        f.extend_from_slice(payload);
        // The partial checksum: the pseudo-header sum, folded, not inverted.
        let ps = sum16(0, &f[l3 + 12..l3 + 20]) + 6 + (32 + payload.len()) as u32;
        let partial = !fold(ps);
        f[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: gso::TCPV4,
            hdr_len: (l4 + 32) as u16,
            gso_size: mss,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        (f, h)
    }

    fn verify_l4(seg: &[u8], l3: usize, v4: bool, proto: u8) {
        let l4 = if v4 {
            l3 + usize::from(seg[l3] & 0xf) * 4
        } else {
            l3 + 40
        };
        let len = (seg.len() - l4) as u32;
        let ps = if v4 {
            sum16(0, &seg[l3 + 12..l3 + 20])
        } else {
            sum16(0, &seg[l3 + 8..l3 + 40])
        };
        assert_eq!(
            fold(sum16(ps + u32::from(proto) + len, &seg[l4..])),
            0,
            "L4 checksum"
        );
        if v4 {
            assert_eq!(fold(sum16(0, &seg[l3..l3 + 20])), 0, "IPv4 header checksum");
            assert_eq!(
                usize::from(u16::from_be_bytes([seg[l3 + 2], seg[l3 + 3]])),
                seg.len() - l3
            );
        }
    }

    #[test]
    fn vnet_header_round_trips_and_refuses_nonsense() {
        let h = VnetHdr {
            flags: 1,
            gso_type: gso::TCPV6,
            hdr_len: 86,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), Ok(h));
        let mut b = h.to_bytes();
        b[1] = 9;
        assert!(VnetHdr::parse(&b).is_err());
        b[1] = gso::TCPV4;
        b[4] = 0;
        b[5] = 0;
        assert!(VnetHdr::parse(&b).is_err(), "gso_size 0");
        assert!(VnetHdr::parse(&[0; 5]).is_err());
    }

    #[test]
    fn tcp4_super_frame_segments_like_gso() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        for vlan in [false, true] {
            let (f, h) = tcp4_super(&payload, vlan, 1448);
            let mut segs = Vec::new();
            finish(Frame::new(f.clone()), &h, |s| segs.push(s)).unwrap();
            assert_eq!(segs.len(), 7); // 6 × 1448 + 1312
            let l3 = if vlan { 18 } else { 14 };
            let mut rebuilt = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let s = s.as_ref();
                verify_l4(s, l3, true, 6);
                let l4 = l3 + 20;
                let seq = u32::from_be_bytes([s[l4 + 4], s[l4 + 5], s[l4 + 6], s[l4 + 7]]);
                assert_eq!(seq, 0x1000 + (i as u32) * 1448);
                assert_eq!(
                    u16::from_be_bytes([s[l3 + 4], s[l3 + 5]]),
                    0x1234 + i as u16
                );
                let last = i == segs.len() - 1;
                assert_eq!(s[l4 + 13] & 0x09 != 0, last, "FIN/PSH on the last only");
                assert_eq!(s[l4 + 13] & 0x80 != 0, i == 0, "CWR on the first only");
                rebuilt.extend_from_slice(&s[l4 + 32..]);
            }
            assert_eq!(rebuilt, payload);
        }
    }

    /// An IPv6 super-frame of `proto` (6: TCP, 17: UDP) carrying `payload`.
    pub(crate) fn v6_super(payload: &[u8], proto: u8, mss: u16) -> (Vec<u8>, VnetHdr) {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x86, 0xdd];
        let l4_len = if proto == 6 { 20 } else { 8 };
        let plen = (l4_len + payload.len()) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&plen.to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let l4 = f.len();
        if proto == 6 {
            f.extend_from_slice(&[
                0x9c, 0x40, 0x13, 0x89, 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff,
                0, 0, 0, 0,
            ]);
        } else {
            f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89, 0, 0, 0, 0]);
        }
        f.extend_from_slice(payload);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if proto == 6 { gso::TCPV6 } else { gso::UDP_L4 },
            hdr_len: (l4 + l4_len) as u16,
            gso_size: mss,
            csum_start: l4 as u16,
            csum_offset: if proto == 6 { 16 } else { 6 },
        };
        (f, h)
    }

    #[test]
    fn tcp6_and_udp_super_frames_segment() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        for proto in [6u8, 17] {
            let (f, h) = v6_super(&payload, proto, 1200);
            let mut segs = Vec::new();
            finish(Frame::new(f), &h, |s| segs.push(s)).unwrap();
            assert_eq!(segs.len(), 5);
            let l4_len = if proto == 6 { 20 } else { 8 };
            let mut rebuilt = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let s = s.as_ref();
                verify_l4(s, 14, false, proto);
                assert_eq!(
                    usize::from(u16::from_be_bytes([s[18], s[19]])),
                    s.len() - 54
                );
                if proto == 6 {
                    let seq = u32::from_be_bytes([s[58], s[59], s[60], s[61]]);
                    assert_eq!(
                        seq,
                        0xffff_ff00u32.wrapping_add(i as u32 * 1200),
                        "seq wraps"
                    );
                } else {
                    assert_eq!(
                        usize::from(u16::from_be_bytes([s[58], s[59]])),
                        s.len() - 54
                    );
                }
                rebuilt.extend_from_slice(&s[54 + l4_len..]);
            }
            assert_eq!(rebuilt, payload);
        }
    }

    /// spec/filter-abi.md §3.1, the rule for a filter that changes an IP
    /// address of a super-frame: the IPv4 header checksum (complete) is
    /// updated as RFC 1624 says, the partial L4 field (a sum, not a
    /// complement) the other way: S' = S + ~m + m'. Completed as a NIC or
    /// the kernel completes it (the complement of the sum from
    /// `csum_start`, the field included), the checksum is then right;
    /// updated as if it were complete (the rule spec §3.1 gave before) it
    /// is wrong.
    #[test]
    fn a_partial_checksum_follows_an_address_change_as_a_sum() {
        let add = |a: u16, b: u16| {
            let s = u32::from(a) + u32::from(b);
            ((s & 0xffff) + (s >> 16)) as u16
        };
        // RFC 1624 eqn. 3, for a complemented checksum.
        let complete = |hc: u16, m: u16, m2: u16| !add(add(!hc, !m), m2);
        // The same change to a plain (not complemented) sum.
        let partial = |sum: u16, m: u16, m2: u16| add(add(sum, !m), m2);
        let payload: Vec<u8> = (0..6000u32).map(|i| (i * 13) as u8).collect();
        for (rule_is_sum, right) in [(true, true), (false, false)] {
            let (mut f, h) = tcp4_super(&payload, false, 1448);
            let (l3, l4) = (14, usize::from(h.csum_start));
            // Source address 198.19.0.2 -> 198.19.0.9: its low word 0x0002 -> 0x0009.
            let (m, m2) = (0x0002u16, 0x0009u16);
            f[l3 + 15] = 9;
            let ipc = u16::from_be_bytes([f[l3 + 10], f[l3 + 11]]);
            f[l3 + 10..l3 + 12].copy_from_slice(&complete(ipc, m, m2).to_be_bytes());
            let c = l4 + usize::from(h.csum_offset);
            let s0 = u16::from_be_bytes([f[c], f[c + 1]]);
            let s1 = if rule_is_sum {
                partial(s0, m, m2)
            } else {
                complete(s0, m, m2)
            };
            f[c..c + 2].copy_from_slice(&s1.to_be_bytes());
            // Completion: the complement of the sum from csum_start.
            let done = fold(sum16(0, &f[l4..]));
            f[c..c + 2].copy_from_slice(&done.to_be_bytes());
            let len = (f.len() - l4) as u32;
            let ps = sum16(0, &f[l3 + 12..l3 + 20]) + 6 + len;
            let ok = fold(sum16(ps, &f[l4..])) == 0;
            assert_eq!(
                ok,
                right,
                "the {} rule",
                if rule_is_sum { "sum" } else { "complete" }
            );
            assert_eq!(fold(sum16(0, &f[l3..l3 + 20])), 0, "IPv4 header checksum");
        }
    }

    #[test]
    fn a_partial_checksum_is_completed() {
        let (f, mut h) = tcp4_super(&[9u8; 100], false, 1448);
        h.gso_type = gso::NONE;
        let mut out = Vec::new();
        finish(Frame::new(f), &h, |s| out.push(s)).unwrap();
        assert_eq!(out.len(), 1);
        verify_l4(out[0].as_ref(), 14, true, 6);
    }

    #[test]
    fn check_refuses_what_could_amplify_or_rewrite() {
        let (f, h) = tcp4_super(&[7u8; 3000], false, 1448);
        assert_eq!(check(&f, &h, 1522), Ok(()));
        let refused = |f: &[u8], h: &VnetHdr| matches!(check(f, h, 1522), Err(Unfit::Bad(_)));
        // Tiny segments: 3000 payload bytes cut in 1-byte pieces.
        assert!(refused(&f, &VnetHdr { gso_size: 1, ..h }));
        assert!(refused(&f, &VnetHdr { gso_size: 0, ..h }));
        // The checksum must go where TCP has it, and be asked for.
        assert!(refused(
            &f,
            &VnetHdr {
                csum_offset: 0,
                ..h
            }
        ));
        assert!(refused(&f, &VnetHdr { flags: 0, ..h }));
        // TCPv6 segmentation of an IPv4 frame.
        assert!(refused(
            &f,
            &VnetHdr {
                gso_type: gso::TCPV6,
                ..h
            }
        ));
        assert!(refused(&f, &VnetHdr { hdr_len: 4000, ..h }));
        // Three VLAN tags.
        let mut tagged = f[..12].to_vec();
        for _ in 0..3 {
            tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        tagged.extend_from_slice(&f[12..]);
        let h3 = VnetHdr {
            csum_start: h.csum_start + 12,
            ..h
        };
        assert!(refused(&tagged, &h3));
        let h2 = VnetHdr {
            csum_start: h.csum_start + 8,
            ..h
        };
        let two: Vec<u8> = [&f[..12], &tagged[12..20], &f[12..]].concat();
        assert_eq!(check(&two, &h2, 1530), Ok(()));
    }

    #[test]
    fn a_checksum_that_folds_to_zero_is_sent_as_ffff() {
        // 8 bytes summing to 0xffff: the checksum is 0, written as 0xffff.
        let mut f = vec![0u8; 14];
        f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0, 0, 0]);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 14,
            csum_offset: 6,
            ..Default::default()
        };
        complete_checksum(&mut f, &h).unwrap();
        assert_eq!(&f[20..22], &[0xff, 0xff]);
    }

    #[test]
    fn bad_offsets_are_errors_not_panics() {
        let (f, mut h) = tcp4_super(&[1u8; 3000], false, 1448);
        h.csum_start = 9000;
        assert!(finish(Frame::new(f.clone()), &h, |_| {}).is_err());
        h.csum_start = 5;
        assert!(finish(Frame::new(f[..40].to_vec()), &h, |_| {}).is_err());
        h.gso_type = gso::NONE;
        h.csum_offset = 60000;
        assert!(finish(Frame::new(f), &h, |_| {}).is_err());
    }
}
