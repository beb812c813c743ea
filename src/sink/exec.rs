//! The `exec` sink: hands the secret to an operator's program on stdin.
//!
//! The program gets the secret's bytes on stdin (no trailing newline) and
//! the metadata in `KEYROT_*` environment variables; the secret is never in
//! its argv or environment, and the environment is otherwise cleared (only
//! `PATH`, `LANG` and the sink's own `env` pass), so no credential of
//! keyrot's leaks into the child. The program runs in its own process
//! group, which is killed at the timeout. Exit 0 is success; exit 75
//! (`EX_TEMPFAIL`) or any code outside 64–78 is a transient failure (retried
//! with backoff); 64–78 other than 75 (sysexits' usage, data, config and
//! permission errors) is permanent. The error carries the first part of
//! stderr, with any echo of the secret cut out.
//!
//! `read_command`, when set, prints the stored secret on stdout for the
//! Verifying step (compared by hash); without it the sink cannot be read
//! back and Verifying relies on the write's exit status.

use std::process::Stdio;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use zeroize::Zeroizing;

use super::{Sink, SinkTarget};
use crate::config::ExecSinkConfig;
use crate::crypto::sha256_hex;
use crate::error::CallError;
use crate::policy::format_duration;

/// `PATH` given to the program.
const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Most stderr kept for an error message, in bytes.
const MAX_STDERR: usize = 4096;
/// Most stderr shown in an error message, in characters.
const SHOWN_STDERR: usize = 500;
/// Most stdout `read_command` may print, in bytes.
const MAX_STDOUT: usize = 64 * 1024;

/// Runs a program per write.
pub struct ExecSink {
    /// Config name.
    name: String,
    /// Settings.
    cfg: ExecSinkConfig,
}

/// What one run of a program produced.
struct Run {
    /// Exit code, None when killed by a signal.
    code: Option<i32>,
    /// Stdout (only kept for `read_command`).
    stdout: Zeroizing<Vec<u8>>,
    /// The start of stderr.
    stderr: Vec<u8>,
}

impl ExecSink {
    /// An exec sink (the config is validated: absolute program path).
    pub fn new(name: &str, cfg: &ExecSinkConfig) -> Result<ExecSink, CallError> {
        Ok(ExecSink {
            name: name.to_string(),
            cfg: cfg.clone(),
        })
    }

