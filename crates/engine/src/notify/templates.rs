//! The templates of each message kind: built into the binary from
//! `templates/` at the repository root, and overridable, file by file, from
//! `notify.template_dir`.
//!
//! Each kind has `KIND.txt` (first line `Subject: ...`, a blank line, then
//! the plain-text body) and `KIND.html` (the HTML alternative). The
//! directory is read each time keyrot queues a message, so an edited
//! template applies to the next message without a reload. An override that
//! cannot be read or parsed (one still in keyrot's former template syntax
//! among them), or that names a variable its kind does not have, is skipped
//! with a warning in the log and the built-in template is used: a broken
//! override never loses a notification.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::render::{Escape, Template, Value, Vars};

/// The message kinds that have templates (file stems).
pub const KINDS: [&str; 12] = [
    "assisted",
    "completed",
    "digest",
    "ended",
    "expiry",
    "failed",
    "failover",
    "in_use",
    "live",
    "orphan",
    "refused",
    "revoked",
];

/// Largest override file keyrot reads.
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

/// The built-in templates, by file name.
const BUILTIN: [(&str, &str); 24] = [
    (
        "assisted.txt",
        include_str!("../../../../templates/assisted.txt"),
    ),
    (
        "assisted.html",
        include_str!("../../../../templates/assisted.html"),
    ),
    (
        "completed.txt",
        include_str!("../../../../templates/completed.txt"),
    ),
    (
        "completed.html",
        include_str!("../../../../templates/completed.html"),
    ),
    (
        "digest.txt",
        include_str!("../../../../templates/digest.txt"),
    ),
    (
        "digest.html",
        include_str!("../../../../templates/digest.html"),
    ),
    ("ended.txt", include_str!("../../../../templates/ended.txt")),
    (
        "failover.txt",
        include_str!("../../../../templates/failover.txt"),
    ),
    (
        "failover.html",
        include_str!("../../../../templates/failover.html"),
    ),
    (
        "ended.html",
        include_str!("../../../../templates/ended.html"),
    ),
    (
        "expiry.txt",
        include_str!("../../../../templates/expiry.txt"),
    ),
    (
        "expiry.html",
        include_str!("../../../../templates/expiry.html"),
    ),
    (
        "failed.txt",
        include_str!("../../../../templates/failed.txt"),
    ),
    (
        "failed.html",
        include_str!("../../../../templates/failed.html"),
    ),
    (
        "in_use.txt",
        include_str!("../../../../templates/in_use.txt"),
    ),
    (
        "in_use.html",
        include_str!("../../../../templates/in_use.html"),
    ),
    ("live.txt", include_str!("../../../../templates/live.txt")),
    ("live.html", include_str!("../../../../templates/live.html")),
    (
        "orphan.txt",
        include_str!("../../../../templates/orphan.txt"),
    ),
    (
        "orphan.html",
        include_str!("../../../../templates/orphan.html"),
    ),
    (
        "refused.txt",
        include_str!("../../../../templates/refused.txt"),
    ),
    (
        "refused.html",
        include_str!("../../../../templates/refused.html"),
    ),
    (
        "revoked.txt",
        include_str!("../../../../templates/revoked.txt"),
    ),
    (
        "revoked.html",
        include_str!("../../../../templates/revoked.html"),
    ),
];

/// The built-in source of template `file` (e.g. `completed.txt`).
pub fn builtin_source(file: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == file).map(|(_, s)| *s)
}

/// A rendered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The subject line (from the text template's `Subject:` line).
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML alternative.
    pub html: String,
}

/// The templates in force: overrides that parsed, by file name.
#[derive(Clone, Debug, Default)]
pub struct Templates {
    /// Overrides from `notify.template_dir`: file name → (path, template).
    overrides: BTreeMap<&'static str, (PathBuf, Template)>,
}

impl Templates {
    /// Only the built-in templates.
    pub fn builtin() -> Templates {
        Templates::default()
    }

    /// The built-in templates with the overrides in `dir` (if any); every
    /// problem with an override is logged as a warning.
    pub fn load(dir: Option<&Path>) -> Templates {
        let Some(dir) = dir else {
            return Templates::builtin();
        };
        let (t, problems) = Templates::read_dir(dir);
        for p in problems {
            tracing::warn!(template_dir = %dir.display(), problem = %p, "notification template override skipped; using the built-in template");
        }
        t
    }

