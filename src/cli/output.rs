//! Printing for the client commands: aligned tables, times and dates in
//! one format, pretty JSON, and [`fetch`]: ask the daemon, or read the
//! store directly when no daemon runs.
//!
//! Everything goes to stdout through [`out`] and [`print_json`]: values
//! from outside (reasons, key names, peers' error texts) are escaped
//! ([`clean`], and every table cell), so they can neither add lines nor
//! drive the terminal; and a reader that goes away (`keyrot keys --json |
//! head -1`) ends the command normally: the write fails with
//! `BrokenPipe`, and `main` exits 0 on it ([`is_broken_pipe`]), as
//! ripgrep does, instead of panicking as `println!` would.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;
use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::client::{Client, ClientError};
use crate::control::{ApiError, KeyRow};
use keyrot_config::Config;
use keyrot_core::clock::{Clock, SystemClock};
use keyrot_core::store::Store;

/// Printed on stderr when a read command falls back to the store.
pub const FALLBACK_NOTE: &str = "(daemon not running: read from the store directly)";

/// An instant in UTC to the minute: `2026-11-23 14:05Z`.
pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%MZ").to_string()
}

/// [`time`], or `none` when there is no instant.
pub fn time_or(t: Option<Timestamp>, none: &str) -> String {
    t.map_or_else(|| none.to_string(), time)
}

/// A date in UTC: `2026-11-23`.
pub fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

/// [`date`], or `none` when there is no instant.
pub fn date_or(t: Option<Timestamp>, none: &str) -> String {
    t.map_or_else(|| none.to_string(), date)
}

/// A window `[start, end)`: `2026-11-26 02:00-04:00Z` when both fall on
/// one date, else both instants in full.
pub fn window(start: Timestamp, end: Timestamp) -> String {
    if date(start) == date(end) {
        format!(
            "{}-{}",
            start.strftime("%Y-%m-%d %H:%M"),
            end.strftime("%H:%MZ")
        )
    } else {
        format!("{}-{}", time(start), time(end))
    }
}

/// `value`, or `-` when empty or absent.
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => "-".to_string(),
    }
}

/// `value` with control characters shown escaped: for any value from
/// outside that goes into a line of text.
pub fn clean(value: &str) -> Cow<'_, str> {
    keyrot_core::escape::controls(value)
}

/// Writes `bytes` to stdout and flushes: the one way output leaves.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Writes `text` to stdout. Its values were escaped where they were put
/// in; any control character but a newline left in it is escaped here too.
pub fn out(text: &str) -> anyhow::Result<()> {
    let text = keyrot_core::escape::controls_but_newlines(text);
    write_stdout(text.as_bytes()).context("writing to stdout")
}

/// [`out`] with a newline after `text`.
pub fn outln(text: &str) -> anyhow::Result<()> {
    out(&format!("{text}\n"))
}

/// Prints `value` as pretty JSON on stdout (DEL and C1 characters as
/// `\u` escapes; serde escapes the rest).
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("encoding JSON output")?;
    text.push('\n');
    write_stdout(keyrot_core::escape::json_controls(&text).as_bytes()).context("writing to stdout")
}

/// True when `err` is a write to a reader that went away (`EPIPE`):
/// the command ends normally, with exit status 0.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A table printed with aligned columns, two spaces apart; the last
/// column is not padded.
#[derive(Debug, Default)]
pub struct Table {
    /// Column headers.
    headers: Vec<String>,
    /// Rows of cells.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline;
    /// control characters in cells are shown escaped.
    pub fn render(&self) -> String {
        let cols = self.headers.len();
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| clean(c).into_owned()).collect())
            .collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(cols) {
                if i + 1 == cols {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) -> anyhow::Result<()> {
        out(&self.render())
    }
}

