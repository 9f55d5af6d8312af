//! [`Frame`]: a safe view over the frame buffer.

use crate::abi;

/// Length of an untagged Ethernet header (two MACs and the EtherType).
pub const HEADER_LEN: usize = 14;
/// TPID of an IEEE 802.1Q (customer) VLAN tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an IEEE 802.1ad (service, "QinQ") VLAN tag.
pub const TPID_8021AD: u16 = 0x88a8;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// How many VLAN tags [`Frame::ethertype`] looks through.
const MAX_TAGS: usize = 2;
/// How many IPv6 extension headers [`Frame::ip_protocol`] skips.
const MAX_IPV6_EXT: usize = 8;

const _: () = assert!(HEADER_LEN == abi::MIN_FRAME as usize);

fn is_tpid(v: u16) -> bool {
    v == TPID_8021Q || v == TPID_8021AD
}

/// An Ethernet frame (destination MAC first, no FCS) in a buffer, with its
/// current length.
///
/// Always `HEADER_LEN <= len() <= capacity()`. The bytes past `len()` are
/// room to grow (a VLAN tag, [`set_len`](Frame::set_len)); their contents
/// are unspecified.
///
/// The frame remembers whether it was possibly changed: any mutable access
/// or successful edit marks it [modified](Frame::is_modified). An unmodified
/// frame passes with the ABI's "pass unchanged" verdict (`0`, the host reads
/// nothing back); a modified one passes with its length (the host copies it
/// back, and counts a rewrite only if the bytes differ).
pub struct Frame<'a> {
    buf: &'a mut [u8],
    len: usize,
    modified: bool,
}

impl<'a> Frame<'a> {
    /// A frame of `len` bytes at the start of `buf` (whose whole size is the
    /// capacity). `None` unless `HEADER_LEN <= len <= buf.len()`.
    ///
    /// Filters get their frame from [`export_filter!`](crate::export_filter);
    /// this is for tests.
    pub fn new(buf: &'a mut [u8], len: usize) -> Option<Frame<'a>> {
        if (HEADER_LEN..=buf.len()).contains(&len) {
            Some(Frame {
                buf,
                len,
                modified: false,
            })
        } else {
            None
        }
    }

    /// The frame's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a frame has at least its header); for API symmetry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the frame may have been changed: set by `bytes_mut`,
    /// `payload_mut`, `buffer_mut`, and by every edit that succeeded
    /// (`set_dst`, `set_src`, `push_vlan`, `pop_vlan`, `set_vlan_id`,
    /// `set_len`, a `truncate` that shortened).
    #[inline]
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// The buffer's size: the most the frame can grow to.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The frame's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The frame's bytes, to rewrite in place.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.modified = true;
        &mut self.buf[..self.len]
    }

