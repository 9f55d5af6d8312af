//! The frame view on arbitrary bytes (etherws_core::fuzzing::wire).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| etherws_core::fuzzing::wire(data));
