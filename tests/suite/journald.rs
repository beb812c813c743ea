//! Logging to journald, with the real binary: when `$JOURNAL_STREAM` names
//! the daemon's stderr (as systemd sets it), each line is a native journald
//! datagram with `PRIORITY`, `MESSAGE`, `SYSLOG_IDENTIFIER` and the
//! rotation's `KEYROT_*` fields; otherwise, or with `--log-format text`,
//! lines are text on stderr; `--log-format journald` forces journald, and
//! a line journald cannot take goes to stderr.
//!
//! The journal is a unix datagram socket bound in the test's directory.
//! `tracing-journald` always sends to `/run/systemd/journal/socket`, so the
//! daemon runs in a mount namespace of its own where that path leads to the
//! test's socket (as one hands a container the journal by mounting the
//! socket into it); the machine's journal, if any, is never touched. A mount
//! namespace needs root (CAP_SYS_ADMIN), as the suite runs.

use crate::common;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::ptr;
use std::time::Duration;

use common::datagram::Datagrams;
use common::{Daemon, config, wait_until};

const SLOW: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false"#;

/// One journal entry: its fields in order.
type Entry = Vec<(String, String)>;

/// Decodes a native protocol datagram (`NAME=value` lines, or `NAME`, a
/// little-endian u64 length, the bytes and a newline).
fn decode(mut d: &[u8]) -> Entry {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| panic!("field without newline: {d:?}"));
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            d = &d[nl + 1..];
        } else {
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let start = nl + 9;
            out.push((
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(&d[start..start + len]).into_owned(),
            ));
            assert_eq!(d[start + len], b'\n', "binary field not closed");
            d = &d[start + len + 1..];
        }
    }
    out
}

/// The first value of `name` in `e`.
fn field<'a>(e: &'a Entry, name: &str) -> Option<&'a str> {
    e.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Whether `e` has `name=value` (a field may appear more than once, as when
/// an event and its span both say `step`; journalctl matches any).
fn has(e: &Entry, name: &str, value: &str) -> bool {
    e.iter().any(|(n, v)| n == name && v == value)
}

/// A stand-in journald: every datagram on its socket.
struct Journal(Datagrams);

impl Journal {
    fn bind(path: &Path) -> Journal {
        Journal(Datagrams::bind(path, 1 << 17))
    }

    /// The entries received. An empty datagram is none: journald discards
    /// it, and `tracing-journald` sends one at start to see that journald
    /// is there.
    fn entries(&self) -> Vec<Entry> {
        self.raw()
            .iter()
            .filter(|d| !d.is_empty())
            .map(|d| decode(d))
            .collect()
    }

    fn raw(&self) -> Vec<Vec<u8>> {
        self.0.received()
    }
}

/// What `$JOURNAL_STREAM` the daemon gets.
#[derive(Clone, Copy, Debug)]
enum Stream {
    /// Not set.
    Unset,
    /// The device and inode of its stderr (the log file), as systemd does.
    Matching,
    /// Another inode: stderr was redirected away from the journal.
    Other,
}

/// Gives `cmd` a private mount namespace in which
/// `/run/systemd/journal/socket` is a symlink to `socket` (on a tmpfs over
/// `/run/systemd`, or over `/run` where that does not exist). Mounts made
/// there never reach the machine's namespace.
fn journal_at(cmd: &mut Command, socket: &Path) {
    // Everything the child uses is made before the fork.
    let target = CString::new(socket.as_os_str().as_bytes()).unwrap();
    let over = if Path::new("/run/systemd").is_dir() {
        c"/run/systemd"
    } else {
        c"/run"
    };
    // SAFETY: only async-signal-safe system calls on memory made before
    // the fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                ptr::null(),
            ))?;
            check(libc::mount(
                c"tmpfs".as_ptr(),
                over.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                ptr::null(),
            ))?;
            for dir in [c"/run/systemd", c"/run/systemd/journal"] {
                if libc::mkdir(dir.as_ptr(), 0o755) != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
            }
            check(libc::symlink(
                target.as_ptr(),
                c"/run/systemd/journal/socket".as_ptr(),
            ))
        });
    }
}

