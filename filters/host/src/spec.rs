//! Parsing a filter spec: `FILE[:key=value,key=value...]`. Host-reserved keys
//! (spec/filter-abi.md §6) are taken out; the rest is the filter's config.

use std::path::PathBuf;

use crate::FilterError;

/// What a faulting frame gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPolicy {
    /// Drop the frame (default): a crash cannot bypass a security filter.
    Closed,
    /// Pass the frame unchanged.
    Open,
}

/// Default fuel per call: a quarter of a million wasm operations, far more
/// than a frame filter needs (the library's largest, tagging a 64 KiB
/// frame, uses about 66,000) and cut in well under a millisecond.
pub const DEFAULT_FUEL: u64 = 250_000;
/// Default memory cap per instance.
pub const DEFAULT_MEMORY_MB: usize = 16;

/// One filter as given on the command line.
#[derive(Clone, Debug)]
pub struct FilterSpec {
    pub path: PathBuf,
    pub name: String,
    /// The configuration string passed to `etherws_init`.
    pub config: String,
    pub on_fault: FaultPolicy,
    pub unload_after: Option<u32>,
    pub fuel: u64,
    pub memory_bytes: usize,
    pub capture: Option<PathBuf>,
}

impl FilterSpec {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path.file_stem().map_or_else(
            || "filter".to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        FilterSpec {
            path,
            name,
            config: String::new(),
            on_fault: FaultPolicy::Closed,
            unload_after: None,
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_MB << 20,
            capture: None,
        }
    }

    /// Parses `FILE[:key=value,...]`. The file part ends at the first `:`
    /// if an `=` follows it anywhere; otherwise the whole string is the file.
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        let bad = |m: String| FilterError::BadSpec(format!("{s:?}: {m}"));
        let (file, opts) = match s.find(':') {
            Some(i) if s[i + 1..].contains('=') => (&s[..i], &s[i + 1..]),
            _ => (s, ""),
        };
        if file.is_empty() {
            return Err(bad("no file".into()));
        }
        let mut spec = FilterSpec::new(file);
        let mut config = Vec::new();
        for kv in opts.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad(format!("{kv:?} is not key=value")))?;
            let num = |v: &str| -> Result<u64, FilterError> {
                v.parse().map_err(|_| bad(format!("{k}={v}: not a number")))
            };
            match k {
                "name" => spec.name = v.to_string(),
                "on_fault" => {
                    spec.on_fault = match v {
                        "closed" => FaultPolicy::Closed,
                        "open" => FaultPolicy::Open,
                        _ => return Err(bad(format!("on_fault={v}: expected closed or open"))),
                    }
                }
                "unload_after" => {
                    let n =
                        u32::try_from(num(v)?).map_err(|_| bad(format!("{k}={v}: too large")))?;
                    spec.unload_after = Some(n.max(1));
                }
                "fuel" => spec.fuel = num(v)?.max(1),
                "memory_mb" => {
                    spec.memory_bytes = usize::try_from(num(v)?)
                        .ok()
                        .filter(|mb| *mb <= 4096)
                        .map(|mb| mb.max(1) << 20)
                        .ok_or_else(|| bad(format!("{k}={v}: at most 4096 (4 GiB)")))?;
                }
                "capture" => spec.capture = Some(PathBuf::from(v)),
                _ => config.push(kv),
            }
        }
        spec.config = config.join(",");
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_host_keys_and_config() {
        let s =
            FilterSpec::parse("/x/ethertype.wasm:drop=0x0806,on_fault=open,fuel=500,b=2").unwrap();
        assert_eq!(s.path, PathBuf::from("/x/ethertype.wasm"));
        assert_eq!(s.name, "ethertype");
        assert_eq!(s.config, "drop=0x0806,b=2");
        assert_eq!(s.on_fault, FaultPolicy::Open);
        assert_eq!(s.fuel, 500);
        let s = FilterSpec::parse("f.wat").unwrap();
        assert_eq!(s.config, "");
        assert_eq!(s.on_fault, FaultPolicy::Closed);
        assert!(FilterSpec::parse("f.wat:on_fault=maybe").is_err());
        assert!(FilterSpec::parse(":a=b").is_err());
        assert!(FilterSpec::parse("f.wat:unload_after=4294967296").is_err());
        assert!(FilterSpec::parse("f.wat:memory_mb=99999999999999").is_err());
    }
}
