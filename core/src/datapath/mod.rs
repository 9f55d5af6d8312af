//! The per-frame decisions of a node, sans-IO: no task, no lock held
//! across a wait, no clock but the `now` passed in (as the switch, and as
//! boringtun's `TunnResult` and quinn-proto's `Transmit` tell their
//! callers what to do instead of doing it).
//!
//! One frame from a link meets three stages; the port runtime
//! (`crate::port`) only moves frames between them and the queues:
//!
//! 1. [`ingress`]: checks (size, Ethernet header, offload metadata),
//!    software finishing of what filters must see whole, the ingress filter
//!    chain. Yields frames ready to switch, or a [`Refusal`] with the
//!    reason it is counted under.
//! 2. [`route`]: the switch's decision under the fabric lock (taken here
//!    and nowhere else), storm control for flooded frames, and how long a
//!    unicast super-frame may wait for room ([`Patience`]). Yields a
//!    [`Route`]: one port, several, or a drop with a reason.
//! 3. [`egress`]: for one output port, what its link takes as it is
//!    (offload metadata, UDP segmentation), software finishing of the
//!    rest, the TCP MSS clamp and the egress filter chain.

pub mod egress;
pub mod ingress;
pub mod patience;
pub mod route;
pub mod storm;

pub use egress::{Egress, Takes};
pub use ingress::{Ingress, Ready, Refusal};
pub use patience::{Patience, Placement};
pub use route::{Fabric, Route};
pub use storm::StormBucket;
