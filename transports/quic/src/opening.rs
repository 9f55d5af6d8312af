//! The opening exchange of a quic:// link (spec/protocol.md §14.1),
//! sans-IO: after the TLS 1.3 handshake the client sends its credentials
//! on the first bidirectional stream; the server answers one byte, or
//! closes the connection with the reason. No port exists before the
//! answer.
//!
//! ```text
//! client → server, then FIN:
//!   "EWQ1" | user length (u8) | user (UTF-8) | password length (u16 BE) | password
//! server → client, then FIN:
//!   0x00 (welcome)
//! refusal: CONNECTION_CLOSE, application error code = the HTTP status
//!   (400 malformed opening, 401 wrong or missing credentials,
//!   429 one attempt at a time, 503 full), reason = why, in words
//! ```

/// The four bytes an opening starts with.
pub const MAGIC: &[u8; 4] = b"EWQ1";
/// The longest user name and password (bytes).
pub const MAX_USER: usize = 255;
pub const MAX_PASSWORD: usize = 1024;
/// The longest opening a server reads.
pub const MAX_OPENING: usize = MAGIC.len() + 1 + MAX_USER + 2 + MAX_PASSWORD;
/// The server's answer when it lets the client in.
pub const WELCOME: u8 = 0;

/// Application error codes of a refusal (the HTTP status that says it).
pub mod code {
    pub const MALFORMED: u32 = 400;
    pub const UNAUTHORIZED: u32 = 401;
    pub const THROTTLED: u32 = 429;
    pub const FULL: u32 = 503;
    /// A link closed because its user was removed (as ws://'s 1008).
    pub const REVOKED: u32 = 1008;
}

/// The client's opening: credentials, or none (an empty user name).
pub fn encode(creds: Option<(&str, &str)>) -> Result<Vec<u8>, String> {
    let (u, p) = creds.unwrap_or(("", ""));
    if u.len() > MAX_USER || p.len() > MAX_PASSWORD {
        return Err(format!(
            "a quic:// user name is at most {MAX_USER} bytes and a password {MAX_PASSWORD}"
        ));
    }
    if creds.is_some() && u.is_empty() {
        return Err("an empty user name".into());
    }
    let mut out = Vec::with_capacity(MAGIC.len() + 3 + u.len() + p.len());
    out.extend_from_slice(MAGIC);
    out.push(u.len() as u8);
    out.extend_from_slice(u.as_bytes());
    out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    out.extend_from_slice(p.as_bytes());
    Ok(out)
}

/// The credentials an opening carries (`None`: none), or why it is not
/// one.
pub fn decode(b: &[u8]) -> Result<Option<(String, String)>, &'static str> {
    let rest = b.strip_prefix(&MAGIC[..]).ok_or("not an etherws opening")?;
    let (&ulen, rest) = rest.split_first().ok_or("truncated opening")?;
    let ulen = usize::from(ulen);
    if rest.len() < ulen + 2 {
        return Err("truncated opening");
    }
    let (user, rest) = rest.split_at(ulen);
    let plen = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    let pass = &rest[2..];
    if pass.len() != plen || plen > MAX_PASSWORD {
        return Err("the password length does not match");
    }
    let user = std::str::from_utf8(user).map_err(|_| "the user name is not UTF-8")?;
    let pass = std::str::from_utf8(pass).map_err(|_| "the password is not UTF-8")?;
    if user.is_empty() {
        return if pass.is_empty() {
            Ok(None)
        } else {
            Err("a password without a user name")
        };
    }
    Ok(Some((user.to_string(), pass.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_junk() {
        let b = encode(Some(("alice", "secret"))).unwrap();
        assert_eq!(decode(&b), Ok(Some(("alice".into(), "secret".into()))));
        assert_eq!(decode(&encode(None).unwrap()), Ok(None));
        for bad in [
            &b""[..],
            b"EWQ1",
            b"EWQ2\0\0\0",
            b"EWQ1\x05ab",
            b"EWQ1\0\0\x01x",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert!(encode(Some(("", "x"))).is_err());
        assert!(encode(Some((&"u".repeat(256), "x"))).is_err());
    }

    #[test]
    fn spec_vectors() {
        // spec/vectors/quic-opening.txt: openings and what they carry.
        let text = include_str!("../../../spec/vectors/quic-opening.txt");
        let mut n = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let bytes: Vec<u8> = (0..f[0].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[0][i..i + 2], 16).unwrap())
                .collect();
            let got = decode(&bytes);
            match f[1] {
                "error" => assert!(got.is_err(), "{line}"),
                "none" => {
                    assert_eq!(got, Ok(None), "{line}");
                    assert_eq!(encode(None).unwrap(), bytes);
                }
                creds => {
                    let (u, p) = creds.split_once(':').unwrap();
                    assert_eq!(got, Ok(Some((u.into(), p.into()))), "{line}");
                    assert_eq!(encode(Some((u, p))).unwrap(), bytes, "{line}");
                }
            }
            n += 1;
        }
        assert!(n >= 4);
    }
}
