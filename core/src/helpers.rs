//! Small helpers a transport needs again and again: URL parts, error
//! constructors and a timeout. `spec/transport.md`'s examples use them.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::future::{self, Either};
use url::Url;

use futures::future::BoxFuture;

use crate::transport::{Listener, TransportError};

/// `TransportError::BadUrl` for `url`.
pub fn bad_url(url: &Url, reason: impl Into<String>) -> TransportError {
    TransportError::BadUrl {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// The host (IPv6 without brackets) and port of `url`; the port defaults
/// to `default_port`, else the scheme's known one (80 for ws...); none of
/// these is `BadUrl` ("no port"), as is a URL without a host.
pub fn host_port(url: &Url, default_port: Option<u16>) -> Result<(String, u16), TransportError> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad_url(url, "no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port()
        .or(default_port)
        .or_else(|| url.port_or_known_default())
        .ok_or_else(|| bad_url(url, "no port"))?;
    Ok((host, port))
}

/// The address a datagram listener binds: `url`'s host must be an IP
/// address (a bind does not look names up), its port defaults to
/// `default_port`.
pub fn listen_addr(url: &Url, default_port: u16) -> Result<SocketAddr, TransportError> {
    let (host, port) = host_port(url, Some(default_port))?;
    let ip: IpAddr = host.parse().map_err(|_| {
        bad_url(
            url,
            format!("a {}:// listener needs an IP address", url.scheme()),
        )
    })?;
    Ok(SocketAddr::new(ip, port))
}

/// The unspecified address of `peer`'s family, port 0: what a client's
/// socket binds before it talks to `peer`.
pub fn any_addr_for(peer: &SocketAddr) -> SocketAddr {
    let ip: IpAddr = match peer {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

/// Maps an `io::Error` to `TransportError::Io` with a context:
/// `.map_err(io_error("connecting to x"))`.
pub fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TransportError {
    let context = context.into();
    move |error| TransportError::Io { context, error }
}

/// Runs `f` for at most `d`; then `TransportError::Timeout(what)`. The
/// timer is async-io's, which runs under any executor.
pub async fn timeout<T>(
    d: Duration,
    what: impl Into<String>,
    f: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    match future::select(Box::pin(f), async_io::Timer::after(d)).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(TransportError::Timeout(what.into())),
    }
}

/// A listener bound in `Transport::listen` itself (spec/transport.md: bind
/// in the call), as the future the trait returns: a bind error is its
/// error, and it is ready at once.
pub fn bound<L: Listener + 'static>(
    r: Result<L, TransportError>,
) -> BoxFuture<'static, Result<Box<dyn Listener>, TransportError>> {
    Box::pin(future::ready(r.map(|l| Box::new(l) as Box<dyn Listener>)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let u = Url::parse("udp://[::1]:4789").unwrap();
        assert_eq!(host_port(&u, None).unwrap(), ("::1".into(), 4789));
        let u = Url::parse("udp://198.18.0.1").unwrap();
        assert_eq!(
            host_port(&u, Some(4789)).unwrap(),
            ("198.18.0.1".into(), 4789)
        );
        assert!(host_port(&u, None).is_err());
        let u = Url::parse("ws://h/p").unwrap();
        assert_eq!(host_port(&u, None).unwrap(), ("h".into(), 80));
    }

    #[test]
    fn listen_and_any_addresses() {
        let u = Url::parse("udp://[::1]").unwrap();
        assert_eq!(
            listen_addr(&u, 4789).unwrap(),
            "[::1]:4789".parse().unwrap()
        );
        let u = Url::parse("quic://example.org:1").unwrap();
        let e = listen_addr(&u, 4789).unwrap_err().to_string();
        assert!(e.contains("a quic:// listener needs an IP address"), "{e}");
        let v4: SocketAddr = "198.18.0.1:9".parse().unwrap();
        assert_eq!(any_addr_for(&v4), "0.0.0.0:0".parse().unwrap());
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(any_addr_for(&v6), "[::]:0".parse().unwrap());
    }

    #[test]
    fn timeout_fires() {
        let r: Result<(), _> = futures::executor::block_on(timeout(
            Duration::from_millis(10),
            "nothing",
            future::pending(),
        ));
        assert!(matches!(r, Err(TransportError::Timeout(w)) if w == "nothing"));
    }
}
