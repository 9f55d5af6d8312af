//! The conformance kit against this crate's transports: `unix:` both
//! ways, and `exec:` dialling a `unix:` listener through `unix-relay`.

use std::sync::Arc;

use etherws_core::conformance::{self, Setup};
use etherws_core::futures::FutureExt;
use etherws_custom_transport::{Exec, Unix};

fn sock(tag: &str) -> String {
    std::env::temp_dir()
        .join(format!("etherws-kit-{}-{tag}.sock", std::process::id()))
        .display()
        .to_string()
}

fn unix_setup(tag: &str) -> Setup {
    let mut s = Setup::new(
        Arc::new(Unix::default()),
        &format!("unix:{}", sock(tag)),
        |path| format!("unix:{path}").parse().unwrap(),
        &format!("unix:{}", sock("nobody")),
    );
    s.jumbo = true;
    s.silent = Some(Box::new(|path: &str| {
        let path = path.to_string();
        async move {
            let s = std::os::unix::net::UnixStream::connect(path).expect("silent connection");
            Box::new(s) as Box<dyn std::any::Any + Send>
        }
        .boxed()
    }));
    s
}

#[test]
fn unix_conforms() {
    let _ = env_logger::builder().is_test(true).try_init();
    smol::block_on(conformance::run(&unix_setup("unix")));
}

#[test]
fn exec_conforms() {
    let _ = env_logger::builder().is_test(true).try_init();
    let relay = env!("CARGO_BIN_EXE_unix-relay");
    let mut s = unix_setup("exec");
    s.dialer = Some(Arc::new(Exec));
    s.connect_to = Box::new(move |path| format!("exec:{relay} {path}").parse().unwrap());
    s.unreachable = "exec:/nonexistent/etherws-peer".parse().unwrap();
    smol::block_on(conformance::run(&s));
}
