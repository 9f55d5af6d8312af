//! The HTTP/1.1 upgrade (RFC 6455 §4), both sides, parsed with httparse.
//!
//! Written out here rather than left to a WebSocket library so that every
//! refusal gets the HTTP answer RFC 6455 §4.2.2 asks for (400, 404, 405,
//! 426 with the version we speak) and the request head has a byte limit.

use std::fmt;

use base64::Engine;
use sha1::{Digest, Sha1};

/// The subprotocol etherws offers and selects (spec/protocol.md §2).
pub const SUBPROTOCOL: &str = "etherws.v1";
/// The same, with each binary message prefixed by the frame's 10-byte
/// virtio-net header, so super-frames and partial checksums cross whole
/// (spec/protocol.md §3).
pub const SUBPROTOCOL_VNET: &str = "etherws.vnet.v1";

/// Most bytes of a request or response head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines in a head.
pub const MAX_HEADERS: usize = 64;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// Where a head ends in `buf` (the index after the blank line), if it does.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// A refusal: the HTTP answer sent before closing the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    /// Extra header lines, e.g. `("Sec-WebSocket-Version", "13")`.
    pub headers: Vec<(&'static str, String)>,
    /// Why, for the log and the body.
    pub detail: String,
}

impl Refusal {
    pub fn new(status: u16, reason: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            status,
            reason,
            headers: Vec::new(),
            detail: detail.into(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The whole HTTP response.
    pub fn to_http(&self) -> Vec<u8> {
        let body = format!("{}\n", self.detail);
        let mut s = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        s.into_bytes()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} ({})", self.status, self.detail)
    }
}

/// A parsed upgrade request that passed the RFC 6455 checks.
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    pub path: String,
    pub key: String,
    /// The subprotocols the client offered, in order.
    pub protocols: Vec<String>,
    /// Every header, names lower-cased, values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

impl UpgradeRequest {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Parses and checks a complete request head (through the blank line).
/// `path` is the one path served.
pub fn parse_request(head: &[u8], path: &str) -> Result<UpgradeRequest, Refusal> {
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hdrs);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Refusal::new(400, "Bad Request", "incomplete request head"))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(
                431,
                "Request Header Fields Too Large",
                format!("more than {MAX_HEADERS} header lines"),
            ))
        }
        Err(e) => {
            return Err(Refusal::new(
                400,
                "Bad Request",
                format!("malformed request: {e}"),
            ))
        }
    }
    if req.version != Some(1) {
        return Err(Refusal::new(400, "Bad Request", "HTTP/1.1 is required"));
    }
    if req.method != Some("GET") {
        return Err(
            Refusal::new(405, "Method Not Allowed", "only GET upgrades to WebSocket")
                .header("Allow", "GET"),
        );
    }
    if !req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("host"))
    {
        return Err(Refusal::new(400, "Bad Request", "missing Host header"));
    }
    let target = req.path.unwrap_or("");
    let req_path = target.split('?').next().unwrap_or("");
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .filter(|(hn, _)| hn == n)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    if req_path != path {
        return Err(Refusal::new(404, "Not Found", "not found"));
    }
    let upgrade = get("upgrade");
    if upgrade.is_empty() {
        return Err(Refusal::new(
            426,
            "Upgrade Required",
            "this is an etherws WebSocket endpoint",
        )
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13"));
    }
    if !upgrade.iter().any(|v| has_token(v, "websocket")) {
        return Err(Refusal::new(400, "Bad Request", "Upgrade is not websocket"));
    }
    if !get("connection").iter().any(|v| has_token(v, "upgrade")) {
        return Err(Refusal::new(
            400,
            "Bad Request",
            "Connection does not include Upgrade",
        ));
    }
    if get("sec-websocket-version").first().map(|v| v.trim()) != Some("13") {
        return Err(
            Refusal::new(426, "Upgrade Required", "unsupported WebSocket version")
                .header("Sec-WebSocket-Version", "13"),
        );
    }
    let key = match get("sec-websocket-key").as_slice() {
        [k] => k.to_string(),
        _ => {
            return Err(Refusal::new(
                400,
                "Bad Request",
                "missing Sec-WebSocket-Key",
            ))
        }
    };
    let valid_key = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .is_ok_and(|k| k.len() == 16);
    if !valid_key {
        return Err(Refusal::new(
            400,
            "Bad Request",
            "malformed Sec-WebSocket-Key",
        ));
    }
    if get("authorization").len() > 1 {
        // Which one would count? A proxy may have added one: refuse,
        // rather than pick.
        return Err(Refusal::new(
            400,
            "Bad Request",
            "more than one Authorization header",
        ));
    }
    let protocols: Vec<String> = get("sec-websocket-protocol")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    Ok(UpgradeRequest {
        path: req_path.to_string(),
        key,
        protocols,
        headers,
    })
}

