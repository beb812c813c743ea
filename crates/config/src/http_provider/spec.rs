//! The validated description of an HTTP API that the `http` provider
//! drives: base URL, authentication, and for each operation (`list`,
//! `issue`, `rotate`, `verify`, `revoke`) the request to send and the JSON
//! pointers that read its answer. Built by `config/http_provider` from the
//! TOML; trusted here. What the provider can do follows from which
//! operations are described ([`HttpProviderConfig::capabilities`]).

use std::path::PathBuf;

use jiff::SignedDuration;
use reqwest::Method;
use reqwest::header::HeaderName;
use serde_json::Value;

use super::template::{JsonTemplate, Template};
use crate::secret_ref::SecretRef;
use keyrot_core::model::{Capabilities, IssueMode};

/// `type = "http"` settings: an HTTP API described operation by operation.
/// (Operations are boxed: this sits in `ProviderKind` beside small configs.)
#[derive(Clone, Debug)]
pub struct HttpProviderConfig {
    /// Base URL, no trailing `/`; every operation's path is relative to it.
    pub base_url: String,
    /// Credentials sent with every call (verify: only with `use_auth`).
    pub auth: Vec<Auth>,
    /// Static headers sent with every call.
    pub headers: Vec<(HeaderName, String)>,
    /// Per-request timeout.
    pub timeout: SignedDuration,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Where the rotation id is kept at the provider, if anywhere.
    pub tag: Option<TagSpec>,
    /// Listing the keys.
    pub list: Option<Box<ListOp>>,
    /// Creating a key beside the old one.
    pub issue: Option<Box<IssueOp>>,
    /// Rotating a key natively (used when replacing a key).
    pub rotate: Option<Box<RotateOp>>,
    /// Checking that a new key works.
    pub verify: Option<Box<VerifyOp>>,
    /// Revoking a key.
    pub revoke: Option<Box<RevokeOp>>,
}

/// One credential sent with the provider's calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: SecretRef,
    },
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: SecretRef,
    },
    /// `<name>: <prefix><value>`.
    Header {
        /// Header name.
        name: HeaderName,
        /// Text before the secret (e.g. `Token `), often empty.
        prefix: String,
        /// The secret.
        value: SecretRef,
    },
}

impl Auth {
    /// The secret reference and the field it was written in.
    pub fn secret(&self) -> (&'static str, &SecretRef) {
        match self {
            Auth::Bearer { token } => ("auth.token", token),
            Auth::Basic { password, .. } => ("auth.password", password),
            Auth::Header { value, .. } => ("auth.value", value),
        }
    }

    /// A short description without the secret, for the summary.
    pub fn describe(&self) -> String {
        match self {
            Auth::Bearer { .. } => "bearer".into(),
            Auth::Basic { user, .. } => format!("basic {user}"),
            Auth::Header { name, .. } => format!("header {name}"),
        }
    }
}

/// A JSON pointer (RFC 6901) into an answer; `""` is the whole answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer(pub String);

impl Pointer {
    /// The value at the pointer; JSON `null` counts as absent.
    pub fn get<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        v.pointer(&self.0).filter(|x| !x.is_null())
    }

    /// The value at the pointer, for taking it out.
    pub fn get_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        v.pointer_mut(&self.0).filter(|x| !x.is_null())
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("the whole answer")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// One request: method, path and query (relative to `base_url`),
/// headers, JSON body.
#[derive(Clone, Debug)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path and query template, starting with `/`.
    pub path: Template,
    /// Headers of this operation (override the static ones).
    pub headers: Vec<(HeaderName, Template)>,
    /// JSON body, if any.
    pub body: Option<JsonTemplate>,
}

impl Call {
    /// True if any part of the request uses the requested expiry.
    pub fn sends_expiry(&self) -> bool {
        let expiry = |v: &super::template::Var| v.is_expiry();
        self.path.uses_any(expiry)
            || self.headers.iter().any(|(_, t)| t.uses_any(expiry))
            || self.body.as_ref().is_some_and(|b| b.uses_any(&expiry))
    }

    /// True if any part of the request uses a variable `f` accepts.
    pub fn uses_any(&self, f: &dyn Fn(&super::template::Var) -> bool) -> bool {
        self.path.uses_any(f)
            || self.headers.iter().any(|(_, t)| t.uses_any(f))
            || self.body.as_ref().is_some_and(|b| b.uses_any(f))
    }
}

