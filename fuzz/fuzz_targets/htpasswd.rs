//! The htpasswd, Basic-credentials and proxy-URL parsers on arbitrary text
//! (etherws_ws::fuzzing::htpasswd).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| etherws_ws::fuzzing::htpasswd(data));
