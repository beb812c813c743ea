//! A configuration for tests of the layers above (feature `testkit`): the
//! `local` provider, one JSON file sink `out`, policy `p` (30-day keys,
//! rotated 7 days before expiry, a 1-hour overlap) and retries that give up
//! fast. Never in a release build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use jiff::SignedDuration;
use keyrot_core::policy::testutil::{dur, policy};

use crate::notify::{NotifyConfig, NotifyTransport};
use crate::sinks::{FileFormat, FileSinkConfig, SinkConfig, SinkKind};
use crate::types::{
    Config, DaemonConfig, LocalProviderConfig, ProviderConfig, ProviderKind, RetryConfig,
    StoreConfig,
};

/// The test configuration, its files under `out`, the sink writing to
/// `sink_path` (`{name}` is the key's name).
pub fn local(out: &Path, sink_path: &str) -> Config {
    let mut p = policy();
    p.name = "p".into();
    p.new_key_lifetime = Some(dur("30d"));
    p.rotate_before_expiry = Some(dur("7d"));
    p.overlap = dur("1h");
    p.notify = vec!["ops@example.com".into()];
    Config {
        files: vec![],
        daemon: DaemonConfig {
            control_socket: out.join("s.sock"),
            control_socket_mode: 0o660,
            shutdown_timeout: dur("5s"),
            sync_schedule: "0 0 * * * *".parse().unwrap(),
            metrics_listen: None,
            proxy: None,
            retry: RetryConfig {
                attempts: 2,
                initial: SignedDuration::from_millis(1),
                max: SignedDuration::from_millis(2),
            },
            ..DaemonConfig::default()
        },
        store: StoreConfig {
            path: out.join("state.redb"),
            master_key_file: out.join("k"),
            create_master_key: false,
            history_retention: None,
            audit_retention: None,
            postgres: None,
        },
        providers: vec![ProviderConfig {
            name: "local".into(),
            max_concurrent: 2,
            requests_per_second: None,
            console_url: None,
            kind: ProviderKind::Local(LocalProviderConfig {
                default_lifetime: dur("90d"),
                secret_bytes: 32,
            }),
            revoke_orphans: false,
        }],
        sinks: vec![SinkConfig {
            name: "out".into(),
            kind: SinkKind::File(FileSinkConfig {
                path: sink_path.into(),
                format: FileFormat::Json,
                env_name: "K".into(),
                mode: 0o600,
                owner: None,
                group: None,
            }),
            hooks: vec![],
        }],
        policies: vec![p],
        keys: vec![],
        notify: NotifyConfig {
            from: "keyrot@example.com".into(),
            transport: NotifyTransport::File {
                dir: out.join("mail"),
            },
            dry_run: false,
            template_dir: None,
            digest_schedule: None,
            webhooks: vec![],
        },
        psks: vec![],
        hooks: vec![],
        api_tokens: vec![],
        secret_sites: vec![],
    }
}