/// Chooses the subprotocol: ours if offered, none if none was offered
/// (raw-frame clients), a refusal if only others were.
pub fn select_protocol(offered: &[String], vnet: bool) -> Result<Option<&'static str>, Refusal> {
    if offered.is_empty() {
        return Ok(None);
    }
    if vnet && offered.iter().any(|p| p == SUBPROTOCOL_VNET) {
        return Ok(Some(SUBPROTOCOL_VNET));
    }
    if offered.iter().any(|p| p == SUBPROTOCOL) {
        return Ok(Some(SUBPROTOCOL));
    }
    Err(Refusal::new(
        400,
        "Bad Request",
        format!(
            "no supported subprotocol in {:?} (this server speaks {SUBPROTOCOL})",
            offered.join(", ")
        ),
    )
    .header("Sec-WebSocket-Protocol", SUBPROTOCOL))
}

/// The 101 answer.
pub fn switching_protocols(key: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut s = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key.as_bytes())
    );
    if let Some(p) = protocol {
        s.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// What a client puts in its upgrade request.
#[derive(Clone, Debug)]
pub struct ClientRequest<'a> {
    /// `Host` header value (host, and port unless it is the default).
    pub host: &'a str,
    /// Path and query.
    pub target: &'a str,
    pub key: &'a str,
    /// Extra header lines (name, value), e.g. Authorization.
    pub headers: &'a [(String, String)],
    /// Offer the offload subprotocol first.
    pub vnet: bool,
}

