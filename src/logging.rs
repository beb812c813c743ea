//! Logging: which sink the daemon's log lines go to, and the journald
//! native protocol. It owns the tracing subscriber setup (filter, sink,
//! format); what is logged, and that no secret is, stays with the callers.
//!
//! The sink is chosen once at start ([`choose_sink`]): journald when the
//! operator says `--log-format journald`, or, by default, when stderr *is*
//! the journal (systemd's rule: `$JOURNAL_STREAM` holds `DEV:INODE` of the
//! stream it connected to fd 2, compared with `fstat(2)`); readable text on
//! stderr otherwise, or JSON lines with `--log-format json`.
//!
//! On journald every event is one datagram to `/run/systemd/journal/socket`
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>): `MESSAGE`, `PRIORITY`
//! (ERROR=3, WARN=4, INFO=6, DEBUG and TRACE=7), `SYSLOG_IDENTIFIER=keyrot`,
//! `CODE_FILE`, `CODE_LINE`, `KEYROT_TARGET`, and every field of the event
//! and of the spans it is in, upper-cased and prefixed `KEYROT_` (`key` →
//! `KEYROT_KEY`). Where the event and its spans give one name different
//! values, the entry has each (journald allows a field more than once, and
//! `journalctl KEYROT_KEY=…` matches any); the same value is sent once. A
//! datagram too large for the socket travels in a sealed memfd. A line that cannot be sent is written to stderr as text,
//! never dropped.

use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::LogFormat;

/// journald's socket for the native protocol.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// `SYSLOG_IDENTIFIER` of every entry (`journalctl -t keyrot`).
pub const SYSLOG_IDENTIFIER: &str = "keyrot";
/// Prefix of every event and span field's journald name.
pub const FIELD_PREFIX: &str = "KEYROT_";
/// journald ignores field names longer than this.
const MAX_NAME_LEN: usize = 64;

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

/// The journald socket. Builds with the `failpoints` feature (the test
/// suites; never a release) honour `$KEYROT_JOURNAL_SOCKET` instead, so a
/// test can receive the datagrams; it is not an operator setting.
#[cfg(feature = "failpoints")]
fn journal_socket() -> PathBuf {
    std::env::var_os("KEYROT_JOURNAL_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(JOURNAL_SOCKET))
}

/// The journald socket.
#[cfg(not(feature = "failpoints"))]
fn journal_socket() -> PathBuf {
    PathBuf::from(JOURNAL_SOCKET)
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
    let filter = filter();
    // Colours only on a terminal: never escape codes in journald or a file.
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    // Only the first call sets the global subscriber; later ones fail, and
    // that is fine.
    match sink {
        Sink::Journald => {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(JournaldLayer::new(journal_socket(), io::stderr))
                .try_init();
        }
        Sink::Text => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(io::stderr)
                .with_target(false)
                .try_init();
        }
        Sink::Json => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(io::stderr)
                .json()
                .flatten_event(true)
                .try_init();
        }
    }
}

/// journald's `PRIORITY` for a tracing level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The journald name of a tracing field: `KEYROT_` and the name upper-cased,
/// `.` and `-` turned into `_`, anything else outside `[A-Z0-9_]` dropped,
/// cut to journald's 64 characters.
pub fn field_name(name: &str) -> String {
    let name = name.strip_prefix("r#").unwrap_or(name);
    let mut out = String::with_capacity(FIELD_PREFIX.len() + name.len());
    out.push_str(FIELD_PREFIX);
    for c in name.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => out.push(c.to_ascii_uppercase()),
            '.' | '-' => out.push('_'),
            _ => {}
        }
    }
    out.truncate(MAX_NAME_LEN);
    out
}

