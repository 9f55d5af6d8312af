//! The `etherws` binary: CLI, logging and wiring. The library crates do the
//! work: `etherws-core` (switch, ports, TAP) and `etherws-ws` (WebSocket).

mod cli;
mod client;
mod demo;
mod node;
mod ping;
mod runtime;
mod server;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use etherws_core::Registry;
use etherws_ws::{Ws, WsConfig};

use cli::{Cli, Command};

fn init_logging(cli: &Cli) {
    let level = match i32::from(cli.verbose) - i32::from(cli.quiet) {
        i32::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .init();
}

/// The transports this binary knows, keyed by URL scheme.
fn registry(max_frame: usize) -> Registry {
    Registry::new().with(Ws::new(WsConfig {
        max_frame,
        ..WsConfig::default()
    }))
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Server(args) => {
            let signals = runtime::signals()?;
            let reg = registry(node::node_config(&args.tap, &args.switch).max_frame);
            runtime::run(move |ex| Box::new(Box::pin(server::run(ex, args, reg, signals))))
        }
        Command::Client(args) => {
            let signals = runtime::signals()?;
            let reg = registry(node::node_config(&args.tap, &args.switch).max_frame);
            runtime::run(move |ex| Box::new(Box::pin(client::run(ex, args, reg, signals))))
        }
        Command::Demo(args) => demo::run(args),
        Command::Ping(args) => ping::run(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
