//! HTTP CONNECT proxies for the client: `--proxy URL`, or the usual
//! environment (`http_proxy` for ws://, `https_proxy` for wss://,
//! `all_proxy`, `no_proxy`; read by the `env_proxy` crate).
//!
//! The CONNECT exchange is a dozen lines around httparse rather than a
//! crate: the proxy-client crates found pull async-std (discontinued) or
//! Tokio. Through the tunnel, wss:// is end-to-end TLS: the proxy sees only
//! the host and port.

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use url::Url;

use crate::auth::basic_header;

/// A proxy to reach the server through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// Basic credentials (user, password) from the proxy URL.
    pub auth: Option<(String, String)>,
}

impl Proxy {
    /// Parses `[http://][user:password@]host[:port]` (port 80 if none, as
    /// for any http:// URL).
    pub fn parse(s: &str) -> Result<Proxy, String> {
        let with_scheme = if s.contains("://") {
            s.to_string()
        } else {
            format!("http://{s}")
        };
        let u = Url::parse(&with_scheme).map_err(|e| format!("bad proxy URL {s:?}: {e}"))?;
        if u.scheme() != "http" {
            return Err(format!(
                "proxy URL {s:?}: only http:// proxies (HTTP CONNECT) are supported"
            ));
        }
        let host = u
            .host_str()
            .ok_or_else(|| format!("proxy URL {s:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let auth = (!u.username().is_empty()).then(|| {
            (
                percent_decode(u.username()),
                percent_decode(u.password().unwrap_or("")),
            )
        });
        Ok(Proxy {
            host,
            port: u.port_or_known_default().unwrap_or(80),
            auth,
        })
    }

    /// The proxy the environment names for `target` (a ws:// or wss://
    /// URL), honouring `no_proxy`.
    pub fn from_env(target: &Url) -> Option<Proxy> {
        let mut as_http = target.clone();
        let scheme = if target.scheme() == "wss" {
            "https"
        } else {
            "http"
        };
        as_http.set_scheme(scheme).ok()?;
        let raw = env_proxy::for_url(&as_http).raw_value()?;
        match Proxy::parse(&raw) {
            Ok(p) => Some(p),
            Err(e) => {
                // Said, not silently bypassed: a direct connection may be
                // exactly what the operator's environment meant to avoid.
                log::warn!("ignoring the proxy environment for {target}: {e}");
                None
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why the proxy did not open the tunnel.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("proxy refused: HTTP {0} {1}")]
    Refused(u16, String),
    #[error("proxy requires authentication (HTTP 407): give credentials in the proxy URL (http://user:password@host:port)")]
    AuthRequired,
    #[error("bad answer from the proxy: {0}")]
    Bad(String),
}

/// Asks the proxy on `stream` for a tunnel to `host:port`.
pub async fn connect<S>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), ProxyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: etherws/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some((u, p)) = &proxy.auth {
        req.push_str(&format!("Proxy-Authorization: {}\r\n", basic_header(u, p)));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let (head, rest) = crate::read_head(stream).await.map_err(|e| match e {
        crate::HeadError::Io(e) => ProxyError::Io(e),
        crate::HeadError::Eof => ProxyError::Bad("closed before answering".into()),
        crate::HeadError::TooLong => ProxyError::Bad("answer head too long".into()),
        crate::HeadError::Tls => {
            ProxyError::Bad("answered with TLS, not HTTP (an https:// proxy?)".into())
        }
    })?;
    let mut hdrs = [httparse::EMPTY_HEADER; crate::handshake::MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut hdrs);
    match resp.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ProxyError::Bad("not an HTTP answer".into())),
    }
    match resp.code {
        Some(200..=299) => {}
        Some(407) => return Err(ProxyError::AuthRequired),
        Some(c) => return Err(ProxyError::Refused(c, resp.reason.unwrap_or("").into())),
        None => return Err(ProxyError::Bad("no status".into())),
    }
    if !rest.is_empty() {
        return Err(ProxyError::Bad(
            "data after the tunnel was opened, before we spoke".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        assert_eq!(
            Proxy::parse("http://u%40x:p%3Aw@198.18.0.3:8888").unwrap(),
            Proxy {
                host: "198.18.0.3".into(),
                port: 8888,
                auth: Some(("u@x".into(), "p:w".into()))
            }
        );
        assert_eq!(Proxy::parse("198.18.0.3").unwrap().port, 80);
        assert!(Proxy::parse("socks5://h:1").is_err());
    }
}