/// Appends one field: `NAME=value\n`, or, for a value holding a newline,
/// the binary form `NAME\n`, the length as 64-bit little endian, the
/// bytes, `\n`.
pub fn put_field(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// Field values collected from an event or a span, in order, one per name
/// (more than one once spans and event are merged).
#[derive(Clone, Debug, Default)]
struct Fields {
    /// The `message` field, if any.
    message: Option<String>,
    /// Every other field, by its tracing name.
    values: Vec<(&'static str, String)>,
}

impl Fields {
    /// Sets `name` to `value`, replacing an earlier value of that name.
    fn set(&mut self, name: &'static str, value: String) {
        if name == "message" {
            self.message = Some(value);
        } else if let Some(slot) = self.values.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.values.push((name, value));
        }
    }

    /// Adds the values of `other` (an inner span, or the event) that are
    /// not here yet; a different value of a name already here is added
    /// beside it, not over it.
    fn merge(&mut self, other: Fields) {
        if other.message.is_some() {
            self.message = other.message;
        }
        for (n, v) in other.values {
            if !self.values.iter().any(|(n2, v2)| *n2 == n && *v2 == v) {
                self.values.push((n, v));
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), format!("{value:?}"));
    }
}

/// One log entry, ready to encode.
struct Entry<'a> {
    /// Level.
    level: Level,
    /// Module path the event came from.
    target: &'a str,
    /// Source file, if known.
    file: Option<&'a str>,
    /// Source line, if known.
    line: Option<u32>,
    /// Message and fields, span fields first.
    fields: Fields,
}

impl Entry<'_> {
    /// The native protocol datagram.
    fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(512);
        put_field(
            &mut buf,
            "PRIORITY",
            priority(&self.level).to_string().as_bytes(),
        );
        put_field(&mut buf, "SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER.as_bytes());
        put_field(
            &mut buf,
            "MESSAGE",
            self.fields.message.as_deref().unwrap_or("").as_bytes(),
        );
        if let Some(file) = self.file {
            put_field(&mut buf, "CODE_FILE", file.as_bytes());
        }
        if let Some(line) = self.line {
            put_field(&mut buf, "CODE_LINE", line.to_string().as_bytes());
        }
        put_field(&mut buf, "KEYROT_TARGET", self.target.as_bytes());
        for (name, value) in &self.fields.values {
            put_field(&mut buf, &field_name(name), value.as_bytes());
        }
        buf
    }

    /// The entry as one readable line, for stderr when journald failed.
    fn text_line(&self) -> String {
        let mut line = format!(
            "{} {:>5} {}",
            jiff::Timestamp::now(),
            self.level,
            self.fields.message.as_deref().unwrap_or("")
        );
        for (name, value) in &self.fields.values {
            let _ = write!(line, " {name}={value}");
        }
        // One line per entry, whatever the values hold.
        let mut line = line.replace('\n', "\\n");
        line.push('\n');
        line
    }
}

/// A tracing layer that sends every event to journald's native socket, and
/// writes it to `fallback` as a text line when that fails.
pub struct JournaldLayer<W> {
    /// journald's socket path.
    path: PathBuf,
    /// Unbound datagram socket to send from (`None` if it could not be made).
    socket: Option<UnixDatagram>,
    /// Where a line goes when journald cannot take it (stderr).
    fallback: W,
    /// Whether the first failure has been explained on `fallback`.
    warned: AtomicBool,
}

impl<W> JournaldLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// A layer sending to the socket at `path`, falling back to `fallback`.
    pub fn new(path: impl Into<PathBuf>, fallback: W) -> JournaldLayer<W> {
        JournaldLayer {
            path: path.into(),
            socket: UnixDatagram::unbound().ok(),
            fallback,
            warned: AtomicBool::new(false),
        }
    }

    /// Sends one datagram; one too large for the socket goes in a memfd.
    fn send(&self, payload: &[u8]) -> io::Result<()> {
        let socket = self
            .socket
            .as_ref()
            .ok_or_else(|| io::Error::other("no unix datagram socket"))?;
        match socket.send_to(payload, &self.path) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                send_memfd(socket, &self.path, payload)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `entry` to the fallback writer, explaining the first failure.
    fn fall_back(&self, entry: &Entry<'_>, err: &io::Error) {
        let mut w = self.fallback.make_writer();
        if !self.warned.swap(true, Ordering::Relaxed) {
            let _ = writeln!(
                w,
                "keyrot: cannot log to journald at {}: {err}; such lines go to stderr",
                self.path.display()
            );
        }
        let _ = w.write_all(entry.text_line().as_bytes());
    }
}

/// Sends `payload` as journald's large-entry form: written to a memfd,
/// sealed against change, and the descriptor passed alone (SCM_RIGHTS) in
/// an empty datagram.
fn send_memfd(socket: &UnixDatagram, path: &Path, payload: &[u8]) -> io::Result<()> {
    use rustix::fs::{MemfdFlags, SealFlags};
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix};

    let fd = rustix::fs::memfd_create(
        "keyrot-journal",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(payload)?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    let fds = [file.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("no room for the memfd descriptor"));
    }
    rustix::net::sendmsg_addr(socket, &addr, &[], &mut control, SendFlags::empty())?;
    Ok(())
}