/// Starts `keyrot run ARGS` in `d` with stderr on `d.log_path()`, its
/// journal socket leading to `socket`, and `stream`; waits until it
/// answers.
fn start(d: &mut Daemon, args: &[&str], stream: Stream, socket: &Path) {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.log_path())
        .unwrap();
    let meta = log.metadata().unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.arg("run")
        .args(args)
        .arg("--config")
        .arg(d.config_path())
        .current_dir(&d.dir)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    match stream {
        Stream::Unset => {}
        Stream::Matching => {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        Stream::Other => {
            cmd.env(
                "JOURNAL_STREAM",
                format!("{}:{}", meta.dev(), meta.ino() + 1),
            );
        }
    }
    journal_at(&mut cmd, socket);
    d.child = Some(cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start keyrot with its own /run/systemd/journal (a mount namespace needs root): {e}")
    }));
    let ok = wait_until(Duration::from_secs(30), || {
        d.cli(&["status", "--json"]).status.success()
    });
    assert!(ok, "daemon did not become ready; log:\n{}", d.log());
}

/// SIGTERM, and the daemon exits 0.
fn stop(d: &mut Daemon) {
    d.signal(libc::SIGTERM);
    let st = d
        .wait_exit(Duration::from_secs(20))
        .expect("did not stop within the shutdown timeout");
    assert!(st.success(), "exit status {st:?}; log:\n{}", d.log());
}

#[test]
fn under_journal_stream_a_rotation_logs_native_entries_with_its_fields() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    let journal = Journal::bind(&d.dir.join("journal.sock"));
    start(&mut d, &[], Stream::Matching, &journal.0.path);
    d.wait_first_key();

    let id = d.rotate("alpha", "journald test");
    assert!(
        wait_until(Duration::from_secs(30), || d.rotation(&id)["state"]
            == "Completed"),
        "rotation did not complete; entries: {:#?}",
        journal.entries()
    );
    // The completion is logged after the commit the CLI saw: wait for it.
    let completed =
        |e: &Entry| has(e, "KEYROT_ROTATION", &id) && has(e, "KEYROT_STEP", "completed");
    assert!(
        wait_until(Duration::from_secs(10), || journal
            .entries()
            .iter()
            .any(completed)),
        "no completion entry; entries: {:#?}",
        journal.entries()
    );
    let entries = journal.entries();

    // Every entry has the fields journalctl needs.
    for e in &entries {
        assert_eq!(field(e, "SYSLOG_IDENTIFIER"), Some("keyrot"), "{e:?}");
        let p: u8 = field(e, "PRIORITY")
            .unwrap_or_else(|| panic!("no PRIORITY: {e:?}"))
            .parse()
            .unwrap();
        assert!((3..=7).contains(&p), "{e:?}");
        assert!(field(e, "MESSAGE").is_some(), "{e:?}");
    }
    let started = entries
        .iter()
        .find(|e| field(e, "MESSAGE") == Some("keyrot started"))
        .unwrap_or_else(|| panic!("no start entry: {entries:#?}"));
    assert_eq!(field(started, "PRIORITY"), Some("6"));

    // An event inside the step span carries the span's fields.
    let issued = entries
        .iter()
        .find(|e| {
            has(e, "KEYROT_ROTATION", &id)
                && has(e, "MESSAGE", "new key issued; secret sealed into the store")
        })
        .unwrap_or_else(|| panic!("no issue entry for {id}: {entries:#?}"));
    assert_eq!(field(issued, "PRIORITY"), Some("6"));
    assert!(has(issued, "KEYROT_KEY", "local/alpha"), "{issued:?}");
    assert!(has(issued, "KEYROT_PROVIDER", "local"), "{issued:?}");
    assert!(has(issued, "KEYROT_STEP", "issuing"), "{issued:?}");
    let done = d.json(&["rotation", "show", &id, "--json"]);
    assert_eq!(
        field(issued, "KEYROT_NEW_KEY"),
        done["new_key"]["id"].as_str()
    );
    assert!(field(issued, "CODE_FILE").is_some_and(|f| f.ends_with("issue.rs")));

    // The rotation's steps can be followed by its id.
    let steps: BTreeSet<&str> = entries
        .iter()
        .filter(|e| has(e, "KEYROT_ROTATION", &id))
        .flat_map(|e| e.iter().filter(|(n, _)| n == "KEYROT_STEP"))
        .map(|(_, v)| v.as_str())
        .collect();
    for s in ["issuing", "distributing", "completed"] {
        assert!(steps.contains(s), "step {s} missing from {steps:?}");
    }

    // Nothing went to stderr as text, and no datagram holds the secret.
    assert!(
        !d.log().contains("keyrot started"),
        "log lines on stderr too:\n{}",
        d.log()
    );
    let secret = d.sink("alpha").unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret.len() >= 16);
    for raw in journal.raw() {
        assert!(
            !String::from_utf8_lossy(&raw).contains(&secret),
            "secret in a journal entry"
        );
    }
    stop(&mut d);
    assert!(
        journal
            .entries()
            .iter()
            .any(|e| field(e, "MESSAGE") == Some("stopped")),
        "no stop entry"
    );
}

