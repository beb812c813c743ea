//! The customer's proposed rotate call: parsing its JSON body field by field
//! (so a 400 names the field at fault) and applying it to the [`State`]: a
//! new key with the old key's name and scopes, the old key's expiry
//! shortened if asked (or, in the strict reading, ended at once when the
//! body says nothing about it), and an audit record of what was sent and
//! what became of the old key. Sealing the new secret under a PSK is the
//! route's job.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::error::ApiError;
use super::state::{
    ApiKey, AuditEntry, MAX_LIFETIME, RotateMetadata, State, after, mint_secret, new_id,
};

/// Longest `rotateReason` accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// What a rotate body without `oldKeyExpiresAt` does to the old key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AbsentOldExpiry {
    /// The old key keeps its expiry (the lenient reading).
    #[default]
    Keep,
    /// The old key ends at once: it is revoked at the rotation (the harsh
    /// reading of "absent").
    Revoke,
}

impl FromStr for AbsentOldExpiry {
    type Err = String;

    fn from_str(s: &str) -> Result<AbsentOldExpiry, String> {
        match s {
            "keep" => Ok(AbsentOldExpiry::Keep),
            "revoke" => Ok(AbsentOldExpiry::Revoke),
            other => Err(format!("{other:?}: expected keep or revoke")),
        }
    }
}

impl fmt::Display for AbsentOldExpiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbsentOldExpiry::Keep => "keep",
            AbsentOldExpiry::Revoke => "revoke",
        })
    }
}

/// Who rotates, under which PSK, and by which reading of an absent
/// `oldKeyExpiresAt`.
#[derive(Clone, Debug)]
pub struct RotateContext {
    /// The id of the key that authenticated the call.
    pub actor: String,
    /// The PSK the new secret is sealed under.
    pub psk_id: String,
    /// What an absent `oldKeyExpiresAt` does.
    pub absent_old_expiry: AbsentOldExpiry,
}

/// A parsed rotate body; every field optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RotateRequest {
    /// Requested expiry of the new key (capped at one year from now).
    pub new_key_expires_at: Option<Timestamp>,
    /// Requested (shorter) expiry of the old key.
    pub old_key_expires_at: Option<Timestamp>,
    /// Reason, for the audit list.
    pub rotate_reason: Option<String>,
    /// Whether contacts should be told (recorded only).
    pub notify_contacts: Option<bool>,
    /// Initiator context.
    pub metadata: Option<RotateMetadata>,
}

/// What a rotation produced; the secret is zeroed on drop.
pub struct Rotated {
    /// The new key's id (also the AAD of the sealed secret).
    pub id: String,
    /// The new key's plaintext secret.
    pub secret: Zeroizing<String>,
    /// The new key's expiry.
    pub expires_at: Timestamp,
}

/// Parses a rotate body (empty means `{}`) and checks it against `now`.
/// Unknown fields are ignored, as most JSON APIs do.
pub fn parse(body: &[u8], now: Timestamp) -> Result<RotateRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RotateRequest::default());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::field("body", format!("the request body is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::field("body", "the request body must be a JSON object"))?;
    if let Some(enc) = field::<Map<String, Value>>(obj, "encryption", "encryption")?
        && field::<bool>(&enc, "keyWrap", "encryption.keyWrap")? == Some(true)
    {
        return Err(ApiError::field(
            "encryption.keyWrap",
            "keyWrap is not supported; omit it or send false",
        ));
    }
    let req = RotateRequest {
        new_key_expires_at: time_field(obj, "newKeyExpiresAt")?,
        old_key_expires_at: time_field(obj, "oldKeyExpiresAt")?,
        rotate_reason: field(obj, "rotateReason", "rotateReason")?,
        notify_contacts: field(obj, "notifyContacts", "notifyContacts")?,
        metadata: metadata(obj)?,
    };
    check_times(&req, now)?;
    if req
        .rotate_reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(ApiError::field(
            "rotateReason",
            format!("rotateReason must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(req)
}

/// Refuses expiries that are not in the future.
fn check_times(req: &RotateRequest, now: Timestamp) -> Result<(), ApiError> {
    if req.new_key_expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::field(
            "newKeyExpiresAt",
            format!("newKeyExpiresAt must be later than now ({now})"),
        ));
    }
    if req.old_key_expires_at.is_some_and(|t| t < now) {
        return Err(ApiError::field(
            "oldKeyExpiresAt",
            format!("oldKeyExpiresAt must not be in the past (now is {now})"),
        ));
    }
    Ok(())
}

/// The `metadata` object, its members checked one by one.
fn metadata(obj: &Map<String, Value>) -> Result<Option<RotateMetadata>, ApiError> {
    let Some(m) = field::<Map<String, Value>>(obj, "metadata", "metadata")? else {
        return Ok(None);
    };
    Ok(Some(RotateMetadata {
        rotated_by: field(&m, "rotatedBy", "metadata.rotatedBy")?,
        initiated_from: field(&m, "initiatedFrom", "metadata.initiatedFrom")?,
        rotation_policy_id: field(&m, "rotationPolicyId", "metadata.rotationPolicyId")?,
    }))
}

/// One optional member of `obj`, typed; `null` counts as absent. A wrong
/// type is a 400 naming `path`.
fn field<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<T>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ApiError::field(path, format!("{path} has the wrong type: {e}"))),
    }
}

/// One optional RFC 3339 timestamp member.
fn time_field(obj: &Map<String, Value>, name: &str) -> Result<Option<Timestamp>, ApiError> {
    let Some(raw) = field::<String>(obj, name, name)? else {
        return Ok(None);
    };
    raw.parse::<Timestamp>().map(Some).map_err(|_| {
        ApiError::field(
            name,
            format!("{name} must be an RFC 3339 timestamp such as 2025-12-31T23:59:59Z"),
        )
    })
}

