//! The filter loader on arbitrary module bytes
//! (etherws_filter::fuzzing::loader).
#![no_main]

use std::sync::OnceLock;

use etherws_filter::Host;

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::new().expect("filter host"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| etherws_filter::fuzzing::loader(host(), data));
