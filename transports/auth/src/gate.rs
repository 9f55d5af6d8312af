//! The server's authentication policy as one object every transport with
//! per-user identity asks: who may make a link, how fast a guesser may
//! try, and which links end when their user is removed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backoff::FailureBackoff;
use crate::htpasswd::{AuthError, Htpasswd, Refreshed};

/// Why a login was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denied {
    /// The address has failed logins and another of its attempts is
    /// being checked: one at a time (HTTP 429).
    Throttled,
    /// No credentials, an unknown user or a wrong password (HTTP 401).
    /// `user`: the name tried, if any.
    Unauthorized { user: Option<String> },
}

impl Denied {
    /// The HTTP status that says it (the QUIC close code too).
    pub fn status(&self) -> u16 {
        match self {
            Denied::Throttled => 429,
            Denied::Unauthorized { .. } => 401,
        }
    }

    /// The line for the log and the refusal's body.
    pub fn detail(&self) -> String {
        match self {
            Denied::Throttled => "failed logins from this address: one attempt at a time".into(),
            Denied::Unauthorized { user: Some(u) } => {
                format!("authentication failed for user {u:?}")
            }
            Denied::Unauthorized { user: None } => "authentication required".into(),
        }
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail())
    }
}

/// A link of an authenticated user, as the gate sees it: it can tell
/// whether it is still up and be ended (a WebSocket Close 1008, a QUIC
/// CONNECTION_CLOSE) when its user is removed.
pub trait Revocable: Send + Sync {
    fn is_alive(&self) -> bool;
    /// Ends the link because its credentials were revoked; false if it had
    /// ended already.
    fn revoke(&self) -> bool;
}

/// What the gate counted.
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Logins refused for missing or wrong credentials.
    pub failures: AtomicU64,
    /// Attempts refused at once (one at a time from a suspect address).
    pub throttled: AtomicU64,
    /// Attempts that waited before their check (back-off).
    pub delayed: AtomicU64,
    /// Logins that succeeded.
    pub successes: AtomicU64,
    /// Links ended because their user left the file.
    pub revoked: AtomicU64,
}

impl AuthStats {
    /// (name, counter) pairs, for reports.
    pub fn counters(&self) -> [(&'static str, &AtomicU64); 5] {
        [
            ("auth failures", &self.failures),
            ("auth attempts refused (one at a time)", &self.throttled),
            ("auth attempts slowed (back-off)", &self.delayed),
            ("auth successes", &self.successes),
            ("links closed (user removed)", &self.revoked),
        ]
    }
}

/// The server's authentication policy: open (no `--htpasswd`), or users
/// from an htpasswd file with back-off per address. One gate serves every
/// listener, so an address's failures on ws:// count on quic:// too.
/// Cheap to share (`Arc`).
pub struct Gate {
    file: Option<Htpasswd>,
    backoff: FailureBackoff,
    sessions: Mutex<Vec<(String, Box<dyn Revocable>)>>,
    stats: AuthStats,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("file", &self.file).finish()
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::open()
    }
}

impl Gate {
    /// No authentication: everyone is let in, credentials are ignored.
    pub fn open() -> Gate {
        Gate {
            file: None,
            backoff: FailureBackoff::default(),
            sessions: Mutex::default(),
            stats: AuthStats::default(),
        }
    }

    /// Users from this htpasswd file.
    pub fn with_htpasswd(file: Htpasswd) -> Gate {
        Gate {
            file: Some(file),
            ..Gate::open()
        }
    }

    /// Whether links need credentials.
    pub fn requires_auth(&self) -> bool {
        self.file.is_some()
    }

    pub fn htpasswd(&self) -> Option<&Htpasswd> {
        self.file.as_ref()
    }

    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// Checks a login from `ip`: `Ok(Some(user))` for a user of the file,
    /// `Ok(None)` when the gate is open. A suspect address waits its
    /// back-off first; a failure is answered no sooner than the file's
    /// slowest check takes, whatever the name (see `htpasswd`).
    pub async fn check(
        self: &Arc<Self>,
        ip: IpAddr,
        creds: Option<(String, String)>,
    ) -> Result<Option<String>, Denied> {
        if self.file.is_none() {
            return Ok(None);
        }
        let Some(attempt) = self.backoff.begin(ip, Instant::now()) else {
            self.stats.throttled.fetch_add(1, Relaxed);
            return Err(Denied::Throttled);
        };
        if !attempt.delay.is_zero() {
            self.stats.delayed.fetch_add(1, Relaxed);
            async_io::Timer::after(attempt.delay).await;
        }
        let Some((user, password)) = creds else {
            self.stats.failures.fetch_add(1, Relaxed);
            self.backoff.failed(ip, "", Instant::now());
            return Err(Denied::Unauthorized { user: None });
        };
        let started = Instant::now();
        let gate = self.clone();
        let u = user.clone();
        // Reading a changed file and bcrypt block: off the event loop.
        let verdict = blocking::unblock(move || {
            gate.refresh();
            gate.file.as_ref().map(|f| f.check(&u, &password))
        })
        .await;
        let Some(verdict) = verdict else {
            return Ok(None);
        };
        if verdict.ok {
            self.backoff.succeeded(ip, &user);
            self.stats.successes.fetch_add(1, Relaxed);
            drop(attempt);
            return Ok(Some(user));
        }
        let answer_at = started + verdict.answer_after;
        if answer_at > Instant::now() {
            async_io::Timer::at(answer_at).await;
        }
        self.backoff.failed(ip, &user, Instant::now());
        self.stats.failures.fetch_add(1, Relaxed);
        Err(Denied::Unauthorized { user: Some(user) })
    }

