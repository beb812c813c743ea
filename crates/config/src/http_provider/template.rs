//! Templates of the `http` provider: `{{variable}}` placeholders in paths,
//! header values and JSON bodies, parsed once at config load (an unknown
//! variable is a config error) and rendered per call. A value substituted
//! into a path is percent-encoded, so it stays one path segment or query
//! value; one substituted into a JSON string is escaped by serialising the
//! JSON, and a JSON string that is exactly one variable becomes that
//! variable's JSON value (a number for `{{seconds_to_live}}`, an array for
//! `{{scopes}}`). The new key's secret is only ever rendered into a
//! zeroized buffer.

use std::fmt::Write as _;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use zeroize::Zeroizing;

/// A variable a template may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `{{key.id}}`: the provider's id of the key the call is about.
    KeyId,
    /// `{{key.name}}`: the key's name (the slot's name).
    KeyName,
    /// `{{key.tagged_name}}`: the name with the rotation tag appended
    /// (`tag.in = "name"`), else the name.
    KeyTaggedName,
    /// `{{tag}}`: the rendered tag (`tag.format` with the rotation id).
    Tag,
    /// `{{rotation.id}}`: the rotation id.
    RotationId,
    /// `{{new_expires_at}}`: the requested expiry, RFC 3339.
    NewExpiresAt,
    /// `{{new_expires_date}}`: the requested expiry's UTC date, `YYYY-MM-DD`.
    NewExpiresDate,
    /// `{{seconds_to_live}}`: seconds from now to the requested expiry.
    SecondsToLive,
    /// `{{scopes}}`: the new key's scopes (a JSON array; comma-separated text elsewhere).
    Scopes,
    /// `{{secret}}`: the new key's secret (verify headers only).
    Secret,
    /// `{{vars.NAME}}`: a value of the provider's `vars` table.
    Static(String, String),
}

impl Var {
    /// How the variable is written, for messages and docs.
    pub fn spelling(&self) -> String {
        match self {
            Var::KeyId => "{{key.id}}".into(),
            Var::KeyName => "{{key.name}}".into(),
            Var::KeyTaggedName => "{{key.tagged_name}}".into(),
            Var::Tag => "{{tag}}".into(),
            Var::RotationId => "{{rotation.id}}".into(),
            Var::NewExpiresAt => "{{new_expires_at}}".into(),
            Var::NewExpiresDate => "{{new_expires_date}}".into(),
            Var::SecondsToLive => "{{seconds_to_live}}".into(),
            Var::Scopes => "{{scopes}}".into(),
            Var::Secret => "{{secret}}".into(),
            Var::Static(name, _) => format!("{{{{vars.{name}}}}}"),
        }
    }

    /// True for the variables that carry the requested expiry.
    pub fn is_expiry(&self) -> bool {
        matches!(
            self,
            Var::NewExpiresAt | Var::NewExpiresDate | Var::SecondsToLive
        )
    }
}

/// Which variables a template may use (besides `{{vars.*}}`, always allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `list`: only `{{vars.*}}`.
    List,
    /// `issue`: everything about the new key, but no key id.
    Issue,
    /// `rotate`: like issue, plus `{{key.id}}` (the key being rotated).
    Rotate,
    /// `verify` paths and bodies: `{{key.id}}`.
    Verify,
    /// `verify` headers: `{{key.id}}` and `{{secret}}`.
    VerifyHeader,
    /// `revoke`: `{{key.id}}`.
    Revoke,
    /// `tag.format`: only `{{rotation.id}}`.
    TagFormat,
}

