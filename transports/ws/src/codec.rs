//! RFC 6455 framing, sans-IO: bytes in, events out; frames in, bytes out.
//!
//! Why our own and not tungstenite's: this is the hot path, and we want
//! each received frame copied exactly once (unmasked while it is copied out
//! of the read buffer into a buffer of its own size, so a queued frame pins
//! nothing else), every buffer bounded by the node's max frame, messages
//! longer than that skipped without buffering, and the reader and writer of
//! one connection independent (no shared lock). tungstenite remains the
//! independent peer the tests check this codec against.
//!
//! Limits (spec/protocol.md, "Resource limits"): a binary message longer
//! than `max_frame` is skipped as it streams in and reported as
//! [`Event::Oversize`]; a message longer than `hard_limit` is a violation
//! (close code 1009). Text messages are validated (UTF-8, streaming) and
//! reported by length only.

use bytes::{Bytes, BytesMut};

/// Opcodes (RFC 6455 §5.2).
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close codes used by etherws (spec/protocol.md §5).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The node is shutting down or detached the port.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke RFC 6455.
    pub const PROTOCOL: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A policy violation (e.g. credentials no longer valid).
    pub const POLICY: u16 = 1008;
    /// A message past the hard limit.
    pub const TOO_BIG: u16 = 1009;
    /// An internal error of the node ended the link.
    pub const INTERNAL: u16 = 1011;

    /// The reason text sent with a code of ours.
    pub fn reason(code: u16) -> &'static str {
        match code {
            NORMAL => "",
            GOING_AWAY => "going away",
            PROTOCOL => "protocol error",
            INVALID_DATA => "invalid data",
            POLICY => "policy violation",
            TOO_BIG => "message too big",
            INTERNAL => "internal error",
            _ => "",
        }
    }
}

/// Longest frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;
/// Largest control frame payload.
pub const MAX_CONTROL: usize = 125;

/// Which end of the connection we are: servers receive masked frames and
/// send unmasked ones; clients the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// What the peer sent, one complete message or control frame at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A binary message of at most `max_frame` bytes: one Ethernet frame.
    Binary(Bytes),
    /// A binary message longer than `max_frame` (but within the hard
    /// limit): skipped, never buffered. Carries its length.
    Oversize(usize),
    /// A valid UTF-8 text message, skipped. Carries its length.
    Text(usize),
    Ping(Bytes),
    Pong(Bytes),
    /// The peer's Close: its code and reason, if it sent one.
    Close(Option<(u16, String)>),
}

/// The peer broke the protocol; the link must close with [`Self::code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("message of {0} bytes or more exceeds the hard limit of {1} bytes")]
    TooBig(u64, usize),
}

impl Violation {
    /// The close code that answers this violation.
    pub fn code(&self) -> u16 {
        match self {
            Violation::Protocol(_) => close::PROTOCOL,
            Violation::InvalidUtf8 => close::INVALID_DATA,
            Violation::TooBig(..) => close::TOO_BIG,
        }
    }
}

/// The frame being received.
#[derive(Debug)]
struct FrameState {
    opcode: u8,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes consumed so far (for the mask phase).
    done: usize,
    remaining: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Binary,
    Text,
}

/// The data message being received (possibly over several frames).
#[derive(Debug)]
struct MessageState {
    kind: Kind,
    total: u64,
    /// The payload, while the message is within `max_frame` (binary only).
    buf: Option<BytesMut>,
    utf8: Utf8Stream,
}

/// Incremental decoder of one direction of a connection.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_frame: usize,
    hard_limit: usize,
    frame: Option<FrameState>,
    message: Option<MessageState>,
    control: Vec<u8>,
}

impl Decoder {
    /// `max_frame`: longest binary message delivered; `hard_limit`: longest
    /// message tolerated at all (at least `max_frame`).
    pub fn new(role: Role, max_frame: usize, hard_limit: usize) -> Self {
        Decoder {
            role,
            max_frame,
            hard_limit: hard_limit.max(max_frame),
            frame: None,
            message: None,
            control: Vec::new(),
        }
    }

    /// True between messages (nothing partially received).
    pub fn is_idle(&self) -> bool {
        self.frame.is_none() && self.message.is_none()
    }

