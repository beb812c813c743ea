//! The daemon in process: SIGTERM stops it cleanly, a failed store commit ends it with status 70, and a reload names each setting it cannot apply.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use signal_hook::consts::SIGTERM;

use super::{restart_only_changes, serve};
use keyrot_config::{Config, load_str};
use keyrot_core::clock::SystemClock;
use keyrot_core::crypto::MasterKey;
use keyrot_core::store::Store;

fn cfg(text: &str) -> Config {
    load_str(Path::new("/etc/keyrot/keyrot.toml"), text).unwrap()
}

/// A config with a `local` provider, everything in `dir`.
fn daemon_config(dir: &Path) -> (PathBuf, Arc<Config>) {
    let d = dir.display();
    let text = format!(
        "[daemon]\ncontrol_socket = \"{d}/control.sock\"\n\
         [store]\npath = \"{d}/state.redb\"\nmaster_key_file = \"{d}/master.key\"\n\
         [[provider]]\nname = \"p\"\ntype = \"local\"\n"
    );
    let path = dir.join("keyrot.toml");
    let cfg = Arc::new(load_str(&path, &text).unwrap());
    (path, cfg)
}

/// SIGTERM stops the daemon in order: exit status 0, the control
/// socket removed.
#[tokio::test]
async fn sigterm_stops_the_daemon_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cfg) = daemon_config(dir.path());
    let store = Arc::new(Store::open(&cfg.store.path, MasterKey::generate()).unwrap());
    let signals = futures::stream::iter([SIGTERM]).chain(futures::stream::pending());
    let served = tokio::time::timeout(
        Duration::from_secs(30),
        serve(&path, cfg, store, Arc::new(SystemClock), signals),
    )
    .await;
    assert_eq!(served.unwrap().unwrap(), ExitCode::SUCCESS);
    assert!(!dir.path().join("control.sock").exists());
}

/// A failed commit ends the daemon with exit status 70 (the service
/// manager restarts it) without a signal: here at the first write,
/// which the inventory sync after READY makes.
#[tokio::test]
async fn a_failed_commit_ends_the_daemon_with_status_70() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cfg) = daemon_config(dir.path());
    let store = Arc::new(Store::open(&cfg.store.path, MasterKey::generate()).unwrap());
    store.fail_commits_for_test("store state.redb: disk gone");
    let served = tokio::time::timeout(
        Duration::from_secs(30),
        serve(
            &path,
            cfg,
            store,
            Arc::new(SystemClock),
            futures::stream::pending(),
        ),
    )
    .await;
    assert_eq!(served.unwrap().unwrap(), ExitCode::from(70));
}

#[test]
fn a_reload_names_every_setting_it_cannot_apply() {
    let base = cfg("");
    assert!(restart_only_changes(&base, &base).is_empty());
    // Applied by a reload: not named.
    let applied = cfg("[daemon]\nshutdown_timeout = \"5s\"\nsync_schedule = \"0 0 * * * *\"\n");
    assert!(restart_only_changes(&base, &applied).is_empty());
    let changed = cfg(concat!(
        "[daemon]\ncontrol_socket = \"/run/other.sock\"\ncontrol_socket_mode = \"0600\"\n",
        "metrics_listen = \"127.0.0.1:9000\"\n",
        "[store]\npath = \"/var/lib/other.redb\"\nmaster_key_file = \"/etc/other.key\"\n",
        "create_master_key = true\n",
    ));
    assert_eq!(
        restart_only_changes(&base, &changed),
        [
            "store.path",
            "store.master_key_file",
            "store.create_master_key",
            "daemon.control_socket",
            "daemon.control_socket_mode",
            "daemon.metrics_listen",
        ]
    );
}
