//! `pass`: passes every frame unchanged (a baseline for benchmarks).
//! Takes no configuration.

#![no_std]

use etherws_filter_sdk::{export_filter, Ctx, Frame, Verdict};

fn filter(_frame: &mut Frame, _ctx: &Ctx) -> Verdict {
    Verdict::Pass
}

export_filter!(filter);
// Reads nothing: takes super-frames whole, so offloads stay on through it;
// keeps no state, so each worker thread may run its own instance.
etherws_filter_sdk::export_capabilities!(
    etherws_filter_sdk::abi::CAP_SUPER_FRAMES | etherws_filter_sdk::abi::CAP_REPLICABLE
);
