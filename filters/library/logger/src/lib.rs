//! `logger`: logs a one-line summary of one frame in `sample`, and counts
//! the lines (`logged`). See README.md.

#![no_std]

use core::fmt::Write;
use etherws_filter_sdk::{
    code, export_filter, log, Config, Counter, Ctx, Frame, Global, Level, LineBuf, Mac, Sampler,
    Scope, Verdict,
};

struct State {
    scope: Scope,
    sample: Sampler,
    level: Level,
    logged: Option<Counter>,
}

static STATE: Global<State> = Global::new(State {
    scope: Scope::ALL,
    sample: Sampler::ALL,
    level: Level::Info,
    logged: None,
});

fn init(config: &Config) -> Result<(), i32> {
    let mut scope = Scope::ALL;
    let mut sample = Sampler::ALL;
    let mut level = Level::Info;
    for (key, value) in config {
        if scope.parse_key(key, value)? {
            continue;
        }
        match key {
            "sample" => sample = Sampler::parse(value)?,
            "level" => level = Level::parse(value).ok_or(code::BAD_VALUE)?,
            _ => return Err(code::UNKNOWN_KEY),
        }
    }
    let logged = Counter::define("logged");
    STATE.with(|s| {
        s.scope = scope;
        s.sample = sample;
        s.level = level;
        s.logged = logged;
    });
    Ok(())
}

/// `ingress port 3 tap 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff type 0x0800
/// vlan 10 proto 6 len 64`
fn summary(frame: &Frame, ctx: &Ctx, line: &mut LineBuf<160>) -> core::fmt::Result {
    write!(
        line,
        "{} port {} {} {} > {} type 0x{:04x}",
        ctx.direction.as_str(),
        ctx.port,
        ctx.port_kind.as_str(),
        Mac(frame.src()),
        Mac(frame.dst()),
        frame.ethertype(),
    )?;
    if let Some(vid) = frame.vlan_id() {
        write!(line, " vlan {vid}")?;
    }
    if let Some(proto) = frame.ip_protocol() {
        write!(line, " proto {proto}")?;
    }
    write!(line, " len {}", frame.len())
}

fn filter(frame: &mut Frame, ctx: &Ctx) -> Verdict {
    STATE.with(|s| {
        if !s.scope.matches(ctx) {
            return;
        }
        if !s.sample.hit() {
            return;
        }
        let mut line = LineBuf::new();
        let _ = summary(frame, ctx, &mut line);
        log(s.level, line.as_str());
        if let Some(c) = s.logged {
            c.add(1);
        }
    });
    Verdict::Pass
}

export_filter!(filter, init = init);
