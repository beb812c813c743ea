//! The validation context: collects every diagnostic instead of stopping
//! at the first, and offers the checks shared by all sections (durations,
//! paths, modes, addresses, "did you mean" suggestions).

use std::ops::Range;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diag::{Diagnostic, Sources};
use super::raw::{DurationText, ModeText};
use keyrot_core::policy::{Schedule, parse_duration};

/// Collects diagnostics while raw input is turned into `Config`.
pub(crate) struct Ctx<'s> {
    /// The files read, for positions and relative paths.
    pub sources: &'s Sources,
    /// Problems found, with the global offset they sort by.
    found: Vec<(usize, Diagnostic)>,
    /// Where each secret reference is written, in the order they were read
    /// (the diagnostics' messages are empty).
    pub secret_sites: Vec<(super::secret_ref::SecretRef, Diagnostic)>,
}

impl<'s> Ctx<'s> {
    /// A context with no problems yet.
    pub fn new(sources: &'s Sources) -> Ctx<'s> {
        Ctx {
            sources,
            found: Vec::new(),
            secret_sites: Vec::new(),
        }
    }

    /// Records a problem at a global span.
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.sources.diag(&span, message);
        self.found.push((span.start, d));
    }

    /// Records a problem that has no span (e.g. an unreadable file).
    pub fn error_at_file(&mut self, file: &Path, offset: usize, message: impl Into<String>) {
        self.found
            .push((offset, Diagnostic::whole_file(file, message)));
    }

    /// How many problems were recorded so far.
    pub fn error_count(&self) -> usize {
        self.found.len()
    }

    /// `file:line:column` of a global offset (for "first defined at").
    pub fn position(&self, span: &Range<usize>) -> String {
        let d = self.sources.diag(span, "");
        format!("{}:{}:{}", d.file.display(), d.line, d.column)
    }

    /// True once any problem was recorded.
    pub fn has_errors(&self) -> bool {
        !self.found.is_empty()
    }