/// Pointers that read a key's metadata, relative to one key's JSON.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    /// The key's id (string or number).
    pub id: Option<Pointer>,
    /// The key's name.
    pub name: Option<Pointer>,
    /// Scopes: an array of strings, or one string.
    pub scopes: Option<Pointer>,
    /// Who created it.
    pub created_by: Option<Pointer>,
    /// Creation time.
    pub created_at: Option<Pointer>,
    /// Expiry: RFC 3339, `YYYY-MM-DD` (midnight UTC) or Unix seconds.
    pub expires_at: Option<Pointer>,
    /// Seconds until expiry (used when `expires_at` is absent).
    pub seconds_to_live: Option<Pointer>,
    /// Last use.
    pub last_used_at: Option<Pointer>,
}

/// Equality conditions on a listed key's JSON.
pub type Conditions = Vec<(Pointer, Value)>;

/// How the list is paged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paging {
    /// One answer holds every key.
    None,
    /// A pointer to the next page: a URL (same host as `base_url`) or a
    /// cursor token sent as query parameter `cursor_param`.
    Next {
        /// Where the next page's URL or cursor is.
        pointer: Pointer,
        /// Query parameter a cursor token goes in.
        cursor_param: String,
    },
    /// The `Link: <url>; rel="next"` header (RFC 8288), e.g. GitLab.
    LinkHeader,
    /// Page numbers: `param=N` from `first` on, until a page has fewer
    /// than `size` keys (or none).
    Numbers {
        /// Page-number query parameter.
        param: String,
        /// Number of the first page (0 or 1).
        first: u64,
        /// Page-size query parameter, if sent.
        size_param: Option<String>,
        /// Keys per page (at most the API's maximum).
        size: u64,
    },
}

/// `[provider.list]`.
#[derive(Clone, Debug)]
pub struct ListOp {
    /// The request of the first page.
    pub call: Call,
    /// Where the array of keys is.
    pub items: Pointer,
    /// Per-key pointers (`id` and `name` are required).
    pub fields: Fields,
    /// A key is kept only if every condition holds.
    pub keep_if: Conditions,
    /// A key is skipped if any condition holds.
    pub skip_if: Conditions,
    /// Paging.
    pub paging: Paging,
    /// How stale `fields.last_used_at` may be, as the API documents it: a
    /// preset that sets it reports last use (`revoke_when = "unused"`).
    pub last_used_precision: Option<jiff::SignedDuration>,
}

/// `[provider.issue]`.
#[derive(Clone, Debug)]
pub struct IssueOp {
    /// The request.
    pub call: Call,
    /// Where the new secret is.
    pub secret: Pointer,
    /// Pointers to the new key's metadata (`id` required).
    pub fields: Fields,
    /// Repeating the call with the same rotation id returns the same key
    /// (the request carries an idempotency key).
    pub idempotent: bool,
}

/// `[provider.rotate]`.
#[derive(Clone, Debug)]
pub struct RotateOp {
    /// The request (uses `{{key.id}}`, the key being rotated).
    pub call: Call,
    /// Where the new secret is.
    pub secret: Pointer,
    /// Pointers to the new key's metadata; without `id`, the key keeps its id.
    pub fields: Fields,
    /// The rotated key ends at once (no overlap).
    pub no_overlap: bool,
    /// Repeating the call with the same rotation id returns the same key.
    pub idempotent: bool,
    /// Statuses meaning "the key is already gone".
    pub gone_status: Vec<u16>,
}

/// `[provider.verify]`.
#[derive(Clone, Debug)]
pub struct VerifyOp {
    /// The request, made with the new secret (`{{secret}}` in a header).
    pub call: Call,
    /// Send the provider's `auth` too.
    pub use_auth: bool,
    /// Statuses meaning "the key works" (empty: any 2xx).
    pub ok_status: Vec<u16>,
    /// The answer's value here must equal the key's id.
    pub expect_id: Option<Pointer>,
    /// The answer must satisfy every condition.
    pub expect: Conditions,
}

/// `[provider.revoke]`.
#[derive(Clone, Debug)]
pub struct RevokeOp {
    /// The request (uses `{{key.id}}`).
    pub call: Call,
    /// Statuses meaning "already gone" (counted as done).
    pub gone_status: Vec<u16>,
}

/// Where the rotation id is kept, so that the provider's `find_tagged` can find a key
/// an interrupted issue created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagSpec {
    /// In the key's name, or at a pointer of the listed key.
    pub place: TagPlace,
    /// The text before the rotation id.
    pub prefix: String,
    /// The text after the rotation id.
    pub suffix: String,
}

