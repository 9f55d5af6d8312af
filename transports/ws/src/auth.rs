//! HTTP Basic authentication against an Apache htpasswd file, and the
//! per-address back-off that slows down guessing.
//!
//! Hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`: `htpasswd -B`), `{SHA}`
//! (`htpasswd -s`), apr1 MD5 (`htpasswd -m`, the old default) and SHA-crypt
//! (`$5$`, `$6$`). bcrypt, apr1 and SHA-crypt are checked by the `htauth`
//! crate, `{SHA}` here; every comparison is constant-time. The file is
//! re-read when it changes (checked on each attempt) or on SIGHUP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Why an htpasswd file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("htpasswd file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("htpasswd file {path} line {line}: {why}")]
    Parse {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

/// A hash format this module can check, by its prefix.
fn supported(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$apr1$", "{SHA}", "$5$", "$6$"]
        .iter()
        .any(|p| hash.starts_with(p))
}

/// Parses htpasswd text: `user:hash` lines, `#` comments, blank lines.
pub fn parse(path: &Path, text: &str) -> Result<HashMap<String, String>, AuthError> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let err = |why: String| AuthError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            why,
        };
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| err("not user:hash".into()))?;
        if user.is_empty() {
            return Err(err("empty user name".into()));
        }
        if !hash.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(format!(
                "user {user}: the hash has characters no htpasswd hash has"
            )));
        }
        if !supported(hash) {
            return Err(err(format!(
                "user {user}: unsupported hash format (supported: bcrypt `htpasswd -B`, \
                 {{SHA}} `htpasswd -s`, apr1 `htpasswd -m`, SHA-crypt $5$/$6$)"
            )));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    Ok(users)
}

/// Checks `password` against one htpasswd hash. A hash that is not plain
/// ASCII is never valid (htauth's apr1 code panicked on one: found by the
/// `htpasswd` fuzz target), and a panic in the hash code counts as a
/// mismatch rather than taking the handshake down.
pub fn verify_hash(hash: &str, password: &str) -> bool {
    if !hash.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    if let Some(expected) = hash.strip_prefix("{SHA}") {
        let got =
            base64::engine::general_purpose::STANDARD.encode(Sha1::digest(password.as_bytes()));
        return got.as_bytes().ct_eq(expected.as_bytes()).into();
    }
    std::panic::catch_unwind(|| htauth::verify_password(password, hash).unwrap_or(false))
        .unwrap_or(false)
}

/// A file's (modification time, length), to notice a change.
type Stamp = Option<(SystemTime, u64)>;

struct Loaded {
    /// The file's stamp when read.
    stamp: Stamp,
    users: HashMap<String, String>,
    /// A hash of nobody's password, as slow as the file's bcrypt hashes:
    /// checked for unknown users, so the time taken does not tell which
    /// names exist.
    dummy: String,
}

/// The dummy hash for a set of users: bcrypt at the cost their first
/// bcrypt hash uses, else `{SHA}` (as cheap as the cheap ones).
fn dummy_for(users: &HashMap<String, String>) -> String {
    let cost = users.values().find_map(|h| {
        let rest = h.strip_prefix("$2")?;
        rest.get(2..4)?.parse::<u32>().ok()
    });
    match cost.and_then(|c| bcrypt::hash(rand::random::<u64>().to_string(), c).ok()) {
        Some(h) => h,
        None => "{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string(),
    }
}

