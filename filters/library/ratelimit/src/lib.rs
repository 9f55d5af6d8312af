//! `ratelimit`: a token bucket per source MAC; frames over the rate are
//! dropped and counted (`ratelimited`). See README.md.

#![no_std]

use etherws_filter_sdk::{
    code, export_filter, now_ns, parse_u64, Config, Counter, Ctx, Frame, Global, Scope, Verdict,
};

/// The table: `SETS` sets of `WAYS` entries (256 source MACs), indexed by a
/// hash of the MAC. A MAC not in its set replaces the set's empty or least
/// recently seen entry, and starts with a full bucket.
const SETS: usize = 128;
const WAYS: usize = 2;
/// Tokens are counted in nano-frames: one frame costs `NANO`, and `rate`
/// frames per second refill `rate` nano-frames per nanosecond.
const NANO: u64 = 1_000_000_000;
/// Largest `rate` and `burst` (keeps `burst * NANO` far from overflow).
const MAX: u64 = 1_000_000_000;
/// Marks a used entry (MACs have 48 bits).
const USED: u64 = 1 << 63;

#[derive(Clone, Copy)]
struct Entry {
    /// `USED | mac`, or 0 when empty.
    key: u64,
    tokens: u64,
    last_ns: u64,
}

const EMPTY: Entry = Entry {
    key: 0,
    tokens: 0,
    last_ns: 0,
};

struct Settings {
    scope: Scope,
    rate: u64,
    /// `burst * NANO`.
    cap: u64,
    dropped: Option<Counter>,
}

static SETTINGS: Global<Settings> = Global::new(Settings {
    scope: Scope::ALL,
    rate: 1,
    cap: NANO,
    dropped: None,
});
/// All zeros initially, so the static costs no data segment.
static TABLE: Global<[[Entry; WAYS]; SETS]> = Global::new([[EMPTY; WAYS]; SETS]);

fn init(config: &Config) -> Result<(), i32> {
    let mut scope = Scope::ALL;
    let (mut rate, mut burst) = (None, None);
    for (key, value) in config {
        if scope.parse_key(key, value)? {
            continue;
        }
        let n = match parse_u64(value) {
            Some(n) if (1..=MAX).contains(&n) => n,
            _ => return Err(code::BAD_VALUE),
        };
        match key {
            "rate" => rate = Some(n),
            "burst" => burst = Some(n),
            _ => return Err(code::UNKNOWN_KEY),
        }
    }
    let rate = rate.ok_or(code::MISSING_KEY)?;
    let burst = burst.unwrap_or(rate);
    let dropped = Counter::define("ratelimited");
    SETTINGS.with(|s| {
        s.scope = scope;
        s.rate = rate;
        s.cap = burst * NANO;
        s.dropped = dropped;
    });
    TABLE.with(|t| *t = [[EMPTY; WAYS]; SETS]);
    Ok(())
}

fn filter(frame: &mut Frame, ctx: &Ctx) -> Verdict {
    let (scope, rate, cap, dropped) = SETTINGS.with(|s| (s.scope, s.rate, s.cap, s.dropped));
    if !scope.matches(ctx) {
        return Verdict::Pass;
    }
    let verdict = TABLE.with(|table| {
        let src = frame.src();
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&src);
        let mac = u64::from_be_bytes(b);
        let key = USED | mac;
        let set = &mut table[(mac.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize % SETS];
        let now = now_ns();

        let Some(entry) = set.iter_mut().find(|e| e.key == key) else {
            // New MAC: replace the empty or least recently seen entry.
            let mut victim = 0;
            for (i, e) in set.iter().enumerate() {
                if e.key == 0 || e.last_ns < set[victim].last_ns {
                    victim = i;
                    if e.key == 0 {
                        break;
                    }
                }
            }
            set[victim] = Entry {
                key,
                tokens: cap - NANO,
                last_ns: now,
            };
            return Verdict::Pass;
        };

        let elapsed = now.saturating_sub(entry.last_ns);
        entry.last_ns = now;
        entry.tokens = entry
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(cap);
        if entry.tokens >= NANO {
            entry.tokens -= NANO;
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    });
    if verdict == Verdict::Drop {
        if let Some(c) = dropped {
            c.add(1);
        }
    }
    verdict
}

export_filter!(filter, init = init);
