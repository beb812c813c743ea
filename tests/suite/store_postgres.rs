//! The daemon on the PostgreSQL backend, with the real binary and a real
//! PostgreSQL server: rotations run and survive kill -9 as on redb; a
//! second daemon on the same database is a standby that serves reads,
//! refuses changes with 503 and the leader's name, and takes over when the
//! leader dies; without a daemon, `status`, `store backup` (a redb file)
//! and `store verify` read the database; no secret reaches the log or the
//! mail.

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
    pg_daemon_at(&url, keys)
}

/// A daemon on the store in the database `url` (a lease of 3 s, its URL
/// in `pg.url`: `common::store::PG_STORE`).
pub(crate) fn pg_daemon_at(url: &str, keys: &[&str]) -> Daemon {
    let d = Daemon::new("");
    write_secret(&d.dir.join("pg.url"), &format!("{url}\n"));
    let text = common::store::on_postgres(&config(FAST, keys)).replacen(
        common::store::PG_STORE,
        &format!(
            "{}history_retention = \"forever\"\n",
            common::store::PG_STORE
        ),
        1,
    );
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

#[test]
fn a_standby_serves_reads_refuses_changes_and_takes_over() {
    let url = PgServer::shared()
        .fresh_database()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut leader = pg_daemon_at(&url, &["alpha"]);
    leader.start();
    leader.wait_first_key();
    let mut standby = pg_daemon_at(&url, &["alpha"]);
    fs::copy(
        leader.dir.join("master.key"),
        standby.dir.join("master.key"),
    )
    .unwrap();
    standby.start();

    // The standby reads the shared store and knows who leads.
    let st = standby.json(&["status", "--json"]);
    assert_eq!(st["instance"]["role"], "standby", "{st}");
    let lead = leader.json(&["status", "--json"]);
    assert_eq!(lead["instance"]["role"], "leader", "{lead}");
    let holder = lead["instance"]["instance"].as_str().unwrap().to_owned();
    assert_eq!(st["lease"]["holder"], holder.as_str(), "{st}");
    assert_eq!(st["keys"].as_array().unwrap().len(), 1);
    // It refuses what would change something, naming the leader.
    let out = standby.cli(&["rotate", "alpha", "--reason", "test"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("standby") && err.contains(&holder), "{err}");

    // The leader dies; the standby takes over within the lease and goes on
    // rotating.
    let before = standby.completed_replacements("local/alpha").len();
    leader.kill9();
    assert!(
        wait_until(Duration::from_secs(20), || {
            standby.status()["instance"]["role"] == "leader"
        }),
        "no takeover; log:\n{}",
        standby.log()
    );
    let st = standby.json(&["status", "--json"]);
    assert_eq!(st["instance"]["failovers"], 1, "{st}");
    assert!(st["lease"]["epoch"].as_u64().unwrap() >= 2, "{st}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            standby.completed_replacements("local/alpha").len() > before
        }),
        "no rotation after the takeover; log:\n{}",
        standby.log()
    );
    assert!(standby.log().contains("failover"), "{}", standby.log());
    // The takeover is mailed, once.
    assert!(
        wait_until(Duration::from_secs(20), || {
            common::all_files(&standby.dir.join("mail"))
                .iter()
                .filter(|(_, b)| {
                    String::from_utf8_lossy(b).contains("Subject: [keyrot] failover: ")
                })
                .count()
                == 1
        }),
        "no failover mail; log:\n{}",
        standby.log()
    );

    // A clean stop releases the lease at once.
    standby.signal(libc::SIGTERM);
    assert!(
        standby
            .wait_exit(Duration::from_secs(15))
            .unwrap()
            .success()
    );
    let st = standby.json(&["status", "--json"]);
    assert_eq!(st["lease"]["holder"], st["lease"]["holder"]);
    assert!(
        st["lease"]["expires_at"].as_str().unwrap() <= st["lease"]["read_at"].as_str().unwrap(),
        "{st}"
    );
}
