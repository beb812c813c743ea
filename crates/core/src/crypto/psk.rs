//! The sealed secret an API caller gets back from a rotation: the new
//! secret sealed with AES-256-GCM under the caller's pre-shared key (PSK),
//! with the new key's id as associated data, as standard base64 of
//! `nonce (12 bytes) || ciphertext || tag (16 bytes)` (the format of
//! [`crate::crypto`]). This module owns that format, the parsing of a PSK
//! (64 hex characters) and the store key the envelope is kept under until
//! the caller takes it. It holds no key and does no I/O.
//!
//! The format is written down, with a test vector, in `docs/api.md`; the
//! test below checks the vector, so the document cannot drift.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, KEY_LEN, NONCE_LEN};

/// The `encryption.algorithm` every sealed secret names.
pub const ALGORITHM: &str = "AES-256-GCM";

/// Suffix of the store key an envelope is kept under (`{rotation id}#psk`).
pub const STORE_SUFFIX: &str = "#psk";

/// A pre-shared key's 32 bytes, zeroed on drop.
pub type PskBytes = Zeroizing<[u8; KEY_LEN]>;

/// Why an envelope could not be opened. Never carries secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The text is not standard base64.
    #[error("the sealed secret is not valid base64 (standard alphabet, with padding)")]
    NotBase64,
    /// Too short, wrong key, wrong key id, or altered bytes.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// It opened, but the plaintext is not UTF-8 text.
    #[error("the sealed secret opened, but it is not UTF-8 text")]
    NotUtf8,
}

/// The store key of rotation `rotation_id`'s envelope.
pub fn store_key(rotation_id: &str) -> String {
    format!("{rotation_id}{STORE_SUFFIX}")
}

/// Parses a PSK: exactly 64 hex characters (either case), optionally
/// followed by one `\n` or `\r\n`. None for anything else.
pub fn parse_psk(text: &[u8]) -> Option<PskBytes> {
    let text = text
        .strip_suffix(b"\n")
        .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
        .unwrap_or(text);
    if text.len() != 2 * KEY_LEN {
        return None;
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    for (dst, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *dst = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

/// The value of one hex digit.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Seals `secret` under `psk` for the key `key_id` (the AAD), with a fresh
/// random nonce; returns the base64 envelope.
pub fn seal(
    psk: &[u8; KEY_LEN],
    key_id: &str,
    secret: &SecretString,
) -> Result<SecretString, CryptoError> {
    let sealed = crypto::try_seal(psk, key_id.as_bytes(), secret.expose_secret().as_bytes())?;
    Ok(SecretString::from(STANDARD.encode(sealed)))
}

/// [`seal`] with a chosen nonce: for test vectors only (a nonce must
/// never be used twice under one key).
pub fn seal_with_nonce(
    psk: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    key_id: &str,
    secret: &str,
) -> Result<String, CryptoError> {
    let sealed = crypto::seal_with_nonce(psk, nonce, key_id.as_bytes(), secret.as_bytes())?;
    Ok(STANDARD.encode(sealed))
}

/// Opens a base64 envelope sealed under `psk` for key `key_id`.
pub fn open(
    psk: &[u8; KEY_LEN],
    key_id: &str,
    envelope: &str,
) -> Result<Zeroizing<String>, EnvelopeError> {
    let sealed = Zeroizing::new(
        STANDARD
            .decode(envelope.trim())
            .map_err(|_| EnvelopeError::NotBase64)?,
    );
    let mut plain = crypto::open(psk, key_id.as_bytes(), &sealed)?;
    let bytes = std::mem::take(&mut *plain);
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            // Wipe the bytes that are not text before they are dropped.
            drop(Zeroizing::new(e.into_bytes()));
            Err(EnvelopeError::NotUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PSK of the documented test vector: bytes 00 01 .. 1f.
    pub(crate) fn vector_psk() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| u8::try_from(i).unwrap())
    }

    /// The documented test vector (docs/api.md, "Test vector"); computed
    /// independently with Python's `cryptography` AESGCM as well.
    pub(crate) const VECTOR: &str =
        "AAECAwQFBgcICQoLInq3drWJpzb+JPT51J1VG+K68lE9WipQbM+zqF2CeK+TJn3c";

    #[test]
    fn documented_test_vector() {
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| u8::try_from(i).unwrap());
        let env = seal_with_nonce(
            &vector_psk(),
            &nonce,
            "new-api-key-789",
            "example-secret-value",
        )
        .unwrap();
        assert_eq!(env, VECTOR);
        let doc = include_str!("../../../../docs/api.md");
        assert!(doc.contains(VECTOR), "docs/api.md must show the vector");
        assert!(
            doc.contains(&crypto::hex_encode(&vector_psk())),
            "docs/api.md must show the vector's PSK"
        );
        let plain = open(&vector_psk(), "new-api-key-789", VECTOR).unwrap();
        assert_eq!(plain.as_str(), "example-secret-value");
    }

    #[test]
    fn seal_round_trips_and_binds_the_key_id() {
        let psk = [9u8; KEY_LEN];
        let env = seal(&psk, "k-1", &SecretString::from("s3cret")).unwrap();
        let text = env.expose_secret();
        assert_eq!(open(&psk, "k-1", text).unwrap().as_str(), "s3cret");
        assert!(matches!(
            open(&psk, "k-2", text),
            Err(EnvelopeError::Crypto(CryptoError::Decrypt))
        ));
        assert!(matches!(
            open(&[8u8; KEY_LEN], "k-1", text),
            Err(EnvelopeError::Crypto(CryptoError::Decrypt))
        ));
        assert!(matches!(
            open(&psk, "k-1", "not base64!"),
            Err(EnvelopeError::NotBase64)
        ));
        assert!(matches!(
            open(&psk, "k-1", "AAAA"),
            Err(EnvelopeError::Crypto(CryptoError::Truncated { len: 3 }))
        ));
    }

    #[test]
    fn psk_parsing() {
        let hex = crypto::hex_encode(&vector_psk());
        assert_eq!(*parse_psk(hex.as_bytes()).unwrap(), vector_psk());
        assert_eq!(
            *parse_psk(format!("{}\r\n", hex.to_uppercase()).as_bytes()).unwrap(),
            vector_psk()
        );
        assert!(parse_psk(&hex.as_bytes()[..62]).is_none());
        assert!(parse_psk(format!("{hex}00").as_bytes()).is_none());
        assert!(parse_psk(format!(" {}", &hex[1..]).as_bytes()).is_none());
        assert!(parse_psk(&[7u8; 32]).is_none(), "raw bytes are not a PSK");
        assert_eq!(store_key("r1"), "r1#psk");
    }
}
