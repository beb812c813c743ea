//! The store: one redb file (or a PostgreSQL database, `pg/`) holding the
//! inventory, rotations, sealed secrets, the outbox, the audit chain, the
//! due index and the local provider's registry.
//!
//! It owns every redb and PostgreSQL call in keyrot (the PostgreSQL
//! backend keeps the same tables and operations on a database several
//! hosts share, with a leader lease that fences every write: `lease.rs`),
//! the at-rest encryption of secrets under the master key, the schema
//! version and the hash-chained audit log. It does not
//! decide anything: the state machine decides what to write, and writes it
//! through [`Store::write`], one durable transaction per transition.
//!
//! Concurrency: one process owns the file (redb locks it); a second open,
//! read-write or read-only, gets [`StoreError::Locked`]. Inside the owning
//! process the store is `Send + Sync` and shared in an `Arc`. Reads run in
//! their own snapshot and never wait; [`Store::write`] blocks while another
//! write runs, so async code calls it through `spawn_blocking`.
//!
//! Moving between backends: [`Store::backup_image`] takes either one as a
//! redb image, [`Store::import_image`] fills an empty PostgreSQL store
//! from one, and [`migrate`] does both ways with every check
//! (`keyrot store migrate`).
//!
//! Durability: [`Store::write`] returns only once its commit is durable.
//! Concurrent writes share fsyncs (group commit, `group.rs`); a lone write
//! commits with immediate durability as before. A reader that acts outside
//! keyrot on what it read, with no write of its own in between, calls
//! [`Store::flush`] first (a read may see a commit that is not durable
//! yet). A failed commit returns [`StoreError::CommitFailed`]; it is fatal
//! (the commit may already be durable and redb refuses further writes), so
//! the daemon exits non-zero and systemd restarts it; resume does the rest.

mod audit;
mod backup;
mod checks;
mod error;
mod files;
mod group;
mod guard;
mod image;
mod lease;
mod migrate;
mod open;
mod orphans;
mod pg;
mod prune;
mod read;
mod read_secrets;
mod read_stats;
mod tables;
mod tx;
mod verify;

#[cfg(test)]
mod tests;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use redb::{Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase};

use group::{Flushed, Group};

pub use backup::{BackupSummary, write_backup};
pub use error::StoreError;
pub use group::CommitStats;
pub use migrate::{MigrateReport, MigrateTo, migrate};
pub use pg::{ImportSummary, LeaseInfo, PgOptions};
pub use prune::{PRUNE_BATCH, PruneReport};
pub use read::{OldKeyGlance, RotationGlance};
pub use tables::SCHEMA_VERSION;
pub use tx::Tx;
use tx::TxInner;
pub use verify::{TableCount, VerifyReport, verify_file, verify_image};

use crate::crypto::MasterKey;
use error::backend;

/// What a due-index entry wakes the scheduler for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DueTarget {
    /// A key slot's next rotation start (`KeyRecord::next_due`).
    Key(String),
    /// A rotation's timer: its retry backoff (`retry_at`) or, in Overlap,
    /// the old key's revoke time (`revoke_old_at`).
    Rotation(String),
}

/// A key minted by the `local` provider (its registry).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalKey {
    /// Key id.
    pub id: String,
    /// Key name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creator.
    pub created_by: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// SHA-256 hex of the secret (the secret itself is not kept).
    pub secret_sha256: String,
    /// Rotation id the key was issued for.
    pub tag: Option<String>,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
    /// Last successful verify.
    pub last_used_at: Option<Timestamp>,
}

/// Record counts, for `keyrot status` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Key slots in the inventory.
    pub keys: u64,
    /// Rotations, finished or not.
    pub rotations: u64,
    /// Sealed secrets currently held.
    pub secrets: u64,
    /// Outbox messages waiting to be sent.
    pub outbox_queued: u64,
    /// Outbox messages given up on.
    pub outbox_dead: u64,
    /// Audit entries.
    pub audit_entries: u64,
}

