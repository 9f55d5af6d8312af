//! One loaded filter: its compiled module, its (lazily re-created)
//! instances, the per-frame call, and its counters.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use etherws_core::{Direction, FilterContext, Frame, PortKind};
use etherws_filter_abi as abi;
use pcap_file::pcap::PcapWriter;
use wasmtime::{
    ExternType, InstancePre, Memory, Module, Store, StoreLimitsBuilder, TypedFunc, ValType,
};

use crate::imports::{self, HostState};
use crate::spec::{FaultPolicy, FilterSpec};
use crate::{FilterError, Host, EPOCH_DEADLINE_TICKS};

/// A capture file's writer, shared by the filters (old and reloaded) that
/// write to it.
pub(crate) type CaptureWriter = Arc<Mutex<PcapWriter<File>>>;

/// Capture writers already open, by path.
pub(crate) type Captures = HashMap<PathBuf, CaptureWriter>;

/// Counters of one filter (spec/filter-abi.md §5), shared across
/// re-instantiations and reloads of the same filter object, and by all its
/// instances.
///
/// The per-frame counts (passed, dropped, rewritten) are kept in shards,
/// one per instance slot, and summed when read: two threads adding to one
/// counter would bounce its cache line between cores on every frame, which
/// measured costlier than the filter call itself and took away what an
/// instance per thread gains.
#[derive(Debug)]
pub struct FilterStats {
    shards: Box<[Shard]>,
    pub faults: AtomicU64,
    /// Frames that met the filter while its instance was down (rebuilding
    /// after a fault, or waiting out the back-off): they followed the fault
    /// policy without a call, and are also counted as passed or dropped.
    pub bypassed: AtomicU64,
    pub time_ns: AtomicU64,
    /// What the last fault was (its one-line cause).
    last_fault: Mutex<Option<String>>,
    /// Names of the filter's own counters; values live in `values`, indexed
    /// by id, so `counter_add` (per frame) takes no lock.
    names: Mutex<Vec<String>>,
    values: [AtomicU64; abi::MAX_COUNTERS],
    /// Guest log lines: at most GUEST_LOG_PER_SEC a second.
    log_limit: etherws_core::log::LogLimiter,
}

/// The per-frame counts of one instance slot, on cache lines of their own
/// (see [`PaddedSlot`]).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    passed: AtomicU64,
    dropped: AtomicU64,
    rewritten: AtomicU64,
}

impl Default for FilterStats {
    fn default() -> Self {
        FilterStats::with_shards(1)
    }
}

impl FilterStats {
    /// Counters for a filter of up to `n` instance slots.
    pub(crate) fn with_shards(n: usize) -> Self {
        FilterStats {
            shards: (0..n.max(1)).map(|_| Shard::default()).collect(),
            faults: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            time_ns: AtomicU64::new(0),
            last_fault: Mutex::new(None),
            names: Mutex::new(Vec::new()),
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            log_limit: etherws_core::log::LogLimiter::new(
                GUEST_LOG_PER_SEC,
                std::time::Duration::from_secs(1),
            ),
        }
    }

    fn sum(&self, field: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| field(s).load(Relaxed)).sum()
    }

    /// Frames passed, by the filter or by its fault policy.
    pub fn passed(&self) -> u64 {
        self.sum(|s| &s.passed)
    }

    /// Frames dropped, by the filter or by its fault policy.
    pub fn dropped(&self) -> u64 {
        self.sum(|s| &s.dropped)
    }

    /// Frames passed with bytes changed.
    pub fn rewritten(&self) -> u64 {
        self.sum(|s| &s.rewritten)
    }

    /// The shard of instance slot `slot`.
    fn shard(&self, slot: usize) -> &Shard {
        // As many shards as the host's pool, slots as many or one; any
        // shard would still count right.
        self.shards.get(slot).unwrap_or(&self.shards[0])
    }

    /// Counts one frame's outcome, in the shard of the slot that ran it.
    pub(crate) fn count(&self, slot: usize, outcome: Outcome) {
        let s = self.shard(slot);
        match outcome {
            Outcome::Pass => s.passed.fetch_add(1, Relaxed),
            Outcome::Drop => s.dropped.fetch_add(1, Relaxed),
        };
    }
}

