//! The switch driven by arbitrary events and frames
//! (etherws_core::fuzzing::switch).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| etherws_core::fuzzing::switch(data));
