//! Running as a service: the control socket, the metrics listener and
//! the systemd handshake (`Type=notify`: READY, STOPPING, WATCHDOG),
//! started once the node's listeners and TAP are up.

use std::sync::Arc;

use anyhow::Result;
use etherws_core::{LinkParams, Registry};

use crate::cli::ServiceArgs;
use crate::control::{self, Service};
use crate::node::Wired;
use crate::runtime::Ex;

/// Starts the control socket and the metrics listener (both bound before
/// this returns: a bad `--metrics` address fails the start), then tells
/// systemd the node is ready.
pub async fn start(
    ex: &Ex,
    wired: Arc<Wired>,
    registry: Registry,
    params: LinkParams,
    args: &ServiceArgs,
) -> Result<Arc<Service>> {
    let svc = Service::new(wired.clone(), ex.clone(), registry, params);
    if !args.no_control {
        let path = args
            .control
            .clone()
            .unwrap_or_else(|| control::default_path(&wired.name));
        match control::bind(&path) {
            Ok(Some(l)) => {
                log::info!("control socket {}", path.display());
                ex.spawn(control::serve(svc.clone(), l, path)).detach();
            }
            Ok(None) => {}
            // A socket asked for must work; the default one is a
            // convenience that never stops a node.
            Err(e) if args.control.is_some() => return Err(e),
            Err(e) => log::warn!("{e:#}; running without a control socket"),
        }
    }
    if let Some(addr) = &args.metrics {
        let l = crate::web::bind(addr).await?;
        let shown = l.local_addr().map_or(addr.clone(), |a| a.to_string());
        log::info!("metrics on http://{shown}/metrics, status page on http://{shown}/");
        ex.spawn(crate::web::serve(svc.clone(), l)).detach();
    }
    ready(ex);
    Ok(svc)
}

/// `READY=1` (and the watchdog, if systemd asks for one). A no-op
/// outside systemd.
fn ready(ex: &Ex) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    if let Some(every) = sd_notify::watchdog_enabled() {
        // Twice per period, as systemd advises. The ping comes from the
        // executor: a node whose executor hangs stops pinging.
        let half = every / 2;
        ex.spawn(async move {
            loop {
                smol::Timer::after(half).await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        })
        .detach();
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}
