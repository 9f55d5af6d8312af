//! TCP MSS clamping (as OpenVPN's `mssfix`), sans-IO: a SYN or SYN-ACK
//! about to cross a link that carries each frame in one datagram gets its
//! MSS option lowered so the segments it announces fit that datagram on a
//! 1500-byte path, unfragmented. Only the option's two bytes and the TCP
//! checksum change (RFC 1624's incremental update); a partial checksum
//! (offload: the field holds the pseudo-header sum, the kernel finishes
//! it) is left alone, as the bytes it covers are summed later.

use crate::wire::EthernetFrame;

const TCP: u8 = 6;
const SYN: u8 = 0x02;

/// One's-complement sum update: the field `sum` after a 16-bit word of
/// the covered data went from `old` to `new` (RFC 1624, eqn. 3).
fn update(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Where a TCP SYN's MSS option value sits in `frame` (an Ethernet frame,
/// up to two VLAN tags): (offset of the value, offset of the TCP header,
/// IPv6). `None` for any other frame, and for a malformed one.
fn find(frame: &[u8]) -> Option<(usize, usize, bool)> {
    let view = EthernetFrame::new_checked(frame).ok()?;
    let l3 = view.header_len();
    let ip = &frame[l3..];
    let (tcp, v6) = match view.ethertype() {
        0x0800 => {
            // Not a later fragment.
            if ip.len() < 20
                || ip[0] >> 4 != 4
                || ip[9] != TCP
                || u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0
            {
                return None;
            }
            (l3 + usize::from(ip[0] & 0x0f) * 4, false)
        }
        // No extension headers: the TCP header follows.
        0x86dd if ip.len() >= 40 && ip[0] >> 4 == 6 && ip[6] == TCP => (l3 + 40, true),
        _ => return None,
    };
    let h = frame.get(tcp..tcp + 20)?;
    if h[13] & SYN == 0 {
        return None;
    }
    let end = tcp + usize::from(h[12] >> 4) * 4;
    if end < tcp + 20 || frame.len() < end {
        return None;
    }
    let mut i = tcp + 20;
    while i < end {
        match frame[i] {
            0 => return None, // end of options
            1 => i += 1,      // no-op
            2 if i + 4 <= end && frame[i + 1] == 4 => return Some((i + 2, tcp, v6)),
            _ => {
                let len = usize::from(*frame.get(i + 1)?);
                if len < 2 {
                    return None;
                }
                i += len;
            }
        }
    }
    None
}

/// The largest MSS a SYN may announce: `max_v4` over IPv4, 20 less over
/// IPv6 (its header is 20 bytes longer).
fn limit(max_v4: u16, v6: bool) -> u16 {
    if v6 {
        max_v4.saturating_sub(20)
    } else {
        max_v4
    }
}

/// Whether `frame` is a SYN announcing more than the limit (read only:
/// the hot path asks this of every frame, and copies only those).
pub fn needs_clamp(frame: &[u8], max_v4: u16) -> bool {
    find(frame).is_some_and(|(at, _, v6)| {
        u16::from_be_bytes([frame[at], frame[at + 1]]) > limit(max_v4, v6)
    })
}

/// Lowers the MSS option of a TCP SYN in `frame` to `max_v4` for IPv4 and
/// `max_v4 - 20` for IPv6, if it announces more. `partial`: the TCP
/// checksum is a partial one (left as it is). Returns whether the frame
/// changed. Any other frame, and any malformed one, is left as it is.
pub fn clamp(frame: &mut [u8], max_v4: u16, partial: bool) -> bool {
    let Some((at, tcp, v6)) = find(frame) else {
        return false;
    };
    let max = limit(max_v4, v6);
    let old = u16::from_be_bytes([frame[at], frame[at + 1]]);
    if old <= max {
        return false;
    }
    frame[at..at + 2].copy_from_slice(&max.to_be_bytes());
    if partial {
        return true;
    }
    // The checksum is over 16-bit words from the TCP header's start: the
    // value is one word at an even offset, halves of two at an odd one
    // (with the byte before it, and the one after, 0 past the end).
    let c = tcp + 16;
    let sum = u16::from_be_bytes([frame[c], frame[c + 1]]);
    let new_sum = if (at - tcp).is_multiple_of(2) {
        update(sum, old, max)
    } else {
        let (before, after) = (frame[at - 1], frame.get(at + 2).copied().unwrap_or(0));
        let w0 = |v: u16| u16::from_be_bytes([before, (v >> 8) as u8]);
        let w1 = |v: u16| u16::from_be_bytes([v as u8, after]);
        update(update(sum, w0(old), w0(max)), w1(old), w1(max))
    };
    frame[c..c + 2].copy_from_slice(&new_sum.to_be_bytes());
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The Internet checksum of `data` (for checking, independently).
    fn checksum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            s += u32::from(w);
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// A TCP SYN over IPv4 announcing `mss`, `pad` no-ops before the MSS
    /// option, with a correct checksum.
    pub(crate) fn syn_v4(mss: u16, pad: usize, flags: u8) -> Vec<u8> {
        let mut opts = vec![1u8; pad];
        opts.extend_from_slice(&[2, 4]);
        opts.extend_from_slice(&mss.to_be_bytes());
        opts.extend_from_slice(&[4, 2]); // SACK permitted
        while !opts.len().is_multiple_of(4) {
            opts.push(1);
        }
        let tcp_len = 20 + opts.len();
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let src = [198, 19, 0, 2];
        let dst = [198, 19, 0, 1];
        let total = (20 + tcp_len) as u16;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let mut tcp = vec![0x9c, 0x40, 0x13, 0x88, 0, 0, 0, 1, 0, 0, 0, 0];
        tcp.push(((tcp_len / 4) as u8) << 4);
        tcp.push(flags);
        tcp.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        tcp.extend_from_slice(&opts);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6, 0, tcp_len as u8]);
        pseudo.extend_from_slice(&tcp);
        let c = checksum(&pseudo);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&tcp);
        f
    }

    fn tcp_ok(f: &[u8]) -> bool {
        let tcp = &f[34..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 6, 0, tcp.len() as u8]);
        pseudo.extend_from_slice(tcp);
        checksum(&pseudo) == 0
    }

    pub(crate) fn mss_of(f: &[u8]) -> u16 {
        let i = f[34 + 20..].windows(2).position(|w| w == [2, 4]).unwrap() + 34 + 20;
        u16::from_be_bytes([f[i + 2], f[i + 3]])
    }

    #[test]
    fn a_syn_is_clamped_with_a_valid_checksum_at_either_alignment() {
        for pad in 0..4 {
            let mut f = syn_v4(1460, pad, SYN);
            assert!(tcp_ok(&f));
            assert!(needs_clamp(&f, 1400) && !needs_clamp(&f, 1460));
            assert!(clamp(&mut f, 1400, false), "pad {pad}");
            assert_eq!(mss_of(&f), 1400);
            assert!(tcp_ok(&f), "checksum after the rewrite, pad {pad}");
            // Already low enough: untouched.
            assert!(!clamp(&mut f, 1410, false));
        }
        let mut synack = syn_v4(1460, 0, SYN | 0x10);
        assert!(clamp(&mut synack, 1380, false) && tcp_ok(&synack));
    }

    #[test]
    fn other_frames_and_partial_checksums() {
        let mut ack = syn_v4(1460, 0, 0x10);
        let before = ack.clone();
        assert!(!clamp(&mut ack, 1400, false));
        assert_eq!(ack, before);
        // A partial checksum: the option changes, the field does not.
        let mut f = syn_v4(1460, 1, SYN);
        let sum = [f[50], f[51]];
        assert!(clamp(&mut f, 1400, true));
        assert_eq!([f[50], f[51]], sum);
        assert_eq!(mss_of(&f), 1400);
        // Junk of every length never panics.
        let base = syn_v4(1460, 2, SYN);
        for n in 0..base.len() {
            let mut cut = base[..n].to_vec();
            let _ = clamp(&mut cut, 1400, false);
        }
    }
}