    /// The program for `argv` with a cleared environment, `PATH`, `LANG`,
    /// the sink's `env` and the `KEYROT_*` metadata.
    fn command(&self, argv: &[String], target: &SinkTarget, op: &str) -> Command {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("LANG", "C.UTF-8")
            .envs(&self.cfg.env)
            .env("KEYROT_OP", op)
            .env("KEYROT_SINK", &self.name)
            .env("KEYROT_SLOT", &target.slot)
            .env("KEYROT_PROVIDER", &target.provider)
            .env("KEYROT_KEY_NAME", &target.key_name)
            .env("KEYROT_KEY_ID", &target.key_id)
            .env("KEYROT_ROTATION_ID", &target.rotation_id)
            .env(
                "KEYROT_EXPIRES_AT",
                target.expires_at.map(|t| t.to_string()).unwrap_or_default(),
            )
            .env("KEYROT_PROBE", if target.probe { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Runs `argv`, writing `input` to its stdin, within the timeout.
    async fn run(
        &self,
        argv: &[String],
        target: &SinkTarget,
        op: &str,
        input: Option<&[u8]>,
    ) -> Result<Run, CallError> {
        let what = if op == "put" {
            "command"
        } else {
            "read_command"
        };
        let mut child = self.command(argv, target, op).spawn().map_err(|e| {
            CallError::permanent(format!(
                "sink {:?}: cannot start `{what}` {}: {e}",
                self.name, argv[0]
            ))
        })?;
        let pid = child.id();
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let io = async {
            if let (Some(mut w), Some(bytes)) = (stdin.take(), input) {
                // A program that exits without reading is not an error here;
                // its exit status says what happened.
                let _ = w.write_all(bytes).await;
                let _ = w.shutdown().await;
            }
            drop(stdin.take());
            let out = async {
                let mut buf = Zeroizing::new(Vec::new());
                if let Some(r) = stdout.as_mut() {
                    let _ = r.take(MAX_STDOUT as u64 + 1).read_to_end(&mut buf).await;
                }
                buf
            };
            let err = async {
                let mut buf = Vec::new();
                if let Some(r) = stderr.as_mut() {
                    let _ = r.take(MAX_STDERR as u64).read_to_end(&mut buf).await;
                }
                buf
            };
            let (out, err) = tokio::join!(out, err);
            let status = child.wait().await;
            (out, err, status)
        };
        let limit = std::time::Duration::try_from(self.cfg.timeout)
            .unwrap_or(std::time::Duration::from_secs(30));
        match tokio::time::timeout(limit, io).await {
            Ok((stdout, stderr, Ok(status))) => Ok(Run {
                code: status.code(),
                stdout,
                stderr,
            }),
            Ok((_, _, Err(e))) => Err(CallError::transient(format!(
                "sink {:?}: `{what}`: waiting for it failed: {e}",
                self.name
            ))),
            Err(_) => {
                kill_group(pid);
                Err(CallError::transient(format!(
                    "sink {:?}: `{what}` {} did not finish within {}; killed",
                    self.name,
                    argv[0],
                    format_duration(self.cfg.timeout)
                )))
            }
        }
    }

    /// The error for a run that did not exit 0.
    fn failure(&self, what: &str, run: &Run, secret: Option<&str>) -> CallError {
        let mut text = String::from_utf8_lossy(&run.stderr).into_owned();
        if let Some(s) = secret.filter(|s| !s.is_empty()) {
            text = text.replace(s, "[redacted]");
        }
        let text = text.trim();
        let mut shown: String = text.chars().take(SHOWN_STDERR).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        let status = match run.code {
            Some(c) => format!("exited with {c}"),
            None => "was killed by a signal".to_string(),
        };
        let stderr = if shown.is_empty() {
            " (no stderr)".to_string()
        } else {
            format!(": {shown}")
        };
        let message = format!("sink {:?}: `{what}` {status}{stderr}", self.name);
        match run.code {
            Some(c) if (64..=78).contains(&c) && c != 75 => CallError::permanent(message),
            _ => CallError::transient(message),
        }
    }
}

/// Kills process group `pid` (the program and anything it started).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // it touches no memory of ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[async_trait]
impl Sink for ExecSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "exec"
    }

    async fn put(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Option<String>, CallError> {
        let value = secret.expose_secret();
        let run = self
            .run(&self.cfg.command, target, "put", Some(value.as_bytes()))
            .await?;
        if run.code != Some(0) {
            return Err(self.failure("command", &run, Some(value)));
        }
        Ok(None)
    }

    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError> {
        let Some(argv) = &self.cfg.read_command else {
            return Ok(None);
        };
        let run = self.run(argv, target, "read", None).await?;
        if run.code != Some(0) {
            return Err(self.failure("read_command", &run, None));
        }
        if run.stdout.len() > MAX_STDOUT {
            return Err(CallError::permanent(format!(
                "sink {:?}: `read_command` printed more than {MAX_STDOUT} bytes",
                self.name
            )));
        }
        let mut end = run.stdout.len();
        if run.stdout[..end].ends_with(b"\n") {
            end -= 1;
            if run.stdout[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        if end == 0 {
            return Ok(None);
        }
        Ok(Some(sha256_hex(&run.stdout[..end])))
    }

    fn can_read_back(&self) -> bool {
        self.cfg.read_command.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    fn target() -> SinkTarget {
        SinkTarget {
            slot: "local/ci".into(),
            provider: "local".into(),
            key_name: "ci".into(),
            key_id: "lk_1".into(),
            rotation_id: "r-1".into(),
            expires_at: Some("2027-01-01T00:00:00Z".parse().unwrap()),
            probe: false,
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn sink(command: Vec<String>, read: Option<Vec<String>>, timeout: &str) -> ExecSink {
        ExecSink::new(
            "hook",
            &ExecSinkConfig {
                command,
                read_command: read,
                env: BTreeMap::from([("TARGET".to_string(), "prod".to_string())]),
                timeout: crate::policy::parse_duration(timeout).unwrap(),
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn secret_on_stdin_metadata_in_env_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("stored");
        let env = dir.path().join("env");
        let argv_file = dir.path().join("argv");
        let put = script(
            dir.path(),
            "put",
            &format!(
                "cat > {s}; env > {e}; echo \"$@\" > {a}",
                s = store.display(),
                e = env.display(),
                a = argv_file.display()
            ),
        );
        let read = script(
            dir.path(),
            "read",
            &format!("cat {}; echo", store.display()),
        );
        let s = sink(vec![put, "--flag".into()], Some(vec![read]), "10s");
        let secret = SecretString::from("s3cr3t-marker");
        assert_eq!(s.put(&target(), &secret).await.unwrap(), None);
        assert_eq!(std::fs::read_to_string(&store).unwrap(), "s3cr3t-marker");
        let env = std::fs::read_to_string(&env).unwrap();
        assert!(env.contains("KEYROT_KEY_ID=lk_1\n"), "{env}");
        assert!(env.contains("KEYROT_ROTATION_ID=r-1\n"), "{env}");
        assert!(
            env.contains("KEYROT_EXPIRES_AT=2027-01-01T00:00:00Z\n"),
            "{env}"
        );
        assert!(env.contains("KEYROT_SLOT=local/ci\n"), "{env}");
        assert!(env.contains("KEYROT_PROBE=0\n"), "{env}");
        assert!(env.contains("TARGET=prod\n"), "{env}");
        assert!(!env.contains("s3cr3t-marker"), "{env}");
        // The environment is cleared: nothing of the test process leaks in.
        assert!(!env.contains("CARGO"), "{env}");
        assert_eq!(std::fs::read_to_string(&argv_file).unwrap(), "--flag\n");
        assert!(s.can_read_back());
        assert_eq!(
            s.read_back(&target()).await.unwrap(),
            Some(sha256_hex(b"s3cr3t-marker"))
        );
    }

    #[tokio::test]
    async fn failures_carry_stderr_without_the_secret_and_classify_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let echo = script(
            dir.path(),
            "fail",
            "v=$(cat); echo \"cannot store $v: vault down\" >&2; exit 1",
        );
        let s = sink(vec![echo], None, "10s");
        let e = s
            .put(&target(), &SecretString::from("s3cr3t-marker"))
            .await
            .unwrap_err();
        assert!(e.transient, "{e:?}");
        assert!(
            e.message
                .contains("exited with 1: cannot store [redacted]: vault down"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("s3cr3t"), "{}", e.message);
        let cfg_err = script(dir.path(), "cfg", "echo 'bad config' >&2; exit 78");
        let e = sink(vec![cfg_err], None, "10s")
            .put(&target(), &SecretString::from("x"))
            .await
            .unwrap_err();
        assert!(!e.transient, "{e:?}");
        let temp = script(dir.path(), "temp", "exit 75");
        let e = sink(vec![temp], None, "10s")
            .put(&target(), &SecretString::from("x"))
            .await
            .unwrap_err();
        assert!(
            e.transient && e.message.ends_with("exited with 75 (no stderr)"),
            "{}",
            e.message
        );
        let missing = sink(vec!["/nonexistent/keyrot-hook".into()], None, "10s");
        let e = missing
            .put(&target(), &SecretString::from("x"))
            .await
            .unwrap_err();
        assert!(
            !e.transient && e.message.contains("cannot start `command`"),
            "{}",
            e.message
        );
        assert!(!missing.can_read_back());
        assert_eq!(missing.read_back(&target()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_hanging_program_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let hang = script(
            dir.path(),
            "hang",
            &format!("sleep 600 & echo $! > {}; wait", pidfile.display()),
        );
        let s = sink(vec![hang], None, "1s");
        let e = s
            .put(&target(), &SecretString::from("x"))
            .await
            .unwrap_err();
        assert!(
            e.transient && e.message.contains("did not finish within 1s; killed"),
            "{}",
            e.message
        );
        // The grandchild `sleep` was in the group and is gone too.
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            // Gone, or a zombie waiting for init to reap it.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |st| st.contains(") Z "))
        });
        assert!(gone, "sleep {pid} survived the timeout");
    }
}
