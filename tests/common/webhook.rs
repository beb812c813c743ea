//! A real HTTP receiver for the webhook tests: `tests/webhook_receiver.py`
//! (standard-library Python, run by the peers venv's python) on a loopback
//! port. It verifies every delivery's signature from the documented
//! contract and logs each request as one JSON line; the test reads them
//! back. It is killed when dropped and can be stopped and started again on
//! the same port (a receiver outage).
#![allow(dead_code)]

use std::fs;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::peers::{INSTALL, free_port, peer_bin};

/// The receiver script.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhook_receiver.py");

/// The receiver process.
pub struct Receiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where its secret, request log and stderr live.
    pub dir: PathBuf,
    /// The status it answers valid deliveries with.
    pub status: u16,
    /// The process while it runs.
    child: Option<Child>,
}

impl Receiver {
    /// A started receiver sharing `secret` with keyrot, keeping its files
    /// in `dir`.
    pub fn start(dir: &Path, secret: &str) -> Receiver {
        fs::create_dir_all(dir).unwrap();
        super::write_secret(&dir.join("secret"), secret);
        let mut r = Receiver {
            port: free_port(),
            dir: dir.to_path_buf(),
            status: 204,
            child: None,
        };
        r.resume();
        r
    }

    /// The URL keyrot posts to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Starts the process again (same port) and waits until it listens.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "receiver already running");
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("receiver.err"))
            .unwrap();
        let mut child = Command::new(peer_bin("python"))
            .arg(SCRIPT)
            .args(["--port", &self.port.to_string()])
            .arg("--secret-file")
            .arg(self.dir.join("secret"))
            .arg("--log")
            .arg(self.dir.join("requests.jsonl"))
            .args(["--status", &self.status.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {SCRIPT}: {e} (run `{INSTALL}`)"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.starts_with("listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the webhook receiver did not start: {}",
                fs::read_to_string(self.dir.join("receiver.err")).unwrap_or_default()
            );
        }
        self.child = Some(child);
    }

    /// Stops the process (the port refuses connections until [`resume`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every request logged so far, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.dir.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