const GUEST_LOG_PER_SEC: u32 = 10;

/// One chain run in this many is timed (the clock costs about as much as a
/// trivial filter call on some machines).
pub(crate) const TIME_SAMPLE: u64 = 64;

impl FilterStats {
    /// Every call ends passed or dropped (a fault by its policy), so calls
    /// are derived rather than counted: one atomic less per frame.
    pub fn calls(&self) -> u64 {
        self.passed() + self.dropped()
    }

    /// The cause of the most recent fault, e.g. "fuel budget exhausted
    /// (trap: out of fuel)".
    pub fn last_fault(&self) -> Option<String> {
        self.last_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn define_counter(&self, name: &[u8]) -> i32 {
        let ok = !name.is_empty()
            && name.len() <= abi::MAX_COUNTER_NAME
            && name
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !ok {
            return -1;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = names.iter().position(|n| *n == name) {
            return i as i32;
        }
        if names.len() >= abi::MAX_COUNTERS {
            return -1;
        }
        names.push(name);
        (names.len() - 1) as i32
    }

    pub(crate) fn add_counter(&self, id: i32, delta: i64) {
        if let Some(v) = usize::try_from(id).ok().and_then(|i| self.values.get(i)) {
            v.fetch_add(delta as u64, Relaxed);
        }
    }

    /// The filter's own named counters.
    pub fn custom(&self) -> Vec<(String, u64)> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .zip(&self.values)
            .map(|(n, v)| (n.clone(), v.load(Relaxed)))
            .collect()
    }

    /// Whether a guest log line may go out now: `Some(suppressed)` (the
    /// lines held back since the last one), or `None`.
    pub(crate) fn guest_log_allowed(&self) -> Option<u64> {
        self.log_limit.check(Instant::now())
    }
}

impl fmt::Display for FilterStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each sum read once: under load a second read could differ, and
        // the line would show calls != passed + dropped.
        let (passed, dropped) = (self.passed(), self.dropped());
        write!(
            f,
            "calls={} passed={passed} dropped={dropped} rewritten={} faults={} bypassed={} time_ns={}",
            passed + dropped,
            self.rewritten(),
            self.faults.load(Relaxed),
            self.bypassed.load(Relaxed),
            self.time_ns.load(Relaxed)
        )
    }
}

/// A live instance: its store and the handles the hot path needs.
struct Instance {
    store: Store<HostState>,
    memory: Memory,
    filter: TypedFunc<(i32, i32, i32, i32), i32>,
    buf_ptr: usize,
    buf_cap: usize,
    /// The module declared `CAP_REPLICABLE`.
    replicable: bool,
}

/// One instance and its rebuild state, under one lock.
#[derive(Default)]
struct Slot {
    inst: Option<Instance>,
    /// A thread has called through this slot (its first instance was made,
    /// or tried): from then on an empty slot is an instance down, to be
    /// rebuilt after a fault, rather than one not yet needed.
    used: bool,
    /// A thread is instantiating (outside the lock); others bypass.
    rebuilding: bool,
    /// No rebuild before this (back-off after repeated faults).
    not_before: Option<Instant>,
}

/// A slot on cache lines of its own (128 bytes: x86 fetches lines in
/// pairs): the slots of a pool are locked by different threads at once,
/// and locks sharing a line would still bounce it between the cores.
#[derive(Default)]
#[repr(align(128))]
struct PaddedSlot(Mutex<Slot>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands out thread numbers, each once.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number, taken on its first call of a replicable
    /// filter. Its slot in every pool is this number modulo the pool size:
    /// the same for every filter, so the worker threads of a node (numbered
    /// in turn as they meet their first frame) each keep to an instance of
    /// their own, and only threads beyond the pool size share one.
    static THREAD_INDEX: usize = NEXT_THREAD.fetch_add(1, Relaxed);
}

