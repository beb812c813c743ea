//! How every redb database of the store is opened and guarded: one
//! builder's settings, redb's open errors mapped to what an operator must
//! do, and a panic of the database engine (on a file altered behind its
//! back) turned into [`StoreError::Corrupt`]. A leaf: the opening
//! sequence ([`super::open`]), the private recovery copy
//! ([`super::image`]), backups and verification all use it.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{Builder, DatabaseError, StorageError};

use super::StoreError;

/// Page cache size: the store is small, redb's default (1 GiB) is not.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The builder every open uses.
pub(super) fn builder() -> Builder {
    let mut b = Builder::new();
    b.set_cache_size(CACHE_BYTES);
    b
}

/// Runs a redb open, turning its errors, and a panic (redb may panic on a
/// file altered behind its back), into store errors.
pub(super) fn guarded<T>(
    path: &Path,
    open: impl FnOnce() -> Result<T, DatabaseError>,
) -> Result<T, StoreError> {
    match catch_unwind(AssertUnwindSafe(open)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(map_open_error(path, e)),
        Err(_) => Err(corrupt(
            path,
            "the database engine failed while reading the file",
        )),
    }
}

/// Maps an open error to what the operator must do.
pub(super) fn map_open_error(path: &Path, e: DatabaseError) -> StoreError {
    let path_buf = path.to_path_buf();
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Locked { path: path_buf }
        }
        DatabaseError::RepairAborted => StoreError::NeedsRecovery { path: path_buf },
        DatabaseError::UpgradeRequired(v) => corrupt(
            path,
            &format!("its file format version {v} is not one this keyrot reads"),
        ),
        DatabaseError::Storage(StorageError::Corrupted(detail)) => corrupt(path, &detail),
        // redb reports a file that is not a redb database as invalid data.
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == io::ErrorKind::InvalidData =>
        {
            corrupt(path, &source.to_string())
        }
        // A read past the end: the file is shorter than its own layout.
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == io::ErrorKind::UnexpectedEof =>
        {
            corrupt(
                path,
                &format!("it ends before the data it should hold (truncated?): {source}"),
            )
        }
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == io::ErrorKind::NotFound =>
        {
            StoreError::NotFound { path: path_buf }
        }
        DatabaseError::Storage(StorageError::Io(source)) => io_err("open the store", path, source),
        other => StoreError::Backend {
            op: "opening the store",
            detail: other.to_string(),
        },
    }
}

/// Runs `f`, turning a panic of the database engine (on a page altered
/// behind its back) into [`StoreError::Corrupt`].
pub(super) fn no_panic<T>(
    path: &Path,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(corrupt(
            path,
            "the database engine failed while reading the file",
        ))
    })
}

/// A [`StoreError::Corrupt`] for `path`.
pub(super) fn corrupt(path: &Path, detail: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.to_owned(),
    }
}

/// A [`StoreError::Io`].
pub(super) fn io_err(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: PathBuf::from(path),
        source,
    }
}
