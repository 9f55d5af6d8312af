//! Example filter: rewrites the source MAC `from` to `to` (a rewriting
//! filter: the frame passes with new bytes).
//!
//! `--filter mac_rewrite.wasm:from=02:00:00:00:00:01,to=02:00:00:00:00:99`.
//! Frames from other MACs pass unchanged.

#![no_std]

use etherws_filter_sdk::{code, export_filter, parse_mac, Config, Ctx, Frame, Global, Verdict};

/// (from, to).
static MACS: Global<([u8; 6], [u8; 6])> = Global::new(([0; 6], [0; 6]));

fn init(config: &Config) -> Result<(), i32> {
    let (mut from, mut to) = (None, None);
    for (key, value) in config {
        let mac = parse_mac(value).ok_or(code::BAD_VALUE)?;
        match key {
            "from" => from = Some(mac),
            "to" => to = Some(mac),
            _ => return Err(code::UNKNOWN_KEY),
        }
    }
    let macs = (from.ok_or(code::MISSING_KEY)?, to.ok_or(code::MISSING_KEY)?);
    MACS.with(|m| *m = macs);
    Ok(())
}

fn filter(frame: &mut Frame, _ctx: &Ctx) -> Verdict {
    let (from, to) = MACS.with(|m| *m);
    if frame.src() == from {
        frame.set_src(to);
    }
    Verdict::Pass
}

export_filter!(filter, init = init);
