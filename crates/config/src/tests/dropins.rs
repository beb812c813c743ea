//! Drop-in merging, relative path resolution and the shipped example
//! configs, against real files in a temporary directory.

use std::fs;
use std::path::{Path, PathBuf};

use super::{dur, ok};
use crate::load;
use crate::sinks::SinkKind;

// Through the crate root: the tests of `notify` import `tests`.
use crate::NotifyTransport;

/// Writes `files` (relative path → text) under a fresh temp dir.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let path = dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

const MAIN: &str = r#"[daemon]
control_socket = "/main.sock"
shutdown_timeout = "10s"
[daemon.retry]
attempts = 3

[[provider]]
name = "main"
type = "local"
"#;

const DROP_A: &str = r#"[daemon]
control_socket = "/a.sock"
[daemon.retry]
max = "1h"

[[provider]]
name = "from-a"
type = "local"
"#;

const DROP_B: &str = r#"[daemon]
shutdown_timeout = "20s"

[[provider]]
name = "from-b"
type = "local"
"#;

#[test]
fn drop_ins_merge_in_file_name_order() {
    let dir = tree(&[
        ("keyrot.toml", MAIN),
        // Written out of order: the merge must sort by file name.
        ("conf.d/20-b.toml", DROP_B),
        ("conf.d/10-a.toml", DROP_A),
        ("conf.d/README", "not toml"),
        ("conf.d/.hidden.toml", "this would not parse"),
    ]);
    let main = dir.path().join("keyrot.toml");
    let cfg = load(&main).unwrap();
    let conf_d = dir.path().join("conf.d");
    assert_eq!(
        cfg.files,
        vec![
            main.clone(),
            conf_d.join("10-a.toml"),
            conf_d.join("20-b.toml")
        ]
    );
    // Fields override one by one; untouched ones survive from earlier files.
    assert_eq!(cfg.daemon.control_socket, PathBuf::from("/a.sock"));
    assert_eq!(cfg.daemon.shutdown_timeout, dur("20s"));
    assert_eq!(cfg.daemon.retry.attempts, 3);
    assert_eq!(cfg.daemon.retry.max, dur("1h"));
    assert_eq!(cfg.daemon.retry.initial, dur("10s"));
    // Entries append, in file order.
    let names: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["main", "from-a", "from-b"]);
}

#[test]
fn errors_in_drop_ins_point_into_the_drop_in() {
    let dup = "\n[[provider]]\nname = \"main\"\ntype = \"local\"\n";
    let dir = tree(&[("keyrot.toml", MAIN), ("conf.d/50-dup.toml", dup)]);
    let main = dir.path().join("keyrot.toml");
    let err = load(&main).unwrap_err();
    let drop_in = dir.path().join("conf.d/50-dup.toml");
    let want = format!(
        "{}:3:8: duplicate provider name \"main\" (first defined at {}:8:8)",
        drop_in.display(),
        main.display()
    );
    assert_eq!(err.to_string(), want);
}

#[test]
fn an_unresolvable_secret_in_a_drop_in_points_into_the_drop_in() {
    let psk = "\n[[psk]]\nid = \"p\"\nkey = { credential = \"psk-p\" }\n";
    let dir = tree(&[("keyrot.toml", MAIN), ("conf.d/30-psk.toml", psk)]);
    let cfg = load(&dir.path().join("keyrot.toml")).unwrap();
    let creds = tempfile::tempdir().unwrap();
    let diags = crate::check_secrets_in(&cfg, Some(creds.path()));
    assert_eq!(diags.len(), 1, "{diags:?}");
    let want = format!(
        "{}:4:7: psk \"p\" `key` (credential \"psk-p\"): ",
        dir.path().join("conf.d/30-psk.toml").display()
    );
    assert!(diags[0].to_string().starts_with(&want), "{}", diags[0]);
    // Once the credential exists, nothing is reported.
    fs::write(creds.path().join("psk-p"), "00".repeat(32)).unwrap();
    assert!(crate::check_secrets_in(&cfg, Some(creds.path())).is_empty());
}