/// Why a call produced no verdict of the filter's own.
enum CallError {
    /// A fault (trap, limit, bad verdict, failed rebuild): counted.
    Fault(String),
    /// The instance is down (rebuilding or backing off): not a new fault.
    Bypass,
}

impl From<String> for CallError {
    fn from(s: String) -> Self {
        CallError::Fault(s)
    }
}

/// Wait before rebuilding an instance after `n` consecutive faults: none
/// after the first (one trap costs one rebuild), then 10 ms doubling to
/// 1 s, so a module that traps on every frame costs a rebuild at most once
/// a second rather than once per frame.
fn rebuild_delay(n: u32) -> std::time::Duration {
    if n <= 1 {
        return std::time::Duration::ZERO;
    }
    let ms = 10u64.saturating_mul(1 << (n - 2).min(20));
    std::time::Duration::from_millis(ms.min(1000))
}

/// A loaded filter.
pub struct Filter {
    spec: FilterSpec,
    name: Arc<str>,
    pre: InstancePre<HostState>,
    host: Host,
    max_frame: usize,
    capture: Option<CaptureWriter>,
    /// The instances: one slot, or, for a module declaring
    /// `CAP_REPLICABLE`, one per calling thread up to the host's pool size
    /// (a thread uses slot `THREAD_INDEX % len`), so threads do not queue on
    /// one lock. Each slot is filled on its first call.
    slots: Box<[PaddedSlot]>,
    /// The instance made at load (so that load-time problems surface at
    /// load), until the first slot to be called takes it: a node with one
    /// thread pays for one instance.
    spare: Mutex<Option<Instance>>,
    stats: Arc<FilterStats>,
    consecutive_faults: AtomicU32,
    unloaded: AtomicBool,
    /// Largest frame with offload metadata this filter takes whole: its
    /// buffer capacity if it declares `CAP_SUPER_FRAMES`, else 0.
    super_frames: AtomicUsize,
    fault_log: etherws_core::log::LogLimiter,
}

/// What a single call decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Drop,
}

