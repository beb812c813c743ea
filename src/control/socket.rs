//! Creating the control socket file.
//!
//! `bind(2)` creates a socket file with the process umask's mode, and no
//! call sets a socket file's mode before it exists, so there is always a
//! moment between `bind` and `chmod` when the socket may be open to the
//! wrong users; a connection made then would outlive the `chmod`. keyrot
//! binds inside a fresh directory of mode 0700 (created with `mkdir`, so
//! it fails rather than reuse a directory someone else made), gives the
//! socket its mode there, then renames it into place: no other user can
//! reach the socket until it has its final mode. The umask is left alone
//! (it belongs to the whole process, and other threads create files).

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Binds the control socket at `path` with file mode `mode` (e.g. 0o660).
///
/// An existing socket file is replaced only when nothing answers on it (a
/// daemon that died without cleaning up); a live one is
/// [`io::ErrorKind::AddrInUse`], and a file that is not a socket is left
/// alone ([`io::ErrorKind::AlreadyExists`]). Must run inside a tokio
/// runtime.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    bind_staged(path, mode, |_| {})
}

/// [`bind`], calling `staged` with the socket's path after `bind(2)` and
/// before its mode is set (tests look at where it is then).
pub(super) fn bind_staged(
    path: &Path,
    mode: u32,
    staged: impl FnOnce(&Path),
) -> io::Result<UnixListener> {
    check_existing(path)?;
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)?;
    let private = private_dir(&dir)?;
    let tmp = private.join("s");
    let placed = UnixListener::bind(&tmp).and_then(|listener| {
        staged(&tmp);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    });
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let _ = std::fs::remove_dir(&private);
    placed
}

/// A new directory of mode 0700 beside `path`, with a random name; never
/// an existing one. Its name and the socket's inside it are short: the
/// staged path must fit in `sun_path` (108 bytes) like the final one, and
/// is its directory's plus 19 bytes.
fn private_dir(dir: &Path) -> io::Result<PathBuf> {
    let private = dir.join(format!(".keyrot.{:08x}", rand::random::<u32>()));
    // The umask can only take bits away from 0700.
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    Ok(private)
}

/// Refuses a live socket or a non-socket at `path`; removes a stale socket.
fn check_existing(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; keyrot will not replace it: move it away or set daemon.control_socket",
                path.display()
            ),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another process (a running keyrot?) answers on {}; stop it first",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing a stale control socket");
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Before its mode is set, the socket sits in a directory only
    /// keyrot's user can enter, not in the socket's own directory (which
    /// others may enter); afterwards nothing but the socket is left.
    #[tokio::test]
    async fn the_socket_is_unreachable_until_it_has_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("control.sock");
        let mut seen = None;
        let listener = bind_staged(&path, 0o660, |staged| {
            let parent = staged.parent().unwrap().to_path_buf();
            let meta = std::fs::metadata(&parent).unwrap();
            seen = Some((parent, meta.mode() & 0o777, meta.uid()));
        })
        .unwrap();
        let (parent, mode, uid) = seen.unwrap();
        assert_ne!(parent, dir.path(), "bound in the socket's own directory");
        assert_eq!(mode, 0o700, "the staging directory is open to others");
        // SAFETY: geteuid(2) cannot fail.
        assert_eq!(uid, unsafe { libc::geteuid() });
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o660);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["control.sock"], "the staging directory is gone");
        drop(listener);
    }
}
