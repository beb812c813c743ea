//! Running an operator's program for the `exec` sink and the `exec`
//! provider: one way to start it with a cleared environment (only `PATH`,
//! `LANG`, the configured `env` and the caller's `KEYROT_*` variables pass,
//! so no credential of keyrot's leaks into it), feed it stdin, collect
//! stdout (into a wiped buffer: it may hold a secret) and the start of
//! stderr, and kill everything it started at the timeout ([`tree`]); and
//! one way to turn a non-zero exit into a [`CallError`]: exit 75
//! (`EX_TEMPFAIL`) or any code outside 64–78 is transient, 64–78 other than
//! 75 (sysexits' usage, data, config and permission errors) permanent, with
//! the first part of stderr (any echo of a secret cut out) in the message.

mod tree;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::process::Stdio;

use jiff::SignedDuration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdout, Command};
use zeroize::Zeroizing;

use keyrot_core::error::CallError;
use keyrot_core::policy::format_duration;

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
    ///
    /// stdin is written while stdout and stderr are read, so a program that
    /// talks before it listens cannot block on a full pipe. The call ends
    /// when the program exits, not when its pipes close: what it wrote
    /// before exiting is taken from the pipes at once, and a process it left
    /// behind that still holds them (a background job, a daemon it
    /// started) neither stalls the call nor is killed by it. Only a timeout
    /// kills, and then the whole tree (see [`tree`]).
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
        // SAFETY: the hook runs in the forked child before exec and makes
        // one prctl(2) call, which is async-signal-safe and touches no
        // memory shared with this process.
        unsafe {
            cmd.pre_exec(tree::become_subreaper);
        }
        // Out of descriptors or processes is transient: the retry budget
        // waits for load to drop instead of failing the rotation.
        let mut child = cmd.spawn().map_err(|e| {
            CallError::from_io(format!("{who}: cannot start `{what}` {program}: {e}"), &e)
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let max_stdout = self.max_stdout;
        let mut out = Zeroizing::new(Vec::with_capacity(max_stdout.min(64 * 1024)));
        let mut err = Vec::new();
        let mut over = false;
        let io = async {
            let exited = {
                let feed = async {
                    if let (Some(w), Some(bytes)) = (stdin.as_mut(), input) {
                        // A program that exits without reading is not an
                        // error here; its exit status says what happened.
                        let _ = w.write_all(bytes).await;
                        let _ = w.shutdown().await;
                    }
                    drop(stdin.take());
                };
                let pipes = async {
                    tokio::join!(
                        feed,
                        read_stdout(stdout.as_mut(), &mut out, max_stdout, &mut over),
                        read_stderr(stderr.as_mut(), &mut err),
                    )
                };
                tokio::select! {
                    _ = pipes => None,
                    status = child.wait() => Some(status),
                }
            };
            match exited {
                None => child.wait().await,
                Some(status) => {
                    // Everything the program wrote before it exited is in
                    // the pipes now; whatever still holds them is not the
                    // program.
                    if let Some(r) = stdout.as_ref() {
                        over |= drain_now(r, |b| keep_secret(&mut out, max_stdout, b));
                    }
                    if let Some(r) = stderr.as_ref() {
                        drain_now(r, |b| {
                            keep_stderr(&mut err, b);
                            false
                        });
                    }
                    status
                }
            }
        };
        let limit = std::time::Duration::try_from(self.timeout)
            .unwrap_or(std::time::Duration::from_secs(30));
        let status = tokio::time::timeout(limit, io).await;
        match status {
            Ok(Ok(_)) if over => Err(CallError::permanent(format!(
                "{who}: `{what}` printed more than {max_stdout} bytes on stdout"
            ))),
            Ok(Ok(status)) => Ok(Run {
                code: status.code(),
                stdout: out,
                stderr: err,
            }),
            Ok(Err(e)) => Err(CallError::transient(format!(
                "{who}: `{what}`: waiting for it failed: {e}"
            ))),
            Err(_) => {
                if let Some(pid) = pid {
                    tree::kill(pid);
                }
                Err(CallError::transient(format!(
                    "{who}: `{what}` {program} did not finish within {}; killed",
                    format_duration(self.timeout)
                )))
            }
        }
    }
}

/// Size of one read from a pipe.
const CHUNK: usize = 8 * 1024;
/// Most bytes [`drain_now`] reads after the program exited: a process it
/// left behind that keeps writing cannot keep the call busy.
const MAX_DRAIN: usize = 16 * 1024 * 1024 + CHUNK;

/// Reads stdout to its end into `out` (at most `max` bytes kept, the rest
/// read and dropped so the program never blocks on a full pipe; `over` set
/// when there was more).
async fn read_stdout(
    r: Option<&mut ChildStdout>,
    out: &mut Zeroizing<Vec<u8>>,
    max: usize,
    over: &mut bool,
) {
    let Some(r) = r else { return };
    let mut chunk = Zeroizing::new([0u8; CHUNK]);
    while let Ok(n @ 1..) = r.read(&mut chunk[..]).await {
        *over |= keep_secret(out, max, &chunk[..n]);
    }
}

/// Reads stderr to its end, keeping its first [`MAX_STDERR`] bytes and
/// dropping the rest (a chatty program must not block on a full pipe).
async fn read_stderr(r: Option<&mut ChildStderr>, err: &mut Vec<u8>) {
    let Some(r) = r else { return };
    let mut chunk = [0u8; CHUNK];
    while let Ok(n @ 1..) = r.read(&mut chunk).await {
        keep_stderr(err, &chunk[..n]);
    }
}

/// Appends `bytes` to `out` up to `max` bytes; true when some were dropped.
/// The buffer never reallocates in place: it moves to a bigger wiped
/// buffer, so no copy of a secret is left in freed memory.
fn keep_secret(out: &mut Zeroizing<Vec<u8>>, max: usize, bytes: &[u8]) -> bool {
    let room = max.saturating_sub(out.len());
    let take = &bytes[..bytes.len().min(room)];
    if out.capacity() - out.len() < take.len() {
        let want = (out.len() + take.len()).max(out.capacity() * 2).min(max);
        let mut bigger = Zeroizing::new(Vec::with_capacity(want));
        bigger.extend_from_slice(out);
        *out = bigger;
    }
    out.extend_from_slice(take);
    take.len() < bytes.len()
}

/// Appends `bytes` to `err` up to [`MAX_STDERR`] bytes.
fn keep_stderr(err: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_STDERR.saturating_sub(err.len());
    err.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Reads what `pipe` holds right now (it is non-blocking) and hands it to
/// `keep`, until it is empty, at its end, or [`MAX_DRAIN`] bytes were read.
/// Returns what `keep` returned, or-ed.
fn drain_now(pipe: &impl AsFd, mut keep: impl FnMut(&[u8]) -> bool) -> bool {
    let mut chunk = Zeroizing::new([0u8; CHUNK]);
    let (mut read, mut any) = (0, false);
    while read < MAX_DRAIN {
        match rustix::io::read(pipe, &mut chunk[..]) {
            Ok(0) => break,
            Ok(n) => {
                read += n;
                any |= keep(&chunk[..n]);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    any
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

#[cfg(test)]
mod tests;
