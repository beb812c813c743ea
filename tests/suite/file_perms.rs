//! Who may change keyrot's config and read its secrets, through the real
//! binary: `keyrot check` reports every file others could change or read
//! and exits 1, the daemon refuses to start on one, a reload that brings
//! one keeps the old config, and `create_master_key` never writes a key
//! beside a store that already exists.
//!
//! Tests run as root, which owns every file they make and is trusted:
//! each refusal comes from a mode, or from a `chown` to uid 65534.

use crate::common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::Path;
use std::time::Duration;

use common::{Daemon, config, wait_until};

/// An unprivileged uid, neither root nor the test's own.
const NOBODY: u32 = 65534;

const SLOW: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "3s"
jitter = false"#;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `keyrot check`: its exit success and stderr.
fn check(d: &Daemon) -> (bool, String) {
    let out = d.cli(&["check"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the daemon, which must refuse to start; returns its log.
fn refused_start(d: &mut Daemon) -> String {
    d.spawn();
    let st = d
        .wait_exit(Duration::from_secs(20))
        .expect("the daemon should refuse to start");
    assert!(!st.success(), "log:\n{}", d.log());
    assert!(!d.dir.join("control.sock").exists());
    d.log()
}

#[test]
fn a_config_others_can_write_is_refused_by_check_and_at_start() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    let (ok, err) = check(&d);
    assert!(ok, "{err}");
    let main = d.config_path();
    chmod(&main, 0o666);
    let p = main.display().to_string();
    let want = format!(
        "{p}:1:1: {p} is writable by group, others (mode 0666): they could make keyrot run their commands; run `chmod go-w {p}`"
    );
    let (ok, err) = check(&d);
    assert!(!ok);
    assert!(err.contains(&want), "{err}");
    let log = refused_start(&mut d);
    assert!(log.contains(&want), "{log}");
    assert!(!d.dir.join("state/state.redb").exists(), "a store was made");
}

#[test]
fn a_drop_in_linked_to_another_users_file_never_runs_its_exec_sink() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    let marker = d.dir.join("ran");
    let theirs = tempfile::tempdir().unwrap();
    let target = theirs.path().join("evil.toml");
    fs::write(
        &target,
        format!(
            "[[sink]]\nname = \"x\"\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"touch {}\"]\n\n\
             [[key]]\nname = \"beta\"\nprovider = \"local\"\npolicy = \"fast\"\nsinks = [\"x\"]\n",
            marker.display()
        ),
    )
    .unwrap();
    chown(&target, Some(NOBODY), None).unwrap();
    fs::create_dir(d.dir.join("conf.d")).unwrap();
    let link = d.dir.join("conf.d/50-x.toml");
    symlink(&target, &link).unwrap();
    let want = format!(
        "{}:1:1: {} (the target of the link {}) is owned by uid {NOBODY}, not by root or keyrot's user (root): its owner can change it; run `chown root: {}`",
        link.display(),
        target.display(),
        link.display(),
        target.display()
    );
    let (ok, err) = check(&d);
    assert!(!ok);
    assert!(err.contains(&want), "{err}");
    let log = refused_start(&mut d);
    assert!(log.contains(&want), "{log}");
    assert!(!marker.exists(), "the drop-in's exec sink ran");
}

#[test]
fn an_open_conf_d_is_refused() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    let conf_d = d.dir.join("conf.d");
    fs::create_dir(&conf_d).unwrap();
    chmod(&conf_d, 0o777);
    let c = conf_d.display().to_string();
    let want = format!(
        "{c}:1:1: directory {c} is writable by group, others (mode 0777): they could replace what it holds; run `chmod go-w {c}`"
    );
    let (ok, err) = check(&d);
    assert!(!ok);
    assert!(err.contains(&want), "{err}");
    assert!(refused_start(&mut d).contains(&want));
}

