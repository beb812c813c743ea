//! AES-256-GCM envelopes and the master key.
//!
//! This module owns the one envelope format keyrot uses, both for secrets at
//! rest in the store and for secrets returned to API callers under their
//! pre-shared key: `nonce (12 bytes) || ciphertext || tag (16 bytes)`, with a
//! fresh random nonce per seal and caller-chosen associated data (AAD) that
//! binds the envelope to its record. It also owns the master key: where it is
//! read from (a systemd credential or a 0600 key file), how a new one is
//! created, and that its bytes never reach `Debug` output or an error. It
//! knows nothing of the store's tables or of which AAD a caller picks.
//! [`psk`] is the sealed secret an API caller gets back under its
//! pre-shared key; [`tls`] picks the cryptography of TLS connections.

pub mod psk;
pub mod tls;

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::hardening::LockedKey;

/// Length of a key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of the random nonce that starts every envelope.
pub const NONCE_LEN: usize = 12;
/// Length of the GCM tag that ends every envelope.
pub const TAG_LEN: usize = 16;
/// File name of the master key inside `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "master-key";

/// Errors from sealing, opening and key files. Messages name files and
/// lengths, never key or plaintext bytes.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The master key file does not exist.
    #[error("master key file {} does not exist; run `keyrot init` to create it", path.display())]
    KeyFileMissing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The master key file is readable or writable by group or others.
    #[error(
        "master key file {} has mode {mode:04o}, which lets group or others read it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFileMode {
        /// The offending file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The master key file holds neither 64 hex characters nor 32 raw bytes.
    #[error(
        "master key file {} must hold 64 hex characters (optionally followed by a newline) or exactly 32 raw bytes; it holds {len} bytes of another form",
        path.display()
    )]
    KeyFileFormat {
        /// The offending file.
        path: PathBuf,
        /// How many bytes it holds.
        len: usize,
    },
    /// `write_new` found a file already there and refused to replace it.
    #[error(
        "master key file {} already exists; keyrot never overwrites a master key (the store's secrets would become unreadable)",
        path.display()
    )]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
    },
    /// An I/O operation on a key file or its directory failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`read master key file`, ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// The input is larger than AES-GCM can seal.
    #[error("cannot seal {len} bytes: larger than AES-256-GCM allows")]
    TooLarge {
        /// Length of the plaintext.
        len: usize,
    },
    /// An envelope shorter than a nonce and a tag.
    #[error("sealed data is {len} bytes, shorter than the {} bytes of nonce and tag", NONCE_LEN + TAG_LEN)]
    Truncated {
        /// Length of the envelope.
        len: usize,
    },
    /// Authentication failed: wrong key, wrong AAD, or altered bytes.
    #[error(
        "decryption failed: the key is wrong, the envelope belongs to another record, or its bytes were altered"
    )]
    Decrypt,
}

/// The store's 256-bit master key. Its bytes live in a page of their own,
/// locked in RAM where the limit allows and left out of core dumps
/// ([`LockedKey`]), are zeroed on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct MasterKey(LockedKey);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Wraps key bytes the caller already holds.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        let mut bytes = Zeroizing::new(bytes);
        MasterKey(LockedKey::new(&mut bytes))
    }

    /// A new random key from the operating system's generator. The RNG
    /// crate panics if that generator fails; use
    /// [`MasterKey::try_generate`] to get an error instead.
    pub fn generate() -> MasterKey {
        MasterKey(LockedKey::new(&mut Zeroizing::new(
            <[u8; KEY_LEN]>::generate(),
        )))
    }

    /// A new random key, or an error if the system generator fails.
    pub fn try_generate() -> Result<MasterKey, CryptoError> {
        <[u8; KEY_LEN]>::try_generate()
            .map(|b| MasterKey(LockedKey::new(&mut Zeroizing::new(b))))
            .map_err(|e| CryptoError::Random(e.to_string()))
    }

    /// Reads a key file holding 64 hex characters (plus an optional trailing
    /// newline) or exactly 32 raw bytes. With `check_mode`, a file whose mode
    /// gives group or others any access is refused.
    pub fn load(path: &Path, check_mode: bool) -> Result<MasterKey, CryptoError> {
        let mut file = File::open(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => CryptoError::KeyFileMissing {
                path: path.to_path_buf(),
            },
            _ => io_err("open master key file", path, source),
        })?;
        if check_mode {
            let meta = file
                .metadata()
                .map_err(|e| io_err("inspect master key file", path, e))?;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(CryptoError::KeyFileMode {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let mut content = Zeroizing::new(Vec::with_capacity(2 * KEY_LEN + 2));
        file.read_to_end(&mut content)
            .map_err(|e| io_err("read master key file", path, e))?;
        parse_key(&content).ok_or_else(|| CryptoError::KeyFileFormat {
            path: path.to_path_buf(),
            len: content.len(),
        })
    }

    /// Creates `path` (O_CREAT|O_EXCL, mode 0600) holding a new random key
    /// as hex and a newline, fsyncs the file and its directory, and returns
    /// the key. Never replaces an existing file. A missing parent directory
    /// is created with mode 0700.
    pub fn write_new(path: &Path) -> Result<MasterKey, CryptoError> {
        let dir = parent_dir(path);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err("create directory", dir, e))?;
        let key = MasterKey::try_generate()?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => CryptoError::KeyFileExists {
                    path: path.to_path_buf(),
                },
                _ => io_err("create master key file", path, source),
            })?;
        let mut text = Zeroizing::new(hex_encode(&key.0[..]));
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("write master key file", path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("sync directory", dir, e))?;
        Ok(key)
    }

    /// Finds the master key: `credentials_dir/master-key` when systemd
    /// passed one (loaded without the mode check: systemd makes
    /// `$CREDENTIALS_DIRECTORY` private to the service and its files are
    /// read-only, often 0400 owned by root, so their mode says nothing about
    /// who can read them), else `fallback_file` with the 0600 check. When the
    /// fallback is missing and `create` is true, a new key is written there.
    pub fn resolve(
        credentials_dir: Option<&Path>,
        fallback_file: &Path,
        create: bool,
    ) -> Result<MasterKey, CryptoError> {
        if let Some(dir) = credentials_dir {
            let cred = dir.join(CREDENTIAL_NAME);
            if cred.exists() {
                return MasterKey::load(&cred, false);
            }
        }
        match MasterKey::load(fallback_file, true) {
            Err(CryptoError::KeyFileMissing { .. }) if create => {
                MasterKey::write_new(fallback_file)
            }
            other => other,
        }
    }

    /// Seals `plaintext` under this key (see [`seal`]).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal(&self.0, aad, plaintext)
    }

    /// Seals `plaintext` under this key, reporting failures (see [`try_seal`]).
    pub fn try_seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        try_seal(&self.0, aad, plaintext)
    }

    /// Opens an envelope sealed under this key (see [`open`]).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open(&self.0, aad, sealed)
    }
}

