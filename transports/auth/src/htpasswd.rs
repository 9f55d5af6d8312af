//! Apache htpasswd files: parsing, hash checks, and a check whose time
//! does not tell which user names exist.
//!
//! Hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`: `htpasswd -B`), `{SHA}`
//! (`htpasswd -s`), apr1 MD5 (`htpasswd -m`, the old default) and SHA-crypt
//! (`$5$`, `$6$`). bcrypt, apr1 and SHA-crypt are checked by the `htauth`
//! crate, `{SHA}` here; every comparison is constant-time. A hash whose
//! shape is wrong (truncated by an editor, a stray character) refuses the
//! file: it could never match, and a user locked out by a typo is better
//! told at once.
//!
//! **Timing.** A failed check must take as long whatever the name: the
//! file is *calibrated* when read (each kind of hash in it timed once), an
//! unknown name is checked against a dummy of the slowest kind, and every
//! failure is answered no earlier than the slowest kind takes (the
//! caller waits until [`Verdict::answer_after`]). The floor follows the
//! slowest kind's observed times, so a loaded machine does not open a gap.

use std::collections::{BTreeMap, HashMap};
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

/// The kind of a hash, with its cost: what its check takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `{SHA}`: one SHA-1.
    Sha1,
    /// `$apr1$`: 1000 rounds of MD5.
    Apr1,
    /// `$5$`/`$6$` with their rounds.
    ShaCrypt { bits: u16, rounds: u32 },
    /// `$2a$`/`$2b$`/`$2y$` with their cost.
    Bcrypt { cost: u32 },
}

const B64_CRYPT: &str = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn crypt64(s: &str) -> bool {
    s.chars().all(|c| B64_CRYPT.contains(c))
}

/// The hash's kind, or why its shape is wrong.
pub fn kind_of(hash: &str) -> Result<Kind, String> {
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        if b64.len() != 28 {
            return Err(format!(
                "the {{SHA}} hash is {} characters of base64, not 28 (truncated?)",
                b64.len()
            ));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the {SHA} hash is not base64".to_string())?;
        if raw.len() != 20 {
            return Err(format!(
                "the {{SHA}} hash is {} bytes, not 20 (truncated?)",
                raw.len()
            ));
        }
        return Ok(Kind::Sha1);
    }
    for p in ["$2a$", "$2b$", "$2y$"] {
        if let Some(rest) = hash.strip_prefix(p) {
            let (cost, tail) = rest
                .split_once('$')
                .ok_or("the bcrypt hash has no cost field")?;
            let cost: u32 = cost
                .parse()
                .ok()
                .filter(|c| (4..=31).contains(c) && cost.len() == 2)
                .ok_or("the bcrypt cost is not 04 to 31")?;
            if tail.len() != 53 || !crypt64(tail) {
                return Err(format!(
                    "the bcrypt hash is {} characters long, not 60 (truncated?)",
                    hash.len()
                ));
            }
            return Ok(Kind::Bcrypt { cost });
        }
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let (salt, digest) = rest.split_once('$').ok_or("the apr1 hash has no salt")?;
        if salt.is_empty() || salt.len() > 8 || digest.len() != 22 || !crypt64(digest) {
            return Err(
                "the apr1 hash is truncated or malformed ($apr1$SALT$ and 22 characters)".into(),
            );
        }
        return Ok(Kind::Apr1);
    }
    for (p, bits, len) in [("$5$", 256u16, 43usize), ("$6$", 512, 86)] {
        if let Some(rest) = hash.strip_prefix(p) {
            let (rounds, rest) = match rest.strip_prefix("rounds=") {
                Some(r) => {
                    let (n, rest) = r.split_once('$').ok_or("bad SHA-crypt rounds")?;
                    let n: u32 = n.parse().map_err(|_| "bad SHA-crypt rounds")?;
                    (n.clamp(1000, 999_999_999), rest)
                }
                None => (5000, rest),
            };
            let (salt, digest) = rest
                .split_once('$')
                .ok_or("the SHA-crypt hash has no salt")?;
            if salt.len() > 16 || digest.len() != len || !crypt64(digest) {
                return Err(format!(
                    "the SHA-crypt hash is truncated or malformed ({len} characters after the salt)"
                ));
            }
            return Ok(Kind::ShaCrypt { bits, rounds });
        }
    }
    Err("unsupported hash format (supported: bcrypt `htpasswd -B`, \
         {SHA} `htpasswd -s`, apr1 `htpasswd -m`, SHA-crypt $5$/$6$)"
        .into())
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
        kind_of(hash).map_err(|why| err(format!("user {user}: {why}")))?;
        if users.insert(user.to_string(), hash.to_string()).is_some() {
            return Err(err(format!("user {user} appears twice")));
        }
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

/// How long failures take, for one set of users.
#[derive(Debug)]
struct Calibration {
    /// The slowest kind of hash in the file.
    slowest: Option<Kind>,
    /// A hash of nobody's password, of the slowest kind: what an unknown
    /// name is checked against.
    dummy: String,
    /// No failure is answered sooner than this after its check began.
    base: Duration,
    /// Running mean of the slowest kind's check times (ns), for the floor.
    mean_ns: u64,
}

impl Calibration {
    /// Times one check of each kind in `users` (deterministic: kinds in
    /// order, the first user of each by name) and makes the dummy.
    fn of(users: &HashMap<String, String>) -> Calibration {
        let mut kinds: BTreeMap<Kind, &str> = BTreeMap::new();
        let mut names: Vec<&String> = users.keys().collect();
        names.sort();
        for n in names {
            let h = users[n].as_str();
            if let Ok(k) = kind_of(h) {
                kinds.entry(k).or_insert(h);
            }
        }
        let wrong = nobodys_password();
        let mut slowest: Option<(Duration, Kind, &str)> = None;
        for (&k, &h) in &kinds {
            let t = Instant::now();
            let _ = verify_hash(h, &wrong);
            let took = t.elapsed();
            if slowest.is_none_or(|(d, _, _)| took > d) {
                slowest = Some((took, k, h));
            }
        }
        let Some((took, kind, hash)) = slowest else {
            return Calibration {
                slowest: None,
                dummy: "{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
                base: Duration::ZERO,
                mean_ns: 0,
            };
        };
        // bcrypt: a fresh hash of the same cost. Others: the user's own
        // hash (the outcome of an unknown name's check is thrown away).
        let dummy = match kind {
            Kind::Bcrypt { cost } => bcrypt::hash(nobodys_password(), cost)
                .map(|h| h.replace("$2b$", "$2y$"))
                .unwrap_or_else(|_| hash.to_string()),
            _ => hash.to_string(),
        };
        Calibration {
            slowest: Some(kind),
            dummy,
            base: took,
            mean_ns: took.as_nanos() as u64,
        }
    }

    /// The time a failure is answered after: the slowest kind's time with
    /// a margin for the machine's noise.
    fn floor(&self) -> Duration {
        let mean = Duration::from_nanos(self.mean_ns);
        self.base.max(mean).mul_f64(1.25) + Duration::from_millis(1)
    }

    fn observe(&mut self, took: Duration) {
        let t = took.as_nanos() as u64;
        self.mean_ns = (self.mean_ns.saturating_mul(7) + t) / 8;
    }
}

fn nobodys_password() -> String {
    format!("{:032x}", rand::random::<u128>())
}

struct Loaded {
    /// The file's stamp when read.
    stamp: Stamp,
    users: HashMap<String, String>,
    cal: Calibration,
}

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The user exists and the password is theirs.
    pub ok: bool,
    /// When it failed: answer no sooner than this after the check began.
    pub answer_after: Duration,
}

