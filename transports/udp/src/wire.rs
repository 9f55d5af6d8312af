//! The udp:// datagram format (spec/protocol.md §13), sans-IO.
//!
//! ```text
//! 0      1      2      4                8             8 (+8)
//! +------+------+------+----------------+-------------+----------+---------+
//! | type | flags| zero | session (BE32) | [counter BE64] | payload | [tag 16] |
//! +------+------+------+----------------+-------------+----------+---------+
//! ```
//!
//! With a pre-shared key (flag `AUTH`), every datagram carries a counter
//! after the header and ends with the first 16 bytes of
//! HMAC-SHA256(key, everything before the tag).

use std::time::{SystemTime, UNIX_EPOCH};

use ring::hmac;
use subtle::ConstantTimeEq;

/// Header bytes.
pub const HEADER: usize = 8;
/// Counter bytes (with a key).
pub const COUNTER: usize = 8;
/// Tag bytes (with a key).
pub const TAG: usize = 16;
/// Bytes a datagram adds to a frame: 8, or 32 with a key.
pub fn overhead(keyed: bool) -> usize {
    HEADER + if keyed { COUNTER + TAG } else { 0 }
}
/// The largest UDP payload (IPv4: 65535 − 20 − 8).
pub const MAX_DATAGRAM: usize = 65507;

/// Datagram types. The high nibble is the version (1).
pub mod kind {
    pub const HELLO: u8 = 0x11;
    pub const WELCOME: u8 = 0x12;
    pub const FRAME: u8 = 0x13;
    pub const PING: u8 = 0x14;
    pub const PONG: u8 = 0x15;
    pub const CLOSE: u8 = 0x16;
    pub const COOKIE: u8 = 0x17;
}

/// Flag: counter and tag present.
pub const AUTH: u8 = 1;

/// HELLO payload: nonce (16), unix time in seconds (8), max frame (4),
/// options (1), cookie (16: zero until the server sent one).
pub const HELLO_LEN: usize = 45;
/// COOKIE payload: the HELLO's nonce (16), the cookie (16). Smaller than
/// the HELLO it answers: a spoofed HELLO reflects no more bytes than it
/// cost.
pub const COOKIE_LEN: usize = 32;
/// WELCOME payload: the HELLO's nonce (16), max frame (4), options (1).
pub const WELCOME_LEN: usize = 21;
/// Option: FRAME payloads start with a 10-byte virtio-net header (offered
/// in HELLO, granted in WELCOME).
pub const OPT_VNET: u8 = 1;

/// A pre-shared key for HMAC-SHA256.
#[derive(Clone)]
pub struct Key(hmac::Key);

