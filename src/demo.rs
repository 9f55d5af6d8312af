//! `etherws demo`: a self-contained tunnel between three network namespaces.
//!
//! ```text
//!   ns a (client A)            ns srv (server)             ns b (client B)
//!   va 198.18.0.2/30 ───veth─── vs-a 198.18.0.1/30
//!                               vs-b 198.18.0.5/30 ───veth─── vb 198.18.0.6/30
//!   ethws0 198.19.0.2/24        ethws0 198.19.0.1/24         ethws0 198.19.0.3/24
//! ```
//!
//! Everything lives in namespaces the demo creates (198.18.0.0/15 only, no
//! route out) and is torn down at the end, on failure and on Ctrl-C.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::DemoArgs;

const SERVER_TAP: &str = "198.19.0.1";
const CLIENT_A_TAP: &str = "198.19.0.2";
const CLIENT_B_TAP: &str = "198.19.0.3";

#[derive(Default)]
struct Resources {
    children: Vec<(String, Child)>,
    namespaces: Vec<String>,
}

impl Resources {
    fn teardown(&mut self) {
        for (_, c) in &self.children {
            // SAFETY: plain kill(2) on a PID we started and have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for (_, c) in &mut self.children {
            wait_or_kill(c, Duration::from_secs(5));
        }
        self.children.clear();
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn wait_or_kill(c: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = c.kill();
            return c.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Demo {
    res: Arc<Mutex<Resources>>,
    exe: PathBuf,
    logs: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.res
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .teardown();
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| "running `ip` (install iproute2)".to_string())?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Demo {
    fn netns(&self, name: &str) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.res.lock().unwrap().namespaces.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// Starts this binary inside `ns`, logging to `<logs>/<label>.log`.
    fn spawn(&self, label: &str, ns: &str, args: &[&str]) -> Result<()> {
        let log = File::create(self.logs.join(format!("{label}.log")))?;
        let out = File::create(self.logs.join(format!("{label}.out")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&self.exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {label}"))?;
        self.res
            .lock()
            .unwrap()
            .children
            .push((label.to_string(), child));
        Ok(())
    }

    /// Runs `etherws ping` in `ns`; returns its summary line.
    fn ping(&self, ns: &str, target: &str) -> Result<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&self.exe)
            .args(["ping", target, "--count", "5", "--wait", "30"])
            .output()
            .context("running ping")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "ping {target} from {ns} failed: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(text.lines().last().unwrap_or_default().trim().to_string())
    }

    /// Stops the server with SIGTERM and returns its final report.
    fn stop_server(&self) -> Result<String> {
        let mut res = self.res.lock().unwrap();
        let (_, child) = res
            .children
            .iter_mut()
            .find(|(l, _)| l == "server")
            .context("server not running")?;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_or_kill(child, Duration::from_secs(10));
        // The report is the log's last lines, after `report of ...`.
        let log = std::fs::read_to_string(self.logs.join("server.log")).unwrap_or_default();
        Ok(log
            .rfind("report of ")
            .map_or(String::new(), |i| log[i..].to_string()))
    }
}

fn show_logs(dir: &Path) {
    for label in ["server", "client-a", "client-b"] {
        if let Ok(s) = std::fs::read_to_string(dir.join(format!("{label}.log"))) {
            eprintln!("--- {label} log (last lines) ---");
            let lines: Vec<&str> = s.lines().collect();
            for l in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{l}");
            }
        }
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and TAP devices: run it as root");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        bail!("the demo needs the `ip` command: apt-get install -y iproute2");
    }
    let pid = std::process::id();
    let (logs, keep_logs) = match args.log_dir {
        Some(d) => (d, true),
        None => (
            std::env::temp_dir().join(format!("etherws-demo-{pid}")),
            false,
        ),
    };
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let res = Arc::new(Mutex::new(Resources::default()));
    {
        // Ctrl-C / SIGTERM: tear down, then exit.
        let res = res.clone();
        let mut sigs = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])?;
        std::thread::spawn(move || {
            if sigs.forever().next().is_some() {
                eprintln!("etherws demo: interrupted, cleaning up");
                res.lock().unwrap_or_else(|e| e.into_inner()).teardown();
                std::process::exit(130);
            }
        });
    }
    let demo = Demo {
        res,
        exe: std::env::current_exe().context("locating the etherws binary")?,
        logs: logs.clone(),
    };
    let result = run_demo(&demo, pid);
    drop(demo);
    match &result {
        Ok(()) if !keep_logs => {
            let _ = std::fs::remove_dir_all(&logs);
        }
        Ok(()) => {}
        Err(_) => {
            show_logs(&logs);
            eprintln!("logs kept in {}", logs.display());
        }
    }
    result
}

