//! Running an operator's program for the `exec` sink and the `exec`
//! provider: one way to start it with a cleared environment (only `PATH`,
//! `LANG`, the configured `env` and the caller's `KEYROT_*` variables pass,
//! so no credential of keyrot's leaks into it), feed it stdin, collect
//! stdout (into a wiped buffer: it may hold a secret) and the start of
//! stderr, and kill its whole process group at the timeout; and one way to
//! turn a non-zero exit into a [`CallError`]: exit 75 (`EX_TEMPFAIL`) or any
//! code outside 64–78 is transient, 64–78 other than 75 (sysexits' usage,
//! data, config and permission errors) permanent, with the first part of
//! stderr (any echo of a secret cut out) in the message.

use std::collections::BTreeMap;
use std::process::Stdio;

use jiff::SignedDuration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use zeroize::Zeroizing;

use crate::error::CallError;
use crate::policy::format_duration;

/// `PATH` given to the program.
const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Most stderr kept for an error message, in bytes.
const MAX_STDERR: usize = 4096;
/// Most stderr shown in an error message, in characters.
const SHOWN_STDERR: usize = 500;

/// One program run: what to start and how.
pub struct Program<'a> {
    /// Who runs it, for messages (`sink "hook"`).
    pub who: &'a str,
    /// The config field it comes from, for messages (`command`).
    pub what: &'a str,
    /// Program (absolute path) and arguments.
    pub argv: &'a [String],
    /// Configured extra environment.
    pub env: &'a BTreeMap<String, String>,
    /// The caller's `KEYROT_*` variables (never a secret).
    pub vars: Vec<(&'static str, String)>,
    /// Kill after this long.
    pub timeout: SignedDuration,
    /// Most stdout kept, in bytes (more is an error).
    pub max_stdout: usize,
}

/// What one run of a program produced.
pub struct Run {
    /// Exit code, None when killed by a signal.
    pub code: Option<i32>,
    /// Stdout, wiped on drop.
    pub stdout: Zeroizing<Vec<u8>>,
    /// The start of stderr.
    pub stderr: Vec<u8>,
}

impl Program<'_> {
    /// Runs the program, writing `input` to its stdin, within the timeout.
    pub async fn run(&self, input: Option<&[u8]>) -> Result<Run, CallError> {
        let (who, what) = (self.who, self.what);
        let Some(program) = self.argv.first() else {
            return Err(CallError::permanent(format!("{who}: `{what}` is empty")));
        };
        let mut cmd = Command::new(program);
        cmd.args(&self.argv[1..])
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("LANG", "C.UTF-8")
            .envs(self.env)
            .envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // Out of descriptors or processes is transient: the retry budget
        // waits for load to drop instead of failing the rotation.
        let mut child = cmd.spawn().map_err(|e| {
            CallError::from_io(format!("{who}: cannot start `{what}` {program}: {e}"), &e)
        })?;
        let pid = child.id();
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let max_stdout = self.max_stdout;
        let io = async {
            if let (Some(mut w), Some(bytes)) = (stdin.take(), input) {
                // A program that exits without reading is not an error here;
                // its exit status says what happened.
                let _ = w.write_all(bytes).await;
                let _ = w.shutdown().await;
            }
            drop(stdin.take());
            let out = async {
                let mut buf = Zeroizing::new(Vec::with_capacity(max_stdout.min(64 * 1024) + 1));
                if let Some(r) = stdout.as_mut() {
                    let _ = r.take(max_stdout as u64 + 1).read_to_end(&mut buf).await;
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
        let limit = std::time::Duration::try_from(self.timeout)
            .unwrap_or(std::time::Duration::from_secs(30));
        match tokio::time::timeout(limit, io).await {
            Ok((stdout, _, Ok(_))) if stdout.len() > max_stdout => Err(CallError::permanent(
                format!("{who}: `{what}` printed more than {max_stdout} bytes on stdout"),
            )),
            Ok((stdout, stderr, Ok(status))) => Ok(Run {
                code: status.code(),
                stdout,
                stderr,
            }),
            Ok((_, _, Err(e))) => Err(CallError::transient(format!(
                "{who}: `{what}`: waiting for it failed: {e}"
            ))),
            Err(_) => {
                kill_group(pid);
                Err(CallError::transient(format!(
                    "{who}: `{what}` {program} did not finish within {}; killed",
                    format_duration(self.timeout)
                )))
            }
        }
    }
}

impl Run {
    /// The error for a run that did not exit 0, with `secret` (if any) cut
    /// out of the stderr shown.
    pub fn failure(&self, who: &str, what: &str, secret: Option<&str>) -> CallError {
        let mut text = String::from_utf8_lossy(&self.stderr).into_owned();
        if let Some(s) = secret.filter(|s| !s.is_empty()) {
            text = text.replace(s, "[redacted]");
        }
        let text = text.trim();
        let mut shown: String = text.chars().take(SHOWN_STDERR).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        let status = match self.code {
            Some(c) => format!("exited with {c}"),
            None => "was killed by a signal".to_string(),
        };
        let stderr = if shown.is_empty() {
            " (no stderr)".to_string()
        } else {
            format!(": {shown}")
        };
        let message = format!("{who}: `{what}` {status}{stderr}");
        match self.code {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
