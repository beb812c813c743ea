//! The test server starts, makes databases, and stops with its process.

use super::*;
use std::io::Read;
use std::time::{Duration, Instant};

/// Names the child process of `the_shared_server_stops_with_its_process`.
const HOLDER: &str = "KEYROT_PGSERVER_HOLDER";

/// Runs `psql -c sql` against database `url` and returns its output.
fn psql(server: &PgServer, url: &str, sql: &str) -> String {
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let out = Command::new(server.bin_dir().join("psql"))
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-U", SUPERUSER, "-d", db, "-w", "-X", "-tA", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The server's pid, from its `postmaster.pid`.
fn postmaster_pid(server: &PgServer) -> u32 {
    let pidfile = fs::read_to_string(server.dir.join("data/postmaster.pid")).unwrap();
    pidfile.lines().next().unwrap().parse().unwrap()
}

/// The live (not zombie) processes: pid, parent's pid, command line.
fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // `PID (COMM) STATE PPID ...`; COMM may hold spaces and parentheses.
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == "Z" || state == "X" {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push((pid, ppid, cmdline));
    }
    out
}

/// The live processes that are `pid` or its children, or that name `dir`.
fn server_processes(pid: u32, dir: &Path) -> Vec<(u32, u32, String)> {
    let dir = dir.to_string_lossy();
    processes()
        .into_iter()
        .filter(|(p, pp, cmd)| *p == pid || *pp == pid || cmd.contains(dir.as_ref()))
        .collect()
}

/// Polls `f` every 50 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        // Another process's exit, which nothing here can wait on.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn the_shared_server_makes_fresh_databases() {
    let server = PgServer::shared();
    assert!(std::ptr::eq(server, PgServer::shared()));
    let a = server.fresh_database().unwrap();
    let b = server.fresh_database().unwrap();
    assert_ne!(a, b);
    let prefix = format!("postgres://keyrot@127.0.0.1:{}/db", server.port());
    for url in [&a, &b] {
        assert!(url.starts_with(&prefix), "{url}");
        assert!(url.ends_with("?sslmode=disable"), "{url}");
    }
    assert_eq!(psql(server, &a, "select 1"), "1");
    assert_eq!(
        psql(
            server,
            &b,
            "select count(*) from pg_tables where schemaname = 'public'"
        ),
        "0"
    );
}

#[test]
fn a_dropped_server_leaves_no_process_nor_directory() {
    let server = PgServer::start().unwrap();
    let url = server.fresh_database().unwrap();
    assert_eq!(psql(&server, &url, "select 1"), "1");
    let dir = server.dir.clone();
    let pid = postmaster_pid(&server);
    let before = server_processes(pid, &dir);
    // The server and its background workers.
    assert!(before.len() >= 3, "{before:?}");
    drop(server);
    let after = server_processes(pid, &dir);
    assert!(after.is_empty(), "still running: {after:?}");
    for (p, _, cmd) in &before {
        assert!(
            !processes().iter().any(|(q, _, _)| q == p),
            "{p} ({cmd}) still running"
        );
    }
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn stop_reports_success() {
    let server = PgServer::start().unwrap();
    let dir = server.dir.clone();
    server.stop().unwrap();
    assert!(!dir.exists());
}

/// Run by `the_shared_server_stops_with_its_process` in a child process:
/// prints where the shared server runs, then waits to be killed.
/// Without the variable (in the suite itself) it returns at once.
#[test]
fn shared_server_holder() {
    if std::env::var_os(HOLDER).is_none() {
        return;
    }
    let server = PgServer::shared();
    // On a line of its own: the harness has written `test NAME ... `.
    println!(
        "\nheld {} {}",
        postmaster_pid(server),
        server.dir.to_string_lossy()
    );
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

#[test]
fn the_shared_server_stops_with_its_process() {
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "pgserver::tests::shared_server_holder"])
        .args(["--nocapture", "--test-threads=1"])
        .env(HOLDER, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(holder.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let held = out
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("held ").map(str::to_string));
        let _ = tx.send(held);
    });
    // The holder waits on its input, which is held here: a bound, so
    // that a holder that printed nothing fails the test, not hangs it.
    // (A failure here drops its input: the holder ends, its server too.)
    let held = rx.recv_timeout(Duration::from_secs(120));
    let line = held.ok().flatten().expect("the holder printed no server");
    let (pid, dir) = line.split_once(' ').unwrap();
    let (pid, dir): (u32, PathBuf) = (pid.parse().unwrap(), dir.into());
    assert!(!server_processes(pid, &dir).is_empty());
    // SIGKILL: no destructor, no exit handler runs in the holder.
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || server_processes(pid, &dir)
            .is_empty()
            && !dir.exists()),
        "still running: {:?}",
        server_processes(pid, &dir)
    );
}

#[test]
fn the_highest_version_is_found() {
    let bin = bin_dir().unwrap();
    assert!(bin.starts_with(INSTALL_ROOT) && bin.join("initdb").is_file());
}

#[test]
fn quoting_for_sh() {
    assert_eq!(sh_quote("/tmp/a b"), "'/tmp/a b'");
    assert_eq!(sh_quote("it's"), r"'it'\''s'");
}
