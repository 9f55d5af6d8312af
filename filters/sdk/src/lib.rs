//! Guest SDK for etherws WebAssembly filters (ABI version 1,
//! `spec/filter-abi.md`).
//!
//! `#![no_std]` and allocation-free: the frame buffer is a static array owned
//! by the module, configuration is parsed in place, and state lives in
//! [`Global`] statics. A filter is a `cdylib` crate for
//! `wasm32-unknown-unknown`:
//!
//! ```ignore
//! #![no_std]
//! use etherws_filter_sdk::{export_filter, Config, Ctx, Frame, Verdict};
//!
//! fn filter(frame: &mut Frame, _ctx: &Ctx) -> Verdict {
//!     if frame.ethertype() == 0x0806 { Verdict::Drop } else { Verdict::Pass }
//! }
//!
//! export_filter!(filter);
//! ```
//!
//! [`export_filter!`] emits every export the host needs: `etherws_abi_version`,
//! `etherws_frame_buffer`, `etherws_frame_capacity`, `etherws_filter` and
//! `etherws_init`. Host functions (module `etherws`) are wrapped by [`log`],
//! [`now_ns`], [`Counter`] and [`capture`].
//!
//! [`Verdict::Pass`] becomes the ABI's "pass unchanged" verdict (`0`: the
//! host copies nothing back) when the filter did not touch the frame, and
//! the frame's length when it used any mutating method of [`Frame`].
//! Arguments out of the ABI's range (a direction other than 0 or 1, a
//! length outside `14..=CAPACITY`) return a verdict out of bounds, which the
//! host treats as a fault.
//!
//! The default feature `panic-handler` provides a `#[panic_handler]` that
//! traps (on wasm32 only), so a panic is a filter fault, handled by the
//! host's fault policy.
//!
//! On targets other than wasm32 the host imports are harmless stand-ins
//! (logging does nothing, the clock reads 0, counters are accepted and
//! ignored), so filter logic can be unit-tested natively.

#![no_std]

pub use etherws_filter_abi as abi;

mod config;
mod ctx;
mod frame;
mod global;
mod host;
mod line;
mod sample;

#[doc(hidden)]
pub mod __private;

pub use config::{parse_bool, parse_mac, parse_u64, split_list, Config, Pairs};
pub use ctx::{Ctx, Direction, PortKind, Scope, Verdict};
pub use frame::{
    Frame, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, HEADER_LEN, TPID_8021AD, TPID_8021Q,
};
pub use global::Global;
pub use host::{
    capture, log, log_debug, log_error, log_fmt, log_info, log_trace, log_warn, now_ns, Counter,
    Level,
};
pub use line::{LineBuf, Mac};
pub use sample::Sampler;

/// Size of the frame buffer in bytes: 65536 + 64.
///
/// The host's largest frame is MTU 65535 + 22 (Ethernet header, two VLAN
/// tags, FCS room) and the ABI asks for 4 more bytes (one more VLAN tag).
pub const CAPACITY: usize = 65536 + 64;

const _: () = assert!(CAPACITY >= 65535 + 22 + abi::CAPACITY_SLACK as usize);
const _: () = assert!(CAPACITY <= i32::MAX as usize);

/// Error codes a filter's init may return (any non-zero code refuses the
/// configuration; these are conventions shared by the library filters).
pub mod code {
    /// A key the filter does not know.
    pub const UNKNOWN_KEY: i32 = 1;
    /// A value that does not parse or is out of range.
    pub const BAD_VALUE: i32 = 2;
    /// A required key is missing.
    pub const MISSING_KEY: i32 = 3;
    /// More items than the filter's fixed tables hold.
    pub const TOO_MANY: i32 = 4;
    /// Keys that do not go together.
    pub const CONFLICT: i32 = 5;
    /// A non-empty configuration for a filter that takes none.
    pub const NO_CONFIG_EXPECTED: i32 = 6;
    /// The configuration is not UTF-8.
    pub const NOT_UTF8: i32 = 7;
    /// The configuration length is negative or larger than the buffer.
    pub const BAD_LENGTH: i32 = 8;
}

