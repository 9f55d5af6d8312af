//! `capture`: hands one frame in `sample` to the host's `capture` import
//! (written to the pcap file given by the host option `capture=PATH`),
//! counts them (`captured`), and passes every frame unchanged. See
//! README.md.

#![no_std]

use etherws_filter_sdk::{
    capture, code, export_filter, parse_u64, Config, Counter, Ctx, Frame, Global, Scope, Verdict,
};

struct State {
    scope: Scope,
    sample: u64,
    /// Frames in scope seen so far.
    seen: u64,
    captured: Option<Counter>,
}

static STATE: Global<State> = Global::new(State {
    scope: Scope::ALL,
    sample: 1,
    seen: 0,
    captured: None,
});

fn init(config: &Config) -> Result<(), i32> {
    let mut scope = Scope::ALL;
    let mut sample = 1;
    for (key, value) in config {
        if scope.parse_key(key, value)? {
            continue;
        }
        match key {
            "sample" => {
                sample = match parse_u64(value) {
                    Some(n) if n >= 1 => n,
                    _ => return Err(code::BAD_VALUE),
                }
            }
            _ => return Err(code::UNKNOWN_KEY),
        }
    }
    let captured = Counter::define("captured");
    STATE.with(|s| {
        s.scope = scope;
        s.sample = sample;
        s.seen = 0;
        s.captured = captured;
    });
    Ok(())
}

fn filter(frame: &mut Frame, ctx: &Ctx) -> Verdict {
    STATE.with(|s| {
        if !s.scope.matches(ctx) {
            return;
        }
        let n = s.seen;
        s.seen = n.wrapping_add(1);
        if n % s.sample == 0 {
            capture(frame);
            if let Some(c) = s.captured {
                c.add(1);
            }
        }
    });
    Verdict::Pass
}

export_filter!(filter, init = init);
