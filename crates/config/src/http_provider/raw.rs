//! `type = "http"` as written: serde structs with a span on every value
//! validation may reject and `deny_unknown_fields` everywhere. One struct,
//! [`RawOp`], serves all five operations; which of its fields an operation
//! takes is checked in validation, with a message at the field.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::raw::DurationText;
use crate::raw::SecretRefRaw;

/// `type = "http"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpProvider {
    /// API base URL; operation paths are relative to it.
    pub base_url: Spanned<String>,
    /// One credential table, or an array of them.
    pub auth: Option<Spanned<AuthList>>,
    /// Per-request timeout.
    pub timeout: Option<Spanned<DurationText>>,
    /// PEM file of CA certificates to trust (besides the system's).
    pub ca_file: Option<Spanned<String>>,
    /// Static headers sent with every call.
    pub headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Values for `{{vars.NAME}}`.
    pub vars: Option<Spanned<BTreeMap<String, Spanned<VarValue>>>>,
    /// Where the rotation id is kept.
    pub tag: Option<Spanned<RawTag>>,
    /// `[provider.list]`.
    pub list: Option<Spanned<RawOp>>,
    /// `[provider.issue]`.
    pub issue: Option<Spanned<RawOp>>,
    /// `[provider.rotate]`.
    pub rotate: Option<Spanned<RawOp>>,
    /// `[provider.verify]`.
    pub verify: Option<Spanned<RawOp>>,
    /// `[provider.revoke]`.
    pub revoke: Option<Spanned<RawOp>>,
}

/// One `auth` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `bearer`, `basic` or `header`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Bearer token.
    pub token: Option<Spanned<SecretRefRaw>>,
    /// Basic auth user (not a secret).
    pub user: Option<Spanned<String>>,
    /// Basic auth password.
    pub password: Option<Spanned<SecretRefRaw>>,
    /// Header name.
    pub name: Option<Spanned<String>>,
    /// Header value (the secret).
    pub value: Option<Spanned<SecretRefRaw>>,
    /// Text before the header's secret, e.g. `"Token "`.
    pub prefix: Option<Spanned<String>>,
}

/// `auth = { ... }` or `auth = [{ ... }, { ... }]`.
#[derive(Debug)]
pub struct AuthList(pub Vec<RawAuth>);

impl<'de> Deserialize<'de> for AuthList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AuthList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table such as { type = \"bearer\", token = { credential = \"NAME\" } }, or an array of them",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AuthList, A::Error> {
                RawAuth::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|a| AuthList(vec![a]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<AuthList, A::Error> {
                Vec::<RawAuth>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(AuthList)
            }
        }
        d.deserialize_any(V)
    }
}

/// A `vars` value: a string, or an integer taken as its decimal text.
#[derive(Debug)]
pub struct VarValue(pub String);

