//! Validation of the five operation tables of `type = "http"`: the
//! request (method, path, headers, body templates, with the variables each
//! operation may use), the JSON pointers that read the answer, paging,
//! conditions and statuses. Every problem is recorded at its field.
//!
//! Here the five operations; the request in `request`, the pointers,
//! conditions and statuses in `answer`, the paging of a list in `paging`.

mod answer;
mod paging;
mod request;

use reqwest::Method;
use toml::Spanned;

use self::answer::{conditions, fields, opt_pointer, pointer, require, secret, statuses};
use self::paging::paging;
use self::request::call;
use super::raw::RawOp;
use super::spec::{IssueOp, ListOp, Pointer, RevokeOp, RotateOp, VerifyOp};
use super::template::{Scope, Var};
use crate::ctx::Ctx;

/// Default "already gone" statuses of rotate and revoke.
pub const DEFAULT_GONE: [u16; 2] = [404, 410];
/// Default cursor query parameter.
pub const DEFAULT_CURSOR_PARAM: &str = "cursor";

/// Pointer fields every operation that reads a key may set.
const KEY_FIELDS: [&str; 7] = [
    "id",
    "scopes",
    "created_by",
    "created_at",
    "expires_at",
    "seconds_to_live",
    "last_used_at",
];

/// The names of `vars`, with their values.
pub type Vars = Vec<(String, String)>;

/// Records an error for every set field `op` does not take.
fn only(ctx: &mut Ctx<'_>, raw: &RawOp, op: &str, allowed: &[&str]) -> bool {
    let mut ok = true;
    for (field, span) in raw.set_fields() {
        if !allowed.contains(&field) {
            ctx.error(
                span,
                format!("`{field}` is not used in [provider.{op}]{}", home(field)),
            );
            ok = false;
        }
    }
    ok
}

/// Where a misplaced field belongs, for the message.
fn home(field: &str) -> &'static str {
    match field {
        "items" | "name" | "next" | "cursor_param" | "next_link" | "pages" | "keep_if"
        | "skip_if" => " (it belongs in [provider.list])",
        "secret" => " (it belongs in [provider.issue] or [provider.rotate])",
        "no_overlap" => " (it belongs in [provider.rotate])",
        "idempotent" => " (it belongs in [provider.issue] or [provider.rotate])",
        "gone_status" => " (it belongs in [provider.rotate] or [provider.revoke])",
        "ok_status" | "expect_id" | "expect" | "use_auth" => " (it belongs in [provider.verify])",
        _ => "",
    }
}

/// `[provider.list]`.
pub fn list(ctx: &mut Ctx<'_>, raw: &Spanned<RawOp>, vars: &Vars) -> Option<ListOp> {
    let r = raw.get_ref();
    let mut allowed = vec![
        "items",
        "name",
        "next",
        "cursor_param",
        "next_link",
        "pages",
        "keep_if",
        "skip_if",
        "last_used_precision",
    ];
    allowed.extend(KEY_FIELDS);
    let fields_ok = only(ctx, r, "list", &allowed);
    let last_used_precision = match &r.last_used_precision {
        None => Some(None),
        Some(d) => ctx.duration(d).map(Some),
    };
    if let (Some(at), None) = (&r.last_used_precision, &r.last_used_at) {
        ctx.error(
            at.span(),
            "`last_used_precision` without `last_used_at`: say where the list's answer holds a key's last use",
        );
    }
    let call = call(ctx, r, "list", Method::GET, Scope::List, Scope::List, vars);
    let items = match &r.items {
        None => Some(Pointer(String::new())),
        Some(i) => pointer(ctx, i, "items"),
    };
    let id = require(ctx, raw, &r.id, "list", "id", "/id");
    let name = require(ctx, raw, &r.name, "list", "name", "/name");
    let fields = fields(ctx, r);
    let keep_if = conditions(ctx, &r.keep_if, "keep_if");
    let skip_if = conditions(ctx, &r.skip_if, "skip_if");
    let paging = paging(ctx, r);
    if !(fields_ok && id && name) {
        return None;
    }
    Some(ListOp {
        call: call?,
        items: items?,
        fields: fields?,
        keep_if: keep_if?,
        skip_if: skip_if?,
        paging: paging?,
        last_used_precision: last_used_precision?,
    })
}

/// Allowed fields of `issue` and `rotate`.
fn new_key_fields(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["secret", "idempotent"];
    v.extend(KEY_FIELDS);
    v.extend(extra);
    v
}

