//! A real SMTP server for the notification tests: `tests/smtp_server.py`
//! (aiosmtpd, run by the peers venv's python) on a loopback port. It stores
//! every message it accepts with its envelope, whether the session used TLS
//! and who authenticated, and its decoded parts; the test reads them back.
//! It can require STARTTLS or speak implicit TLS (certificates from a
//! private CA made by [`make_cert`]), require AUTH, refuse recipients with
//! 550 and answer the first messages 451. It is killed when dropped and can
//! be stopped and started again on the same port.
#![allow(dead_code)]

use std::fs;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::peers::{INSTALL, free_port, peer_bin};
use super::wait_until;

/// The server script.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py");

/// The `[notify]` table of `common::base_config`, which [`with_notify`]
/// replaces.
pub const BASE_NOTIFY: &str =
    "[notify]\nfrom = \"keyrot@example.com\"\ntransport = \"file\"\ndir = \"mail\"\n";

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct SmtpOptions {
    /// `none` (default), `starttls` (required) or `implicit`.
    pub tls: &'static str,
    /// Certificates for TLS (from [`make_cert`]).
    pub certs: Option<Certs>,
    /// AUTH required: user name and the file holding the password.
    pub auth: Option<(String, PathBuf)>,
    /// Recipients answered 550 at RCPT TO.
    pub reject: Vec<String>,
    /// The first N messages are answered 451 after DATA.
    pub tempfail: u32,
}

/// A private CA and a server certificate for 127.0.0.1 and localhost.
#[derive(Clone, Debug)]
pub struct Certs {
    /// The CA certificate (what `ca_file` points at).
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
}

/// Makes a CA and a server certificate in `dir`.
pub fn make_cert(dir: &Path) -> Certs {
    let out = Command::new(peer_bin("python"))
        .arg(SCRIPT)
        .arg("make-cert")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {SCRIPT}: {e}"));
    assert!(
        out.status.success(),
        "make-cert failed (run `{INSTALL}`?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// One message as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// MAIL FROM.
    pub mail_from: String,
    /// RCPT TOs it accepted.
    pub rcpt_tos: Vec<String>,
    /// Whether the session was encrypted.
    pub tls: bool,
    /// Who authenticated, if anyone.
    pub auth_user: Option<String>,
    /// Top-level headers, in order.
    pub headers: Vec<(String, String)>,
    /// Every non-multipart part: content type and decoded text.
    pub parts: Vec<(String, String)>,
    /// The message's bytes as received.
    pub raw: Vec<u8>,
}

impl Received {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Message-ID header.
    pub fn message_id(&self) -> &str {
        self.header("Message-ID")
            .unwrap_or_else(|| panic!("no Message-ID in {:?}", self.headers))
    }

    /// The decoded text of the first part of type `content_type`.
    pub fn part(&self, content_type: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(t, _)| t == content_type)
            .map(|(_, v)| v.as_str())
    }
}

/// The server process.
pub struct SmtpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it stores messages (`accepted/`, `tempfailed/`) and its log.
    pub dir: PathBuf,
    /// How it behaves.
    pub opts: SmtpOptions,
    /// The process while it runs.
    child: Option<Child>,
}

impl SmtpServer {
    /// A server on a free port, storing into `dir`, not started yet.
    pub fn new(dir: &Path, opts: SmtpOptions) -> SmtpServer {
        fs::create_dir_all(dir).unwrap();
        SmtpServer {
            port: free_port(),
            dir: dir.to_path_buf(),
            opts,
            child: None,
        }
    }

    /// A started server.
    pub fn start_new(dir: &Path, opts: SmtpOptions) -> SmtpServer {
        let mut s = SmtpServer::new(dir, opts);
        s.start();
        s
    }

    /// The server's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("smtp.log")).unwrap_or_default()
    }

    /// Starts the process and waits until it listens.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "smtp server already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("smtp.log"))
            .unwrap();
        let mut cmd = Command::new(peer_bin("python"));
        cmd.arg(SCRIPT)
            .arg("serve")
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--tls",
                if self.opts.tls.is_empty() {
                    "none"
                } else {
                    self.opts.tls
                },
            ]);
        if let Some(c) = &self.opts.certs {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        if let Some((user, file)) = &self.opts.auth {
            cmd.args(["--user", user]).arg("--password-file").arg(file);
        }
        for r in &self.opts.reject {
            cmd.args(["--reject", r]);
        }
        cmd.args(["--tempfail", &self.opts.tempfail.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {SCRIPT}: {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.starts_with("listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SMTP server did not start (aiosmtpd missing? run `{INSTALL}`); log:\n{}",
                self.log()
            );
        }
        self.child = Some(child);
    }

    /// Kills the process (the port is free again).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Messages accepted so far, in order.
    pub fn accepted(&self) -> Vec<Received> {
        read_dir(&self.dir.join("accepted"))
    }

    /// Messages answered 451 so far, in order.
    pub fn tempfailed(&self) -> Vec<Received> {
        read_dir(&self.dir.join("tempfailed"))
    }

    /// Waits until at least `n` messages were accepted; panics with the
    /// server's log and `context` otherwise.
    pub fn wait_accepted(&self, n: usize, timeout: Duration, context: &str) -> Vec<Received> {
        let ok = wait_until(timeout, || self.accepted().len() >= n);
        assert!(
            ok,
            "fewer than {n} messages accepted; server log:\n{}\n{context}",
            self.log()
        );
        self.accepted()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads `NNNNNN.json` + `NNNNNN.eml` pairs in order.
fn read_dir(dir: &Path) -> Vec<Received> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|json| {
            let v: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
            let strings = |v: &serde_json::Value| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect()
            };
            Received {
                mail_from: v["mail_from"].as_str().unwrap().to_string(),
                rcpt_tos: strings(&v["rcpt_tos"]),
                tls: v["tls"].as_bool().unwrap(),
                auth_user: v["auth_user"].as_str().map(str::to_string),
                headers: v["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        let kv = strings(h);
                        (kv[0].clone(), kv[1].clone())
                    })
                    .collect(),
                parts: v["parts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["content_type"].as_str().unwrap().to_string(),
                            p["text"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
                raw: fs::read(json.with_extension("eml")).unwrap(),
            }
        })
        .collect()
}

/// `config` (built on `common::base_config`) with its `[notify]` table
/// replaced by `notify`.
pub fn with_notify(config: &str, notify: &str) -> String {
    assert!(
        config.contains(BASE_NOTIFY),
        "common::base_config's [notify] changed: update BASE_NOTIFY in tests/common/smtp.rs"
    );
    config.replace(BASE_NOTIFY, notify)
}

/// A `[notify]` table for `server`: plain SMTP to 127.0.0.1 (or
/// `security`, with `extra` lines such as `ca_file`, `username`).
pub fn smtp_notify(server: &SmtpServer, security: &str, extra: &str) -> String {
    format!(
        "[notify]\nfrom = \"keyrot@example.com\"\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"{security}\"\ntimeout = \"5s\"\n{extra}",
        server.port
    )
}
