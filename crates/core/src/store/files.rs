//! Putting a whole file in place safely: written under a temporary name in
//! the target's directory with mode 0600, synced, then moved into place
//! (never over an existing file unless asked), and the directory synced.
//! Used to create a new store and to write a backup.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The directory holding `path` (`.` for a bare file name).
pub(super) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `dir/.NAME.PID.SUFFIX` beside `path`: private to this process.
pub(super) fn temp_sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyrot.redb".into());
    dir_of(path).join(format!(".{name}.{}.{suffix}", std::process::id()))
}

/// Creates `path` anew with mode 0600 (a stale file of that name, which
/// only this process can have made, is removed first).
pub(super) fn create_private(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to a new 0600 file at `path` and syncs it.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Moves the finished file `tmp` to `target`. Without `replace`, an
/// existing `target` is never touched: the move fails with
/// [`io::ErrorKind::AlreadyExists`] and `tmp` is removed. The directory is
/// synced so that the new name is durable.
pub(super) fn place(tmp: &Path, target: &Path, replace: bool) -> io::Result<()> {
    let placed = if replace {
        std::fs::rename(tmp, target)
    } else {
        // link(2) never replaces an existing name, unlike rename(2).
        match std::fs::hard_link(tmp, target) {
            Ok(()) => std::fs::remove_file(tmp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            // A file system without hard links: check, then rename.
            Err(_) if target.exists() => Err(io::ErrorKind::AlreadyExists.into()),
            Err(_) => std::fs::rename(tmp, target),
        }
    };
    if let Err(e) = placed {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(dir_of(target))
}

/// Syncs a directory, so that a rename or link in it is durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
