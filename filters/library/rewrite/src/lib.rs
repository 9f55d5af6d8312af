//! `rewrite`: sets the locally-administered bit (0x02 of the first octet)
//! of every frame's source MAC and passes it: a minimal rewriting filter,
//! for benchmarks. Takes no configuration.

#![no_std]

use etherws_filter_sdk::{export_filter, Ctx, Frame, Verdict};

fn filter(frame: &mut Frame, _ctx: &Ctx) -> Verdict {
    let mut src = frame.src();
    src[0] |= 0x02;
    frame.set_src(src);
    Verdict::Pass
}

export_filter!(filter);
// Rewrites a MAC, never the length: takes super-frames whole, so offloads
// stay on through it; keeps no state, so each worker thread may run its own
// instance.
etherws_filter_sdk::export_capabilities!(
    etherws_filter_sdk::abi::CAP_SUPER_FRAMES | etherws_filter_sdk::abi::CAP_REPLICABLE
);