#[test]
fn a_syntax_error_in_a_drop_in_is_reported_with_its_own_lines() {
    let dir = tree(&[
        ("keyrot.toml", MAIN),
        ("conf.d/10-bad.toml", "\n\n[store\n"),
    ]);
    let err = load(&dir.path().join("keyrot.toml")).unwrap_err();
    let want = format!("{}:3:", dir.path().join("conf.d/10-bad.toml").display());
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    assert!(err.to_string().starts_with(&want), "{err}");
}

#[test]
fn relative_paths_resolve_against_their_own_file() {
    let main = r#"[store]
path = "../state/state.redb"
master_key_file = "/abs/master.key"

[daemon]
control_socket = "run/control.sock"

[[sink]]
name = "out"
type = "file"
path = "out/{name}.env"
"#;
    let drop = "[notify]\ntransport = \"file\"\ndir = \"mail\"\n";
    let dir = tree(&[("etc/keyrot.toml", main), ("etc/conf.d/mail.toml", drop)]);
    let cfg = load(&dir.path().join("etc/keyrot.toml")).unwrap();
    let etc = dir.path().join("etc");
    assert_eq!(cfg.store.path, etc.join("../state/state.redb"));
    assert_eq!(cfg.store.master_key_file, PathBuf::from("/abs/master.key"));
    assert_eq!(cfg.daemon.control_socket, etc.join("run/control.sock"));
    let SinkKind::File(f) = &cfg.sinks[0].kind else {
        panic!("not a file sink")
    };
    assert_eq!(Path::new(&f.path), etc.join("out/{name}.env"));
    // The drop-in's relative path is relative to conf.d, where it is written.
    let NotifyTransport::File { dir: mail } = &cfg.notify.transport else {
        panic!("expected the file transport");
    };
    assert_eq!(mail, &etc.join("conf.d/mail"));
}

#[test]
fn load_str_resolves_against_the_named_directory() {
    let cfg = ok("[store]\npath = \"data/state.redb\"\n");
    assert_eq!(cfg.store.path, PathBuf::from("/etc/keyrot/data/state.redb"));
}

/// A shipped example config.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name)
}

#[test]
fn the_production_example_validates() {
    let cfg = load(&example("keyrot.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.store.path, PathBuf::from("/var/lib/keyrot/state.redb"));
    assert!(!cfg.store.create_master_key);
    assert!(!cfg.providers.is_empty() && !cfg.keys.is_empty());
}

#[test]
fn the_demo_config_validates_and_rotates_fast() {
    let path = example("demo.toml");
    let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let target = std::path::absolute(path.parent().unwrap())
        .unwrap()
        .join("../target/keyrot-demo");
    assert_eq!(cfg.store.path, target.join("state.redb"));
    assert_eq!(cfg.store.master_key_file, target.join("master.key"));
    assert!(cfg.store.create_master_key);
    assert_eq!(cfg.daemon.control_socket, target.join("control.sock"));
    assert_eq!(cfg.daemon.sync_schedule.as_str(), "*/10 * * * * *");
    assert_eq!(
        (
            cfg.daemon.retry.attempts,
            cfg.daemon.retry.initial,
            cfg.daemon.retry.max
        ),
        (3, dur("1s"), dur("5s"))
    );
    let p = cfg.policy("demo").unwrap();
    assert_eq!(p.new_key_lifetime, Some(dur("90s")));
    assert_eq!(p.rotate_before_expiry, Some(dur("60s")));
    assert_eq!(p.overlap, dur("10s"));
    assert!(p.windows.is_empty() && !p.jitter);
    assert_eq!(cfg.keys.len(), 3);
    assert!(cfg.keys.iter().all(|k| !k.scopes.is_empty()));
    let SinkKind::File(out) = &cfg.sink("out").unwrap().kind else {
        panic!("not a file sink")
    };
    assert_eq!(Path::new(&out.path), target.join("out/{name}.env"));
    let NotifyTransport::File { dir } = &cfg.notify.transport else {
        panic!("expected the file transport");
    };
    assert_eq!(dir, &target.join("mail"));
}
