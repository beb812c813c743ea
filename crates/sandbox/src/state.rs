//! The sandbox's whole world as one serialisable value: organisations, their
//! admin API keys (secrets only as SHA-256), users' API tokens, and the audit
//! list; plus the pure operations on it — mint, authenticate, list a page,
//! revoke. Every operation takes `now`; nothing here reads a clock, touches a
//! file or knows about HTTP beyond returning an [`ApiError`].

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::ApiError;
use super::idempotency::{REPLAY_WINDOW, Remembered};
use keyrot_core::crypto;

/// The longest life a key may get: 365 days, as on the real console.
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 365);
/// A key created without an expiry lives one week (the console's default).
pub const DEFAULT_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 7);
/// Page size when `?limit=` is absent.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest `?limit=` accepted.
pub const MAX_LIMIT: usize = 100;
/// Format version written into the state file.
pub const STATE_VERSION: u32 = 1;

/// Everything the sandbox remembers; persisted as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// State file format version ([`STATE_VERSION`]).
    #[serde(default)]
    pub version: u32,
    /// Organisations by id.
    #[serde(default)]
    pub orgs: BTreeMap<String, Org>,
    /// Every create, rotate and revoke, oldest first.
    #[serde(default)]
    pub audit: Vec<AuditEntry>,
    /// Rotate responses kept for `Idempotency-Key` replay (sealed secrets only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idempotent_rotations: Vec<Remembered>,
    /// How lazily `lastActiveAt` moves (the server's mode, not persisted).
    #[serde(skip)]
    pub last_active_granularity: jiff::SignedDuration,
}

/// One organisation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    /// Admin API keys, in creation order (the list order).
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// Users' API tokens, in creation order.
    #[serde(default)]
    pub api_tokens: Vec<UserToken>,
}

/// One org admin API key. Its secret is kept only as a SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Key id (UUIDv7).
    pub id: String,
    /// Display name (label).
    pub name: String,
    /// Granted scopes; empty means an unscoped (legacy, all-powerful) key.
    pub scopes: Vec<String>,
    /// Who created it (email).
    pub created_by: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// Last authenticated use, if any.
    pub last_active_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// Lower-case hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// The key this one replaced through rotate, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
}

/// A user's API token, as the org's token list shows it (no secret at all).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserToken {
    /// Token id.
    pub id: String,
    /// The user's label for it.
    pub label: String,
    /// The owning user's account id.
    pub account_id: String,
    /// The owning user's email.
    pub email: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// Last use, if any.
    pub last_active_at: Option<Timestamp>,
}

/// Extra context a rotate call may carry (the customer's proposal).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateMetadata {
    /// Who or what triggered the rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_by: Option<String>,
    /// From where (manual, UI, API, Terraform, CI/CD ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_from: Option<String>,
    /// An org rotation policy the call links to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy_id: Option<String>,
}

/// One audit record. Fields that do not apply to an action are absent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// 1-based sequence number.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// `api-key.created`, `api-key.rotated` or `api-key.revoked`.
    pub action: String,
    /// The organisation.
    pub org_id: String,
    /// The key acted on (the old key, for a rotation).
    pub api_key_id: String,
    /// The key that authenticated the call (absent for admin endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_key_id: Option<String>,
    /// The key a rotation created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_api_key_id: Option<String>,
    /// `rotateReason` as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_reason: Option<String>,
    /// `notifyContacts` as sent (recorded only: the sandbox sends no mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_contacts: Option<bool>,
    /// `metadata` as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RotateMetadata>,
    /// `oldKeyExpiresAt` as sent (absent when the body had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_expires_at_sent: Option<Timestamp>,
    /// Whether the rotate body lacked `oldKeyExpiresAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_expires_at_absent: Option<bool>,
    /// The old key's expiry after the rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_expires_at: Option<Timestamp>,
    /// When the rotation revoked the old key (an absent `oldKeyExpiresAt`
    /// under `--absent-old-expiry revoke`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_revoked_at: Option<Timestamp>,
    /// When the old key stops working: its revocation or its expiry,
    /// whichever is earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_ends_at: Option<Timestamp>,
    /// The new key's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key_expires_at: Option<Timestamp>,
    /// The PSK the new secret was sealed under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk_id: Option<String>,
}

/// What a call needs the authenticating key to be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// GET endpoints: any `read:` scope.
    Read,
    /// Rotate: any `write:` scope.
    Write,
    /// Revoke: any `write:` or `delete:` scope.
    Revoke,
}

impl Access {
    /// Whether `scopes` grant this access; an unscoped key may do anything.
    pub fn allowed_by(self, scopes: &[String]) -> bool {
        let prefixes: &[&str] = match self {
            Access::Read => &["read:"],
            Access::Write => &["write:"],
            Access::Revoke => &["write:", "delete:"],
        };
        scopes.is_empty()
            || scopes
                .iter()
                .any(|s| prefixes.iter().any(|p| s.starts_with(p)))
    }

