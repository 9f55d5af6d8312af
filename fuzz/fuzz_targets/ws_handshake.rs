//! The upgrade parsers on arbitrary heads (etherws_ws::fuzzing::handshake).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| etherws_ws::fuzzing::handshake(data));