impl Scope {
    /// The variable named `name` (without braces), if this scope allows it.
    fn resolve(self, name: &str) -> Option<Var> {
        let var = match name {
            "key.id" => Var::KeyId,
            "key.name" => Var::KeyName,
            "key.tagged_name" => Var::KeyTaggedName,
            "tag" => Var::Tag,
            "rotation.id" => Var::RotationId,
            "new_expires_at" => Var::NewExpiresAt,
            "new_expires_date" => Var::NewExpiresDate,
            "seconds_to_live" => Var::SecondsToLive,
            "scopes" => Var::Scopes,
            "secret" => Var::Secret,
            _ => return None,
        };
        let new_key = matches!(
            var,
            Var::KeyName
                | Var::KeyTaggedName
                | Var::Tag
                | Var::RotationId
                | Var::NewExpiresAt
                | Var::NewExpiresDate
                | Var::SecondsToLive
                | Var::Scopes
        );
        let ok = match self {
            Scope::List => false,
            Scope::Issue => new_key,
            Scope::Rotate => new_key || var == Var::KeyId,
            Scope::Verify | Scope::Revoke => var == Var::KeyId,
            Scope::VerifyHeader => matches!(var, Var::KeyId | Var::Secret),
            Scope::TagFormat => var == Var::RotationId,
        };
        ok.then_some(var)
    }

    /// The variables this scope allows, for messages.
    pub fn allowed(self) -> &'static str {
        match self {
            Scope::List => "only {{vars.NAME}}",
            Scope::Issue => {
                "{{key.name}}, {{key.tagged_name}}, {{tag}}, {{rotation.id}}, {{new_expires_at}}, {{new_expires_date}}, {{seconds_to_live}}, {{scopes}} and {{vars.NAME}}"
            }
            Scope::Rotate => {
                "{{key.id}} (the key being rotated), {{key.name}}, {{key.tagged_name}}, {{tag}}, {{rotation.id}}, {{new_expires_at}}, {{new_expires_date}}, {{seconds_to_live}}, {{scopes}} and {{vars.NAME}}"
            }
            Scope::Verify => "{{key.id}} and {{vars.NAME}} ({{secret}} only in verify headers)",
            Scope::VerifyHeader => "{{secret}}, {{key.id}} and {{vars.NAME}}",
            Scope::Revoke => "{{key.id}} and {{vars.NAME}}",
            Scope::TagFormat => "only {{rotation.id}}",
        }
    }
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// Literal text.
    Lit(String),
    /// A variable.
    Var(Var),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// Literal text and variables, in order.
    parts: Vec<Part>,
}