impl<S, W> Layer<S> for JournaldLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    fields.merge(f.clone());
                }
            }
        }
        let mut own = Fields::default();
        event.record(&mut own);
        fields.merge(own);
        let meta = event.metadata();
        let entry = Entry {
            level: *meta.level(),
            target: meta.target(),
            file: meta.file(),
            line: meta.line(),
            fields,
        };
        if let Err(e) = self.send(&entry.encode()) {
            self.fall_back(&entry, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt as _;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Decodes a native protocol datagram into (name, value) pairs.
    fn decode(mut d: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while !d.is_empty() {
            let nl = d.iter().position(|&b| b == b'\n').unwrap();
            let line = &d[..nl];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                out.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    line[eq + 1..].to_vec(),
                ));
                d = &d[nl + 1..];
            } else {
                let name = String::from_utf8(line.to_vec()).unwrap();
                let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let start = nl + 9;
                out.push((name, d[start..start + len].to_vec()));
                assert_eq!(
                    d[start + len],
                    b'\n',
                    "binary value not closed by a newline"
                );
                d = &d[start + len + 1..];
            }
        }
        out
    }

    fn get<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn plain_and_binary_forms() {
        let mut buf = Vec::new();
        put_field(&mut buf, "MESSAGE", b"hello = world");
        assert_eq!(buf, b"MESSAGE=hello = world\n");

        let mut buf = Vec::new();
        put_field(&mut buf, "KEYROT_ERROR", b"line one\nline two");
        let mut want = b"KEYROT_ERROR\n".to_vec();
        want.extend_from_slice(&17u64.to_le_bytes());
        want.extend_from_slice(b"line one\nline two\n");
        assert_eq!(buf, want);
        assert_eq!(
            decode(&buf),
            vec![("KEYROT_ERROR".to_string(), b"line one\nline two".to_vec())]
        );

        let mut buf = Vec::new();
        put_field(&mut buf, "MESSAGE", b"");
        assert_eq!(buf, b"MESSAGE=\n");
    }

    #[test]
    fn field_names_are_prefixed_and_upper_cased() {
        assert_eq!(field_name("key"), "KEYROT_KEY");
        assert_eq!(field_name("rotation"), "KEYROT_ROTATION");
        assert_eq!(field_name("new_key"), "KEYROT_NEW_KEY");
        assert_eq!(field_name("log.target"), "KEYROT_LOG_TARGET");
        assert_eq!(field_name("r#type"), "KEYROT_TYPE");
        assert_eq!(field_name("sink-name"), "KEYROT_SINK_NAME");
        assert_eq!(field_name("Ünicode!x"), "KEYROT_NICODEX");
        assert_eq!(field_name(&"a".repeat(100)).len(), 64);
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
        assert_eq!(priority(&Level::TRACE), 7);
    }

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

    /// A shared buffer to stand for stderr.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
        }
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A bound receiver in a temp dir, and a fallback buffer.
    struct Journal {
        _dir: tempfile::TempDir,
        path: PathBuf,
        rx: UnixDatagram,
        fallback: Buf,
    }

    impl Journal {
        fn new() -> Journal {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("journal.sock");
            let rx = UnixDatagram::bind(&path).unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            Journal {
                _dir: dir,
                path,
                rx,
                fallback: Buf::default(),
            }
        }

        fn layer(&self) -> JournaldLayer<Buf> {
            JournaldLayer::new(&self.path, self.fallback.clone())
        }

        fn recv(&self) -> Vec<(String, Vec<u8>)> {
            let mut buf = vec![0u8; 1 << 16];
            let n = self.rx.recv(&mut buf).unwrap();
            decode(&buf[..n])
        }
    }

    #[test]
    fn events_carry_span_fields_priority_and_identifier() {
        let j = Journal::new();
        let subscriber = tracing_subscriber::registry().with(j.layer());
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("run", key = "atl/other", host = "h1");
            let _o = outer.enter();
            let span = tracing::info_span!(
                "step",
                rotation = %"0190-abc",
                key = %"atl/ci-bot",
                provider = %"atl",
                step = %"Issuing"
            );
            let _e = span.enter();
            tracing::info!(rotation = %"0190-abc", new_key = %"k-2", "new key issued");
            tracing::error!(error = "first\nsecond", attempts = 3u32, "step failed");
        });
        let f = j.recv();
        assert_eq!(get(&f, "MESSAGE"), Some("new key issued"));
        assert_eq!(get(&f, "PRIORITY"), Some("6"));
        assert_eq!(get(&f, "SYSLOG_IDENTIFIER"), Some("keyrot"));
        assert_eq!(get(&f, "KEYROT_ROTATION"), Some("0190-abc"));
        assert_eq!(get(&f, "KEYROT_PROVIDER"), Some("atl"));
        assert_eq!(get(&f, "KEYROT_STEP"), Some("Issuing"));
        assert_eq!(get(&f, "KEYROT_NEW_KEY"), Some("k-2"));
        assert_eq!(get(&f, "KEYROT_HOST"), Some("h1"));
        assert!(get(&f, "CODE_FILE").unwrap().ends_with("logging.rs"));
        assert!(get(&f, "CODE_LINE").unwrap().parse::<u32>().is_ok());
        let all = |name: &str| -> Vec<&str> {
            f.iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| std::str::from_utf8(v).unwrap())
                .collect()
        };
        assert_eq!(all("KEYROT_KEY"), ["atl/other", "atl/ci-bot"], "{f:?}");
        assert_eq!(all("KEYROT_ROTATION"), ["0190-abc"], "sent once: {f:?}");
        assert_eq!(all("MESSAGE"), ["new key issued"]);

        let f = j.recv();
        assert_eq!(get(&f, "PRIORITY"), Some("3"));
        assert_eq!(get(&f, "KEYROT_ERROR"), Some("first\nsecond"));
        assert_eq!(get(&f, "KEYROT_ATTEMPTS"), Some("3"));
        assert_eq!(get(&f, "KEYROT_STEP"), Some("Issuing"));
        assert!(j.fallback.is_empty());
    }

    #[test]
    fn fields_recorded_later_on_a_span_are_included() {
        let j = Journal::new();
        let subscriber = tracing_subscriber::registry().with(j.layer());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("step", key = "a/b", sink = tracing::field::Empty);
            span.record("sink", "vault");
            span.in_scope(|| tracing::warn!("written"));
        });
        let f = j.recv();
        assert_eq!(get(&f, "PRIORITY"), Some("4"));
        assert_eq!(get(&f, "KEYROT_SINK"), Some("vault"));
        assert_eq!(get(&f, "KEYROT_KEY"), Some("a/b"));
    }

    #[test]
    fn an_entry_too_large_for_a_datagram_goes_in_a_sealed_memfd() {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let j = Journal::new();
        let big = "x".repeat(1 << 20);
        let subscriber = tracing_subscriber::registry().with(j.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(big = %big, "large");
        });
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut data = [0u8; 16];
        let got = rustix::net::recvmsg(
            &j.rx,
            &mut [io::IoSliceMut::new(&mut data)],
            &mut control,
            RecvFlags::empty(),
        )
        .unwrap();
        assert_eq!(got.bytes, 0, "the datagram itself is empty");
        let mut fds = Vec::new();
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        assert_eq!(fds.len(), 1);
        let file = std::fs::File::from(fds.pop().unwrap());
        let seals = rustix::fs::fcntl_get_seals(&file).unwrap();
        assert!(seals.contains(rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::SEAL));
        let mut payload = Vec::new();
        let len = file.metadata().unwrap().len() as usize;
        payload.resize(len, 0);
        file.read_exact_at(&mut payload, 0).unwrap();
        let f = decode(&payload);
        assert_eq!(get(&f, "MESSAGE"), Some("large"));
        assert_eq!(get(&f, "KEYROT_BIG").map(str::len), Some(1 << 20));
        assert!(j.fallback.is_empty());
    }

    #[test]
    fn without_journald_the_line_goes_to_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let fallback = Buf::default();
        let layer = JournaldLayer::new(dir.path().join("absent.sock"), fallback.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("step", key = "a/b");
            span.in_scope(|| tracing::info!(n = 1, "first"));
            tracing::warn!(detail = "x\ny", "second");
        });
        let text = fallback.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("cannot log to journald at"), "{text}");
        assert!(lines[0].contains("absent.sock"), "{text}");
        assert!(lines[1].contains(" INFO first key=a/b n=1"), "{text}");
        assert!(lines[2].contains(" WARN second detail=x\\ny"), "{text}");
    }
}
