//! Notifications: messages are written to the outbox in the same store
//! transaction as the state change that causes them, and a sender task
//! delivers them at least once with a stable Message-ID. Messages never
//! carry a secret, a hash of one, or a pre-shared key.
//!
//! Content: `message` (rotation events, recipients, ids), `notice` (expiry
//! notices), `refused` (a key refused at inventory sync), `ended` (a key that
//! expired or vanished without keyrot replacing it), `orphan` (a key with
//! keyrot's tag that no known rotation owns), `digest` (the
//! daily digest), `render` (the variables and the Jinja set-up),
//! `templates` (built-in templates and `notify.template_dir` overrides),
//! `in_use` (an old key still in use at its revoke deadline), `footer`
//! (the host and commands every message ends with),
//! `examples` (the examples `docs/notifications.md` shows).

pub mod digest;
pub mod ended;
pub mod examples;
pub mod failover;
pub mod footer;
pub mod in_use;
pub mod message;
pub mod notice;
pub mod orphan;
pub mod refused;
pub mod render;
pub mod sender;
pub mod templates;
pub mod transport;
#[cfg(test)]
mod transport_tests;
pub mod webhook;

pub use message::Composer;
