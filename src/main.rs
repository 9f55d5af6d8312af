//! The `etherws` binary: the library's command line with the built-in
//! transports (see `etherws::main_with` for adding your own).

fn main() -> std::process::ExitCode {
    etherws::main_with(etherws::Registry::new())
}