#[test]
fn a_psk_file_others_can_read_is_refused_where_it_is_referenced() {
    let text = format!(
        "{}\n[[psk]]\nid = \"caller\"\nkey = {{ file = \"psk.hex\" }}\n",
        config(SLOW, &["alpha"])
    );
    let line = text.lines().count();
    let mut d = Daemon::new(&text);
    let psk = d.dir.join("psk.hex");
    fs::write(&psk, format!("{}\n", "5a".repeat(32))).unwrap();
    chmod(&psk, 0o644);
    let p = psk.display().to_string();
    let want = format!(
        "{}:{line}:7: psk \"caller\" `key` (file {p}): {p} is readable by group, others (mode 0644); a secret file must be private: run `chmod 600 {p}`",
        d.config_path().display()
    );
    let (ok, err) = check(&d);
    assert!(!ok);
    assert!(err.contains(&want), "{err}");
    assert!(refused_start(&mut d).contains(&want));
    // Owned by another uid, even 0600.
    chmod(&psk, 0o600);
    chown(&psk, Some(NOBODY), None).unwrap();
    let (ok, err) = check(&d);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{p} is owned by uid {NOBODY}, not by root or keyrot's user (root): its owner can read and change it; run `chown root: {p}`"
        )),
        "{err}"
    );
    chown(&psk, Some(0), None).unwrap();
    let (ok, err) = check(&d);
    assert!(ok, "{err}");
}

#[test]
fn a_master_key_of_another_uid_in_an_open_directory_is_refused() {
    let text = config(SLOW, &["alpha"]).replace(
        "master_key_file = \"master.key\"",
        "master_key_file = \"keys/master.key\"",
    );
    let mut d = Daemon::new(&text);
    let keys = d.dir.join("keys");
    fs::create_dir(&keys).unwrap();
    chmod(&keys, 0o777);
    let key = keys.join("master.key");
    fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    chmod(&key, 0o600);
    chown(&key, Some(NOBODY), None).unwrap();
    let k = keys.display().to_string();
    let (ok, err) = check(&d);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "directory {k} is writable by group, others (mode 0777)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} is owned by uid {NOBODY}", key.display())),
        "{err}"
    );
    let log = refused_start(&mut d);
    assert!(log.contains(&format!("directory {k} is writable")), "{log}");
    assert!(!d.dir.join("state/state.redb").exists(), "a store was made");
    chmod(&keys, 0o700);
    chown(&key, Some(0), None).unwrap();
    d.start();
}

#[test]
fn a_master_key_credential_others_can_read_is_refused() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    let creds = d.dir.join("creds");
    fs::create_dir(&creds).unwrap();
    chmod(&creds, 0o500);
    let cred = creds.join("master-key");
    fs::write(&cred, format!("{}\n", "ab".repeat(32))).unwrap();
    chmod(&cred, 0o444);
    d.env
        .push(("CREDENTIALS_DIRECTORY".into(), creds.display().to_string()));
    let log = refused_start(&mut d);
    assert!(
        log.contains(&format!(
            "the master key (credential \"master-key\"): {} is readable by group, others (mode 0444)",
            cred.display()
        )),
        "{log}"
    );
    // As systemd leaves it when the file system has no ACLs: 0400.
    chmod(&cred, 0o400);
    d.start();
    assert!(!d.dir.join("master.key").exists());
}

#[test]
fn a_reload_that_opens_the_config_to_others_keeps_the_old_one() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    let main = d.config_path();
    fs::write(&main, config(SLOW, &["alpha", "gamma"])).unwrap();
    chmod(&main, 0o646);
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log()
            .contains("reload rejected")),
        "log:\n{}",
        d.log()
    );
    assert!(
        d.log().contains("is writable by others (mode 0646)"),
        "{}",
        d.log()
    );
    let keys = || {
        d.json(&["status", "--json"])["keys"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(keys(), 1);
    chmod(&main, 0o644);
    d.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || keys() == 2));
}

#[test]
fn create_master_key_never_writes_a_key_beside_an_existing_store() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    d.start();
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).unwrap().success());
    let key = d.dir.join("master.key");
    fs::remove_file(&key).unwrap();
    let log = refused_start(&mut d);
    assert!(
        log.contains(&format!(
            "master key file {} does not exist, but the store {} does",
            key.display(),
            d.dir.join("state/state.redb").display()
        )),
        "{log}"
    );
    assert!(
        log.contains("restore the key file from its backup"),
        "{log}"
    );
    assert!(
        !key.exists(),
        "a new master key was written beside the store"
    );
    // A store that is not one is reported as such, still without a key.
    let store = d.dir.join("state/state.redb");
    fs::write(&store, vec![0x5a; 100_000]).unwrap();
    let log = refused_start(&mut d);
    assert!(
        log.contains(&format!(
            "store {} is damaged or not a keyrot store",
            store.display()
        )),
        "{log}"
    );
    assert!(
        !key.exists(),
        "a new master key was written beside a damaged store"
    );
}
