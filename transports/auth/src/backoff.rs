//! Per-address back-off that slows down password guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The address a back-off entry is kept for: IPv4 as is, IPv6 by its /64
/// (one host usually owns a whole /64 and could rotate within it).
pub fn backoff_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[derive(Default)]
struct Suspects {
    /// Per address key: failures not yet forgiven, and the last one.
    by_ip: HashMap<IpAddr, (u32, Instant)>,
    /// The same failures by (address key, user), so a success forgives
    /// only that user's.
    by_user: HashMap<(IpAddr, String), u32>,
    /// Attempts being checked now, per address key.
    in_flight: HashMap<IpAddr, u32>,
}

/// Failed attempts per source address (IPv6: per /64). After
/// [`FREE_FAILURES`] failures within [`FORGET_AFTER`], each further attempt
/// from that address waits 250 ms, doubling per failure, at most
/// [`MAX_DELAY`], before it is even checked (the right password too), and
/// only one attempt from it is checked at a time (parallel connections
/// cannot multiply the guesses; the others get 429). A success forgives the
/// failures of that user only. At most [`MAX_TRACKED`] addresses are
/// tracked (the oldest are forgotten).
#[derive(Default)]
pub struct FailureBackoff {
    state: Mutex<Suspects>,
}

pub const FREE_FAILURES: u32 = 3;
pub const MAX_DELAY: Duration = Duration::from_secs(5);
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
pub const MAX_TRACKED: usize = 10_000;

/// An attempt being checked; ends when dropped.
pub struct Attempt<'a> {
    backoff: &'a FailureBackoff,
    key: IpAddr,
    /// How long to wait before checking.
    pub delay: Duration,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut s = self.backoff.state();
        if let Some(n) = s.in_flight.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                s.in_flight.remove(&self.key);
            }
        }
    }
}

impl FailureBackoff {
    fn state(&self) -> std::sync::MutexGuard<'_, Suspects> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failures(s: &Suspects, key: IpAddr, now: Instant) -> u32 {
        match s.by_ip.get(&key) {
            Some(&(n, last)) if now.duration_since(last) < FORGET_AFTER => n,
            _ => 0,
        }
    }

    /// Starts an attempt from `ip`: its delay, or `None` when the address
    /// is suspect and already has an attempt being checked.
    pub fn begin(&self, ip: IpAddr, now: Instant) -> Option<Attempt<'_>> {
        let key = backoff_key(ip);
        let mut s = self.state();
        let n = Self::failures(&s, key, now);
        let busy = s.in_flight.get(&key).copied().unwrap_or(0);
        if n >= FREE_FAILURES && busy > 0 {
            return None;
        }
        *s.in_flight.entry(key).or_insert(0) += 1;
        let delay = if n >= FREE_FAILURES {
            let shift = (n - FREE_FAILURES).min(16);
            Duration::from_millis(250u64 << shift).min(MAX_DELAY)
        } else {
            Duration::ZERO
        };
        Some(Attempt {
            backoff: self,
            key,
            delay,
        })
    }

    /// How long the next attempt from `ip` would wait.
    pub fn delay(&self, ip: IpAddr, now: Instant) -> Duration {
        self.begin(ip, now).map_or(MAX_DELAY, |a| a.delay)
    }

    pub fn failed(&self, ip: IpAddr, user: &str, now: Instant) {
        let key = backoff_key(ip);
        let mut s = self.state();
        if s.by_ip.len() >= MAX_TRACKED && !s.by_ip.contains_key(&key) {
            s.by_ip
                .retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if s.by_ip.len() >= MAX_TRACKED {
                if let Some(oldest) = s.by_ip.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) {
                    s.by_ip.remove(&oldest);
                }
            }
            let live: std::collections::HashSet<IpAddr> = s.by_ip.keys().copied().collect();
            s.by_user.retain(|(k, _), _| live.contains(k));
        }
        let e = s.by_ip.entry(key).or_insert((0, now));
        let stale = now.duration_since(e.1) >= FORGET_AFTER;
        if stale {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
        if stale {
            s.by_user.retain(|(k, _), _| *k != key);
        }
        *s.by_user.entry((key, user.to_string())).or_insert(0) += 1;
    }

    /// `user` got in from `ip`: forgive that user's failures from there.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        let key = backoff_key(ip);
        let mut s = self.state();
        let n = s.by_user.remove(&(key, user.to_string())).unwrap_or(0);
        if let Some(e) = s.by_ip.get_mut(&key) {
            e.0 = e.0.saturating_sub(n);
            if e.0 == 0 {
                s.by_ip.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_after_free_failures_and_resets() {
        let b = FailureBackoff::default();
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(b.delay(ip, t), Duration::ZERO);
            b.failed(ip, "bob", t);
        }
        assert_eq!(b.delay(ip, t), Duration::from_millis(250));
        b.failed(ip, "bob", t);
        assert_eq!(b.delay(ip, t), Duration::from_millis(500));
        for _ in 0..20 {
            b.failed(ip, "bob", t);
        }
        assert_eq!(b.delay(ip, t), MAX_DELAY);
        assert_eq!(b.delay(ip, t + FORGET_AFTER), Duration::ZERO);
        // A success as another user does not forgive bob's failures.
        b.succeeded(ip, "alice");
        assert_eq!(b.delay(ip, t), MAX_DELAY);
        b.succeeded(ip, "bob");
        assert_eq!(b.delay(ip, t), Duration::ZERO);
    }

    #[test]
    fn a_suspect_address_gets_one_attempt_at_a_time() {
        let b = FailureBackoff::default();
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let t = Instant::now();
        let (first, second) = (b.begin(ip, t).unwrap(), b.begin(ip, t).unwrap());
        drop((first, second)); // not suspect yet: in parallel is fine
        for _ in 0..FREE_FAILURES {
            b.failed(ip, "x", t);
        }
        let one = b.begin(ip, t).expect("one attempt");
        assert!(b.begin(ip, t).is_none(), "a second one at once is refused");
        drop(one);
        assert!(b.begin(ip, t).is_some());
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let b = FailureBackoff::default();
        let t = Instant::now();
        for i in 0..FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{}", i + 1).parse().unwrap();
            b.failed(ip, "x", t);
        }
        let other_host: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(b.delay(other_host, t) > Duration::ZERO);
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(b.delay(other_net, t), Duration::ZERO);
    }
}
