//! Zero-copy view of an Ethernet II frame, with 802.1Q / 802.1ad tags.
//!
//! Modelled on smoltcp's `wire::EthernetFrame`: a thin wrapper over any
//! `T: AsRef<[u8]>` that reads fields in place. [`EthernetFrame::new_checked`]
//! validates the length once, so the accessors never panic afterwards.

use core::fmt;

/// Length of the untagged Ethernet header: destination, source, ethertype.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// Extra room a node leaves above the MTU for the Ethernet header and up to
/// two VLAN tags (QinQ), so a full-MTU tagged frame still fits.
pub const MAX_OVERHEAD: usize = HEADER_LEN + 2 * VLAN_TAG_LEN;

/// Well-known ethertypes.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    /// Customer VLAN tag (802.1Q).
    pub const VLAN: u16 = 0x8100;
    /// Service VLAN tag (802.1ad, the outer tag of QinQ).
    pub const QINQ: u16 = 0x88a8;
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Group bit set: multicast or broadcast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
    /// Locally administered bit set (as Linux uses for random TAP addresses).
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl core::str::FromStr for MacAddr {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts.next().ok_or(WireError::BadMac)?;
            *b = u8::from_str_radix(p, 16).map_err(|_| WireError::BadMac)?;
        }
        if parts.next().is_some() {
            return Err(WireError::BadMac);
        }
        Ok(MacAddr(out))
    }
}

/// Why a byte slice is not a usable Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("frame too short: {len} bytes, need at least {need}")]
    Truncated { len: usize, need: usize },
    #[error("malformed MAC address")]
    BadMac,
}

/// One VLAN tag: TPID and the 16-bit TCI it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    pub tpid: u16,
    pub tci: u16,
}

impl VlanTag {
    /// The 12-bit VLAN identifier.
    pub fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
    /// The 3-bit priority code point.
    pub fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }
}

/// A read-only (or, with `T: AsMut<[u8]>`, writable) view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
    /// Offset of the final ethertype field (12, 16 or 20), found at check time.
    type_offset: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn is_tpid(t: u16) -> bool {
    t == ethertype::VLAN || t == ethertype::QINQ
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking that it holds a full header, including
    /// every VLAN tag it announces (at most two are parsed: QinQ).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        let mut need = HEADER_LEN;
        if b.len() < need {
            return Err(WireError::Truncated { len: b.len(), need });
        }
        let mut type_offset = 12;
        for _ in 0..2 {
            if !is_tpid(be16(b, type_offset)) {
                break;
            }
            need += VLAN_TAG_LEN;
            if b.len() < need {
                return Err(WireError::Truncated { len: b.len(), need });
            }
            type_offset += VLAN_TAG_LEN;
        }
        Ok(EthernetFrame {
            buffer,
            type_offset,
        })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dst(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[0..6]);
        MacAddr(m)
    }

    pub fn src(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[6..12]);
        MacAddr(m)
    }

    /// The ethertype of the payload, after any VLAN tags.
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), self.type_offset)
    }

    /// The outermost tag (802.1Q, or the 802.1ad S-tag of a QinQ frame).
    pub fn outer_tag(&self) -> Option<VlanTag> {
        self.tag_at(12)
    }

    /// The inner (C-)tag of a double-tagged frame.
    pub fn inner_tag(&self) -> Option<VlanTag> {
        self.tag_at(16)
    }

    fn tag_at(&self, at: usize) -> Option<VlanTag> {
        if at + VLAN_TAG_LEN > self.type_offset {
            return None;
        }
        let b = self.buffer.as_ref();
        Some(VlanTag {
            tpid: be16(b, at),
            tci: be16(b, at + 2),
        })
    }

    /// The VLAN the frame belongs to for switching: the outer tag's VID,
    /// or 0 for an untagged frame.
    pub fn vlan_id(&self) -> u16 {
        self.outer_tag().map_or(0, |t| t.vid())
    }

    /// Header length including VLAN tags.
    pub fn header_len(&self) -> usize {
        self.type_offset + 2
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[0..6].copy_from_slice(&mac.0);
    }
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[6..12].copy_from_slice(&mac.0);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6], rest: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&dst);
        v.extend_from_slice(&src);
        v.extend_from_slice(rest);
        v
    }

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    #[test]
    fn untagged_ipv4() {
        let f = frame(B, A, &[0x08, 0x00, 0x45, 0x00]);
        let v = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(v.dst(), MacAddr(B));
        assert_eq!(v.src(), MacAddr(A));
        assert_eq!(v.ethertype(), ethertype::IPV4);
        assert_eq!(v.outer_tag(), None);
        assert_eq!(v.vlan_id(), 0);
        assert_eq!(v.header_len(), 14);
        assert_eq!(v.payload(), &[0x45, 0x00]);
        assert!(v.dst().is_unicast());
    }

    #[test]
    fn truncated_is_an_error() {
        for n in 0..14 {
            let f = vec![0u8; n];
            assert_eq!(
                EthernetFrame::new_checked(&f[..]).unwrap_err(),
                WireError::Truncated { len: n, need: 14 }
            );
        }
        // A VLAN tag announced but cut short.
        let f = frame(B, A, &[0x81, 0x00, 0x00]);
        assert_eq!(
            EthernetFrame::new_checked(&f[..]).unwrap_err(),
            WireError::Truncated { len: 15, need: 18 }
        );
    }

    #[test]
    fn vlan_tagged() {
        // PCP 5, VID 100, then IPv6.
        let f = frame(B, A, &[0x81, 0x00, 0xa0, 0x64, 0x86, 0xdd, 0x60]);
        let v = EthernetFrame::new_checked(&f[..]).unwrap();
        let t = v.outer_tag().unwrap();
        assert_eq!(t.tpid, ethertype::VLAN);
        assert_eq!(t.vid(), 100);
        assert_eq!(t.pcp(), 5);
        assert_eq!(v.inner_tag(), None);
        assert_eq!(v.vlan_id(), 100);
        assert_eq!(v.ethertype(), ethertype::IPV6);
        assert_eq!(v.payload(), &[0x60]);
    }

    #[test]
    fn qinq() {
        let f = frame(
            B,
            A,
            &[
                0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x06, 1,
            ],
        );
        let v = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(v.outer_tag().unwrap().tpid, ethertype::QINQ);
        assert_eq!(v.vlan_id(), 10);
        assert_eq!(v.inner_tag().unwrap().vid(), 20);
        assert_eq!(v.ethertype(), ethertype::ARP);
        assert_eq!(v.header_len(), 22);
        // Truncated inside the inner tag.
        assert!(EthernetFrame::new_checked(&f[..19]).is_err());
    }

    #[test]
    fn broadcast_and_multicast_bits() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        let m: MacAddr = "33:33:00:00:00:01".parse().unwrap();
        assert!(m.is_multicast() && !m.is_broadcast());
        assert!(MacAddr(A).is_local());
        assert_eq!(MacAddr(A).to_string(), "02:00:00:00:00:0a");
        assert!("02:00:00".parse::<MacAddr>().is_err());
    }

    #[test]
    fn rewrite_in_place() {
        let mut f = frame(B, A, &[0x08, 0x00, 1, 2]);
        let mut v = EthernetFrame::new_checked(&mut f[..]).unwrap();
        v.set_src(MacAddr(B));
        v.payload_mut()[0] = 9;
        assert_eq!(&f[6..12], &B);
        assert_eq!(f[14], 9);
    }
}
