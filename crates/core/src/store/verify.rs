//! `keyrot store verify`: everything that can be checked about a store,
//! on a private in-memory image of it so that the file is never written.
//!
//! The checks: redb's integrity check (every page checksum of the committed
//! trees, and the allocator state); the schema version and the master-key
//! check; that every row of every table decodes and is filed under its own
//! id; the audit log's hash chain and head; that every sealed secret opens
//! under the master key; and the cross-references the store keeps in step
//! in each transaction: every rotation is listed under its slot, and an
//! unfinished one has a slot; `active` and each slot's `active_rotation`
//! agree and point at a rotation that is not finished; every due-index
//! entry points at an existing slot or rotation at the instant its record
//! says, and every record with an instant has its entry; every secret
//! belongs to an existing rotation. Rotations of a slot that was removed
//! from the configuration stay as history and are not a problem.
//!
//! Offline ([`verify_file`]), the image is loaded under shared locks on the
//! file (see [`super::image`]); in the daemon ([`Store::verify`]), it is
//! read while a write transaction is held open, so no commit is in progress
//! or can start while the file is copied.

use std::path::{Path, PathBuf};

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::checks::Checker;
use super::error::backend;
use super::guard::{io_err, no_panic};
use super::image::{self, ImageBackend, OpenImage};
use super::{Db, Store, StoreError};
use crate::crypto::MasterKey;

/// Most problems listed one by one; the rest are counted.
const MAX_PROBLEMS: usize = 100;

/// Rows in one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// Table name.
    pub table: String,
    /// Rows.
    pub rows: u64,
}

/// What `keyrot store verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The store file.
    pub path: PathBuf,
    /// Checked by the running daemon (true), or with the store closed.
    pub live: bool,
    /// The file was not shut down cleanly: the check ran on a copy
    /// recovered in memory (the daemon recovers the file at its next start).
    pub recovered: bool,
    /// redb's integrity check passed.
    pub integrity: bool,
    /// Schema version recorded in the store.
    pub schema_version: Option<u64>,
    /// Rows per table.
    pub tables: Vec<TableCount>,
    /// Audit entries in the log.
    pub audit_entries: u64,
    /// Sequence number of the first audit entry kept: 1, or the one after
    /// the entries `[store] audit_retention` deleted.
    pub audit_first: u64,
    /// The audit hash chain and its head verified.
    pub audit_chain_ok: bool,
    /// Whether the secrets were checked (the master key was available).
    pub secrets_checked: bool,
    /// Sealed secrets that opened under the master key.
    pub secrets_opened: u64,
    /// The master key given is not the store's (its check did not open).
    pub wrong_master_key: bool,
    /// Everything found wrong; empty when the store is sound.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// An empty report for `path`.
    fn new(path: &Path, live: bool) -> VerifyReport {
        VerifyReport {
            path: path.to_path_buf(),
            live,
            ..VerifyReport::default()
        }
    }

    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds a problem (only the first [`MAX_PROBLEMS`] are listed).
    pub fn problem(&mut self, text: impl Into<String>) {
        match self.problems.len() {
            n if n < MAX_PROBLEMS => self.problems.push(text.into()),
            n if n == MAX_PROBLEMS => self.problems.push("(more problems not listed)".into()),
            _ => {}
        }
    }
}

/// Verifies the store file at `path` with no daemon running. Without
/// `master`, secrets and the key check are not checked (the caller says
/// why in the report). Errors only when the file cannot be examined at all
/// (missing, unreadable, or held by a running keyrot); a damaged file is a
/// report with problems.
pub fn verify_file(path: &Path, master: Option<&MasterKey>) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::new(path, false);
    let len = std::fs::metadata(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound {
                path: path.to_path_buf(),
            },
            _ => io_err("examine the store", path, e),
        })?
        .len();
    if len == 0 {
        report.problem("the file is empty (0 bytes): it holds no store");
        return Ok(report);
    }
    match image::open(path, ImageBackend::of_file(path)?) {
        Ok(img) => check_image(&mut report, img, master),
        Err(e @ (StoreError::Locked { .. } | StoreError::Io { .. })) => return Err(e),
        Err(e) => report.problem(format!(
            "the database engine cannot open it: {}",
            detail(&e)
        )),
    }
    Ok(report)
}

impl Store {
    /// Verifies this store (see the module documentation). In the owning
    /// process the file is copied while a write transaction is held, so
    /// it blocks writes for as long as the copy takes.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let live = matches!(self.db, Db::ReadWrite(_) | Db::Postgres(_));
        let bytes = match &self.db {
            // The database's rows in one snapshot, as a redb image.
            Db::Postgres(pg) => Ok(pg.export_image(&self.path)?),
            Db::ReadWrite(db) => {
                // No commit runs while this transaction is open, and every
                // commit is durable before it returns: the file holds
                // exactly the last commit.
                let txn = db
                    .begin_write()
                    .map_err(backend("pausing writes to copy the store"))?;
                let bytes = std::fs::read(&self.path);
                txn.abort()
                    .map_err(backend("resuming writes after copying the store"))?;
                bytes
            }
            // This process holds the file with shared locks: no writer runs.
            Db::ReadOnly(_) | Db::Image(_) => std::fs::read(&self.path),
        }
        .map_err(|e| io_err("read the store", &self.path, e))?;
        let mut report = verify_image(&self.path, bytes, self.master.as_deref());
        report.live = live;
        // The live file always reads as "not shut down cleanly": it is open.
        report.recovered &= !live;
        Ok(report)
    }
}

/// Verifies the bytes of a redb store held in memory (say, from
/// [`Store::backup_image`]) as `keyrot store verify` checks a store;
/// `label` names it in the report. Without `master`, secrets and the key
/// check are not checked.
pub fn verify_image(label: &Path, image: Vec<u8>, master: Option<&MasterKey>) -> VerifyReport {
    let mut report = VerifyReport::new(label, false);
    match image::open(label, ImageBackend::memory(image).0) {
        Ok(img) => check_image(&mut report, img, master),
        Err(e) => report.problem(format!(
            "the database engine cannot open it: {}",
            detail(&e)
        )),
    }
    report
}

/// The detail of an error, without the advice [`StoreError::Corrupt`] adds.
fn detail(e: &StoreError) -> String {
    match e {
        StoreError::Corrupt { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// Runs redb's integrity check, then every record check, on an image.
fn check_image(report: &mut VerifyReport, img: OpenImage, master: Option<&MasterKey>) {
    report.recovered = img.recovered;
    let path = report.path.clone();
    let mut db = img.db;
    match image::check_integrity(&path, &mut db) {
        Ok(clean) => {
            report.integrity = clean;
            if !clean {
                report.problem("the database engine's integrity check found inconsistencies (it could repair them in the copy checked; the file is unchanged)");
            }
        }
        Err(e) => {
            report.problem(format!("integrity check failed: {}", detail(&e)));
            return;
        }
    }
    let outcome = no_panic(&path, || {
        let txn = db
            .begin_read()
            .map_err(backend("starting a read transaction"))?;
        Checker {
            report: &mut *report,
            master,
        }
        .run(&txn)
    });
    if let Err(e) = outcome {
        report.problem(format!("cannot read the tables: {}", detail(&e)));
    }
}
