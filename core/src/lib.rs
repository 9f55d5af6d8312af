//! etherws core: everything a node needs that is not a particular transport
//! or filter engine.
//!
//! - [`wire`]: zero-copy Ethernet/VLAN frame view.
//! - [`switch`]: sans-IO learning switch (FDB with ageing, VLAN-aware).
//! - [`transport`]: the transport plugin trait, links and the registry.
//! - [`filter`]: the filter-chain hook.
//! - [`node`]: the port runtime that ties links to the switch.
//! - [`tap`]: Linux TAP devices as links.

pub mod filter;
pub mod frame;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod node;
pub mod offload;
pub mod stats;
pub mod switch;
pub mod tap;
pub mod transport;
pub mod wire;

pub use filter::{Direction, FilterChain, FilterContext, NoFilter, PortKind, Verdict};
pub use frame::{Frame, FrameMeta};
pub use node::{AttachedPort, Node, NodeConfig, PortEnd};
pub use stats::{Counts, DropReason, PortCounters, PortStats};
pub use switch::{PortConfig, PortId, Switch, SwitchConfig, VlanSet};
pub use transport::{
    CloseHook, CloseReason, FrameSink, FrameStream, Link, LinkError, Listener, PeerInfo,
    PendingLink, Registry, Transport, TransportError,
};
pub use wire::{EthernetFrame, MacAddr};