/// An htpasswd file, re-read when it changes.
pub struct Htpasswd {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("path", &self.path)
            .finish()
    }
}

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Htpasswd {
    /// Reads the file; an unreadable file or a line it cannot use is an
    /// error (at startup: a typo must not leave a server open or locked).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, AuthError> {
        let path = path.into();
        let (stamp, users) = Self::read(&path)?;
        let dummy = dummy_for(&users);
        Ok(Htpasswd {
            path,
            loaded: Mutex::new(Loaded {
                stamp,
                users,
                dummy,
            }),
        })
    }

    fn read(path: &Path) -> Result<(Stamp, HashMap<String, String>), AuthError> {
        let before = stamp(path);
        let text = std::fs::read_to_string(path).map_err(|error| AuthError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Ok((before, parse(path, &text)?))
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the file now (SIGHUP). On error the old users stay.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let (stamp, users) = Self::read(&self.path)?;
        let n = users.len();
        let dummy = dummy_for(&users);
        *self.loaded() = Loaded {
            stamp,
            users,
            dummy,
        };
        Ok(n)
    }

    /// Re-reads the file if it changed since it was read. A file that
    /// became unreadable or invalid keeps the old users (logged).
    pub fn refresh(&self) {
        let now = stamp(&self.path);
        if now.is_none() || now == self.loaded().stamp {
            return;
        }
        match self.reload() {
            Ok(n) => log::info!("htpasswd {} changed: {n} users", self.path.display()),
            Err(e) => {
                log::warn!("{e}; keeping the previous users");
                // Do not retry on every attempt until it changes again.
                self.loaded().stamp = now;
            }
        }
    }

    /// The user's hash, if the user exists (after a refresh).
    pub fn hash_of(&self, user: &str) -> Option<String> {
        self.refresh();
        self.loaded().users.get(user).cloned()
    }

    /// The hash to check `user`'s password against, and whether the user
    /// exists: for an unknown user, a dummy hash that takes as long.
    pub fn hash_or_dummy(&self, user: &str) -> (String, bool) {
        self.refresh();
        let l = self.loaded();
        match l.users.get(user) {
            Some(h) => (h.clone(), true),
            None => (l.dummy.clone(), false),
        }
    }

    /// Whether `user` (still) exists.
    pub fn contains(&self, user: &str) -> bool {
        self.loaded().users.contains_key(user)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `Authorization: Basic ...` → (user, password).
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The `Authorization` value for a user and password.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The address a back-off entry is kept for: IPv4 as is, IPv6 by its /64
/// (one host usually owns a whole /64 and could rotate within it).
pub fn backoff_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[derive(Default)]
struct Suspects {
    /// Per address key: failures not yet forgiven, and the last one.
    by_ip: HashMap<IpAddr, (u32, Instant)>,
    /// The same failures by (address key, user), so a success forgives
    /// only that user's.
    by_user: HashMap<(IpAddr, String), u32>,
    /// Attempts being checked now, per address key.
    in_flight: HashMap<IpAddr, u32>,
}

/// Failed attempts per source address (IPv6: per /64). After
/// [`FREE_FAILURES`] failures within [`FORGET_AFTER`], each further attempt
/// from that address waits 250 ms, doubling per failure, at most
/// [`MAX_DELAY`], before it is even checked (the right password too), and
/// only one attempt from it is checked at a time (parallel connections
/// cannot multiply the guesses; the others get 429). A success forgives the
/// failures of that user only. At most [`MAX_TRACKED`] addresses are
/// tracked (the oldest are forgotten).
#[derive(Default)]
pub struct FailureBackoff {
    state: Mutex<Suspects>,
}

pub const FREE_FAILURES: u32 = 3;
pub const MAX_DELAY: Duration = Duration::from_secs(5);
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
pub const MAX_TRACKED: usize = 10_000;

/// An attempt being checked; ends when dropped.
pub struct Attempt<'a> {
    backoff: &'a FailureBackoff,
    key: IpAddr,
    /// How long to wait before checking.
    pub delay: Duration,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut s = self.backoff.state();
        if let Some(n) = s.in_flight.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                s.in_flight.remove(&self.key);
            }
        }
    }
}

