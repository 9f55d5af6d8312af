//! Runtime behind [`export_filter!`](crate::export_filter): not public API.

use crate::abi;
use crate::code;
use crate::config::Config;
use crate::ctx::{Ctx, Direction, PortKind, Verdict};
use crate::frame::{Frame, HEADER_LEN};
use crate::global::Global;
use crate::CAPACITY;

/// A verdict the host treats as a fault ("verdict out of bounds"): neither
/// drop (-1), nor pass unchanged (0), nor a length.
const FAULT: i32 = -2;
const _: () = assert!(FAULT != abi::VERDICT_DROP && FAULT != abi::VERDICT_PASS);

#[repr(C, align(16))]
pub struct Buffer(pub [u8; CAPACITY]);

/// The frame buffer: the frame on each call, the configuration on init.
pub static BUFFER: Global<Buffer> = Global::new(Buffer([0; CAPACITY]));

/// Address of the frame buffer.
#[inline]
pub fn buffer_ptr() -> *mut Buffer {
    BUFFER.as_ptr()
}

/// Offset of the frame buffer in linear memory (truncated off wasm32,
/// where it means nothing).
#[inline]
pub fn buffer_offset() -> i32 {
    buffer_ptr() as usize as i32
}

/// `etherws_filter`: checks the arguments (a bad one is a fault), runs the
/// filter on the buffer, and turns its verdict into the ABI number.
#[inline]
pub fn run_filter<F>(filter: F, len: i32, direction: i32, port: i32, port_kind: i32) -> i32
where
    F: FnOnce(&mut Frame<'_>, &Ctx) -> Verdict,
{
    let Some(direction) = Direction::from_raw(direction) else {
        return FAULT;
    };
    if len < HEADER_LEN as i32 || len as usize > CAPACITY {
        return FAULT;
    }
    let ctx = Ctx {
        direction,
        port: port as u32,
        port_kind: PortKind::from_raw(port_kind),
    };
    BUFFER.with(|buf| {
        let Some(mut frame) = Frame::new(&mut buf.0, len as usize) else {
            return FAULT;
        };
        match filter(&mut frame, &ctx) {
            Verdict::Drop => abi::VERDICT_DROP,
            Verdict::Pass if !frame.is_modified() => abi::VERDICT_PASS,
            Verdict::Pass => frame.len() as i32,
        }
    })
}

/// `etherws_init` with an init function.
pub fn run_init<F>(init: F, config_len: i32) -> i32
where
    F: FnOnce(&Config<'_>) -> Result<(), i32>,
{
    with_config(config_len, |config| match init(config) {
        Ok(()) => 0,
        Err(0) => code::BAD_VALUE,
        Err(e) => e,
    })
}

/// `etherws_init` of a filter that takes no configuration.
pub fn run_no_init(config_len: i32) -> i32 {
    with_config(config_len, |config| {
        if config.is_empty() {
            0
        } else {
            code::NO_CONFIG_EXPECTED
        }
    })
}

fn with_config(config_len: i32, f: impl FnOnce(&Config<'_>) -> i32) -> i32 {
    if config_len < 0 || config_len as usize > CAPACITY {
        return code::BAD_LENGTH;
    }
    BUFFER.with(
        |buf| match core::str::from_utf8(&buf.0[..config_len as usize]) {
            Ok(text) => f(&Config::new(text)),
            Err(_) => code::NOT_UTF8,
        },
    )
}
