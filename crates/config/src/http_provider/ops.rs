//! Validation of the five operation tables of `type = "http"`: the
//! request (method, path, headers, body templates, with the variables each
//! operation may use), the JSON pointers that read the answer, paging,
//! conditions and statuses. Every problem is recorded at its field.

use std::collections::BTreeMap;

use reqwest::Method;
use reqwest::header::HeaderName;
use serde_json::Value;
use toml::Spanned;

use super::raw::{RawOp, RawPages};
use super::spec::{
    Call, Conditions, Fields, IssueOp, ListOp, Paging, Pointer, RevokeOp, RotateOp, VerifyOp,
};
use super::template::{self, JsonTemplate, Scope, Template, Var};
use crate::ctx::{Ctx, did_you_mean};

/// Methods an operation may use.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
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

fn opt_pointer(
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
fn fields(ctx: &mut Ctx<'_>, raw: &RawOp) -> Option<Fields> {
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
fn require(
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
fn secret(ctx: &mut Ctx<'_>, table: &Spanned<RawOp>, op: &str, example: &str) -> Option<Pointer> {
    let r = table.get_ref();
    if !require(ctx, table, &r.secret, op, "secret", example) {
        return None;
    }
    r.secret.as_ref().and_then(|s| pointer(ctx, s, "secret"))
}

/// The request of an operation: method (default `method`), path, headers
/// (templates in `header_scope`), body (in `scope`).
fn call(
    ctx: &mut Ctx<'_>,
    raw: &RawOp,
    op: &str,
    default_method: Method,
    scope: Scope,
    header_scope: Scope,
    vars: &Vars,
) -> Option<Call> {
    let method = match &raw.method {
        None => Some(default_method),
        Some(m) => {
            let up = m.get_ref().to_ascii_uppercase();
            if METHODS.contains(&up.as_str()) {
                Method::from_bytes(up.as_bytes()).ok()
            } else {
                let hint = did_you_mean(&up, METHODS);
                ctx.error(
                    m.span(),
                    format!(
                        "unknown method {:?}{hint}: use GET, POST, PUT, PATCH or DELETE",
                        m.get_ref()
                    ),
                );
                None
            }
        }
    };
    let path = path(ctx, &raw.path, op, scope, vars);
    let headers = match &raw.headers {
        None => Some(Vec::new()),
        Some(h) => header_templates(ctx, h.get_ref(), header_scope, vars),
    };
    let body = match &raw.body {
        None => Some(None),
        Some(b) => body(ctx, b, scope, vars).map(Some),
    };
    Some(Call {
        method: method?,
        path: path?,
        headers: headers?,
        body: body?,
    })
}

/// `path`: relative to `base_url`, starting with `/`, no fragment.
fn path(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<String>,
    op: &str,
    scope: Scope,
    vars: &Vars,
) -> Option<Template> {
    let text = raw.get_ref();
    let problem = if !text.starts_with('/') {
        Some(if text.contains("://") {
            "it is relative to `base_url`: write only the path, starting with `/`".to_string()
        } else {
            "it must start with `/` (it is appended to `base_url`)".to_string()
        })
    } else if text.contains('#') {
        Some("it must not have a fragment (`#`)".to_string())
    } else if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it must not contain spaces or control characters (a value in a variable is encoded for you)".to_string())
    } else if text.split(['/', '?']).any(|seg| seg == "..") {
        Some("it must not contain `..` segments".to_string())
    } else {
        None
    };
    if let Some(p) = problem {
        ctx.error(raw.span(), format!("[provider.{op}] `path` {text:?}: {p}"));
        return None;
    }
    match template::parse(text, scope, vars) {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.error(raw.span(), format!("[provider.{op}] `path`: {e}"));
            None
        }
    }
}

/// Header name/value-template pairs.
pub fn header_templates(
    ctx: &mut Ctx<'_>,
    raw: &BTreeMap<String, Spanned<String>>,
    scope: Scope,
    vars: &Vars,
) -> Option<Vec<(HeaderName, Template)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in raw {
        let Ok(hn) = HeaderName::from_bytes(name.as_bytes()) else {
            ctx.error(value.span(), format!("{name:?} is not a valid header name"));
            ok = false;
            continue;
        };
        if value.get_ref().chars().any(char::is_control) {
            ctx.error(
                value.span(),
                format!("header {name}: the value must not contain control characters"),
            );
            ok = false;
            continue;
        }
        match template::parse(value.get_ref(), scope, vars) {
            Ok(t) => out.push((hn, t)),
            Err(e) => {
                ctx.error(value.span(), format!("header {name}: {e}"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// `body`: a TOML table/array (turned into JSON), or JSON text in a string.
fn body(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<Value>,
    scope: Scope,
    vars: &Vars,
) -> Option<JsonTemplate> {
    let value = match raw.get_ref() {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => v,
            Err(e) => {
                ctx.error(
                    raw.span(),
                    format!(
                        "`body` is not JSON (line {}, column {} of the string): {}; a variable that is not a string is written in quotes, e.g. \"secondsToLive\": \"{{{{seconds_to_live}}}}\"",
                        e.line(),
                        e.column(),
                        e
                    ),
                );
                return None;
            }
        },
        other => other.clone(),
    };
    match JsonTemplate::parse(&value, scope, vars) {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.error(raw.span(), e);
            None
        }
    }
}

/// Status codes (100–599).
fn statuses(
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
fn conditions(
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
    ];
    allowed.extend(KEY_FIELDS);
    let fields_ok = only(ctx, r, "list", &allowed);
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
    })
}

/// The paging of a list: at most one of `next`, `next_link`, `pages`.
fn paging(ctx: &mut Ctx<'_>, r: &RawOp) -> Option<Paging> {
    let link = r.next_link.as_ref().filter(|l| *l.get_ref());
    let set: Vec<std::ops::Range<usize>> = [
        r.next.as_ref().map(Spanned::span),
        link.map(Spanned::span),
        r.pages.as_ref().map(Spanned::span),
    ]
    .into_iter()
    .flatten()
    .collect();
    if set.len() > 1 {
        ctx.error(
            set[1].clone(),
            "choose one way of paging: `next` (a pointer to the next page), `next_link = true` (the Link header) or `pages` (page numbers)",
        );
        return None;
    }
    if let (Some(c), None) = (&r.cursor_param, &r.next) {
        ctx.error(c.span(), "`cursor_param` is only used with `next`");
        return None;
    }
    if let Some(n) = &r.next {
        let p = pointer(ctx, n, "next")?;
        let param = match &r.cursor_param {
            None => DEFAULT_CURSOR_PARAM.to_string(),
            Some(c) => query_param(ctx, c, "cursor_param")?,
        };
        return Some(Paging::Next {
            pointer: p,
            cursor_param: param,
        });
    }
    if link.is_some() {
        return Some(Paging::LinkHeader);
    }
    match &r.pages {
        Some(p) => pages(ctx, p.get_ref()),
        None => Some(Paging::None),
    }
}

/// A query parameter name.
fn query_param(ctx: &mut Ctx<'_>, raw: &Spanned<String>, field: &str) -> Option<String> {
    let v = raw.get_ref();
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '&' | '=' | '#' | '?'))
    {
        ctx.error(
            raw.span(),
            format!("`{field}` {v:?} is not a query parameter name"),
        );
        return None;
    }
    Some(v.clone())
}

/// `pages = { param, first, size_param, size }`.
fn pages(ctx: &mut Ctx<'_>, p: &RawPages) -> Option<Paging> {
    let param = query_param(ctx, &p.param, "pages.param");
    let size_param = match &p.size_param {
        None => Some(None),
        Some(s) => query_param(ctx, s, "pages.size_param").map(Some),
    };
    let first = match &p.first {
        None => Some(1),
        Some(f) => match u64::try_from(*f.get_ref()) {
            Ok(v) if v <= 1 => Some(v),
            _ => {
                ctx.error(f.span(), "`pages.first` is 0 or 1");
                None
            }
        },
    };
    let size = match u64::try_from(*p.size.get_ref()) {
        Ok(v) if (1..=10_000).contains(&v) => Some(v),
        _ => {
            ctx.error(
                p.size.span(),
                "`pages.size` must be between 1 and 10000 (and at most what the API allows)",
            );
            None
        }
    };
    Some(Paging::Numbers {
        param: param?,
        first: first?,
        size_param: size_param?,
        size: size?,
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
