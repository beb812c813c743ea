//! The runner against real shell programs: a tree that left the process
//! group is killed at the timeout, a program that fills stderr still
//! answers, and a background job holding stdout does not stall the call.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::*;

fn script(dir: &Path, body: &str) -> String {
    let p = dir.join("prog");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    p.to_string_lossy().into_owned()
}

async fn run(argv: &[String], timeout: &str, max_stdout: usize) -> Result<Run, CallError> {
    let env = BTreeMap::new();
    Program {
        who: "sink \"hook\"",
        what: "command",
        argv,
        env: &env,
        vars: Vec::new(),
        timeout: keyrot_core::policy::parse_duration(timeout).unwrap(),
        max_stdout,
    }
    .run(Some(b"input"))
    .await
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Waits (on a pidfd, without polling) up to `within` for `pid` to end;
/// true when it did (a zombie has ended).
fn ends_within(pid: i32, within: Duration) -> bool {
    // SAFETY: pidfd_open(2) takes two integers and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    let fd = fd as i32;
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; the fd is closed right after.
    let ready = unsafe { libc::poll(&mut pfd, 1, within.as_millis() as i32) };
    unsafe { libc::close(fd) };
    ready == 1
}

/// Kills what a failed test may have left running.
fn cleanup(pids: &[i32]) {
    for pid in pids {
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
}

#[tokio::test]
async fn descendants_that_left_the_group_are_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("p1"), dir.path().join("p2"));
    // One descendant starts its own session in the background; another
    // is started by `setsid -f`, whose parent exits at once (an orphan).
    let prog = script(
        dir.path(),
        &format!(
            "setsid sleep 600 & echo $! > {p1}\n\
             setsid -f sh -c 'echo $$ > {p2}.tmp; mv {p2}.tmp {p2}; exec sleep 600'\n\
             while [ ! -s {p2} ]; do :; done\n\
             wait",
            p1 = p1.display(),
            p2 = p2.display()
        ),
    );
    let e = run(&[prog], "1s", 1024).await.err().unwrap();
    assert!(
        e.transient && e.message.contains("did not finish within 1s; killed"),
        "{}",
        e.message
    );
    let pids = [read_pid(&p1), read_pid(&p2)];
    let survivors: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|p| !ends_within(*p, Duration::from_secs(5)))
        .collect();
    cleanup(&pids);
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

#[tokio::test]
async fn a_program_that_fills_stderr_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    // Far more than a pipe holds (64 KiB) plus what is kept of stderr.
    let prog = script(
        dir.path(),
        "head -c 300000 /dev/zero | tr '\\0' e >&2; echo '{\"ok\":true}'",
    );
    let run = run(&[prog], "10s", 1024).await.unwrap();
    assert_eq!(run.code, Some(0));
    assert_eq!(&run.stdout[..], b"{\"ok\":true}\n");
    assert_eq!(run.stderr.len(), MAX_STDERR);
}

#[tokio::test]
async fn a_background_job_holding_stdout_does_not_stall_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("job.pid");
    // The job inherits stdout and stderr and outlives the program.
    let prog = script(
        dir.path(),
        &format!(
            "sleep 600 & echo $! > {}\nprintf answer; exit 3",
            pidfile.display()
        ),
    );
    let got = run(&[prog], "10s", 1024).await;
    let job = read_pid(&pidfile);
    // Left alone: only a timeout kills.
    let alive = !ends_within(job, Duration::ZERO);
    cleanup(&[job]);
    let run = got.unwrap();
    assert_eq!(run.code, Some(3));
    assert_eq!(&run.stdout[..], b"answer");
    assert!(alive, "the background job was killed");
}

#[tokio::test]
async fn too_much_stdout_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "head -c 1000000 /dev/zero");
    let e = run(&[prog], "10s", 1024).await.err().unwrap();
    assert!(
        !e.transient && e.message.contains("printed more than 1024 bytes on stdout"),
        "{}",
        e.message
    );
}

#[test]
fn kept_stdout_moves_to_a_bigger_buffer_and_stops_at_the_limit() {
    let mut out = Zeroizing::new(Vec::with_capacity(2));
    assert!(!keep_secret(&mut out, 8, b"abc"));
    assert!(!keep_secret(&mut out, 8, b"def"));
    assert!(keep_secret(&mut out, 8, b"ghij"));
    assert_eq!(&out[..], b"abcdefgh");
    assert!(out.capacity() <= 8);
}

/// Set in the child process that runs [`start_with_no_descriptors_left`].
const CHILD: &str = "KEYROT_TEST_EXEC_WITHOUT_FDS";

/// A start that fails because the process is out of file descriptors
/// is transient (the retry budget waits), not a permanent failure of
/// the rotation. Runs in a child process: it uses up every descriptor.
#[test]
fn running_out_of_descriptors_is_transient() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "exec::tests::start_with_no_descriptors_left",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
    assert!(
        text.contains("transient: sink \"hook\": cannot start"),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn start_with_no_descriptors_left() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let argv = ["/bin/true".to_string()];
    let env = BTreeMap::new();
    let program = Program {
        who: "sink \"hook\"",
        what: "command",
        argv: &argv,
        env: &env,
        vars: Vec::new(),
        timeout: SignedDuration::from_secs(10),
        max_stdout: 1024,
    };
    let mut held = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) => break e,
        }
    };
    let result = program.run(None).await;
    drop(held);
    assert_eq!(exhausted.raw_os_error(), Some(libc::EMFILE));
    let Err(e) = result else {
        panic!("started without a descriptor to spare");
    };
    assert!(e.transient, "{}", e.message);
    println!("transient: {}", e.message);
}