impl State {
    /// Rotates `key_id` of `org_id`: a new key with the same name and scopes
    /// expiring at the requested time capped at one year from `now` (default
    /// one year), the old key's expiry lowered to `oldKeyExpiresAt` (never
    /// raised) — or, when that is absent and `ctx` says so, the old key
    /// revoked at `now` — and an audit record. Unknown or revoked keys are
    /// 404, expired keys 409.
    pub fn rotate(
        &mut self,
        org_id: &str,
        key_id: &str,
        req: &RotateRequest,
        ctx: &RotateContext,
        now: Timestamp,
    ) -> Result<Rotated, ApiError> {
        let old = self
            .org_mut(org_id)?
            .api_keys
            .iter_mut()
            .find(|k| k.id == key_id && k.revoked_at.is_none())
            .ok_or_else(|| ApiError::not_found(format!("API key {key_id} not found or revoked")))?;
        if old.expires_at <= now {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "KEY_EXPIRED",
                format!("API key {key_id} has already expired; create a new key instead"),
            ));
        }
        let cap = after(now, MAX_LIFETIME);
        let expires_at = req.new_key_expires_at.map_or(cap, |t| t.min(cap));
        match req.old_key_expires_at {
            Some(t) => old.expires_at = old.expires_at.min(t),
            None if ctx.absent_old_expiry == AbsentOldExpiry::Revoke => {
                old.revoked_at = Some(now);
            }
            None => {}
        }
        let old_expiry = old.expires_at;
        let old_revoked = old.revoked_at;
        let (secret, secret_sha256) = mint_secret();
        let new = ApiKey {
            id: new_id(),
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            created_by: req
                .metadata
                .as_ref()
                .and_then(|m| m.rotated_by.clone())
                .unwrap_or_else(|| old.created_by.clone()),
            created_at: now,
            expires_at,
            last_active_at: None,
            revoked_at: None,
            secret_sha256,
            rotated_from: Some(key_id.to_string()),
        };
        let id = new.id.clone();
        self.org_mut(org_id)?.api_keys.push(new);
        self.push_audit(AuditEntry {
            at: now,
            action: "api-key.rotated".into(),
            org_id: org_id.to_string(),
            api_key_id: key_id.to_string(),
            actor_key_id: Some(ctx.actor.clone()),
            new_api_key_id: Some(id.clone()),
            rotate_reason: req.rotate_reason.clone(),
            notify_contacts: req.notify_contacts,
            metadata: req.metadata.clone(),
            old_key_expires_at_sent: req.old_key_expires_at,
            old_key_expires_at_absent: Some(req.old_key_expires_at.is_none()),
            old_key_expires_at: Some(old_expiry),
            old_key_revoked_at: old_revoked,
            old_key_ends_at: Some(old_revoked.map_or(old_expiry, |r| r.min(old_expiry))),
            new_key_expires_at: Some(expires_at),
            psk_id: Some(ctx.psk_id.clone()),
            ..AuditEntry::default()
        });
        Ok(Rotated {
            id,
            secret,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn parses_the_seed_example() {
        let body = br#"{"newKeyExpiresAt":"2026-12-31T23:59:59Z","oldKeyExpiresAt":"2026-02-01T00:00:00Z",
            "rotateReason":"Scheduled","notifyContacts":true,
            "metadata":{"rotatedBy":"user@email.com","initiatedFrom":"CI/CD Automation","rotationPolicyId":"p"},
            "encryption":{"keyWrap":false},"unknown":1}"#;
        let r = parse(body, now()).unwrap();
        assert_eq!(r.rotate_reason.as_deref(), Some("Scheduled"));
        assert_eq!(r.notify_contacts, Some(true));
        assert_eq!(
            r.metadata.unwrap().initiated_from.as_deref(),
            Some("CI/CD Automation")
        );
        assert_eq!(
            r.old_key_expires_at,
            Some("2026-02-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(parse(b"", now()).unwrap(), RotateRequest::default());
    }

    #[test]
    fn absent_old_expiry_reads_keep_and_revoke_only() {
        assert_eq!("keep".parse(), Ok(AbsentOldExpiry::Keep));
        assert_eq!("revoke".parse(), Ok(AbsentOldExpiry::Revoke));
        assert!("Revoke".parse::<AbsentOldExpiry>().is_err());
        assert_eq!(AbsentOldExpiry::Revoke.to_string(), "revoke");
    }

    #[test]
    fn errors_name_the_field() {
        let f = |b: &[u8]| parse(b, now()).unwrap_err().field.unwrap();
        assert_eq!(
            f(br#"{"oldKeyExpiresAt":"2025-01-01T00:00:00Z"}"#),
            "oldKeyExpiresAt"
        );
        assert_eq!(
            f(br#"{"newKeyExpiresAt":"2025-01-01T00:00:00Z"}"#),
            "newKeyExpiresAt"
        );
        assert_eq!(f(br#"{"newKeyExpiresAt":"tomorrow"}"#), "newKeyExpiresAt");
        assert_eq!(f(br#"{"notifyContacts":"yes"}"#), "notifyContacts");
        assert_eq!(f(br#"{"metadata":{"rotatedBy":5}}"#), "metadata.rotatedBy");
        assert_eq!(
            f(br#"{"encryption":{"keyWrap":true}}"#),
            "encryption.keyWrap"
        );
        assert_eq!(f(b"[1]"), "body");
        assert_eq!(f(b"{"), "body");
    }
}
