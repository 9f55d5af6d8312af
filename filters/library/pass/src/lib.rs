//! `pass`: passes every frame unchanged (a baseline for benchmarks).
//! Takes no configuration.

#![no_std]

use etherws_filter_sdk::{export_filter, Ctx, Frame, Verdict};

fn filter(_frame: &mut Frame, _ctx: &Ctx) -> Verdict {
    Verdict::Pass
}

export_filter!(filter);
