//! The request of an operation: its method, its `path` and header
//! templates, and its JSON `body` template.

use std::collections::BTreeMap;

use reqwest::Method;
use reqwest::header::HeaderName;
use serde_json::Value;
use toml::Spanned;

use super::Vars;
use crate::ctx::{Ctx, did_you_mean};
use crate::http_provider::raw::RawOp;
use crate::http_provider::spec::Call;
use crate::http_provider::template::{self, JsonTemplate, Scope, Template};

/// Methods an operation may use.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The request of an operation: method (default `method`), path, headers
/// (templates in `header_scope`), body (in `scope`).
pub(super) fn call(
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
