//! The host functions a filter may import (spec/filter-abi.md §4), and
//! nothing else: no WASI, files, sockets or environment.

use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use etherws_filter_abi as abi;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use wasmtime::{Caller, Extern, Linker, StoreLimits};

use crate::filter::FilterStats;

/// Per-store state the host functions see.
pub(crate) struct HostState {
    pub limits: StoreLimits,
    pub name: Arc<str>,
    pub stats: Arc<FilterStats>,
    pub capture: Option<Arc<Mutex<PcapWriter<File>>>>,
    pub started: Instant,
    /// Frame buffer offset, for `capture`.
    pub buf_ptr: usize,
    pub buf_cap: usize,
}

fn memory_slice<'a>(
    caller: &'a mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<&'a [u8]> {
    let Some(Extern::Memory(mem)) = caller.get_export(abi::names::MEMORY) else {
        return Err(wasmtime::Error::msg("module has no memory"));
    };
    let data = mem.data(caller);
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    data.get(p..p.saturating_add(l))
        .ok_or_else(|| wasmtime::Error::msg(format!("pointer {p}+{l} out of bounds")))
}

/// Longest guest log line kept; the rest is cut.
const MAX_LOG_LINE: i32 = 1024;

/// The set of imports the host offers, with their types, for load checks.
pub(crate) const OFFERED: &[&str] = &[
    abi::names::LOG,
    abi::names::NOW_NS,
    abi::names::COUNTER_DEFINE,
    abi::names::COUNTER_ADD,
    abi::names::CAPTURE,
];

pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut l = Linker::new(engine);
    let m = abi::names::IMPORT_MODULE;
    l.func_wrap(
        m,
        abi::names::LOG,
        |mut c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
            // Bounds are checked even for lines the rate limit drops, so a
            // bad pointer is a fault whatever the timing.
            memory_slice(&mut c, ptr, len)?;
            let Some(suppressed) = c.data().stats.guest_log_allowed() else {
                return Ok(());
            };
            let note = etherws_core::log::suppressed_note(suppressed);
            let line = memory_slice(&mut c, ptr, len.min(MAX_LOG_LINE))?;
            let text = String::from_utf8_lossy(line).into_owned();
            let st = c.data();
            {
                let name = &st.name;
                match level {
                    abi::LOG_ERROR => log::error!("filter {name}: {text}{note}"),
                    abi::LOG_WARN => log::warn!("filter {name}: {text}{note}"),
                    abi::LOG_INFO => log::info!("filter {name}: {text}{note}"),
                    abi::LOG_DEBUG => log::debug!("filter {name}: {text}{note}"),
                    _ => log::trace!("filter {name}: {text}{note}"),
                }
            }
            Ok(())
        },
    )?;
    l.func_wrap(m, abi::names::NOW_NS, |c: Caller<'_, HostState>| -> i64 {
        c.data().started.elapsed().as_nanos() as i64
    })?;
    l.func_wrap(
        m,
        abi::names::COUNTER_DEFINE,
        |mut c: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let name = memory_slice(&mut c, ptr, len)?.to_vec();
            Ok(c.data().stats.define_counter(&name))
        },
    )?;
    l.func_wrap(
        m,
        abi::names::COUNTER_ADD,
        |c: Caller<'_, HostState>, id: i32, delta: i64| {
            c.data().stats.add_counter(id, delta);
        },
    )?;
    l.func_wrap(
        m,
        abi::names::CAPTURE,
        |mut c: Caller<'_, HostState>, len: i32| -> wasmtime::Result<()> {
            let (ptr, cap) = (c.data().buf_ptr, c.data().buf_cap);
            let Some(w) = c.data().capture.clone() else {
                return Ok(());
            };
            if len < abi::MIN_FRAME || len as usize > cap {
                return Ok(());
            }
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let frame = memory_slice(&mut c, ptr as i32, len)?;
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = w.write_packet(&PcapPacket::new(ts, frame.len() as u32, frame)) {
                log::warn!("capture write failed: {e}");
            }
            Ok(())
        },
    )?;
    Ok(l)
}
