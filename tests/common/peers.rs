//! Real servers for the tests: OpenBao (`bao server -dev`) and moto
//! (`moto_server`), installed by `scripts/peers.sh` into a cache directory.
//! A missing peer fails the test with the install command; it is never
//! skipped. Each server listens on a free loopback port and is killed when
//! its handle drops.
#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::wait_until;

/// The command that installs the peers.
pub const INSTALL: &str = "bash scripts/peers.sh";

/// Where `scripts/peers.sh` installs: `$KEYROT_PEERS_DIR`, or
/// `${XDG_CACHE_HOME:-~/.cache}/keyrot/peers`.
pub fn peers_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KEYROT_PEERS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("keyrot").join("peers")
}

/// The path of peer program `name` (`bao`, `moto_server`, ...); panics
/// with the install command when it is not installed.
pub fn peer_bin(name: &str) -> PathBuf {
    let p = peers_dir().join("venv").join("bin").join(name);
    assert!(
        p.is_file(),
        "`{name}` is not installed at {}: run `{INSTALL}` (it installs OpenBao, moto and aiosmtpd into a cache directory)",
        p.display()
    );
    p
}

/// A free loopback port (bound and released; the server binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// `curl` with `args`, for talking to peers from tests.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"))
}

/// A server process on a loopback port, restartable on the same port.
pub struct Peer {
    /// What it is, for messages.
    pub what: &'static str,
    /// Program.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Its port.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Directory for its log and HOME.
    pub dir: PathBuf,
    /// The process while it runs.
    pub child: Option<Child>,
    /// Path polled (expecting HTTP 200) to know it is up.
    pub health: &'static str,
}

impl Peer {
    /// Starts the process and waits until `health` answers 200.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.what);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.what)))
            .unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("HOME", &self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: cannot start {}: {e}",
                    self.what,
                    self.program.display()
                )
            });
        self.child = Some(child);
        let url = format!("{}{}", self.url, self.health);
        let up = wait_until(Duration::from_secs(60), || {
            let out = curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]);
            String::from_utf8_lossy(&out.stdout).trim() == "200"
        });
        assert!(
            up,
            "{} did not come up on {}; log:\n{}",
            self.what,
            self.url,
            fs::read_to_string(self.dir.join(format!("{}.log", self.what))).unwrap_or_default()
        );
    }

    /// Kills the process and waits for it (the port is free again).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `bao server -dev` with root token `root`; KV v2 is mounted at `secret/`.
/// Dev mode keeps everything in memory: a restart starts empty.
pub fn bao(dir: &Path) -> Peer {
    fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let mut p = Peer {
        what: "openbao",
        program: peer_bin("bao"),
        args: vec![
            "server".into(),
            "-dev".into(),
            "-dev-root-token-id=root".into(),
            format!("-dev-listen-address=127.0.0.1:{port}"),
        ],
        port,
        url: format!("http://127.0.0.1:{port}"),
        dir: dir.to_path_buf(),
        child: None,
        health: "/v1/sys/health",
    };
    p.start();
    p
}

/// `moto_server` (AWS IAM, STS, Secrets Manager; signatures not checked).
pub fn moto(dir: &Path) -> Peer {
    fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let mut p = Peer {
        what: "moto",
        program: peer_bin("moto_server"),
        args: vec![
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        port,
        url: format!("http://127.0.0.1:{port}"),
        dir: dir.to_path_buf(),
        child: None,
        health: "/moto-api/",
    };
    p.start();
    p
}

/// A call to OpenBao with the root token: `method path [json body]`;
/// returns (status, body).
pub fn bao_api(bao: &Peer, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let url = format!("{}/v1/{}", bao.url, path.trim_start_matches('/'));
    let mut args = vec![
        "-X",
        method,
        "-H",
        "X-Vault-Token: root",
        "-w",
        "\n%{http_code}",
        url.as_str(),
    ];
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
