//! One event, one line: the text and JSON formats with every control
//! character of a message or field value made visible.
//!
//! Values in log lines come from outside (a caller's `reason`, a key name
//! from a provider, a peer's error text). `tracing-subscriber`'s text
//! format escapes ESC and C1 but writes a newline or CR as it is, so a
//! reason of `x\nERROR … master key leaked` would print a second, forged
//! line. [`EscapedFields`] formats the message and fields of the text
//! format through [`keyrot_core::escape`] instead. The JSON format's strings are
//! escaped by serde, except DEL and C1, which [`JsonSafe`] rewrites as
//! `\u007f`..`\u009f` on the way out (the same JSON value).

use std::fmt::{self, Write as _};
use std::io;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

use keyrot_core::escape::{Escaping, json_controls};

/// The text format's fields: `message key=value key="text"`, as
/// tracing's default, with control characters escaped.
#[derive(Clone, Copy, Debug, Default)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

/// Writes fields one after another, separated by a space.
struct Visitor<'w> {
    /// Where the line is written.
    writer: Writer<'w>,
    /// No field written yet.
    first: bool,
    /// The first write error.
    result: fmt::Result,
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = self.writer.write_str(sep).and_then(|()| {
            if name != "message" {
                write!(self.writer, "{name}=")?;
            }
            write!(
                Escaping {
                    inner: &mut self.writer
                },
                "{value:?}"
            )
        });
    }
}

/// A `MakeWriter` whose writers pass JSON lines through [`json_controls`].
#[derive(Clone, Copy, Debug)]
pub struct JsonSafe<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonSafe<M> {
    type Writer = JsonSafeWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonSafeWriter(self.0.make_writer())
    }
}

/// See [`JsonSafe`]. Each `write` takes its whole buffer (the formatter
/// writes one event per call), so a character is never split.
pub struct JsonSafeWriter<W>(W);

impl<W: io::Write> io::Write for JsonSafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(json_controls(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Captured output of a subscriber.
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
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    const FORGED: &str = "x\nERROR keyrot: master key leaked\r\x1b[2J\u{9b}31m\u{7f}";

    fn events() {
        let span = tracing::info_span!("rotation", key = %FORGED);
        let _g = span.enter();
        tracing::warn!(reason = %FORGED, by = FORGED, "rotating {}", FORGED);
    }

    #[test]
    fn a_text_line_stays_one_line_without_terminal_sequences() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(sub, events);
        let text = buf.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.ends_with('\n'));
        assert!(
            !text.contains(['\r', '\x1b', '\u{9b}', '\u{7f}']),
            "{text:?}"
        );
        let esc = r"x\nERROR keyrot: master key leaked\r\x1b[2J\u{9b}31m\x7f";
        assert!(text.contains(&format!("rotation{{key={esc}}}")), "{text}");
        assert!(
            text.contains(&format!("rotating {esc} reason={esc} by=")),
            "{text}"
        );
    }

    #[test]
    fn a_json_line_keeps_its_values_without_raw_controls() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(JsonSafe(buf.clone()))
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(sub, events);
        let text = buf.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            !text.contains(['\r', '\x1b', '\u{9b}', '\u{7f}']),
            "{text:?}"
        );
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["reason"], FORGED);
        assert_eq!(v["message"], format!("rotating {FORGED}"));
    }
}