#[test]
fn text_on_stderr_unless_stderr_is_the_journal_or_journald_is_forced() {
    let cases: [(&[&str], Stream, bool); 5] = [
        (&[], Stream::Unset, false),
        (&[], Stream::Other, false),
        (&["--log-format", "text"], Stream::Matching, false),
        (&["--log-format", "json"], Stream::Matching, false),
        (&["--log-format", "journald"], Stream::Unset, true),
    ];
    for (args, stream, journald) in cases {
        let what = format!("{args:?} with JOURNAL_STREAM {stream:?}");
        let mut d = Daemon::new(&config(SLOW, &["alpha"]));
        let journal = Journal::bind(&d.dir.join("journal.sock"));
        start(&mut d, args, stream, &journal.0.path);
        if journald {
            assert!(
                wait_until(Duration::from_secs(10), || journal
                    .entries()
                    .iter()
                    .any(|e| field(e, "MESSAGE") == Some("keyrot started"))),
                "{what}: no journal entry; log:\n{}",
                d.log()
            );
            assert!(
                !d.log().contains("keyrot started"),
                "{what}: text on stderr:\n{}",
                d.log()
            );
        } else {
            // The sink is chosen once: the start line on stderr means no
            // journald sink (whose fallback only serves a failed send).
            assert!(
                wait_until(Duration::from_secs(10), || d
                    .log()
                    .contains("keyrot started")),
                "{what}: no start line on stderr:\n{}",
                d.log()
            );
            let log = d.log();
            let line = log
                .lines()
                .find(|l| l.contains("keyrot started"))
                .unwrap_or_else(|| panic!("{what}: no start line on stderr:\n{log}"));
            if args.contains(&"json") {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["message"], "keyrot started", "{what}");
            } else {
                assert!(line.contains(" INFO "), "{what}: not text: {line}");
                assert!(!line.starts_with('{'), "{what}: not text: {line}");
            }
            assert!(
                journal.raw().is_empty(),
                "{what}: datagrams sent: {:#?}",
                journal.entries()
            );
        }
        stop(&mut d);
    }
}

#[test]
fn a_line_journald_cannot_take_goes_to_stderr() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    let absent = d.dir.join("no-journal.sock");
    start(
        &mut d,
        &["--log-format", "journald"],
        Stream::Unset,
        &absent,
    );
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log()
            .contains("keyrot started")),
        "start line not on stderr:\n{}",
        d.log()
    );
    let log = d.log();
    assert!(
        log.contains("cannot log to journald at /run/systemd/journal/socket"),
        "no explanation:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO keyrot started") && l.contains("socket=")),
        "start line not on stderr:\n{log}"
    );
    stop(&mut d);
    assert!(d.log().contains(" INFO stopped"), "{}", d.log());
}
