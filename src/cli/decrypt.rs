//! `keyrot decrypt --psk-file FILE`: opens the sealed secret of a rotate
//! API response (read from stdin) with the pre-shared key in FILE and
//! prints the plain secret, for pipelines such as
//! `curl ... | keyrot decrypt --psk-file psk.hex | vault kv put ...`.
//!
//! This is the one command that prints a secret, on purpose. It needs no
//! daemon and no configuration. Errors say what failed (bad JSON, missing
//! field, wrong PSK or altered bytes) and never contain secret bytes.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;
use zeroize::Zeroizing;

use keyrot_core::crypto::psk::{self, ALGORITHM, EnvelopeError, PskBytes};

/// Largest response read from stdin.
const MAX_INPUT: u64 = 1024 * 1024;
/// Largest PSK file read (64 hex characters and a line end fit easily).
const MAX_PSK_FILE: u64 = 256;

/// Why decrypting failed. No variant carries secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// stdin could not be read.
    #[error("cannot read the response from stdin: {0}")]
    Stdin(io::Error),
    /// stdin holds more than [`MAX_INPUT`] bytes.
    #[error("the input on stdin is larger than 1 MiB: it is not a rotate API response")]
    TooLarge,
    /// stdin is not JSON.
    #[error("the input on stdin is not JSON ({0}): pipe in the rotate API's response body")]
    Json(String),
    /// The response is an API error body.
    #[error("the response is an error, not a sealed secret: HTTP {code}: {message}")]
    ErrorBody {
        /// Its status code.
        code: u64,
        /// Its message.
        message: String,
    },
    /// A required field is missing or not a string.
    #[error(
        "the response has no string field `{0}` (expected {{\"data\":{{\"id\":..,\"encryptedSecret\":..}}}})"
    )]
    Missing(&'static str),
    /// The response says it is sealed some other way.
    #[error(
        "`{field}` is {value}: keyrot decrypt opens only AES-256-GCM secrets sealed directly under the PSK (keyWrap false)"
    )]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Its value, as JSON.
        value: String,
    },
    /// The PSK file does not exist.
    #[error("PSK file {} does not exist", .0.display())]
    PskMissing(PathBuf),
    /// The PSK file could not be read.
    #[error("cannot read PSK file {}: {source}", path.display())]
    PskIo {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The PSK file is readable or writable by group or others.
    #[error("PSK file {} has mode {mode:04o}, which lets group or others read it; run `chmod 600 {}`", path.display(), path.display())]
    PskMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PSK file does not hold 64 hex characters.
    #[error("PSK file {} must hold 64 hex characters (32 bytes), optionally followed by a newline; it holds {len} bytes of another form", path.display())]
    PskFormat {
        /// The file.
        path: PathBuf,
        /// How many bytes it holds.
        len: usize,
    },
    /// The envelope did not open.
    #[error(
        "cannot open data.encryptedSecret: {source} (is the PSK file the key of pskId {psk_id}? the AAD is data.id {key_id:?})"
    )]
    Open {
        /// `data.encryption.pskId` as JSON, or `unknown`.
        psk_id: String,
        /// `data.id`.
        key_id: String,
        /// Why.
        source: EnvelopeError,
    },
    /// stdout could not be written.
    #[error("cannot write the secret to stdout: {0}")]
    Stdout(io::Error),
}

