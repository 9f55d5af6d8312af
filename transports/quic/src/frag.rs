//! Frames in QUIC datagrams (spec/protocol.md §14), sans-IO: a frame that
//! fits goes whole behind a 1-byte tag; a larger one is cut into at most
//! [`MAX_PIECES`] pieces that the receiver puts back together. A piece
//! lost means the frame is lost (never retransmitted); incomplete frames
//! are forgotten, oldest first, past [`MAX_PARTIAL`] of them.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

/// Tag of a datagram carrying a whole frame.
pub const WHOLE: u8 = 0;
/// Tag of a datagram carrying a piece: then frame id (u32 BE), index and
/// count (u8 each), then the piece.
pub const PIECE: u8 = 1;
/// Bytes before a piece.
pub const PIECE_HEADER: usize = 7;
/// Most pieces per frame.
pub const MAX_PIECES: usize = 64;
/// Most frames being put together at once.
pub const MAX_PARTIAL: usize = 32;

/// Why a frame cannot be sent.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    /// It would need more than [`MAX_PIECES`] datagrams of `max` bytes.
    TooLarge,
}

/// Cuts `frame` into datagrams of at most `max` bytes each, in order,
/// collected (see [`pieces`], which the link uses: no `Vec` per frame).
pub fn split(frame: &[u8], max: usize, id: u32) -> Result<Vec<Bytes>, SplitError> {
    pieces(frame, max, id).map(Iterator::collect)
}

/// The datagrams of at most `max` bytes each that carry `frame`, in order:
/// one `WHOLE` datagram when it fits, else `PIECE`s of even size (the last
/// is not a runt). Fails before handing out any.
pub fn pieces(frame: &[u8], max: usize, id: u32) -> Result<Pieces<'_>, SplitError> {
    if frame.len() < max {
        return Ok(Pieces {
            chunks: frame.chunks(frame.len().max(1)),
            whole: true,
            id,
            index: 0,
            count: 1,
        });
    }
    let room = max.saturating_sub(PIECE_HEADER);
    if room == 0 {
        return Err(SplitError::TooLarge);
    }
    let count = frame.len().div_ceil(room);
    if count > MAX_PIECES {
        return Err(SplitError::TooLarge);
    }
    let size = frame.len().div_ceil(count);
    Ok(Pieces {
        chunks: frame.chunks(size),
        whole: false,
        id,
        index: 0,
        count: count as u8,
    })
}

/// The datagrams of one frame (see [`pieces`]), each built as it is taken.
#[derive(Debug)]
pub struct Pieces<'a> {
    chunks: std::slice::Chunks<'a, u8>,
    whole: bool,
    id: u32,
    index: u8,
    count: u8,
}

impl Iterator for Pieces<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.whole {
            // An empty frame is one empty WHOLE datagram (chunks yields
            // nothing for it).
            let c = self.chunks.next().unwrap_or_default();
            if self.index > 0 {
                return None;
            }
            self.index = 1;
            let mut d = BytesMut::with_capacity(1 + c.len());
            d.put_u8(WHOLE);
            d.put_slice(c);
            return Some(d.freeze());
        }
        let c = self.chunks.next()?;
        let mut d = BytesMut::with_capacity(PIECE_HEADER + c.len());
        d.put_u8(PIECE);
        d.put_u32(self.id);
        d.put_u8(self.index);
        d.put_u8(self.count);
        d.put_slice(c);
        self.index += 1;
        Some(d.freeze())
    }
}

/// What a datagram gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// A whole frame.
    Frame(Bytes),
    /// A piece of a frame not yet complete.
    Piece,
    /// Malformed: empty, an unknown tag, a bad header, a piece that
    /// disagrees with the earlier pieces of its frame.
    Malformed,
}

struct Partial {
    id: u32,
    pieces: Vec<Option<Bytes>>,
    missing: usize,
    bytes: usize,
}

/// Puts frames back together. Holds at most [`MAX_PARTIAL`] frames of at
/// most `limit` bytes each.
pub struct Reassembly {
    partial: VecDeque<Partial>,
    limit: usize,
    /// Incomplete frames forgotten (a piece was lost or came too late).
    pub lost: u64,
}

impl Reassembly {
    pub fn new(limit: usize) -> Self {
        Reassembly {
            partial: VecDeque::new(),
            limit,
            lost: 0,
        }
    }

    pub fn push(&mut self, d: Bytes) -> Got {
        match d.first() {
            Some(&WHOLE) => Got::Frame(d.slice(1..)),
            Some(&PIECE) if d.len() > PIECE_HEADER => self.piece(d),
            _ => Got::Malformed,
        }
    }