fn func_type_str(params: &[ValType], results: &[ValType]) -> String {
    let p: Vec<String> = params.iter().map(|t| t.to_string()).collect();
    let r: Vec<String> = results.iter().map(|t| t.to_string()).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

/// Required function exports: name, params, results, and the spelling used
/// in error messages.
const REQUIRED: &[(&str, usize, &str)] = &[
    (abi::names::ABI_VERSION, 0, "() -> i32"),
    (abi::names::FRAME_BUFFER, 0, "() -> i32"),
    (abi::names::FRAME_CAPACITY, 0, "() -> i32"),
    (abi::names::FILTER, 4, "(i32, i32, i32, i32) -> i32"),
];

fn check_module(name: &str, module: &Module) -> Result<(), FilterError> {
    // Imports first: an import the host does not offer can never run.
    for imp in module.imports() {
        if imp.module() != abi::names::IMPORT_MODULE || !imports::OFFERED.contains(&imp.name()) {
            return Err(FilterError::UnknownImport {
                name: name.into(),
                module: imp.module().into(),
                import: imp.name().into(),
            });
        }
    }
    let exports: Vec<(String, ExternType)> = module
        .exports()
        .map(|e| (e.name().to_string(), e.ty()))
        .collect();
    let find = |n: &str| exports.iter().find(|(en, _)| en == n).map(|(_, t)| t);
    match find(abi::names::MEMORY) {
        Some(ExternType::Memory(_)) => {}
        Some(other) => {
            return Err(FilterError::WrongExportType {
                name: name.into(),
                export: abi::names::MEMORY,
                expected: "memory",
                found: format!("{other:?}"),
            })
        }
        None => {
            return Err(FilterError::MissingExport {
                name: name.into(),
                export: abi::names::MEMORY,
                expected: "memory",
            })
        }
    }
    let all_i32 = |ts: &[ValType]| ts.iter().all(|t| matches!(t, ValType::I32));
    for (export, nparams, expected) in REQUIRED.iter().copied().chain([
        (abi::names::INIT, 1, "(i32) -> i32"),
        (abi::names::CAPABILITIES, 0, "() -> i32"),
    ]) {
        let ty = match find(export) {
            Some(ExternType::Func(f)) => f,
            Some(other) => {
                return Err(FilterError::WrongExportType {
                    name: name.into(),
                    export,
                    expected,
                    found: format!("{other:?}"),
                })
            }
            None if export == abi::names::INIT || export == abi::names::CAPABILITIES => continue,
            None => {
                return Err(FilterError::MissingExport {
                    name: name.into(),
                    export,
                    expected,
                })
            }
        };
        let params: Vec<ValType> = ty.params().collect();
        let results: Vec<ValType> = ty.results().collect();
        if params.len() != nparams || results.len() != 1 || !all_i32(&params) || !all_i32(&results)
        {
            return Err(FilterError::WrongExportType {
                name: name.into(),
                export,
                expected,
                found: func_type_str(&params, &results),
            });
        }
    }
    Ok(())
}

impl Filter {
    pub(crate) fn load(
        host: &Host,
        spec: FilterSpec,
        max_frame: usize,
        captures: &Captures,
    ) -> Result<Filter, FilterError> {
        let bytes = std::fs::read(&spec.path).map_err(|error| FilterError::Io {
            name: spec.name.clone(),
            path: spec.path.clone(),
            error,
        })?;
        Self::from_bytes(host, spec, &bytes, max_frame, captures)
    }

    /// Compiles and checks `bytes` (binary wasm or wat text) as the filter
    /// `spec` describes (its path is not read).
    pub(crate) fn from_bytes(
        host: &Host,
        spec: FilterSpec,
        bytes: &[u8],
        max_frame: usize,
        captures: &Captures,
    ) -> Result<Filter, FilterError> {
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let module = Module::new(host.engine(), bytes).map_err(|e| FilterError::Compile {
            name: spec.name.clone(),
            msg: format!("{e:#}"),
        })?;
        check_module(&spec.name, &module)?;
        let linker = imports::linker(host.engine()).map_err(|e| FilterError::Compile {
            name: spec.name.clone(),
            msg: e.to_string(),
        })?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| FilterError::Compile {
                name: spec.name.clone(),
                msg: format!("{e:#}"),
            })?;
        let capture = match &spec.capture {
            None => None,
            // A reload keeps writing the same file through the same writer
            // (re-creating it would truncate it under the old chain's feet).
            Some(path) if captures.contains_key(path) => captures.get(path).cloned(),
            Some(path) => {
                let cap_err = |error: String| FilterError::Capture {
                    name: spec.name.clone(),
                    path: path.clone(),
                    error,
                };
                let file = File::create(path).map_err(|e| cap_err(e.to_string()))?;
                // Snap length above the largest frame (MTU 65535 + headers);
                // pcap-file's default of 65535 would refuse jumbo frames.
                let header = pcap_file::pcap::PcapHeader {
                    snaplen: 262_144,
                    endianness: pcap_file::Endianness::native(),
                    ..Default::default()
                };
                let w =
                    PcapWriter::with_header(file, header).map_err(|e| cap_err(e.to_string()))?;
                Some(Arc::new(Mutex::new(w)))
            }
        };
        let mut f = Filter {
            name,
            pre,
            host: host.clone(),
            max_frame,
            capture,
            slots: Box::default(),
            spare: Mutex::new(None),
            // Before the module says whether it replicates: room for the
            // host's pool, whose slots are numbered the same.
            stats: Arc::new(FilterStats::with_shards(host.instances())),
            consecutive_faults: AtomicU32::new(0),
            unloaded: AtomicBool::new(false),
            super_frames: AtomicUsize::new(0),
            fault_log: Default::default(),
            spec,
        };
        // Instantiate now so every load-time problem surfaces at load.
        let inst = f.instantiate()?;
        let n = if inst.replicable { host.instances() } else { 1 };
        f.slots = (0..n).map(|_| PaddedSlot::default()).collect();
        *f.spare.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(inst);
        Ok(f)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The slot of the calling thread.
    fn slot_index(&self) -> usize {
        let n = self.slots.len();
        if n == 1 {
            0
        } else {
            // During the thread's own teardown the number may be gone:
            // any slot is correct, its lock serialises.
            THREAD_INDEX.try_with(|i| *i % n).unwrap_or(0)
        }
    }

    /// True while every instance the filter made is live (false between a
    /// fault and its rebuild).
    pub fn is_ready(&self) -> bool {
        self.slots.iter().all(|s| {
            let s = lock(&s.0);
            !s.used || s.inst.is_some()
        })
    }

    /// How many instances are live: at most 1 for a filter without
    /// `CAP_REPLICABLE`; for one with it, one per thread that called it
    /// (up to the host's pool size), less those down after a fault.
    pub fn instances(&self) -> usize {
        let spare = usize::from(lock(&self.spare).is_some());
        spare
            + self
                .slots
                .iter()
                .filter(|s| lock(&s.0).inst.is_some())
                .count()
    }

    /// How many instances this filter may have: 1, or the host's pool size
    /// for a filter declaring `CAP_REPLICABLE`.
    pub fn max_instances(&self) -> usize {
        self.slots.len()
    }

    /// The capture file and its writer, if the filter has one.
    pub(crate) fn capture(&self) -> Option<(PathBuf, CaptureWriter)> {
        Some((self.spec.capture.clone()?, self.capture.clone()?))
    }

    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    pub fn stats(&self) -> &FilterStats {
        &self.stats
    }

    /// Largest frame with offload metadata (spec/protocol.md §3.1) this
    /// filter takes whole; 0 when it did not declare `CAP_SUPER_FRAMES` and
    /// such frames must be finished in software before it sees them.
    pub fn max_super_frame(&self) -> usize {
        self.super_frames.load(Relaxed)
    }

    pub fn is_unloaded(&self) -> bool {
        self.unloaded.load(Relaxed)
    }

    fn load_err(&self, e: wasmtime::Error) -> FilterError {
        FilterError::LoadFault {
            name: self.spec.name.clone(),
            msg: describe_error(&e),
        }
    }

    /// Makes a fresh instance: checks the ABI version, the frame buffer,
    /// and runs `etherws_init` with the configuration.
    fn instantiate(&self) -> Result<Instance, FilterError> {
        let name = self.spec.name.clone();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.spec.memory_bytes)
            .instances(1)
            .memories(1)
            .tables(4)
            .table_elements(100_000)
            .build();
        let mut store = Store::new(
            self.host.engine(),
            HostState {
                limits,
                name: self.name.clone(),
                stats: self.stats.clone(),
                capture: self.capture.clone(),
                started: self.host.started,
                buf_ptr: 0,
                buf_cap: 0,
            },
        );
        store.limiter(|s| &mut s.limits);
        let fuel = self.spec.fuel;
        let arm = |store: &mut Store<HostState>| {
            let _ = store.set_fuel(fuel);
            store.set_epoch_deadline(EPOCH_DEADLINE_TICKS);
        };
        arm(&mut store);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.load_err(e))?;
        let get0 = |store: &mut Store<HostState>, n: &str| -> Result<i32, FilterError> {
            let f = instance
                .get_typed_func::<(), i32>(&mut *store, n)
                .map_err(|e| self.load_err(e))?;
            arm(store);
            f.call(&mut *store, ()).map_err(|e| self.load_err(e))
        };
        let version = get0(&mut store, abi::names::ABI_VERSION)?;
        if version != abi::ABI_VERSION {
            return Err(FilterError::AbiVersion {
                name,
                found: version,
                supported: abi::ABI_VERSION,
            });
        }
        let ptr = get0(&mut store, abi::names::FRAME_BUFFER)? as u32 as usize;
        let cap = get0(&mut store, abi::names::FRAME_CAPACITY)?;
        let memory = instance
            .get_memory(&mut store, abi::names::MEMORY)
            .ok_or_else(|| FilterError::MissingExport {
                name: name.clone(),
                export: abi::names::MEMORY,
                expected: "memory",
            })?;
        let need = self.max_frame + abi::CAPACITY_SLACK as usize;
        if cap < 0 || (cap as usize) < need {
            return Err(FilterError::Buffer {
                name,
                detail: format!(
                    "capacity {cap} < max frame {} + {}",
                    self.max_frame,
                    abi::CAPACITY_SLACK
                ),
            });
        }
        let cap = cap as usize;
        if ptr
            .checked_add(cap)
            .is_none_or(|end| end > memory.data_size(&store))
        {
            return Err(FilterError::Buffer {
                name,
                detail: format!(
                    "buffer {ptr}+{cap} beyond memory of {} bytes",
                    memory.data_size(&store)
                ),
            });
        }
        store.data_mut().buf_ptr = ptr;
        store.data_mut().buf_cap = cap;
        // Optional capabilities; bits this host does not know are ignored.
        let caps = match instance.get_typed_func::<(), i32>(&mut store, abi::names::CAPABILITIES) {
            Ok(_) => get0(&mut store, abi::names::CAPABILITIES)?,
            Err(_) => 0,
        };
        let replicable = caps & abi::CAP_REPLICABLE != 0;
        let whole = if caps & abi::CAP_SUPER_FRAMES != 0 {
            cap
        } else {
            0
        };
        self.super_frames.store(whole, Relaxed);
        let filter = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, abi::names::FILTER)
            .map_err(|e| self.load_err(e))?;
        let config = self.spec.config.as_bytes();
        match instance.get_typed_func::<i32, i32>(&mut store, abi::names::INIT) {
            Ok(init) => {
                if config.len() > cap {
                    return Err(FilterError::Buffer {
                        name,
                        detail: format!("configuration of {} bytes does not fit", config.len()),
                    });
                }
                memory.data_mut(&mut store)[ptr..ptr + config.len()].copy_from_slice(config);
                arm(&mut store);
                let code = init
                    .call(&mut store, config.len() as i32)
                    .map_err(|e| self.load_err(e))?;
                if code != 0 {
                    return Err(FilterError::ConfigRejected {
                        name,
                        config: self.spec.config.clone(),
                        code,
                    });
                }
            }
            Err(_) if !config.is_empty() => {
                return Err(FilterError::ConfigWithoutInit {
                    name,
                    config: self.spec.config.clone(),
                })
            }
            Err(_) => {}
        }
        Ok(Instance {
            store,
            memory,
            filter,
            buf_ptr: ptr,
            buf_cap: cap,
            replicable,
        })
    }

    /// Runs this filter alone on one frame, with its fault policy: the
    /// verdict the frame gets (a rewrite changes `frame`).
    pub fn filter(&self, ctx: &FilterContext, frame: &mut Frame) -> etherws_core::Verdict {
        if self.is_unloaded() {
            return etherws_core::Verdict::Pass;
        }
        match self.run(ctx, frame, None).0 {
            Outcome::Pass => etherws_core::Verdict::Pass,
            Outcome::Drop => etherws_core::Verdict::Drop,
        }
    }

    /// Runs the filter on one frame. Never panics, never fails: faults are
    /// handled here by the fault policy. With `timing`, `started` is when
    /// this filter's turn began and the return carries when it ended (a
    /// timed chain reads the clock once per filter); the time is counted
    /// `TIME_SAMPLE` times, since only one run in that many is timed.
    pub(crate) fn run(
        &self,
        ctx: &FilterContext,
        frame: &mut Frame,
        timing: Option<Instant>,
    ) -> (Outcome, Option<Instant>) {
        let slot = self.slot_index();
        let result = self.call(ctx, frame, slot);
        let ended = timing.map(|started| {
            let now = Instant::now();
            let ns = now.duration_since(started).as_nanos() as u64;
            self.stats.time_ns.fetch_add(ns * TIME_SAMPLE, Relaxed);
            now
        });
        let outcome = match result {
            Ok(o) => {
                // Read first: a store on every call would bounce the line
                // between the threads of a replicable filter.
                if self.consecutive_faults.load(Relaxed) != 0 {
                    self.consecutive_faults.store(0, Relaxed);
                }
                o
            }
            Err(CallError::Fault(cause)) => self.fault(&cause),
            Err(CallError::Bypass) => self.bypass(),
        };
        self.stats.count(slot, outcome);
        (outcome, ended)
    }

    /// Schedules the next rebuild after a fault (the instance is gone).
    fn back_off(&self, slot: &mut Slot) {
        let n = self.consecutive_faults.load(Relaxed) + 1;
        slot.not_before = Some(Instant::now() + rebuild_delay(n));
    }

    /// One call on the instance of slot `index`; the outcome is counted by
    /// the caller, as passed or dropped.
    fn call(
        &self,
        ctx: &FilterContext,
        frame: &mut Frame,
        index: usize,
    ) -> Result<Outcome, CallError> {
        let cell = &self.slots[index].0;
        let mut guard = lock(cell);
        if guard.inst.is_none() && !guard.used {
            // The slot's first call: take the instance made at load, or
            // make one (same module, same configuration). Under the lock:
            // nothing failed, so a thread sharing the slot waits for it as
            // it would for a call, instead of bypassing the filter.
            guard.used = true;
            let spare = lock(&self.spare).take();
            match spare.map_or_else(|| self.instantiate(), Ok) {
                Ok(i) => guard.inst = Some(i),
                Err(e) => {
                    self.back_off(&mut guard);
                    return Err(CallError::Fault(format!("instantiation failed: {e}")));
                }
            }
        }
        if guard.inst.is_none() {
            // Rebuild outside the lock: other ports meanwhile bypass (the
            // fault policy) instead of waiting on a compile-sized task.
            if guard.rebuilding || guard.not_before.is_some_and(|t| Instant::now() < t) {
                return Err(CallError::Bypass);
            }
            guard.rebuilding = true;
            drop(guard);
            let fresh = self.instantiate();
            guard = lock(cell);
            guard.rebuilding = false;
            match fresh {
                Ok(i) => guard.inst = Some(i),
                Err(e) => {
                    self.back_off(&mut guard);
                    return Err(CallError::Fault(format!("re-instantiation failed: {e}")));
                }
            }
        }
        let slot = &mut *guard;
        let Some(inst) = slot.inst.as_mut() else {
            return Err(CallError::Bypass);
        };
        let (ptr, cap) = (inst.buf_ptr, inst.buf_cap);
        let len = frame.len();
        if len > cap {
            return Err(format!("frame of {len} bytes exceeds buffer capacity {cap}").into());
        }
        // The module may have shrunk nothing (memories only grow), but check
        // anyway: the buffer must still lie in memory.
        let data = inst.memory.data_mut(&mut inst.store);
        let Some(buf) = data.get_mut(ptr..ptr + cap) else {
            return Err(CallError::Fault("frame buffer outside memory".into()));
        };
        buf[..len].copy_from_slice(frame.as_ref());
        let _ = inst.store.set_fuel(self.spec.fuel);
        inst.store.set_epoch_deadline(EPOCH_DEADLINE_TICKS);
        let direction = match ctx.direction {
            Direction::Ingress => abi::DIRECTION_INGRESS,
            _ => abi::DIRECTION_EGRESS,
        };
        let kind = match ctx.port_kind {
            PortKind::Tap => abi::PORT_KIND_TAP,
            _ => abi::PORT_KIND_LINK,
        };
        let verdict = match inst.filter.call(
            &mut inst.store,
            (len as i32, direction, ctx.port.0 as i32, kind),
        ) {
            Ok(v) => v,
            Err(e) => {
                // A trapped instance may hold broken state: start afresh,
                // after a back-off if it keeps faulting. Only this one: a
                // replicable filter's other instances keep filtering.
                slot.inst = None;
                self.back_off(slot);
                return Err(CallError::Fault(describe_error(&e)));
            }
        };
        if verdict == abi::VERDICT_DROP {
            return Ok(Outcome::Drop);
        }
        if verdict == abi::VERDICT_PASS {
            return Ok(Outcome::Pass);
        }
        if frame.meta.vnet.is_some() && verdict as usize != len {
            // The offload header (checksum and segment offsets) describes
            // the frame as it came: a rewrite may change bytes, not length.
            return Err(CallError::Fault(format!(
                "verdict {verdict}: a rewrite of a frame with offload metadata must keep its length {len}"
            )));
        }
        // A pass may grow the frame, but never beyond the node's max frame
        // plus one VLAN tag (nor beyond the buffer).
        let limit = if frame.meta.vnet.is_some() {
            len
        } else {
            cap.min(self.max_frame + abi::CAPACITY_SLACK as usize)
        };
        if verdict < abi::MIN_FRAME || verdict as usize > limit {
            return Err(CallError::Fault(format!(
                "verdict {verdict} out of bounds (drop is -1, pass is 0 or {}..={limit})",
                abi::MIN_FRAME
            )));
        }
        let n = verdict as usize;
        let out = &inst.memory.data(&inst.store)[ptr..ptr + n];
        if out != frame.as_ref() {
            frame.set_bytes(Bytes::copy_from_slice(out));
            self.stats.shard(index).rewritten.fetch_add(1, Relaxed);
        }
        Ok(Outcome::Pass)
    }

    /// The policy's outcome for a frame that met no instance (counted as
    /// bypassed here, as passed or dropped by the caller).
    fn bypass(&self) -> Outcome {
        self.stats.bypassed.fetch_add(1, Relaxed);
        if self.spec.on_fault == FaultPolicy::Open {
            Outcome::Pass
        } else {
            Outcome::Drop
        }
    }

    /// The policy's outcome for a frame whose call faulted (counted as a
    /// fault here, as passed or dropped by the caller).
    fn fault(&self, cause: &str) -> Outcome {
        self.stats.faults.fetch_add(1, Relaxed);
        *self
            .stats
            .last_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(cause.to_string());
        let n = self.consecutive_faults.fetch_add(1, Relaxed) + 1;
        let outcome = match self.spec.on_fault {
            FaultPolicy::Open => Outcome::Pass,
            _ => Outcome::Drop,
        };
        if let Some(suppressed) = self.fault_log.check(Instant::now()) {
            log::warn!(
                "filter {}: fault: {cause}; frame {} (on_fault={}), {} faults in all{}",
                self.name,
                if outcome == Outcome::Pass {
                    "passed"
                } else {
                    "dropped"
                },
                if outcome == Outcome::Pass {
                    "open"
                } else {
                    "closed"
                },
                self.stats.faults.load(Relaxed),
                etherws_core::log::suppressed_note(suppressed)
            );
        }
        if let Some(limit) = self.spec.unload_after {
            if n >= limit && !self.unloaded.swap(true, Relaxed) {
                log::error!(
                    "filter {}: unloaded after {n} consecutive faults; frames no longer pass through it",
                    self.name
                );
            }
        }
        outcome
    }
}

/// One line for a wasmtime error: the trap kind when there is one.
fn describe_error(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => "fuel budget exhausted (trap: out of fuel)".into(),
        Some(wasmtime::Trap::Interrupt) => "wall-clock deadline exceeded (epoch interrupt)".into(),
        // Display already says "wasm trap: ...".
        Some(t) => t.to_string(),
        None => format!("{e:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}