/// The open database: read-write (owning process) or read-only (CLI when
/// no daemon runs).
enum Db {
    /// Opened by the owning process.
    ReadWrite(Database),
    /// Opened read-only, shared with other read-only opens.
    ReadOnly(ReadOnlyDatabase),
    /// A store left by a crash, recovered in a private copy in memory
    /// (read-only use; the file keeps its shared locks until dropped).
    Image(Database),
    /// A PostgreSQL database (`[store] backend = "postgres"`).
    Postgres(pg::PgStore),
}

/// The store handle. `Send + Sync`; share it in an `Arc`.
pub struct Store {
    /// The database.
    db: Db,
    /// The master key; `None` for a read-only open.
    master: Option<Arc<MasterKey>>,
    /// The database file, for messages.
    path: PathBuf,
    /// Group commit: sequence numbers, durability, counters.
    group: Group,
}

impl Store {
    /// Opens or creates the store at `path` (parent directory created with
    /// mode 0700, file mode 0600), checks the schema version and that
    /// `master` is the key the store was created with.
    pub fn open(path: &Path, master: MasterKey) -> Result<Store, StoreError> {
        let db = open::open_read_write(path, &master)?;
        Ok(Store {
            db: Db::ReadWrite(db),
            master: Some(Arc::new(master)),
            path: path.to_path_buf(),
            group: Group::default(),
        })
    }

