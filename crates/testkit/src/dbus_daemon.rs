//! A private D-Bus bus for tests: `dbus-daemon` (Debian's `dbus-daemon`
//! package; `bash scripts/peers.sh` installs it) started with a
//! session-like configuration of its own, listening on a socket in a new
//! temporary directory, and killed, its directory removed, when the
//! [`DbusDaemon`] drops. Without the program [`DbusDaemon::start`] fails
//! with that install command: a test that needs the bus fails, it is never
//! skipped.
//!
//! The daemon runs with `--nofork --print-address`: it prints its address
//! once it listens, so the start waits for that line, not for a time. It
//! is started with `PR_SET_PDEATHSIG` = `SIGKILL`, so it dies with the test
//! process however that dies (the signal comes when the *thread* that
//! started it ends: start it from the test's own thread or runtime, not
//! from a short-lived blocking-pool thread).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The command that installs `dbus-daemon`.
pub const INSTALL: &str = "bash scripts/peers.sh";

/// The program, looked up in `PATH`.
pub const PROGRAM: &str = "dbus-daemon";

/// The bus's configuration: a session bus on one unix socket where
/// everyone may own any name and send anything (the tests' processes are
/// all the caller's).
const CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=@SOCKET@</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

/// A running private bus; killed when this drops.
#[derive(Debug)]
pub struct DbusDaemon {
    /// The daemon.
    child: Child,
    /// Its address, as it printed it (`unix:path=…,guid=…`).
    address: String,
    /// Holds the configuration and the socket.
    _dir: tempfile::TempDir,
}

impl DbusDaemon {
    /// Starts `dbus-daemon` from `PATH` on a socket in a new temporary
    /// directory; returns once it listens.
    pub fn start() -> Result<DbusDaemon, String> {
        let program = find_in_path(PROGRAM).ok_or_else(|| missing(PROGRAM))?;
        DbusDaemon::start_program(&program)
    }

    /// [`DbusDaemon::start`] with the program at `program`.
    pub fn start_program(program: &Path) -> Result<DbusDaemon, String> {
        if !program.is_file() {
            return Err(missing(&program.display().to_string()));
        }
        let dir = tempfile::Builder::new()
            .prefix("keyrot-dbus-")
            .tempdir()
            .map_err(|e| format!("temporary directory for the bus: {e}"))?;
        let socket = dir.path().join("bus");
        let socket = socket
            .to_str()
            .filter(|s| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
            })
            .ok_or_else(|| format!("bus socket path {} needs escaping", socket.display()))?;
        let config = dir.path().join("bus.conf");
        fs::write(&config, CONFIG.replace("@SOCKET@", socket))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let mut command = Command::new(program);
        command
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--nosyslog", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("start {}: {e}", program.display()))?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        let address = line.trim().to_owned();
        if read.is_err() || address.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            return Err(format!(
                "{} printed no address: {}",
                program.display(),
                stderr.trim()
            ));
        }
        Ok(DbusDaemon {
            child,
            address,
            _dir: dir,
        })
    }

    /// The bus's D-Bus address (`unix:path=…,guid=…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The error for a missing program.
fn missing(program: &str) -> String {
    format!(
        "`{program}` is not installed: run `{INSTALL}` (it installs Debian's dbus-daemon package)"
    )
}

/// The first executable file `name` in `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
