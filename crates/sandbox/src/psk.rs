//! The sandbox's pre-shared keys: loaded once at start from `--psk ID=FILE`
//! files of 64 hex characters, held in zeroized memory, never logged or shown
//! by `Debug`, and used only to seal the secret a rotate call returns.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::error::SandboxError;
use keyrot_core::crypto::{self, KEY_LEN};

/// One pre-shared key: its public id and its 32 secret bytes.
pub struct Psk {
    /// The id callers name with `?pskId=`.
    pub id: String,
    /// The key bytes (zeroed on drop).
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Psk")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Psk {
    /// Seals `plaintext` under this key with `aad` (see [`crypto::seal`]).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        crypto::seal(&self.key, aad, plaintext)
    }
}

/// Loads every `(id, file)` pair, in order (the first is the default), and
/// refuses bad ids, duplicates and files that are not 64 hex characters.
pub fn load_all(specs: &[(String, PathBuf)]) -> Result<Vec<Psk>, SandboxError> {
    let mut out: Vec<Psk> = Vec::with_capacity(specs.len());
    for (id, path) in specs {
        check_id(id)?;
        if out.iter().any(|p| &p.id == id) {
            return Err(SandboxError::PskId {
                id: id.clone(),
                reason: "given more than once",
            });
        }
        out.push(load_one(id, path)?);
    }
    Ok(out)
}

/// Refuses empty ids and ids with characters outside `[A-Za-z0-9._-]`.
fn check_id(id: &str) -> Result<(), SandboxError> {
    let reason = if id.is_empty() {
        "empty"
    } else if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        "contains characters other than letters, digits, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(SandboxError::PskId {
        id: id.to_string(),
        reason,
    })
}

/// Reads one PSK file: 64 hex digits, optionally followed by a newline.
fn load_one(id: &str, path: &Path) -> Result<Psk, SandboxError> {
    let content = Zeroizing::new(std::fs::read(path).map_err(|source| SandboxError::PskRead {
        id: id.to_string(),
        path: path.to_path_buf(),
        source,
    })?);
    let format_err = || SandboxError::PskFormat {
        id: id.to_string(),
        path: path.to_path_buf(),
    };
    let text = content.trim_ascii_end();
    if text.len() != 2 * KEY_LEN {
        return Err(format_err());
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (dst, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
        let hi = hex_digit(pair[0]).ok_or_else(format_err)?;
        let lo = hex_digit(pair[1]).ok_or_else(format_err)?;
        *dst = (hi << 4) | lo;
    }
    Ok(Psk {
        id: id.to_string(),
        key,
    })
}

/// The value of one hex digit (either case).
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_hex_and_refuses_bad_files_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{}\n", "ab".repeat(32))).unwrap();
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "zz".repeat(32)).unwrap();
        let psks = load_all(&[("k1".into(), good.clone())]).unwrap();
        let sealed = psks[0].seal(b"id", b"pt");
        assert_eq!(
            &crypto::open(&[0xab; 32], b"id", &sealed).unwrap()[..],
            b"pt"
        );
        assert!(!format!("{:?}", psks[0]).contains("ab, "));
        let err = load_all(&[("k1".into(), bad)]).unwrap_err().to_string();
        assert!(err.contains("64 hex"), "{err}");
        assert!(!err.contains("zz"), "{err}");
        let dup = load_all(&[("k1".into(), good.clone()), ("k1".into(), good.clone())]);
        assert!(matches!(dup, Err(SandboxError::PskId { .. })));
        assert!(matches!(
            load_all(&[("a b".into(), good)]),
            Err(SandboxError::PskId { .. })
        ));
    }
}
