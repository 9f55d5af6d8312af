//! Example filter: drops IPv4 frames whose TTL is below `min_ttl`.
//!
//! `--filter ttl_guard.wasm:min_ttl=2`. Other frames (non-IPv4, or too
//! short to hold an IPv4 header) pass unchanged. VLAN-tagged frames are
//! looked through.

#![no_std]

use etherws_filter_sdk::{
    code, export_filter, parse_u64, Config, Ctx, Frame, Global, Verdict, ETHERTYPE_IPV4,
};

/// The configured minimum TTL.
static MIN_TTL: Global<u8> = Global::new(0);

fn init(config: &Config) -> Result<(), i32> {
    let mut min_ttl = None;
    for (key, value) in config {
        match key {
            "min_ttl" => match parse_u64(value) {
                Some(n @ 1..=255) => min_ttl = Some(n as u8),
                _ => return Err(code::BAD_VALUE),
            },
            _ => return Err(code::UNKNOWN_KEY),
        }
    }
    let min_ttl = min_ttl.ok_or(code::MISSING_KEY)?;
    MIN_TTL.with(|m| *m = min_ttl);
    Ok(())
}

fn filter(frame: &mut Frame, _ctx: &Ctx) -> Verdict {
    if frame.ethertype() != ETHERTYPE_IPV4 {
        return Verdict::Pass;
    }
    let ip = frame.payload();
    // Version 4, at least the 20-byte header; TTL is byte 8.
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Verdict::Pass;
    }
    if ip[8] < MIN_TTL.with(|m| *m) {
        Verdict::Drop
    } else {
        Verdict::Pass
    }
}

export_filter!(filter, init = init);
