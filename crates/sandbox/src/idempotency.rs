//! keyrot's extension to the proposed rotate call: an `Idempotency-Key`
//! request header. The first rotate with a key records its response (the
//! new key's id, the *sealed* secret, the PSK id and the expiry — never the
//! plaintext) in the state; a repeat with the same key for the same org and
//! old key within [`REPLAY_WINDOW`] gets that same response instead of a
//! second rotation, so a client that crashed after sending the request can
//! recover the one-time secret by repeating it.

use axum::http::HeaderMap;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::ApiError;

/// The request header.
pub const HEADER: &str = "Idempotency-Key";
/// How long a response is replayed.
pub const REPLAY_WINDOW: SignedDuration = SignedDuration::from_hours(24);
/// Longest key accepted, in bytes.
const MAX_KEY_LEN: usize = 255;

/// One remembered rotate response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remembered {
    /// The `Idempotency-Key` as sent.
    pub key: String,
    /// The organisation.
    pub org_id: String,
    /// The key that was rotated.
    pub api_key_id: String,
    /// When the first request was answered.
    pub at: Timestamp,
    /// The new key's id.
    pub new_api_key_id: String,
    /// base64 of the sealed secret, exactly as first returned.
    pub encrypted_secret: String,
    /// The PSK it is sealed under.
    pub psk_id: String,
    /// The new key's expiry.
    pub key_expires_at: Timestamp,
}

impl Remembered {
    /// The rotate response body.
    pub fn response(&self) -> Value {
        json!({
            "data": {
                "id": self.new_api_key_id,
                "encryptedSecret": self.encrypted_secret,
                "encryption": {
                    "algorithm": "AES-256-GCM",
                    "pskId": self.psk_id,
                    "keyWrap": false,
                },
                "keyExpiresAt": self.key_expires_at,
            }
        })
    }
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII
/// characters, else a 400 naming it.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::field(
            HEADER,
            format!("{HEADER} must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )
    };
    let key = raw.to_str().map_err(|_| bad())?.trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(key_of(&h).unwrap(), None);
        h.insert(HEADER, "0195-abc".parse().unwrap());
        assert_eq!(key_of(&h).unwrap().as_deref(), Some("0195-abc"));
        h.insert(HEADER, "a b".parse().unwrap());
        assert_eq!(key_of(&h).unwrap_err().field.as_deref(), Some(HEADER));
        h.insert(HEADER, "x".repeat(256).parse().unwrap());
        assert!(key_of(&h).is_err());
    }
}
