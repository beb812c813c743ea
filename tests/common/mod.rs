//! Test harness: runs the real `keyrot` binary in a temporary directory with
//! its own config, store, socket and sinks, and talks to it through the CLI
//! (the polls of its waits read the control API on the socket directly).
#![allow(dead_code)]

pub mod azure;
pub mod crash;
pub mod datagram;
pub mod fault_proxy;
pub mod http_apis;
pub mod peers;
pub mod smtp;
pub mod store;
pub mod webhook;

use store::{PG_STORE, REDB_STORE, SuiteStore, suite_store};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keyrot")
}

/// What every test daemon's config shares: `[daemon]` (the control socket
/// in its directory, one inventory sync a day, a retry budget of
/// `attempts` with 1-2 s backoff), `[store]` (master key created; on the
/// [`suite_store`]), `[notify]` (`.eml` files in `mail/`) and a JSON file
/// sink `out` writing `out/{name}.json`. Providers, more sinks, policies
/// and keys follow.
pub fn base_config(attempts: u32) -> String {
    let store = match suite_store() {
        SuiteStore::Redb => REDB_STORE,
        SuiteStore::Postgres => PG_STORE,
    };
    format!(
        r#"[daemon]
control_socket = "control.sock"
sync_schedule = "0 0 0 * * *"
shutdown_timeout = "10s"

[daemon.retry]
attempts = {attempts}
initial = "1s"
max = "2s"

[store]
{store}master_key_file = "master.key"
create_master_key = true

[notify]
from = "keyrot@example.com"
transport = "file"
dir = "mail"

[[sink]]
name = "out"
type = "file"
path = "out/{{name}}.json"
format = "json"
"#
    )
}

/// A policy `slow` whose keys live an hour: only the first issue and the
/// rotations a test asks for happen while it runs.
pub const SLOW_POLICY: &str = r#"
[[policy]]
name = "slow"
new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false
"#;

/// A config for the local provider and a JSON file sink; `policy` is the
/// body of one `[[policy]]` table named "fast", `keys` the `[[key]]` names.
pub fn config(policy: &str, keys: &[&str]) -> String {
    let mut s = base_config(3);
    s.push_str(
        r#"
[[provider]]
name = "local"
type = "local"
default_lifetime = "1h"

[[policy]]
name = "fast"
notify = ["ops@example.com"]
"#,
    );
    s.push_str(policy);
    s.push('\n');
    for k in keys {
        s.push_str(&format!(
            "\n[[key]]\nname = \"{k}\"\nprovider = \"local\"\npolicy = \"fast\"\nsinks = [\"out\"]\nscopes = [\"read:all\"]\n"
        ));
    }
    s
}

/// A daemon process in its own directory.
pub struct Daemon {
    /// The directory holding config, store, socket, sinks and log.
    pub dir: PathBuf,
    /// The running process, if any.
    pub child: Option<Child>,
    /// Extra environment for the next start.
    pub env: Vec<(String, String)>,
    /// Keeps the temp dir alive.
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// A daemon directory with `config` written as keyrot.toml; on the
    /// PostgreSQL [`suite_store`], with the URL of a fresh database in
    /// `pg.url`.
    pub fn new(config: &str) -> Daemon {
        let tmp = tempfile::Builder::new().prefix("kr").tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        fs::write(dir.join("keyrot.toml"), config).unwrap();
        if suite_store() == SuiteStore::Postgres {
            let url = keyrot_core::pgserver::PgServer::shared()
                .fresh_database()
                .unwrap_or_else(|e| panic!("{e}"));
            write_secret(&dir.join("pg.url"), &format!("{url}\n"));
        }
        Daemon {
            dir,
            child: None,
            env: Vec::new(),
            _tmp: Some(tmp),
        }
    }

