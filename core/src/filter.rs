//! The filter-chain hook: every frame entering a node (ingress) and every
//! frame leaving a port (egress) can be shown to a chain of filters that
//! pass, drop or rewrite it. The WASM host (`etherws-filter`) implements
//! [`FilterChain`]; the node only knows this trait.

use crate::frame::Frame;
// `PortKind` lives beside `PortId`; named here too, as filters see it.
use crate::switch::PortId;
pub use crate::switch::PortKind;

/// Which way a frame is crossing the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// Entering the node from a port, before switching.
    Ingress,
    /// Leaving the node through a port, after switching.
    Egress,
}

/// What a filter is told about the frame besides its bytes.
#[derive(Clone, Copy, Debug)]
pub struct FilterContext {
    pub direction: Direction,
    pub port: PortId,
    pub port_kind: PortKind,
}

/// A filter's decision. A rewrite is expressed by changing the frame in
/// place and returning `Pass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    Pass,
    Drop,
}

/// A chain of filters applied to frames. Implementations must be cheap when
/// empty and must never panic on any input: a faulting filter is the
/// implementation's business (its fault policy), not the node's.
pub trait FilterChain: Send + Sync {
    /// True when the chain has nothing to do; lets the hot path skip it.
    fn is_empty(&self) -> bool;
    /// The largest frame with offload metadata (`FrameMeta::vnet`: a
    /// super-frame or a partial checksum) the chain takes whole. Longer
    /// ones, and all of them when this is 0 (the default), are finished in
    /// software first, so the chain sees complete wire frames only
    /// (spec/filter-abi.md section 3.1).
    fn max_super_frame(&self) -> usize {
        0
    }
    fn filter(&self, ctx: &FilterContext, frame: &mut Frame) -> Verdict;
}

/// The empty chain: passes everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFilter;

impl FilterChain for NoFilter {
    fn is_empty(&self) -> bool {
        true
    }
    fn filter(&self, _: &FilterContext, _: &mut Frame) -> Verdict {
        Verdict::Pass
    }
}
