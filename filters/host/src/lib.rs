//! etherws WASM filter host, on wasmtime.
//!
//! Loads filter modules (`.wasm` or `.wat`), checks them against the ABI in
//! `spec/filter-abi.md` before running anything, and runs one call per frame
//! under a fuel budget, an epoch deadline and a memory cap. A fault (trap,
//! budget overrun, bad verdict) never reaches the node: it is logged,
//! counted and handled by the filter's fault policy. Each module is compiled
//! once; its instance is reused for every frame and replaced only after a
//! fault. A module declaring `CAP_REPLICABLE` gets one instance per calling
//! thread (up to [`Host::with_instances`]), so threads do not queue on it.

mod chain;
mod filter;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod imports;
mod spec;

pub use chain::{Chain, ChainSpec};
pub use filter::{Filter, FilterStats};
pub use spec::{FaultPolicy, FilterSpec, DEFAULT_FUEL, DEFAULT_MEMORY_MB};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Why a filter could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    #[error("bad filter spec {0}")]
    BadSpec(String),
    #[error("filter {name}: reading {path}: {error}")]
    Io {
        name: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("filter {name}: not a valid WebAssembly module: {msg}")]
    Compile { name: String, msg: String },
    #[error("filter {name}: missing required export `{export}` ({expected})")]
    MissingExport {
        name: String,
        export: &'static str,
        expected: &'static str,
    },
    #[error(
        "filter {name}: export `{export}` has the wrong type: expected {expected}, found {found}"
    )]
    WrongExportType {
        name: String,
        export: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("filter {name}: imports `{module}::{import}`, which the host does not offer (the host offers only etherws::{{log, now_ns, counter_define, counter_add, capture}})")]
    UnknownImport {
        name: String,
        module: String,
        import: String,
    },
    #[error(
        "filter {name}: speaks filter ABI version {found}; this host supports version {supported}"
    )]
    AbiVersion {
        name: String,
        found: i32,
        supported: i32,
    },
    #[error("filter {name}: frame buffer too small or out of memory bounds: {detail}")]
    Buffer { name: String, detail: String },
    #[error("filter {name}: rejected its configuration {config:?} (code {code})")]
    ConfigRejected {
        name: String,
        config: String,
        code: i32,
    },
    #[error(
        "filter {name}: configuration {config:?} given, but the module exports no etherws_init"
    )]
    ConfigWithoutInit { name: String, config: String },
    #[error("filter {name}: faulted while loading: {msg}")]
    LoadFault { name: String, msg: String },
    #[error("filter {name}: capture file {path}: {error}")]
    Capture {
        name: String,
        path: PathBuf,
        error: String,
    },
}

/// How often the epoch advances, and the per-call wall-clock deadline in
/// ticks: 10 ms × 10 = 100 ms.
const EPOCH_TICK: Duration = Duration::from_millis(10);
const EPOCH_DEADLINE_TICKS: u64 = 10;

/// Most instances of one replicable filter: a bound on the memory a filter
/// may take (each instance has its own linear memory, up to its cap),
/// whatever the machine's core count or the thread count asked for.
pub const MAX_INSTANCES: usize = 64;

/// A wasmtime engine configured for filters (fuel, epochs), with its epoch
/// ticker thread. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    engine: wasmtime::Engine,
    started: Instant,
    instances: usize,
    _ticker: Arc<Ticker>,
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Host {
    /// A host whose replicable filters get up to one instance per core
    /// (see [`Host::with_instances`]).
    pub fn new() -> Result<Host, FilterError> {
        let mut cfg = wasmtime::Config::new();
        cfg.consume_fuel(true).epoch_interruption(true);
        let engine = wasmtime::Engine::new(&cfg).map_err(|e| FilterError::Compile {
            name: "(engine)".into(),
            msg: e.to_string(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let weak: Weak<AtomicBool> = Arc::downgrade(&stop);
        let e = engine.clone();
        std::thread::Builder::new()
            .name("etherws-filter-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(s) if !s.load(Ordering::Relaxed) => e.increment_epoch(),
                    _ => break,
                }
            })
            .map_err(|e| FilterError::LoadFault {
                name: "(engine)".into(),
                msg: e.to_string(),
            })?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Host {
            engine,
            started: Instant::now(),
            instances: cores.min(MAX_INSTANCES),
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// Sets how many instances a filter declaring `CAP_REPLICABLE` may
    /// have (clamped to `1..=`[`MAX_INSTANCES`]): the number of threads
    /// that call the filters, so each has an instance of its own and none
    /// waits for another's call. Filters loaded afterwards use it; an
    /// instance is made on a thread's first call, so a node with fewer
    /// threads pays for fewer. Default: the number of cores.
    pub fn with_instances(mut self, n: usize) -> Host {
        self.instances = n.clamp(1, MAX_INSTANCES);
        self
    }

    /// Most instances of one replicable filter (see [`Host::with_instances`]).
    pub fn instances(&self) -> usize {
        self.instances
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Loads one filter for a node whose largest frame is `max_frame`.
    pub fn load(&self, spec: &FilterSpec, max_frame: usize) -> Result<Filter, FilterError> {
        Filter::load(self, spec.clone(), max_frame, &Default::default())
    }

    /// Loads one filter from module bytes (binary wasm or wat text) instead
    /// of a file, with the host's default options: for programs that embed
    /// their filters, and for fuzzing the loader.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        config: &str,
        max_frame: usize,
    ) -> Result<Filter, FilterError> {
        let mut spec = FilterSpec::new(format!("{name}.wasm"));
        spec.name = name.to_string();
        spec.config = config.to_string();
        Filter::from_bytes(self, spec, bytes, max_frame, &Default::default())
    }
}
