//! `keyrot store backup` and `keyrot store verify` with the real binary, and
//! what a damaged store does: backups taken while rotations run are
//! consistent, open, verify and restore; a backup never overwrites a file
//! unless forced, nor the store; verify passes a sound store and reports a
//! broken audit chain and a secret that does not open; a truncated or
//! garbage store is refused by the daemon and the CLI with a clear error
//! and left byte for byte as it was; after kill -9 the store is read,
//! verified and backed up without a daemon and the daemon opens it again;
//! a second daemon on the same store (another socket) refuses to start.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{Daemon, config, wait_until};

/// Keys live 6 s: rotations run all the time.
const FAST: &str = r#"new_key_lifetime = "6s"
rotate_before_expiry = "3s"
overlap = "1s"
jitter = false"#;

/// Keys live an hour: nothing happens unless asked.
const SLOW: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts success and returns stdout.
fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts exit status 1 and returns stdout + stderr.
fn fails(out: Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn store_path(d: &Daemon) -> PathBuf {
    d.dir.join("state/state.redb")
}

/// A directory whose config points at `store` (with `d`'s master key) and
/// whose control socket nothing answers on.
fn config_at(d: &Daemon, store: &Path) -> Daemon {
    let cfg = config(SLOW, &["alpha"])
        .replace(
            "path = \"state/state.redb\"",
            &format!("path = \"{}\"", store.display()),
        )
        .replace(
            "master_key_file = \"master.key\"",
            &format!(
                "master_key_file = \"{}\"",
                d.dir.join("master.key").display()
            ),
        )
        .replace("create_master_key = true", "create_master_key = false");
    Daemon::new(&cfg)
}

/// Waits until the slot's first key is issued.
fn wait_for_key(d: &Daemon) {
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.status()["keys"][0]["key_id"].is_string()
        }),
        "no key issued; log:\n{}",
        d.log()
    );
}

/// Stops the daemon with SIGTERM and waits for a clean exit.
fn stop(d: &mut Daemon) {
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(15)).expect("did not stop");
    assert!(st.success(), "{st:?}; log:\n{}", d.log());
}