    /// The whole buffer (`capacity()` bytes), for filters that grow the
    /// frame by hand before [`set_len`](Frame::set_len).
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.modified = true;
        self.buf
    }

    /// Sets the length (growing or shrinking). `false`, and no change,
    /// unless `HEADER_LEN <= len <= capacity()`. Bytes gained by growing are
    /// whatever the buffer holds: write them.
    pub fn set_len(&mut self, len: usize) -> bool {
        if (HEADER_LEN..=self.buf.len()).contains(&len) {
            self.len = len;
            self.modified = true;
            true
        } else {
            false
        }
    }

    /// Shortens the frame to `len` bytes; no effect if it is not longer.
    /// Never below `HEADER_LEN` (a shorter length is taken as `HEADER_LEN`).
    pub fn truncate(&mut self, len: usize) {
        let len = len.max(HEADER_LEN);
        if len < self.len {
            self.len = len;
            self.modified = true;
        }
    }

    fn u16_at(&self, off: usize) -> Option<u16> {
        let b = self.bytes().get(off..off + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn mac_at(&self, off: usize) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buf[off..off + 6]);
        mac
    }

    /// Destination MAC.
    #[inline]
    pub fn dst(&self) -> [u8; 6] {
        self.mac_at(0)
    }

    /// Source MAC.
    #[inline]
    pub fn src(&self) -> [u8; 6] {
        self.mac_at(6)
    }

    /// Rewrites the destination MAC.
    #[inline]
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        self.modified = true;
        self.buf[0..6].copy_from_slice(&mac);
    }

    /// Rewrites the source MAC.
    #[inline]
    pub fn set_src(&mut self, mac: [u8; 6]) {
        self.modified = true;
        self.buf[6..12].copy_from_slice(&mac);
    }

    /// The EtherType field right after the MACs (a TPID if the frame is
    /// tagged).
    #[inline]
    pub fn outer_ethertype(&self) -> u16 {
        u16::from_be_bytes([self.buf[12], self.buf[13]])
    }

    /// (EtherType after the VLAN tags, offset of the payload).
    ///
    /// A tag counts when its TPID is 0x8100 or 0x88a8 and the frame holds
    /// the whole tag plus the next EtherType; at most two tags.
    fn parse_l2(&self) -> (u16, usize) {
        let mut ethertype = self.outer_ethertype();
        let mut off = 12;
        for _ in 0..MAX_TAGS {
            if !is_tpid(ethertype) {
                break;
            }
            match self.u16_at(off + 4) {
                Some(next) => {
                    off += 4;
                    ethertype = next;
                }
                None => break,
            }
        }
        (ethertype, off + 2)
    }

    /// The EtherType after up to two VLAN tags (TPID 0x8100 or 0x88a8).
    /// A frame with a third tag (or a truncated tag) gives that TPID.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        self.parse_l2().0
    }

    /// Length of the Ethernet header including the VLAN tags that
    /// [`ethertype`](Frame::ethertype) looked through: where the payload
    /// starts.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.parse_l2().1
    }

    /// The bytes after the Ethernet header and its VLAN tags.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let off = self.header_len();
        &self.bytes()[off..]
    }

    /// The payload, to rewrite in place.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let off = self.header_len();
        &mut self.bytes_mut()[off..]
    }

    /// Number of VLAN tags [`ethertype`](Frame::ethertype) looked through
    /// (0, 1 or 2).
    #[inline]
    pub fn vlan_tags(&self) -> usize {
        (self.header_len() - HEADER_LEN) / 4
    }

    /// The outer VLAN tag's TCI (PCP, DEI, VID), if the frame is tagged.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        if self.vlan_tags() > 0 {
            self.u16_at(14)
        } else {
            None
        }
    }

    /// The outer VLAN tag's VID (12 bits), if the frame is tagged.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The IP protocol: IPv4's protocol field, or for IPv6 the upper-layer
    /// Next Header after skipping the extension headers hop-by-hop (0),
    /// routing (43), fragment (44), destination options (60) and AH (51).
    /// If an extension header runs past the frame, its own number is given.
    /// `None` for a frame that is not IP (after VLAN tags), a version
    /// nibble that does not match, or a truncated fixed header.
    pub fn ip_protocol(&self) -> Option<u8> {
        let (ethertype, off) = self.parse_l2();
        let p = &self.bytes()[off..];
        match ethertype {
            ETHERTYPE_IPV4 if p.len() >= 20 && p[0] >> 4 == 4 => Some(p[9]),
            ETHERTYPE_IPV6 if p.len() >= 40 && p[0] >> 4 == 6 => {
                let mut next = p[6];
                let mut at = 40;
                for _ in 0..MAX_IPV6_EXT {
                    let ext_len = match next {
                        0 | 43 | 60 => p.get(at + 1).map(|&l| (l as usize + 1) * 8),
                        44 => Some(8),
                        51 => p.get(at + 1).map(|&l| (l as usize + 2) * 4),
                        _ => return Some(next),
                    };
                    match (p.get(at), ext_len) {
                        (Some(&n), Some(l)) => {
                            next = n;
                            at += l;
                        }
                        _ => return Some(next),
                    }
                }
                Some(next)
            }
            _ => None,
        }
    }

    /// Inserts a 4-byte VLAN tag (`tpid`, `tci`) right after the MACs; the
    /// frame grows by 4. `false`, and no change, if that would pass the
    /// capacity.
    pub fn push_vlan(&mut self, tpid: u16, tci: u16) -> bool {
        let len = self.len;
        if len + 4 > self.buf.len() {
            return false;
        }
        self.buf.copy_within(12..len, 16);
        self.buf[12..14].copy_from_slice(&tpid.to_be_bytes());
        self.buf[14..16].copy_from_slice(&tci.to_be_bytes());
        self.len = len + 4;
        self.modified = true;
        true
    }

    /// Removes the outer VLAN tag (TPID 0x8100 or 0x88a8); the frame
    /// shrinks by 4. `false`, and no change, if the frame is not tagged.
    pub fn pop_vlan(&mut self) -> bool {
        if self.vlan_tags() == 0 {
            return false;
        }
        let len = self.len;
        self.buf.copy_within(16..len, 12);
        self.len = len - 4;
        self.modified = true;
        true
    }

    /// Rewrites the outer VLAN tag's VID, keeping its PCP and DEI. `false`,
    /// and no change, if the frame is not tagged or `vid > 4095`.
    pub fn set_vlan_id(&mut self, vid: u16) -> bool {
        if vid > 0x0fff {
            return false;
        }
        match self.vlan_tci() {
            Some(tci) => {
                let tci = (tci & 0xf000) | vid;
                self.buf[14..16].copy_from_slice(&tci.to_be_bytes());
                self.modified = true;
                true
            }
            None => false,
        }
    }

    /// Whether this frame lives in the module's frame buffer (so the
    /// `capture` import sees it).
    pub(crate) fn is_in_frame_buffer(&self) -> bool {
        core::ptr::eq(
            self.buf.as_ptr(),
            crate::__private::buffer_ptr() as *const u8,
        )
    }
}
