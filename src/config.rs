//! `--config FILE`: a TOML file that says what the command line says.
//!
//! Its keys are the long flags of the command (`listen`, `tls-cert`,
//! `htpasswd`, `tap`...), with their values: a string or number, `true`
//! for a flag without a value, an array for a flag given several times
//! (`listen = ["0.0.0.0:443", "quic://0.0.0.0:443"]`). A client's server
//! URLs are `urls = [...]`. `role = "server"` (or `client`, `stdio`)
//! names the command, for `etherws check-config FILE`. The file is read
//! before the command line is parsed and becomes arguments in front of
//! it, so it takes every flag clap knows, with clap's own checks; a flag
//! given on the command line replaces the file's (a list too), and URLs
//! on the command line replace the file's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// The commands a file may configure.
const ROLES: [&str; 3] = ["server", "client", "stdio"];

/// A file read: its role (if it says) and its arguments, by key.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub path: PathBuf,
    pub role: Option<String>,
    /// Key → the values it stands for (`[]` for a flag set to true).
    pub keys: BTreeMap<String, Vec<String>>,
}

/// Reads and checks a config file against `role`'s flags.
pub fn read(path: &Path, role: Option<&str>) -> Result<File> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))
        .with_context(|| format!("config file {}", path.display()))?;
    let file_role = match table.get("role") {
        Some(toml::Value::String(r)) if ROLES.contains(&r.as_str()) => Some(r.clone()),
        Some(other) => bail!(
            "config file {}: role = {other} is not \"server\", \"client\" or \"stdio\"",
            path.display()
        ),
        None => None,
    };
    if let (Some(a), Some(b)) = (role, &file_role) {
        if a != b {
            bail!(
                "config file {} is for `etherws {b}`, not `etherws {a}`",
                path.display()
            );
        }
    }
    let role = role
        .map(str::to_string)
        .or(file_role.clone())
        .with_context(|| {
            format!(
                "config file {}: say which command it is for (role = \"server\" in it, or \
                 etherws check-config server --config FILE)",
                path.display()
            )
        })?;
    let flags = flags_of(&role);
    let mut keys = BTreeMap::new();
    for (k, v) in &table {
        if k == "role" {
            continue;
        }
        let known = k == "urls" && role == "client" || flags.iter().any(|f| f.long == *k);
        if !known || k == "config" {
            bail!(
                "config file {}: unknown key `{k}` (the keys are the long flags of `etherws {role}`, \
                 e.g. {})",
                path.display(),
                flags
                    .iter()
                    .take(4)
                    .map(|f| f.long.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let scalar = |v: &toml::Value| -> Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!(
                    "config file {}: `{k}` = {other}: a string, number or list of them is expected",
                    path.display()
                ),
            })
        };
        let values = match v {
            toml::Value::Boolean(true) if !takes_value(&flags, k) => Vec::new(),
            toml::Value::Boolean(false) if !takes_value(&flags, k) => continue,
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<_>>()?,
            other => vec![scalar(other)?],
        };
        keys.insert(k.clone(), values);
    }
    Ok(File {
        path: path.to_path_buf(),
        role: Some(role),
        keys,
    })
}

/// One flag of a command, as clap knows it.
struct Flag {
    long: String,
    short: Option<char>,
    takes_value: bool,
}

fn flags_of(role: &str) -> Vec<Flag> {
    let cmd = Cli::command();
    let Some(sub) = cmd.find_subcommand(role) else {
        return Vec::new();
    };
    sub.get_arguments()
        .chain(cmd.get_arguments())
        .filter_map(|a| {
            Some(Flag {
                long: a.get_long()?.to_string(),
                short: a.get_short(),
                takes_value: a.get_action().takes_values(),
            })
        })
        .collect()
}

fn takes_value(flags: &[Flag], key: &str) -> bool {
    flags.iter().any(|f| f.long == key && f.takes_value)
}

