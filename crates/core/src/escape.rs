//! Control characters made visible, for every place keyrot writes text a
//! person reads: log lines, the CLI's tables and text, plain-text mail.
//!
//! Values that reach those places come from outside: a rotation's reason
//! and `rotatedBy` from an API caller, key names from a provider's list,
//! error details from a peer's answer. Written raw, a newline forges a log
//! line (`… reason=x` then `ERROR … master key leaked`), and ESC, CSI or
//! other C0/C1 controls drive the reader's terminal. Here they are written
//! as `\n`, `\r`, `\t`, `\x1b` (other C0 and DEL) and `\u{9b}` (C1), the
//! shapes the `tracing` text formatter already uses for ESC and C1.
//!
//! It does not own JSON output: serde escapes C0 there, and
//! [`json_controls`] adds DEL and C1, which serde leaves raw.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// True for a character that [`controls`] rewrites: C0, DEL and C1.
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// `s` with every control character written visibly (see the module doc);
/// borrowed when there is none.
pub fn controls(s: &str) -> Cow<'_, str> {
    escape_if(s, is_control)
}

/// [`controls`], but newlines stay: for a whole multi-line text whose
/// values were already escaped one by one (a safety net for the rest).
pub fn controls_but_newlines(s: &str) -> Cow<'_, str> {
    escape_if(s, |c| c != '\n' && is_control(c))
}

/// JSON text with DEL and C1 characters written as `\u007f`..`\u009f`:
/// the same JSON value, but nothing a terminal acts on. Valid for any
/// serde_json output, where such characters only occur inside strings.
pub fn json_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| matches!(c, '\u{7f}'..='\u{9f}')) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if matches!(c, '\u{7f}'..='\u{9f}') {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` with the characters `pick` selects escaped.
fn escape_if(s: &str, pick: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&pick) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if pick(c) {
            let _ = push_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes the visible form of the control character `c`.
fn push_escape<W: fmt::Write + ?Sized>(out: &mut W, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if u32::from(c) < 0x80 => write!(out, "\\x{:02x}", u32::from(c)),
        c => write!(out, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// A `fmt::Write` that escapes control characters on their way to `inner`
/// (for formatting straight into a log line without an extra `String`).
pub struct Escaping<'a, W: fmt::Write + ?Sized> {
    /// Where the escaped text goes.
    pub inner: &'a mut W,
}

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if is_control(c) {
                push_escape(self.inner, c)?;
            } else {
                self.inner.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_is_visible_and_plain_text_is_borrowed() {
        assert!(matches!(controls("ci-bot/deploy ✓"), Cow::Borrowed(_)));
        assert_eq!(
            controls("a\nERROR master key leaked\r\x1b[2J\x07\x00\t\u{7f}\u{9b}31m\u{85}"),
            "a\\nERROR master key leaked\\r\\x1b[2J\\x07\\x00\\t\\x7f\\u{9b}31m\\u{85}"
        );
        // U+00A0 and beyond are text, not controls.
        assert_eq!(controls("\u{a0}é"), "\u{a0}é");
        assert_eq!(controls_but_newlines("a\nb\x1bc\r"), "a\nb\\x1bc\\r");
        let mut s = String::new();
        let v = "\n\u{9b}";
        write!(Escaping { inner: &mut s }, "x{v}y").unwrap();
        assert_eq!(s, "x\\n\\u{9b}y");
    }

    #[test]
    fn json_keeps_its_value_without_raw_c1_or_del() {
        let raw = serde_json::to_string(&"a\u{7f}b\u{9b}c\n").unwrap();
        assert!(raw.contains('\u{9b}'), "serde leaves C1 raw: {raw:?}");
        let safe = json_controls(&raw);
        assert_eq!(safe, r#""a\u007fb\u009bc\n""#);
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "a\u{7f}b\u{9b}c\n");
    }
}
