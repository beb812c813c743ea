//! Who may use keyrot's control API with a bearer token and how the rotate
//! API's answers are sealed: `[[psk]]` (pre-shared keys the new secret is
//! sealed under for the caller) and `[[api_token]]` (bearer tokens, each
//! limited to the actions of its `scopes`, the key slots its `keys` globs
//! match and the `[[psk]]` ids of its `psk_ids`). Raw input, validation with
//! `file:line:column` errors, the validated types and their secret
//! references for `keyrot check`. Resolving the secrets is the runtime's
//! job (`rotation/reveal.rs`); checking a caller is the control server's.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

// Through the crate root, not `types`: `Config` there holds this module's
// settings, and the two would import each other.
use super::ProviderConfig;
use super::ctx::{Ctx, did_you_mean};
use super::raw::SecretRefRaw;
use super::secret::SecretUse;
use super::secret::secret_ref;
use super::secret_ref::SecretRef;

/// `[[psk]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPsk {
    /// The id callers name with `?pskId=`.
    pub id: Spanned<String>,
    /// The key: a secret reference to 64 hex characters.
    pub key: Spanned<SecretRefRaw>,
}

/// `[[api_token]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiToken {
    /// Unique name, logged with each call the token makes.
    pub name: Spanned<String>,
    /// The bearer token: a secret reference.
    pub token: Spanned<SecretRefRaw>,
    /// Slot ids or globs (`provider/name`, `atlassian/*`) it may touch.
    pub keys: Vec<Spanned<String>>,
    /// Actions it may take (default `["rotate"]`).
    #[serde(default)]
    pub scopes: Option<Vec<Spanned<String>>>,
    /// `[[psk]]` ids it may have secrets sealed under (default: the first
    /// `[[psk]]` alone; `["*"]`: every one).
    #[serde(default)]
    pub psk_ids: Option<Vec<Spanned<String>>>,
}

/// `[[psk]]`: a pre-shared key new secrets are sealed under for API callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PskConfig {
    /// Unique id (`?pskId=`, and `pskId` in the response).
    pub id: String,
    /// Where its 64 hex characters (32 bytes) come from.
    pub key: SecretRef,
}

/// `[[api_token]]`: a bearer token for the control API, limited to some
/// actions, keys and pre-shared keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenConfig {
    /// Unique name (never the token).
    pub name: String,
    /// Where the token comes from.
    pub token: SecretRef,
    /// Slot-id globs (`*` any run of characters, `?` one) it may touch.
    pub keys: Vec<String>,
    /// Actions it may take, sorted, without duplicates.
    pub scopes: Vec<ApiScope>,
    /// The `[[psk]]` ids it may have secrets sealed under.
    pub psk_ids: PskGrant,
}

/// An action group of the control API a token may be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiScope {
    /// Inventory, rotations, history, plan, audit.
    Read,
    /// Start rotations (`POST /v1/rotate`, the rotate API) and take their
    /// sealed secrets; includes `read` for the keys it covers.
    Rotate,
    /// Resume, abort, enroll, sink tests; includes `read` for the keys it
    /// covers.
    Operate,
    /// Reload, store backup and verify.
    Admin,
}

impl ApiScope {
    /// Every scope, in order.
    pub const ALL: [ApiScope; 4] = [
        ApiScope::Read,
        ApiScope::Rotate,
        ApiScope::Operate,
        ApiScope::Admin,
    ];

    /// The name written in `scopes`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Read => "read",
            ApiScope::Rotate => "rotate",
            ApiScope::Operate => "operate",
            ApiScope::Admin => "admin",
        }
    }
}

/// The `[[psk]]` ids an `[[api_token]]` may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PskGrant {
    /// `psk_ids = ["*"]`: every configured one.
    All,
    /// These ids (possibly none).
    Only(Vec<String>),
}

impl PskGrant {
    /// Whether `id` may be named.
    pub fn allows(&self, id: &str) -> bool {
        match self {
            PskGrant::All => true,
            PskGrant::Only(ids) => ids.iter().any(|i| i == id),
        }
    }
}