/// Asks the daemon `GET path`; when it is not running, opens the store
/// read-only and answers with `local` instead (noting so on stderr).
pub async fn fetch<T, F>(
    socket: &Path,
    cfg: Option<&Config>,
    path: &str,
    local: F,
) -> anyhow::Result<T>
where
    T: DeserializeOwned + Send + 'static,
    F: FnOnce(&Store, &Config, Timestamp) -> Result<T, ApiError> + Send + 'static,
{
    let mut answer = Client::new(socket).get::<T>(path).await;
    // A daemon that is starting owns the store before its socket answers
    // (it checks the store first): wait for the socket rather than fail.
    if matches!(answer, Err(ClientError::NotRunning { .. })) && store_is_owned(cfg).await {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while matches!(answer, Err(ClientError::NotRunning { .. }))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            answer = Client::new(socket).get::<T>(path).await;
        }
    }
    match answer {
        Ok(v) => Ok(v),
        Err(ClientError::NotRunning { socket }) => {
            let Some(cfg) = cfg.cloned() else {
                anyhow::bail!(
                    "keyrot daemon is not running (no answer on {}), and without a configuration the store cannot be read directly: pass --config",
                    socket.display()
                );
            };
            // A closed stderr is no reason to stop.
            let _ = writeln!(io::stderr(), "{FALLBACK_NOTE}");
            let now = SystemClock.now();
            let store_path = cfg.store.path.clone();
            let answer = tokio::task::spawn_blocking(move || {
                let store = crate::daemon::open_store_read_only(&cfg)?;
                local(&store, &cfg, now).map_err(anyhow::Error::new)
            })
            .await
            .context("reading the store")?;
            answer.with_context(|| {
                format!(
                    "the daemon does not answer on {}, and the store {} cannot be read directly",
                    socket.display(),
                    store_path.display()
                )
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// True when another process (a starting daemon) holds the store open.
async fn store_is_owned(cfg: Option<&Config>) -> bool {
    let Some(path) = cfg
        .filter(|c| c.store.postgres.is_none())
        .map(|c| c.store.path.clone())
    else {
        return false;
    };
    if !path.exists() {
        return false;
    }
    tokio::task::spawn_blocking(move || {
        matches!(
            Store::open_read_only(&path),
            Err(keyrot_core::store::StoreError::Locked { .. })
        )
    })
    .await
    .unwrap_or(false)
}

/// One line per row whose name its provider lists more than once (flag
/// `duplicate-name`), for under the `keys` and `status` tables.
pub fn duplicate_notes(rows: &[KeyRow]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| !r.duplicate_ids.is_empty()) {
        out.push_str(&format!(
            "{}: {:?} also names {} at the provider; keyrot tracks {} only (revoke the others if nothing uses them)\n",
            clean(&r.slot),
            r.name,
            clean(&r.duplicate_ids.join(", ")),
            clean(r.key_id.as_deref().unwrap_or("none of them")),
        ));
    }
    out
}

/// Turns "daemon not running" into an error saying `what` needs it.
pub fn needs_daemon(e: ClientError, what: &str) -> anyhow::Error {
    match e {
        ClientError::NotRunning { socket } => anyhow::anyhow!(
            "keyrot daemon is not running (no answer on {}); {what} needs it: start it (systemctl start keyrot) and try again",
            socket.display()
        ),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn times_dates_and_windows() {
        let t = ts("2026-11-23T14:05:59Z");
        assert_eq!(time(t), "2026-11-23 14:05Z");
        assert_eq!(date(t), "2026-11-23");
        assert_eq!(time_or(None, "never"), "never");
        assert_eq!(date_or(Some(t), "-"), "2026-11-23");
        assert_eq!(
            window(ts("2026-11-26T02:00Z"), ts("2026-11-26T04:00Z")),
            "2026-11-26 02:00-04:00Z"
        );
        assert_eq!(
            window(ts("2026-11-26T22:00Z"), ts("2026-11-27T02:00Z")),
            "2026-11-26 22:00Z-2026-11-27 02:00Z"
        );
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some("x")), "x");
    }

    #[test]
    fn only_a_daemon_that_does_not_answer_is_said_to_be_needed() {
        let gone = ClientError::NotRunning {
            socket: "/run/keyrot/control.sock".into(),
        };
        let msg = format!("{:#}", needs_daemon(gone, "keyrot enroll"));
        assert!(
            msg.starts_with("keyrot daemon is not running (no answer on /run/keyrot/control.sock); keyrot enroll needs it"),
            "{msg}"
        );
        // A refusal is the daemon's own message, nothing added.
        let refused = ClientError::Api(crate::control::ErrorBody {
            error: crate::control::ErrorDetail {
                code: 400,
                message: "the secret is refused for key k-2: 401 Unauthorized".into(),
                field: None,
                suggestions: Vec::new(),
                rotation_id: None,
            },
        });
        let msg = format!("{:#}", needs_daemon(refused, "keyrot enroll"));
        assert_eq!(msg, "the secret is refused for key k-2: 401 Unauthorized");
    }

    #[test]
    fn table_cells_cannot_add_lines_or_terminal_sequences() {
        let mut t = Table::new(&["KEY", "REASON"]);
        t.row(vec![
            "p/a\x1b[2J".into(),
            "x\nERROR keyrot: master key leaked\r\u{9b}".into(),
        ]);
        assert_eq!(
            t.render(),
            "KEY         REASON\np/a\\x1b[2J  x\\nERROR keyrot: master key leaked\\r\\u{9b}\n"
        );
        assert_eq!(clean("ok ✓"), "ok ✓");
    }

    #[test]
    fn only_a_write_to_a_closed_pipe_is_a_normal_end() {
        let pipe = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing to stdout");
        assert!(is_broken_pipe(&pipe));
        let full = anyhow::Error::new(io::Error::from(io::ErrorKind::StorageFull))
            .context("writing to stdout");
        assert!(!is_broken_pipe(&full));
        assert!(!is_broken_pipe(&anyhow::anyhow!("broken pipe")));
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["KEY", "STATE", "WHY"]);
        t.row(vec!["p/a".into(), "failed ✓".into(), "because".into()]);
        t.row(vec!["p/longer".into(), "ok".into(), String::new()]);
        assert_eq!(
            t.render(),
            "KEY       STATE     WHY\np/a       failed ✓  because\np/longer  ok\n"
        );
    }
}