    /// Path of the config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("keyrot.toml")
    }

    /// Path of the log file (stderr of every start, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts `keyrot run` and waits until the control socket answers.
    pub fn start(&mut self) {
        self.spawn();
        let ok = wait_until(Duration::from_secs(30), || self.api("/v1/health").is_some());
        assert!(ok, "daemon did not become ready; log:\n{}", self.log());
    }

    /// Starts `keyrot run` without waiting.
    pub fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_path())
            .current_dir(&self.dir)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    /// Runs a CLI command against this daemon's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs a CLI command that must succeed and prints JSON; returns it.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit (up to `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a GET of `path` to the daemon's control API on its socket
    /// (`control.sock` in its directory); the connection, to read the
    /// answer from (the server closes it after).
    fn control_request(&self, path: &str) -> std::io::Result<std::os::unix::net::UnixStream> {
        use std::io::Write as _;
        let mut conn = std::os::unix::net::UnixStream::connect(self.dir.join("control.sock"))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: keyrot\r\nConnection: close\r\n\r\n"
        )?;
        Ok(conn)
    }

    /// A GET of `path` on the control socket: the whole answer, status
    /// line, headers and body, as the daemon sent it.
    pub fn control_get(&self, path: &str) -> String {
        use std::io::Read as _;
        let mut out = String::new();
        self.control_request(path)
            .and_then(|mut c| c.read_to_string(&mut out))
            .unwrap_or_else(|e| panic!("GET {path} on the control socket: {e}"));
        out
    }

    /// GET `path` from the daemon's control API: the JSON of a 2xx answer,
    /// or None when no daemon answers or it answers with an error. For the
    /// polls of the waits below: a CLI call starts a keyrot process (about
    /// 14 ms of CPU for a debug build), thousands of them in the suite; the
    /// CLI's own output is what the tests that call [`Daemon::cli`] check.
    pub fn api(&self, path: &str) -> Option<serde_json::Value> {
        let conn = self.control_request(path).ok()?;
        let answer = fault_proxy::read_message(&mut std::io::BufReader::new(conn), true)?;
        let status: u16 = answer.start.split(' ').nth(1)?.parse().ok()?;
        if !(200..300).contains(&status) {
            return None;
        }
        serde_json::from_slice(&answer.body).ok()
    }

    /// `keyrot status --json`, from the control API while the daemon
    /// answers, from the CLI (which then reads the store) otherwise.
    pub fn status(&self) -> serde_json::Value {
        self.api("/v1/status")
            .unwrap_or_else(|| self.json(&["status", "--json"]))
    }

    /// `keyrot rotation show ID --json`, from the control API while the
    /// daemon answers, from the CLI otherwise.
    pub fn rotation(&self, id: &str) -> serde_json::Value {
        self.api(&format!("/v1/rotations/{id}"))
            .unwrap_or_else(|| self.show(id))
    }

    /// Waits until the first key in `keyrot status` has a current key.
    pub fn wait_first_key(&self) {
        assert!(
            wait_until(Duration::from_secs(30), || {
                self.status()["keys"][0]["key_id"].is_string()
            }),
            "no first key; log:\n{}",
            self.log()
        );
    }

    /// `keyrot rotate KEY --reason REASON`, which must succeed: the new
    /// rotation's id.
    pub fn rotate(&self, key: &str, reason: &str) -> String {
        let out = self.cli(&["rotate", key, "--reason", reason, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rot["id"].as_str().unwrap().to_string()
    }

    /// `keyrot enroll ARGS --config CONFIG` with `secret` (and a newline)
    /// on standard input, as a person pastes it.
    pub fn enroll(&self, args: &[&str], secret: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(bin())
            .arg("enroll")
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{secret}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `keyrot rotation show ID --json`.
    pub fn show(&self, id: &str) -> serde_json::Value {
        self.json(&["rotation", "show", id, "--json"])
    }

    /// Waits up to `secs` until rotation `id` is in `state`; the record.
    pub fn wait_state(&self, id: &str, state: &str, secs: u64) -> serde_json::Value {
        let mut rec = serde_json::Value::Null;
        let ok = wait_until(Duration::from_secs(secs), || {
            rec = self.rotation(id);
            rec["state"] == state
        });
        assert!(
            ok,
            "rotation {id} not {state}: {rec:#}\nlog:\n{}",
            self.log()
        );
        rec
    }

    /// Rotations as `keyrot history --json` reports them (from the
    /// control API while the daemon answers).
    pub fn rotations(&self) -> Vec<serde_json::Value> {
        self.api("/v1/history?limit=1000")
            .unwrap_or_else(|| self.json(&["history", "--json", "--limit", "1000"]))["rotations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Completed rotations of `slot` that replaced an old key.
    pub fn completed_replacements(&self, slot: &str) -> Vec<serde_json::Value> {
        self.rotations()
            .into_iter()
            .filter(|r| {
                r["slot"] == slot && r["state"] == "Completed" && !r["old_key_id"].is_null()
            })
            .collect()
    }

    /// The JSON file sink's content for key `name`.
    pub fn sink(&self, name: &str) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.dir.join("out").join(format!("{name}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes a secret file as keyrot requires one: mode 0600.
pub fn write_secret(path: &Path, content: &str) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// Polls `f` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// Reads every regular file below `dir`, recursively, as bytes.
pub fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else if let Ok(b) = fs::read(&p) {
            out.push((p, b));
        }
    }
    out
}

/// A `keyrot sandbox` process (the proposed Admin API), seeded with the
/// demo organisation, with one PSK `demo`.
pub struct Sandbox {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Directory with its state, PSK and seeded secrets.
    pub dir: PathBuf,
}

impl Sandbox {
    /// Starts a sandbox whose files live in `dir`.
    pub fn start(dir: &Path) -> Sandbox {
        Sandbox::start_with(dir, &[])
    }

    /// Like [`Sandbox::start`], with `extra` flags after the usual ones
    /// (e.g. `&["--strict"]`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Sandbox {
        use std::io::BufRead as _;
        fs::create_dir_all(dir).unwrap();
        let psk = dir.join("psk.hex");
        if !psk.exists() {
            fs::write(&psk, format!("{}\n", "5a".repeat(32))).unwrap();
            fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut child = Command::new(bin())
            .args(["sandbox", "--listen", "127.0.0.1:0", "--seed"])
            .arg("--state")
            .arg(dir.join("sandbox-state.json"))
            .arg("--seed-secrets")
            .arg(dir.join("seed-secrets.json"))
            .arg("--psk")
            .arg(format!("demo={}", psk.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("sandbox.log"))
                    .unwrap(),
            ))
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("sandbox listening on ")
            .unwrap_or_else(|| panic!("sandbox said {line:?}"))
            .to_string();
        Sandbox {
            child,
            url,
            dir: dir.to_path_buf(),
        }
    }

    /// The seeded secret of key `name`.
    pub fn seeded_secret(&self, name: &str) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(self.dir.join("seed-secrets.json")).unwrap())
                .unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The org's keys as the sandbox's state file holds them.
    pub fn keys(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(self.dir.join("sandbox-state.json")).unwrap())
                .unwrap();
        v["orgs"]["demo-org"]["apiKeys"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The key with id `id`.
    pub fn key(&self, id: &str) -> serde_json::Value {
        self.keys()
            .into_iter()
            .find(|k| k["id"] == id)
            .unwrap_or_else(|| panic!("no key {id}"))
    }

    /// `curl` to the sandbox.
    pub fn curl(&self, args: &[&str]) -> Output {
        Command::new("curl").arg("-sS").args(args).output().unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config with the atlassian provider against `sandbox`.
pub fn atlassian_config(sb: &Sandbox, rotate_api: &str, policy: &str, keys: &[&str]) -> String {
    let d = sb.dir.display();
    fs::write(sb.dir.join("admin.key"), sb.seeded_secret("keyrot")).unwrap();
    fs::set_permissions(sb.dir.join("admin.key"), fs::Permissions::from_mode(0o600)).unwrap();
    let psk_lines = if rotate_api == "proposed" {
        format!("psk_id = \"demo\"\npsk = {{ file = \"{d}/psk.hex\" }}\n")
    } else {
        String::new()
    };
    let mut s = format!(
        r#"[daemon]
control_socket = "control.sock"
sync_schedule = "0 0 0 * * *"
shutdown_timeout = "10s"

[daemon.retry]
attempts = 4
initial = "1s"
max = "3s"

[store]
path = "state/state.redb"
master_key_file = "master.key"
create_master_key = true

[[provider]]
name = "atlassian"
type = "atlassian"
org_id = "demo-org"
base_url = "{url}/admin/api-access/v1"
admin_key = {{ file = "{d}/admin.key" }}
rotate_api = "{rotate_api}"
page_size = 2
{psk_lines}
[[sink]]
name = "out"
type = "file"
path = "out/{{name}}.json"
format = "json"

[[psk]]
id = "caller"
key = {{ file = "{d}/psk.hex" }}

[notify]
from = "keyrot@example.com"
transport = "file"
dir = "mail"

[[policy]]
name = "fast"
notify = ["ops@example.com"]
security_contacts = ["security@example.com"]
{policy}
"#,
        url = sb.url
    );
    for k in keys {
        s.push_str(&format!("\n[[key]]\nname = \"{k}\"\nprovider = \"atlassian\"\npolicy = \"fast\"\nsinks = [\"out\"]\n"));
    }
    s
}

/// The wall clock, for tests against real peers and the real binary, which
/// keep real time (clippy.toml keeps it out of keyrot's own code, where time
/// is a parameter).
#[allow(clippy::disallowed_methods)]
pub fn wall_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