impl FailureBackoff {
    fn state(&self) -> std::sync::MutexGuard<'_, Suspects> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failures(s: &Suspects, key: IpAddr, now: Instant) -> u32 {
        match s.by_ip.get(&key) {
            Some(&(n, last)) if now.duration_since(last) < FORGET_AFTER => n,
            _ => 0,
        }
    }

    /// Starts an attempt from `ip`: its delay, or `None` when the address
    /// is suspect and already has an attempt being checked.
    pub fn begin(&self, ip: IpAddr, now: Instant) -> Option<Attempt<'_>> {
        let key = backoff_key(ip);
        let mut s = self.state();
        let n = Self::failures(&s, key, now);
        let busy = s.in_flight.get(&key).copied().unwrap_or(0);
        if n >= FREE_FAILURES && busy > 0 {
            return None;
        }
        *s.in_flight.entry(key).or_insert(0) += 1;
        let delay = if n >= FREE_FAILURES {
            let shift = (n - FREE_FAILURES).min(16);
            Duration::from_millis(250u64 << shift).min(MAX_DELAY)
        } else {
            Duration::ZERO
        };
        Some(Attempt {
            backoff: self,
            key,
            delay,
        })
    }

    /// How long the next attempt from `ip` would wait.
    pub fn delay(&self, ip: IpAddr, now: Instant) -> Duration {
        self.begin(ip, now).map_or(MAX_DELAY, |a| a.delay)
    }

    pub fn failed(&self, ip: IpAddr, user: &str, now: Instant) {
        let key = backoff_key(ip);
        let mut s = self.state();
        if s.by_ip.len() >= MAX_TRACKED && !s.by_ip.contains_key(&key) {
            s.by_ip
                .retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if s.by_ip.len() >= MAX_TRACKED {
                if let Some(oldest) = s.by_ip.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) {
                    s.by_ip.remove(&oldest);
                }
            }
            let live: std::collections::HashSet<IpAddr> = s.by_ip.keys().copied().collect();
            s.by_user.retain(|(k, _), _| live.contains(k));
        }
        let e = s.by_ip.entry(key).or_insert((0, now));
        let stale = now.duration_since(e.1) >= FORGET_AFTER;
        if stale {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
        if stale {
            s.by_user.retain(|(k, _), _| *k != key);
        }
        *s.by_user.entry((key, user.to_string())).or_insert(0) += 1;
    }

    /// `user` got in from `ip`: forgive that user's failures from there.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        let key = backoff_key(ip);
        let mut s = self.state();
        let n = s.by_user.remove(&(key, user.to_string())).unwrap_or(0);
        if let Some(e) = s.by_ip.get_mut(&key) {
            e.0 = e.0.saturating_sub(n);
            if e.0 == 0 {
                s.by_ip.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_of_every_supported_kind() {
        // Made with `htpasswd -nbB/-nbs/-nbm u secret` and `mkpasswd -m sha-512`.
        let sha = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
        assert!(verify_hash(sha, "secret"));
        assert!(!verify_hash(sha, "Secret"));
        let apr1 = htauth::hash_password("secret", htauth::HashAlgorithm::Apr1Md5).unwrap();
        assert!(verify_hash(&apr1, "secret") && !verify_hash(&apr1, "nope"));
        let bcrypt = htauth::hash_password("secret", htauth::HashAlgorithm::Bcrypt).unwrap();
        assert!(verify_hash(&bcrypt, "secret") && !verify_hash(&bcrypt, "nope"));
        assert!(!verify_hash("plain", "plain"));
    }

    #[test]
    fn non_ascii_hashes_are_refused_not_panicked_on() {
        // The fuzz target's find: an apr1 "salt" with a multi-byte char.
        let hash = "$apr1$//\u{fffd}\u{fffd}\u{fffd}$x";
        assert!(!verify_hash(hash, "secret"));
        let e = parse(Path::new("f"), &format!("u:{hash}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("characters no htpasswd hash has"), "{e}");
        // Odd but ASCII apr1 salts do not panic either.
        assert!(!verify_hash("$apr1$$", "x"));
        assert!(!verify_hash("$apr1$a", "x"));
    }

    #[test]
    fn parse_refuses_what_it_cannot_check() {
        let p = Path::new("f");
        let ok = parse(p, "# c\n\nalice:{SHA}x\nbob:$apr1$a$b\r\n").unwrap();
        assert_eq!(ok.len(), 2);
        let e = parse(p, "alice:plaintext\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("unsupported"), "{e}");
        assert!(parse(p, "nocolon\n").is_err());
    }

    #[test]
    fn basic_header_round_trips() {
        let h = basic_header("u", "p:w");
        assert_eq!(basic_credentials(&h), Some(("u".into(), "p:w".into())));
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn backoff_grows_after_free_failures_and_resets() {
        let b = FailureBackoff::default();
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(b.delay(ip, t), Duration::ZERO);
            b.failed(ip, "bob", t);
        }
        assert_eq!(b.delay(ip, t), Duration::from_millis(250));
        b.failed(ip, "bob", t);
        assert_eq!(b.delay(ip, t), Duration::from_millis(500));
        for _ in 0..20 {
            b.failed(ip, "bob", t);
        }
        assert_eq!(b.delay(ip, t), MAX_DELAY);
        assert_eq!(b.delay(ip, t + FORGET_AFTER), Duration::ZERO);
        // A success as another user does not forgive bob's failures.
        b.succeeded(ip, "alice");
        assert_eq!(b.delay(ip, t), MAX_DELAY);
        b.succeeded(ip, "bob");
        assert_eq!(b.delay(ip, t), Duration::ZERO);
    }

    #[test]
    fn a_suspect_address_gets_one_attempt_at_a_time() {
        let b = FailureBackoff::default();
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let t = Instant::now();
        let (first, second) = (b.begin(ip, t).unwrap(), b.begin(ip, t).unwrap());
        drop((first, second)); // not suspect yet: in parallel is fine
        for _ in 0..FREE_FAILURES {
            b.failed(ip, "x", t);
        }
        let one = b.begin(ip, t).expect("one attempt");
        assert!(b.begin(ip, t).is_none(), "a second one at once is refused");
        drop(one);
        assert!(b.begin(ip, t).is_some());
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let b = FailureBackoff::default();
        let t = Instant::now();
        for i in 0..FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{}", i + 1).parse().unwrap();
            b.failed(ip, "x", t);
        }
        let other_host: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(b.delay(other_host, t) > Duration::ZERO);
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(b.delay(other_net, t), Duration::ZERO);
    }
}
