//! Backups, and the images that move a store between backends.
//! [`Store::backup_image`] copies every row of every table inside
//! one read transaction into a new database built in memory, and returns
//! that database's bytes: a redb read transaction is a snapshot of exactly
//! one commit, and keyrot writes each transition in one commit, so the copy
//! is a state the store was in, never half of a transition, whatever the
//! daemon does meanwhile. Only rows are copied, so pages that earlier
//! transactions freed (holding, say, a wiped sealed secret) are not carried
//! over. Secrets stay sealed under the master key, which is not in the
//! backup: restoring needs the same master key.
//!
//! [`write_backup`] puts those bytes in a file: mode 0600, written under a
//! temporary name beside it, synced, read back as a store, then moved into
//! place; an existing file is replaced only when asked, and never when it
//! is the store itself or a store in use.
//!
//! [`Store::import_image`] is the way into PostgreSQL: an image's rows
//! copied into an empty PostgreSQL store (`pg/import.rs`), for
//! `keyrot store migrate` (see [`super::migrate`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use redb::{
    DatabaseError, Durability, Key, MultimapTableHandle, ReadTransaction, ReadableTable,
    TableDefinition, TableError, TableHandle, Value, WriteTransaction,
};

use super::error::backend;
use super::guard::{builder, io_err};
use super::image::{self, ImageBackend};
use super::tables::{
    ACTIVE, AUDIT, DUE, KEY_ROTATIONS, KEYS, LOCAL_KEYS, META, OUTBOX, ROTATIONS, SECRETS,
    TABLE_NAMES,
};
use super::{ImportSummary, Store, StoreError, StoreStats, files};

/// What a backup file holds, read back from the file once written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackupSummary {
    /// The backup file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its record counts.
    pub stats: StoreStats,
    /// Audit entries whose hash chain verified in the backup.
    pub audit_entries: u64,
}

impl Store {
    /// A backup of the store: the bytes of a new redb file holding every
    /// row as of one snapshot (see the module documentation). Works on a
    /// read-only open too; sealed secrets are copied sealed.
    pub fn backup_image(&self) -> Result<Vec<u8>, StoreError> {
        if let super::Db::Postgres(pg) = &self.db {
            return pg.export_image(&self.path);
        }
        let image = self.read(|src| {
            refuse_unknown_tables(src)?;
            let (mem, bytes) = ImageBackend::memory(Vec::new());
            let copy = image::open(&self.path, mem)?.db;
            let mut txn = copy.begin_write().map_err(backend("starting the backup"))?;
            txn.set_durability(Durability::Immediate)
                .map_err(backend("setting durability"))?;
            copy_table(src, &txn, KEYS)?;
            copy_table(src, &txn, ROTATIONS)?;
            copy_table(src, &txn, KEY_ROTATIONS)?;
            copy_table(src, &txn, SECRETS)?;
            copy_table(src, &txn, OUTBOX)?;
            copy_table(src, &txn, AUDIT)?;
            copy_table(src, &txn, META)?;
            copy_table(src, &txn, DUE)?;
            copy_table(src, &txn, LOCAL_KEYS)?;
            copy_table(src, &txn, ACTIVE)?;
            txn.commit().map_err(backend("committing the backup"))?;
            // A clean close records the allocator state: the backup file
            // then opens without recovery, read-only too.
            copy.close().map_err(backend("closing the backup"))?;
            Ok(bytes.take())
        })?;
        // The snapshot may hold a group commit that is not durable yet:
        // make it durable before the backup is handed out, so a backup
        // never holds a state the store itself could still lose.
        self.flush()?;
        Ok(image)
    }

    /// The other direction of [`Store::backup_image`], for a PostgreSQL
    /// store opened with the master key: copies every row of `image` into
    /// this store in one transaction, secrets sealed as they are. Refused
    /// ([`StoreError::NotEmpty`]) when the store already holds data, and
    /// ([`StoreError::WrongMasterKey`]) when the image's secrets are sealed
    /// under another key; on any error nothing is written. A redb store is
    /// made from an image by [`write_backup`], as a new file.
    pub fn import_image(&self, image: &[u8]) -> Result<ImportSummary, StoreError> {
        match (&self.db, &self.master) {
            (super::Db::Postgres(pg), Some(master)) => pg.import_image(master, &self.path, image),
            (super::Db::Postgres(_), None) => Err(self.read_only("importing a store")),
            _ => Err(StoreError::Backend {
                op: "importing a store",
                detail: format!(
                    "{} is a redb store: an image becomes a redb store as a new file (written as a backup is), not by an import",
                    self.path.display()
                ),
            }),
        }
    }
}

