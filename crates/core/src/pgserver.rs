//! A real PostgreSQL server for tests (feature `testkit`): a fresh cluster
//! in a temporary directory, on a free loopback port, stopped when its
//! handle drops or, for [`PgServer::shared`], when the test process ends,
//! however it ends.
//!
//! The programs are those of the highest version under
//! `/usr/lib/postgresql/VERSION/bin` (Debian's layout; `bash
//! scripts/peers.sh` installs them). Without them [`PgServer::start`]
//! fails with that command: a test that needs PostgreSQL fails, it is never
//! skipped.
//!
//! The cluster: `initdb -A trust -U keyrot --no-sync -E UTF8 --no-locale`
//! (superuser `keyrot`, no password on loopback, byte-order collation),
//! then `postgres -p PORT -k DIR -c listen_addresses=127.0.0.1 -c
//! fsync=on`. Its directory holds `data/`, the socket, `server.log` and
//! `pg_ctl.log`. PostgreSQL refuses to run as root: under uid 0 the
//! directory belongs to the `postgres` system user and `initdb` and
//! `pg_ctl` run through `runuser -u postgres --`; the clients (`createdb`,
//! `psql`) run as the caller either way.
//!
//! How the server is sure to stop: a process-wide server lives in a
//! `static`, which is never dropped, and a test process may die of a
//! panic in another thread, `kill -9` or Ctrl-C. So the server is owned by
//! a watchdog, a small `sh` script that this process starts with its
//! standard input on a pipe whose only writing end stays here. The script
//! runs `pg_ctl start -w` (which returns once the server accepts
//! connections: no polling here), reports the result on a line of its
//! standard output, then reads its standard input until end of file, then
//! runs `pg_ctl stop -m immediate` (which returns once the server and its
//! children are gone) and removes the directory. End of file comes when
//! the handle drops (which then waits for the script, so nothing runs
//! after the drop) or when the kernel closes this process's descriptors,
//! whichever way it died. Because the start runs inside the script, a
//! process that dies while the server is still starting stops it too.
//! The writing end is close-on-exec, so no other child holds it; the
//! script runs in a process group of its own, so the Ctrl-C that kills
//! the tests does not kill it first. Not chosen: `PR_SET_PDEATHSIG` (the
//! server is detached by `pg_ctl`, and the setting does not survive
//! `runuser`'s change of user), and polling the parent's pid (`kill -0`
//! fails with EPERM across users, and pids are reused). Not covered: the
//! watchdog itself killed by `kill -9` (then the server runs on until
//! someone stops it).

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The command that installs PostgreSQL.
const INSTALL: &str = "bash scripts/peers.sh";

/// Where Debian installs each major version of PostgreSQL.
const INSTALL_ROOT: &str = "/usr/lib/postgresql";

/// The cluster's superuser.
const SUPERUSER: &str = "keyrot";

/// The system user the server runs as when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// Starts tried before giving up when another process takes the port.
const START_ATTEMPTS: u32 = 5;

/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT: &str = "60";

/// Arguments: the directory, the data directory, the server's options, then
/// the words that run `pg_ctl`. See the module's documentation.
const WATCHDOG: &str = r#"trap '' PIPE
dir=$1 data=$2 opts=$3
shift 3
"$@" start -w -t "$PG_CTL_WAIT" -D "$data" -l "$dir/server.log" -o "$opts" \
  </dev/null >"$dir/pg_ctl.log" 2>&1
started=$?
echo "$started"
exec >/dev/null
if [ "$started" -eq 0 ]; then
  cat
elif [ ! -f "$data/postmaster.pid" ]; then
  exit "$started"
fi
"$@" stop -w -t "$PG_CTL_WAIT" -D "$data" -m immediate </dev/null >>"$dir/pg_ctl.log" 2>&1
stopped=$?
if [ "$started" -eq 0 ] && [ "$stopped" -eq 0 ]; then
  rm -rf "$dir"
