//! The commands that talk to running nodes (`status`, `fdb`, `ctl`) and
//! `passwd`, which edits an htpasswd file.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::{CtlAction, CtlArgs, NodeTarget, PasswdArgs, PortAction, StatusArgs};
use crate::control;
use crate::status::Snapshot;

fn sockets(t: &NodeTarget) -> Result<Vec<std::path::PathBuf>> {
    control::resolve(t.control.as_deref(), t.node.as_deref())
}

/// `etherws status`: every node running here, or the one named.
pub fn status(a: &StatusArgs) -> Result<()> {
    let mut snaps = Vec::new();
    for p in sockets(&a.target)? {
        let v = control::call(&p, "status", Value::Null)?;
        let s: Snapshot = serde_json::from_value(v).context("the node's status")?;
        snaps.push(s);
    }
    if a.json {
        let out = if snaps.len() == 1 {
            serde_json::to_string_pretty(&snaps[0])?
        } else {
            serde_json::to_string_pretty(&snaps)?
        };
        println!("{out}");
    } else {
        let texts: Vec<String> = snaps.iter().map(Snapshot::human).collect();
        print!("{}", texts.join("\n"));
    }
    Ok(())
}

/// `etherws fdb`.
pub fn fdb(a: &StatusArgs) -> Result<()> {
    for p in sockets(&a.target)? {
        let v = control::call(&p, "status", Value::Null)?;
        let s: Snapshot = serde_json::from_value(v).context("the node's status")?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&s.fdb)?);
        } else {
            print!("{}", s.fdb_table());
        }
    }
    Ok(())
}

/// `etherws ctl`.
pub fn ctl(a: &CtlArgs) -> Result<()> {
    let socks = sockets(&a.target)?;
    if socks.len() != 1 {
        bail!(
            "{} nodes are running here: say which with --node NAME or --control PATH",
            socks.len()
        );
    }
    let (method, params) = match &a.action {
        CtlAction::Kick { target } => ("kick", json!({ "target": target })),
        CtlAction::Reload => ("reload", Value::Null),
        CtlAction::Port {
            action: PortAction::Add { url },
        } => ("port.add", json!({ "url": url.as_str() })),
        CtlAction::Port {
            action: PortAction::Del { port },
        } => ("port.del", json!({ "port": port })),
    };
    let r = control::call(&socks[0], method, params)?;
    match &a.action {
        CtlAction::Kick { target } => {
            let ports: Vec<String> = r["ended"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p.to_string())
                .collect();
            println!("{target}: ended port {}", ports.join(", "));
        }
        CtlAction::Reload => {
            for l in r["lines"].as_array().into_iter().flatten() {
                println!("{}", l.as_str().unwrap_or_default());
            }
        }
        CtlAction::Port {
            action: PortAction::Add { url },
        } => println!("dialing {url} (dialer {})", r["dialer"]),
        CtlAction::Port {
            action: PortAction::Del { port },
        } => println!("port {port} ended"),
    }
    Ok(())
}

/// `etherws passwd FILE USER`: adds or changes (or with -D removes) a
/// bcrypt line, keeping every other line as it was; the file is replaced
/// atomically and stays private.
pub fn passwd(a: &PasswdArgs) -> Result<()> {
    let old = match std::fs::read_to_string(&a.file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", a.file.display())),
    };
    let mut lines: Vec<String> = old.lines().map(str::to_string).collect();
    let pos = lines
        .iter()
        .position(|l| l.split_once(':').is_some_and(|(u, _)| u == a.user));
    if a.delete {
        let Some(i) = pos else {
            bail!("{}: no user {}", a.file.display(), a.user);
        };
        lines.remove(i);
    } else {
        let password = password(a)?;
        if password.is_empty() {
            bail!("an empty password");
        }
        let line = etherws_auth::htpasswd::bcrypt_line(&a.user, &password, a.cost)
            .map_err(anyhow::Error::msg)?;
        match pos {
            Some(i) => lines[i] = line,
            None => lines.push(line),
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    // The result must load: refuse to write a file the server would not.
    etherws_auth::htpasswd::parse(&a.file, &text).context("the file would not be valid")?;
    let dir = a
        .file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        a.file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("htpasswd"),
        std::process::id()
    ));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mode = std::fs::metadata(&a.file)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap_or(0o600);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &a.file)
        .with_context(|| format!("cannot replace {}", a.file.display()))?;
    let what = match (a.delete, pos) {
        (true, _) => "removed",
        (false, Some(_)) => "changed",
        (false, None) => "added",
    };
    eprintln!("{}: user {} {what}", a.file.display(), a.user);
    Ok(())
}

fn password(a: &PasswdArgs) -> Result<String> {
    if let Some(f) = &a.password_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --password-file {}", f.display()))?;
        return Ok(t.lines().next().unwrap_or("").to_string());
    }
    if let Ok(p) = std::env::var("ETHERWS_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: give --password-file FILE or $ETHERWS_PASSWORD, or run on a terminal");
    }
    let p = rpassword::prompt_password(format!("New password for {}: ", a.user))?;
    let again = rpassword::prompt_password("Again: ")?;
    if p != again {
        bail!("the passwords differ");
    }
    Ok(p)
}