/// Every `[[psk]]`: ids unique and URL-safe, keys valid references.
pub(crate) fn psks(ctx: &mut Ctx<'_>, entries: Vec<Spanned<DeValue<'_>>>) -> Vec<PskConfig> {
    let mut seen: Vec<Spanned<String>> = Vec::new();
    let mut out = Vec::new();
    for entry in entries {
        let Some(raw) = ctx.deser_in::<RawPsk>(entry, "in [[psk]]") else {
            continue;
        };
        let id = psk_id(ctx, &raw.id);
        let key = secret_ref(ctx, &raw.key);
        if id.is_some() && unique(ctx, "psk id", &raw.id, &seen) {
            seen.push(raw.id.clone());
        }
        if let (Some(id), Some(key)) = (id, key) {
            out.push(PskConfig { id, key });
        }
    }
    out
}

/// A PSK id: letters, digits, `.`, `_`, `-` (it travels in a query string).
fn psk_id(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let v = ctx.text(raw, "id")?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        ctx.error(
            raw.span(),
            format!("psk `id` {v:?} may hold only letters, digits, `.`, `_` and `-`"),
        );
        return None;
    }
    Some(v)
}

/// Every `[[api_token]]`: names unique, tokens valid references, `keys`
/// non-empty globs over slot ids whose provider part names a provider,
/// `scopes` known, `psk_ids` naming configured `[[psk]]`s.
pub(crate) fn api_tokens(
    ctx: &mut Ctx<'_>,
    entries: Vec<Spanned<DeValue<'_>>>,
    providers: &[ProviderConfig],
    psks: &[PskConfig],
) -> Vec<ApiTokenConfig> {
    let mut seen: Vec<Spanned<String>> = Vec::new();
    let mut out = Vec::new();
    for entry in entries {
        let span = entry.span();
        let Some(raw) = ctx.deser_in::<RawApiToken>(entry, "in [[api_token]]") else {
            continue;
        };
        let before = ctx.error_count();
        let name = ctx.text(&raw.name, "name");
        if name.is_some() && unique(ctx, "api_token name", &raw.name, &seen) {
            seen.push(raw.name.clone());
        }
        let token = secret_ref(ctx, &raw.token);
        let keys = globs(ctx, &raw.keys, span.clone(), providers);
        let scopes = scopes(ctx, raw.scopes.as_deref(), span.clone());
        let psk_ids = psk_grant(ctx, raw.psk_ids.as_deref(), psks);
        if ctx.error_count() > before {
            continue;
        }
        if let (Some(name), Some(token)) = (name, token) {
            out.push(ApiTokenConfig {
                name,
                token,
                keys,
                scopes,
                psk_ids,
            });
        }
    }
    out
}

/// The `keys` of one token.
fn globs(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<String>],
    entry: Range<usize>,
    providers: &[ProviderConfig],
) -> Vec<String> {
    if raw.is_empty() {
        ctx.error(
            entry,
            "an [[api_token]] needs at least one entry in `keys` (slot ids or globs such as \"atlassian/*\")",
        );
        return Vec::new();
    }
    raw.iter().filter_map(|g| glob(ctx, g, providers)).collect()
}