/// Parses `text`: `{{ name }}` placeholders (spaces inside the braces are
/// ignored), checked against `scope` and the provider's `vars`. The error
/// names the problem (and what the scope allows).
pub fn parse(text: &str, scope: Scope, vars: &[(String, String)]) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(format!(
                "unclosed `{{{{` in {text:?}: write a variable as {{{{name}}}}"
            ));
        };
        let name = after[..close].trim();
        let var = match name.strip_prefix("vars.") {
            Some(v) => match vars.iter().find(|(k, _)| k == v) {
                Some((k, value)) => Var::Static(k.clone(), value.clone()),
                None => {
                    let known: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
                    return Err(format!(
                        "`{{{{vars.{v}}}}}` is not defined: the provider's `vars` table has {}",
                        if known.is_empty() {
                            "no entries".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
            },
            None => scope.resolve(name).ok_or_else(|| {
                format!(
                    "`{{{{{name}}}}}` cannot be used here: this template may use {}",
                    scope.allowed()
                )
            })?,
        };
        parts.push(Part::Var(var));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(Template { parts })
}

impl Template {
    /// A template of literal text only.
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Lit(text.to_string())],
        }
    }

    /// True if the template uses `var`.
    pub fn uses(&self, var: &Var) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if v == var))
    }

    /// True if the template uses a variable `f` accepts.
    pub fn uses_any(&self, f: impl Fn(&Var) -> bool) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(v) if f(v)))
    }

    /// The literal text of the template (variables left out), for checks.
    pub fn literal_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Lit(s) => Some(s.as_str()),
                Part::Var(_) => None,
            })
            .collect()
    }

    /// The only variable, when the template is exactly one variable.
    fn sole_var(&self) -> Option<&Var> {
        match self.parts.as_slice() {
            [Part::Var(v)] => Some(v),
            _ => None,
        }
    }

    /// Splits a template of the form `PREFIX{{var}}SUFFIX` (used for the
    /// tag format): the literal text before and after the one variable.
    pub fn around_one_var(&self) -> Option<(String, String)> {
        let at = self.parts.iter().position(|p| matches!(p, Part::Var(_)))?;
        let lits = |parts: &[Part]| -> Option<String> {
            parts
                .iter()
                .map(|p| match p {
                    Part::Lit(s) => Some(s.as_str()),
                    Part::Var(_) => None,
                })
                .collect()
        };
        Some((lits(&self.parts[..at])?, lits(&self.parts[at + 1..])?))
    }

    /// Renders as plain text (header values, the tag).
    pub fn text(&self, v: &Values<'_>) -> Result<Zeroizing<String>, Missing> {
        self.render(v, false)
    }

    /// Renders as a URL path and query: substituted values are
    /// percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`).
    pub fn path(&self, v: &Values<'_>) -> Result<String, Missing> {
        self.render(v, true).map(|s| s.to_string())
    }

    /// Renders into `out`.
    fn render(&self, v: &Values<'_>, encode: bool) -> Result<Zeroizing<String>, Missing> {
        let mut out = Zeroizing::new(String::new());
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(var) => {
                    let value = v.text(var)?;
                    if encode {
                        percent_encode(&value, &mut out);
                    } else {
                        out.push_str(&value);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Appends `s` percent-encoded (RFC 3986 unreserved characters kept).
pub fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A variable with no value for this call (e.g. no expiry was requested).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing(pub String);

/// The values of one call's variables.
#[derive(Default)]
pub struct Values<'a> {
    /// `{{key.id}}`.
    pub key_id: Option<&'a str>,
    /// `{{key.name}}`.
    pub key_name: Option<&'a str>,
    /// `{{key.tagged_name}}`.
    pub tagged_name: Option<String>,
    /// `{{tag}}`.
    pub tag: Option<String>,
    /// `{{rotation.id}}`.
    pub rotation_id: Option<&'a str>,
    /// The requested expiry.
    pub expires_at: Option<Timestamp>,
    /// The current time (for `{{seconds_to_live}}`).
    pub now: Option<Timestamp>,
    /// `{{scopes}}`.
    pub scopes: Option<&'a [String]>,
    /// `{{secret}}`.
    pub secret: Option<&'a SecretString>,
}

impl Values<'_> {
    /// The variable as text.
    fn text(&self, var: &Var) -> Result<Zeroizing<String>, Missing> {
        let missing = || Missing(var.spelling());
        let s = match var {
            Var::KeyId => self.key_id.ok_or_else(missing)?.to_string(),
            Var::KeyName => self.key_name.ok_or_else(missing)?.to_string(),
            Var::KeyTaggedName => self.tagged_name.clone().ok_or_else(missing)?,
            Var::Tag => self.tag.clone().ok_or_else(missing)?,
            Var::RotationId => self.rotation_id.ok_or_else(missing)?.to_string(),
            Var::NewExpiresAt => self.expires_at.ok_or_else(missing)?.to_string(),
            Var::NewExpiresDate => {
                let t = self.expires_at.ok_or_else(missing)?;
                t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()
            }
            Var::SecondsToLive => self.seconds_to_live().ok_or_else(missing)?.to_string(),
            Var::Scopes => self.scopes.ok_or_else(missing)?.join(","),
            Var::Secret => {
                return Ok(Zeroizing::new(
                    self.secret.ok_or_else(missing)?.expose_secret().to_string(),
                ));
            }
            Var::Static(_, value) => value.clone(),
        };
        Ok(Zeroizing::new(s))
    }

    /// Whole seconds from now to the requested expiry (at least 1).
    fn seconds_to_live(&self) -> Option<i64> {
        let (at, now) = (self.expires_at?, self.now?);
        Some((at.as_second() - now.as_second()).max(1))
    }

    /// The variable as a JSON value, for a JSON string that is exactly it.
    fn json(&self, var: &Var) -> Result<Value, Missing> {
        match var {
            Var::SecondsToLive => self
                .seconds_to_live()
                .map(Value::from)
                .ok_or_else(|| Missing(var.spelling())),
            // No scopes is left out of an object rather than sent as `[]`,
            // which some APIs read as "no permission at all".
            Var::Scopes => self
                .scopes
                .filter(|s| !s.is_empty())
                .map(|s| Value::from(s.to_vec()))
                .ok_or_else(|| Missing(var.spelling())),
            _ => self.text(var).map(|s| Value::String(s.to_string())),
        }
    }
}

/// A JSON body whose strings are templates.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTemplate {
    /// A JSON value without strings (null, bool, number).
    Plain(Value),
    /// A string template.
    Str(Template),
    /// An array.
    Array(Vec<JsonTemplate>),
    /// An object, members in order.
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Parses every string of `v` as a template in `scope`; the error
    /// names the JSON path of the bad string.
    pub fn parse(
        v: &Value,
        scope: Scope,
        vars: &[(String, String)],
    ) -> Result<JsonTemplate, String> {
        Self::parse_at(v, scope, vars, "")
    }

    fn parse_at(
        v: &Value,
        scope: Scope,
        vars: &[(String, String)],
        at: &str,
    ) -> Result<JsonTemplate, String> {
        Ok(match v {
            Value::String(s) => {
                JsonTemplate::Str(parse(s, scope, vars).map_err(|e| format!("body{at}: {e}"))?)
            }
            Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Self::parse_at(item, scope, vars, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(members) => JsonTemplate::Object(
                members
                    .iter()
                    .map(|(k, item)| {
                        Ok((
                            k.clone(),
                            Self::parse_at(item, scope, vars, &format!("{at}.{k}"))?,
                        ))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Plain(other.clone()),
        })
    }

    /// True if any string uses a variable `f` accepts.
    pub fn uses_any(&self, f: &dyn Fn(&Var) -> bool) -> bool {
        match self {
            JsonTemplate::Plain(_) => false,
            JsonTemplate::Str(t) => t.uses_any(f),
            JsonTemplate::Array(items) => items.iter().any(|i| i.uses_any(f)),
            JsonTemplate::Object(members) => members.iter().any(|(_, i)| i.uses_any(f)),
        }
    }

    /// Renders the body. An object member whose value is exactly one
    /// variable without a value (no expiry requested) is left out; a
    /// missing variable anywhere else is an error.
    pub fn render(&self, v: &Values<'_>) -> Result<Value, Missing> {
        Ok(match self {
            JsonTemplate::Plain(p) => p.clone(),
            JsonTemplate::Str(t) => match t.sole_var() {
                Some(var) => v.json(var)?,
                None => Value::String(t.text(v)?.to_string()),
            },
            JsonTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.render(v))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(members) => {
                let mut out = serde_json::Map::new();
                for (k, item) in members {
                    match item.render(v) {
                        Ok(value) => {
                            out.insert(k.clone(), value);
                        }
                        Err(_) if item.is_optional() => {}
                        Err(e) => return Err(e),
                    }
                }
                Value::Object(out)
            }
        })
    }

    /// A string that is exactly one expiry variable or `{{scopes}}`: left
    /// out when it has no value.
    fn is_optional(&self) -> bool {
        matches!(self, JsonTemplate::Str(t)
            if t.sole_var().is_some_and(|v| v.is_expiry() || *v == Var::Scopes))
    }
}

#[cfg(test)]
mod tests;
