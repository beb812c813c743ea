//! Parsing each file into a spanned TOML tree and merging the main file
//! with its drop-ins: `[[provider]]`, `[[sink]]`, `[[policy]]`, `[[key]]`,
//! `[[psk]]` and `[[api_token]]` entries are appended; `[daemon]`, `[store]` and `[notify]`
//! are merged key by key, a later file winning.
//!
//! Spans are moved into the global offset space of `Sources` before the
//! merge, so every value keeps pointing at the file it was written in.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::ctx::{Ctx, did_you_mean};
use super::diag::SourceFile;

/// Sections that are single tables, merged key by key.
const TABLE_SECTIONS: [&str; 3] = ["daemon", "store", "notify"];
/// Sections that are arrays of tables, appended.
const ARRAY_SECTIONS: [&str; 7] = [
    "provider",
    "sink",
    "hook",
    "policy",
    "key",
    "psk",
    "api_token",
];

/// All files' sections, merged.
#[derive(Default)]
pub(crate) struct Document<'i> {
    /// `[daemon]`, merged.
    pub daemon: Option<Spanned<DeValue<'i>>>,
    /// `[store]`, merged.
    pub store: Option<Spanned<DeValue<'i>>>,
    /// `[notify]`, merged.
    pub notify: Option<Spanned<DeValue<'i>>>,
    /// Every `[[provider]]` entry, in file order.
    pub providers: Vec<Spanned<DeValue<'i>>>,
    /// Every `[[sink]]` entry.
    pub sinks: Vec<Spanned<DeValue<'i>>>,
    /// Every `[[hook]]` entry.
    pub hooks: Vec<Spanned<DeValue<'i>>>,
    /// Every `[[policy]]` entry.
    pub policies: Vec<Spanned<DeValue<'i>>>,
    /// Every `[[key]]` entry.
    pub keys: Vec<Spanned<DeValue<'i>>>,
    /// Every `[[psk]]` entry.
    pub psks: Vec<Spanned<DeValue<'i>>>,
    /// Every `[[api_token]]` entry.
    pub api_tokens: Vec<Spanned<DeValue<'i>>>,
}

/// Parses one file into a table with global spans. On a syntax error,
/// records the first one (later ones are mostly its echoes) and returns None.
pub(crate) fn parse<'i>(file: &'i SourceFile, ctx: &mut Ctx<'_>) -> Option<DeTable<'i>> {
    let (root, errors) = DeTable::parse_recoverable(&file.text);
    let first = errors
        .iter()
        .min_by_key(|e| e.span().map_or(0, |s| s.start));
    if let Some(e) = first {
        let span = e.span().unwrap_or(0..0);
        let global = span.start + file.base..span.end + file.base;
        ctx.error(global, e.message().trim_end().to_string());
        return None;
    }
    Some(shift_table(root.into_inner(), file.base))
}

/// Merges one file's root table into the document.
pub(crate) fn merge<'i>(doc: &mut Document<'i>, root: DeTable<'i>, ctx: &mut Ctx<'_>) {
    for (key, value) in root {
        let name = key.get_ref().to_string();
        match name.as_str() {
            "daemon" => merge_section(&mut doc.daemon, &name, value, ctx),
            "store" => merge_section(&mut doc.store, &name, value, ctx),
            "notify" => merge_section(&mut doc.notify, &name, value, ctx),
            "provider" => append_entries(&mut doc.providers, &name, value, ctx),
            "sink" => append_entries(&mut doc.sinks, &name, value, ctx),
            "hook" => append_entries(&mut doc.hooks, &name, value, ctx),
            "policy" => append_entries(&mut doc.policies, &name, value, ctx),
            "key" => append_entries(&mut doc.keys, &name, value, ctx),
            "psk" => append_entries(&mut doc.psks, &name, value, ctx),
            "api_token" => append_entries(&mut doc.api_tokens, &name, value, ctx),
            _ => {
                let all = TABLE_SECTIONS.iter().chain(ARRAY_SECTIONS.iter()).copied();
                let hint = did_you_mean(&name, all);
                ctx.error(
                    key.span(),
                    format!(
                        "unknown section `{name}`{hint}: expected [daemon], [store], [notify], \
                         [[provider]], [[sink]], [[hook]], [[policy]], [[key]], [[psk]] or [[api_token]]"
                    ),
                );
            }
        }
    }
}

/// Merges a `[section]` table into what earlier files gave.
fn merge_section<'i>(
    slot: &mut Option<Spanned<DeValue<'i>>>,
    name: &str,
    value: Spanned<DeValue<'i>>,
    ctx: &mut Ctx<'_>,
) {
    if !value.get_ref().is_table() {
        ctx.error(
            value.span(),
            format!("`{name}` must be a single table: write [{name}]"),
        );
        return;
    }
    match slot {
        Some(existing) => {
            if let (DeValue::Table(dst), DeValue::Table(src)) =
                (existing.get_mut(), value.into_inner())
            {
                merge_tables(dst, src);
            }
        }
        None => *slot = Some(value),
    }
}

/// Key-by-key merge: nested tables merge, anything else is replaced (key
/// and all, so its span points at the later file).
fn merge_tables<'i>(dst: &mut DeTable<'i>, src: DeTable<'i>) {
    for (key, value) in src {
        let name: &str = key.get_ref();
        if let Some(existing) = dst.get_mut(name)
            && let DeValue::Table(d) = existing.get_mut()
            && value.get_ref().is_table()
        {
            if let DeValue::Table(s) = value.into_inner() {
                merge_tables(d, s);
            }
            continue;
        }
        dst.remove(name);
        dst.insert(key, value);
    }
}

/// Appends `[[section]]` entries.
fn append_entries<'i>(
    list: &mut Vec<Spanned<DeValue<'i>>>,
    name: &str,
    value: Spanned<DeValue<'i>>,
    ctx: &mut Ctx<'_>,
) {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => {
            for item in items {
                if item.get_ref().is_table() {
                    list.push(item);
                } else {
                    ctx.error(item.span(), format!("each `{name}` entry must be a table"));
                }
            }
        }
        _ => ctx.error(
            span,
            format!("`{name}` must be an array of tables: write [[{name}]], not [{name}]"),
        ),
    }
}

/// Moves every span of a table into the global offset space.
fn shift_table(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    let mut out = DeTable::new();
    for (key, value) in table {
        let key_span = shift(key.span(), by);
        let key: DeString<'_> = key.into_inner();
        out.insert(Spanned::new(key_span, key), shift_value(value, by));
    }
    out
}

/// Moves every span of a value into the global offset space.
fn shift_value(value: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = shift(value.span(), by);
    let inner = match value.into_inner() {
        DeValue::Table(t) => DeValue::Table(shift_table(t, by)),
        DeValue::Array(mut items) => {
            for item in items.iter_mut() {
                let taken = std::mem::replace(item, Spanned::new(0..0, DeValue::Boolean(false)));
                *item = shift_value(taken, by);
            }
            DeValue::Array(items)
        }
        other => other,
    };
    Spanned::new(span, inner)
}

/// A span moved by `by` bytes.
fn shift(span: Range<usize>, by: usize) -> Range<usize> {
    span.start + by..span.end + by
}
