//! `capture`: hands one frame in `sample` to the host's `capture` import
//! (written to the pcap file given by the host option `capture=PATH`),
//! counts them (`captured`), and passes every frame unchanged. See
//! README.md.

#![no_std]

use etherws_filter_sdk::{
    capture, code, export_filter, Config, Counter, Ctx, Frame, Global, Sampler, Scope, Verdict,
};

struct State {
    scope: Scope,
    sample: Sampler,
    captured: Option<Counter>,
}

static STATE: Global<State> = Global::new(State {
    scope: Scope::ALL,
    sample: Sampler::ALL,
    captured: None,
});

fn init(config: &Config) -> Result<(), i32> {
    let mut scope = Scope::ALL;
    let mut sample = Sampler::ALL;
    for (key, value) in config {
        if scope.parse_key(key, value)? {
            continue;
        }
        match key {
            "sample" => sample = Sampler::parse(value)?,
            _ => return Err(code::UNKNOWN_KEY),
        }
    }
    let captured = Counter::define("captured");
    STATE.with(|s| {
        s.scope = scope;
        s.sample = sample;
        s.captured = captured;
    });
    Ok(())
}

fn filter(frame: &mut Frame, ctx: &Ctx) -> Verdict {
    STATE.with(|s| {
        if !s.scope.matches(ctx) {
            return;
        }
        if s.sample.hit() {
            capture(frame);
            if let Some(c) = s.captured {
                c.add(1);
            }
        }
    });
    Verdict::Pass
}

export_filter!(filter, init = init);