/// Refuses a store holding a table this keyrot does not know: a backup
/// would silently leave it out.
pub(super) fn refuse_unknown_tables(txn: &ReadTransaction) -> Result<(), StoreError> {
    let op = "listing tables";
    let names = txn
        .list_tables()
        .map_err(backend(op))?
        .map(|t| t.name().to_owned())
        .chain(
            txn.list_multimap_tables()
                .map_err(backend(op))?
                .map(|t| t.name().to_owned()),
        );
    for name in names {
        if !TABLE_NAMES.contains(&name.as_str()) {
            return Err(StoreError::Backend {
                op: "backing up the store",
                detail: format!(
                    "table {name:?} is unknown to this keyrot (written by a newer one?); a backup would leave it out"
                ),
            });
        }
    }
    Ok(())
}

/// Copies every row of table `def` from `src` to `dst` (creating it there
/// even when empty or missing in `src`).
fn copy_table<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<(), StoreError> {
    let mut to = dst
        .open_table(def)
        .map_err(backend("creating a backup table"))?;
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(backend("opening a table to back up")(e)),
    };
    for item in from.iter().map_err(backend("reading a table to back up"))? {
        let (k, v) = item.map_err(backend("reading a table to back up"))?;
        to.insert(k.value(), v.value())
            .map_err(backend("writing the backup"))?;
    }
    Ok(())
}

/// Writes the backup `image` (from [`Store::backup_image`]) to `target`
/// and reads it back. `store` is the live store's path, which is never
/// overwritten; an existing `target` is replaced only with `force`.
pub fn write_backup(
    target: &Path,
    image: &[u8],
    force: bool,
    store: Option<&Path>,
) -> Result<BackupSummary, StoreError> {
    let refuse = |reason| StoreError::BackupTarget {
        path: target.to_path_buf(),
        reason,
    };
    if store.is_some_and(|s| same_file(target, s)) {
        return Err(refuse("it is the store itself"));
    }
    if target.exists() {
        if !force {
            return Err(refuse("it exists (pass --force to replace it)"));
        }
        if in_use(target) {
            return Err(refuse("it is a store in use by a running keyrot"));
        }
    }
    let tmp = files::temp_sibling(target, "tmp");
    files::write_private(&tmp, image).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("write the backup to", target, e)
    })?;
    let summary = match read_back(&tmp, image.len() as u64) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    files::place(&tmp, target, force).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => refuse("it exists (pass --force to replace it)"),
        _ => io_err("move the backup into place as", target, e),
    })?;
    Ok(BackupSummary {
        path: target.to_path_buf(),
        ..summary
    })
}

/// Opens a written backup as a store and counts it, verifying its audit
/// chain: a backup that does not read back is not kept.
fn read_back(path: &Path, bytes: u64) -> Result<BackupSummary, StoreError> {
    let copy = Store::open_read_only(path)?;
    Ok(BackupSummary {
        path: path.to_path_buf(),
        bytes,
        stats: copy.stats()?,
        audit_entries: copy.verify_audit_chain()?,
    })
}

/// Whether `a` and `b` name the same file (same device and inode), or,
/// when `a` does not exist yet, the same path once resolved.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => {
            let resolve = |p: &Path| {
                let name = p.file_name()?;
                Some(std::fs::canonicalize(files::dir_of(p)).ok()?.join(name))
            };
            matches!((resolve(a), resolve(b)), (Some(x), Some(y)) if x == y)
        }
    }
}

/// Whether `path` is a database another process holds open for writing.
fn in_use(path: &Path) -> bool {
    let probe = std::panic::catch_unwind(|| builder().open_read_only(path).err());
    matches!(
        probe,
        Ok(Some(
            DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch
        ))
    )
}