/// What the command line (after the subcommand) gives: the long flags
/// used, and whether it has positional arguments.
fn given(flags: &[Flag], args: &[OsString]) -> (Vec<String>, bool) {
    let mut longs = Vec::new();
    let mut positional = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--" {
            positional |= i + 1 < args.len();
            break;
        }
        if let Some(rest) = a.strip_prefix("--") {
            let (name, inline) = match rest.split_once('=') {
                Some((n, _)) => (n, true),
                None => (rest, false),
            };
            longs.push(name.to_string());
            if !inline && flags.iter().any(|f| f.long == name && f.takes_value) {
                i += 1;
            }
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-H 'X: y'` or `-Hvalue`; `-vv`.
            let c = shorts.chars().next().unwrap_or('-');
            if let Some(f) = flags.iter().find(|f| f.short == Some(c)) {
                longs.push(f.long.clone());
                if f.takes_value && shorts.len() == 1 {
                    i += 1;
                }
            }
        } else {
            positional = true;
        }
        i += 1;
    }
    (longs, positional)
}

/// The arguments with a `--config FILE` expanded in front of the command
/// line's own (which win). Unchanged without `--config`.
pub fn expand(args: Vec<OsString>) -> Result<(Vec<OsString>, Option<File>)> {
    // The subcommand: the first argument that names one.
    let Some(at) = args
        .iter()
        .position(|a| ROLES.contains(&a.to_string_lossy().as_ref()))
    else {
        return Ok((args, None));
    };
    let role = args[at].to_string_lossy().into_owned();
    let rest = &args[at + 1..];
    let mut path = None;
    for (i, a) in rest.iter().enumerate() {
        let a = a.to_string_lossy();
        if a == "--config" {
            path = rest.get(i + 1).map(PathBuf::from);
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(PathBuf::from(p));
        }
    }
    let Some(path) = path else {
        return Ok((args, None));
    };
    let file = read(&path, Some(&role))?;
    let flags = flags_of(&role);
    let (longs, positional) = given(&flags, rest);
    let mut out: Vec<OsString> = args[..=at].to_vec();
    for (k, values) in &file.keys {
        if k == "urls" {
            if !positional {
                out.extend(values.iter().map(OsString::from));
            }
            continue;
        }
        if longs.contains(k) {
            continue;
        }
        if values.is_empty() {
            out.push(format!("--{k}").into());
        }
        for v in values {
            out.push(format!("--{k}").into());
            out.push(v.into());
        }
    }
    out.extend_from_slice(rest);
    Ok((out, Some(file)))
}

static LOADED: std::sync::OnceLock<File> = std::sync::OnceLock::new();

/// Keeps the file the node started from, for SIGHUP.
pub fn remember(file: Option<File>) {
    if let Some(f) = file {
        let _ = LOADED.set(f);
    }
}

/// The file the node started from, if any.
pub fn loaded() -> Option<&'static File> {
    LOADED.get()
}

/// SIGHUP: the keys of the file that changed since it was read (they take
/// effect at the next restart; certificates, the htpasswd file and the
/// filters themselves are re-read by the reload either way).
pub fn changed(file: &File) -> Result<Vec<String>> {
    let now = read(&file.path, file.role.as_deref())?;
    let mut keys: Vec<String> = now
        .keys
        .iter()
        .filter(|(k, v)| file.keys.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(
        file.keys
            .keys()
            .filter(|k| !now.keys.contains_key(*k))
            .cloned(),
    );
    keys.sort();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "etherws-config-{}-{}.toml",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_file_becomes_arguments_the_command_line_overrides() {
        let p = tmp(r#"
            role = "server"
            listen = ["0.0.0.0:8443", "quic://0.0.0.0:8443"]
            tap = "ethws7"
            mtu = 9000
            hub = true
            no-offload = false
        "#);
        let ps = p.to_str().unwrap();
        let (args, file) = expand(os(&[
            "etherws", "-v", "server", "--config", ps, "--tap", "x",
        ]))
        .unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(file.unwrap().role.as_deref(), Some("server"));
        assert!(
            args.windows(2).any(|w| w == ["--listen", "0.0.0.0:8443"]),
            "{args:?}"
        );
        assert!(args
            .windows(2)
            .any(|w| w == ["--listen", "quic://0.0.0.0:8443"]));
        assert!(args.windows(2).any(|w| w == ["--mtu", "9000"]));
        assert!(args.contains(&"--hub".to_string()));
        assert!(!args.contains(&"--no-offload".to_string()));
        // The command line's --tap replaced the file's.
        assert!(!args.contains(&"ethws7".to_string()));
        assert_eq!(args.iter().filter(|a| *a == "--tap").count(), 1);
        // It parses as clap would parse the same flags.
        use clap::Parser;
        assert!(Cli::try_parse_from(&args).is_ok(), "{args:?}");
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn client_urls_and_mistakes() {
        let p = tmp("urls = [\"ws://198.18.0.1:8080/\"]\nuser = \"alice\"\n");
        let ps = p.to_str().unwrap();
        let (args, _) = expand(os(&["etherws", "client", "--config", ps])).unwrap();
        assert!(args.iter().any(|a| a == "ws://198.18.0.1:8080/"));
        let (args, _) = expand(os(&[
            "etherws",
            "client",
            "--config",
            ps,
            "ws://198.18.9.9/",
        ]))
        .unwrap();
        assert!(
            !args.iter().any(|a| a == "ws://198.18.0.1:8080/"),
            "the command line's URL wins"
        );
        let e = expand(os(&["etherws", "server", "--config", ps]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `urls`"), "{e}");
        let bad = tmp("lisen = \"0.0.0.0:1\"\n");
        let e = read(&bad, Some("server")).unwrap_err().to_string();
        assert!(e.contains("unknown key `lisen`"), "{e}");
        let broken = tmp("listen = [\n");
        assert!(read(&broken, Some("server")).is_err());
        let wrong = tmp("role = \"client\"\n");
        let e = read(&wrong, Some("server")).unwrap_err().to_string();
        assert!(e.contains("is for `etherws client`"), "{e}");
        for f in [p, bad, broken, wrong] {
            let _ = std::fs::remove_file(f);
        }
    }
}
