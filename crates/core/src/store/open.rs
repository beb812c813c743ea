//! Opening the database file: directory and file modes, lock and corruption
//! errors mapped to what an operator must do, the schema version and the
//! master-key check. A file redb cannot read is reported, never repaired or
//! replaced by keyrot.
//!
//! Every read-write open is preceded by a probe that never writes: a
//! cleanly closed file is opened read-only and its schema version and
//! master key are checked there (constant time, whatever the history);
//! after a crash, redb's recovery and integrity check run on a private
//! copy first ([`super::image::trial`]). Only a file that passes is opened
//! for writing, so a truncated, foreign or garbage file, or one this keyrot
//! must refuse, is left byte for byte as it was. A new store is built under a temporary
//! name and linked into place, so an empty file is never a store: an
//! existing empty file is refused rather than initialised.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableError,
    TableHandle, WriteTransaction,
};

use super::error::{backend, commit_failed};
use super::guard::{builder, corrupt, guarded, io_err, no_panic};
use super::tables::{
    ACTIVE, AUDIT, DUE, KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT, KEY_ROTATIONS, KEYS, LATEST,
    LOCAL_KEYS, META, META_INSTALLATION, META_KEY_CHECK, META_SCHEMA, OUTBOX, ROTATIONS,
    SCHEMA_VERSION, SECRETS, decode, state_name,
};
use super::{Db, StoreError, files, image};
use crate::crypto::MasterKey;
use crate::model::RotationState;

/// What `meta` says about a store.
struct MetaState {
    /// Schema version, `None` for a fresh file.
    version: Option<u64>,
    /// Master-key check envelope.
    key_check: Option<Vec<u8>>,
}

/// Opens (creating if needed) the store for writing and checks it.
pub(super) fn open_read_write(path: &Path, master: &MasterKey) -> Result<Database, StoreError> {
    if !exists(path)? {
        create_fresh(path, master)?;
    }
    let fresh = probe(path, master)?;
    let db = guarded(path, || builder().open(path))?;
    restrict_mode(path);
    init_tables(path, &db, master, fresh)?;
    Ok(db)
}

/// Decides, without writing a byte, whether the file at `path` may be
/// opened for writing; returns whether it is a blank store to initialise.
///
/// A file that was shut down cleanly (redb's header says so) is opened
/// read-only (redb reads its header and allocator state; a truncated,
/// foreign or garbage file fails here) and its schema version and
/// master-key check are read: O(1), not O(file). A file that needs
/// recovery (keyrot was killed) is recovered and integrity-checked in a
/// private image first ([`image::trial`]), so a file that only looks like
/// a crashed store is refused before redb repairs it in place. The check of every page of a clean file is
/// `keyrot store verify`'s, not the start's: start-up must not wait on
/// work that grows with the history.
fn probe(path: &Path, master: &MasterKey) -> Result<bool, StoreError> {
    if std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(false)
    {
        return Err(corrupt(path, "the file is empty (0 bytes)"));
    }
    let clean = shut_down_cleanly(path);
    match guarded(path, || builder().open_read_only(path)) {
        // Dropped at the end of the arm: the read-write open takes the
        // file for itself.
        Ok(db) if clean => no_panic(path, || check_meta(path, &db, Some(master))),
        // A file left by a crash can still open read-only (its last commit
        // recorded the allocator state), and a truncated one too: both go
        // through the trial, whose integrity check reads every page.
        Ok(_) | Err(StoreError::NeedsRecovery { .. }) => {
            let (trial, clean) = image::trial(path)?;
            tracing::warn!(store = %path.display(), "the store was not shut down cleanly (keyrot was killed, or the machine stopped); the database engine recovers it to its last commit");
            if !clean {
                tracing::warn!(store = %path.display(), "the database engine's integrity check found an inconsistency it can repair; run `keyrot store verify` and keep a backup");
            }
            no_panic(path, || check_meta(path, &trial.db, Some(master)))
        }
        Err(e) => Err(e),
    }
}

/// redb's file header: its magic number, then the "god byte" whose bit
/// `RECOVERY_REQUIRED` a writer sets while it has the file open and clears
/// at a clean close (redb's `tree_store/page_store/header.rs`; the layout of
/// file format 3, which redb 4 writes).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// Offset of the god byte.
const GOD_BYTE: usize = REDB_MAGIC.len();
/// The god byte's "recovery required" bit.
const RECOVERY_REQUIRED: u8 = 2;

