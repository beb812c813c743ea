//! keyrot keeps an organisation's API keys from expiring under it.
//!
//! It reads rotation policies from TOML, tracks every key's expiry in an
//! embedded redb store, rotates keys inside the windows a policy allows
//! through a crash-safe state machine, writes each new secret to the sinks
//! where consumers read it, and tells people by email.
//!
//! The workspace's crates are its layers, each depending only on those
//! below it (see docs/architecture.md):
//! - `keyrot-core`: model, policy, crypto, store, clock, failpoints.
//! - `keyrot-config`: the TOML schema and its validation.
//! - `keyrot-peers`: providers, sinks, and the HTTP/AWS/Vault/exec plumbing.
//! - `keyrot-engine`: the rotation state machine, scheduler, notifications,
//!   metrics registry.
//! - `keyrot-sandbox`: `keyrot sandbox`, a local Admin API server.
//! - this crate, the daemon: the modules below.
//!
//! Modules, and what each owns:
//! - [`control`]: the control API server (unix socket) and its client;
//!   the only place HTTP statuses exist.
//! - [`metrics`]: the engine's registry, served at `/metrics`.
//! - [`daemon`]: wiring: signals, sd_notify, reload, graceful shutdown;
//!   the only place that decides the process's exit status.
//! - [`logging`]: where log lines go: text or JSON on stderr, or native journald.
//! - [`cli`]: one file per subcommand.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cli;
pub mod control;
pub mod daemon;
pub mod logging;
pub mod metrics;
