//! Moving a store between backends (`keyrot store migrate`).
//!
//! The source's rows are taken as one redb image ([`Store::backup_image`]:
//! one snapshot, on either backend) and checked as `keyrot store verify`
//! checks a store, with the master key: a source that does not verify, or
//! whose secrets are sealed under another key, is not copied. The image is
//! then written to the destination: an empty PostgreSQL store
//! ([`Store::import_image`], one transaction) or a new redb file
//! ([`write_backup`], then opened with the master key, which builds its
//! derived index). Last, the destination is verified: the same record
//! counts and audit chain length as the source, the same rows per table,
//! the same sealed secrets opening, and every check of `keyrot store
//! verify`.
//!
//! The source is only read. Secrets move sealed, never opened: both ends
//! use the same master key. Neither end may be in use by a daemon: the
//! caller opens both (a redb source read-only, a PostgreSQL end with the
//! master key, which takes its owner lock) before calling [`migrate`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Store, StoreError, StoreStats, TableCount, VerifyReport, verify_image, write_backup};
use crate::crypto::MasterKey;

/// Problems quoted in an error, at most.
const QUOTED_PROBLEMS: usize = 5;

/// Where [`migrate`] writes.
pub enum MigrateTo<'a> {
    /// An empty PostgreSQL store, opened with the master key.
    Postgres(&'a Store),
    /// A redb store file to create (it must not exist).
    Redb(&'a Path),
}

/// What [`migrate`] copied and checked.
#[derive(Clone, Debug)]
pub struct MigrateReport {
    /// The source (a file, or a label naming the database).
    pub source: PathBuf,
    /// The destination.
    pub destination: PathBuf,
    /// Record counts, equal at both ends.
    pub stats: StoreStats,
    /// Rows per table in the destination, as its verification counted
    /// them (equal to the source's, `meta` aside: a destination keeps its
    /// own installation id when the source has none).
    pub tables: Vec<TableCount>,
    /// Audit entries whose hash chain verified at both ends.
    pub audit_entries: u64,
    /// Sealed secrets that open under the master key at both ends.
    pub secrets_opened: u64,
    /// Size of the image copied, in bytes.
    pub image_bytes: u64,
    /// Taking the source's snapshot (counts, image).
    pub read: Duration,
    /// Checking the image as `keyrot store verify` does.
    pub check: Duration,
    /// Writing the destination.
    pub write: Duration,
    /// Verifying the destination.
    pub verify: Duration,
}

/// Copies `source` to `to` and verifies the copy (see the module
/// documentation); `master` is the key of both ends.
pub fn migrate(
    source: &Store,
    to: MigrateTo<'_>,
    master: &MasterKey,
) -> Result<MigrateReport, StoreError> {
    match &to {
        MigrateTo::Postgres(dest) if !dest.is_postgres() || dest.is_read_only() => {
            return Err(StoreError::Migration(format!(
                "the destination {} is not a PostgreSQL store opened with the master key",
                dest.path().display()
            )));
        }
        MigrateTo::Redb(path) if std::fs::symlink_metadata(path).is_ok() => {
            return Err(StoreError::Migration(format!(
                "{} exists: a migration to redb writes a new file; move that one aside, or name another",
                path.display()
            )));
        }
        _ => {}
    }
    let started = Instant::now();
    let stats = source.stats()?;
    let image = source.backup_image()?;
    let read = started.elapsed();

    let started = Instant::now();
    let checked = verify_image(source.path(), image.clone(), Some(master));
    if checked.wrong_master_key {
        return Err(StoreError::WrongMasterKey {
            path: source.path().to_path_buf(),
        });
    }
    if !checked.is_ok() {
        return Err(StoreError::Migration(format!(
            "the source {} does not verify ({}); nothing was written: run `keyrot store verify` on it, and repair or restore it first",
            source.path().display(),
            quote(&checked)
        )));
    }
    // The image's chain verified (else a problem above): its length is
    // the source's.
    let audit_entries = checked.audit_entries;
    let check = started.elapsed();

    let started = Instant::now();
    let opened;
    let (dest, remove) = match to {
        MigrateTo::Postgres(dest) => {
            dest.import_image(&image)?;
            (dest, "empty its keyrot_ tables (or drop the database)")
        }
        MigrateTo::Redb(path) => {
            write_backup(path, &image, false, None)?;
            opened = Store::open(path, master.clone())?;
            (&opened, "delete the file")
        }
    };
    let write = started.elapsed();

    let started = Instant::now();
    let unfit = |what: String| {
        StoreError::Migration(format!(
            "{what}; the copy in {} was written but does not match the source: {remove} before trying again (the source is unchanged)",
            dest.path().display()
        ))
    };
    let dest_stats = dest.stats()?;
    if dest_stats != stats {
        return Err(unfit(format!(
            "the destination holds {dest_stats:?}, the source {stats:?}"
        )));
    }
    let dest_audit = dest
        .verify_audit_chain()
        .map_err(|e| unfit(format!("the destination's audit chain: {e}")))?;
    if dest_audit != audit_entries {
        return Err(unfit(format!(
            "the destination's audit chain has {dest_audit} entries, the source's {audit_entries}"
        )));
    }
    let report = dest.verify()?;
    if !report.is_ok() {
        return Err(unfit(format!(
            "the destination does not verify ({})",
            quote(&report)
        )));
    }
    let data = |r: &VerifyReport| -> Vec<TableCount> {
        r.tables
            .iter()
            .filter(|t| t.table != "meta")
            .cloned()
            .collect()
    };
    if data(&report) != data(&checked) || report.secrets_opened != checked.secrets_opened {
        return Err(unfit(format!(
            "the destination's rows ({}; {} secrets open) differ from the source's ({}; {} secrets open)",
            rows(&report.tables),
            report.secrets_opened,
            rows(&checked.tables),
            checked.secrets_opened
        )));
    }
    Ok(MigrateReport {
        source: source.path().to_path_buf(),
        destination: dest.path().to_path_buf(),
        stats,
        tables: report.tables,
        audit_entries,
        secrets_opened: report.secrets_opened,
        image_bytes: image.len() as u64,
        read,
        check,
        write,
        verify: started.elapsed(),
    })
}

/// The first problems of a report, for an error message.
fn quote(report: &VerifyReport) -> String {
    let n = report.problems.len();
    let shown: Vec<&str> = report
        .problems
        .iter()
        .take(QUOTED_PROBLEMS)
        .map(String::as_str)
        .collect();
    let more = n.saturating_sub(QUOTED_PROBLEMS);
    match more {
        0 => shown.join("; "),
        _ => format!("{}; and {more} more", shown.join("; ")),
    }
}

/// Rows per table, as `keys 2, rotations 5`.
fn rows(tables: &[TableCount]) -> String {
    tables
        .iter()
        .map(|t| format!("{} {}", t.table, t.rows))
        .collect::<Vec<_>>()
        .join(", ")
}