/// Where a tag is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagPlace {
    /// Appended to the key's name; stripped again when listing.
    Name,
    /// In a field of its own (e.g. a description), read at this pointer.
    Field(Pointer),
}

/// Length of a rotation id (a UUID in text form).
const ID_LEN: usize = 36;

impl TagSpec {
    /// The tag for rotation `id`.
    pub fn render(&self, id: &str) -> String {
        format!("{}{id}{}", self.prefix, self.suffix)
    }

    /// Finds a tag in `text`: for [`TagPlace::Name`] it must end the text,
    /// and the name without it is returned; elsewhere it may be anywhere.
    /// Returns (text without the tag, rotation id).
    pub fn find<'t>(&self, text: &'t str) -> Option<(&'t str, &'t str)> {
        let anchored = self.place == TagPlace::Name;
        let body = if anchored {
            text.strip_suffix(self.suffix.as_str())?
        } else {
            text
        };
        let mut search = body;
        while let Some(at) = search.rfind(self.prefix.as_str()) {
            let start = at + self.prefix.len();
            let id = search.get(start..start + ID_LEN);
            let fits = id.is_some_and(|id| {
                uuid::Uuid::parse_str(id).is_ok()
                    && (anchored && start + ID_LEN == body.len()
                        || !anchored && text[start + ID_LEN..].starts_with(self.suffix.as_str()))
            });
            if fits {
                return Some((&body[..at], id.unwrap_or_default()));
            }
            search = &search[..at];
        }
        None
    }
}

impl HttpProviderConfig {
    /// What a provider built from this description can do.
    pub fn capabilities(&self) -> Capabilities {
        let rotate = self.rotate.as_ref();
        let no_overlap = rotate.is_some_and(|r| r.no_overlap);
        // A native rotate that ends the old key is made safe to repeat by
        // the provider itself (it rotates the orphan; see `issue`), which
        // needs `list` (validation requires it).
        let idempotent_issue = match rotate {
            Some(r) => r.no_overlap || r.idempotent,
            None => self.issue.as_ref().is_some_and(|i| i.idempotent),
        };
        Capabilities {
            issue: match (rotate, &self.issue) {
                // A rotate op replaces keys (the issue op, if any, makes a
                // slot's first key).
                (Some(_), _) => IssueMode::Rotate {
                    keeps_scopes: false,
                    old_ends: no_overlap,
                },
                (None, Some(_)) => IssueMode::Create,
                (None, None) => IssueMode::Assisted,
            },
            list: self.list.is_some(),
            revoke: self.revoke.is_some(),
            verify: self.verify.is_some(),
            tag: self.tag.is_some() && self.list.is_some() && self.issue.is_some(),
            set_expiry: false,
            idempotent_issue,
            deactivate: false,
            prove_identity: false,
            last_used: self
                .list
                .as_ref()
                .filter(|l| l.fields.last_used_at.is_some())
                .and_then(|l| l.last_used_precision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(place: TagPlace, prefix: &str, suffix: &str) -> TagSpec {
        TagSpec {
            place,
            prefix: prefix.into(),
            suffix: suffix.into(),
        }
    }

    const ID: &str = "0195b7d2-0000-7000-8000-000000000001";

    #[test]
    fn tags_in_names_are_found_and_stripped() {
        let t = tag(TagPlace::Name, "-keyrot-", "");
        let name = format!("ci-keyrot-bot-keyrot-{ID}");
        assert_eq!(t.find(&name), Some(("ci-keyrot-bot", ID)));
        assert_eq!(t.render(ID), format!("-keyrot-{ID}"));
        assert_eq!(t.find("ci-keyrot-bot"), None);
        assert_eq!(t.find(&format!("ci-keyrot-{ID}x")), None);
        assert_eq!(t.find(&format!("ci-keyrot-{}", &ID[..30])), None);
        let t = tag(TagPlace::Name, " (keyrot ", ")");
        assert_eq!(t.find(&format!("a b (keyrot {ID})")), Some(("a b", ID)));
        let t = tag(
            TagPlace::Field(Pointer("/description".into())),
            "keyrot:",
            ";",
        );
        assert_eq!(
            t.find(&format!("made by keyrot:{ID}; do not edit")),
            Some(("made by ", ID))
        );
        assert_eq!(t.find(&format!("made by keyrot:{ID}")), None);
    }
}
