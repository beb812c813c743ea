//! Files below a sink's directory, reached one path segment at a time
//! without following a symbolic link, so no name, no `..` and no link
//! swapped in meanwhile can make a write land outside that directory.
//!
//! The sink's directory is the part of its `path` template before the
//! first placeholder, up to that part's last `/` (`/var/lib/keyrot/out/`
//! for `/var/lib/keyrot/out/{name}.env`). It is the operator's choice and
//! is opened as configured, links included. Below it every segment is
//! opened with `openat(…, O_NOFOLLOW)` relative to the directory opened
//! before it, and the file is created, renamed and read relative to its
//! own directory's descriptor: a segment that is a link is refused, never
//! followed.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;
use zeroize::Zeroizing;

/// A file's place: the sink's directory and the segments below it.
#[derive(Clone, Debug)]
pub struct Place {
    /// The sink's directory (`.` for a template that starts with a
    /// placeholder).
    base: PathBuf,
    /// Directories between the base and the file.
    dirs: Vec<String>,
    /// The file's name.
    file: String,
}

/// Which file a write produced (device and inode), to tell keyrot's own
/// write from one that replaced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Device.
    dev: u64,
    /// Inode.
    ino: u64,
}

impl Place {
    /// The place of `filled`, the location `template` gave for a key.
    /// Refused when a segment below the sink's directory is `.` or `..`,
    /// or when nothing names a file.
    pub fn new(template: &str, filled: &str) -> Result<Place, String> {
        let fixed = &template[..template.find('{').unwrap_or(template.len())];
        let cut = fixed.rfind('/').map_or(0, |i| i + 1);
        // Placeholders (and a probe's last segment) come after the cut,
        // so the filled location starts with the same directory.
        if filled.get(..cut) != Some(&fixed[..cut]) {
            return Err(format!(
                "{filled:?} is not below the directory of {template:?}"
            ));
        }
        let base = match &fixed[..cut] {
            "" => PathBuf::from("."),
            b => PathBuf::from(b),
        };
        let mut segments: Vec<String> = filled[cut..]
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(s) = segments.iter().find(|s| *s == "." || *s == "..") {
            return Err(format!(
                "{filled:?} has a `{s}` segment below {}: it must stay in that directory",
                base.display()
            ));
        }
        let file = match (segments.pop(), filled.ends_with('/')) {
            (Some(f), false) => f,
            _ => return Err(format!("{filled:?} does not name a file")),
        };
        Ok(Place {
            base,
            dirs: segments,
            file,
        })
    }

    /// The path, for messages.
    pub fn display(&self) -> String {
        let mut p = self.base.clone();
        p.extend(&self.dirs);
        p.push(&self.file);
        p.display().to_string()
    }

