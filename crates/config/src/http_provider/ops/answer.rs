//! What reads the answer: JSON pointers, the key-metadata pointers,
//! conditions on the answer, and status codes.

use std::collections::BTreeMap;

use serde_json::Value;
use toml::Spanned;

use crate::ctx::Ctx;
use crate::http_provider::raw::RawOp;
use crate::http_provider::spec::{Conditions, Fields, Pointer};

/// A JSON pointer: `""` (the whole answer) or `/a/b/0`.
pub fn pointer(ctx: &mut Ctx<'_>, raw: &Spanned<String>, field: &str) -> Option<Pointer> {
    let v = raw.get_ref();
    if !v.is_empty() && !v.starts_with('/') {
        let hint = if v.contains('.') {
            format!(" such as {:?}", format!("/{}", v.replace('.', "/")))
        } else {
            format!(" such as {:?}", format!("/{v}"))
        };
        ctx.error(
            raw.span(),
            format!(
                "`{field}` {v:?} is not a JSON pointer: write \"\" for the whole answer or a path{hint}"
            ),
        );
        return None;
    }
    Some(Pointer(v.clone()))
}

pub(super) fn opt_pointer(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<String>>,
    field: &str,
) -> Option<Option<Pointer>> {
    match raw {
        None => Some(None),
        Some(r) => pointer(ctx, r, field).map(Some),
    }
}

/// The key-metadata pointers of an operation.
pub(super) fn fields(ctx: &mut Ctx<'_>, raw: &RawOp) -> Option<Fields> {
    let id = opt_pointer(ctx, &raw.id, "id");
    let name = opt_pointer(ctx, &raw.name, "name");
    let scopes = opt_pointer(ctx, &raw.scopes, "scopes");
    let created_by = opt_pointer(ctx, &raw.created_by, "created_by");
    let created_at = opt_pointer(ctx, &raw.created_at, "created_at");
    let expires_at = opt_pointer(ctx, &raw.expires_at, "expires_at");
    let seconds_to_live = opt_pointer(ctx, &raw.seconds_to_live, "seconds_to_live");
    let last_used_at = opt_pointer(ctx, &raw.last_used_at, "last_used_at");
    Some(Fields {
        id: id?,
        name: name?,
        scopes: scopes?,
        created_by: created_by?,
        created_at: created_at?,
        expires_at: expires_at?,
        seconds_to_live: seconds_to_live?,
        last_used_at: last_used_at?,
    })
}

/// Reports a required pointer of operation `op` missing, at the table.
pub(super) fn require(
    ctx: &mut Ctx<'_>,
    table: &Spanned<RawOp>,
    value: &Option<Spanned<String>>,
    op: &str,
    field: &str,
    example: &str,
) -> bool {
    if value.is_none() {
        ctx.error(
            table.span(),
            format!("[provider.{op}] needs `{field}`, a JSON pointer into the answer (e.g. {field} = {example:?})"),
        );
    }
    value.is_some()
}

/// The `secret` pointer (required).
pub(super) fn secret(
    ctx: &mut Ctx<'_>,
    table: &Spanned<RawOp>,
    op: &str,
    example: &str,
) -> Option<Pointer> {
    let r = table.get_ref();
    if !require(ctx, table, &r.secret, op, "secret", example) {
        return None;
    }
    r.secret.as_ref().and_then(|s| pointer(ctx, s, "secret"))
}

/// Status codes (100–599).
pub(super) fn statuses(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<Vec<i64>>>,
    default: &[u16],
) -> Option<Vec<u16>> {
    let Some(raw) = raw else {
        return Some(default.to_vec());
    };
    let mut out = Vec::new();
    for s in raw.get_ref() {
        match u16::try_from(*s) {
            Ok(v) if (100..=599).contains(&v) => out.push(v),
            _ => {
                ctx.error(raw.span(), format!("{s} is not an HTTP status (100–599)"));
                return None;
            }
        }
    }
    Some(out)
}

/// `{ "/pointer" = value, ... }` conditions.
pub(super) fn conditions(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<BTreeMap<String, Value>>>,
    field: &str,
) -> Option<Conditions> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for (k, v) in raw.get_ref() {
        let p = Spanned::new(raw.span(), k.clone());
        out.push((pointer(ctx, &p, field)?, v.clone()));
    }
    Some(out)
}
