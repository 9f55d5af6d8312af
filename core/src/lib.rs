//! etherws core: everything a node needs that is not a particular transport
//! or filter engine.
//!
//! - [`wire`]: zero-copy Ethernet/VLAN frame view.
//! - [`switch`]: sans-IO learning switch (FDB with ageing, VLAN-aware).
//! - [`transport`]: the transport plugin trait, links and the registry.
//! - [`filter`]: the filter-chain hook.
//! - [`node`]: a switch with ports: attaches links, answers the report.
//! - `datapath` (private): the per-frame decisions, sans-IO (ingress,
//!   route, egress).
//! - `port` (private): the futures that run a port and its queue.
//! - [`stream`]: frames over any byte stream (pipes, `etherws stdio`).
//! - [`helpers`]: small helpers for transports (URL parts, timeouts).
//! - `tap` (feature `tap`, Linux, on by default): TAP devices as links.
//! - `testing` (feature `testing`): in-memory links and `mem://`.
//! - `conformance` (feature `conformance`): the kit every transport runs.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod datapath;
pub mod filter;
pub mod frame;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod helpers;
pub mod keepalive;
pub mod log;
pub mod mss;
pub mod node;
pub mod offload;
mod port;
pub mod stats;
pub mod stream;
pub mod switch;
#[cfg(all(target_os = "linux", feature = "tap"))]
pub mod tap;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transport;
pub mod wire;

// What a transport's signatures need, at the versions core uses: a plugin
// names `etherws_core::bytes::Bytes` and never guesses a matching version.
pub use bytes;
pub use futures;
pub use url;

pub use filter::{Direction, FilterChain, FilterContext, NoFilter, Verdict};
pub use frame::{Frame, FrameMeta};
pub use node::{Node, NodeConfig};
pub use port::{AttachedPort, PortEnd, PORT_GRACE};
pub use stats::{Counts, DropReason, PortCounters, PortStats};
pub use switch::{PortConfig, PortId, PortKind, Switch, SwitchConfig, VlanSet};
pub use transport::{
    Authenticates, CloseHook, CloseReason, FrameSink, FrameStream, Keepalive, Link, LinkError,
    LinkParams, LinkProbe, Listener, PeerInfo, PendingLink, Registry, Transport, TransportError,
};
pub use wire::{EthernetFrame, MacAddr};