    fn piece(&mut self, d: Bytes) -> Got {
        let id = u32::from_be_bytes(d[1..5].try_into().unwrap());
        let (index, count) = (d[5] as usize, d[6] as usize);
        if !(2..=MAX_PIECES).contains(&count) || index >= count {
            return Got::Malformed;
        }
        let body = d.slice(PIECE_HEADER..);
        let at = match self.partial.iter().position(|p| p.id == id) {
            Some(at) => at,
            None => {
                if self.partial.len() >= MAX_PARTIAL {
                    self.partial.pop_front();
                    self.lost += 1;
                }
                self.partial.push_back(Partial {
                    id,
                    pieces: vec![None; count],
                    missing: count,
                    bytes: 0,
                });
                self.partial.len() - 1
            }
        };
        let p = &mut self.partial[at];
        if p.pieces.len() != count || p.bytes + body.len() > self.limit {
            self.partial.remove(at);
            return Got::Malformed;
        }
        if p.pieces[index].is_none() {
            p.bytes += body.len();
            p.pieces[index] = Some(body);
            p.missing -= 1;
        }
        if p.missing > 0 {
            return Got::Piece;
        }
        let p = self.partial.remove(at).expect("present");
        let mut frame = BytesMut::with_capacity(p.bytes);
        for piece in p.pieces.into_iter().flatten() {
            frame.put_slice(&piece);
        }
        Got::Frame(frame.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7) as u8).collect()
    }

    #[test]
    fn small_frames_go_whole_and_large_ones_in_even_pieces() {
        let d = split(&frame(100), 1200, 1).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0][0], WHOLE);
        let d = split(&frame(1514), 1162, 9).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|p| p.len() <= 1162));
        assert_eq!(&d[0][..7], &[PIECE, 0, 0, 0, 9, 0, 2]);
        assert_eq!(d[0].len() - 7, 757);
        assert_eq!(split(&frame(100_000), 1200, 1), Err(SplitError::TooLarge));
    }

    #[test]
    fn lost_pieces_lose_only_their_frame_and_memory_stays_bounded() {
        let mut r = Reassembly::new(65536);
        for id in 0..100u32 {
            let d = split(&frame(3000), 1200, id).unwrap();
            // Only the first piece of each frame arrives.
            assert_eq!(r.push(d[0].clone()), Got::Piece);
        }
        assert!(r.partial.len() <= MAX_PARTIAL);
        assert_eq!(r.lost, 100 - MAX_PARTIAL as u64);
        let d = split(&frame(3000), 1200, 1000).unwrap();
        let mut got = None;
        for p in d.into_iter().rev() {
            if let Got::Frame(f) = r.push(p) {
                got = Some(f);
            }
        }
        assert_eq!(&got.unwrap()[..], &frame(3000)[..]);
    }

    #[test]
    fn malformed_datagrams() {
        let mut r = Reassembly::new(65536);
        for d in [
            &b""[..],
            b"\x02abc",
            b"\x01\0\0\0\x01\x00\x01x",
            b"\x01\0\0\0\x01\x05\x02x",
            b"\x01\0\0\0",
        ] {
            assert_eq!(r.push(Bytes::copy_from_slice(d)), Got::Malformed, "{d:?}");
        }
        // A piece that claims another count than its frame's first piece.
        assert_eq!(
            r.push(Bytes::from_static(b"\x01\0\0\0\x07\x00\x02ab")),
            Got::Piece
        );
        assert_eq!(
            r.push(Bytes::from_static(b"\x01\0\0\0\x07\x01\x03cd")),
            Got::Malformed
        );
        // A frame past the limit.
        let mut small = Reassembly::new(500);
        let d = split(&frame(3000), 1200, 3).unwrap();
        assert_eq!(small.push(d[0].clone()), Got::Malformed);
    }

    proptest! {
        #[test]
        fn any_order_any_duplicates_reassembles(len in 1usize..20_000, max in 64usize..1500, seed in any::<u64>()) {
            let f = frame(len);
            let Ok(mut d) = split(&f, max, 5) else { return Ok(()) };
            // Shuffle and duplicate some.
            let mut s = seed;
            for i in (1..d.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                d.swap(i, (s >> 33) as usize % (i + 1));
            }
            let dup = d[0].clone();
            d.push(dup);
            let mut r = Reassembly::new(65536);
            let frames: Vec<Bytes> = d.into_iter().filter_map(|p| match r.push(p) { Got::Frame(f) => Some(f), _ => None }).collect();
            prop_assert!(!frames.is_empty());
            prop_assert_eq!(&frames[0][..], &f[..]);
        }
    }
}