impl ClientRequest<'_> {
    pub fn to_http(&self) -> Vec<u8> {
        let mut s = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {}{SUBPROTOCOL}\r\n\
             User-Agent: etherws/{}\r\n",
            self.target,
            self.host,
            self.key,
            if self.vnet {
                format!("{SUBPROTOCOL_VNET}, ")
            } else {
                String::new()
            },
            env!("CARGO_PKG_VERSION")
        );
        for (n, v) in self.headers {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// Why a server's answer does not complete the upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// An HTTP status other than 101 (status, reason, start of the body).
    Status(u16, String),
    /// Not a valid upgrade answer.
    Invalid(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Status(code, reason) => write!(f, "HTTP {code} {reason}"),
            ResponseError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Checks a complete response head; returns the selected subprotocol.
/// Checks a complete response head to a request that offered the offload
/// subprotocol when `vnet`; returns the subprotocol the server selected.
pub fn parse_response(head: &[u8], key: &str, vnet: bool) -> Result<Option<String>, ResponseError> {
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut hdrs);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ResponseError::Invalid("incomplete HTTP response".into()))
        }
        Err(e) => {
            return Err(ResponseError::Invalid(format!(
                "malformed HTTP response: {e}"
            )))
        }
    }
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(ResponseError::Status(
            code,
            resp.reason.unwrap_or("").to_string(),
        ));
    }
    let get = |n: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(n))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if !get("upgrade").is_some_and(|v| has_token(&v, "websocket")) {
        return Err(ResponseError::Invalid(
            "101 without Upgrade: websocket".into(),
        ));
    }
    if !get("connection").is_some_and(|v| has_token(&v, "upgrade")) {
        return Err(ResponseError::Invalid(
            "101 without Connection: Upgrade".into(),
        ));
    }
    if get("sec-websocket-accept").as_deref() != Some(accept_key(key.as_bytes()).as_str()) {
        return Err(ResponseError::Invalid("wrong Sec-WebSocket-Accept".into()));
    }
    if get("sec-websocket-extensions").is_some() {
        return Err(ResponseError::Invalid(
            "server selected an extension we did not offer".into(),
        ));
    }
    match get("sec-websocket-protocol") {
        None => Ok(None),
        Some(p) if p == SUBPROTOCOL => Ok(Some(p)),
        Some(p) if vnet && p == SUBPROTOCOL_VNET => Ok(Some(p)),
        Some(p) => Err(ResponseError::Invalid(format!(
            "server selected subprotocol {p:?}, which we did not offer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, etherws.v1\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid_request_and_protocol() {
        let r = parse_request(REQ.as_bytes(), "/chat").unwrap();
        assert_eq!(r.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(r.protocols, ["chat", "etherws.v1"]);
        assert_eq!(r.header("origin"), Some("http://example.com"));
        assert_eq!(select_protocol(&r.protocols, true), Ok(Some(SUBPROTOCOL)));
        assert_eq!(select_protocol(&[], true), Ok(None));
        assert_eq!(
            select_protocol(&["chat".into()], true).unwrap_err().status,
            400
        );
        let both = [SUBPROTOCOL_VNET.to_string(), SUBPROTOCOL.to_string()];
        assert_eq!(select_protocol(&both, true), Ok(Some(SUBPROTOCOL_VNET)));
        assert_eq!(select_protocol(&both, false), Ok(Some(SUBPROTOCOL)));
        let resp = switching_protocols(&r.key, Some(SUBPROTOCOL));
        assert_eq!(
            parse_response(&resp, &r.key, false),
            Ok(Some(SUBPROTOCOL.to_string()))
        );
        assert!(parse_response(&resp, "AAAAAAAAAAAAAAAAAAAAAA==", false).is_err());
    }

    #[test]
    fn refusals_have_the_rfc_statuses() {
        let status = |req: &str| {
            parse_request(req.as_bytes(), "/chat")
                .map(|_| 0)
                .unwrap_or_else(|r| r.status)
        };
        assert_eq!(status(&REQ.replace("/chat", "/other")), 404);
        assert_eq!(status(&REQ.replace("GET", "POST")), 405);
        assert_eq!(status(&REQ.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(status(&REQ.replace("Upgrade: websocket\r\n", "")), 426);
        assert_eq!(
            status(&REQ.replace("Upgrade: websocket", "Upgrade: h2c")),
            400
        );
        assert_eq!(
            status(&REQ.replace("Connection: Upgrade", "Connection: close")),
            400
        );
        assert_eq!(
            status(&REQ.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
            400
        );
        assert_eq!(status(&REQ.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert_eq!(
            status(&REQ.replace("Host: server.example.com\r\n", "")),
            400
        );
        assert_eq!(status("GARBAGE\r\n\r\n"), 400);
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            status(&REQ.replace("Origin", &format!("{many}Origin"))),
            431
        );
        let r = parse_request(REQ.replace("Version: 13", "Version: 8").as_bytes(), "/chat")
            .unwrap_err();
        let http = String::from_utf8(r.to_http()).unwrap();
        assert!(
            http.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{http}"
        );
        assert!(http.contains("Sec-WebSocket-Version: 13\r\n"), "{http}");
    }

    #[test]
    fn client_request_round_trips() {
        let key = new_key();
        let extra = [("Authorization".to_string(), "Basic dTpw".to_string())];
        let req = ClientRequest {
            host: "198.18.0.1:8080",
            target: "/chat?x=1",
            key: &key,
            headers: &extra,
            vnet: false,
        };
        let r = parse_request(&req.to_http(), "/chat").unwrap();
        assert_eq!(r.protocols, [SUBPROTOCOL]);
        assert_eq!(r.header("authorization"), Some("Basic dTpw"));
        assert!(r.header("user-agent").unwrap().starts_with("etherws/"));
        let non101 = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_response(non101, &key, false),
            Err(ResponseError::Status(401, "Unauthorized".into()))
        );
    }
}
