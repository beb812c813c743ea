//! The store's error type. Messages name files, tables and record ids and
//! say what to do; they never carry secret material.

use std::io;
use std::path::PathBuf;

use crate::crypto::CryptoError;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An error raised by the caller's own closure inside [`super::Store::write`]
    /// (the transaction is rolled back).
    #[error("{0}")]
    Other(String),
    /// Another process (normally the daemon) has the database open.
    #[error(
        "another keyrot process owns the store {} (is the daemon running? use the control socket, or stop it)",
        path.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a readable keyrot store. keyrot never repairs or
    /// replaces such a file on its own.
    #[error(
        "store {} is damaged or not a keyrot store: {detail}. keyrot will not repair, rewrite or replace it: run `keyrot store verify` for a report, then move the file aside and restore a backup (stop keyrot, copy the backup to {}, start keyrot)",
        path.display(),
        path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was found wrong.
        detail: String,
    },
    /// The store was written by a newer keyrot.
    #[error(
        "the store has schema version {found}, but this keyrot supports up to version {supported}: upgrade keyrot"
    )]
    SchemaTooNew {
        /// Version recorded in the store.
        found: u64,
        /// Highest version this build understands.
        supported: u64,
    },
    /// The master key given is not the one the store was created with.
    #[error(
        "the master key does not open the store {}: it was created with another key (check $CREDENTIALS_DIRECTORY/master-key or the key file)",
        path.display()
    )]
    WrongMasterKey {
        /// The database file.
        path: PathBuf,
    },
    /// A read-only open of a file that does not exist.
    #[error(
        "store {} does not exist (start the daemon or run `keyrot init` to create it)",
        path.display()
    )]
    NotFound {
        /// The database file looked for.
        path: PathBuf,
    },
    /// A read-only open of a store that was not closed cleanly.
    #[error(
        "store {} was not shut down cleanly and needs recovery, which a read-only open cannot do: start the daemon once",
        path.display()
    )]
    NeedsRecovery {
        /// The database file.
        path: PathBuf,
    },
    /// A write or an unseal on a store opened read-only (without the key).
    #[error(
        "store {} is open read-only without the master key; {what} needs the daemon (use the control socket)",
        path.display()
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// What was attempted.
        what: &'static str,
    },
    /// A commit failed. Fatal: the commit may or may not be durable and the
    /// database refuses further writes; the process must exit non-zero and
    /// be restarted (resume does the rest). Carries the store path and the
    /// database's error.
    #[error("commit failed ({0}); the store accepts no more writes until keyrot restarts")]
    CommitFailed(String),
    /// A file-system operation around the database failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The database engine reported an error.
    #[error("store error while {op}: {detail}")]
    Backend {
        /// What was being done.
        op: &'static str,
        /// The engine's message.
        detail: String,
    },
    /// A stored record could not be decoded.
    #[error("record {key:?} in table {table} cannot be decoded: {detail}")]
    Decode {
        /// Table name.
        table: &'static str,
        /// Record key.
        key: String,
        /// Decoder message.
        detail: String,
    },
    /// A record could not be encoded.
    #[error("record {key:?} for table {table} cannot be encoded: {detail}")]
    Encode {
        /// Table name.
        table: &'static str,
        /// Record key.
        key: String,
        /// Encoder message.
        detail: String,
    },
    /// A rotation's secret could not be sealed.
    #[error("cannot seal the secret of rotation {rotation}: {source}")]
    Seal {
        /// Rotation id.
        rotation: String,
        /// Why.
        source: CryptoError,
    },
    /// A rotation's secret could not be unsealed.
    #[error("cannot unseal the secret of rotation {rotation}: {source}")]
    Unseal {
        /// Rotation id.
        rotation: String,
        /// Why.
        source: CryptoError,
    },
    /// A rotation's secret is not UTF-8 text.
    #[error("the secret of rotation {rotation} is not UTF-8 text")]
    SecretNotUtf8 {
        /// Rotation id.
        rotation: String,
    },
    /// A backup is not written to `path`.
    #[error("will not write the backup to {}: {reason}", path.display())]
    BackupTarget {
        /// The file asked for.
        path: PathBuf,
        /// Why not.
        reason: &'static str,
    },
    /// An import into a store that already holds data (`keyrot store
    /// migrate` fills only an empty store); nothing was written.
    #[error(
        "store {} already holds data ({holds}): keyrot migrates only into an empty store, and wrote nothing (use a new database, or empty the keyrot tables of this one if its data is not needed)",
        path.display()
    )]
    NotEmpty {
        /// The destination store.
        path: PathBuf,
        /// What it holds, e.g. "keys 2, rotations 5".
        holds: String,
    },
    /// A store migration stopped: what failed, and what was left where.
    #[error("store migration stopped: {0}")]
    Migration(String),
    /// The audit chain does not verify at entry `seq`.
    #[error(
        "audit chain broken at entry {seq}: the entry, its link to the previous one or the chain head does not match (the audit table was altered outside keyrot)"
    )]
    AuditChainBroken {
        /// First entry that does not verify.
        seq: u64,
    },
}

/// Maps any redb error to [`StoreError::Backend`] with what was being done.
pub(super) fn backend<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Backend {
        op,
        detail: e.into().to_string(),
    }
}

/// A [`StoreError::CommitFailed`] naming the store file.
pub(super) fn commit_failed(path: &std::path::Path, e: redb::CommitError) -> StoreError {
    StoreError::CommitFailed(format!("store {}: {e}", path.display()))
}