fi
exit "$stopped"
"#;

/// Numbers the directories this process makes.
static DIRS: AtomicU32 = AtomicU32::new(0);

/// A PostgreSQL server of its own, on `127.0.0.1`: stopped, and its
/// directory removed, when this drops.
#[derive(Debug)]
pub struct PgServer {
    /// The temporary directory: data, socket, logs.
    dir: PathBuf,
    /// The PostgreSQL programs.
    bin: PathBuf,
    /// The server's TCP port.
    port: u16,
    /// The script that owns the server (module documentation).
    watchdog: Child,
    /// Its standard input: closing it stops the server.
    keepalive: Option<ChildStdin>,
    /// Databases made so far by [`PgServer::fresh_database`].
    databases: AtomicU32,
}

/// How a start went wrong.
enum StartError {
    /// Another process took the port between its choice and the start.
    PortTaken,
    /// Anything else, said in full.
    Failed(String),
}

impl PgServer {
    /// Starts a fresh PostgreSQL cluster on 127.0.0.1 on a free port, in a
    /// new temporary directory; returns once it accepts connections.
    pub fn start() -> Result<PgServer, String> {
        let bin = bin_dir()?;
        let root = rustix::process::geteuid().is_root();
        let dir = make_dir(root)?;
        let started = start_in(&dir, &bin, root);
        if started.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        started
    }

    /// The server that every test of this process shares, started by the
    /// first call; it stops when the process ends. Panics (failing the
    /// test) when it cannot start, e.g. when PostgreSQL is not installed.
    // A test helper: the panic is the test's failure, with the reason.
    #[allow(clippy::panic)]
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
        match SHARED.get_or_init(PgServer::start) {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the PostgreSQL programs the server runs, whose
    /// clients (`psql`, `pg_dump`) are of its version.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Makes a new, empty database and returns its URL,
    /// `postgres://keyrot@127.0.0.1:PORT/dbN?sslmode=disable`.
    pub fn fresh_database(&self) -> Result<String, String> {
        let name = format!("db{}", self.databases.fetch_add(1, Ordering::Relaxed) + 1);
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER, "-w", &name])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run createdb from {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "createdb {name} on port {port} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{port}/{name}?sslmode=disable"
        ))
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: no checkpoint)
    /// and removes its directory; returns when no process of it is left.
    /// Dropping the handle does the same, without the error.
    pub fn stop(mut self) -> Result<(), String> {
        self.shut_down()
    }

    /// Closes the watchdog's input and waits for it to stop the server.
    fn shut_down(&mut self) -> Result<(), String> {
        if self.keepalive.take().is_none() {
            return Ok(());
        }
        let status = self
            .watchdog
            .wait()
            .map_err(|e| format!("waiting for PostgreSQL to stop: {e}"))?;
        if status.success() {
            return Ok(());
        }
        let log = read_log(&self.dir.join("pg_ctl.log"));
        let _ = fs::remove_dir_all(&self.dir);
        Err(format!(
            "stopping PostgreSQL on port {} failed ({status}): {log}",
            self.port
        ))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// The `bin` directory of the highest PostgreSQL version installed.
fn bin_dir() -> Result<PathBuf, String> {
    let missing = || {
        format!(
            "PostgreSQL is not installed (no {INSTALL_ROOT}/VERSION/bin/initdb): run `{INSTALL}`"
        )
    };
    let entries = fs::read_dir(INSTALL_ROOT).map_err(|_| missing())?;
    entries
        .flatten()
        .filter_map(|e| {
            let version = e
                .file_name()
                .to_str()?
                .split('.')
                .map(|n| n.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = e.path().join("bin");
            ["initdb", "pg_ctl", "postgres", "createdb"]
                .iter()
                .all(|p| bin.join(p).is_file())
                .then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(missing)
}

/// A new directory under the system's temporary directory, readable by
/// its owner only: the `postgres` user's when `root`.
fn make_dir(root: bool) -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    let dir = loop {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("keyrot-pg-{}-{n}", std::process::id()));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => break dir,
            // Left by an earlier process of the same pid.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    };
    if root {
        let out = Command::new("chown")
            .arg(format!("{SYSTEM_USER}:"))
            .arg(&dir)
            .stdin(Stdio::null())
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            let _ = fs::remove_dir_all(&dir);
            let why = match out {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            return Err(format!(
                "PostgreSQL does not run as root, and the directory cannot be given to the \
                 `{SYSTEM_USER}` user ({why}); `{INSTALL}` installs PostgreSQL, which creates it"
            ));
        }
    }
    Ok(dir)
}

/// A command running PostgreSQL program `name` from `bin` in `dir`, as the
/// `postgres` user when `root`.
fn server_command(dir: &Path, bin: &Path, name: &str, root: bool) -> Command {
    let mut cmd = if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SYSTEM_USER, "--"]).arg(bin.join(name));
        cmd
    } else {
        Command::new(bin.join(name))
    };
    cmd.current_dir(dir).stdin(Stdio::null());
    cmd
}