    /// The problems, in file order then position order.
    pub fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(|(offset, _)| *offset);
        self.found.into_iter().map(|(_, d)| d).collect()
    }

    /// Records a TOML/serde error, at its own span or else at `fallback`.
    pub fn toml_error(&mut self, e: &toml::de::Error, fallback: &Range<usize>, context: &str) {
        let span = e.span().unwrap_or_else(|| fallback.clone());
        let mut message = e.message().trim_end().to_string();
        if !context.is_empty()
            && let Some(rest) = message.strip_prefix("unknown field `")
            && let Some(end) = rest.find('`')
        {
            message = format!(
                "unknown field `{}` {context}{}",
                &rest[..end],
                &rest[end + 1..]
            );
        }
        self.error(span, message);
    }

    /// Deserializes one spanned TOML value, recording any error.
    pub fn deser<'i, T: Deserialize<'i>>(&mut self, value: Spanned<DeValue<'i>>) -> Option<T> {
        self.deser_in(value, "")
    }

    /// Like [`Ctx::deser`]; an unknown-field message gets `context`
    /// (e.g. `for sink type "file"`) after the field name.
    ///
    /// serde stops at the first bad field; to report them all, a table
    /// that fails is retried one field at a time, and the fields that fail
    /// alone are reported and dropped. What is left still deserializes
    /// when no required field was dropped, so the caller can go on
    /// checking the good fields (the load fails either way).
    pub fn deser_in<'i, T: Deserialize<'i>>(
        &mut self,
        value: Spanned<DeValue<'i>>,
        context: &str,
    ) -> Option<T> {
        let span = value.span();
        let first = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let DeValue::Table(table) = value.into_inner() else {
            self.toml_error(&first, &span, context);
            return None;
        };
        let mut kept = DeTable::new();
        let mut dropped = Vec::new();
        for (key, field) in table {
            let mut alone = DeTable::new();
            alone.insert(key.clone(), field.clone());
            let probe = Spanned::new(span.clone(), DeValue::Table(alone));
            match T::deserialize(ValueDeserializer::from(probe)) {
                Err(e) if !e.message().starts_with("missing field") => {
                    self.toml_error(&e, &key.span(), context);
                    dropped.push(key.get_ref().to_string());
                }
                _ => {
                    kept.insert(key, field);
                }
            }
        }
        let rest = Spanned::new(span.clone(), DeValue::Table(kept));
        match T::deserialize(ValueDeserializer::from(rest)) {
            Ok(v) if !dropped.is_empty() => Some(v),
            Ok(_) => {
                // Only the whole table fails (should not happen): say so.
                self.toml_error(&first, &span, context);
                None
            }
            Err(e) => {
                let about_dropped = dropped
                    .iter()
                    .any(|d| e.message().starts_with(&format!("missing field `{d}`")));
                if !about_dropped {
                    self.toml_error(&e, &span, context);
                }
                None
            }
        }
    }

    /// A duration of zero or more.
    pub fn duration(&mut self, d: &Spanned<DurationText>) -> Option<SignedDuration> {
        match parse_duration(&d.get_ref().0) {
            Ok(v) if v.is_negative() => {
                self.error(d.span(), "a duration must not be negative");
                None
            }
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(d.span(), msg);
                None
            }
        }
    }

    /// A duration greater than zero; `field` names it in the message.
    pub fn positive(&mut self, d: &Spanned<DurationText>, field: &str) -> Option<SignedDuration> {
        let v = self.duration(d)?;
        if v.is_zero() {
            self.error(d.span(), format!("`{field}` must be greater than 0s"));
            return None;
        }
        Some(v)
    }

    /// A non-blank string; `field` names it in the message.
    pub fn text(&mut self, s: &Spanned<String>, field: &str) -> Option<String> {
        let v = s.get_ref();
        if v.trim().is_empty() {
            self.error(s.span(), format!("`{field}` must not be empty"));
            return None;
        }
        Some(v.clone())
    }

    /// An absolute `https://` URL (plain `http://` only to a loopback
    /// host, such as `keyrot sandbox` or a test server), without query,
    /// fragment or credentials; returned without a trailing `/`. `sends`
    /// names what would travel unencrypted over plain http.
    pub fn http_url(&mut self, raw: &Spanned<String>, field: &str, sends: &str) -> Option<String> {
        let text = self.text(raw, field)?;
        let url = match reqwest::Url::parse(text.trim()) {
            Ok(u) => u,
            Err(e) => {
                self.error(raw.span(), format!("`{field}` {text:?} is not a URL: {e}"));
                return None;
            }
        };
        let loopback = url.host_str().is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        });
        let plain = format!(
            "plain http would send {sends} unencrypted: use https (http is allowed only to a loopback host)"
        );
        let problem = match url.scheme() {
            _ if url.host().is_none() => Some("it has no host".to_string()),
            "https" => None,
            "http" if loopback => None,
            "http" => Some(plain),
            _ => Some("use an https:// URL".to_string()),
        }
        .or_else(|| {
            (url.query().is_some() || url.fragment().is_some())
                .then(|| "it must not have a query or fragment".to_string())
        })
        .or_else(|| {
            (!url.username().is_empty() || url.password().is_some())
                .then(|| "it must not hold credentials".to_string())
        });
        if let Some(p) = problem {
            self.error(raw.span(), format!("`{field}` {text:?}: {p}"));
            return None;
        }
        Some(url.as_str().trim_end_matches('/').to_string())
    }

    /// A path; a relative one is resolved against the directory of the
    /// file it is written in.
    pub fn path(&mut self, s: &Spanned<String>, field: &str) -> Option<PathBuf> {
        let v = self.text(s, field)?;
        let p = Path::new(&v);
        if p.is_absolute() {
            return Some(p.to_path_buf());
        }
        Some(self.sources.dir_at(s.span().start).join(p))
    }

    /// An octal file mode such as `"0600"` (at most `0o7777`).
    pub fn mode(&mut self, m: &Spanned<ModeText>) -> Option<u32> {
        let text = m.get_ref().0.trim();
        let digits = text.strip_prefix("0o").unwrap_or(text);
        let ok =
            (3..=4).contains(&digits.len()) && digits.chars().all(|c| ('0'..='7').contains(&c));
        match u32::from_str_radix(digits, 8) {
            Ok(v) if ok => Some(v),
            _ => {
                self.error(
                    m.span(),
                    format!(
                        "invalid mode {text:?}: write 3 or 4 octal digits as a string, such as \"0600\""
                    ),
                );
                None
            }
        }
    }

    /// A plausible email address (`local@domain`, no spaces).
    pub fn email(&mut self, s: &Spanned<String>, field: &str) -> Option<String> {
        let v = s.get_ref().trim();
        let plausible = v
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
            && !v.chars().any(char::is_whitespace);
        if !plausible {
            self.error(
                s.span(),
                format!("`{field}`: {v:?} is not an email address (expected name@domain)"),
            );
            return None;
        }
        Some(v.to_string())
    }

    /// A list of plausible email addresses.
    pub fn emails(&mut self, list: &Option<Vec<Spanned<String>>>, field: &str) -> Vec<String> {
        list.iter()
            .flatten()
            .filter_map(|s| self.email(s, field))
            .collect()
    }

    /// A list of non-blank strings.
    pub fn texts(&mut self, list: &Option<Vec<Spanned<String>>>, field: &str) -> Vec<String> {
        list.iter()
            .flatten()
            .filter_map(|s| self.text(s, field))
            .collect()
    }
}

/// ` (did you mean "x"?)` when a candidate is within edit distance 2 of
/// `word` (and closer than the word is long), else the empty string.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= 2 && *d < word.chars().count().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Stores `value` in `slot` when present; false when it is None.
pub(crate) fn set<T>(slot: &mut T, value: Option<T>) -> bool {
    match value {
        Some(v) => {
            *slot = v;
            true
        }
        None => false,
    }
}

/// A 6- or 7-field cron read in UTC (`field` names it in the message).
pub(crate) fn schedule(ctx: &mut Ctx<'_>, s: &Spanned<String>, field: &str) -> Option<Schedule> {
    match Schedule::parse(s.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.error(s.span(), format!("{field}: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("standrd", "standard"), 1);
        assert_eq!(
            did_you_mean("standrd", ["fast", "standard"]),
            " (did you mean \"standard\"?)"
        );
        assert_eq!(did_you_mean("zzz", ["standard"]), "");
        // A one-letter name is not "close" to every other one-letter name.
        assert_eq!(did_you_mean("a", ["b"]), "");
    }
}
