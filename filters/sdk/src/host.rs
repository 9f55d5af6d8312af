//! Wrappers for the host imports (module `etherws`, spec section 4).
//!
//! On wasm32 they call the host; elsewhere they are harmless stand-ins so
//! filter logic can be tested natively.

use crate::abi;
use crate::frame::Frame;
use crate::line::LineBuf;
use core::fmt;

/// The imports, as safe functions of plain numbers.
#[cfg(target_arch = "wasm32")]
mod imp {
    // The Rust names differ from the import names so they cannot clash with
    // other symbols (libm's `log`).
    #[link(wasm_import_module = "etherws")]
    unsafe extern "C" {
        #[link_name = "log"]
        fn etherws_log(level: i32, ptr: i32, len: i32);
        #[link_name = "now_ns"]
        fn etherws_now_ns() -> i64;
        #[link_name = "counter_define"]
        fn etherws_counter_define(name_ptr: i32, name_len: i32) -> i32;
        #[link_name = "counter_add"]
        fn etherws_counter_add(id: i32, delta: i64);
        #[link_name = "capture"]
        fn etherws_capture(len: i32);
    }

    #[inline]
    pub fn log(level: i32, msg: &[u8]) {
        // SAFETY: the pointer and length describe `msg`, inside linear
        // memory.
        unsafe { etherws_log(level, msg.as_ptr() as usize as i32, msg.len() as i32) }
    }

    #[inline]
    pub fn now_ns() -> i64 {
        // SAFETY: no arguments; the host returns a number.
        unsafe { etherws_now_ns() }
    }

    #[inline]
    pub fn counter_define(name: &[u8]) -> i32 {
        // SAFETY: the pointer and length describe `name`, inside linear
        // memory.
        unsafe { etherws_counter_define(name.as_ptr() as usize as i32, name.len() as i32) }
    }

    #[inline]
    pub fn counter_add(id: i32, delta: i64) {
        // SAFETY: plain numbers; the host ignores unknown ids.
        unsafe { etherws_counter_add(id, delta) }
    }

    /// `len` must be within the frame buffer.
    #[inline]
    pub fn capture(len: i32) {
        // SAFETY: plain number; the host reads its own view of the buffer.
        unsafe { etherws_capture(len) }
    }
}

/// Stand-ins off wasm32: nothing is logged or captured, the clock reads 0,
/// every counter is id 0.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub fn log(_level: i32, _msg: &[u8]) {}
    pub fn now_ns() -> i64 {
        0
    }
    pub fn counter_define(_name: &[u8]) -> i32 {
        0
    }
    pub fn counter_add(_id: i32, _delta: i64) {}
    pub fn capture(_len: i32) {}
}

/// Log levels of the `log` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum Level {
    Error = abi::LOG_ERROR,
    Warn = abi::LOG_WARN,
    Info = abi::LOG_INFO,
    Debug = abi::LOG_DEBUG,
    Trace = abi::LOG_TRACE,
}

impl Level {
    /// Parses `error|warn|info|debug|trace`.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "error" => Some(Level::Error),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            "trace" => Some(Level::Trace),
            _ => None,
        }
    }
}

/// Logs one line through the host (which rate limits: at most 10 lines per
/// second per filter).
#[inline]
pub fn log(level: Level, msg: &str) {
    imp::log(level as i32, msg.as_bytes())
}

/// Formats a line into a 256-byte stack buffer (cut at that length) and
/// logs it: `log_fmt(Level::Info, format_args!("seen {}", n))`.
pub fn log_fmt(level: Level, args: fmt::Arguments<'_>) {
    let mut line = LineBuf::<256>::new();
    let _ = fmt::Write::write_fmt(&mut line, args);
    log(level, line.as_str());
}

/// Logs at level error.
pub fn log_error(msg: &str) {
    log(Level::Error, msg)
}

/// Logs at level warn.
pub fn log_warn(msg: &str) {
    log(Level::Warn, msg)
}

/// Logs at level info.
pub fn log_info(msg: &str) {
    log(Level::Info, msg)
}

/// Logs at level debug.
pub fn log_debug(msg: &str) {
    log(Level::Debug, msg)
}

/// Logs at level trace.
pub fn log_trace(msg: &str) {
    log(Level::Trace, msg)
}

/// Monotonic nanoseconds since the host started (never decreases). Always
/// 0 off wasm32.
#[inline]
pub fn now_ns() -> u64 {
    imp::now_ns() as u64
}

/// A named counter, shown by the host as `filter NAME counter NAME=VALUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter(i32);

impl Counter {
    /// Defines (or finds) the counter `name`: `[a-z0-9_]`, 1 to 64 bytes.
    /// Call it from init. `None` on a bad name or when the host's 64
    /// counters per filter are used up.
    pub fn define(name: &str) -> Option<Counter> {
        let good = !name.is_empty()
            && name.len() <= abi::MAX_COUNTER_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !good {
            return None;
        }
        let id = imp::counter_define(name.as_bytes());
        if id < 0 {
            None
        } else {
            Some(Counter(id))
        }
    }

    /// The host's id for this counter.
    pub fn id(self) -> i32 {
        self.0
    }

    /// Adds `delta` to the counter.
    #[inline]
    pub fn add(self, delta: i64) {
        imp::counter_add(self.0, delta)
    }
}

/// Appends the frame (its current length) to the filter's capture file, if
/// the host was given one (`capture=PATH`); otherwise the host ignores it.
/// Only the frame handed to the filter can be captured (the import reads the
/// frame buffer); any other [`Frame`] is ignored.
#[inline]
pub fn capture(frame: &Frame<'_>) {
    if !frame.is_in_frame_buffer() {
        return;
    }
    imp::capture(frame.len() as i32)
}
