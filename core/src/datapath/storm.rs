//! Storm control: how many flooded frames one port may send per second.

use std::time::Instant;

/// Largest storm burst, in frames: a quarter of the default output queue
/// (a burst must leave room in the other ports' queues).
pub const STORM_BURST_MAX: u32 = 256;

/// Token bucket for storm control: `rate` tokens per second, a tenth of a
/// second's worth (at most [`STORM_BURST_MAX`]) in the bucket at most.
/// A rate of 0 turns it off.
#[derive(Clone, Debug)]
pub struct StormBucket {
    rate: u32,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl StormBucket {
    pub fn new(rate: u32) -> Self {
        let burst = f64::from((rate / 10).clamp(1, STORM_BURST_MAX));
        StormBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes a token for one flooded frame at `now`: false means drop it.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn storm_bucket_refills_at_its_rate() {
        let t = Instant::now();
        let mut b = StormBucket::new(20); // burst 2
        assert!(b.take(t) && b.take(t) && !b.take(t));
        assert!(!b.take(t + Duration::from_millis(40)));
        assert!(b.take(t + Duration::from_millis(60)));
        assert!(b.take(t + Duration::from_secs(10)) && b.take(t + Duration::from_secs(10)));
        assert!(!b.take(t + Duration::from_secs(10)), "burst capped");
        assert_eq!(StormBucket::new(10_000).burst, 256.0);
        assert_eq!(StormBucket::new(3).burst, 1.0);
        let mut off = StormBucket::new(0);
        assert!((0..1000).all(|_| off.take(t)));
    }

    proptest::proptest! {
        /// Over any span, a bucket never grants more than its burst plus
        /// its rate times the span, whatever the spacing of the requests.
        #[test]
        fn never_more_than_burst_plus_rate(
            rate in 1u32..5000,
            gaps in proptest::collection::vec(0u64..20_000, 1..500),
        ) {
            let t0 = Instant::now();
            let mut b = StormBucket::new(rate);
            let (mut t, mut granted) = (t0, 0u64);
            for g in gaps {
                t += Duration::from_micros(g);
                granted += u64::from(b.take(t));
            }
            let span = (t - t0).as_secs_f64();
            let most = b.burst + span * f64::from(rate);
            proptest::prop_assert!(granted as f64 <= most + 1e-6, "{granted} > {most}");
        }
    }
}
