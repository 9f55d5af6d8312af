//! A server link fed arbitrary bytes after the handshake, in arbitrary
//! pieces (etherws_ws::fuzzing::link). The last 8 bytes choose the cuts.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (frames, cuts) = data.split_at(data.len().saturating_sub(8));
    etherws_ws::fuzzing::link(frames, cuts)
});
