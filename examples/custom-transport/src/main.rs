//! `etherws-custom`: the whole `etherws` program plus two transports of
//! this crate's own. Everything else (server, client, `stdio`, filters,
//! reconnects, signals, the report) comes with `etherws::main_with`.

use etherws_custom_transport::{Exec, Unix};

fn main() -> std::process::ExitCode {
    etherws::main_with(etherws::Registry::new().with(Exec).with(Unix::default()))
}