    /// Opens an existing store read-only, without the master key: every
    /// read works except [`Store::secret`]; [`Store::write`] fails. Fails
    /// with [`StoreError::Locked`] while the daemon holds the store. A
    /// store left by a crash is read from a copy recovered in memory; the
    /// file itself is never written.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let db = open::open_read_only(path)?;
        Ok(Store {
            db,
            master: None,
            path: path.to_path_buf(),
            group: Group::default(),
        })
    }

    /// Opens the store in the PostgreSQL database `url` names (a secret:
    /// it may carry a password), creating its tables when missing, and
    /// checks the schema version and that `master` is the key the store
    /// was created with. Without a master key, every read works except
    /// [`Store::secret`], and [`Store::write`] fails. [`Store::path`] is
    /// then a label naming the database (no password), for messages.
    pub fn open_postgres(
        url: &secrecy::SecretString,
        opts: &PgOptions,
        master: Option<MasterKey>,
    ) -> Result<Store, StoreError> {
        let (store, label) = pg::PgStore::open(url, opts, master.as_ref())?;
        Ok(Store {
            db: Db::Postgres(store),
            master: master.map(Arc::new),
            path: PathBuf::from(label),
            group: Group::default(),
        })
    }

    /// Whether the store is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// The database file (for PostgreSQL, a label naming the database).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.master.is_none()
    }

    /// Runs `f` in one write transaction, commits it and returns once the
    /// commit is durable. When `f` returns `Err`, nothing it wrote is kept.
    /// Blocks while another write runs and until a durable commit covers
    /// this one (shared with concurrent writes: group commit): call it from
    /// `spawn_blocking`.
    ///
    /// A [`StoreError::CommitFailed`] is fatal: the process must exit
    /// non-zero (redb refuses further writes until the file is reopened);
    /// every later write returns it too.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (db, master) = match (&self.db, &self.master) {
            (Db::Postgres(pg), Some(master)) => return self.write_pg(pg, master, f),
            (Db::ReadWrite(db), Some(master)) => (db, master),
            _ => return Err(self.read_only("writing")),
        };
        let writer = self.group.enter()?;
        let txn = db
            .begin_write()
            .map_err(backend("starting a write transaction"))?;
        let mut tx = Tx::redb(txn, Arc::clone(master));
        // On Err, dropping `tx` aborts the transaction.
        let out = f(&mut tx)?;
        crate::failpoint::hit("before:commit").map_err(|e| StoreError::Other(e.message))?;
        let ticket = self.group.start(writer);
        let durability = if ticket.durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        let mut txn = tx.into_redb()?;
        txn.set_durability(durability)
            .map_err(backend("setting durability"))?;
        if let Err(e) = txn.commit() {
            let e = error::commit_failed(&self.path, e);
            self.group.failed(&e);
            return Err(e);
        }
        self.group.committed(ticket);
        if !ticket.durable {
            self.group.wait(ticket.seq, || self.flush_commit(db))?;
        }
        crate::failpoint::hit("after:commit").map_err(|e| StoreError::Other(e.message))?;
        Ok(out)
    }

    /// [`Store::write`] on PostgreSQL: every commit is durable when it
    /// returns, so there is no group to wait for.
    fn write_pg<T>(
        &self,
        pg: &pg::PgStore,
        master: &Arc<MasterKey>,
        f: impl FnOnce(&mut Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let writer = self.group.enter()?;
        let mut tx = Tx {
            inner: TxInner::Pg(pg.begin(Arc::clone(master))?),
        };
        let out = f(&mut tx)?;
        crate::failpoint::hit("before:commit").map_err(|e| StoreError::Other(e.message))?;
        let ticket = self.group.start(writer);
        let TxInner::Pg(txn) = tx.inner else {
            return Err(StoreError::Other(
                "a PostgreSQL write without its transaction".into(),
            ));
        };
        if let Err(e) = txn.commit() {
            self.group.failed(&e);
            return Err(e);
        }
        self.group.committed(group::Ticket {
            durable: true,
            ..ticket
        });
        crate::failpoint::hit("after:commit").map_err(|e| StoreError::Other(e.message))?;
        Ok(out)
    }

    /// Returns once every commit made so far is durable; at once when none
    /// is pending (and on a read-only open). Call it between reading the
    /// store and acting outside keyrot on what was read, when no write of
    /// the caller's own comes in between: a read may see a commit that a
    /// crash would still take back.
    pub fn flush(&self) -> Result<(), StoreError> {
        let Db::ReadWrite(db) = &self.db else {
            return Ok(());
        };
        let upto = self.group.last_started();
        self.group.wait(upto, || self.flush_commit(db))
    }

    /// Commit counters since the store was opened.
    pub fn commit_stats(&self) -> CommitStats {
        self.group.stats()
    }

    /// Makes every later write fail as a failed commit does, for tests of
    /// what keyrot does then.
    #[cfg(any(test, feature = "testkit"))]
    pub fn fail_commits_for_test(&self, msg: &str) {
        self.group.fail_for_test(msg);
    }

    /// Turns group commit off (every commit then fsyncs on its own, as
    /// keyrot did before group commit) or back on. For benchmarks that
    /// measure what group commit gains; durability is the same either way.
    pub fn set_group_commit(&self, on: bool) {
        self.group.set_enabled(on);
    }

    /// One durable commit covering every commit started so far: an empty
    /// write transaction committed with immediate durability (redb writes
    /// its header and fsyncs for an empty one too), or nothing when a
    /// commit made while this one waited for the write lock covered it.
    fn flush_commit(&self, db: &Database) -> Result<Flushed, StoreError> {
        let mut txn = db.begin_write().map_err(|e| {
            StoreError::CommitFailed(format!(
                "store {}: starting a flush of earlier commits: {e}",
                self.path.display()
            ))
        })?;
        // The write lock is held: every commit numbered so far has ended.
        let Some(upto) = self.group.pending() else {
            txn.abort()
                .map_err(backend("dropping an empty transaction"))?;
            return Ok(Flushed {
                upto: 0,
                committed: false,
            });
        };
        txn.set_durability(Durability::Immediate)
            .map_err(backend("setting durability"))?;
        txn.commit()
            .map_err(|e| error::commit_failed(&self.path, e))?;
        Ok(Flushed {
            upto,
            committed: true,
        })
    }

    /// Runs `f` in a read snapshot. redb may panic on a page altered
    /// behind its back; such a panic becomes [`StoreError::Corrupt`].
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let run = || {
            let txn = match &self.db {
                Db::ReadWrite(db) | Db::Image(db) => db.begin_read(),
                Db::ReadOnly(db) => db.begin_read(),
                Db::Postgres(_) => return Err(self.read_only("reading through redb")),
            }
            .map_err(backend("starting a read transaction"))?;
            f(&txn)
        };
        catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
            Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: "the database engine failed while reading it".into(),
            })
        })
    }

    /// The error for `what` on a read-only store.
    fn read_only(&self, what: &'static str) -> StoreError {
        StoreError::ReadOnly {
            path: self.path.clone(),
            what,
        }
    }
}