/// The `scopes` of one token: absent is `["rotate"]` (what a token could
/// do before scopes existed); an empty list or an unknown name is refused.
fn scopes(
    ctx: &mut Ctx<'_>,
    raw: Option<&[Spanned<String>]>,
    entry: Range<usize>,
) -> Vec<ApiScope> {
    let Some(raw) = raw else {
        return vec![ApiScope::Rotate];
    };
    if raw.is_empty() {
        ctx.error(
            entry,
            "an [[api_token]] with `scopes = []` could do nothing: give at least one of \
             \"read\", \"rotate\", \"operate\", \"admin\" (or leave `scopes` out for [\"rotate\"])",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for s in raw {
        let v = s.get_ref().trim();
        match ApiScope::ALL.into_iter().find(|a| a.as_str() == v) {
            Some(a) => out.push(a),
            None => {
                let hint = did_you_mean(v, ApiScope::ALL.map(ApiScope::as_str));
                ctx.error(
                    s.span(),
                    format!(
                        "unknown scope {v:?}{hint}: scopes are \"read\", \"rotate\", \"operate\" and \"admin\""
                    ),
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The `psk_ids` of one token. Absent: the first `[[psk]]` alone (the one
/// a call without `?pskId=` gets), so a token never reaches a key it was
/// not given; `["*"]`: every `[[psk]]`; otherwise ids of `[[psk]]`s.
fn psk_grant(ctx: &mut Ctx<'_>, raw: Option<&[Spanned<String>]>, psks: &[PskConfig]) -> PskGrant {
    let Some(raw) = raw else {
        return PskGrant::Only(psks.first().map(|p| p.id.clone()).into_iter().collect());
    };
    if raw.iter().any(|s| s.get_ref().trim() == "*") {
        return PskGrant::All;
    }
    let mut ids = Vec::new();
    for s in raw {
        let v = s.get_ref().trim();
        if psks.iter().any(|p| p.id == v) {
            if !ids.iter().any(|i| i == v) {
                ids.push(v.to_string());
            }
        } else {
            let hint = did_you_mean(v, psks.iter().map(|p| p.id.as_str()));
            ctx.error(
                s.span(),
                format!("`psk_ids` entry {v:?} names no [[psk]]{hint}; write an `id` of a [[psk]], or \"*\" for every one"),
            );
        }
    }
    PskGrant::Only(ids)
}

/// One `keys` entry: `provider/name`, globs allowed, or `*` for every key.
fn glob(ctx: &mut Ctx<'_>, raw: &Spanned<String>, providers: &[ProviderConfig]) -> Option<String> {
    let v = ctx.text(raw, "keys")?.trim().to_string();
    if v.chars().all(|c| c == '*') {
        return Some(v);
    }
    let Some((provider, _)) = v.split_once('/') else {
        ctx.error(
            raw.span(),
            format!(
                "`keys` entry {v:?} never matches: entries match slot ids `provider/name`; \
                 write e.g. \"local/{v}\", \"local/*\" or \"*\""
            ),
        );
        return None;
    };
    let literal = !provider.contains(['*', '?']);
    if literal && !providers.iter().any(|p| p.name == provider) {
        let names = providers.iter().map(|p| p.name.as_str());
        let hint = did_you_mean(provider, names);
        ctx.error(
            raw.span(),
            format!("`keys` entry {v:?} names provider {provider:?}, which is not defined{hint}"),
        );
        return None;
    }
    Some(v)
}

/// False (and an error at `name`) when `name` was seen before.
fn unique(ctx: &mut Ctx<'_>, what: &str, name: &Spanned<String>, seen: &[Spanned<String>]) -> bool {
    let Some(first) = seen.iter().find(|n| n.get_ref() == name.get_ref()) else {
        return true;
    };
    let at = ctx.position(&first.span());
    ctx.error(
        name.span(),
        format!(
            "duplicate {what} {:?} (first defined at {at})",
            name.get_ref()
        ),
    );
    false
}

/// The secret references of `[[psk]]` and `[[api_token]]`, for `keyrot check`.
pub(crate) fn secret_uses<'a>(
    psks: &'a [PskConfig],
    tokens: &'a [ApiTokenConfig],
) -> Vec<SecretUse<'a>> {
    let psks = psks.iter().map(|p| SecretUse {
        owner: format!("psk {:?}", p.id),
        field: "key",
        secret: &p.key,
    });
    let tokens = tokens.iter().map(|t| SecretUse {
        owner: format!("api_token {:?}", t.name),
        field: "token",
        secret: &t.token,
    });
    psks.chain(tokens).collect()
}

/// The rotate API's line in the `keyrot check` summary; None when neither
/// `[[psk]]` nor `[[api_token]]` is configured.
pub(crate) fn summary_line(psks: &[PskConfig], tokens: &[ApiTokenConfig]) -> Option<String> {
    if psks.is_empty() && tokens.is_empty() {
        return None;
    }
    let psk_list = if psks.is_empty() {
        "none (the rotate API is off)".to_string()
    } else {
        let ids: Vec<&str> = psks.iter().map(|p| p.id.as_str()).collect();
        format!("{} (default {})", ids.join(", "), ids[0])
    };
    let token_list = if tokens.is_empty() {
        "none (peer credentials decide)".to_string()
    } else {
        let each: Vec<String> = tokens
            .iter()
            .map(|t| {
                let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
                let psks = match &t.psk_ids {
                    PskGrant::All => "*".to_string(),
                    PskGrant::Only(ids) if ids.is_empty() => "none".to_string(),
                    PskGrant::Only(ids) => ids.join(", "),
                };
                format!(
                    "{} ({}; scopes {}; psks {psks})",
                    t.name,
                    t.keys.join(", "),
                    scopes.join(", ")
                )
            })
            .collect();
        each.join(", ")
    };
    Some(format!(
        "rotate API: psks {psk_list}; api tokens {token_list}"
    ))
}