/// What [`Htpasswd::refresh`] did.
#[derive(Debug)]
pub enum Refreshed {
    Unchanged,
    /// Re-read: this many users now.
    Reloaded(usize),
    /// Changed but unusable: the previous users stay.
    Failed(AuthError),
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
    /// Blocks for the calibration (one check of each kind of hash).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, AuthError> {
        let path = path.into();
        let (stamp, users) = Self::read(&path)?;
        let cal = Calibration::of(&users);
        Ok(Htpasswd {
            path,
            loaded: Mutex::new(Loaded { stamp, users, cal }),
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
    /// Blocks (calibration).
    pub fn reload(&self) -> Result<usize, AuthError> {
        let (stamp, users) = Self::read(&self.path)?;
        let n = users.len();
        let cal = Calibration::of(&users);
        *self.loaded() = Loaded { stamp, users, cal };
        Ok(n)
    }

    /// Re-reads the file if it changed since it was read. A file that
    /// became unreadable or invalid keeps the old users. Blocks.
    pub fn refresh(&self) -> Refreshed {
        let now = stamp(&self.path);
        if now.is_none() || now == self.loaded().stamp {
            return Refreshed::Unchanged;
        }
        match self.reload() {
            Ok(n) => Refreshed::Reloaded(n),
            Err(e) => {
                // Do not retry on every attempt until it changes again.
                self.loaded().stamp = now;
                Refreshed::Failed(e)
            }
        }
    }

    /// Checks `user`'s `password`. An unknown user is checked against a
    /// dummy of the slowest kind in the file, and every failure says when
    /// to answer it, so the time taken does not tell who exists. Blocks
    /// (bcrypt is slow on purpose): call it off the event loop.
    pub fn check(&self, user: &str, password: &str) -> Verdict {
        let (hash, exists, slow) = {
            let l = self.loaded();
            match l.users.get(user) {
                Some(h) => {
                    let slow = kind_of(h).ok() == l.cal.slowest;
                    (h.clone(), true, slow)
                }
                None => (l.cal.dummy.clone(), false, true),
            }
        };
        let t = Instant::now();
        let good = verify_hash(&hash, password);
        let took = t.elapsed();
        let mut l = self.loaded();
        if slow {
            l.cal.observe(took);
        }
        Verdict {
            ok: good && exists,
            answer_after: l.cal.floor(),
        }
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.loaded().users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// A bcrypt htpasswd line for `user` (`htpasswd -B`'s format, `$2y$`).
pub fn bcrypt_line(user: &str, password: &str, cost: u32) -> Result<String, String> {
    if user.is_empty() || user.contains(':') || user.contains(char::is_whitespace) {
        return Err(format!("{user:?} cannot be a user name (no ':' or spaces)"));
    }
    let h = bcrypt::hash(password, cost).map_err(|e| e.to_string())?;
    Ok(format!("{user}:{}", h.replace("$2b$", "$2y$")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT_SECRET: &str = "$2y$05$UAfze34JEoG/nQgC2pj1SOOHT4lHMbfTmtCGQZILBBkcIijQAFjKe";

    #[test]
    fn hashes_of_every_supported_kind() {
        // Made with `htpasswd -nbB/-nbs/-nbm u secret` and `mkpasswd -m sha-512`.
        let sha = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
        assert!(verify_hash(sha, "secret"));
        assert!(!verify_hash(sha, "Secret"));
        let apr1 = htauth::hash_password("secret", htauth::HashAlgorithm::Apr1Md5).unwrap();
        assert!(verify_hash(&apr1, "secret") && !verify_hash(&apr1, "nope"));
        assert_eq!(kind_of(&apr1), Ok(Kind::Apr1));
        let bcrypt = htauth::hash_password("secret", htauth::HashAlgorithm::Bcrypt).unwrap();
        assert!(verify_hash(&bcrypt, "secret") && !verify_hash(&bcrypt, "nope"));
        assert!(matches!(kind_of(&bcrypt), Ok(Kind::Bcrypt { .. })));
        assert!(verify_hash(BCRYPT_SECRET, "secret"));
        assert_eq!(kind_of(BCRYPT_SECRET), Ok(Kind::Bcrypt { cost: 5 }));
        let sha512 = htauth::hash_password("secret", htauth::HashAlgorithm::Sha512).unwrap();
        assert!(verify_hash(&sha512, "secret"));
        assert!(matches!(
            kind_of(&sha512),
            Ok(Kind::ShaCrypt { bits: 512, .. })
        ));
        assert!(!verify_hash("plain", "plain"));
        let line = bcrypt_line("carol", "pw", 4).unwrap();
        let (u, h) = line.split_once(':').unwrap();
        assert_eq!(u, "carol");
        assert!(h.starts_with("$2y$04$") && verify_hash(h, "pw"));
        assert!(bcrypt_line("a:b", "pw", 4).is_err());
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
    fn parse_refuses_what_it_cannot_check_and_truncated_hashes() {
        let p = Path::new("f");
        let ok = parse(
            p,
            &format!("# c\n\nalice:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\nbob:{BCRYPT_SECRET}\r\n"),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let e = parse(p, "alice:plaintext\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("unsupported"), "{e}");
        assert!(parse(p, "nocolon\n").is_err());
        // A hash cut short by an editor: refused, naming the line and user.
        let cut = &BCRYPT_SECRET[..40];
        let e = parse(p, &format!("# x\nbob:{cut}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("bob") && e.contains("truncated"),
            "{e}"
        );
        let e = parse(p, "a:{SHA}5en6G6MezRroT3XKq\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        assert!(parse(p, "a:$apr1$abc$short\n").is_err());
        let e = parse(
            p,
            "a:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\na:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn basic_header_round_trips() {
        let h = basic_header("u", "p:w");
        assert_eq!(basic_credentials(&h), Some(("u".into(), "p:w".into())));
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    /// The dummy is of the slowest kind whatever order the users come
    /// in, and every failure's floor covers it.
    #[test]
    fn calibration_picks_the_slowest_kind_deterministically() {
        let mut users = HashMap::new();
        users.insert(
            "a".to_string(),
            "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=".to_string(),
        );
        users.insert("b".to_string(), BCRYPT_SECRET.to_string());
        let apr1 = htauth::hash_password("secret", htauth::HashAlgorithm::Apr1Md5).unwrap();
        users.insert("c".to_string(), apr1);
        let cal = Calibration::of(&users);
        assert_eq!(cal.slowest, Some(Kind::Bcrypt { cost: 5 }));
        assert!(cal.dummy.starts_with("$2y$05$"), "{}", cal.dummy);
        assert!(cal.floor() >= cal.base);
        let empty = Calibration::of(&HashMap::new());
        assert_eq!(empty.slowest, None);
    }
}
