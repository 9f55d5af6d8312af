//! `etherws stdio`: a node whose one link is this process's stdin and
//! stdout, in the stream framing (spec/protocol.md §12). The far end of an
//! `exec:` transport: `etherws client 'exec:ssh host etherws stdio'`
//! needs no open port on the host. Logs and the report go to stderr;
//! stdout carries only frames.

use std::os::fd::FromRawFd;

use anyhow::{Context, Result};
use etherws_core::{PeerInfo, PortConfig, PortEnd, PortKind};
use futures::future::{self, Either};
use futures::FutureExt;
use smol::Unblock;

use crate::cli::StdioArgs;
use crate::node::{attach_tap, build_node, run_port, spawn_housekeeping, until_stopped};
use crate::runtime::{Ex, Signal};
use crate::transport::link_params;

pub async fn run(ex: Ex, args: StdioArgs, signals: async_channel::Receiver<Signal>) -> Result<()> {
    let params = link_params(&args.link, &args.tap, &args.switch);
    let mut wired = build_node(&args.tap, &args.switch)?;
    wired.role = "stdio";
    let node = wired.node.clone();
    let (tap, name) = attach_tap(&ex, &node, &args.tap)?;
    wired.name = name;
    spawn_housekeeping(&ex, &node, &args.switch);
    let mut input = Unblock::new(std::io::stdin());
    // SAFETY: fd 1 is open for the life of the process, and in `stdio`
    // mode nothing else writes to it (logs and the report go to stderr).
    // Owning it lets the link's close close the pipe, which the peer
    // sees as the end of the stream (dropping a `Stdout` would not).
    let mut output = Unblock::new(unsafe { std::fs::File::from_raw_fd(1) });
    etherws_core::stream::handshake(&mut input, &mut output, &params)
        .await
        .context("stdio handshake")?;
    let link = etherws_core::stream::link(
        input,
        output,
        &params,
        PeerInfo {
            scheme: "stdio",
            remote: "stdin/stdout".into(),
        },
    );
    log::info!("stdio link up");
    let port = node.attach(link, PortKind::Link, PortConfig::default());
    let ex2 = ex.clone();
    let mut link_task = ex.spawn(async move { run_port(&ex2, port).await });
    let wired = std::sync::Arc::new(wired);
    crate::service::start(
        &ex,
        wired.clone(),
        etherws_core::Registry::new(),
        params.clone(),
        &args.service,
    )
    .await?;
    let stopped = until_stopped(&wired, &signals).map(|_| Ok(()));
    let tap = tap.map(|end| Err(anyhow::anyhow!("TAP device failed: {end:?}")));
    let result =
        match future::select(stopped.boxed(), future::select(&mut link_task, tap.boxed())).await {
            Either::Left((r, _)) => r,
            Either::Right((Either::Left((end, _)), _)) => match end {
                PortEnd::Closed => {
                    log::info!("the peer closed the stdio link");
                    Ok(())
                }
                other => Err(anyhow::anyhow!("stdio link ended: {other:?}")),
            },
            Either::Right((Either::Right((r, _)), _)) => r,
        };
    crate::node::stopping(&wired);
    crate::node::close_ports(&wired, args.tap.down.as_ref()).await;
    drop(link_task);
    result
}
