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

mod check;
mod cli;
mod client;
mod config;
mod control;
mod ctl;
mod demo;
mod node;
mod ping;
mod runtime;
mod server;
mod service;
mod status;
mod stdio;
mod transport;
mod web;

pub use etherws_core::Registry;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command};

/// `-q` was given: no report at exit (whatever `RUST_LOG` says).
pub(crate) static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn init_logging(cli: &Cli) {
    QUIET.store(cli.quiet > 0, std::sync::atomic::Ordering::Relaxed);
    let level = match i32::from(cli.verbose) - i32::from(cli.quiet) {
        i32::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    b.format_target(false);
    if stderr_is_journal() {
        // The journal stamps each line itself, and reads its priority
        // from a `<N>` prefix (sd-daemon(3)).
        b.format(|buf, r| {
            use std::io::Write;
            let prio = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                _ => 7,
            };
            writeln!(buf, "<{prio}>{}", r.args())
        });
    }
    b.init();
}

/// Whether stderr is the journal: `$JOURNAL_STREAM` names its device and
/// inode (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    let _ = std::fs::metadata("/").map(|m| m.dev());
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
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
        Command::Status(args) => ctl::status(&args),
        Command::Fdb(args) => ctl::fdb(&args),
        Command::Ctl(args) => ctl::ctl(&args),
        Command::Passwd(args) => ctl::passwd(&args),
        Command::CheckConfig(args) => check::run(&args.args, extra),
        Command::Demo(args) => demo::run(args),
        Command::Ping(args) => ping::run(args),
        Command::Assets { dir } => assets(&dir),
    }
}

/// Man pages (`etherws.1`, `etherws-server.1`...) from the CLI's own
/// help, and bash, zsh and fish completions: what a package installs.
fn assets(dir: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    let man = dir.join("man");
    let comp = dir.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot make {}", d.display()))?;
    }
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).context("writing the man pages")?;
    let mut cmd = cmd;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "etherws", &comp)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    println!(
        "man pages in {}, completions in {}",
        man.display(),
        comp.display()
    );
    Ok(())
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
    let cli = match config::expand(std::env::args_os().collect()) {
        Ok((args, file)) => {
            config::remember(file);
            Cli::parse_from(args)
        }
        Err(e) => {
            eprintln!("etherws: {e:#}");
            return ExitCode::FAILURE;
        }
    };
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
