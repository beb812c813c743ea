//! keyrot's integration suite: the real binary against real peers, one
//! test binary (one link, and every test of every file scheduled together
//! instead of one file after another). `bash scripts/test.sh --test suite
//! crash::` runs one file's tests. The crash suites need the cargo feature
//! `failpoints`, as `scripts/test.sh` builds; `sink_aws` is a test binary
//! of its own because it changes the process environment.

#[path = "../common/mod.rs"]
mod common;

mod assets;
mod atlassian_strict;
mod consumers;
mod control_authz;
mod control_input;
#[cfg(feature = "failpoints")]
mod crash;
#[cfg(feature = "failpoints")]
mod crash_random;
mod daemon;
mod expired_keys;
mod failover;
mod faults;
mod file_perms;
mod hostile_names;
mod hostile_peers;
mod hygiene;
mod journald;
mod metrics;
mod notify_events;
mod notify_smtp;
mod orphans;
mod provider_approle;
mod provider_aws_iam;
mod provider_exec;
mod provider_http;
mod quiet;
mod rotation_api;
mod sd_notify;
mod sink_azure;
mod sink_openbao;
mod sink_push;
mod sinks;
mod store_cli;
mod store_migrate;
mod store_postgres;
mod webhooks;