    /// Reads the overrides in `dir`, returning the problems found instead
    /// of logging them.
    pub fn read_dir(dir: &Path) -> (Templates, Vec<String>) {
        let mut out = Templates::default();
        let mut problems = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", dir.display()));
                return (out, problems);
            }
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let Some((file, _)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
                problems.push(format!(
                    "{}: not a template keyrot uses (ignored); the names are KIND.txt and KIND.html for KIND in {}",
                    path.display(),
                    KINDS.join(", ")
                ));
                continue;
            };
            match read_template(&path, file) {
                Ok(t) => {
                    out.overrides.insert(file, (path, t));
                }
                Err(e) => problems.push(e),
            }
        }
        (out, problems)
    }

    /// Renders kind `kind` (one of [`KINDS`]) with `vars`.
    pub fn render(&self, kind: &str, vars: &Vars) -> Rendered {
        let text = self.render_file(&format!("{kind}.txt"), vars, Escape::None);
        let html = self.render_file(&format!("{kind}.html"), vars, Escape::Html);
        let (subject, text) = split_subject(&text).unwrap_or_else(|| {
            (
                format!("[keyrot] {kind}"),
                text.trim_start_matches('\n').to_string(),
            )
        });
        Rendered {
            subject,
            text,
            html,
        }
    }

    /// Renders one file: the override if it renders, else the built-in.
    fn render_file(&self, file: &str, vars: &Vars, escape: Escape) -> String {
        if let Some((path, t)) = self.overrides.get(file) {
            match t.render(vars, escape) {
                Ok(s) => return s,
                Err(e) => tracing::warn!(template = %path.display(), error = %e,
                    "notification template override does not render; using the built-in template"),
            }
        }
        let rendered = builtin_source(file)
            .ok_or_else(|| format!("no built-in template {file}"))
            .and_then(Template::parse)
            .and_then(|t| t.render(vars, escape));
        match rendered {
            Ok(s) => s,
            Err(e) => {
                // The built-ins are tested against every kind's variables;
                // this is a bug, but the message still goes out.
                tracing::error!(template = %file, error = %e, "built-in notification template failed");
                format!("Subject: [keyrot] (template {file} failed: {e})\n\n")
            }
        }
    }
}

/// Reads and parses an override; a text template must start with `Subject:`.
fn read_template(path: &Path, file: &str) -> Result<Template, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    if meta.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "{shown}: {} bytes is more than a template may have ({MAX_TEMPLATE_BYTES})",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let src = String::from_utf8(bytes).map_err(|_| format!("{shown}: not UTF-8"))?;
    let t = Template::parse(&src).map_err(|e| format!("{shown}: {e}"))?;
    if file.ends_with(".txt") && !starts_with_subject(&src) {
        return Err(format!(
            "{shown}: the first line of a text template must be `Subject: ...` (after any {{# comment #}} lines)"
        ));
    }
    Ok(t)
}

/// True when the first line that is not a standalone comment starts with
/// `Subject:` (checked on the source, so that a variable cannot hide it).
fn starts_with_subject(src: &str) -> bool {
    src.lines()
        .map(str::trim)
        .find(|l| !(l.starts_with("{#") && l.ends_with("#}")))
        .is_some_and(|l| l.starts_with("Subject:"))
}

/// Splits a rendered text template into its subject (one line, controls
/// replaced by spaces) and body.
fn split_subject(text: &str) -> Option<(String, String)> {
    let rest = text.strip_prefix("Subject:")?;
    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let subject: String = line
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Some((subject, body.trim_start_matches('\n').to_string()))
}

/// Every problem with the overrides in `dir`: unreadable files, syntax
/// errors, unknown file names and variables a kind does not have
/// (rendered against `example(kind)`, the documented example of each kind:
/// `super::examples::vars`). Empty when every override is good. For
/// `keyrot check`.
pub fn check_dir(dir: &Path, example: impl Fn(&str) -> Vars) -> Vec<String> {
    let (t, mut problems) = Templates::read_dir(dir);
    for (file, (path, tpl)) in &t.overrides {
        let kind = file.split('.').next().unwrap_or_default();
        let escape = if file.ends_with(".html") {
            Escape::Html
        } else {
            Escape::None
        };
        if let Err(e) = tpl.render(&with_a_row_in_every_list(example(kind)), escape) {
            problems.push(format!("{}: {e}", path.display()));
        }
    }
    problems
}

/// `vars` with one row of empty fields in each list that has none, so
/// that rendering checks the fields a template names inside `{% for %}`.
fn with_a_row_in_every_list(mut vars: Vars) -> Vars {
    let empty: Vec<_> = vars
        .iter()
        .filter_map(|(name, value)| match value {
            Value::List { fields, rows } if rows.is_empty() => Some((name, *fields)),
            _ => None,
        })
        .collect();
    for (name, fields) in empty {
        let row = fields.iter().map(|f| (*f, String::new())).collect();
        vars.list(name, fields, vec![row]);
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_and_each_text_template_has_a_subject() {
        for (file, src) in BUILTIN {
            Template::parse(src).unwrap_or_else(|e| panic!("{file}: {e}"));
            if file.ends_with(".txt") {
                assert!(starts_with_subject(src), "{file}");
            }
        }
        for kind in KINDS {
            assert!(builtin_source(&format!("{kind}.txt")).is_some());
            assert!(builtin_source(&format!("{kind}.html")).is_some());
        }
    }

    #[test]
    fn builtins_are_ascii() {
        // ASCII keeps a body 7bit (see message_tests for line lengths).
        for (file, src) in BUILTIN {
            for (i, line) in src.lines().enumerate() {
                assert!(line.is_ascii(), "{file}:{}: not ASCII", i + 1);
            }
        }
    }

    #[test]
    fn subject_is_split_off_and_flattened() {
        assert_eq!(
            split_subject("Subject: [keyrot] a\tb \n\nbody\n"),
            Some(("[keyrot] a b".to_string(), "body\n".to_string()))
        );
        assert_eq!(split_subject("no subject"), None);
        assert!(starts_with_subject("{# c #}\nSubject: x"));
        assert!(!starts_with_subject("{{subject}}\n"));
    }
}