fn run_demo(d: &Demo, pid: u32) -> Result<()> {
    let t0 = Instant::now();
    let srv = format!("ethws-demo-{pid}-srv");
    let a = format!("ethws-demo-{pid}-a");
    let b = format!("ethws-demo-{pid}-b");
    println!("etherws demo: one server and two clients in network namespaces");
    println!(
        "[1/4] underlay: {srv} <-veth-> {a}, {srv} <-veth-> {b} (198.18.0.0/30, 198.18.0.4/30)"
    );
    for ns in [&srv, &a, &b] {
        d.netns(ns)?;
    }
    ip(&[
        "link", "add", "vs-a", "netns", &srv, "type", "veth", "peer", "name", "va", "netns", &a,
    ])?;
    ip(&[
        "link", "add", "vs-b", "netns", &srv, "type", "veth", "peer", "name", "vb", "netns", &b,
    ])?;
    for (ns, dev, addr) in [
        (&srv, "vs-a", "198.18.0.1/30"),
        (&a, "va", "198.18.0.2/30"),
        (&srv, "vs-b", "198.18.0.5/30"),
        (&b, "vb", "198.18.0.6/30"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }

    println!("[2/4] tunnel: server on :8080 (TAP {SERVER_TAP}/24), clients A ({CLIENT_A_TAP}) and B ({CLIENT_B_TAP})");
    let tap_addr = |ip: &str| format!("{ip}/24");
    d.spawn(
        "server",
        &srv,
        &[
            "server",
            "--listen",
            "0.0.0.0:8080",
            "--tap",
            "ethws0",
            "--address",
            &tap_addr(SERVER_TAP),
            // The demo's nodes share the host's /run: none takes the
            // default control socket of a real node.
            "--no-control",
        ],
    )?;
    d.spawn(
        "client-a",
        &a,
        &[
            "client",
            "ws://198.18.0.1:8080/",
            "--tap",
            "ethws0",
            "--address",
            &tap_addr(CLIENT_A_TAP),
            "--no-control",
        ],
    )?;
    d.spawn(
        "client-b",
        &b,
        &[
            "client",
            "ws://198.18.0.5:8080/",
            "--tap",
            "ethws0",
            "--address",
            &tap_addr(CLIENT_B_TAP),
            "--no-control",
        ],
    )?;

    println!("[3/4] ping through the tunnel");
    let to_server = d.ping(&a, SERVER_TAP)?;
    println!("      client A -> server   {SERVER_TAP}: {to_server}");
    let to_b = d.ping(&a, CLIENT_B_TAP)?;
    println!("      client A -> client B {CLIENT_B_TAP}: {to_b} (via the server's switch)");
    let b_to_a = d.ping(&b, CLIENT_A_TAP)?;
    println!("      client B -> client A {CLIENT_A_TAP}: {b_to_a}");

    let report = d.stop_server()?;
    let switched = report
        .lines()
        .find_map(|l| l.strip_prefix("frames switched: "))
        .unwrap_or("?")
        .to_string();
    let learned = report
        .lines()
        .find_map(|l| l.strip_prefix("fdb: "))
        .unwrap_or("?")
        .to_string();
    println!("[4/4] summary");
    println!("      server switched {switched} frames; forwarding table: {learned}");
    println!(
        "      client A -> client B rtt: {}",
        to_b.rsplit("= ").next().unwrap_or(&to_b)
    );
    println!(
        "      done in {:.1} s; cleaning up",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
