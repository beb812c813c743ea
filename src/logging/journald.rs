//! journald's native protocol: one datagram per event to
//! `/run/systemd/journal/socket` with `MESSAGE` (control characters
//! escaped), `PRIORITY`, `SYSLOG_IDENTIFIER`, `CODE_FILE`, `CODE_LINE`,
//! `KEYROT_TARGET` and every event and span field as `KEYROT_NAME` (its
//! bytes as they are); a datagram too large for the socket in a sealed
//! memfd; a line journald cannot take written to stderr as text.

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::{FIELD_PREFIX, SYSLOG_IDENTIFIER};

/// journald ignores field names longer than this.
const MAX_NAME_LEN: usize = 64;

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
        // The line journalctl shows: no forged line, no terminal sequence.
        let message = self.fields.message.as_deref().unwrap_or("");
        put_field(
            &mut buf,
            "MESSAGE",
            crate::escape::controls(message).as_bytes(),
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
        let mut line = crate::escape::controls(&line).into_owned();
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
mod tests;
