//! Tests of the file permission checks. They run as root, which owns
//! every file a test makes: root-owned files pass, so each refusal here
//! comes from a mode, an ACL or a `chown` to uid 65534 (nobody).

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};

use super::rules::acl_for_tests::{self as acl, NO_ID};
use super::*;

/// An unprivileged uid that is neither root nor the test's own.
const NOBODY: u32 = 65534;

/// Sets `path`'s mode.
fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes `text` to `path` with `mode`.
fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    chmod(path, mode);
}

/// A config directory: keyrot.toml (0644) with the master key in `dir`,
/// plus `extra`.
fn config_dir(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let main = tmp.path().join("keyrot.toml");
    let text = format!(
        "[store]\nmaster_key_file = \"master.key\"\n\n[[provider]]\nname = \"local\"\ntype = \"local\"\n\n\
         [[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"out/{{name}}\"\n\n\
         [[policy]]\nname = \"standard\"\n{extra}"
    );
    write(&main, &text, 0o644);
    (tmp, main)
}

/// The messages `load_checked` refuses `main` with (empty when accepted).
fn refusals(main: &Path) -> Vec<String> {
    match load_checked(main) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts one refusal containing every part of `parts`.
fn assert_refused(found: &[String], parts: &[&str]) {
    assert!(
        found
            .iter()
            .any(|m| parts.iter().all(|part| m.contains(part))),
        "no refusal with {parts:?} in {found:#?}"
    );
}

#[test]
fn a_config_others_can_write_is_refused_and_a_0644_one_is_not() {
    let (_tmp, main) = config_dir("");
    assert_eq!(refusals(&main), Vec::<String>::new());
    chmod(&main, 0o666);
    let p = main.display().to_string();
    let found = refusals(&main);
    assert_refused(
        &found,
        &[
            &format!("{p}:1:1: {p} is writable by group, others (mode 0666)"),
            &format!("run `chmod go-w {p}`"),
        ],
    );
    chmod(&main, 0o620);
    assert_refused(&refusals(&main), &["writable by group (mode 0620)"]);
}

#[test]
fn a_config_directory_others_can_write_is_refused() {
    let (tmp, main) = config_dir("");
    chmod(tmp.path(), 0o777);
    let d = tmp.path().display().to_string();
    assert_refused(
        &refusals(&main),
        &[
            &format!("directory {d} is writable by group, others (mode 0777)"),
            &format!("run `chmod go-w {d}`"),
        ],
    );
    // The sticky bit is not enough for the directory a file is in.
    chmod(tmp.path(), 0o1777);
    assert_refused(&refusals(&main), &["writable by group, others (mode 1777)"]);
    chmod(tmp.path(), 0o700);
}

#[test]
fn an_open_conf_d_is_refused_even_when_empty() {
    let (tmp, main) = config_dir("");
    let conf_d = tmp.path().join("conf.d");
    fs::create_dir(&conf_d).unwrap();
    chmod(&conf_d, 0o755);
    assert_eq!(refusals(&main), Vec::<String>::new());
    chmod(&conf_d, 0o777);
    let d = conf_d.display().to_string();
    assert_refused(
        &refusals(&main),
        &[&format!(
            "{d}:1:1: directory {d} is writable by group, others"
        )],
    );
}

#[test]
fn a_drop_in_linked_to_another_users_file_is_refused() {
    let (tmp, main) = config_dir("");
    let conf_d = tmp.path().join("conf.d");
    fs::create_dir(&conf_d).unwrap();
    // Someone else's file, in someone else's directory, adding an exec sink.
    let theirs = tempfile::tempdir().unwrap();
    let target = theirs.path().join("evil.toml");
    write(
        &target,
        "[[sink]]\nname = \"x\"\ntype = \"exec\"\ncommand = [\"/bin/true\"]\n",
        0o644,
    );
    let link = conf_d.join("50-x.toml");
    symlink(&target, &link).unwrap();
    assert_eq!(refusals(&main), Vec::<String>::new());
    chown(&target, Some(NOBODY), None).unwrap();
    chown(theirs.path(), Some(NOBODY), None).unwrap();
    let t = target.display().to_string();
    let d = theirs.path().display().to_string();
    let found = refusals(&main);
    assert_refused(
        &found,
        &[
            &format!(
                "{}:1:1: {t} (the target of the link {})",
                link.display(),
                link.display()
            ),
            &format!("is owned by uid {NOBODY}, not by root or keyrot's user (root)"),
            &format!("run `chown root: {t}`"),
        ],
    );
    assert_refused(
        &found,
        &[
            &format!("directory {d} is owned by uid {NOBODY}"),
            &format!("`chown root: {d}`"),
        ],
    );
}

#[test]
fn a_secret_file_others_can_read_is_refused_where_it_is_referenced() {
    let (tmp, main) = config_dir("\n[[psk]]\nid = \"a\"\nkey = { file = \"psk.hex\" }\n");
    let psk = tmp.path().join("psk.hex");
    write(&psk, &"5a".repeat(32), 0o600);
    assert_eq!(refusals(&main), Vec::<String>::new());
    chmod(&psk, 0o644);
    let m = main.display();
    let p = psk.display();
    assert_refused(
        &refusals(&main),
        &[&format!(
            "{m}:18:7: psk \"a\" `key` (file {p}): {p} is readable by group, others (mode 0644); \
             a secret file must be private: run `chmod 600 {p}`"
        )],
    );
    chmod(&psk, 0o602);
    assert_refused(&refusals(&main), &["is writable by others (mode 0602)"]);
    chmod(&psk, 0o400);
    chown(&psk, Some(NOBODY), None).unwrap();
    assert_refused(
        &refusals(&main),
        &[
            &format!("{m}:18:7: psk \"a\" `key`"),
            &format!(
                "is owned by uid {NOBODY}, not by root or keyrot's user (root): its owner can read and change it; run `chown root: {p}`"
            ),
        ],
    );
}

#[test]
fn a_missing_secret_file_is_left_to_resolving() {
    let (_tmp, main) = config_dir("\n[[psk]]\nid = \"a\"\nkey = { file = \"nope.hex\" }\n");
    assert_eq!(refusals(&main), Vec::<String>::new());
}

#[test]
fn a_master_key_of_another_uid_in_an_open_directory_is_refused() {
    let (tmp, main) = config_dir("");
    let keys = tmp.path().join("keys");
    fs::create_dir(&keys).unwrap();
    chmod(&keys, 0o777);
    // Not there yet: the directory it would be created in counts.
    let text = fs::read_to_string(&main).unwrap().replace(
        "master_key_file = \"master.key\"",
        "master_key_file = \"keys/master.key\"",
    );
    write(&main, &text, 0o644);
    let k = keys.display().to_string();
    assert_refused(
        &refusals(&main),
        &[
            &format!("the master key (store.master_key_file {k}/master.key)"),
            &format!("directory {k} is writable by group, others (mode 0777)"),
        ],
    );
    let key = keys.join("master.key");
    write(&key, &"ab".repeat(32), 0o600);
    chown(&key, Some(NOBODY), None).unwrap();
    let found = refusals(&main);
    assert_refused(&found, &[&format!("directory {k} is writable")]);
    assert_refused(
        &found,
        &[&format!("{} is owned by uid {NOBODY}", key.display())],
    );
    chmod(&keys, 0o700);
    chown(&key, Some(0), None).unwrap();
    assert_eq!(refusals(&main), Vec::<String>::new());
}

#[test]
fn a_master_key_credential_is_checked_instead_of_the_file() {
    let (tmp, main) = config_dir("");
    let cfg = load(&main).unwrap();
    let creds = tmp.path().join("creds");
    fs::create_dir(&creds).unwrap();
    chmod(&creds, 0o500);
    let cred = creds.join(CREDENTIAL_NAME);
    write(&cred, &"ab".repeat(32), 0o444);
    // The unused key file beside the config may be anything.
    write(&tmp.path().join("master.key"), "x", 0o666);
    let found: Vec<String> = master_key(&cfg, Some(&creds), &mut Checker::new())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_refused(
        &found,
        &[
            "the master key (credential \"master-key\")",
            "readable by group, others (mode 0444)",
        ],
    );
    chmod(&cred, 0o400);
    assert!(master_key(&cfg, Some(&creds), &mut Checker::new()).is_empty());
}

#[test]
fn a_systemd_credential_with_its_acl_passes_and_a_group_entry_does_not() {
    // As systemd writes it: root's, mode 0400, read for the service's user
    // by an ACL entry, so the mode shows the mask as 0440.
    const SERVICE_UID: u32 = 4242;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("bao-token");
    write(&cred, "s3cret", 0o400);
    let entries = |extra: Option<(u16, u16, u32)>| {
        let mut e = vec![(acl::USER_OBJ, 4, NO_ID), (acl::USER, 4, SERVICE_UID)];
        e.push((acl::GROUP_OBJ, 0, NO_ID));
        e.extend(extra);
        e.extend([(acl::MASK, 4, NO_ID), (acl::OTHER, 0, NO_ID)]);
        e
    };
    acl::set(&cred, &entries(None));
    assert_eq!(
        fs::metadata(&cred).unwrap().permissions().mode() & 0o777,
        0o440
    );
    let check = |path: &Path| Checker::for_uid(SERVICE_UID).file(path, Holds::Secret);
    assert_eq!(check(&cred), Vec::<String>::new());
    // The same mode without the ACL: the group can read it.
    let plain = dir.path().join("plain");
    write(&plain, "s3cret", 0o440);
    assert_refused(&check(&plain), &["readable by group (mode 0440)"]);
    // An ACL that lets a group read it.
    acl::set(&cred, &entries(Some((acl::GROUP, 4, 100))));
    assert_refused(&check(&cred), &["readable by group 100 (mode 0440)"]);
    // Or another user.
    acl::set(
        &cred,
        &[
            (acl::USER_OBJ, 4, NO_ID),
            (acl::USER, 4, SERVICE_UID),
            (acl::USER, 6, 1000),
            (acl::GROUP_OBJ, 0, NO_ID),
            (acl::MASK, 6, NO_ID),
            (acl::OTHER, 0, NO_ID),
        ],
    );
    assert_refused(
        &check(&cred),
        &["readable by user 1000 and writable by user 1000 (mode 0460)"],
    );
}

#[test]
fn directories_above_may_be_sticky_but_not_open() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    let own = shared.join("own");
    fs::create_dir_all(&own).unwrap();
    chmod(&own, 0o700);
    let file = own.join("keyrot.toml");
    write(&file, "", 0o644);
    // Like /tmp: others cannot rename `own`, which is not theirs.
    chmod(&shared, 0o1777);
    assert_eq!(
        Checker::new().file(&file, Holds::Config),
        Vec::<String>::new()
    );
    chmod(&shared, 0o777);
    let s = shared.display().to_string();
    assert_eq!(
        Checker::new().file(&file, Holds::Config),
        vec![format!(
            "directory {s} is writable by group, others (mode 0777): they could replace what it holds; run `chmod go-w {s}`"
        )]
    );
    chmod(&shared, 0o755);
}