/// Whether `path` is a redb file its last writer closed cleanly: anything
/// else (a crash image, a foreign or unreadable header) takes the slow,
/// thorough path.
fn shut_down_cleanly(path: &Path) -> bool {
    use std::io::Read as _;
    let mut header = [0u8; GOD_BYTE + 1];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    read.is_ok() && header[..GOD_BYTE] == REDB_MAGIC && header[GOD_BYTE] & RECOVERY_REQUIRED == 0
}

/// Opens an existing store read-only and checks its schema version. A
/// store left by a crash, which only a writer may recover, is recovered in
/// a private copy in memory instead (the file stays as it is until the
/// daemon opens it).
pub(super) fn open_read_only(path: &Path) -> Result<Db, StoreError> {
    if !exists(path)? {
        return Err(StoreError::NotFound {
            path: path.to_path_buf(),
        });
    }
    match guarded(path, || builder().open_read_only(path)) {
        Ok(db) => {
            no_panic(path, || check_meta(path, &db, None))?;
            Ok(Db::ReadOnly(db))
        }
        Err(StoreError::NeedsRecovery { .. }) => {
            let (trial, _) = image::trial(path)?;
            no_panic(path, || check_meta(path, &trial.db, None))?;
            Ok(Db::Image(trial.db))
        }
        Err(e) => Err(e),
    }
}

/// Whether `path` exists (a dangling symlink counts: it is not ours to replace).
fn exists(path: &Path) -> Result<bool, StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("look at the store file", path, e)),
    }
}

/// Builds a new store under a temporary name (0600, in a 0700 directory),
/// with its tables, schema version and master-key check, closes it cleanly
/// and links it into place. Another process that created the store
/// meanwhile wins; its store is then opened (and found locked or not).
fn create_fresh(path: &Path, master: &MasterKey) -> Result<(), StoreError> {
    let dir = files::dir_of(path);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("create the store directory", dir, e))?;
    let tmp = files::temp_sibling(path, "new");
    files::create_private(&tmp).map_err(|e| io_err("create the store file", &tmp, e))?;
    let built = guarded(&tmp, || builder().create(&tmp))
        .and_then(|db| init_tables(&tmp, &db, master, true));
    let synced = built.and_then(|()| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("sync the new store file", &tmp, e))
    });
    if let Err(e) = synced {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    match files::place(&tmp, path, false) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create the store file", path, e)),
    }
}

/// Sets the file's mode to 0600; a failure is logged, not fatal (the
/// file may belong to another user who let us write it).
fn restrict_mode(path: &Path) {
    let loose = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777 != 0o600)
        .unwrap_or(false);
    if loose && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot set the store file's mode to 0600");
    }
}

/// Checks the schema version and, given the master key, the key check.
/// Returns whether the store is blank and must be initialised: a redb file
/// without a single table, which an older keyrot could leave when stopped
/// while creating it. A file with tables but no schema version is not a
/// keyrot store and is refused.
fn check_meta(
    path: &Path,
    db: &impl ReadableDatabase,
    master: Option<&MasterKey>,
) -> Result<bool, StoreError> {
    let txn = db
        .begin_read()
        .map_err(backend("starting a read transaction"))?;
    let state = read_meta(path, &txn)?;
    check_version(path, state.version)?;
    match (state.version, &state.key_check, master) {
        (None, _, Some(_)) if !has_tables(&txn)? => Ok(true),
        (None, _, _) => Err(corrupt(path, "no schema version: not a keyrot store")),
        (Some(_), None, _) => Err(corrupt(path, "the meta table has no master-key check")),
        (Some(_), Some(sealed), Some(master)) => match master.open(KEY_CHECK_AAD, sealed) {
            Ok(_) => Ok(false),
            Err(_) => Err(StoreError::WrongMasterKey {
                path: path.to_path_buf(),
            }),
        },
        (Some(_), Some(_), None) => Ok(false),
    }
}

/// Whether the database holds any table.
fn has_tables(txn: &ReadTransaction) -> Result<bool, StoreError> {
    Ok(txn
        .list_tables()
        .map_err(backend("listing tables"))?
        .next()
        .is_some())
}

/// Reads the schema version and key check, if the meta table exists.
fn read_meta(path: &Path, txn: &ReadTransaction) -> Result<MetaState, StoreError> {
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => {
            return Ok(MetaState {
                version: None,
                key_check: None,
            });
        }
        Err(e) => return Err(backend("opening meta")(e)),
    };
    let version = match meta.get(META_SCHEMA).map_err(backend("reading meta"))? {
        None => None,
        Some(v) => Some(
            <[u8; 8]>::try_from(v.value())
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt(path, "the schema version is not 8 bytes"))?,
        ),
    };
    let key_check = meta
        .get(META_KEY_CHECK)
        .map_err(backend("reading meta"))?
        .map(|v| v.value().to_vec());
    Ok(MetaState { version, key_check })
}

