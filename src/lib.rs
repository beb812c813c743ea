//! keyrot keeps an organisation's API keys from expiring under it.
//!
//! It reads rotation policies from TOML, tracks every key's expiry in an
//! embedded redb store, rotates keys inside the windows a policy allows
//! through a crash-safe state machine, writes each new secret to the sinks
//! where consumers read it, and tells people by email.
//!
//! Modules, and what each owns:
//! - [`config`]: the TOML schema, validation with `file:line:column` errors,
//!   secret references.
//! - [`policy`]: pure functions: when a key is due, windows, jitter, stagger.
//! - [`store`]: the redb database (every redb call lives there).
//! - [`crypto`]: AES-256-GCM envelopes and the master key.
//! - [`model`]: the records the store keeps and the API returns.
//! - [`provider`]: the `Provider` trait and one file per provider.
//! - [`sink`]: the `Sink` trait and one file per sink.
//! - [`http`]: the HTTP client and error mapping every HTTP peer shares.
//! - [`vault`]: the OpenBao/Vault client (token and AppRole auth).
//! - [`aws`]: SigV4 signing, credentials and AWS error codes.
//! - [`exec`]: running an operator's program (exec sink and provider).
//! - [`rotation`]: the state machine, one step function per state.
//! - [`scheduler`]: sleeps until the next due instant; inventory sync.
//! - [`notify`]: the outbox sender and email rendering.
//! - [`control`]: the control API server (unix socket) and its client.
//! - [`metrics`]: the Prometheus registry and the optional `/metrics` endpoint.
//! - [`daemon`]: wiring: signals, sd_notify, reload, graceful shutdown;
//!   the only place that decides the process's exit status.
//! - [`shutdown`]: how tasks are told to stop (a `CancellationToken`) and
//!   waited for (a `TaskTracker`).
//! - [`memory`]: handing freed heap pages back to the system.
//! - [`hardening`]: no core dumps, not dumpable, key pages locked in memory.
//! - [`escape`]: control characters made visible in logs, terminals, mail.
//! - [`logging`]: where log lines go: text or JSON on stderr, or native journald.
//! - [`cli`]: one file per subcommand.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod aws;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod crypto;
pub mod daemon;
pub mod error;
pub mod escape;
pub mod exec;
pub mod failpoint;
#[doc(hidden)]
pub mod fuzzing;
pub mod hardening;
pub mod http;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod policy;
pub mod provider;
pub mod rotation;
pub mod sandbox;
pub mod scheduler;
pub mod shutdown;
pub mod sink;
pub mod store;
pub mod vault;
pub mod wake;