#[test]
fn keyrots_own_user_is_trusted_like_root() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("psk.hex");
    write(&file, "x", 0o600);
    chown(&file, Some(NOBODY), None).unwrap();
    assert!(
        Checker::for_uid(NOBODY)
            .file(&file, Holds::Secret)
            .is_empty()
    );
    assert_refused(
        &Checker::for_uid(4242).file(&file, Holds::Secret),
        &[
            &format!("owned by uid {NOBODY}, not by root or keyrot's user (4242)"),
            "`chown 4242: ",
        ],
    );
}

#[test]
fn a_credential_reference_is_checked_in_the_credentials_directory() {
    let (tmp, main) = config_dir("\n[[psk]]\nid = \"a\"\nkey = { credential = \"psk\" }\n");
    let cfg = load(&main).unwrap();
    let creds = tmp.path().join("creds");
    fs::create_dir(&creds).unwrap();
    chmod(&creds, 0o500);
    let cred = creds.join("psk");
    write(&cred, &"5a".repeat(32), 0o640);
    let found: Vec<String> = secret_files(&cfg, Some(&creds), &mut Checker::new())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_refused(
        &found,
        &[&format!(
            "{}:18:7: psk \"a\" `key` (credential \"psk\"): {} is readable by group (mode 0640)",
            main.display(),
            cred.display()
        )],
    );
    chmod(&cred, 0o400);
    assert!(secret_files(&cfg, Some(&creds), &mut Checker::new()).is_empty());
    // Without a credentials directory there is nothing to check here:
    // resolving reports the missing directory.
    assert!(secret_files(&cfg, None, &mut Checker::new()).is_empty());
}