    /// The scope family named in a 403.
    fn wanted(self) -> &'static str {
        match self {
            Access::Read => "a read:... scope",
            Access::Write => "a write:... scope",
            Access::Revoke => "a write:... or delete:... scope",
        }
    }
}

impl ApiKey {
    /// `ACTIVE`, `EXPIRED` or `REVOKED` at `now`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        if self.revoked_at.is_some() {
            "REVOKED"
        } else if self.expires_at <= now {
            "EXPIRED"
        } else {
            "ACTIVE"
        }
    }

    /// The list view: metadata only, never the secret or its hash.
    pub fn view(&self, now: Timestamp) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "scopes": self.scopes,
            "createdBy": self.created_by,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "lastActiveAt": self.last_active_at,
            "status": self.status(now),
        })
    }
}

impl UserToken {
    /// The list view.
    pub fn view(&self, now: Timestamp) -> serde_json::Value {
        let status = if self.expires_at <= now {
            "EXPIRED"
        } else {
            "ACTIVE"
        };
        serde_json::json!({
            "id": self.id,
            "label": self.label,
            "status": status,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "lastActiveAt": self.last_active_at,
            "user": {"accountId": self.account_id, "email": self.email},
        })
    }
}

/// A fresh secret and its SHA-256 hex. The secret is zeroed on drop.
pub fn mint_secret() -> (Zeroizing<String>, String) {
    let bytes = Zeroizing::new(rand::random::<[u8; 32]>());
    let secret = Zeroizing::new(format!("ATSBX{}", crypto::hex_encode(&bytes[..])));
    let hash = crypto::sha256_hex(secret.as_bytes());
    (secret, hash)
}

/// `now + d`, saturating at the largest timestamp instead of overflowing.
pub fn after(now: Timestamp, d: SignedDuration) -> Timestamp {
    now.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// A new time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl State {
    /// The organisation, or 404.
    pub fn org(&self, org_id: &str) -> Result<&Org, ApiError> {
        self.orgs
            .get(org_id)
            .ok_or_else(|| ApiError::not_found(format!("organization {org_id} not found")))
    }

    /// The organisation, mutably, or 404.
    pub fn org_mut(&mut self, org_id: &str) -> Result<&mut Org, ApiError> {
        self.orgs
            .get_mut(org_id)
            .ok_or_else(|| ApiError::not_found(format!("organization {org_id} not found")))
    }

    /// Finds the org key whose secret hashes to `secret_sha256`, records the
    /// use in its `lastActiveAt`, and checks it may do `access`. Returns the
    /// key's id. Unknown, revoked and expired keys are 401; a key lacking the
    /// scope is 403 (its use is still recorded).
    pub fn authenticate(
        &mut self,
        org_id: &str,
        secret_sha256: &str,
        access: Access,
        now: Timestamp,
    ) -> Result<String, ApiError> {
        let key = self
            .orgs
            .get_mut(org_id)
            .and_then(|o| {
                o.api_keys
                    .iter_mut()
                    .find(|k| k.secret_sha256 == secret_sha256)
            })
            .ok_or_else(|| {
                ApiError::unauthorized(format!(
                    "the bearer token is not an API key of organization {org_id}"
                ))
            })?;
        match key.status(now) {
            "REVOKED" => return Err(ApiError::unauthorized("the API key has been revoked")),
            "EXPIRED" => return Err(ApiError::unauthorized("the API key has expired")),
            _ => {}
        }
        // Lazily, as real APIs do: only when the recorded use is at least
        // the granularity old (or there is none).
        if key
            .last_active_at
            .is_none_or(|t| now.duration_since(t) >= self.last_active_granularity)
        {
            key.last_active_at = Some(now);
        }
        if !access.allowed_by(&key.scopes) {
            return Err(ApiError::forbidden(format!(
                "API key {} lacks the scope this call needs: {}",
                key.id,
                access.wanted()
            )));
        }
        Ok(key.id.clone())
    }

    /// Adds a key to `org_id` (creating the org) and audits it.
    pub fn insert_key(&mut self, org_id: &str, key: ApiKey, now: Timestamp) {
        self.push_audit(AuditEntry {
            at: now,
            action: "api-key.created".into(),
            org_id: org_id.to_string(),
            api_key_id: key.id.clone(),
            new_key_expires_at: Some(key.expires_at),
            ..AuditEntry::default()
        });
        self.orgs
            .entry(org_id.to_string())
            .or_default()
            .api_keys
            .push(key);
    }

    /// Revokes an active or expired key. Unknown or already revoked: 404.
    pub fn revoke(
        &mut self,
        org_id: &str,
        key_id: &str,
        actor: Option<String>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let key = self
            .org_mut(org_id)?
            .api_keys
            .iter_mut()
            .find(|k| k.id == key_id && k.revoked_at.is_none())
            .ok_or_else(|| {
                ApiError::not_found(format!("API key {key_id} not found or already revoked"))
            })?;
        key.revoked_at = Some(now);
        self.push_audit(AuditEntry {
            at: now,
            action: "api-key.revoked".into(),
            org_id: org_id.to_string(),
            api_key_id: key_id.to_string(),
            actor_key_id: actor,
            ..AuditEntry::default()
        });
        Ok(())
    }

    /// Appends to the audit list, numbering the entry.
    pub fn push_audit(&mut self, mut entry: AuditEntry) {
        entry.seq = self.audit.last().map_or(1, |e| e.seq + 1);
        self.audit.push(entry);
    }

    /// The key with `id` in any org, if any.
    pub fn key_anywhere(&self, id: &str) -> Option<&ApiKey> {
        self.orgs
            .values()
            .flat_map(|o| o.api_keys.iter())
            .find(|k| k.id == id)
    }
}

