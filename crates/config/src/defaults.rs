//! The documented defaults of every section, as `Default` impls, so a
//! config that leaves a field out and a test that builds a `Config` by
//! hand get the same values.

use std::path::PathBuf;

use jiff::SignedDuration;

use keyrot_core::policy::Schedule;

use super::notify::{NotifyConfig, NotifyTransport};
use super::sinks::{FileFormat, FileSinkConfig};
use super::types::{DaemonConfig, LocalProviderConfig, RetryConfig, StoreConfig};

/// Default `[[provider]] max_concurrent`.
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
/// Smallest `[[provider]] requests_per_second`: one request a day.
pub const MIN_REQUESTS_PER_SECOND: f64 = 1.0 / 86_400.0;
/// Largest `[[provider]] requests_per_second`.
pub const MAX_REQUESTS_PER_SECOND: f64 = 1_000_000.0;
/// Default `[store] history_retention`: 400 days, a year of history and a
/// margin (an annual review still finds the whole previous year).
pub const DEFAULT_HISTORY_RETENTION: SignedDuration = SignedDuration::from_hours(400 * 24);
/// Shortest `[store] history_retention`: a day (a day's digests must stay
/// in the outbox, or they would be sent again).
pub const MIN_HISTORY_RETENTION: SignedDuration = SignedDuration::from_hours(24);
/// Default `[daemon] control_max_connections`: far more than the CLI and
/// a few API callers use, and few enough to stay clear of a service's
/// usual 1024 open files.
pub const DEFAULT_CONTROL_MAX_CONNECTIONS: usize = 128;
/// Default `[[policy]] overlap`: one hour.
pub const DEFAULT_OVERLAP: SignedDuration = SignedDuration::from_hours(1);

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        DaemonConfig {
            control_socket: PathBuf::from("/run/keyrot/control.sock"),
            control_socket_mode: 0o660,
            control_allow_uids: None,
            control_allow_gids: None,
            control_max_connections: DEFAULT_CONTROL_MAX_CONNECTIONS,
            control_header_timeout: SignedDuration::from_secs(10),
            control_body_timeout: SignedDuration::from_secs(30),
            control_idle_timeout: SignedDuration::from_secs(60),
            shutdown_timeout: SignedDuration::from_secs(30),
            sync_schedule: Schedule::EVERY_15_MINUTES,
            metrics_listen: None,
            proxy: None,
            retry: RetryConfig::default(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            attempts: 5,
            initial: SignedDuration::from_secs(10),
            max: SignedDuration::from_mins(15),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            path: PathBuf::from("/var/lib/keyrot/state.redb"),
            master_key_file: PathBuf::from("/var/lib/keyrot/master.key"),
            create_master_key: false,
            history_retention: Some(DEFAULT_HISTORY_RETENTION),
            audit_retention: Some(DEFAULT_HISTORY_RETENTION),
            postgres: None,
        }
    }
}

impl Default for LocalProviderConfig {
    fn default() -> LocalProviderConfig {
        LocalProviderConfig {
            default_lifetime: SignedDuration::from_hours(90 * 24),
            secret_bytes: 32,
        }
    }
}

impl FileSinkConfig {
    /// A file sink for `path` with the default format (raw), env name
    /// (`API_KEY`) and mode (0600), owned by whoever runs keyrot.
    pub fn new(path: impl Into<String>) -> FileSinkConfig {
        FileSinkConfig {
            path: path.into(),
            format: FileFormat::Raw,
            env_name: "API_KEY".to_string(),
            mode: 0o600,
            owner: None,
            group: None,
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig {
            from: "keyrot@localhost".to_string(),
            transport: NotifyTransport::None,
            dry_run: false,
            template_dir: None,
            digest_schedule: None,
            webhooks: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let d = DaemonConfig::default();
        assert_eq!(d.control_socket, PathBuf::from("/run/keyrot/control.sock"));
        assert_eq!(d.control_socket_mode, 0o660);
        assert_eq!(d.shutdown_timeout, SignedDuration::from_secs(30));
        assert_eq!(d.sync_schedule.as_str(), "0 */15 * * * *");
        assert_eq!(d.sync_schedule, Schedule::parse("0 */15 * * * *").unwrap());
        assert_eq!(d.metrics_listen, None);
        assert_eq!(d.retry.attempts, 5);
        assert_eq!(d.retry.initial, SignedDuration::from_secs(10));
        assert_eq!(d.retry.max, SignedDuration::from_secs(900));
        let l = LocalProviderConfig::default();
        assert_eq!(l.default_lifetime, SignedDuration::from_secs(90 * 86_400));
        assert_eq!(l.secret_bytes, 32);
        let f = FileSinkConfig::new("/x");
        assert_eq!(
            (f.format, f.env_name.as_str(), f.mode),
            (FileFormat::Raw, "API_KEY", 0o600)
        );
        let n = NotifyConfig::default();
        assert_eq!(n.from, "keyrot@localhost");
        assert!(matches!(n.transport, NotifyTransport::None));
        assert_eq!(DEFAULT_OVERLAP, SignedDuration::from_secs(3600));
    }
}
