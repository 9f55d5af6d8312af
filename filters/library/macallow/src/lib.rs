//! `macallow`: port security. Drops frames whose source MAC is not in the
//! allow list. See README.md.

#![no_std]

use etherws_filter_sdk::{
    code, export_filter, parse_mac, split_list, Config, Ctx, Frame, Global, Scope, Verdict,
};

/// Most MACs the allow list holds.
const MAX_MACS: usize = 256;

/// The allow list (all zeros initially, so the static costs no data
/// segment).
struct Allow {
    /// Sorted, without duplicates.
    macs: [u64; MAX_MACS],
    count: usize,
}

static SCOPE: Global<Scope> = Global::new(Scope::ALL);
static ALLOW: Global<Allow> = Global::new(Allow {
    macs: [0; MAX_MACS],
    count: 0,
});

fn key(mac: [u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&mac);
    u64::from_be_bytes(b)
}

fn init(config: &Config) -> Result<(), i32> {
    let mut scope = Scope::ALL;
    let mut allow = [0u64; MAX_MACS];
    let mut count = 0;
    let mut seen_allow = false;
    for (k, v) in config {
        if scope.parse_key(k, v)? {
            continue;
        }
        if k != "allow" {
            return Err(code::UNKNOWN_KEY);
        }
        seen_allow = true;
        for item in split_list(v) {
            let mac = key(parse_mac(item).ok_or(code::BAD_VALUE)?);
            // Insert into the sorted table.
            match allow[..count].binary_search(&mac) {
                Ok(_) => {}
                Err(at) => {
                    if count == MAX_MACS {
                        return Err(code::TOO_MANY);
                    }
                    allow.copy_within(at..count, at + 1);
                    allow[at] = mac;
                    count += 1;
                }
            }
        }
    }
    if !seen_allow {
        return Err(code::MISSING_KEY);
    }
    ALLOW.with(|a| {
        a.macs = allow;
        a.count = count;
    });
    SCOPE.with(|s| *s = scope);
    Ok(())
}

fn filter(frame: &mut Frame, ctx: &Ctx) -> Verdict {
    if !SCOPE.with(|s| s.matches(ctx)) {
        return Verdict::Pass;
    }
    let src = key(frame.src());
    if ALLOW.with(|a| a.macs[..a.count].binary_search(&src).is_ok()) {
        Verdict::Pass
    } else {
        Verdict::Drop
    }
}

export_filter!(filter, init = init);
// Reads headers only: takes super-frames whole, so offloads stay on through
// it; its globals hold only the configuration, so each worker thread may run
// its own instance.
etherws_filter_sdk::export_capabilities!(
    etherws_filter_sdk::abi::CAP_SUPER_FRAMES | etherws_filter_sdk::abi::CAP_REPLICABLE
);
