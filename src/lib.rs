//! The `etherws` program as a library: its CLI and all its wiring (accept
//! loops, reconnect with back-off, signals, the report, filters, clean
//! shutdown), so that a program with transports of its own is a few
//! lines and loses none of it:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // `.with(MyTransport::new())` for each transport of yours
//!     // (examples/custom-transport adds `exec:`).
//!     etherws::main_with(etherws::Registry::new())
//! }
//! ```
//!
//! The library crates do the work: `etherws-core` (switch, ports, TAP,
//! the transport contract), `etherws-ws` (WebSocket), `etherws-udp`,
//! `etherws-quic`.

mod cli;
mod client;
mod demo;
mod node;
mod ping;
mod runtime;
mod server;
mod stdio;
mod transport;

pub use etherws_core::Registry;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

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

fn real_main(cli: Cli, extra: Registry) -> Result<()> {
    let threads = cli.threads.map(usize::from);
    match cli.command {
        Command::Server(args) => {
            let signals = runtime::signals()?;
            let t = transport::for_server(&args, extra)?;
            runtime::run(threads, move |ex| {
                Box::new(Box::pin(server::run(ex, args, t, signals)))
            })
        }
        Command::Client(args) => {
            let signals = runtime::signals()?;
            let t = transport::for_client(&args, extra)?;
            runtime::run(threads, move |ex| {
                Box::new(Box::pin(client::run(ex, args, t, signals)))
            })
        }
        Command::Stdio(args) => {
            let signals = runtime::signals()?;
            runtime::run(threads, move |ex| {
                Box::new(Box::pin(stdio::run(ex, args, signals)))
            })
        }
        Command::Demo(args) => demo::run(args),
        Command::Ping(args) => ping::run(args),
    }
}

/// A panic is a bug; the port it happened in ends (the node catches it
/// per port) and the log gets one line saying where, not a multi-line dump.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::error!("internal error (panic){at}: {msg}");
    }));
}

/// Raises the soft limit on open files to the hard one: a hub holds one
/// socket per client.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Runs the `etherws` command line (arguments from the environment) with
/// the built-in transports (`ws`, `wss`, `udp`, `quic`) and those of `extra`; a
/// scheme in `extra` wins over a built-in one. Every link of an `extra`
/// transport gets the node's [`etherws_core::LinkParams`] (max frame,
/// offload, handshake timeout, keepalive) and all of the program's
/// wiring. Returns the process's exit code.
pub fn main_with(extra: Registry) -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    install_panic_hook();
    raise_fd_limit();
    match real_main(cli, extra) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
