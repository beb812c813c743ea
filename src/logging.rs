//! Logging: which sink the daemon's log lines go to, and in what shape. It
//! owns the tracing subscriber setup (filter, sink, format); what is
//! logged, and that no secret is, stays with the callers. It depends on
//! nothing of keyrot's but [`keyrot_core::escape`].
//!
//! The sink is chosen once at start ([`choose_sink`]): journald when the
//! operator says `--log-format journald`, or, by default, when stderr *is*
//! the journal (systemd's rule: `$JOURNAL_STREAM` holds `DEV:INODE` of the
//! stream it connected to fd 2, compared with `fstat(2)`); readable text on
//! stderr otherwise, or JSON lines with `--log-format json`.
//!
//! journald entries are written by `tracing-journald` ([`journald`]): one
//! datagram per event to `/run/systemd/journal/socket` with `MESSAGE`,
//! `PRIORITY` (ERROR=3, WARN=4, INFO=6, DEBUG and TRACE=7),
//! `SYSLOG_IDENTIFIER=keyrot`, `CODE_FILE`, `CODE_LINE`, `TARGET`, and every
//! field of the event and of the spans it is in, upper-cased and prefixed
//! `KEYROT_` (`key` → `KEYROT_KEY`); a span also adds `SPAN_NAME`. Where the
//! event and its spans give one name different values, the entry has each
//! (journald allows a field more than once, and `journalctl KEYROT_KEY=…`
//! matches any). A datagram too large for the socket travels in a sealed
//! memfd. When journald cannot be reached at start, lines go to stderr as
//! text, after one saying why.
//!
//! Every format keeps one event to one line a reader can trust: control
//! characters in messages and values are escaped ([`escaped`]; journald's
//! `MESSAGE` too, while its structured fields keep their bytes).

mod escaped;
pub mod journald;

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// journald's socket for the native protocol (where `tracing-journald`
/// sends; named here for the message when it cannot).
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// `SYSLOG_IDENTIFIER` of every entry (`journalctl -t keyrot`).
pub const SYSLOG_IDENTIFIER: &str = "keyrot";
/// Prefix of every event and span field's journald name (`KEYROT_KEY`;
/// `tracing-journald` adds the `_`).
pub const FIELD_PREFIX: &str = "KEYROT";

/// Log output format, as `keyrot run --log-format` takes it (the doc
/// comments are its `--help`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// journald when stderr is the journal (systemd's $JOURNAL_STREAM), else text.
    Auto,
    /// Readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// Native journald entries with KEYROT_* fields (stderr if journald fails).
    Journald,
}

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Native journald entries with structured fields.
    Journald,
    /// Readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
}

/// The sink for `format`: `auto` means journald when `journal_stream` (the
/// value of `$JOURNAL_STREAM`) names the same `DEV:INODE` as `stderr`
/// (fd 2's device and inode), text otherwise. Other formats are obeyed.
pub fn choose_sink(
    format: LogFormat,
    journal_stream: Option<&OsStr>,
    stderr: Option<(u64, u64)>,
) -> Sink {
    match format {
        LogFormat::Text => Sink::Text,
        LogFormat::Json => Sink::Json,
        LogFormat::Journald => Sink::Journald,
        LogFormat::Auto => {
            let stream = journal_stream
                .and_then(OsStr::to_str)
                .and_then(parse_journal_stream);
            match (stream, stderr) {
                (Some(s), Some(e)) if s == e => Sink::Journald,
                _ => Sink::Text,
            }
        }
    }
}

/// `DEV:INODE` (decimal) as `$JOURNAL_STREAM` holds them.
fn parse_journal_stream(s: &str) -> Option<(u64, u64)> {
    let (dev, ino) = s.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Device and inode of fd 2 (`fstat(2)` on a duplicate of it).
fn stderr_id() -> Option<(u64, u64)> {
    let fd = io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The filter: `RUST_LOG` if set and valid, else `info`; `aws_sigv4` is
/// held at info whatever `RUST_LOG` says.
fn filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The AWS signer logs canonical requests (signed headers, a session
    // token among them) at debug and trace: never, whatever RUST_LOG says.
    if let Ok(d) = "aws_sigv4=info".parse() {
        filter = filter.add_directive(d);
    }
    filter
}

/// Sets up the global tracing subscriber for `format` (see the module doc).
/// A second call leaves the first subscriber in place.
pub fn init(format: LogFormat) {
    let journal_stream = std::env::var_os("JOURNAL_STREAM");
    let sink = choose_sink(format, journal_stream.as_deref(), stderr_id());
    // Only the first call sets the global subscriber; later ones fail, and
    // that is fine.
    match sink {
        Sink::Journald => match journald::layer() {
            Ok(layer) => {
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init();
            }
            Err(e) => {
                init_text();
                tracing::warn!(
                    error = %e,
                    "cannot log to journald at {JOURNAL_SOCKET}; logging text to stderr instead"
                );
            }
        },
        Sink::Text => init_text(),
        Sink::Json => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(escaped::JsonSafe(io::stderr))
                .json()
                .flatten_event(true)
                .try_init();
        }
    }
}

/// Readable text on stderr, colours only on a terminal (never escape codes
/// in journald or a file).
fn init_text() {
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(ansi)
        .with_writer(io::stderr)
        .with_target(false)
        .fmt_fields(escaped::EscapedFields)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_follows_journal_stream_and_the_flag() {
        let s = Some(OsStr::new("2049:123"));
        assert_eq!(
            choose_sink(LogFormat::Auto, s, Some((2049, 123))),
            Sink::Journald
        );
        assert_eq!(
            choose_sink(LogFormat::Auto, s, Some((2049, 124))),
            Sink::Text
        );
        assert_eq!(choose_sink(LogFormat::Auto, s, None), Sink::Text);
        assert_eq!(
            choose_sink(LogFormat::Auto, None, Some((2049, 123))),
            Sink::Text
        );
        assert_eq!(
            choose_sink(LogFormat::Auto, Some(OsStr::new("junk")), Some((0, 0))),
            Sink::Text
        );
        assert_eq!(
            choose_sink(LogFormat::Text, s, Some((2049, 123))),
            Sink::Text
        );
        assert_eq!(
            choose_sink(LogFormat::Json, s, Some((2049, 123))),
            Sink::Json
        );
        assert_eq!(choose_sink(LogFormat::Journald, None, None), Sink::Journald);
        assert_eq!(parse_journal_stream("8:12345\n"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
    }

    #[test]
    fn stderr_id_matches_fstat() {
        // Whatever fd 2 is under the test harness, it has a device and inode.
        let (dev, ino) = stderr_id().unwrap();
        let meta = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert_eq!((dev, ino), (meta.dev(), meta.ino()));
    }
}
