//! The systems keyrot talks to, each behind a trait the engine drives.
//!
//! Modules, and what each owns:
//! - [`provider`]: the `Provider` trait and one file per provider.
//! - [`sink`]: the `Sink` trait and one file per sink.
//! - [`http`]: the HTTP client and error mapping every HTTP peer shares.
//! - [`vault`]: the OpenBao/Vault client (token and AppRole auth).
//! - [`aws`]: SigV4 signing, credentials and AWS error codes.
//! - [`exec`]: running an operator's program (exec sink and provider).
//! - [`systemd`]: systemd's manager over D-Bus, for the `systemd` reload
//!   hook (reload a unit, signal its main process).
//!
//! Stands on `keyrot-core` and `keyrot-config`; knows nothing of the
//! state machine, the scheduler or the daemon.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod aws;
pub mod exec;
pub mod hook;
pub mod http;
pub mod provider;
pub mod sink;
pub mod systemd;
pub mod vault;