    /// The file's directory, created (base and segments) when `create`;
    /// None when it does not exist and `create` is false.
    fn open_dir(&self, create: bool) -> std::io::Result<Option<OwnedFd>> {
        if create {
            fs::create_dir_all(&self.base)?;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir = match rustix::fs::openat(CWD, &self.base, flags, Mode::empty()) {
            Ok(d) => d,
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for seg in &self.dirs {
            if create {
                match rustix::fs::mkdirat(&dir, seg.as_str(), Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let nofollow = flags | OFlags::NOFOLLOW;
            dir = match rustix::fs::openat(&dir, seg.as_str(), nofollow, Mode::empty()) {
                Ok(d) => d,
                Err(Errno::NOENT) if !create => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => return Err(not_followed(seg)),
                Err(e) => return Err(e.into()),
            };
        }
        Ok(Some(dir))
    }

    /// Writes `bytes` atomically (a temporary file beside it, fsync,
    /// rename over the old file, fsync of the directory) with exactly
    /// `mode` and the given owner.
    pub fn write(
        &self,
        bytes: &[u8],
        mode: u32,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> std::io::Result<Written> {
        let dir = self
            .open_dir(true)?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        let tmp = format!(".{}.keyrot-tmp", self.file);
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut f = File::from(rustix::fs::openat(
            &dir,
            tmp.as_str(),
            flags,
            Mode::from_raw_mode(mode),
        )?);
        // The umask may have narrowed the mode; set exactly what was asked.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(&f, uid, gid)?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        let written = identity(&f)?;
        drop(f);
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, self.file.as_str())?;
        rustix::fs::fsync(&dir)?;
        Ok(written)
    }

    /// The file's bytes (wiped on drop) and which file it is; None when it
    /// (or its directory) does not exist.
    pub fn read(&self) -> std::io::Result<Option<(Zeroizing<Vec<u8>>, Written)>> {
        let Some(dir) = self.open_dir(false)? else {
            return Ok(None);
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut f = match rustix::fs::openat(&dir, self.file.as_str(), flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(not_followed(&self.file)),
            Err(e) => return Err(e.into()),
        };
        let written = identity(&f)?;
        let size = usize::try_from(f.metadata()?.len()).unwrap_or(0);
        // Sized up front so the buffer holding the secret never reallocates.
        let mut bytes = Zeroizing::new(Vec::with_capacity(size + 1));
        f.read_to_end(&mut bytes)?;
        Ok(Some((bytes, written)))
    }

    /// Removes the file if it is still `written` (keyrot's own write, not
    /// one that replaced it since); true when it was removed.
    pub fn remove_if(&self, written: Written) -> std::io::Result<bool> {
        let Some(dir) = self.open_dir(false)? else {
            return Ok(false);
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let same = match rustix::fs::openat(&dir, self.file.as_str(), flags, Mode::empty()) {
            Ok(fd) => identity(&fd)? == written,
            Err(Errno::NOENT | Errno::LOOP) => false,
            Err(e) => return Err(e.into()),
        };
        if same {
            rustix::fs::unlinkat(&dir, self.file.as_str(), AtFlags::empty())?;
            rustix::fs::fsync(&dir)?;
        }
        Ok(same)
    }
}

/// Device and inode of an open file.
fn identity(fd: impl AsFd) -> std::io::Result<Written> {
    let st = rustix::fs::fstat(fd)?;
    Ok(Written {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// The error for a segment that is a link (or not a directory).
fn not_followed(segment: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "{segment:?} is a symbolic link or not a directory; keyrot follows no link below the sink's directory"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_place_splits_at_the_directory_before_the_first_placeholder() {
        let p = Place::new("/srv/out/{provider}/{name}.env", "/srv/out/local/ci.env").unwrap();
        assert_eq!(p.base, PathBuf::from("/srv/out/"));
        assert_eq!(p.dirs, ["local"]);
        assert_eq!(p.file, "ci.env");
        let p = Place::new("{name}.json", "ci.json").unwrap();
        assert_eq!((p.base.to_str(), p.file.as_str()), (Some("."), "ci.json"));
        let p = Place::new("/run/app/token", "/run/app/keyrot-probe").unwrap();
        assert_eq!(p.display(), "/run/app/keyrot-probe");
        for (template, filled) in [
            ("/srv/{name}", "/srv/a/../../etc/passwd"),
            ("/srv/{name}/x", "/srv/./x"),
            ("/srv/{name}", "/srv/"),
            ("/srv/{name}", "/elsewhere/x"),
        ] {
            assert!(Place::new(template, filled).is_err(), "{filled}");
        }
    }

    #[test]
    fn a_link_below_the_directory_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let base = dir.path().join("base");
        fs::create_dir(&base).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), base.join("f")).unwrap();
        let template = format!("{}/{{name}}", base.display());
        let via_dir = Place::new(&template, &format!("{}/sub/f", base.display())).unwrap();
        let e = via_dir.write(b"x", 0o600, None, None).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(via_dir.read().is_err());
        // A link as the file itself is replaced by the rename, not written
        // through; reading one is refused.
        let file = Place::new(&template, &format!("{}/f", base.display())).unwrap();
        fs::write(outside.join("g"), "keep").unwrap();
        std::os::unix::fs::symlink(outside.join("g"), base.join("g")).unwrap();
        let link = Place::new(&template, &format!("{}/g", base.display())).unwrap();
        assert!(link.read().is_err());
        let w = file.write(b"secret", 0o600, None, None).unwrap();
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        assert_eq!(fs::read_to_string(outside.join("g")).unwrap(), "keep");
        assert_eq!(&file.read().unwrap().unwrap().0[..], b"secret");
        assert!(file.remove_if(w).unwrap());
        assert!(file.read().unwrap().is_none());
    }
}
