//! `vlan`: adds, removes or rewrites the outer 802.1Q VLAN tag. See
//! README.md.

#![no_std]

use etherws_filter_sdk::{
    code, export_filter, parse_u64, Config, Ctx, Frame, Global, Scope, Verdict, TPID_8021AD,
    TPID_8021Q,
};

#[derive(Clone, Copy)]
enum Mode {
    /// Push an 802.1Q tag with this TCI on untagged frames.
    Tag { tci: u16 },
    /// Pop the outer tag (only with this VID, if given).
    Untag { vid: Option<u16> },
    /// Rewrite outer VID `from` to `to`.
    Retag { from: u16, to: u16 },
}

struct State {
    scope: Scope,
    mode: Mode,
}

static STATE: Global<State> = Global::new(State {
    scope: Scope::ALL,
    mode: Mode::Untag { vid: None },
});

fn number(value: &str, max: u64) -> Result<u16, i32> {
    match parse_u64(value) {
        Some(n) if n <= max => Ok(n as u16),
        _ => Err(code::BAD_VALUE),
    }
}

fn init(config: &Config) -> Result<(), i32> {
    let mut scope = Scope::ALL;
    let mut mode = None;
    let (mut vid, mut pcp, mut from, mut to) = (None, None, None, None);
    for (key, value) in config {
        if scope.parse_key(key, value)? {
            continue;
        }
        match key {
            "mode" => {
                mode = Some(match value {
                    "tag" | "untag" | "retag" => value,
                    _ => return Err(code::BAD_VALUE),
                })
            }
            "vid" => vid = Some(number(value, 0x0fff)?),
            "pcp" => pcp = Some(number(value, 7)?),
            "from" => from = Some(number(value, 0x0fff)?),
            "to" => to = Some(number(value, 0x0fff)?),
            _ => return Err(code::UNKNOWN_KEY),
        }
    }
    let mode = match mode.ok_or(code::MISSING_KEY)? {
        "tag" => {
            if from.is_some() || to.is_some() {
                return Err(code::CONFLICT);
            }
            let vid = vid.ok_or(code::MISSING_KEY)?;
            Mode::Tag {
                tci: (pcp.unwrap_or(0) << 13) | vid,
            }
        }
        "untag" => {
            if pcp.is_some() || from.is_some() || to.is_some() {
                return Err(code::CONFLICT);
            }
            Mode::Untag { vid }
        }
        _ => {
            if pcp.is_some() || vid.is_some() {
                return Err(code::CONFLICT);
            }
            Mode::Retag {
                from: from.ok_or(code::MISSING_KEY)?,
                to: to.ok_or(code::MISSING_KEY)?,
            }
        }
    };
    STATE.with(|s| {
        s.scope = scope;
        s.mode = mode;
    });
    Ok(())
}

fn filter(frame: &mut Frame, ctx: &Ctx) -> Verdict {
    let (scope, mode) = STATE.with(|s| (s.scope, s.mode));
    if !scope.matches(ctx) {
        return Verdict::Pass;
    }
    match mode {
        Mode::Tag { tci } => {
            let outer = frame.outer_ethertype();
            if outer != TPID_8021Q && outer != TPID_8021AD && !frame.push_vlan(TPID_8021Q, tci) {
                // No room: the frame must not leave untagged.
                return Verdict::Drop;
            }
        }
        Mode::Untag { vid } => {
            if vid.is_none_or(|v| frame.vlan_id() == Some(v)) {
                frame.pop_vlan();
            }
        }
        Mode::Retag { from, to } => {
            if frame.vlan_id() == Some(from) {
                frame.set_vlan_id(to);
            }
        }
    }
    Verdict::Pass
}

export_filter!(filter, init = init);
// Changes lengths, so no super-frames; its globals hold only the
// configuration, so each worker thread may run its own instance.
etherws_filter_sdk::export_capabilities!(etherws_filter_sdk::abi::CAP_REPLICABLE);
