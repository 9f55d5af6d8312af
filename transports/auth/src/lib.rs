//! Server authentication for etherws, shared by every transport with
//! per-user identity (ws://, wss://, quic://), so that each enforces the
//! same policy with the same back-off, log lines and counters
//! (spec/protocol.md §2, §14).
//!
//! - [`htpasswd`]: Apache htpasswd files (bcrypt, `{SHA}`, apr1,
//!   SHA-crypt), checked in a time that does not tell which names exist.
//! - [`backoff`]: per-address back-off against guessing.
//! - [`Gate`]: the policy a listener asks: [`Gate::check`] a login,
//!   [`Gate::register`] the link, [`Gate::refresh`] when the file changes
//!   (links of removed users end).

pub mod backoff;
mod gate;
pub mod htpasswd;

pub use gate::{AuthStats, Denied, Gate, Revocable, WATCH_EVERY};
pub use htpasswd::{basic_credentials, basic_header, AuthError, Htpasswd};
