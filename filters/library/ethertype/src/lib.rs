//! `ethertype`: drops frames by EtherType (after VLAN tags) and by IP
//! protocol (IPv4 protocol / IPv6 upper-layer next header). See README.md.

#![no_std]

use etherws_filter_sdk::{
    code, export_filter, parse_u64, split_list, Config, Ctx, Frame, Global, Scope, Verdict,
    ETHERTYPE_IPV4, ETHERTYPE_IPV6,
};

/// A set of numbers below `64 * W`.
#[derive(Clone, Copy)]
struct Bits<const W: usize>([u64; W]);

impl<const W: usize> Bits<W> {
    const EMPTY: Self = Bits([0; W]);

    fn insert(&mut self, n: usize) {
        self.0[n / 64] |= 1 << (n % 64);
    }

    fn contains(&self, n: usize) -> bool {
        self.0[n / 64] & (1 << (n % 64)) != 0
    }
}

/// The lists (all zeros initially, so the static costs no data segment).
struct Lists {
    drop: Bits<1024>,
    /// Whether `allow` was given.
    has_allow: bool,
    allow: Bits<1024>,
    drop_ipproto: Bits<4>,
    has_allow_ipproto: bool,
    allow_ipproto: Bits<4>,
}

static SCOPE: Global<Scope> = Global::new(Scope::ALL);
static LISTS: Global<Lists> = Global::new(Lists {
    drop: Bits::EMPTY,
    has_allow: false,
    allow: Bits::EMPTY,
    drop_ipproto: Bits::EMPTY,
    has_allow_ipproto: false,
    allow_ipproto: Bits::EMPTY,
});

/// Adds the `+`-separated numbers of `value` (each at most `max`) to `set`.
fn add_list<const W: usize>(set: &mut Bits<W>, value: &str, max: u64) -> Result<(), i32> {
    for item in split_list(value) {
        match parse_u64(item) {
            Some(n) if n <= max => set.insert(n as usize),
            _ => return Err(code::BAD_VALUE),
        }
    }
    Ok(())
}

fn init(config: &Config) -> Result<(), i32> {
    let mut scope = Scope::ALL;
    let mut lists = 0;
    LISTS.with(|l| {
        l.drop = Bits::EMPTY;
        l.has_allow = false;
        l.allow = Bits::EMPTY;
        l.drop_ipproto = Bits::EMPTY;
        l.has_allow_ipproto = false;
        l.allow_ipproto = Bits::EMPTY;
        for (key, value) in config {
            if scope.parse_key(key, value)? {
                continue;
            }
            match key {
                "drop" => add_list(&mut l.drop, value, 0xffff)?,
                "allow" => {
                    l.has_allow = true;
                    add_list(&mut l.allow, value, 0xffff)?
                }
                "drop_ipproto" => add_list(&mut l.drop_ipproto, value, 0xff)?,
                "allow_ipproto" => {
                    l.has_allow_ipproto = true;
                    add_list(&mut l.allow_ipproto, value, 0xff)?
                }
                _ => return Err(code::UNKNOWN_KEY),
            }
            lists += 1;
        }
        Ok(())
    })?;
    if lists == 0 {
        // Without a list the filter would do nothing.
        return Err(code::MISSING_KEY);
    }
    SCOPE.with(|s| *s = scope);
    Ok(())
}

fn filter(frame: &mut Frame, ctx: &Ctx) -> Verdict {
    if !SCOPE.with(|s| s.matches(ctx)) {
        return Verdict::Pass;
    }
    LISTS.with(|s| {
        let ethertype = frame.ethertype();
        let et = ethertype as usize;
        if s.drop.contains(et) || (s.has_allow && !s.allow.contains(et)) {
            return Verdict::Drop;
        }
        if ethertype == ETHERTYPE_IPV4 || ethertype == ETHERTYPE_IPV6 {
            match frame.ip_protocol() {
                Some(p) => {
                    let p = p as usize;
                    if s.drop_ipproto.contains(p)
                        || (s.has_allow_ipproto && !s.allow_ipproto.contains(p))
                    {
                        return Verdict::Drop;
                    }
                }
                // A malformed IP header: no protocol is allowed.
                None if s.has_allow_ipproto => return Verdict::Drop,
                None => {}
            }
        }
        Verdict::Pass
    })
}

export_filter!(filter, init = init);
// Reads headers only: takes super-frames whole, so offloads stay on through
// it; its globals hold only the configuration, so each worker thread may run
// its own instance.
etherws_filter_sdk::export_capabilities!(
    etherws_filter_sdk::abi::CAP_SUPER_FRAMES | etherws_filter_sdk::abi::CAP_REPLICABLE
);