/// Reads a PSK file: 64 hex characters, mode refusing group and others
/// (the master key file's rule).
pub fn load_psk(path: &Path) -> Result<PskBytes, DecryptError> {
    let file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => DecryptError::PskMissing(path.to_path_buf()),
        _ => DecryptError::PskIo {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let io_err = |source| DecryptError::PskIo {
        path: path.to_path_buf(),
        source,
    };
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DecryptError::PskMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut content = Zeroizing::new(Vec::new());
    file.take(MAX_PSK_FILE)
        .read_to_end(&mut content)
        .map_err(io_err)?;
    psk::parse_psk(&content).ok_or_else(|| DecryptError::PskFormat {
        path: path.to_path_buf(),
        len: content.len(),
    })
}

/// Opens the sealed secret of a rotate API response (JSON text) with `psk`.
pub fn open_response(text: &str, psk: &[u8; 32]) -> Result<Zeroizing<String>, DecryptError> {
    let v: Value = serde_json::from_str(text).map_err(|e| DecryptError::Json(e.to_string()))?;
    if let Some(err) = v.get("error") {
        return Err(DecryptError::ErrorBody {
            code: err.get("code").and_then(Value::as_u64).unwrap_or(0),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_string(),
        });
    }
    let data = v.get("data").ok_or(DecryptError::Missing("data"))?;
    let key_id = data
        .get("id")
        .and_then(Value::as_str)
        .ok_or(DecryptError::Missing("data.id"))?;
    let sealed = data
        .get("encryptedSecret")
        .and_then(Value::as_str)
        .ok_or(DecryptError::Missing("data.encryptedSecret"))?;
    let enc = data.get("encryption");
    let field = |name: &str| enc.and_then(|e| e.get(name)).filter(|x| !x.is_null());
    if let Some(a) = field("algorithm").filter(|a| a.as_str() != Some(ALGORITHM)) {
        return Err(DecryptError::Unsupported {
            field: "data.encryption.algorithm",
            value: a.to_string(),
        });
    }
    if let Some(w) = field("keyWrap").filter(|w| w.as_bool() != Some(false)) {
        return Err(DecryptError::Unsupported {
            field: "data.encryption.keyWrap",
            value: w.to_string(),
        });
    }
    psk::open(psk, key_id, sealed).map_err(|source| DecryptError::Open {
        psk_id: field("pskId").map_or_else(|| "unknown".into(), Value::to_string),
        key_id: key_id.to_string(),
        source,
    })
}

/// `keyrot decrypt`: stdin → stdout.
pub fn run(psk_file: &Path) -> anyhow::Result<ExitCode> {
    let psk = load_psk(psk_file)?;
    let mut input = Zeroizing::new(String::new());
    io::stdin()
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut input)
        .map_err(DecryptError::Stdin)?;
    if input.len() as u64 > MAX_INPUT {
        return Err(DecryptError::TooLarge.into());
    }
    let mut secret = open_response(&input, &psk)?;
    secret.push('\n');
    // The secret as it is (never escaped); a reader that went away early
    // (`| head -c 8`) is a normal end.
    match super::output::write_stdout(secret.as_bytes()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(DecryptError::Stdout(e).into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_core::crypto::hex_encode;

    /// The documented example response, with the documented test vector.
    fn vector_response() -> String {
        serde_json::json!({"data": {
            "id": "new-api-key-789",
            "encryptedSecret": "AAECAwQFBgcICQoLInq3drWJpzb+JPT51J1VG+K68lE9WipQbM+zqF2CeK+TJn3c",
            "encryption": {"algorithm": "AES-256-GCM", "pskId": "azupay-kms-default", "keyWrap": false},
            "keyExpiresAt": "2025-12-31T23:59:59Z"
        }})
        .to_string()
    }

    fn vector_psk() -> [u8; 32] {
        std::array::from_fn(|i| u8::try_from(i).unwrap())
    }

    fn psk_file(dir: &Path, content: &str, mode: u32) -> PathBuf {
        let p = dir.join("psk.hex");
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn opens_the_documented_vector_with_the_psk_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = psk_file(
            dir.path(),
            &format!("{}\n", hex_encode(&vector_psk())),
            0o600,
        );
        let psk = load_psk(&path).unwrap();
        let plain = open_response(&vector_response(), &psk).unwrap();
        assert_eq!(plain.as_str(), "example-secret-value");
    }

    #[test]
    fn psk_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = psk_file(dir.path(), &hex_encode(&vector_psk()), 0o644);
        let e = load_psk(&path).unwrap_err();
        assert!(e.to_string().contains("mode 0644"), "{e}");
        let path = psk_file(dir.path(), "not-a-key-at-all", 0o600);
        let e = load_psk(&path).unwrap_err().to_string();
        assert!(
            e.contains("64 hex characters") && !e.contains("not-a-key"),
            "{e}"
        );
        let e = load_psk(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(e, DecryptError::PskMissing(_)));
    }

    #[test]
    fn errors_name_what_failed() {
        let psk = vector_psk();
        let e = open_response("curl: (7) failed", &psk).unwrap_err();
        assert!(matches!(e, DecryptError::Json(_)), "{e}");
        let e = open_response(r#"{"data":{"id":"x"}}"#, &psk).unwrap_err();
        assert_eq!(
            e.to_string()
                .split(' ')
                .take(6)
                .collect::<Vec<_>>()
                .join(" "),
            "the response has no string field"
        );
        assert!(matches!(e, DecryptError::Missing("data.encryptedSecret")));
        let e = open_response(
            r#"{"error":{"code":404,"message":"unknown key \"x\""}}"#,
            &psk,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the response is an error, not a sealed secret: HTTP 404: unknown key \"x\""
        );
        let wrapped = vector_response().replace("\"keyWrap\":false", "\"keyWrap\":true");
        assert!(matches!(
            open_response(&wrapped, &psk),
            Err(DecryptError::Unsupported { .. })
        ));
        let e = open_response(&vector_response(), &[1u8; 32]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("decryption failed") && msg.contains("\"azupay-kms-default\""),
            "{msg}"
        );
        let tampered = vector_response().replace("new-api-key-789", "new-api-key-790");
        assert!(matches!(
            open_response(&tampered, &psk),
            Err(DecryptError::Open { .. })
        ));
    }
}
