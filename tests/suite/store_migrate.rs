//! `keyrot store migrate` with the real binary and a real PostgreSQL
//! server: a daemon on redb rotates and stops; the store moves to
//! PostgreSQL, where a daemon starts from it and goes on; then it moves
//! back to a new redb file, where a daemon goes on again. Refused: a
//! migration while the daemon runs, and one into a database that already
//! holds a store.

use crate::common;

use std::fs;
use std::time::Duration;

use common::{Daemon, config, wait_until, write_secret};
use keyrot_core::pgserver::PgServer;
use serde_json::Value;

/// Keys live 6 s: rotations run all the time.
const FAST: &str = r#"new_key_lifetime = "6s"
rotate_before_expiry = "3s"
overlap = "1s"
jitter = false"#;

/// The redb `[store]` lines of the common config.
const REDB_STORE: &str = "path = \"state/state.redb\"\n";

/// The slots of the test.
const SLOTS: [&str; 2] = ["local/alpha", "local/beta"];

/// Runs `keyrot ARGS` against the daemon's config; asserts its exit status.
fn cli_ok(d: &Daemon, args: &[&str], ok: bool) -> (String, String) {
    let out = d.cli(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.success(),
        ok,
        "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// Waits until every slot has at least `n` completed replacements.
fn rotated(d: &Daemon, n: usize) -> bool {
    wait_until(Duration::from_secs(60), || {
        SLOTS.iter().all(|s| d.completed_replacements(s).len() >= n)
    })
}

/// Stops the daemon with SIGTERM.
fn stop(d: &mut Daemon) {
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "log:\n{}", d.log());
}

/// What of `keyrot status --json` does not move with the clock: each
/// key's slot, key id and rotation.
fn keys(d: &Daemon) -> Vec<Value> {
    d.json(&["status", "--json"])["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            serde_json::json!([
                k["slot"],
                k["key_id"],
                k["rotation_id"],
                k["rotation_state"]
            ])
        })
        .collect()
}

#[test]
fn a_store_moves_to_postgres_and_back_and_the_daemon_goes_on() {
    let redb_config = config(FAST, &["alpha", "beta"]);
    assert!(redb_config.contains(REDB_STORE));
    let mut d = Daemon::new(&redb_config);
    d.start();
    assert!(rotated(&d, 1), "no rotation completed; log:\n{}", d.log());
    stop(&mut d);
    let history = d.rotations();
    let status = keys(&d);

    // The configuration for PostgreSQL keeps `path`: the redb file.
    let url = PgServer::shared()
        .fresh_database()
        .unwrap_or_else(|e| panic!("{e}"));
    let url_file = d.dir.join("pg.url");
    write_secret(&url_file, &format!("{url}\n"));
    let pg_store = format!(
        "{REDB_STORE}backend = \"postgres\"\nurl = {{ file = \"{}\" }}\nhistory_retention = \"forever\"\n",
        url_file.display()
    );
    fs::write(d.config_path(), redb_config.replace(REDB_STORE, &pg_store)).unwrap();

    let (out, _) = cli_ok(
        &d,
        &["store", "migrate", "--from", "redb", "--to", "postgres"],
        true,
    );
    assert!(out.contains("store migrated from redb"), "{out}");
    assert!(
        out.contains("to PostgreSQL (postgres://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("hash chain verified"), "{out}");
    assert!(!out.contains(&url), "{out}");
    // Without a daemon, the CLI reads the same store from PostgreSQL.
    assert_eq!(d.rotations(), history);
    assert_eq!(keys(&d), status);
    cli_ok(&d, &["store", "verify"], true);
    // A second migration into the same database is refused.
    let (_, err) = cli_ok(
        &d,
        &["store", "migrate", "--from", "redb", "--to", "postgres"],
        false,
    );
    assert!(err.contains("only into an empty store"), "{err}");

    // A daemon on PostgreSQL starts from the migrated store and goes on.
    d.start();
    let live = d.json(&["status", "--json"]);
    assert_eq!(live["live"], true);
    assert_eq!(live["keys"].as_array().unwrap().len(), 2);
    assert!(
        rotated(&d, 2),
        "no rotation on PostgreSQL; log:\n{}",
        d.log()
    );
    let ids: Vec<&Value> = history.iter().map(|r| &r["id"]).collect();
    let now: Vec<Value> = d.rotations();
    for id in &ids {
        assert!(now.iter().any(|r| &&r["id"] == id), "{id} lost");
    }
    // No migration while it runs.
    let back = d.dir.join("back.redb");
    let back_arg = back.to_str().unwrap();
    let migrate_back = [
        "store", "migrate", "--from", "postgres", "--to", "redb", "--path", back_arg,
    ];
    let (_, err) = cli_ok(&d, &migrate_back, false);
    assert!(err.contains("daemon stopped"), "{err}");
    assert!(!back.exists());
    stop(&mut d);
    let history = d.rotations();
    let status = keys(&d);

    // Back to a new redb file.
    let (out, _) = cli_ok(&d, &migrate_back, true);
    assert!(out.contains("to redb ("), "{out}");
    assert!(out.contains(&format!("set path = \"{back_arg}\"")), "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&back).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    fs::write(
        d.config_path(),
        redb_config.replace(REDB_STORE, &format!("path = \"{back_arg}\"\n")),
    )
    .unwrap();
    assert_eq!(d.rotations(), history);
    assert_eq!(keys(&d), status);
    cli_ok(&d, &["store", "verify"], true);
    d.start();
    let done = d
        .rotations()
        .iter()
        .filter(|r| r["state"] == "Completed")
        .count();
    assert!(
        wait_until(Duration::from_secs(60), || {
            d.rotations()
                .iter()
                .filter(|r| r["state"] == "Completed")
                .count()
                > done
        }),
        "no rotation on the redb copy; log:\n{}",
        d.log()
    );
    stop(&mut d);
}

#[test]
fn a_migration_says_what_it_needs() {
    let d = Daemon::new(&config(FAST, &["alpha"]));
    // The same backend at both ends.
    let (_, err) = cli_ok(
        &d,
        &["store", "migrate", "--from", "redb", "--to", "redb"],
        false,
    );
    assert!(err.contains("--from and --to are both redb"), "{err}");
    // A redb configuration names no database.
    let (_, err) = cli_ok(
        &d,
        &["store", "migrate", "--from", "redb", "--to", "postgres"],
        false,
    );
    assert!(err.contains("set backend = \"postgres\" and url"), "{err}");
}
