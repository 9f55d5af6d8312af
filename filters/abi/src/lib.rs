//! The numbers of the etherws filter ABI, version 1 (`spec/filter-abi.md`).
//!
//! Defined once, here, and used by both the wasmtime host
//! (`etherws-filter`) and the guest SDK (`etherws-filter-sdk`), so the two
//! sides cannot drift. Version 1 is frozen: never renumber.

#![no_std]

/// The ABI version this crate describes.
pub const ABI_VERSION: i32 = 1;

/// Verdict: drop the frame.
pub const VERDICT_DROP: i32 = -1;
/// Verdict: pass the frame unchanged (the host reads nothing back).
/// Any verdict from [`MIN_FRAME`] to the capacity passes that many bytes of
/// the buffer (a rewrite, or an unchanged frame the host must compare).
pub const VERDICT_PASS: i32 = 0;

/// Smallest length a pass verdict may carry (an Ethernet header).
pub const MIN_FRAME: i32 = 14;

/// Direction argument: entering the node from a port, before switching.
pub const DIRECTION_INGRESS: i32 = 0;
/// Direction argument: leaving the node through a port, after switching.
pub const DIRECTION_EGRESS: i32 = 1;

/// Port kind argument: a TAP device.
pub const PORT_KIND_TAP: i32 = 0;
/// Port kind argument: a transport link.
pub const PORT_KIND_LINK: i32 = 1;

/// Log levels for the `log` import.
pub const LOG_ERROR: i32 = 0;
pub const LOG_WARN: i32 = 1;
pub const LOG_INFO: i32 = 2;
pub const LOG_DEBUG: i32 = 3;
pub const LOG_TRACE: i32 = 4;

/// Extra buffer room the host requires beyond its max frame (one VLAN tag).
pub const CAPACITY_SLACK: i32 = 4;

/// Capability bit of `etherws_capabilities`: the filter takes frames with
/// offload metadata whole (super-frames up to its buffer capacity, partial
/// checksums), and a rewrite of such a frame keeps its length
/// (spec/filter-abi.md section 3.1).
pub const CAP_SUPER_FRAMES: i32 = 1;

/// Capability bit of `etherws_capabilities`: the filter keeps no state that
/// must be shared between frames (its globals hold configuration or
/// per-call scratch only), so the host may run several instances of it,
/// each initialised with the same configuration, and call them at once
/// from different threads (spec/filter-abi.md section 3.2). Stateful
/// filters (rate limiting, counting or sampling frames) must not declare it.
pub const CAP_REPLICABLE: i32 = 2;

/// Export and import names.
pub mod names {
    pub const MEMORY: &str = "memory";
    pub const ABI_VERSION: &str = "etherws_abi_version";
    pub const FRAME_BUFFER: &str = "etherws_frame_buffer";
    pub const FRAME_CAPACITY: &str = "etherws_frame_capacity";
    pub const FILTER: &str = "etherws_filter";
    pub const INIT: &str = "etherws_init";
    pub const CAPABILITIES: &str = "etherws_capabilities";
    /// The import module of every host function.
    pub const IMPORT_MODULE: &str = "etherws";
    pub const LOG: &str = "log";
    pub const NOW_NS: &str = "now_ns";
    pub const COUNTER_DEFINE: &str = "counter_define";
    pub const COUNTER_ADD: &str = "counter_add";
    pub const CAPTURE: &str = "capture";
}

/// Maximum number of named counters per filter.
pub const MAX_COUNTERS: usize = 64;
/// Maximum length of a counter name.
pub const MAX_COUNTER_NAME: usize = 64;
