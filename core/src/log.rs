//! The one log limiter: every line a peer (or a filter) can trigger goes
//! through a [`LogLimiter`], and the next line let through says how many
//! were suppressed, in the same words everywhere ([`suppressed_note`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets at most `burst` log lines through per interval and counts the
/// rest, so a peer spraying bad input cannot flood the log. The next line
/// that passes says how many were suppressed.
#[derive(Debug)]
pub struct LogLimiter {
    /// (window start, lines let through in the window, suppressed since the
    /// last line let through)
    state: Mutex<(Option<Instant>, u32, u64)>,
    interval: Duration,
    burst: u32,
}

impl Default for LogLimiter {
    /// One line per second.
    fn default() -> Self {
        LogLimiter::new(1, Duration::from_secs(1))
    }
}

impl LogLimiter {
    pub fn new(burst: u32, interval: Duration) -> Self {
        LogLimiter {
            state: Mutex::new((None, 0, 0)),
            interval,
            burst: burst.max(1),
        }
    }

    /// Returns `Some(suppressed)` if a line may be logged now (with the
    /// number of lines suppressed since the last one), `None` otherwise.
    pub fn check(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let in_window =
            s.0.is_some_and(|start| now.saturating_duration_since(start) < self.interval);
        if !in_window {
            s.0 = Some(now);
            s.1 = 0;
        }
        if s.1 < self.burst {
            s.1 += 1;
            let suppressed = s.2;
            s.2 = 0;
            Some(suppressed)
        } else {
            s.2 += 1;
            None
        }
    }
}

/// " (N similar lines suppressed)" or nothing: the tail of a limited line.
pub fn suppressed_note(n: u64) -> String {
    if n > 0 {
        format!(" ({n} similar lines suppressed)")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_lets_one_line_per_interval() {
        let l = LogLimiter::default();
        let t = Instant::now();
        assert_eq!(l.check(t), Some(0));
        assert_eq!(l.check(t), None);
        assert_eq!(l.check(t + Duration::from_millis(500)), None);
        assert_eq!(l.check(t + Duration::from_secs(2)), Some(2));
        let b = LogLimiter::new(3, Duration::from_secs(10));
        let lets: Vec<_> = (0..5).map(|_| b.check(t)).collect();
        assert_eq!(lets, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(b.check(t + Duration::from_secs(11)), Some(2));
    }
}