/// Cuts one page out of `items` (already in list order). `cursor` is the
/// opaque token a previous page returned as `links.next`; `limit` the raw
/// `?limit=`. Returns the page and the next cursor, if more items follow.
pub fn page<'a, T>(
    items: &'a [T],
    id_of: impl Fn(&T) -> &str,
    cursor: Option<&str>,
    limit: Option<&str>,
) -> Result<(&'a [T], Option<String>), ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let start = match cursor {
        None => 0,
        Some(token) => {
            let after = decode_cursor(token)
                .ok_or_else(|| ApiError::field("cursor", "cursor is not one this server issued"))?;
            items
                .iter()
                .position(|i| id_of(i) == after)
                .map(|p| p + 1)
                .ok_or_else(|| {
                    ApiError::field("cursor", "cursor points at an item that no longer exists")
                })?
        }
    };
    let rest = items.get(start..).unwrap_or_default();
    let shown = &rest[..rest.len().min(limit)];
    let next = match (shown.last(), rest.len() > shown.len()) {
        (Some(last), true) => Some(encode_cursor(id_of(last))),
        _ => None,
    };
    Ok((shown, next))
}

/// The opaque cursor meaning "after item `id`".
fn encode_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("after:{id}"))
}

/// The item id inside a cursor, if it is one of ours.
fn decode_cursor(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("after:")
        .map(str::to_string)
}

impl State {
    /// Forgets responses older than the replay window, then returns the
    /// one remembered for `key` on this org and old key, if any.
    pub fn replay(
        &mut self,
        org_id: &str,
        api_key_id: &str,
        key: &str,
        now: Timestamp,
    ) -> Option<Remembered> {
        self.idempotent_rotations
            .retain(|r| now.duration_since(r.at) < REPLAY_WINDOW);
        self.idempotent_rotations
            .iter()
            .find(|r| r.key == key && r.org_id == org_id && r.api_key_id == api_key_id)
            .cloned()
    }

    /// Remembers a rotate response for replay.
    pub fn remember(&mut self, r: Remembered) {
        self.idempotent_rotations.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(key: &str, at: Timestamp) -> Remembered {
        Remembered {
            key: key.into(),
            org_id: "o".into(),
            api_key_id: "old".into(),
            at,
            new_api_key_id: "new".into(),
            encrypted_secret: "c2VhbGVk".into(),
            psk_id: "p".into(),
            key_expires_at: at,
        }
    }

    #[test]
    fn replays_within_the_window_only_and_for_the_same_key() {
        let t0: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let mut st = State::default();
        st.remember(remembered("k1", t0));
        let later = t0 + SignedDuration::from_hours(23);
        assert!(st.replay("o", "old", "k1", later).is_some());
        assert!(st.replay("o", "other", "k1", later).is_none());
        assert!(st.replay("x", "old", "k1", later).is_none());
        assert!(st.replay("o", "old", "k2", later).is_none());
        let expired = t0 + REPLAY_WINDOW;
        assert!(st.replay("o", "old", "k1", expired).is_none());
        assert!(st.idempotent_rotations.is_empty());
    }

    #[test]
    fn scopes_decide_access() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Access::Write.allowed_by(&[]));
        assert!(Access::Read.allowed_by(&s(&["read:jira-work"])));
        assert!(!Access::Write.allowed_by(&s(&["read:*"])));
        assert!(Access::Write.allowed_by(&s(&["read:x", "write:api-keys:admin"])));
        assert!(Access::Revoke.allowed_by(&s(&["delete:*"])));
        assert!(!Access::Read.allowed_by(&s(&["delete:*"])));
    }

    #[test]
    fn pages_walk_every_item_once() {
        let items: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let (p1, c1) = page(&items, |s| s, None, Some("2")).unwrap();
        assert_eq!(p1, &items[0..2]);
        let (p2, c2) = page(&items, |s| s, c1.as_deref(), Some("2")).unwrap();
        assert_eq!(p2, &items[2..4]);
        let (p3, c3) = page(&items, |s| s, c2.as_deref(), Some("2")).unwrap();
        assert_eq!(p3, &items[4..5]);
        assert!(c3.is_none());
        let err = page(&items, |s| s, None, Some("0")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("limit"));
        let err = page(&items, |s| s, Some("!!"), None).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("cursor"));
    }
}
