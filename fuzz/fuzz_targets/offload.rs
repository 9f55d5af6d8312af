//! Offload metadata from a peer (etherws_core::fuzzing::offload).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| etherws_core::fuzzing::offload(data));