impl<'de> Deserialize<'de> for VarValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = VarValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VarValue, E> {
                Ok(VarValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VarValue, E> {
                Ok(VarValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VarValue, E> {
                Ok(VarValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `tag = { in = "name", format = "-keyrot-{{rotation.id}}" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTag {
    /// `"name"`, or a JSON pointer into a listed key (e.g. `"/description"`).
    #[serde(rename = "in")]
    pub place: Option<Spanned<String>>,
    /// The tag text around `{{rotation.id}}`.
    pub format: Option<Spanned<String>>,
}

/// `pages = { param = "page", first = 1, size_param = "per_page", size = 50 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPages {
    /// Page-number query parameter.
    pub param: Spanned<String>,
    /// First page number (default 1).
    pub first: Option<Spanned<i64>>,
    /// Page-size query parameter.
    pub size_param: Option<Spanned<String>>,
    /// Keys per page.
    pub size: Spanned<i64>,
}

/// One operation table (`[provider.list]`, `issue`, `rotate`, `verify`,
/// `revoke`); which fields each takes is checked in validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOp {
    /// HTTP method.
    pub method: Option<Spanned<String>>,
    /// Path and query template, relative to `base_url`.
    pub path: Spanned<String>,
    /// Header templates.
    pub headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// JSON body template: a table, or JSON text in a string.
    pub body: Option<Spanned<serde_json::Value>>,
    /// Pointer to the array of keys (list).
    pub items: Option<Spanned<String>>,
    /// Pointer to the key id.
    pub id: Option<Spanned<String>>,
    /// Pointer to the new secret (issue, rotate).
    pub secret: Option<Spanned<String>>,
    /// Pointer to the key name (list).
    pub name: Option<Spanned<String>>,
    /// Pointer to the scopes.
    pub scopes: Option<Spanned<String>>,
    /// Pointer to the creator.
    pub created_by: Option<Spanned<String>>,
    /// Pointer to the creation time.
    pub created_at: Option<Spanned<String>>,
    /// Pointer to the expiry.
    pub expires_at: Option<Spanned<String>>,
    /// Pointer to the seconds left until expiry.
    pub seconds_to_live: Option<Spanned<String>>,
    /// Pointer to the last use.
    pub last_used_at: Option<Spanned<String>>,
    /// Pointer to the next page's URL or cursor (list).
    pub next: Option<Spanned<String>>,
    /// Query parameter a cursor goes in (list, default `cursor`).
    pub cursor_param: Option<Spanned<String>>,
    /// Follow the `Link: rel="next"` header (list).
    pub next_link: Option<Spanned<bool>>,
    /// Page-number paging (list).
    pub pages: Option<Spanned<RawPages>>,
    /// Keep only keys matching all of these (list).
    pub keep_if: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    /// Skip keys matching any of these (list).
    pub skip_if: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    /// The rotated key ends at once (rotate, default true).
    pub no_overlap: Option<Spanned<bool>>,
    /// Repeating the call returns the same key (issue, rotate).
    pub idempotent: Option<Spanned<bool>>,
    /// Statuses meaning "already gone" (rotate, revoke).
    pub gone_status: Option<Spanned<Vec<i64>>>,
    /// Statuses meaning "works" (verify).
    pub ok_status: Option<Spanned<Vec<i64>>>,
    /// Pointer whose value must be the key id (verify).
    pub expect_id: Option<Spanned<String>>,
    /// Conditions the answer must meet (verify).
    pub expect: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    /// Send `auth` with the verify call too (verify, default false).
    pub use_auth: Option<Spanned<bool>>,
    /// How stale `last_used_at` may be (list): the API updates it lazily.
    pub last_used_precision: Option<Spanned<DurationText>>,
}

impl RawOp {
    /// The optional fields that are set, with their spans.
    pub fn set_fields(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        fn s<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        [
            ("items", s(&self.items)),
            ("id", s(&self.id)),
            ("secret", s(&self.secret)),
            ("name", s(&self.name)),
            ("scopes", s(&self.scopes)),
            ("created_by", s(&self.created_by)),
            ("created_at", s(&self.created_at)),
            ("expires_at", s(&self.expires_at)),
            ("seconds_to_live", s(&self.seconds_to_live)),
            ("last_used_at", s(&self.last_used_at)),
            ("next", s(&self.next)),
            ("cursor_param", s(&self.cursor_param)),
            ("next_link", s(&self.next_link)),
            ("pages", s(&self.pages)),
            ("keep_if", s(&self.keep_if)),
            ("skip_if", s(&self.skip_if)),
            ("no_overlap", s(&self.no_overlap)),
            ("idempotent", s(&self.idempotent)),
            ("gone_status", s(&self.gone_status)),
            ("ok_status", s(&self.ok_status)),
            ("expect_id", s(&self.expect_id)),
            ("expect", s(&self.expect)),
            ("use_auth", s(&self.use_auth)),
            ("last_used_precision", s(&self.last_used_precision)),
        ]
        .into_iter()
        .filter_map(|(f, span)| span.map(|sp| (f, sp)))
        .collect()
    }
}