#[cfg(all(target_arch = "wasm32", not(test), feature = "panic-handler"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// Emits the three buffer exports of the ABI: `etherws_abi_version`,
/// `etherws_frame_buffer` and `etherws_frame_capacity`.
///
/// [`export_filter!`] already calls it; use it alone only when writing
/// `etherws_filter` and `etherws_init` by hand.
#[macro_export]
macro_rules! export_abi {
    () => {
        /// ABI export: the version this module speaks.
        #[unsafe(no_mangle)]
        pub extern "C" fn etherws_abi_version() -> i32 {
            $crate::abi::ABI_VERSION
        }

        /// ABI export: offset of the frame buffer in linear memory.
        #[unsafe(no_mangle)]
        pub extern "C" fn etherws_frame_buffer() -> i32 {
            $crate::__private::buffer_offset()
        }

        /// ABI export: size of the frame buffer.
        #[unsafe(no_mangle)]
        pub extern "C" fn etherws_frame_capacity() -> i32 {
            $crate::CAPACITY as i32
        }
    };
}

/// Emits `etherws_capabilities`, declaring optional capabilities (bits of
/// `abi::CAP_*`), e.g. `export_capabilities!(abi::CAP_SUPER_FRAMES)` for a
/// filter that only reads headers, or rewrites bytes without changing the
/// length, and so may see super-frames whole (spec/filter-abi.md 3.1).
/// Such a filter must not rely on `len <= max frame`, on L4 checksums being
/// complete, or on one call per wire frame.
///
/// `abi::CAP_REPLICABLE` lets the host run one instance per worker thread,
/// each set up by its own `init` with the same configuration, and call
/// them at once (spec/filter-abi.md 3.2): declare it when the filter's
/// [`Global`]s hold only its configuration, so that which instance sees a
/// frame does not matter. A filter that rate-limits, counts frames in its
/// memory or samples them ([`Sampler`]) must not: each instance would keep
/// its own state. [`Counter`]s live in the host and are shared by every
/// instance, so counting through them is fine. Bits combine with `|`:
/// `export_capabilities!(abi::CAP_SUPER_FRAMES | abi::CAP_REPLICABLE)`.
#[macro_export]
macro_rules! export_capabilities {
    ($caps:expr) => {
        /// ABI export: optional capabilities this filter declares.
        #[unsafe(no_mangle)]
        pub extern "C" fn etherws_capabilities() -> i32 {
            $caps
        }
    };
}

/// Emits all exports of a filter module.
///
/// * `export_filter!(filter)`: `filter` is a
///   `fn(&mut Frame, &Ctx) -> Verdict`. The module still exports
///   `etherws_init`, which accepts an empty configuration and refuses any
///   other with [`code::NO_CONFIG_EXPECTED`].
/// * `export_filter!(filter, init = init)`: `init` is a
///   `fn(&Config) -> Result<(), i32>`, called once per instance with the
///   configuration (also when it is empty). `Err(code)` refuses it
///   (`Err(0)` is reported as [`code::BAD_VALUE`]).
#[macro_export]
macro_rules! export_filter {
    ($filter:path $(,)?) => {
        $crate::__export_filter_entry!($filter);

        /// ABI export: configuration (this filter takes none).
        #[unsafe(no_mangle)]
        pub extern "C" fn etherws_init(config_len: i32) -> i32 {
            $crate::__private::run_no_init(config_len)
        }
    };
    ($filter:path, init = $init:path $(,)?) => {
        $crate::__export_filter_entry!($filter);

        /// ABI export: configuration.
        #[unsafe(no_mangle)]
        pub extern "C" fn etherws_init(config_len: i32) -> i32 {
            $crate::__private::run_init($init, config_len)
        }
    };
}

/// The buffer exports and the per-frame entry point, shared by both forms
/// of [`export_filter!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __export_filter_entry {
    ($filter:path) => {
        $crate::export_abi!();

        /// ABI export: the per-frame entry point.
        #[unsafe(no_mangle)]
        pub extern "C" fn etherws_filter(
            len: i32,
            direction: i32,
            port: i32,
            port_kind: i32,
        ) -> i32 {
            $crate::__private::run_filter($filter, len, direction, port, port_kind)
        }
    };
}

#[cfg(test)]
mod tests;