/// Refuses stores written by a newer keyrot (or of an unknown version).
fn check_version(path: &Path, version: Option<u64>) -> Result<(), StoreError> {
    match version {
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        }),
        // Version 1 is the first schema: no migrations exist yet.
        Some(0) => Err(corrupt(
            path,
            "schema version 0 was never written by keyrot",
        )),
        _ => Ok(()),
    }
}

/// Creates every table and, for a fresh store, writes the schema version
/// and the master-key check, in one durable transaction.
fn init_tables(
    path: &Path,
    db: &Database,
    master: &MasterKey,
    fresh: bool,
) -> Result<(), StoreError> {
    let mut txn = db
        .begin_write()
        .map_err(backend("starting a write transaction"))?;
    txn.set_durability(Durability::Immediate)
        .map_err(backend("setting durability"))?;
    let indexed = fresh || has_table(&txn, "latest_rotation")?;
    create_tables(&txn)?;
    if !indexed {
        index_rotations(&txn)?;
    }
    if fresh {
        let check = master
            .try_seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
            .map_err(|source| StoreError::Seal {
                rotation: "(master key check)".into(),
                source,
            })?;
        let mut meta = txn.open_table(META).map_err(backend("opening meta"))?;
        meta.insert(META_SCHEMA, SCHEMA_VERSION.to_be_bytes().as_slice())
            .map_err(backend("writing meta"))?;
        meta.insert(META_KEY_CHECK, check.as_slice())
            .map_err(backend("writing meta"))?;
    }
    {
        let mut meta = txn.open_table(META).map_err(backend("opening meta"))?;
        if meta
            .get(META_INSTALLATION)
            .map_err(backend("reading meta"))?
            .is_none()
        {
            let bytes: [u8; 10] = rand::random();
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            meta.insert(META_INSTALLATION, id.as_bytes())
                .map_err(backend("writing meta"))?;
        }
    }
    txn.commit().map_err(|e| commit_failed(path, e))
}

/// Whether the write transaction sees a table named `name`.
fn has_table(txn: &WriteTransaction, name: &str) -> Result<bool, StoreError> {
    Ok(txn
        .list_tables()
        .map_err(backend("listing tables"))?
        .any(|t| t.name() == name))
}

/// Builds the `latest_rotation` index of a store that has none (written
/// by an older keyrot, or restored from a backup): one pass over the
/// rotations, once.
fn index_rotations(txn: &WriteTransaction) -> Result<(), StoreError> {
    let rots = txn
        .open_table(ROTATIONS)
        .map_err(backend("opening rotations"))?;
    let mut latest = txn
        .open_table(LATEST)
        .map_err(backend("opening latest_rotation"))?;
    let mut n = 0usize;
    // Rotations come in id order: the last one seen of a slot is its latest.
    for item in rots.iter().map_err(backend("scanning rotations"))? {
        let (k, v) = item.map_err(backend("scanning rotations"))?;
        let rec: Glance = decode("rotations", k.value(), v.value())?;
        latest
            .insert(
                rec.slot.as_str(),
                (k.value(), state_name(rec.state).as_str()),
            )
            .map_err(backend("indexing rotations"))?;
        n += 1;
    }
    tracing::info!(rotations = n, "indexed the store's rotations");
    Ok(())
}

/// What indexing needs of a rotation record.
#[derive(serde::Deserialize)]
struct Glance {
    /// Its slot.
    slot: String,
    /// Its state.
    state: RotationState,
}

/// Opens (so creates) every table.
fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    let op = "creating tables";
    txn.open_table(KEYS).map_err(backend(op))?;
    txn.open_table(ROTATIONS).map_err(backend(op))?;
    txn.open_table(KEY_ROTATIONS).map_err(backend(op))?;
    txn.open_table(SECRETS).map_err(backend(op))?;
    txn.open_table(OUTBOX).map_err(backend(op))?;
    txn.open_table(AUDIT).map_err(backend(op))?;
    txn.open_table(META).map_err(backend(op))?;
    txn.open_table(DUE).map_err(backend(op))?;
    txn.open_table(LOCAL_KEYS).map_err(backend(op))?;
    txn.open_table(ACTIVE).map_err(backend(op))?;
    txn.open_table(LATEST).map_err(backend(op))?;
    Ok(())
}
