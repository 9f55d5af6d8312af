//! Properties of the upgrade parsers and of a link fed arbitrary bytes.
//!
//! One implementation of each property, run two ways: by the fuzz targets
//! in `fuzz/` (nightly, `cargo fuzz`) and by this crate's stable tests
//! (proptest, bounded, in `./test.sh`). Each function panics when a
//! property fails.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use etherws_core::{LinkError, PeerInfo};
use futures::{AsyncRead, AsyncWrite, SinkExt, StreamExt};

use crate::codec::{Decoder, Role};
use crate::{handshake, link_over, WsConfig};

/// The upgrade parsers on an arbitrary head: never panic, and a request
/// they accept gets an answer they accept.
pub fn handshake(data: &[u8]) {
    if let Ok(req) = handshake::parse_request(data, "/") {
        if let Ok(proto) = handshake::select_protocol(&req.protocols, true) {
            let resp = handshake::switching_protocols(&req.key, proto);
            assert!(handshake::parse_response(&resp, &req.key, true).is_ok());
        }
    }
    let _ = handshake::parse_response(data, "dGhlIHNhbXBsZSBub25jZQ==", true);
    let _ = handshake::head_end(data);
}

/// The htpasswd parser and the Basic-credentials parser on arbitrary
/// text: never panic; a user the parser accepts can be checked.
pub fn htpasswd(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(users) = crate::auth::htpasswd::parse(std::path::Path::new("fuzz"), &text) {
        for hash in users.values().take(4) {
            // bcrypt and SHA-crypt are slow by design: only cheap ones here.
            if hash.starts_with("{SHA}") || hash.starts_with("$apr1$") {
                let _ = crate::auth::htpasswd::verify_hash(hash, "secret");
            }
        }
    }
    let _ = crate::auth::basic_credentials(&text);
    let _ = crate::proxy::Proxy::parse(&text);
}

/// Hands out `data` in pieces whose sizes come from `cuts` (0: not ready
/// this time).
struct Pieces {
    data: Vec<u8>,
    pos: usize,
    cuts: Vec<u8>,
    n: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let cut = match self.cuts.len() {
            0 => 7,
            n => self.cuts[self.n % n],
        };
        self.n += 1;
        if cut == 0 && !self.n.is_multiple_of(64) {
            // Not ready now: the reader must register and come back.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let k = usize::from(cut.max(1))
            .min(buf.len())
            .min(self.data.len() - self.pos);
        buf[..k].copy_from_slice(&self.data[self.pos..self.pos + k]);
        self.pos += k;
        Poll::Ready(Ok(k))
    }
}

/// Takes everything written.
struct Drain;

impl AsyncWrite for Drain {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The decoder's events for `input` fed `step` bytes at a time.
fn events(mut input: &[u8], step: usize) -> Vec<String> {
    let mut dec = Decoder::new(Role::Server, MAX_FRAME, MAX_FRAME + 200);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    while !input.is_empty() {
        let k = step.min(input.len());
        pending.extend_from_slice(&input[..k]);
        input = &input[k..];
        loop {
            match dec.decode(&pending) {
                Err(v) => {
                    out.push(format!("violation {}", v.code()));
                    return out;
                }
                Ok((n, ev)) => {
                    pending.drain(..n);
                    match ev {
                        Some(e) => out.push(format!("{e:?}")),
                        None => break,
                    }
                }
            }
        }
    }
    out
}

const MAX_FRAME: usize = 200;

/// A server link fed `data` after the handshake, in pieces cut by `cuts`:
/// the decoder reports the same events however the input is cut; the
/// link's reader never panics, never hands up a frame past max frame, and
/// its stream ends after a fatal error; closing the writer afterwards
/// (twice) never panics.
pub fn link(data: &[u8], cuts: &[u8]) {
    let whole = events(data, usize::MAX);
    let step = usize::from(cuts.first().copied().unwrap_or(1) % 16) + 1;
    assert_eq!(whole, events(data, step), "cut every {step} bytes");

    let cfg = WsConfig {
        max_frame: MAX_FRAME,
        ..WsConfig::default()
    };
    let reader = Pieces {
        data: data.to_vec(),
        pos: 0,
        cuts: cuts.to_vec(),
        n: 0,
    };
    let peer = PeerInfo {
        scheme: "ws",
        remote: "fuzz".into(),
    };
    let mut link = link_over(reader, Drain, Role::Server, Vec::new(), &cfg, peer);
    futures::executor::block_on(async {
        while let Some(item) = link.rx.next().await {
            match item {
                Ok(f) => assert!(f.len() <= MAX_FRAME),
                Err(LinkError::Oversize(n)) => assert!(n > MAX_FRAME && n <= cfg.hard_limit()),
                Err(e) if e.is_fatal() => {
                    assert!(link.rx.next().await.is_none(), "stream goes on after {e}");
                    break;
                }
                Err(_) => {}
            }
        }
        let _ = link.tx.close().await;
        let _ = link.tx.close().await;
    });
}

#[cfg(test)]
mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use crate::codec::{self, op};

    /// Frames as a peer might send them: any opcode (valid or not), fin or
    /// not, masked (as clients must) or not, any payload; then optionally
    /// one corrupted byte.
    fn frames() -> impl Strategy<Value = Vec<u8>> {
        let opcode = prop_oneof![
            9 => prop::sample::select(vec![op::CONTINUATION, op::TEXT, op::BINARY, op::CLOSE, op::PING, op::PONG]),
            1 => 0u8..16,
        ];
        let frame = (
            opcode,
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.97),
            vec(any::<u8>(), 0..300),
        );
        (vec(frame, 0..8), any::<Option<(usize, u8)>>()).prop_map(|(fs, flip)| {
            let mut out = Vec::new();
            for (opcode, fin, masked, payload) in fs {
                let start = out.len();
                let payload = if opcode >= op::CLOSE {
                    &payload[..payload.len().min(125)]
                } else {
                    &payload[..]
                };
                codec::encode(&mut out, opcode, payload, masked.then_some([7, 1, 2, 9]));
                if !fin {
                    out[start] &= 0x7f;
                }
            }
            if let Some((at, b)) = flip {
                if !out.is_empty() {
                    let i = at % out.len();
                    out[i] ^= b;
                }
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn a_link_fed_frames_keeps_its_promises(data in frames(), cuts in vec(any::<u8>(), 0..8)) {
            super::link(&data, &cuts);
        }

        #[test]
        fn a_link_fed_noise_keeps_its_promises(data in vec(any::<u8>(), 0..600), cuts in vec(any::<u8>(), 0..8)) {
            super::link(&data, &cuts);
        }

        #[test]
        fn handshake_parsers_never_panic(data in vec(any::<u8>(), 0..400)) {
            super::handshake(&data);
        }

        #[test]
        fn htpasswd_and_credential_parsers_never_panic(
            data in prop_oneof![
                vec(any::<u8>(), 0..200),
                "[a-z]{1,8}:(\\{SHA\\}|\\$apr1\\$|\\$2y\\$0|\\$6\\$)?[ -~]{0,40}".prop_map(String::into_bytes),
                "Basic [A-Za-z0-9+/=]{0,40}".prop_map(String::into_bytes),
            ]
        ) {
            super::htpasswd(&data);
        }

        #[test]
        fn mutated_valid_requests_never_panic(at in any::<usize>(), b in any::<u8>()) {
            let mut req = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                Sec-WebSocket-Protocol: etherws.v1\r\n\r\n".to_vec();
            let i = at % req.len();
            req[i] = b;
            super::handshake(&req);
        }
    }
}