    /// Remembers a link of `user`, to end it should the user be removed.
    pub fn register(&self, user: String, link: Box<dyn Revocable>) {
        let mut v = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|(_, l)| l.is_alive());
        v.push((user, link));
    }

    /// Ends the links of users the file no longer has; returns how many.
    fn revoke_removed(&self) -> usize {
        let Some(file) = &self.file else { return 0 };
        let mut v = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        v.retain(|(user, l)| {
            if !l.is_alive() {
                return false;
            }
            if file.contains(user) {
                return true;
            }
            if l.revoke() {
                n += 1;
            }
            false
        });
        self.stats.revoked.fetch_add(n as u64, Relaxed);
        n
    }

    /// Re-reads the file if it changed (its time or size), and ends the
    /// links of removed users; returns the line to log, if anything
    /// happened. Blocks: run it off the event loop (the server does, once
    /// a second, and every login attempt does).
    pub fn refresh(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        match file.refresh() {
            Refreshed::Unchanged => None,
            Refreshed::Reloaded(n) => {
                let gone = self.revoke_removed();
                Some(format!(
                    "htpasswd {} changed: {n} users; {gone} links of removed users closed",
                    file.path().display()
                ))
            }
            Refreshed::Failed(e) => Some(format!("{e}; keeping the previous users")),
        }
    }

    /// Re-reads the file now (SIGHUP) and ends the links of removed
    /// users. Blocks.
    pub fn reload(&self) -> Option<Result<String, AuthError>> {
        let file = self.file.as_ref()?;
        Some(file.reload().map(|n| {
            let gone = self.revoke_removed();
            format!(
                "htpasswd {} reloaded: {n} users; {gone} links of removed users closed",
                file.path().display()
            )
        }))
    }

    /// The links of authenticated users now up.
    pub fn sessions(&self) -> Vec<String> {
        let v = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .filter(|(_, l)| l.is_alive())
            .map(|(u, _)| u.clone())
            .collect()
    }
}

/// How often the server looks at the htpasswd file for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    const BCRYPT_SECRET: &str = "$2y$05$UAfze34JEoG/nQgC2pj1SOOHT4lHMbfTmtCGQZILBBkcIijQAFjKe";
    const SHA_SECRET: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

    struct Fake(Arc<AtomicBool>);
    impl Revocable for Fake {
        fn is_alive(&self) -> bool {
            !self.0.load(Relaxed)
        }
        fn revoke(&self) -> bool {
            !self.0.swap(true, Relaxed)
        }
    }

    fn file(text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "etherws-gate-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn creds(u: &str, p: &str) -> Option<(String, String)> {
        Some((u.into(), p.into()))
    }

    #[test]
    fn checks_users_and_ends_the_links_of_removed_ones() {
        let p = file(&format!("alice:{BCRYPT_SECRET}\nbob:{SHA_SECRET}\n"));
        let gate = Arc::new(Gate::with_htpasswd(Htpasswd::load(&p).unwrap()));
        let ip: IpAddr = "198.18.0.2".parse().unwrap();
        futures_lite::future::block_on(async {
            assert_eq!(
                gate.check(ip, creds("alice", "secret")).await,
                Ok(Some("alice".into()))
            );
            assert_eq!(
                gate.check(ip, creds("bob", "secret")).await,
                Ok(Some("bob".into()))
            );
            assert_eq!(
                gate.check(ip, creds("bob", "nope")).await,
                Err(Denied::Unauthorized {
                    user: Some("bob".into())
                })
            );
            assert_eq!(
                gate.check(ip, None).await,
                Err(Denied::Unauthorized { user: None })
            );
        });
        let (a, b) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        gate.register("alice".into(), Box::new(Fake(a.clone())));
        gate.register("bob".into(), Box::new(Fake(b.clone())));
        assert_eq!(gate.refresh(), None, "unchanged");
        // bob leaves the file (a different size: the change is seen).
        std::fs::write(&p, format!("alice:{BCRYPT_SECRET}\n")).unwrap();
        let line = gate.refresh().expect("a change");
        assert!(line.contains("1 users; 1 links"), "{line}");
        assert!(b.load(Relaxed), "bob's link ended");
        assert!(!a.load(Relaxed), "alice's stays");
        assert_eq!(gate.stats().revoked.load(Relaxed), 1);
        assert_eq!(gate.sessions(), vec!["alice".to_string()]);
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn an_open_gate_lets_everyone_in() {
        let gate = Arc::new(Gate::open());
        let ip: IpAddr = "198.18.0.2".parse().unwrap();
        let r = futures_lite::future::block_on(gate.check(ip, creds("x", "y")));
        assert_eq!(r, Ok(None));
        assert!(!gate.requires_auth());
    }

    /// An unknown name's failure takes as long as a {SHA} user's: both
    /// wait for the floor set by the file's bcrypt hash.
    #[test]
    fn failures_take_the_floor_whatever_the_name() {
        let p = file(&format!("alice:{BCRYPT_SECRET}\nbob:{SHA_SECRET}\n"));
        let gate = Arc::new(Gate::with_htpasswd(Htpasswd::load(&p).unwrap()));
        let floor = {
            let v = gate.htpasswd().unwrap().check("bob", "nope");
            v.answer_after
        };
        let time = |u: &'static str, ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            let t = Instant::now();
            let r = futures_lite::future::block_on(gate.check(ip, creds(u, "nope")));
            assert!(r.is_err());
            t.elapsed()
        };
        // Different addresses: no back-off in the way.
        let sha = time("bob", "198.18.0.3");
        let unknown = time("nobody", "198.18.0.4");
        assert!(sha >= floor.mul_f64(0.9), "{sha:?} < {floor:?}");
        assert!(unknown >= floor.mul_f64(0.9), "{unknown:?} < {floor:?}");
        let _ = std::fs::remove_file(p);
    }
}
