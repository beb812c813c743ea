//! Bodies of the customer's rotate endpoint,
//! `PATCH /orgs/{orgId}/api-keys/rotate/{apiKeyId}` (the seed's request and
//! response shape, camelCase), and of `GET /v1/rotations/{id}/encrypted-secret`.
//! The only secret here is [`SealedKey::encrypted_secret`], sealed under
//! the caller's pre-shared key; its `Debug` output is redacted.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The request body. Every field is optional; unknown fields are refused.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateKeyBody {
    /// Expiry the new key gets (RFC 3339); default: the policy's lifetime.
    #[serde(default)]
    pub new_key_expires_at: Option<Timestamp>,
    /// When the old key is revoked (RFC 3339); default: the policy's overlap.
    #[serde(default)]
    pub old_key_expires_at: Option<Timestamp>,
    /// Human-readable reason, recorded and audited.
    #[serde(default)]
    pub rotate_reason: Option<String>,
    /// Also tell the policy's security contacts.
    #[serde(default)]
    pub notify_contacts: Option<bool>,
    /// Who, from where, under which policy.
    #[serde(default)]
    pub metadata: Option<RotateMetadata>,
    /// How the secret is returned.
    #[serde(default)]
    pub encryption: Option<EncryptionRequest>,
}

/// `metadata` of [`RotateKeyBody`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateMetadata {
    /// Identity of the user or service that asked.
    #[serde(default)]
    pub rotated_by: Option<String>,
    /// Manual, UI, API, Terraform, CI/CD, ...
    #[serde(default)]
    pub initiated_from: Option<String>,
    /// The caller's rotation policy id, recorded with the rotation.
    #[serde(default)]
    pub rotation_policy_id: Option<String>,
}

/// `encryption` of [`RotateKeyBody`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EncryptionRequest {
    /// Wrap a data key under the PSK instead of sealing directly: not
    /// supported (only `false` is accepted).
    #[serde(default)]
    pub key_wrap: Option<bool>,
}

/// `200 OK`: `{"data": {...}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealedKeyResponse {
    /// The new key.
    pub data: SealedKey,
}

/// The new key and its sealed secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedKey {
    /// The new key's id at the provider (also the AAD of the envelope).
    pub id: String,
    /// base64(nonce || ciphertext || tag), AES-256-GCM under the PSK.
    pub encrypted_secret: String,
    /// How it is sealed.
    pub encryption: EncryptionInfo,
    /// When the new key expires, if it does.
    pub key_expires_at: Option<Timestamp>,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey")
            .field("id", &self.id)
            .field("encrypted_secret", &"[redacted]")
            .field("encryption", &self.encryption)
            .field("key_expires_at", &self.key_expires_at)
            .finish()
    }
}

/// `encryption` of [`SealedKey`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionInfo {
    /// Always `AES-256-GCM`.
    pub algorithm: String,
    /// The PSK the secret is sealed under.
    pub psk_id: String,
    /// Always false: the secret is sealed directly under the PSK.
    pub key_wrap: bool,
}

/// `202 Accepted`: the rotation runs; where to follow it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AcceptedResponse {
    /// The rotation.
    pub data: Accepted,
}

/// `data` of [`AcceptedResponse`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The rotation's id.
    pub rotation_id: String,
    /// Its status resource, `/v1/rotations/{id}` (also the `Location`).
    pub status: String,
}
