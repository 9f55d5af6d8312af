//! Small helpers a transport needs again and again: URL parts, error
//! constructors and a timeout. `spec/transport.md`'s examples use them.

use std::future::Future;
use std::time::Duration;

use futures::future::{self, Either};
use url::Url;

use crate::transport::TransportError;

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
    fn timeout_fires() {
        let r: Result<(), _> = futures::executor::block_on(timeout(
            Duration::from_millis(10),
            "nothing",
            future::pending(),
        ));
        assert!(matches!(r, Err(TransportError::Timeout(w)) if w == "nothing"));
    }
}
