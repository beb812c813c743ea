//! `SecretRef`: how the validated configuration names a secret it does
//! not hold. Reading and resolving references is in `secret`.

use std::path::PathBuf;

/// A reference to a secret kept outside the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// `{ credential = "name" }`: `$CREDENTIALS_DIRECTORY/name` (systemd).
    Credential(String),
    /// `{ file = "/path" }`: the file's contents, trailing newline trimmed.
    File(PathBuf),
    /// `{ env = "VAR" }`: an environment variable of the daemon.
    Env(String),
}
