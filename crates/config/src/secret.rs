//! Secret references: how the config names a secret without holding it.
//!
//! A secret field accepts only `{ credential = "NAME" }` (a systemd
//! credential, `$CREDENTIALS_DIRECTORY/NAME`), `{ file = "/path" }` or
//! `{ env = "VAR" }`; a plain string is refused, so no secret is ever
//! written into a config file. Resolving reads the secret into a
//! `SecretString`; no error message ever contains secret bytes.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use toml::Spanned;
use zeroize::Zeroize;

use super::ctx::Ctx;
use super::raw::SecretRefRaw;
use super::secret_ref::SecretRef;

/// One secret reference in a config, and who uses it.
#[derive(Clone, Debug)]
pub struct SecretUse<'a> {
    /// Owner, e.g. `sink "vault"`.
    pub owner: String,
    /// The field, e.g. `token`.
    pub field: &'static str,
    /// The reference.
    pub secret: &'a SecretRef,
}

/// Turns a raw reference into a `SecretRef`: a credential name must be a
/// plain file name, an env name non-empty, a relative file path is
/// resolved against the directory of the config file it is written in.
/// Records where the reference is written, so that a problem found when it
/// is resolved later (`keyrot check`, start) points there.
pub(crate) fn secret_ref(ctx: &mut Ctx<'_>, raw: &Spanned<SecretRefRaw>) -> Option<SecretRef> {
    let r = checked_secret_ref(ctx, raw)?;
    let site = ctx.sources.diag(&raw.span(), "");
    ctx.secret_sites.push((r.clone(), site));
    Some(r)
}

fn checked_secret_ref(ctx: &mut Ctx<'_>, raw: &Spanned<SecretRefRaw>) -> Option<SecretRef> {
    match raw.get_ref() {
        SecretRefRaw::Credential(name) => {
            let plain = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
            if !plain {
                ctx.error(
                    raw.span(),
                    format!("credential name {name:?} must be a plain file name (no `/`)"),
                );
                return None;
            }
            Some(SecretRef::Credential(name.clone()))
        }
        SecretRefRaw::File(path) => {
            let spanned = Spanned::new(raw.span(), path.clone());
            ctx.path(&spanned, "file").map(SecretRef::File)
        }
        SecretRefRaw::Env(var) => {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                ctx.error(
                    raw.span(),
                    format!("environment variable name {var:?} is not valid"),
                );
                return None;
            }
            Some(SecretRef::Env(var.clone()))
        }
    }
}

/// Why a secret reference could not be resolved (never the secret itself).
#[derive(Debug, thiserror::Error)]
pub enum SecretRefError {
    /// A credential was asked for but systemd gave none.
    #[error(
        "credential {name:?}: CREDENTIALS_DIRECTORY is not set (run under systemd with \
         LoadCredential={name}:/path, or use {{ file = \"/path\" }}; from a shell, set \
         CREDENTIALS_DIRECTORY to a directory holding the credential files, as the operations \
         guide's Check section shows)"
    )]
    NoCredentialsDirectory {
        /// The credential name.
        name: String,
    },
    /// The credential or secret file could not be read.
    #[error("{what}: cannot read {}: {source}", path.display())]
    Read {
        /// `credential "x"` or `file`.
        what: String,
        /// The file tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The secret bytes are not UTF-8 text.
    #[error("{what}: {} is not valid UTF-8 text", path.display())]
    NotUtf8 {
        /// `credential "x"` or `file`.
        what: String,
        /// The file read.
        path: PathBuf,
    },
    /// The environment variable is not set.
    #[error("environment variable {var} is not set")]
    EnvMissing {
        /// The variable.
        var: String,
    },
    /// The environment variable is not Unicode.
    #[error("environment variable {var} is not valid Unicode")]
    EnvNotUnicode {
        /// The variable.
        var: String,
    },
    /// The secret is empty.
    #[error("{source_desc} is empty")]
    Empty {
        /// Where it came from, e.g. `file /etc/keyrot/token`.
        source_desc: String,
    },
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Credential(name) => write!(f, "credential {name:?}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
            SecretRef::Env(var) => write!(f, "env {var}"),
        }
    }
}

impl SecretRef {
    /// Reads the secret. Credentials come from `credentials_dir` (the
    /// daemon passes `$CREDENTIALS_DIRECTORY`); a file's or credential's
    /// one trailing newline is dropped.
    pub fn resolve(&self, credentials_dir: Option<&Path>) -> Result<SecretString, SecretRefError> {
        let text = match self {
            SecretRef::Credential(name) => {
                let dir = credentials_dir
                    .ok_or_else(|| SecretRefError::NoCredentialsDirectory { name: name.clone() })?;
                read_trimmed(&format!("credential {name:?}"), &dir.join(name))?
            }
            SecretRef::File(path) => read_trimmed("file", path)?,
            SecretRef::Env(var) => std::env::var(var).map_err(|e| match e {
                std::env::VarError::NotPresent => SecretRefError::EnvMissing { var: var.clone() },
                std::env::VarError::NotUnicode(raw) => {
                    raw.into_encoded_bytes().zeroize();
                    SecretRefError::EnvNotUnicode { var: var.clone() }
                }
            })?,
        };
        if text.is_empty() {
            return Err(SecretRefError::Empty {
                source_desc: self.to_string(),
            });
        }
        Ok(SecretString::from(text))
    }

    /// Checks that the secret can be read now (for `keyrot check`); the
    /// value is wiped at once.
    pub fn check_resolvable(&self, credentials_dir: Option<&Path>) -> Result<(), SecretRefError> {
        self.resolve(credentials_dir).map(drop)
    }
}

/// `$CREDENTIALS_DIRECTORY`, when systemd set it.
pub fn credentials_dir_from_env() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Reads a file as UTF-8, dropping one trailing `\n` (or `\r\n`); the
/// buffer is wiped on every error path.
fn read_trimmed(what: &str, path: &Path) -> Result<String, SecretRefError> {
    let bytes = std::fs::read(path).map_err(|source| SecretRefError::Read {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        e.into_bytes().zeroize();
        SecretRefError::NotUtf8 {
            what: what.to_string(),
            path: path.to_path_buf(),
        }
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