/// The rotations of a store, by id.
fn rotations_by_id(d: &Daemon) -> std::collections::BTreeMap<String, serde_json::Value> {
    d.rotations()
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn backups_taken_while_rotations_run_verify_open_and_restore() {
    let mut d = Daemon::new(&config(FAST, &["alpha", "beta"]));
    d.start();
    assert!(
        wait_until(Duration::from_secs(60), || !d
            .completed_replacements("local/alpha")
            .is_empty()),
        "log:\n{}",
        d.log()
    );
    let backups = d.dir.join("backups");
    fs::create_dir(&backups).unwrap();
    let mut last = PathBuf::new();
    const BACKUPS: usize = 5;
    for n in 0..BACKUPS {
        last = backups.join(format!("b{n}.redb"));
        let out = ok(
            d.cli(&["store", "backup", last.to_str().unwrap()]),
            "store backup",
        );
        assert!(out.contains("taken by the running daemon"), "{out}");
        assert!(out.contains("does NOT contain the master key"), "{out}");
        assert!(out.contains("To restore: stop keyrot"), "{out}");
        let mode = fs::metadata(&last).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Each backup is a whole store: it verifies (audit chain, every
        // cross-reference, every sealed secret under the master key).
        let at = config_at(&d, &last);
        let report = ok(at.cli(&["store", "verify"]), "store verify of a backup");
        assert!(
            report.contains("store verified: no problems found"),
            "{report}"
        );
        // The next backup is taken once the daemon has committed rotation
        // work this one does not hold.
        if n + 1 < BACKUPS {
            let held = rotations_by_id(&at);
            assert!(
                wait_until(Duration::from_secs(30), || rotations_by_id(&d) != held),
                "no rotation moved after backup {n}; log:\n{}",
                d.log()
            );
        }
    }
    // The last backup holds the rotations the daemon had: finished ones
    // exactly as they still are, unfinished ones as a state they passed.
    let at = config_at(&d, &last);
    let backed_up = rotations_by_id(&at);
    assert!(!backed_up.is_empty());
    let live = rotations_by_id(&d);
    for (id, r) in &backed_up {
        let now = live.get(id).unwrap_or_else(|| panic!("{id} not live"));
        if ["Completed", "Failed", "Aborted"].contains(&r["state"].as_str().unwrap()) {
            assert_eq!(r, now, "rotation {id} differs");
        }
    }
    stop(&mut d);

    // Restore: the backup copied over a store path, and keyrot starts on it.
    let mut restored = Daemon::new(&config(FAST, &["alpha", "beta"]));
    fs::create_dir_all(restored.dir.join("state")).unwrap();
    fs::copy(&last, store_path(&restored)).unwrap();
    fs::copy(d.dir.join("master.key"), restored.dir.join("master.key")).unwrap();
    restored.start();
    let after = rotations_by_id(&restored);
    for id in backed_up.keys() {
        assert!(after.contains_key(id), "{id} lost in the restore");
    }
    let report = ok(restored.cli(&["store", "verify"]), "verify after restore");
    assert!(report.contains("checked by the running daemon"), "{report}");
}

#[test]
fn without_a_daemon_the_cli_backs_up_the_store_itself() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    wait_for_key(&d);
    stop(&mut d);
    let before = fs::read(store_path(&d)).unwrap();
    let target = d.dir.join("offline.redb");
    let out = d.cli(&["store", "backup", target.to_str().unwrap()]);
    let stdout = ok(out.clone(), "offline backup");
    assert!(
        stdout.contains("read from the store file (no daemon runs)"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("daemon not running"));
    assert!(
        fs::read(store_path(&d)).unwrap() == before,
        "store modified"
    );
    let at = config_at(&d, &target);
    ok(at.cli(&["store", "verify"]), "verify of the offline backup");
    assert_eq!(rotations_by_id(&at), rotations_by_id(&d));
}

#[test]
fn a_backup_never_overwrites_unless_forced_and_never_the_store() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    wait_for_key(&d);
    let target = d.dir.join("b.redb");
    fs::write(&target, b"an older backup").unwrap();
    let err = fails(
        d.cli(&["store", "backup", target.to_str().unwrap()]),
        "backup over a file",
    );
    assert!(
        err.contains("it exists (pass --force to replace it)"),
        "{err}"
    );
    assert_eq!(fs::read(&target).unwrap(), b"an older backup");

    ok(
        d.cli(&["store", "backup", target.to_str().unwrap(), "--force"]),
        "forced backup",
    );
    assert!(fs::read(&target).unwrap() != b"an older backup");
    ok(
        config_at(&d, &target).cli(&["store", "verify"]),
        "verify forced backup",
    );

    // The store itself, even forced and named another way: refused.
    let aliased = d.dir.join("state/../state/state.redb");
    let err = fails(
        d.cli(&["store", "backup", aliased.to_str().unwrap(), "--force"]),
        "backup over the store",
    );
    assert!(err.contains("it is the store itself"), "{err}");
    ok(d.cli(&["store", "verify"]), "store still sound");
}

#[test]
fn verify_passes_a_sound_store_live_and_offline() {
    let mut d = Daemon::new(&config(SLOW, &["alpha", "beta"]));
    d.start();
    wait_for_key(&d);
    ok(d.cli(&["rotate", "alpha", "--wait"]), "rotate");
    let out = ok(d.cli(&["store", "verify"]), "live verify");
    assert!(out.contains("checked by the running daemon"), "{out}");
    assert!(out.contains("integrity    ok:"), "{out}");
    assert!(out.contains("hash chain and head verified"), "{out}");
    assert!(out.contains("store verified: no problems found"), "{out}");
    let json = d.json(&["store", "verify", "--json"]);
    assert_eq!(json["live"], true);
    assert_eq!(json["problems"].as_array().unwrap().len(), 0);
    assert!(json["audit_entries"].as_u64().unwrap() > 0);

    stop(&mut d);
    let before = fs::read(store_path(&d)).unwrap();
    let out = ok(d.cli(&["store", "verify"]), "offline verify");
    assert!(out.contains("checked with the daemon stopped"), "{out}");
    assert!(out.contains("store verified: no problems found"), "{out}");
    assert!(fs::read(store_path(&d)).unwrap() == before, "verify wrote");
}

/// Alters the stopped daemon's store with redb directly (as any other tool
/// could): one audit entry's detail, and a sealed secret that is garbage.
fn tamper(store: &Path) -> String {
    const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");
    const SECRETS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("secrets");
    const ROTATIONS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("rotations");
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Database::open(store).unwrap();
    let rotation = {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(ROTATIONS).unwrap();
        let (k, _) = t.first().unwrap().unwrap();
        k.value().to_string()
    };
    let txn = db.begin_write().unwrap();
    {
        let mut audit = txn.open_table(AUDIT).unwrap();
        let mut entry: serde_json::Value =
            serde_json::from_slice(audit.get(2).unwrap().unwrap().value()).unwrap();
        entry["detail"] = "nothing happened here".into();
        audit
            .insert(2, serde_json::to_vec(&entry).unwrap().as_slice())
            .unwrap();
        let mut secrets = txn.open_table(SECRETS).unwrap();
        secrets
            .insert(rotation.as_str(), [7u8; 60].as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    rotation
}

#[test]
fn verify_reports_a_broken_audit_chain_and_a_secret_that_does_not_open() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    wait_for_key(&d);
    stop(&mut d);
    let rotation = tamper(&store_path(&d));
    let secret_problem = format!("secret \"{rotation}\" does not open under the master key");

    let out = fails(d.cli(&["store", "verify"]), "offline verify");
    assert!(out.contains("audit chain broken at entry 2"), "{out}");
    assert!(out.contains(&secret_problem), "{out}");
    assert!(out.contains("store verify FAILED"), "{out}");

    // The daemon still opens the store (the damage is in records), and
    // its verify finds the same.
    d.start();
    let out = fails(d.cli(&["store", "verify"]), "live verify");
    assert!(out.contains("checked by the running daemon"), "{out}");
    assert!(out.contains("audit chain broken at entry 2"), "{out}");
    assert!(out.contains(&secret_problem), "{out}");
}

/// The daemon and the CLI refuse the damaged store at `d`'s path with an
/// error naming it and what to do, and leave it byte for byte as it was.
fn assert_refused_everywhere(d: &mut Daemon) {
    let path = store_path(d);
    let before = fs::read(&path).unwrap();
    let name = path.display().to_string();

    d.spawn();
    let st = d
        .wait_exit(Duration::from_secs(15))
        .expect("daemon kept running");
    assert!(!st.success());
    let log = d.log();
    for needle in [
        &name,
        "keyrot store verify",
        "restore a backup",
        "will not repair, rewrite or replace it",
    ] {
        assert!(
            log.contains(needle),
            "{needle:?} not in the daemon's error:\n{log}"
        );
    }
    let err = text(&d.cli(&["status"]).stderr);
    assert!(err.contains(&name) && err.contains("damaged"), "{err}");
    let out = fails(d.cli(&["store", "verify"]), "verify of a damaged store");
    assert!(out.contains("the database engine cannot open it"), "{out}");
    let out = d.cli(&["store", "backup", d.dir.join("b.redb").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&name), "{}", text(&out.stderr));
    assert!(!d.dir.join("b.redb").exists());
    assert!(
        fs::read(&path).unwrap() == before,
        "the damaged store was modified"
    );
}

#[test]
fn a_truncated_store_is_refused_clearly_and_left_unchanged() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    wait_for_key(&d);
    stop(&mut d);
    let bytes = fs::read(store_path(&d)).unwrap();
    fs::write(store_path(&d), &bytes[..bytes.len() / 2]).unwrap();
    assert_refused_everywhere(&mut d);
}

#[test]
fn a_garbage_store_is_refused_clearly_and_left_unchanged() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    fs::create_dir_all(d.dir.join("state")).unwrap();
    let mut x: u32 = 0x1234_5678;
    let garbage: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    fs::write(store_path(&d), &garbage).unwrap();
    fs::set_permissions(store_path(&d), fs::Permissions::from_mode(0o600)).unwrap();
    assert_refused_everywhere(&mut d);
}