impl Key {
    /// A key from secret bytes (at least 16).
    pub fn new(secret: &[u8]) -> Result<Key, String> {
        if secret.len() < 16 {
            return Err(format!(
                "a pre-shared key needs at least 16 bytes (got {})",
                secret.len()
            ));
        }
        Ok(Key(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    fn tag(&self, data: &[u8]) -> [u8; TAG] {
        let t = hmac::sign(&self.0, data);
        t.as_ref()[..TAG].try_into().unwrap()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A parsed, authenticated datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub kind: u8,
    pub session: u32,
    /// 0 without a key.
    pub counter: u64,
    pub payload: &'a [u8],
}

/// Why a datagram was not accepted.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Reject {
    /// Too short, unknown version or type, non-zero reserved bytes.
    Malformed,
    /// A key is configured and the tag is missing or wrong (or the other
    /// way round: a tag where no key is configured).
    Unauthenticated,
}

/// Writes a datagram into `out` (cleared first).
pub fn encode(out: &mut Vec<u8>, kind: u8, session: u32, key: Option<(&Key, u64)>, payload: &[u8]) {
    encode_parts(out, kind, session, key, &[payload]);
}

/// [`encode`] with a payload in pieces (an offload header, then a frame).
pub fn encode_parts(
    out: &mut Vec<u8>,
    kind: u8,
    session: u32,
    key: Option<(&Key, u64)>,
    parts: &[&[u8]],
) {
    out.clear();
    out.reserve(overhead(key.is_some()) + parts.iter().map(|p| p.len()).sum::<usize>());
    out.push(kind);
    out.push(if key.is_some() { AUTH } else { 0 });
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&session.to_be_bytes());
    if let Some((_, counter)) = key {
        out.extend_from_slice(&counter.to_be_bytes());
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    if let Some((k, _)) = key {
        let tag = k.tag(out);
        out.extend_from_slice(&tag);
    }
}

/// Parses and (with a key) authenticates a datagram.
pub fn decode<'a>(d: &'a [u8], key: Option<&Key>) -> Result<Datagram<'a>, Reject> {
    if d.len() < HEADER || d[0] >> 4 != 1 || !(kind::HELLO..=kind::COOKIE).contains(&d[0]) {
        return Err(Reject::Malformed);
    }
    if d[1] & !AUTH != 0 || d[2] != 0 || d[3] != 0 {
        return Err(Reject::Malformed);
    }
    let session = u32::from_be_bytes(d[4..8].try_into().unwrap());
    let authed = d[1] & AUTH != 0;
    match (key, authed) {
        (None, false) => Ok(Datagram {
            kind: d[0],
            session,
            counter: 0,
            payload: &d[HEADER..],
        }),
        (Some(k), true) => {
            if d.len() < HEADER + COUNTER + TAG {
                return Err(Reject::Malformed);
            }
            let (body, tag) = d.split_at(d.len() - TAG);
            if !bool::from(k.tag(body).ct_eq(tag)) {
                return Err(Reject::Unauthenticated);
            }
            Ok(Datagram {
                kind: d[0],
                session,
                counter: u64::from_be_bytes(d[HEADER..HEADER + COUNTER].try_into().unwrap()),
                payload: &body[HEADER + COUNTER..],
            })
        }
        _ => Err(Reject::Unauthenticated),
    }
}

/// HELLO's payload.
pub fn hello(nonce: [u8; 16], max_frame: u32, options: u8, cookie: [u8; 16]) -> [u8; HELLO_LEN] {
    let mut p = [0u8; HELLO_LEN];
    p[..16].copy_from_slice(&nonce);
    p[16..24].copy_from_slice(&unix_now().to_be_bytes());
    p[24..28].copy_from_slice(&max_frame.to_be_bytes());
    p[28] = options;
    p[29..].copy_from_slice(&cookie);
    p
}

/// COOKIE's payload.
pub fn cookie(nonce: [u8; 16], cookie: [u8; 16]) -> [u8; COOKIE_LEN] {
    let mut p = [0u8; COOKIE_LEN];
    p[..16].copy_from_slice(&nonce);
    p[16..].copy_from_slice(&cookie);
    p
}

/// (nonce, cookie) of a COOKIE.
pub fn parse_cookie(p: &[u8]) -> Option<([u8; 16], [u8; 16])> {
    (p.len() == COOKIE_LEN).then(|| (p[..16].try_into().unwrap(), p[16..].try_into().unwrap()))
}

/// Stateless return-routability check (spec/protocol.md §13.2): a cookie
/// is the first 16 bytes of HMAC-SHA256(secret of the period, the
/// client's address and port, the HELLO's nonce), so only a client that
/// receives datagrams at its source address can echo it, and the server
/// keeps nothing per HELLO. The secret is derived from a random key per
/// listener and the period number (2 minutes); the current and the
/// previous period's cookies are accepted.
pub struct CookieJar {
    key: hmac::Key,
}

/// How long a cookie's period lasts, in seconds.
pub const COOKIE_PERIOD: u64 = 120;

impl Default for CookieJar {
    fn default() -> Self {
        CookieJar::new(&rand::random::<[u8; 32]>())
    }
}

impl CookieJar {
    pub fn new(secret: &[u8]) -> CookieJar {
        CookieJar {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The cookie for `from` and `nonce` in period `period`.
    pub fn make(&self, period: u64, from: std::net::SocketAddr, nonce: &[u8; 16]) -> [u8; 16] {
        let period_key = hmac::sign(&self.key, &period.to_be_bytes());
        let k = hmac::Key::new(hmac::HMAC_SHA256, period_key.as_ref());
        let mut ctx = hmac::Context::with_key(&k);
        match from.ip() {
            std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
            std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&from.port().to_be_bytes());
        ctx.update(nonce);
        ctx.sign().as_ref()[..16].try_into().unwrap()
    }

    /// The period of unix time `now`.
    pub fn period(now: u64) -> u64 {
        now / COOKIE_PERIOD
    }

    /// Whether `cookie` is the current or the previous period's for
    /// `from` and `nonce` (constant-time).
    pub fn valid(
        &self,
        now: u64,
        from: std::net::SocketAddr,
        nonce: &[u8; 16],
        cookie: &[u8; 16],
    ) -> bool {
        let p = Self::period(now);
        let cur = self.make(p, from, nonce).ct_eq(cookie);
        let prev = self.make(p.saturating_sub(1), from, nonce).ct_eq(cookie);
        bool::from(cur | prev)
    }
}

/// A HELLO's contents.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello {
    pub nonce: [u8; 16],
    /// The client's unix time, in seconds.
    pub time: u64,
    pub max_frame: u32,
    pub options: u8,
    /// The server's cookie echoed (zero in a first HELLO).
    pub cookie: [u8; 16],
}

pub fn parse_hello(p: &[u8]) -> Option<Hello> {
    (p.len() == HELLO_LEN).then(|| Hello {
        nonce: p[..16].try_into().unwrap(),
        time: u64::from_be_bytes(p[16..24].try_into().unwrap()),
        max_frame: u32::from_be_bytes(p[24..28].try_into().unwrap()),
        options: p[28],
        cookie: p[29..].try_into().unwrap(),
    })
}

pub fn welcome(nonce: [u8; 16], max_frame: u32, options: u8) -> [u8; WELCOME_LEN] {
    let mut p = [0u8; WELCOME_LEN];
    p[..16].copy_from_slice(&nonce);
    p[16..20].copy_from_slice(&max_frame.to_be_bytes());
    p[20] = options;
    p
}

/// (nonce, max frame, options) of a WELCOME.
pub fn parse_welcome(p: &[u8]) -> Option<([u8; 16], u32, u8)> {
    (p.len() == WELCOME_LEN).then(|| {
        (
            p[..16].try_into().unwrap(),
            u32::from_be_bytes(p[16..20].try_into().unwrap()),
            p[20],
        )
    })
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A sliding window of the last 64 counters seen (RFC 6479's simple
/// form): an authenticated datagram replayed, or older than the window,
/// is refused.
#[derive(Debug, Default)]
pub struct Replay {
    top: u64,
    bits: u64,
}

impl Replay {
    /// Whether `c` would be taken as new, recording nothing.
    pub fn would_accept(&self, c: u64) -> bool {
        if c == 0 {
            return false;
        }
        if c > self.top {
            return true;
        }
        let age = self.top - c;
        age < 64 && self.bits & (1 << age) == 0
    }

    /// Whether `c` is new; records it if so.
    pub fn accept(&mut self, c: u64) -> bool {
        if c == 0 {
            return false;
        }
        if c > self.top {
            let shift = c - self.top;
            self.bits = if shift >= 64 { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.top = c;
            return true;
        }
        let age = self.top - c;
        if age >= 64 || self.bits & (1 << age) != 0 {
            return false;
        }
        self.bits |= 1 << age;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_and_keyed() {
        let mut out = Vec::new();
        encode(&mut out, kind::FRAME, 7, None, b"frame");
        assert_eq!(
            out,
            [0x13, 0, 0, 0, 0, 0, 0, 7, b'f', b'r', b'a', b'm', b'e']
        );
        let d = decode(&out, None).unwrap();
        assert_eq!(
            (d.kind, d.session, d.payload),
            (kind::FRAME, 7, &b"frame"[..])
        );
        let k = Key::new(b"0123456789abcdef").unwrap();
        encode(&mut out, kind::FRAME, 7, Some((&k, 5)), b"frame");
        assert_eq!(out.len(), 8 + 8 + 5 + 16);
        let d = decode(&out, Some(&k)).unwrap();
        assert_eq!((d.counter, d.payload), (5, &b"frame"[..]));
        // Every flipped bit is caught.
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, Some(&k)).is_err(), "bit in byte {i}");
        }
        let other = Key::new(b"fedcba9876543210").unwrap();
        assert_eq!(decode(&out, Some(&other)), Err(Reject::Unauthenticated));
        assert_eq!(decode(&out, None), Err(Reject::Unauthenticated));
        encode(&mut out, kind::FRAME, 7, None, b"frame");
        assert_eq!(decode(&out, Some(&k)), Err(Reject::Unauthenticated));
    }

    #[test]
    fn junk_is_malformed() {
        for d in [
            &b""[..],
            b"\x13\0\0\0\0\0\0",
            b"\x23\0\0\0\0\0\0\0",
            b"\x18\0\0\0\0\0\0\0",
            b"\x13\x02\0\0\0\0\0\0",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(decode(d, None), Err(Reject::Malformed), "{d:?}");
        }
    }

    #[test]
    fn cookies_are_bound_to_address_nonce_and_period() {
        let jar = CookieJar::new(b"0123456789abcdef0123456789abcdef");
        let a: std::net::SocketAddr = "198.18.0.2:4000".parse().unwrap();
        let b: std::net::SocketAddr = "198.18.0.2:4001".parse().unwrap();
        let n = [7u8; 16];
        let now = 1_000_000;
        let c = jar.make(CookieJar::period(now), a, &n);
        assert!(jar.valid(now, a, &n, &c));
        assert!(
            jar.valid(now + COOKIE_PERIOD, a, &n, &c),
            "the previous period's"
        );
        assert!(!jar.valid(now + 2 * COOKIE_PERIOD, a, &n, &c), "expired");
        assert!(!jar.valid(now, b, &n, &c), "another port");
        assert!(!jar.valid(now, a, &[8u8; 16], &c), "another nonce");
        assert!(!jar.valid(now, a, &n, &[0u8; 16]));
        let other = CookieJar::new(b"fedcba9876543210fedcba9876543210");
        assert!(!other.valid(now, a, &n, &c), "another listener's");
        // A COOKIE is smaller than the HELLO it answers, keyed or not.
        for keyed in [false, true] {
            assert!(overhead(keyed) + COOKIE_LEN < overhead(keyed) + HELLO_LEN);
        }
    }

    #[test]
    fn replay_window() {
        let mut r = Replay::default();
        assert!(r.would_accept(1));
        assert!(r.accept(1));
        assert!(!r.would_accept(1) && !r.accept(1));
        assert!(r.accept(3));
        assert!(r.accept(2));
        assert!(!r.accept(2));
        assert!(r.accept(100));
        assert!(!r.accept(36));
        assert!(r.accept(37));
        assert!(!r.accept(0));
    }

    #[test]
    fn spec_vectors() {
        // spec/vectors/udp-datagrams.txt: the datagrams spec/protocol.md §13 shows.
        let text = include_str!("../../../spec/vectors/udp-datagrams.txt");
        let mut n = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (kind, session, key, counter, payload, want) = (
                u8::from_str_radix(f[0], 16).unwrap(),
                f[1].parse::<u32>().unwrap(),
                f[2],
                f[3].parse::<u64>().unwrap(),
                hex(f[4]),
                hex(f[5]),
            );
            let key = (key != "-").then(|| Key::new(key.as_bytes()).unwrap());
            let mut out = Vec::new();
            encode(
                &mut out,
                kind,
                session,
                key.as_ref().map(|k| (k, counter)),
                &payload,
            );
            assert_eq!(to_hex(&out), to_hex(&want), "{line}");
            let d = decode(&want, key.as_ref()).unwrap();
            assert_eq!(d.payload, &payload[..]);
            match kind {
                kind::HELLO => {
                    let h = parse_hello(d.payload).expect("a HELLO");
                    assert_eq!(h.cookie[0], 0xa0, "{line}");
                }
                kind::COOKIE => assert!(parse_cookie(d.payload).is_some(), "{line}"),
                _ => {}
            }
            n += 1;
        }
        assert!(n >= 3);
    }

    fn hex(s: &str) -> Vec<u8> {
        if s == "-" {
            return Vec::new();
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
