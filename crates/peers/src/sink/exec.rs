//! The `exec` sink: hands the secret to an operator's program on stdin.
//!
//! The program gets the secret's bytes on stdin (no trailing newline) and
//! the metadata in `KEYROT_*` environment variables; the secret is never in
//! its argv or environment. How the program is run (cleared environment,
//! everything it started killed at the timeout, exit codes, stderr in
//! errors) is [`crate::exec`].
//!
//! `read_command`, when set, prints the stored secret on stdout for the
//! Verifying step (compared by hash); without it the sink cannot be read
//! back and Verifying relies on the write's exit status.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::{Sink, SinkTarget};
use crate::exec::Program;
use keyrot_config::ExecSinkConfig;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;

/// Most stdout `read_command` may print, in bytes.
const MAX_STDOUT: usize = 64 * 1024;

/// Runs a program per write.
pub struct ExecSink {
    /// Config name.
    name: String,
    /// `sink "NAME"`, for messages.
    who: String,
    /// Settings.
    cfg: ExecSinkConfig,
}

impl ExecSink {
    /// An exec sink (the config is validated: absolute program path).
    pub fn new(name: &str, cfg: &ExecSinkConfig) -> Result<ExecSink, CallError> {
        Ok(ExecSink {
            name: name.to_string(),
            who: format!("sink {name:?}"),
            cfg: cfg.clone(),
        })
    }

    /// The program `argv` for `target`, with the `KEYROT_*` metadata.
    fn program<'a>(
        &'a self,
        what: &'a str,
        argv: &'a [String],
        target: &SinkTarget,
        op: &str,
    ) -> Program<'a> {
        Program {
            who: &self.who,
            what,
            argv,
            env: &self.cfg.env,
            vars: vec![
                ("KEYROT_OP", op.to_string()),
                ("KEYROT_SINK", self.name.clone()),
                ("KEYROT_SLOT", target.slot.clone()),
                ("KEYROT_PROVIDER", target.provider.clone()),
                ("KEYROT_KEY_NAME", target.key_name.clone()),
                ("KEYROT_KEY_ID", target.key_id.clone()),
                ("KEYROT_ROTATION_ID", target.rotation_id.clone()),
                (
                    "KEYROT_EXPIRES_AT",
                    target.expires_at.map(|t| t.to_string()).unwrap_or_default(),
                ),
                (
                    "KEYROT_PROBE",
                    if target.probe { "1" } else { "0" }.to_string(),
                ),
            ],
            timeout: self.cfg.timeout,
            max_stdout: MAX_STDOUT,
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
            .program("command", &self.cfg.command, target, "put")
            .run(Some(value.as_bytes()))
            .await?;
        if run.code != Some(0) {
            return Err(run.failure(&self.who, "command", Some(value)));
        }
        Ok(None)
    }

    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError> {
        let Some(argv) = &self.cfg.read_command else {
            return Ok(None);
        };
        let run = self
            .program("read_command", argv, target, "read")
            .run(None)
            .await?;
        if run.code != Some(0) {
            return Err(run.failure(&self.who, "read_command", None));
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
                timeout: keyrot_core::policy::parse_duration(timeout).unwrap(),
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
        let mut gone = false;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            // Gone, or a zombie waiting for init to reap it.
            gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |st| st.contains(") Z "));
            if gone {
                break;
            }
        }
        assert!(gone, "sleep {pid} survived the timeout");
    }
}