/// Seals `plaintext` with AES-256-GCM under `key`, binding `aad`, and
/// returns `nonce || ciphertext || tag` with a fresh random nonce.
///
/// AES-GCM cannot fail for the inputs keyrot seals (secrets of a few hundred
/// bytes); should sealing fail anyway (input over 64 GiB, or no system
/// randomness) this returns an empty vector, which [`open`] always rejects,
/// so it fails closed. Use [`try_seal`] to see the error.
pub fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    try_seal(key, aad, plaintext).unwrap_or_default()
}

/// Like [`seal`], but reports why sealing failed.
pub fn try_seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce =
        <[u8; NONCE_LEN]>::try_generate().map_err(|e| CryptoError::Random(e.to_string()))?;
    seal_with_nonce(key, &nonce, aad, plaintext)
}

/// Seals with a caller-chosen nonce. Only for test vectors and
/// reproducible fixtures: a nonce must never be reused under one key.
pub fn seal_with_nonce(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    let body = cipher
        .encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::TooLarge {
            len: plaintext.len(),
        })?;
    let mut out = Vec::with_capacity(NONCE_LEN + body.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens an envelope made by [`seal`] with the same `key` and `aad`. The
/// plaintext comes back in a buffer that is zeroed when dropped.
pub fn open(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated { len: sealed.len() });
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| CryptoError::Decrypt)?;
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: body, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_encode(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Parses a key file's content: exactly 32 raw bytes, or 64 hex digits with
/// an optional trailing `\n` or `\r\n`.
fn parse_key(content: &[u8]) -> Option<MasterKey> {
    if content.len() == KEY_LEN {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(content);
        return Some(MasterKey(LockedKey::new(&mut bytes)));
    }
    let text = content
        .strip_suffix(b"\n")
        .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
        .unwrap_or(content);
    if text.len() != 2 * KEY_LEN {
        return None;
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    for (dst, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *dst = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(MasterKey(LockedKey::new(&mut bytes)))
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

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Builds an [`CryptoError::Io`].
fn io_err(action: &'static str, path: &Path, source: io::Error) -> CryptoError {
    CryptoError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];

    #[test]
    fn round_trip() {
        let sealed = seal(&KEY, b"ctx", b"hello secret");
        assert_eq!(sealed.len(), NONCE_LEN + 12 + TAG_LEN);
        assert_eq!(&open(&KEY, b"ctx", &sealed).unwrap()[..], b"hello secret");
    }

    #[test]
    fn nonces_differ_between_seals() {
        let a = seal(&KEY, b"", b"x");
        let b = seal(&KEY, b"", b"x");
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_aad_fails() {
        let sealed = seal(&KEY, b"keyrot-secret:a", b"s");
        assert!(matches!(
            open(&KEY, b"keyrot-secret:b", &sealed),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = seal(&KEY, b"", b"s");
        assert!(matches!(
            open(&[8u8; 32], b"", &sealed),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn every_tampered_byte_fails() {
        let sealed = seal(&KEY, b"aad", b"some plaintext");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(open(&KEY, b"aad", &t).is_err(), "byte {i}");
        }
        assert!(matches!(
            open(&KEY, b"aad", &sealed[..NONCE_LEN + TAG_LEN - 1]),
            Err(CryptoError::Truncated { .. })
        ));
    }

    #[test]
    fn known_vector_nist_gcm_256() {
        // NIST GCM test vector (gcmEncryptExtIV256, Count 0 with empty PT/AAD):
        // key 0, iv 0 -> tag 530f8afbc74536b9a963b4f1c4cb738b.
        let sealed = seal_with_nonce(&[0u8; 32], &[0u8; 12], b"", b"").unwrap();
        assert_eq!(
            hex_encode(&sealed[NONCE_LEN..]),
            "530f8afbc74536b9a963b4f1c4cb738b"
        );
        // Same key/iv, 16 zero bytes of plaintext (McGrew & Viega test case 14).
        let sealed = seal_with_nonce(&[0u8; 32], &[0u8; 12], b"", &[0u8; 16]).unwrap();
        assert_eq!(
            hex_encode(&sealed[NONCE_LEN..]),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
    }

    #[test]
    fn sha256_hex_matches_known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_hides_key_bytes() {
        let k = MasterKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
    }

    #[test]
    fn master_key_methods_delegate() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"a", b"pt");
        assert_eq!(&k.open(b"a", &sealed).unwrap()[..], b"pt");
        assert!(MasterKey::generate().open(b"a", &sealed).is_err());
    }

    fn write_file(path: &Path, content: &[u8], mode: u32) {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn mode_check_refuses_0644_and_accepts_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        write_file(&path, hex_encode(&KEY).as_bytes(), 0o644);
        let err = MasterKey::load(&path, true).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CryptoError::KeyFileMode { mode: 0o644, .. }));
        assert!(msg.contains("0644"), "{msg}");
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
        // Without the check the same file loads.
        assert!(MasterKey::load(&path, false).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = MasterKey::load(&path, true).unwrap();
        assert_eq!(*k.0, KEY);
    }

    #[test]
    fn hex_and_raw_formats_load() {
        let dir = tempfile::tempdir().unwrap();
        let hex = dir.path().join("hex");
        write_file(&hex, format!("{}\n", hex_encode(&KEY)).as_bytes(), 0o600);
        assert_eq!(*MasterKey::load(&hex, true).unwrap().0, KEY);
        let upper = dir.path().join("upper");
        write_file(&upper, hex_encode(&KEY).to_uppercase().as_bytes(), 0o600);
        assert_eq!(*MasterKey::load(&upper, true).unwrap().0, KEY);
        let raw = dir.path().join("raw");
        let raw_key: [u8; 32] = std::array::from_fn(|i| u8::try_from(i * 7).unwrap());
        write_file(&raw, &raw_key, 0o600);
        assert_eq!(*MasterKey::load(&raw, true).unwrap().0, raw_key);
        let bad = dir.path().join("bad");
        write_file(&bad, b"not a key at all\n", 0o600);
        let err = MasterKey::load(&bad, true).unwrap_err();
        assert!(matches!(err, CryptoError::KeyFileFormat { len: 17, .. }));
        assert!(!err.to_string().contains("not a key"));
    }

    #[test]
    fn missing_file_says_run_init() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let msg = MasterKey::load(&path, true).unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("keyrot init"), "{msg}");
    }

    #[test]
    fn write_new_creates_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let k = MasterKey::write_new(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert_eq!(*MasterKey::load(&path, true).unwrap().0, *k.0);
        let err = MasterKey::write_new(&path).unwrap_err();
        assert!(matches!(err, CryptoError::KeyFileExists { .. }));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn resolve_prefers_credentials_then_fallback_then_creates() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let fallback = dir.path().join("master.key");
        // Nothing anywhere, no create: the fallback's missing-file error.
        assert!(matches!(
            MasterKey::resolve(Some(&creds), &fallback, false),
            Err(CryptoError::KeyFileMissing { .. })
        ));
        // create writes the fallback.
        let created = MasterKey::resolve(Some(&creds), &fallback, true).unwrap();
        assert_eq!(
            *MasterKey::resolve(None, &fallback, false).unwrap().0,
            *created.0
        );
        // A credential wins, and its mode is not checked.
        write_file(
            &creds.join(CREDENTIAL_NAME),
            hex_encode(&KEY).as_bytes(),
            0o444,
        );
        assert_eq!(
            *MasterKey::resolve(Some(&creds), &fallback, false)
                .unwrap()
                .0,
            KEY
        );
        // The fallback is mode-checked.
        std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            MasterKey::resolve(None, &fallback, true),
            Err(CryptoError::KeyFileMode { .. })
        ));
    }
}
