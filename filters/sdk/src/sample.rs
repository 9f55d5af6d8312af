//! "One frame in N": the `sample=N` key shared by filters that act on a
//! fraction of frames (logger, capture).

use crate::code;
use crate::config::parse_u64;

/// Picks one frame in `every`, starting with the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampler {
    every: u64,
    seen: u64,
}

impl Sampler {
    /// Every frame.
    pub const ALL: Sampler = Sampler { every: 1, seen: 0 };

    /// Parses a `sample=N` value (N ≥ 1, decimal or 0x hex).
    pub fn parse(value: &str) -> Result<Sampler, i32> {
        match parse_u64(value) {
            Some(every) if every >= 1 => Ok(Sampler { every, seen: 0 }),
            _ => Err(code::BAD_VALUE),
        }
    }

    /// Counts one frame; true if this one is sampled.
    pub fn hit(&mut self) -> bool {
        let n = self.seen;
        self.seen = n.wrapping_add(1);
        n.is_multiple_of(self.every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_n_starting_with_the_first() {
        let mut s = Sampler::parse("3").unwrap();
        let hits: [bool; 7] = core::array::from_fn(|_| s.hit());
        assert_eq!(hits, [true, false, false, true, false, false, true]);
        assert!(Sampler::parse("0").is_err());
        assert!(Sampler::parse("x").is_err());
        let mut all = Sampler::ALL;
        assert!(all.hit() && all.hit());
    }
}
