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
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;
use zeroize::Zeroize;

use super::SecretRef;
use super::ctx::Ctx;

/// The message for a plain string where a secret reference belongs.
pub const INLINE_SECRET_MESSAGE: &str = "inline secrets are not allowed: use { credential = \"NAME\" } \
     (systemd LoadCredential), { file = \"/path\" } or { env = \"VAR\" }";

/// A secret reference as written: exactly one of the three keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRefRaw {
    /// `{ credential = "name" }`.
    Credential(String),
    /// `{ file = "/path" }` (relative to the config file's directory).
    File(String),
    /// `{ env = "VAR" }`.
    Env(String),
}

impl<'de> Deserialize<'de> for SecretRefRaw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RefVisitor)
    }
}

/// Accepts a one-key table; every other shape gets a message that never
/// repeats the value (it may be a secret pasted in by mistake).
struct RefVisitor;

impl RefVisitor {
    /// The error for anything that is not a table.
    fn not_a_table<E: de::Error>(&self) -> E {
        E::custom(
            "a secret must be a table: { credential = \"NAME\" }, { file = \"/path\" } or { env = \"VAR\" }",
        )
    }
}

impl<'de> Visitor<'de> for RefVisitor {
    type Value = SecretRefRaw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{ credential = \"NAME\" }, { file = \"/path\" } or { env = \"VAR\" }")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRefRaw, E> {
        Err(E::custom(INLINE_SECRET_MESSAGE))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRefRaw, E> {
        Err(E::custom(INLINE_SECRET_MESSAGE))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRefRaw, E> {
        Err(E::custom(INLINE_SECRET_MESSAGE))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRefRaw, E> {
        Err(E::custom(INLINE_SECRET_MESSAGE))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRefRaw, E> {
        Err(self.not_a_table())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretRefRaw, A::Error> {
        Err(self.not_a_table())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRefRaw, A::Error> {
        let mut found: Option<SecretRefRaw> = None;
        while let Some(key) = map.next_key::<String>()? {
            let make: fn(String) -> SecretRefRaw = match key.as_str() {
                "credential" => SecretRefRaw::Credential,
                "file" => SecretRefRaw::File,
                "env" => SecretRefRaw::Env,
                _ => {
                    return Err(de::Error::custom(format!(
                        "unknown secret source `{key}`: use exactly one of `credential`, `file` or `env`"
                    )));
                }
            };
            let value: String = map.next_value()?;
            if found.is_some() {
                return Err(de::Error::custom(
                    "a secret reference takes exactly one of `credential`, `file` or `env`",
                ));
            }
            found = Some(make(value));
        }
        found.ok_or_else(|| {
            de::Error::custom("a secret reference needs one of `credential`, `file` or `env`")
        })
    }
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
