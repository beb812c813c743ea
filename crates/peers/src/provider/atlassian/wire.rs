//! The Admin API's JSON, as the Atlassian provider reads and writes it: a
//! page of org API keys (`data`, `links.next`) mapped to [`KeyInfo`], and the
//! proposed rotate call's request body and sealed response. Field names are
//! those of `docs/sandbox.md`; unknown fields are ignored.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::provider::IssueRequest;
use keyrot_core::model::KeyInfo;

/// One page of `GET /orgs/{orgId}/api-keys`.
#[derive(Debug, Deserialize)]
pub(super) struct Page {
    /// The keys on this page.
    #[serde(default)]
    pub data: Vec<ListedKey>,
    /// Pagination links.
    #[serde(default)]
    pub links: Option<Links>,
}

/// `links` of a page.
#[derive(Debug, Deserialize)]
pub(super) struct Links {
    /// Cursor token (or full URL) of the next page; absent on the last.
    #[serde(default)]
    pub next: Option<String>,
}

/// One org API key as listed (metadata only).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListedKey {
    /// Key id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Display name, as some Admin API lists call it.
    #[serde(default)]
    pub label: Option<String>,
    /// Granted scopes; empty or absent for an unscoped key.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Creator: an email string, or an object with `email`/`accountId`.
    #[serde(default)]
    pub created_by: Option<Value>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Expiry.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Last authenticated use; an unreadable time is `None` (unknown),
    /// not a failed listing.
    #[serde(default, deserialize_with = "lenient_time")]
    pub last_active_at: Option<Timestamp>,
    /// `ACTIVE`, `EXPIRED` or `REVOKED`.
    #[serde(default)]
    pub status: Option<String>,
}

impl ListedKey {
    /// The key as keyrot sees it, or `None` for a revoked or expired key.
    pub fn into_info(self) -> Option<KeyInfo> {
        let dead = self.status.as_deref().is_some_and(|s| {
            s.eq_ignore_ascii_case("REVOKED") || s.eq_ignore_ascii_case("EXPIRED")
        });
        if dead {
            return None;
        }
        let created_by = self.created_by.as_ref().and_then(creator);
        Some(KeyInfo {
            name: self.name.or(self.label).unwrap_or_default(),
            id: self.id,
            scopes: self.scopes.unwrap_or_default(),
            created_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_active_at,
            tags: BTreeMap::new(),
        })
    }
}

/// A time that is not an RFC 3339 string (a number, garbage) reads as
/// `None`: the caller treats it as unknown.
fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok()))
}

/// `createdBy` as a string, or its `email`/`accountId`/`name` member.
fn creator(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => ["email", "accountId", "name"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map(str::to_string),
        _ => None,
    }
}

/// The rotate response: `{"data": {...}}`.
#[derive(Debug, Deserialize)]
pub(super) struct RotateResponse {
    /// The new key.
    pub data: RotatedKey,
}

/// The new key of a rotate response, its secret sealed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RotatedKey {
    /// New key id (the AAD of the sealed secret).
    pub id: String,
    /// base64 of nonce || ciphertext || tag.
    pub encrypted_secret: String,
    /// How it is sealed.
    pub encryption: Encryption,
    /// The new key's expiry.
    #[serde(default)]
    pub key_expires_at: Option<Timestamp>,
}

/// `encryption` of a rotate response.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Encryption {
    /// Must be `AES-256-GCM`.
    pub algorithm: String,
    /// The PSK the secret is sealed under.
    #[serde(default)]
    pub psk_id: Option<String>,
    /// Must be false (absent counts as false).
    #[serde(default)]
    pub key_wrap: bool,
}

/// The rotate request body: every field of the seed's request, filled from
/// the rotation: the new key's expiry (when the policy sets one), the old
/// key's end said explicitly (never left out: a server may read an absent
/// `oldKeyExpiresAt` as "the old key ends now"), the policy's or caller's
/// reason, whether the caller asked for contacts to be told, and who, from
/// where and under which policy.
pub(super) fn rotate_body(req: &IssueRequest) -> Value {
    let mut body = json!({
        "rotateReason": req.reason,
        "notifyContacts": req.notify_contacts,
        "metadata": {
            "rotatedBy": req.rotated_by,
            "initiatedFrom": req.initiated_from,
            "rotationPolicyId": req.policy_id,
        },
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(t) = req.expires_at {
            obj.insert("newKeyExpiresAt".into(), json!(t.to_string()));
        }
        if let Some(t) = req.old_key_expires_at {
            obj.insert("oldKeyExpiresAt".into(), json!(t.to_string()));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_map_and_dead_ones_are_skipped() {
        let page: Page = serde_json::from_value(json!({
            "data": [
                {"id": "a", "name": "ci", "scopes": ["read:x"], "createdBy": "x@example.com",
                 "createdAt": "2026-01-01T00:00:00Z", "expiresAt": "2027-01-01T00:00:00Z",
                 "lastActiveAt": null, "status": "ACTIVE", "extra": 1},
                {"id": "b", "label": "old", "createdBy": {"accountId": "acc-1"}, "status": "REVOKED"},
                {"id": "c", "label": "lbl", "createdBy": {"accountId": "acc-2"}, "status": "expired"},
                {"id": "d", "label": "lbl", "createdBy": {"email": "e@example.com", "accountId": "x"}}
            ],
            "links": {}
        }))
        .unwrap();
        assert!(page.links.unwrap().next.is_none());
        let infos: Vec<KeyInfo> = page
            .data
            .into_iter()
            .filter_map(ListedKey::into_info)
            .collect();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].name, "ci");
        assert_eq!(infos[0].scopes, vec!["read:x"]);
        assert_eq!(infos[0].created_by.as_deref(), Some("x@example.com"));
        assert_eq!(
            infos[0].expires_at,
            Some("2027-01-01T00:00:00Z".parse().unwrap())
        );
        assert!(infos[0].last_used_at.is_none());
        assert_eq!((infos[1].id.as_str(), infos[1].name.as_str()), ("d", "lbl"));
        assert_eq!(infos[1].created_by.as_deref(), Some("e@example.com"));
        assert!(infos[1].scopes.is_empty());
    }

    #[test]
    fn rotate_body_carries_every_field_and_the_old_keys_end() {
        let t: Timestamp = "2026-12-31T23:59:59Z".parse().unwrap();
        let old: Timestamp = "2026-08-31T00:00:00Z".parse().unwrap();
        let req = IssueRequest {
            tag: "0195-rot".into(),
            expires_at: Some(t),
            replaces: Some("old".into()),
            old_key_expires_at: Some(old),
            reason: "Scheduled key rotation".into(),
            rotated_by: "alice".into(),
            initiated_from: "cli".into(),
            policy_id: "standard".into(),
            notify_contacts: true,
            ..Default::default()
        };
        let b = rotate_body(&req);
        assert_eq!(b["newKeyExpiresAt"], "2026-12-31T23:59:59Z");
        assert_eq!(b["oldKeyExpiresAt"], "2026-08-31T00:00:00Z");
        assert_eq!(b["rotateReason"], "Scheduled key rotation");
        assert_eq!(b["notifyContacts"], true);
        assert_eq!(
            b["metadata"],
            json!({"rotatedBy": "alice", "initiatedFrom": "cli", "rotationPolicyId": "standard"})
        );
        let bare = rotate_body(&IssueRequest::default());
        assert!(bare.get("newKeyExpiresAt").is_none());
        assert!(bare.get("oldKeyExpiresAt").is_none());
    }
}
