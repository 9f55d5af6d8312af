//! A chain of filters, swappable atomically (SIGHUP reload).

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use etherws_core::{FilterChain, FilterContext, Frame, Verdict};

use crate::filter::{Captures, Filter, Outcome, TIME_SAMPLE};

thread_local! {
    /// Chain runs on this thread, for time sampling.
    static TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}
use crate::{FilterError, FilterSpec, Host};

/// The specs a chain was built from, in order.
pub type ChainSpec = Vec<FilterSpec>;

/// An ordered chain of filters implementing the core's [`FilterChain`].
pub struct Chain {
    host: Host,
    max_frame: usize,
    label: &'static str,
    filters: ArcSwap<Vec<Arc<Filter>>>,
    specs: ArcSwap<ChainSpec>,
}

impl Chain {
    /// Loads every filter of `specs`; any failure fails the whole chain.
    pub fn load(
        host: &Host,
        specs: ChainSpec,
        max_frame: usize,
        label: &'static str,
    ) -> Result<Chain, FilterError> {
        let filters = Self::load_all(host, &specs, max_frame, &Captures::new())?;
        Ok(Chain {
            host: host.clone(),
            max_frame,
            label,
            filters: ArcSwap::from_pointee(filters),
            specs: ArcSwap::from_pointee(specs),
        })
    }

    fn load_all(
        host: &Host,
        specs: &ChainSpec,
        max_frame: usize,
        captures: &Captures,
    ) -> Result<Vec<Arc<Filter>>, FilterError> {
        specs
            .iter()
            .map(|s| Filter::load(host, s.clone(), max_frame, captures).map(Arc::new))
            .collect()
    }

    /// Re-reads every module and swaps the new chain in atomically. On any
    /// error the old chain stays and the error is returned.
    pub fn reload(&self) -> Result<usize, FilterError> {
        let specs = self.specs.load_full();
        let captures: Captures = self.filters().iter().filter_map(|f| f.capture()).collect();
        let filters = Self::load_all(&self.host, &specs, self.max_frame, &captures)?;
        let n = filters.len();
        self.filters.store(Arc::new(filters));
        Ok(n)
    }

    /// `ingress` or `egress`.
    pub fn label(&self) -> &'static str {
        self.label
    }

    pub fn filters(&self) -> Arc<Vec<Arc<Filter>>> {
        self.filters.load_full()
    }

    /// One line per filter: name, state, counters and live instances.
    pub fn report(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.filters().iter() {
            out.push(format!(
                "filter {} {}{}: {} instances={}",
                self.label,
                f.name(),
                if f.is_unloaded() { " (unloaded)" } else { "" },
                f.stats(),
                f.instances()
            ));
            for (n, v) in f.stats().custom() {
                out.push(format!(
                    "filter {} {} counter {n}={v}",
                    self.label,
                    f.name()
                ));
            }
        }
        out
    }
}

impl FilterChain for Chain {
    fn is_empty(&self) -> bool {
        self.filters.load().is_empty()
    }

    fn max_super_frame(&self) -> usize {
        self.filters
            .load()
            .iter()
            .filter(|f| !f.is_unloaded())
            .map(|f| f.max_super_frame())
            .min()
            .unwrap_or(usize::MAX)
    }

    fn filter(&self, ctx: &FilterContext, frame: &mut Frame) -> Verdict {
        let filters = self.filters.load();
        let mut t = TICK.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            (u64::from(n) % TIME_SAMPLE == 0).then(Instant::now)
        });
        // The node asked `max_super_frame` of the chain before a reload may
        // have swapped it: a frame with offload metadata meets only
        // filters of this snapshot that declared they take it.
        if frame.meta.vnet.is_some()
            && filters
                .iter()
                .any(|f| !f.is_unloaded() && f.max_super_frame() < frame.len())
        {
            return Verdict::Drop;
        }
        for f in filters.iter() {
            if f.is_unloaded() {
                continue;
            }
            let (outcome, ended) = f.run(ctx, frame, t);
            if outcome == Outcome::Drop {
                return Verdict::Drop;
            }
            t = ended;
        }
        Verdict::Pass
    }
}