    /// Consumes bytes from `input`; returns how many were used and the
    /// event they completed, if any. Call again with the rest while it
    /// returns an event; with no event, every byte was consumed (a partial
    /// header may have been left: then `used < input.len()`, and the caller
    /// must present those bytes again with more behind them).
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), Violation> {
        let mut used = 0;
        loop {
            if self.frame.is_none() {
                match self.parse_header(&input[used..])? {
                    None => return Ok((used, None)),
                    Some((n, f)) => {
                        used += n;
                        self.start_frame(f)?;
                    }
                }
            }
            let Some(f) = self.frame.as_mut() else {
                continue;
            };
            let avail = (input.len() - used) as u64;
            let take = f.remaining.min(avail) as usize;
            let chunk = &input[used..used + take];
            used += take;
            let (mask, offset) = (f.mask, f.done);
            f.done += take;
            f.remaining -= take as u64;
            let finished = f.remaining == 0;
            let (opcode, fin) = (f.opcode, f.fin);
            if opcode >= op::CLOSE {
                let start = self.control.len();
                self.control.extend_from_slice(chunk);
                unmask(&mut self.control[start..], mask, offset);
            } else {
                self.payload(chunk, mask, offset)?;
            }
            if !finished {
                return Ok((used, None));
            }
            self.frame = None;
            let event = if opcode >= op::CLOSE {
                Some(self.control_event(opcode)?)
            } else if fin {
                Some(self.message_event()?)
            } else {
                None
            };
            if let Some(e) = event {
                return Ok((used, Some(e)));
            }
        }
    }

    /// Parses a frame header; `None` if `input` does not hold all of it yet.
    fn parse_header(&self, input: &[u8]) -> Result<Option<(usize, FrameState)>, Violation> {
        if input.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (input[0], input[1]);
        if b0 & 0x70 != 0 {
            return Err(Violation::Protocol(
                "reserved bits set (no extension negotiated)",
            ));
        }
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let need = 2 + ext + if masked { 4 } else { 0 };
        if input.len() < need {
            return Ok(None);
        }
        let len = match len7 {
            126 => u64::from(u16::from_be_bytes([input[2], input[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&input[2..10]);
                let l = u64::from_be_bytes(b);
                if l >> 63 != 0 {
                    return Err(Violation::Protocol("frame length has its top bit set"));
                }
                l
            }
            l => u64::from(l),
        };
        let mask = masked.then(|| {
            let m = &input[2 + ext..need];
            [m[0], m[1], m[2], m[3]]
        });
        match (self.role, masked) {
            (Role::Server, false) => {
                return Err(Violation::Protocol("unmasked frame from a client"))
            }
            (Role::Client, true) => return Err(Violation::Protocol("masked frame from a server")),
            _ => {}
        }
        Ok(Some((
            need,
            FrameState {
                opcode: b0 & 0x0f,
                fin: b0 & 0x80 != 0,
                mask,
                done: 0,
                remaining: len,
            },
        )))
    }

    fn start_frame(&mut self, f: FrameState) -> Result<(), Violation> {
        match f.opcode {
            op::CLOSE | op::PING | op::PONG => {
                if !f.fin {
                    return Err(Violation::Protocol("fragmented control frame"));
                }
                if f.remaining > MAX_CONTROL as u64 {
                    return Err(Violation::Protocol("control frame longer than 125 bytes"));
                }
                self.control.clear();
            }
            op::CONTINUATION => {
                let Some(m) = self.message.as_mut() else {
                    return Err(Violation::Protocol("continuation frame outside a message"));
                };
                m.total = m.total.saturating_add(f.remaining);
                self.check_size()?;
            }
            op::TEXT | op::BINARY => {
                if self.message.is_some() {
                    return Err(Violation::Protocol("new message inside a fragmented one"));
                }
                let kind = if f.opcode == op::TEXT {
                    Kind::Text
                } else {
                    Kind::Binary
                };
                self.message = Some(MessageState {
                    kind,
                    total: f.remaining,
                    buf: None,
                    utf8: Utf8Stream::default(),
                });
                self.check_size()?;
                if let Some(m) = self.message.as_mut() {
                    if kind == Kind::Binary && m.total <= self.max_frame as u64 {
                        // Unfragmented (the usual case): exactly its size.
                        let cap = if f.fin { m.total as usize } else { 0 };
                        m.buf = Some(BytesMut::with_capacity(cap));
                    }
                }
            }
            _ => return Err(Violation::Protocol("unknown opcode")),
        }
        self.frame = Some(f);
        Ok(())
    }

    /// Enforces the hard limit and drops the buffer of a binary message
    /// that outgrew `max_frame` (the rest of it is skipped).
    fn check_size(&mut self) -> Result<(), Violation> {
        let Some(m) = self.message.as_mut() else {
            return Ok(());
        };
        if m.total > self.hard_limit as u64 {
            return Err(Violation::TooBig(m.total, self.hard_limit));
        }
        if m.total > self.max_frame as u64 {
            m.buf = None;
        }
        Ok(())
    }

    fn payload(
        &mut self,
        chunk: &[u8],
        mask: Option<[u8; 4]>,
        offset: usize,
    ) -> Result<(), Violation> {
        let Some(m) = self.message.as_mut() else {
            return Ok(());
        };
        match m.kind {
            Kind::Binary => {
                if let Some(buf) = m.buf.as_mut() {
                    let start = buf.len();
                    buf.extend_from_slice(chunk);
                    unmask(&mut buf[start..], mask, offset);
                }
            }
            Kind::Text => {
                // Unmask through a small scratch buffer; text is validated,
                // never kept.
                let mut scratch = [0u8; 512];
                let mut off = offset;
                for piece in chunk.chunks(scratch.len()) {
                    let s = &mut scratch[..piece.len()];
                    s.copy_from_slice(piece);
                    unmask(s, mask, off);
                    off += piece.len();
                    if !m.utf8.feed(s) {
                        return Err(Violation::InvalidUtf8);
                    }
                }
            }
        }
        Ok(())
    }

    fn message_event(&mut self) -> Result<Event, Violation> {
        let Some(m) = self.message.take() else {
            return Err(Violation::Protocol("message end outside a message"));
        };
        Ok(match m.kind {
            Kind::Binary => match m.buf {
                Some(buf) => Event::Binary(buf.freeze()),
                None => Event::Oversize(usize::try_from(m.total).unwrap_or(usize::MAX)),
            },
            Kind::Text => {
                if !m.utf8.finish() {
                    return Err(Violation::InvalidUtf8);
                }
                Event::Text(usize::try_from(m.total).unwrap_or(usize::MAX))
            }
        })
    }

    fn control_event(&mut self, opcode: u8) -> Result<Event, Violation> {
        let payload = std::mem::take(&mut self.control);
        Ok(match opcode {
            op::PING => Event::Ping(Bytes::from(payload)),
            op::PONG => Event::Pong(Bytes::from(payload)),
            _ => Event::Close(parse_close(&payload)?),
        })
    }
}

/// Parses a Close payload: empty, or a code and a UTF-8 reason.
fn parse_close(p: &[u8]) -> Result<Option<(u16, String)>, Violation> {
    match p.len() {
        0 => Ok(None),
        1 => Err(Violation::Protocol("close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([p[0], p[1]]);
            if !close_code_valid(code) {
                return Err(Violation::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(&p[2..]).map_err(|_| Violation::InvalidUtf8)?;
            Ok(Some((code, reason.to_string())))
        }
    }
}

/// Codes a peer may put on the wire (RFC 6455 §7.4, IANA registry).
pub fn close_code_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `data` with `mask`, the first byte being at payload `offset`.
pub fn unmask(data: &mut [u8], mask: Option<[u8; 4]>, offset: usize) {
    let Some(mask) = mask else { return };
    let mut m = [0u8; 4];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(offset + i) % 4];
    }
    // Eight bytes at a time: masking is on the path of every byte.
    let word = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// Appends a whole frame (header and payload, masked when `mask` is set)
/// to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_parts(out, opcode, &[payload], mask)
}

/// [`encode`] with a payload given in parts (e.g. an offload header and
/// the frame), written without joining them first.
pub fn encode_parts(out: &mut Vec<u8>, opcode: u8, parts: &[&[u8]], mask: Option<[u8; 4]>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(MAX_HEADER + len);
    out.push(0x80 | opcode);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mbit | len as u8);
    } else if len <= 0xffff {
        out.push(mbit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
    let start = out.len();
    for p in parts {
        out.extend_from_slice(p);
    }
    unmask(&mut out[start..], mask, 0);
}

/// A Close payload: code and reason (truncated to fit a control frame).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}

/// Streaming UTF-8 check across chunk boundaries.
#[derive(Debug, Default)]
struct Utf8Stream {
    /// An incomplete sequence carried from the previous chunk (≤ 3 bytes).
    carry: [u8; 4],
    carried: usize,
}

impl Utf8Stream {
    /// Feeds a chunk; false if the text can no longer be valid.
    fn feed(&mut self, mut chunk: &[u8]) -> bool {
        // First complete the sequence carried over, a byte at a time.
        while self.carried > 0 && !chunk.is_empty() {
            self.carry[self.carried] = chunk[0];
            self.carried += 1;
            chunk = &chunk[1..];
            match std::str::from_utf8(&self.carry[..self.carried]) {
                Ok(_) => self.carried = 0,
                Err(e) if e.error_len().is_some() => return false,
                Err(_) if self.carried == 4 => return false,
                Err(_) => {}
            }
        }
        if self.carried > 0 {
            return true;
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => true,
            Err(e) if e.error_len().is_some() => false,
            Err(e) => {
                let tail = &chunk[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carried = tail.len();
                true
            }
        }
    }

    /// False if the text ended inside a sequence.
    fn finish(&self) -> bool {
        self.carried == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(d: &mut Decoder, mut input: &[u8]) -> Result<Vec<Event>, Violation> {
        let mut out = Vec::new();
        loop {
            let (n, ev) = d.decode(input)?;
            input = &input[n..];
            match ev {
                Some(e) => out.push(e),
                None => return Ok(out),
            }
        }
    }

    /// Feeds `input` one byte at a time (keeping unconsumed header bytes).
    fn decode_bytewise(d: &mut Decoder, input: &[u8]) -> Result<Vec<Event>, Violation> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for b in input {
            pending.push(*b);
            loop {
                let (n, ev) = d.decode(&pending)?;
                pending.drain(..n);
                match ev {
                    Some(e) => out.push(e),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut v = Vec::new();
        encode(&mut v, opcode, payload, mask);
        if !fin {
            v[0] &= 0x7f;
        }
        v
    }

    const M: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    #[test]
    fn rfc_examples() {
        // RFC 6455 §5.7: unmasked "Hello" from a server, masked from a client.
        let mut c = Decoder::new(Role::Client, 1522, 2000);
        let ev = decode_all(&mut c, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!(ev, vec![Event::Text(5)]);
        let mut s = Decoder::new(Role::Server, 1522, 2000);
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(decode_all(&mut s, &masked).unwrap(), vec![Event::Text(5)]);
        assert_eq!(frame(op::TEXT, true, b"Hello", M), masked);
        // Fragmented "Hel" + "lo".
        let mut c = Decoder::new(Role::Client, 1522, 2000);
        let frag = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(decode_all(&mut c, &frag).unwrap(), vec![Event::Text(5)]);
        // 256-byte and 64 KiB binary lengths.
        for n in [125usize, 126, 256, 65535, 65536] {
            let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut c = Decoder::new(Role::Server, 70000, 70000);
            let ev = decode_all(&mut c, &frame(op::BINARY, true, &payload, M)).unwrap();
            assert_eq!(ev, vec![Event::Binary(Bytes::from(payload))], "{n}");
        }
    }

    #[test]
    fn bytewise_equals_whole() {
        let mut input = Vec::new();
        input.extend(frame(op::BINARY, true, &[1; 300], M));
        input.extend(frame(op::PING, true, b"hi", M));
        input.extend(frame(op::BINARY, false, &[2; 10], M));
        input.extend(frame(op::PONG, true, b"", M));
        input.extend(frame(op::CONTINUATION, true, &[3; 10], M));
        input.extend(frame(op::TEXT, false, "h\u{e9}".as_bytes(), M));
        input.extend(frame(op::CONTINUATION, true, "\u{20ac}".as_bytes(), M));
        input.extend(frame(op::CLOSE, true, &close_payload(1001, "bye"), M));
        let whole = decode_all(&mut Decoder::new(Role::Server, 1522, 4000), &input).unwrap();
        let bytewise =
            decode_bytewise(&mut Decoder::new(Role::Server, 1522, 4000), &input).unwrap();
        assert_eq!(whole, bytewise);
        let mut joined = vec![2u8; 10];
        joined.extend([3u8; 10]);
        assert_eq!(
            whole,
            vec![
                Event::Binary(Bytes::from(vec![1; 300])),
                Event::Ping(Bytes::from_static(b"hi")),
                Event::Pong(Bytes::new()),
                Event::Binary(Bytes::from(joined)),
                Event::Text(6),
                Event::Close(Some((1001, "bye".into()))),
            ]
        );
    }

    #[test]
    fn oversize_is_skipped_and_hard_limit_is_fatal() {
        let mut d = Decoder::new(Role::Server, 100, 200);
        let mut input = frame(op::BINARY, true, &[9; 150], M);
        input.extend(frame(op::BINARY, true, &[8; 100], M));
        let ev = decode_all(&mut d, &input).unwrap();
        assert_eq!(
            ev,
            vec![
                Event::Oversize(150),
                Event::Binary(Bytes::from(vec![8; 100]))
            ]
        );
        // Fragments adding up past the hard limit.
        let mut d = Decoder::new(Role::Server, 100, 200);
        let mut input = frame(op::BINARY, false, &[9; 150], M);
        input.extend(frame(op::CONTINUATION, true, &[9; 51], M));
        assert_eq!(decode_all(&mut d, &input), Err(Violation::TooBig(201, 200)));
        // A header announcing too much fails before any payload.
        let mut d = Decoder::new(Role::Server, 100, 200);
        let hdr = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        assert_eq!(decode_all(&mut d, &hdr).unwrap_err().code(), close::TOO_BIG);
    }

    #[test]
    fn violations_have_their_codes() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (frame(op::BINARY, true, b"x", None), close::PROTOCOL), // unmasked from client
            (vec![0xc2, 0x80, 0, 0, 0, 0], close::PROTOCOL),        // RSV1
            (vec![0x83, 0x80, 0, 0, 0, 0], close::PROTOCOL),        // opcode 3
            (frame(op::PING, false, b"", M), close::PROTOCOL),      // fragmented control
            (frame(op::PING, true, &[0; 126], M), close::PROTOCOL), // long control
            (frame(op::CONTINUATION, true, b"x", M), close::PROTOCOL),
            (frame(op::TEXT, true, &[0xff], M), close::INVALID_DATA),
            (frame(op::TEXT, true, &[0xe2, 0x82], M), close::INVALID_DATA), // truncated
            (frame(op::CLOSE, true, &[3], M), close::PROTOCOL),
            (frame(op::CLOSE, true, &[0x03, 0xed], M), close::PROTOCOL), // 1005
            (
                frame(op::CLOSE, true, &[0x03, 0xe8, 0xff], M),
                close::INVALID_DATA,
            ),
        ];
        for (input, code) in cases {
            let mut d = Decoder::new(Role::Server, 1522, 4000);
            let r = decode_all(&mut d, &input);
            assert_eq!(r.map_err(|v| v.code()), Err(code), "{input:02x?}");
        }
        let mut nested = frame(op::BINARY, false, b"a", M);
        nested.extend(frame(op::BINARY, true, b"b", M));
        let r = decode_all(&mut Decoder::new(Role::Server, 1522, 4000), &nested);
        assert_eq!(r.map_err(|v| v.code()), Err(close::PROTOCOL));
        // A client refuses masked frames.
        let r = decode_all(
            &mut Decoder::new(Role::Client, 1522, 4000),
            &frame(op::BINARY, true, b"x", M),
        );
        assert_eq!(r.map_err(|v| v.code()), Err(close::PROTOCOL));
    }

    #[test]
    fn utf8_stream_across_chunks() {
        let text = "a\u{e9}\u{20ac}\u{1f600}z".as_bytes();
        for split in 0..text.len() {
            let mut u = Utf8Stream::default();
            assert!(
                u.feed(&text[..split]) && u.feed(&text[split..]) && u.finish(),
                "{split}"
            );
        }
        let mut u = Utf8Stream::default();
        assert!(u.feed(&[0xf0, 0x9f]) && !u.finish());
        assert!(!u.feed(&[0x41]));
    }

    #[test]
    fn unmask_any_offset_matches_bytewise() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..37).collect();
        for off in 0..8 {
            let mut a = data.clone();
            unmask(&mut a, Some(mask), off);
            let b: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, x)| x ^ mask[(off + i) % 4])
                .collect();
            assert_eq!(a, b);
        }
    }
}
