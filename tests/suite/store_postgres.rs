//! The daemon on the PostgreSQL backend, with the real binary and a real
//! PostgreSQL server: rotations run and survive kill -9 as on redb; a
//! second daemon on the same database refuses to start; without a daemon,
//! `status`, `store backup` (a redb file) and `store verify` read the
//! database; no secret reaches the log or the mail.

use crate::common;

use std::fs;
use std::time::Duration;

use common::{Daemon, config, wait_until, write_secret};
use keyrot_core::pgserver::PgServer;

/// Keys live 6 s: rotations run all the time.
const FAST: &str = r#"new_key_lifetime = "6s"
rotate_before_expiry = "3s"
overlap = "1s"
jitter = false"#;

/// A daemon whose store is a fresh database of the test process's server,
/// its URL in a secret file.
fn pg_daemon(keys: &[&str]) -> Daemon {
    let url = PgServer::shared()
        .fresh_database()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = config(FAST, keys);
    let d = Daemon::new("");
    let url_file = d.dir.join("pg.url");
    write_secret(&url_file, &format!("{url}\n"));
    let store = format!(
        "backend = \"postgres\"\nurl = {{ file = \"{}\" }}\nhistory_retention = \"forever\"\n",
        url_file.display()
    );
    let text = text.replace("path = \"state/state.redb\"\n", &store);
    assert!(text.contains("backend = \"postgres\""));
    fs::write(d.config_path(), text).unwrap();
    d
}

#[test]
fn the_daemon_rotates_on_postgres_and_survives_kill_9() {
    let mut d = pg_daemon(&["alpha", "beta"]);
    d.start();
    let slots = ["local/alpha", "local/beta"];
    let done = |d: &Daemon, n: usize| {
        wait_until(Duration::from_secs(60), || {
            slots.iter().all(|s| d.completed_replacements(s).len() >= n)
        })
    };
    assert!(done(&d, 1), "no rotation completed; log:\n{}", d.log());

    // A second daemon on the same database refuses to start.
    let out = std::process::Command::new(common::bin())
        .args(["run", "--config"])
        .arg(d.config_path())
        .current_dir(&d.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another keyrot process"), "{err}");
    assert!(
        !err.contains("pg.url") || !err.contains("postgres://keyrot@"),
        "{err}"
    );

    // kill -9 in the middle of rotations; the next start finishes them.
    d.kill9();
    d.start();
    assert!(
        done(&d, 3),
        "rotations did not go on after kill -9; log:\n{}",
        d.log()
    );
    let secret = d.sink("alpha").unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());

    // Without a daemon, the CLI reads the database.
    let status = d.json(&["status", "--json"]);
    assert_eq!(status["live"], false);
    assert_eq!(status["keys"].as_array().unwrap().len(), 2);
    for r in d.rotations() {
        assert!(
            ["Completed", "Pending"].contains(&r["state"].as_str().unwrap()),
            "{r}"
        );
    }
    let backup = d.dir.join("backup.redb");
    let out = d.cli(&["store", "backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let verify = d.cli(&["store", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    let bytes = fs::read(&backup).unwrap();
    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));

    // No secret in the log or the mail.
    for (path, bytes) in common::all_files(&d.dir) {
        if path.starts_with(d.dir.join("out")) {
            continue;
        }
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(&secret), "secret found in {}", path.display());
    }
}

#[test]
fn a_bad_backend_setting_names_the_field() {
    let d = Daemon::new(&config(FAST, &["alpha"]).replace(
        "path = \"state/state.redb\"\n",
        "backend = \"postgres\"\nhistory_retention = \"forever\"\n",
    ));
    let out = d.cli(&["check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs `url`"), "{err}");
    assert!(err.contains("keyrot.toml:"), "{err}");
}
