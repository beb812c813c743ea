//! The service manager's view of the real binary: with `$NOTIFY_SOCKET`
//! set, the daemon says READY=1 (with STATUS=) once it serves, pings
//! WATCHDOG=1 at half of `$WATCHDOG_USEC`, says RELOADING=1 with
//! MONOTONIC_USEC= on SIGHUP and READY=1 when the reload is done, and
//! STOPPING=1 on SIGTERM before it exits 0.
//!
//! The service manager is a unix datagram socket bound in the test's
//! directory, read by a thread.

use crate::common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::datagram::Datagrams;
use common::{Daemon, config, wait_until};

const SLOW: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false"#;

/// A stand-in service manager: every notification, one string per datagram.
struct Manager(Datagrams);

impl Manager {
    fn bind(path: &std::path::Path) -> Manager {
        Manager(Datagrams::bind(path, 4096))
    }

    fn messages(&self) -> Vec<String> {
        self.0
            .received()
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect()
    }

    /// Index of the first message at or after `from` with line `line`.
    fn find(&self, from: usize, line: &str) -> Option<usize> {
        self.messages()
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, m)| m.lines().any(|l| l == line))
            .map(|(i, _)| i)
    }

    /// Waits for a message at or after `from` with line `line`.
    fn wait_for(&self, from: usize, line: &str, d: &Daemon) -> usize {
        assert!(
            wait_until(Duration::from_secs(30), || self.find(from, line).is_some()),
            "no {line} after message {from}; got {:#?}\nlog:\n{}",
            self.messages(),
            d.log()
        );
        self.find(from, line).unwrap()
    }
}

/// The value of `NAME=` in a notification.
fn value<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

/// CLOCK_MONOTONIC now, in microseconds (what MONOTONIC_USEC= counts).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[test]
fn ready_watchdog_reload_and_stop_are_notified() {
    let mut d = Daemon::new(&config(SLOW, &["alpha"]));
    let notify = d.dir.join("notify.sock");
    let manager = Manager::bind(&notify);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.log_path())
        .unwrap();
    let child = Command::new(common::bin())
        .arg("run")
        .arg("--config")
        .arg(d.config_path())
        .current_dir(&d.dir)
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        // systemd sets WATCHDOG_PID to the main pid; unset means "this process".
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    d.child = Some(child);

    // READY=1 with a STATUS=, once the control socket serves.
    let ready = manager.wait_for(0, "READY=1", &d);
    let msg = &manager.messages()[ready];
    let status = value(msg, "STATUS").unwrap_or_else(|| panic!("no STATUS= in {msg:?}"));
    assert!(status.starts_with("running:"), "{msg:?}");
    assert!(status.contains("1 key entr"), "{msg:?}");
    assert!(
        d.dir.join("control.sock").exists(),
        "READY=1 before the control socket"
    );
    assert!(d.cli(&["status", "--json"]).status.success());

    // The watchdog is pinged again and again (every 200 ms here).
    assert!(
        wait_until(Duration::from_secs(30), || manager
            .messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
            >= 3),
        "fewer than 3 WATCHDOG=1: {:#?}",
        manager.messages()
    );

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC= and a STATUS=, then READY=1.
    let before = manager.messages().len();
    let hup_at = monotonic_usec();
    d.signal(libc::SIGHUP);
    let reloading = manager.wait_for(before, "RELOADING=1", &d);
    let msg = manager.messages()[reloading].clone();
    let usec: u64 = value(&msg, "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC=: {msg:?}"))
        .parse()
        .unwrap();
    assert!(
        usec >= hup_at && usec <= monotonic_usec(),
        "MONOTONIC_USEC={usec} is not the time of the reload: {msg:?}"
    );
    assert!(value(&msg, "STATUS").is_some(), "{msg:?}");
    let ready = manager.wait_for(reloading + 1, "READY=1", &d);
    let msg = &manager.messages()[ready];
    assert_eq!(
        value(msg, "STATUS"),
        Some("running (configuration reloaded)"),
        "{msg:?}"
    );

    // SIGTERM: STOPPING=1, then exit 0.
    let before = manager.messages().len();
    d.signal(libc::SIGTERM);
    let stopping = manager.wait_for(before, "STOPPING=1", &d);
    assert_eq!(
        value(&manager.messages()[stopping], "STATUS"),
        Some("stopping")
    );
    let st = d
        .wait_exit(Duration::from_secs(20))
        .expect("did not stop within the shutdown timeout");
    assert!(st.success(), "exit status {st:?}; log:\n{}", d.log());
}
