//! Private in-memory images of a store file, for everything that must never
//! write to the file: the trial open that precedes the read-write open of a
//! file left by a crash (a file redb would have to repair is repaired in a
//! copy first, and refused when that fails; a cleanly closed file is only
//! probed, see `open.rs`), reading a store left by a crash without the daemon,
//! `keyrot store verify` (redb's integrity check repairs what it can, so it
//! runs on a copy) and building a backup.
//!
//! [`ImageBackend`] is a redb storage backend over a byte vector. Made from
//! a file, it holds the file open read-only (so no write can reach it, by
//! construction), takes the locks redb asks for as *shared* locks on the
//! file (a daemon cannot open the file meanwhile, and the copy is refused
//! while one has it open), and loads the bytes only once those locks are
//! held: the copy is of a file no keyrot process is writing.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::backends::FileBackend;
use redb::{BackendError, Database, StorageBackend};

use super::StoreError;
use super::guard::{builder, guarded, io_err};

/// The bytes behind an [`ImageBackend`], shared with whoever made it so
/// that they can be taken back once redb has closed the database.
#[derive(Clone, Default)]
pub(super) struct ImageBytes(Arc<Mutex<Option<Vec<u8>>>>);

impl ImageBytes {
    /// Locks the bytes (a panic elsewhere does not make them unusable).
    fn lock(&self) -> MutexGuard<'_, Option<Vec<u8>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the bytes out (empty when they were never loaded).
    pub(super) fn take(&self) -> Vec<u8> {
        self.lock().take().unwrap_or_default()
    }
}

/// A redb backend over bytes in memory, loaded from a file or given.
pub(super) struct ImageBackend {
    /// The file the bytes come from, opened read-only: redb's locks are
    /// taken on it (shared), and its bytes are loaded on first access.
    file: Option<FileBackend>,
    /// The image; `None` until loaded from `file`.
    bytes: ImageBytes,
}

// Hand-written: never print the bytes (they hold sealed secrets).
impl fmt::Debug for ImageBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageBackend")
            .field("from_file", &self.file.is_some())
            .field("len", &self.bytes.lock().as_ref().map(Vec::len))
            .finish()
    }
}

impl ImageBackend {
    /// A backend over `bytes` (empty: redb initialises a new database).
    pub(super) fn memory(bytes: Vec<u8>) -> (ImageBackend, ImageBytes) {
        let shared = ImageBytes(Arc::new(Mutex::new(Some(bytes))));
        let backend = ImageBackend {
            file: None,
            bytes: shared.clone(),
        };
        (backend, shared)
    }

    /// A backend over a copy of the file at `path`, which is opened
    /// read-only and never written.
    pub(super) fn of_file(path: &Path) -> Result<ImageBackend, StoreError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound {
                path: path.to_path_buf(),
            },
            _ => io_err("open the store", path, e),
        })?;
        let file = FileBackend::new(file).map_err(|e| StoreError::Backend {
            op: "opening the store",
            detail: e.to_string(),
        })?;
        Ok(ImageBackend {
            file: Some(file),
            bytes: ImageBytes::default(),
        })
    }

    /// Runs `f` on the image, loading it from the file first if needed.
    fn with_bytes<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> io::Result<R>) -> io::Result<R> {
        let mut guard = self.bytes.lock();
        if guard.is_none() {
            let mut buf = Vec::new();
            if let Some(file) = &self.file {
                let len = usize::try_from(file.len()?).map_err(|_| too_large())?;
                buf = vec![0; len];
                file.read(0, &mut buf)?;
            }
            *guard = Some(buf);
        }
        match guard.as_mut() {
            Some(bytes) => f(bytes),
            None => Err(io::Error::other("store image not loaded")),
        }
    }

    /// The file, for its locks.
    fn locks(&self) -> Result<&FileBackend, BackendError> {
        self.file.as_ref().ok_or(BackendError::Unsupported)
    }
}

/// The error for an offset or length that does not fit in memory.
fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "offset beyond the store image")
}

/// The byte range `offset..offset + len` of an image of `size` bytes.
fn span(offset: u64, len: usize, size: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| too_large())?;
    let end = start.checked_add(len).ok_or_else(too_large)?;
    if end > size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read beyond the end of the store image",
        ));
    }
    Ok(start..end)
}

impl StorageBackend for ImageBackend {
    fn len(&self) -> io::Result<u64> {
        self.with_bytes(|b| Ok(b.len() as u64))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.with_bytes(|b| {
            let range = span(offset, out.len(), b.len())?;
            out.copy_from_slice(&b[range]);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| too_large())?;
        self.with_bytes(|b| {
            b.resize(len, 0);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with_bytes(|b| {
            let range = span(offset, data.len(), b.len())?;
            b[range].copy_from_slice(data);
            Ok(())
        })
    }

    fn close(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => file.close(),
            None => Ok(()),
        }
    }

    // Every lock redb takes, exclusive or not, is taken shared on the file:
    // this process only reads it, and a shared lock is what keeps a writer
    // (the daemon) out while letting other readers in.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.locks()?.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.locks()?.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks()?.lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks()?.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks()?.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.locks()?.query_lock_range(start, end)
    }
}

/// A database opened on an image.
pub(super) struct OpenImage {
    /// The database, in memory.
    pub db: Database,
    /// Whether redb had to recover the image (the file was not shut down
    /// cleanly, or is open in a live writer).
    pub recovered: bool,
}

/// Opens `backend` as a database; a file that needs recovery is recovered
/// in the image. `path` names the file in errors.
pub(super) fn open(path: &Path, backend: ImageBackend) -> Result<OpenImage, StoreError> {
    let recovered = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&recovered);
    let mut b = builder();
    b.set_repair_callback(move |_| flag.store(true, Ordering::Relaxed));
    let db = guarded(path, || b.create_with_backend(backend))?;
    Ok(OpenImage {
        db,
        recovered: recovered.load(Ordering::Relaxed),
    })
}

/// Runs redb's integrity check (every page checksum of the committed
/// trees, and the allocator state) on an image: `Ok(true)` when clean,
/// `Ok(false)` when redb found something it could repair (in the image
/// only), [`StoreError::Corrupt`] when it could not.
pub(super) fn check_integrity(path: &Path, db: &mut Database) -> Result<bool, StoreError> {
    guarded(path, || db.check_integrity())
}

/// Opens the file at `path` in a private image and checks it. Never writes
/// the file; holds shared locks on it until the returned image is dropped.
pub(super) fn trial(path: &Path) -> Result<(OpenImage, bool), StoreError> {
    if std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(false)
    {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: "the file is empty (0 bytes)".into(),
        });
    }
    let mut image = open(path, ImageBackend::of_file(path)?)?;
    let clean = check_integrity(path, &mut image.db)?;
    Ok((image, clean))
}