/// `[provider.issue]`.
pub fn issue(ctx: &mut Ctx<'_>, raw: &Spanned<RawOp>, vars: &Vars) -> Option<IssueOp> {
    let r = raw.get_ref();
    let ok = only(ctx, r, "issue", &new_key_fields(&[]));
    let call = call(
        ctx,
        r,
        "issue",
        Method::POST,
        Scope::Issue,
        Scope::Issue,
        vars,
    );
    let secret = secret(ctx, raw, "issue", "/key");
    let id = require(ctx, raw, &r.id, "issue", "id", "/id");
    let fields = fields(ctx, r);
    if !(ok && id) {
        return None;
    }
    Some(IssueOp {
        call: call?,
        secret: secret?,
        fields: fields?,
        idempotent: r.idempotent.as_ref().is_some_and(|b| *b.get_ref()),
    })
}

/// `[provider.rotate]`.
pub fn rotate(ctx: &mut Ctx<'_>, raw: &Spanned<RawOp>, vars: &Vars) -> Option<RotateOp> {
    let r = raw.get_ref();
    let ok = only(
        ctx,
        r,
        "rotate",
        &new_key_fields(&["no_overlap", "gone_status"]),
    );
    let call = call(
        ctx,
        r,
        "rotate",
        Method::POST,
        Scope::Rotate,
        Scope::Rotate,
        vars,
    );
    let secret = secret(ctx, raw, "rotate", "/token");
    let fields = fields(ctx, r);
    let gone = statuses(ctx, &r.gone_status, &DEFAULT_GONE);
    let call = call.and_then(|c| {
        if c.uses_any(&|v| *v == Var::KeyId) {
            Some(c)
        } else {
            ctx.error(
                r.path.span(),
                "[provider.rotate] must say which key to rotate: use {{key.id}} in its path (or body)",
            );
            None
        }
    });
    if !ok {
        return None;
    }
    Some(RotateOp {
        call: call?,
        secret: secret?,
        fields: fields?,
        no_overlap: r.no_overlap.as_ref().is_none_or(|b| *b.get_ref()),
        idempotent: r.idempotent.as_ref().is_some_and(|b| *b.get_ref()),
        gone_status: gone?,
    })
}

/// `[provider.verify]`.
pub fn verify(ctx: &mut Ctx<'_>, raw: &Spanned<RawOp>, vars: &Vars) -> Option<VerifyOp> {
    let r = raw.get_ref();
    let ok = only(
        ctx,
        r,
        "verify",
        &["ok_status", "expect_id", "expect", "use_auth"],
    );
    let call = call(
        ctx,
        r,
        "verify",
        Method::GET,
        Scope::Verify,
        Scope::VerifyHeader,
        vars,
    );
    let ok_status = statuses(ctx, &r.ok_status, &[]);
    let expect_id = opt_pointer(ctx, &r.expect_id, "expect_id");
    let expect = conditions(ctx, &r.expect, "expect");
    let call = call.and_then(|c| {
        if c.headers.iter().any(|(_, t)| t.uses(&Var::Secret)) {
            Some(c)
        } else {
            ctx.error(
                raw.span(),
                "[provider.verify] must send the new key: use {{secret}} in one of its headers, e.g. headers = { Authorization = \"Bearer {{secret}}\" }",
            );
            None
        }
    });
    if !ok {
        return None;
    }
    Some(VerifyOp {
        call: call?,
        use_auth: r.use_auth.as_ref().is_some_and(|b| *b.get_ref()),
        ok_status: ok_status?,
        expect_id: expect_id?,
        expect: expect?,
    })
}

/// `[provider.revoke]`.
pub fn revoke(ctx: &mut Ctx<'_>, raw: &Spanned<RawOp>, vars: &Vars) -> Option<RevokeOp> {
    let r = raw.get_ref();
    let ok = only(ctx, r, "revoke", &["gone_status"]);
    let call = call(
        ctx,
        r,
        "revoke",
        Method::DELETE,
        Scope::Revoke,
        Scope::Revoke,
        vars,
    );
    let gone = statuses(ctx, &r.gone_status, &DEFAULT_GONE);
    let call = call.and_then(|c| {
        if c.uses_any(&|v| *v == Var::KeyId) {
            Some(c)
        } else {
            ctx.error(
                r.path.span(),
                "[provider.revoke] must say which key to revoke: use {{key.id}} in its path (or body)",
            );
            None
        }
    });
    if !ok {
        return None;
    }
    Some(RevokeOp {
        call: call?,
        gone_status: gone?,
    })
}
