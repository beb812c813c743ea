//! Counting the statements keyrot sends: PostgreSQL logs every statement
//! of the census database (`log_statement = 'all'`, set on the database,
//! so it applies to the sessions keyrot opens afterwards) to the server's
//! log, and the part of the log written during a run is read back here.
//! Each line the server writes starts `TIMESTAMP [PID] LOG:  ` (the
//! default `log_line_prefix`), so the statements of each session are
//! followed from `BEGIN` to `COMMIT`.

use std::collections::HashMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// What a log span holds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Census {
    /// Write transactions committed.
    pub commits: u64,
    /// Write transactions rolled back.
    pub rollbacks: u64,
    /// `pg_advisory_xact_lock` calls.
    pub locks: u64,
    /// Lease checks.
    pub lease_checks: u64,
    /// Statements inside committed write transactions other than `BEGIN`,
    /// the lock, the lease check and `COMMIT`, by first word.
    pub body: HashMap<String, u64>,
    /// Statements outside write transactions (reads), by first word.
    pub outside: HashMap<String, u64>,
}

impl Census {
    /// Statements in the bodies of committed write transactions.
    pub fn body_total(&self) -> u64 {
        self.body.values().sum()
    }

    /// Statements outside write transactions.
    pub fn outside_total(&self) -> u64 {
        self.outside.values().sum()
    }
}

/// One session's open transaction.
#[derive(Default)]
struct Session {
    /// Inside `BEGIN` … `COMMIT`.
    open: bool,
    /// Body statements so far, by first word.
    body: HashMap<String, u64>,
}

/// The statement a log line records, if it records one: what follows
/// `LOG:  statement: ` (simple protocol) or `LOG:  execute NAME: `
/// (extended protocol), with the session's pid.
fn statement(line: &str) -> Option<(&str, &str)> {
    let open = line.find(" [")?;
    let rest = &line[open + 2..];
    let close = rest.find("] ")?;
    let pid = &rest[..close];
    let msg = rest[close + 2..].strip_prefix("LOG:  ")?;
    if let Some(sql) = msg.strip_prefix("statement: ") {
        return Some((pid, sql));
    }
    let exec = msg.strip_prefix("execute ")?;
    let colon = exec.find(": ")?;
    Some((pid, &exec[colon + 2..]))
}

/// Counts the statements of `text`, a span of the server's log.
pub fn count(text: &str) -> Census {
    let mut census = Census::default();
    let mut sessions: HashMap<&str, Session> = HashMap::new();
    for line in text.lines() {
        let Some((pid, sql)) = statement(line) else {
            continue;
        };
        let s = sessions.entry(pid).or_default();
        let word = sql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match word.as_str() {
            "BEGIN" | "START" => {
                s.open = true;
                s.body.clear();
            }
            "COMMIT" | "END" if s.open => {
                census.commits += 1;
                for (k, v) in s.body.drain() {
                    *census.body.entry(k).or_default() += v;
                }
                s.open = false;
            }
            "ROLLBACK" if s.open => {
                census.rollbacks += 1;
                s.body.clear();
                s.open = false;
            }
            _ if sql.contains("pg_advisory_xact_lock") => census.locks += 1,
            _ if sql.contains("FROM keyrot_lease") && sql.starts_with("SELECT EXISTS") => {
                census.lease_checks += 1
            }
            _ if s.open => *s.body.entry(word).or_default() += 1,
            _ => *census.outside.entry(word).or_default() += 1,
        }
    }
    census
}

/// The server's log: `server.log` beside its data directory (the test
/// harness's layout).
pub fn log_path(admin: &mut postgres::Client) -> anyhow::Result<PathBuf> {
    let data: String = admin
        .query_one("SHOW data_directory", &[])
        .context("asking for the data directory")?
        .get(0);
    let parent = Path::new(&data)
        .parent()
        .context("the data directory has no parent")?;
    Ok(parent.join("server.log"))
}

/// The log's length now.
pub fn log_len(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

/// The log from byte `from` to byte `to`.
pub fn log_span(path: &Path, from: u64, to: u64) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(to.saturating_sub(from)).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
