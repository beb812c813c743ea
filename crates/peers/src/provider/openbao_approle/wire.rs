//! The AppRole API's JSON, as the `openbao-approle` provider reads and
//! writes it, and a looked-up secret-id turned into a key.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::CREATED_BY_KEY;
use keyrot_core::model::KeyInfo;

/// A `LIST` answer.
#[derive(Deserialize)]
pub(super) struct ListAnswer {
    /// Its data.
    pub(super) data: ListData,
}

/// The names a `LIST` returned.
#[derive(Deserialize)]
pub(super) struct ListData {
    /// Role names or accessors.
    #[serde(default)]
    pub(super) keys: Vec<String>,
}

/// A secret-id lookup answer (by accessor or by value).
#[derive(Deserialize)]
pub(super) struct LookupAnswer {
    /// The secret-id's properties.
    pub(super) data: Option<SecretIdEntry>,
}

/// What keyrot reads of a secret-id (never the secret-id itself).
#[derive(Deserialize)]
pub(super) struct SecretIdEntry {
    /// Its accessor.
    pub(super) secret_id_accessor: String,
    /// RFC 3339.
    #[serde(default)]
    pub(super) creation_time: Option<String>,
    /// RFC 3339; year 1 when it never expires.
    #[serde(default)]
    pub(super) expiration_time: Option<String>,
    /// Its TTL in seconds (0: none).
    #[serde(default)]
    pub(super) secret_id_ttl: u64,
    /// Logins left (0: unlimited).
    #[serde(default)]
    pub(super) secret_id_num_uses: u64,
    /// Metadata given at creation.
    #[serde(default)]
    pub(super) metadata: Option<BTreeMap<String, String>>,
}

/// `POST .../secret-id` answer.
#[derive(Deserialize)]
pub(super) struct IssueAnswer {
    /// The new secret-id.
    pub(super) data: IssueData,
}

/// The new secret-id and its accessor.
#[derive(Deserialize)]
pub(super) struct IssueData {
    /// The secret-id: straight into a `SecretString`.
    pub(super) secret_id: SecretString,
    /// Its accessor.
    pub(super) secret_id_accessor: String,
    /// Its TTL in seconds (0: none).
    #[serde(default)]
    pub(super) secret_id_ttl: u64,
}

/// `POST .../secret-id` body.
#[derive(Serialize)]
pub(super) struct IssueBody<'a> {
    /// Metadata as a JSON object in a string (what the API takes).
    pub(super) metadata: &'a str,
    /// TTL in seconds; absent: the role's `secret_id_ttl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ttl: Option<i64>,
}

/// `GET .../role-id` answer.
#[derive(Deserialize)]
pub(super) struct RoleIdAnswer {
    /// Its data.
    pub(super) data: RoleIdData,
}

/// The role's role-id.
#[derive(Deserialize)]
pub(super) struct RoleIdData {
    /// Role-id (not a secret by itself, but never logged).
    pub(super) role_id: String,
}

/// An AppRole login answer.
#[derive(Deserialize)]
pub(super) struct LoginAnswer {
    /// Absent when the server gave no token.
    pub(super) auth: Option<LoginAuth>,
}

/// The token a verification login got.
#[derive(Deserialize)]
pub(super) struct LoginAuth {
    /// The token: straight into a `SecretString`.
    pub(super) client_token: SecretString,
}

/// `{"secret_id_accessor": ..}`.
#[derive(Serialize)]
pub(super) struct AccessorBody<'a> {
    /// The accessor.
    pub(super) secret_id_accessor: &'a str,
}

/// `{"secret_id": ..}`, serialised into a wiped buffer.
#[derive(Serialize)]
pub(super) struct SecretIdBody<'a> {
    /// The secret-id.
    pub(super) secret_id: &'a str,
}

/// An AppRole login body, serialised into a wiped buffer.
#[derive(Serialize)]
pub(super) struct LoginBody<'a> {
    /// The role's role-id.
    pub(super) role_id: &'a str,
    /// The secret-id being verified.
    pub(super) secret_id: &'a str,
}

/// `auth/token/revoke` body, serialised into a wiped buffer.
#[derive(Serialize)]
pub(super) struct TokenBody<'a> {
    /// The token to revoke.
    pub(super) token: &'a str,
}

/// A looked-up secret-id as a key; `None` once it has expired.
pub(super) fn key_info(role: &str, e: SecretIdEntry, now: Timestamp) -> Option<KeyInfo> {
    // Year 1 (`0001-01-01T00:00:00Z`) means "never".
    let expires_at = e
        .expiration_time
        .as_deref()
        .and_then(timestamp)
        .filter(|t| e.secret_id_ttl > 0 && t.as_second() > 0);
    if expires_at.is_some_and(|t| t <= now) {
        return None;
    }
    let tags = e.metadata.unwrap_or_default();
    Some(KeyInfo {
        id: format!("{role}/{}", e.secret_id_accessor),
        name: role.to_string(),
        scopes: Vec::new(),
        created_by: tags.get(CREATED_BY_KEY).cloned(),
        created_at: e.creation_time.as_deref().and_then(timestamp),
        expires_at,
        last_used_at: None,
        tags,
    })
}

/// An RFC 3339 time as OpenBao writes it; `None` (the field is left
/// empty) when it is not one, rather than failing the whole listing.
fn timestamp(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// `now` plus a TTL in seconds; `None` for 0 (no expiry) or out of range.
pub(super) fn expiry(now: Timestamp, ttl_secs: u64) -> Option<Timestamp> {
    let secs = i64::try_from(ttl_secs).ok().filter(|s| *s > 0)?;
    now.checked_add(SignedDuration::from_secs(secs)).ok()
}