/// Makes the cluster in `dir` and starts its watchdog, on another free
/// port when one is taken.
fn start_in(dir: &Path, bin: &Path, root: bool) -> Result<PgServer, String> {
    let data = dir.join("data");
    let out = server_command(dir, bin, "initdb", root)
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", SUPERUSER, "--no-sync"])
        .args(["-E", "UTF8", "--no-locale"])
        .output()
        .map_err(|e| format!("cannot run initdb from {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        match start_watchdog(dir, bin, root, port) {
            Ok((watchdog, keepalive)) => {
                return Ok(PgServer {
                    dir: dir.to_path_buf(),
                    bin: bin.to_path_buf(),
                    port,
                    watchdog,
                    keepalive: Some(keepalive),
                    databases: AtomicU32::new(0),
                });
            }
            Err(StartError::PortTaken) => last = format!("port {port} was taken"),
            Err(StartError::Failed(e)) => return Err(e),
        }
    }
    Err(format!(
        "PostgreSQL did not start in {START_ATTEMPTS} attempts; last: {last}"
    ))
}

/// Starts the watchdog, which starts the server on `port`; returns it and
/// its standard input once the server accepts connections.
fn start_watchdog(
    dir: &Path,
    bin: &Path,
    root: bool,
    port: u16,
) -> Result<(Child, ChildStdin), StartError> {
    let data = dir.join("data");
    let log = dir.join("server.log");
    let _ = fs::remove_file(&log);
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
        sh_quote(&dir.to_string_lossy())
    );
    let pg_ctl = server_command(dir, bin, "pg_ctl", root);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("keyrot-pg-watchdog")
        .arg(dir)
        .arg(&data)
        .arg(&opts)
        .arg(pg_ctl.get_program())
        .args(pg_ctl.get_args())
        .env("PG_CTL_WAIT", PG_CTL_WAIT)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| StartError::Failed(format!("cannot run sh: {e}")))?;
    let (Some(keepalive), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(StartError::Failed("the watchdog has no pipes".into()));
    };
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    if line.trim() == "0" {
        return Ok((child, keepalive));
    }
    drop(keepalive);
    let _ = child.wait();
    let server_log = read_log(&log);
    if server_log.contains("Address already in use") {
        return Err(StartError::PortTaken);
    }
    Err(StartError::Failed(format!(
        "PostgreSQL did not start on port {port} (pg_ctl: {}): {}\n{server_log}",
        line.trim(),
        read_log(&dir.join("pg_ctl.log"))
    )))
}

/// A free loopback port (bound and released; the server binds it next).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// `s` quoted for `sh` (`pg_ctl` hands the server's options to it).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A log's text, or why it cannot be read.
fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

#[cfg(test)]
mod tests;