#[test]
fn after_kill_9_the_store_is_read_without_a_daemon_and_reopens() {
    let mut d = Daemon::new(&config(FAST, &["alpha"]));
    d.start();
    assert!(wait_until(Duration::from_secs(60), || !d
        .completed_replacements("local/alpha")
        .is_empty()));
    d.kill9();
    let before = fs::read(store_path(&d)).unwrap();
    // Without the daemon: status, verify and backup read a copy recovered
    // in memory; the file is left for the daemon to recover.
    let status = d.json(&["status", "--json"]);
    assert_eq!(status["live"], false);
    let out = ok(d.cli(&["store", "verify"]), "verify after kill -9");
    assert!(out.contains("not shut down cleanly"), "{out}");
    assert!(out.contains("store verified: no problems found"), "{out}");
    let target = d.dir.join("after-kill.redb");
    ok(
        d.cli(&["store", "backup", target.to_str().unwrap()]),
        "backup after kill -9",
    );
    assert!(fs::read(store_path(&d)).unwrap() == before, "file modified");
    // The daemon recovers the file and carries on rotating.
    let done = d.completed_replacements("local/alpha").len();
    d.start();
    assert!(
        wait_until(Duration::from_secs(60), || d
            .completed_replacements("local/alpha")
            .len()
            > done),
        "log:\n{}",
        d.log()
    );
    ok(d.cli(&["store", "verify"]), "verify after restart");
}

#[test]
fn a_second_daemon_on_the_same_store_refuses_to_start() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    wait_for_key(&d);
    // Another directory, socket and config, the same store file.
    let other = config_at(&d, &store_path(&d));
    let out = std::process::Command::new(common::bin())
        .args(["run", "--config"])
        .arg(other.config_path())
        .current_dir(&other.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("another keyrot process owns the store"),
        "{err}"
    );
    assert!(!other.dir.join("control.sock").exists());
    ok(d.cli(&["store", "verify"]), "first daemon unharmed");
}
