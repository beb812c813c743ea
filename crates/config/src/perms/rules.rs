//! The rules of [`super`]: whether a file or directory may be trusted,
//! given its owner, its mode bits and its POSIX ACL, and the sentence that
//! says what is wrong and how to fix it.

use std::collections::{HashMap, HashSet};
use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The read bit of a mode's triplet or of an ACL entry.
const READ: u32 = 0o4;
/// The write bit.
const WRITE: u32 = 0o2;
/// The sticky bit of a directory: only a file's owner may rename or remove it.
const STICKY: u32 = 0o1000;

/// The extended attribute that holds a file's access ACL.
const ACL_XATTR: &str = "system.posix_acl_access";
/// Version of the ACL xattr format (`posix_acl_xattr_header`).
const ACL_VERSION: u32 = 2;
/// ACL entry tags (`linux/posix_acl.h`).
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
/// Entries read at most; a longer ACL is judged by the mode bits alone
/// (which are never less strict).
const ACL_MAX_ENTRIES: usize = 1024;

/// What a file holds, which decides who else may touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holds {
    /// Configuration: others may read it, never write it.
    Config,
    /// A secret: others may neither read nor write it.
    Secret,
}

/// Checks files and directories against the users keyrot trusts (root and
/// its effective user), each directory once.
pub(crate) struct Checker {
    /// keyrot's effective uid.
    euid: u32,
    /// Its user name (or the number), for `chown` in the advice.
    user: String,
    /// Directories checked so far, and whether strictly.
    checked: HashMap<PathBuf, bool>,
    /// Messages already given (a directory shared by two files is named once).
    given: HashSet<String>,
}

impl Checker {
    /// A checker for this process's effective user.
    pub fn new() -> Checker {
        Checker::for_uid(effective_uid())
    }

    /// A checker for `euid` (tests run as root and pretend otherwise).
    pub fn for_uid(euid: u32) -> Checker {
        Checker {
            euid,
            user: user_name(euid),
            checked: HashMap::new(),
            given: HashSet::new(),
        }
    }

    /// Whether `uid` is trusted: root or keyrot's own user.
    fn trusted(&self, uid: u32) -> bool {
        uid == 0 || uid == self.euid
    }

    /// The problems of the file at `path` (following symlinks) and of the
    /// directories that hold it and, when `path` is a link, the link. A
    /// missing file has none here: reading it reports that.
    pub fn file(&mut self, path: &Path, holds: Holds) -> Vec<String> {
        let real = match fs::canonicalize(path) {
            Ok(real) => real,
            Err(e) if e.kind() == ErrorKind::NotFound => return Vec::new(),
            Err(e) => return vec![format!("cannot check {}: {e}", path.display())],
        };
        let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let shown = if is_link {
            format!(
                "{} (the target of the link {})",
                real.display(),
                path.display()
            )
        } else {
            real.display().to_string()
        };
        let mut out = Vec::new();
        match fs::metadata(&real) {
            Ok(meta) => self.file_meta(&real, &shown, &meta, holds, &mut out),
            Err(e) => out.push(format!("cannot check {shown}: {e}")),
        }
        if let Some(dir) = real.parent() {
            self.dirs(dir, true, &mut out);
        }
        // Whoever can write the link's directory can point it elsewhere.
        if is_link && let Ok(dir) = fs::canonicalize(parent_of(path)) {
            self.dirs(&dir, true, &mut out);
        }
        out
    }

    /// The problems of a directory a file will be created in (it may not
    /// exist yet: then those of the nearest one that does, which the
    /// new directories will be made in).
    pub fn dir(&mut self, dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut strict = true;
        for d in dir.ancestors() {
            let d = if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            };
            match fs::canonicalize(d) {
                Ok(real) => {
                    self.dirs(&real, strict, &mut out);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => strict = false,
                Err(e) => {
                    out.push(format!("cannot check directory {}: {e}", d.display()));
                    break;
                }
            }
        }
        out
    }

    /// Checks a regular file's owner and mode.
    fn file_meta(
        &mut self,
        real: &Path,
        shown: &str,
        meta: &Metadata,
        holds: Holds,
        out: &mut Vec<String>,
    ) {
        let mode = meta.mode() & 0o7777;
        let p = real.display();
        if !self.trusted(meta.uid()) {
            let can = match holds {
                Holds::Config => "change it",
                Holds::Secret => "read and change it",
            };
            self.give(
                out,
                format!(
                    "{shown} is owned by uid {}, not by root or keyrot's user ({}): its owner can {can}; run `chown {}: {p}`",
                    meta.uid(),
                    self.user,
                    self.user
                ),
            );
        }
        let writers = self.others_with(real, meta, WRITE);
        match holds {
            Holds::Config if !writers.is_empty() => self.give(
                out,
                format!(
                    "{shown} is writable by {} (mode {mode:04o}): they could make keyrot run their commands; run `chmod go-w {p}`",
                    writers.join(", ")
                ),
            ),
            Holds::Secret => {
                let readers = self.others_with(real, meta, READ);
                let mut what = Vec::new();
                if !readers.is_empty() {
                    what.push(format!("readable by {}", readers.join(", ")));
                }
                if !writers.is_empty() {
                    what.push(format!("writable by {}", writers.join(", ")));
                }
                if !what.is_empty() {
                    self.give(
                        out,
                        format!(
                            "{shown} is {} (mode {mode:04o}); a secret file must be private: run `chmod 600 {p}`",
                            what.join(" and ")
                        ),
                    );
                }
            }
            Holds::Config => {}
        }
    }

    /// Checks `dir` (canonical) and every directory above it: owned by a
    /// trusted user and writable by no one else. `dir` itself is checked
    /// strictly when `strict`; above it a sticky bit (`/tmp`) is enough,
    /// since it keeps others from renaming what they do not own.
    fn dirs(&mut self, dir: &Path, strict: bool, out: &mut Vec<String>) {
        let mut strict = strict;
        for d in dir.ancestors() {
            match self.checked.get(d) {
                Some(&done) if done || !strict => return,
                _ => {}
            }
            self.checked.insert(d.to_path_buf(), strict);
            let meta = match fs::metadata(d) {
                Ok(meta) => meta,
                Err(e) => {
                    self.give(out, format!("cannot check directory {}: {e}", d.display()));
                    return;
                }
            };
            let mode = meta.mode() & 0o7777;
            if !self.trusted(meta.uid()) {
                self.give(
                    out,
                    format!(
                        "directory {} is owned by uid {}, not by root or keyrot's user ({}): its owner can replace what it holds; run `chown {}: {}`",
                        d.display(),
                        meta.uid(),
                        self.user,
                        self.user,
                        d.display()
                    ),
                );
            }
            let writers = self.others_with(d, &meta, WRITE);
            if !writers.is_empty() && (strict || mode & STICKY == 0) {
                self.give(
                    out,
                    format!(
                        "directory {} is writable by {} (mode {mode:04o}): they could replace what it holds; run `chmod go-w {}`",
                        d.display(),
                        writers.join(", "),
                        d.display()
                    ),
                );
            }
            strict = false;
        }
    }

    /// Who other than the owner, root and keyrot's user has `bit` on the
    /// file: `group`, `others`, or the users and groups of ACL entries.
    fn others_with(&self, path: &Path, meta: &Metadata, bit: u32) -> Vec<String> {
        let mode = meta.mode();
        let mut who = Vec::new();
        // With an ACL the group bits are its mask: the entries decide.
        if (mode >> 3) & bit != 0 {
            match acl(path) {
                None => who.push("group".to_string()),
                Some(entries) => {
                    let mask = entries
                        .iter()
                        .find(|e| e.tag == ACL_MASK)
                        .map_or(0o7, |e| u32::from(e.perm));
                    for e in entries {
                        if u32::from(e.perm) & mask & bit == 0 {
                            continue;
                        }
                        match e.tag {
                            ACL_USER if !self.trusted(e.id) => who.push(format!("user {}", e.id)),
                            ACL_GROUP_OBJ => who.push("group".to_string()),
                            ACL_GROUP => who.push(format!("group {}", e.id)),
                            _ => {}
                        }
                    }
                }
            }
        }
        if mode & bit != 0 {
            who.push("others".to_string());
        }
        who
    }

    /// Adds `message` unless it was given already.
    fn give(&mut self, out: &mut Vec<String>, message: String) {
        if self.given.insert(message.clone()) {
            out.push(message);
        }
    }
}

/// One entry of a POSIX ACL.
#[derive(Clone, Copy, Debug)]
struct AclEntry {
    /// `ACL_USER`, `ACL_GROUP`, ...
    tag: u16,
    /// `rwx` bits.
    perm: u16,
    /// The uid or gid of a named entry.
    id: u32,
}

/// The access ACL of `path`, if it has one beyond its mode bits. An ACL
/// that cannot be read is none: the mode bits then decide, and they never
/// allow more than the ACL.
fn acl(path: &Path) -> Option<Vec<AclEntry>> {
    let mut buf = vec![0u8; 4 + 8 * ACL_MAX_ENTRIES];
    let n = rustix::fs::getxattr(path, ACL_XATTR, &mut buf[..]).ok()?;
    parse_acl(buf.get(..n)?)
}

/// Parses the xattr form of an ACL: a little-endian version, then entries
/// of tag (u16), perm (u16) and id (u32).
fn parse_acl(bytes: &[u8]) -> Option<Vec<AclEntry>> {
    let (head, rest) = bytes.split_at_checked(4)?;
    if u32::from_le_bytes(head.try_into().ok()?) != ACL_VERSION || rest.len() % 8 != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(8)
            .map(|e| AclEntry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect(),
    )
}

/// The directory a path is in (`.` for a bare name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// This process's effective uid.
fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes no argument, cannot fail and touches no
    // memory of ours.
    unsafe { libc::geteuid() }
}

/// The name of `uid` from `/etc/passwd`, else the number (which `chown`
/// takes as well).
fn user_name(uid: u32) -> String {
    if uid == 0 {
        return "root".to_string();
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?;
            (id.parse() == Ok(uid)).then(|| name.to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
pub(crate) mod acl_for_tests {
    //! Writes an ACL the way `setfacl` does, for tests of the ACL rules.

    use std::path::Path;

    /// Entry tags of `setfacl`'s vocabulary.
    pub const USER_OBJ: u16 = 0x01;
    pub const USER: u16 = super::ACL_USER;
    pub const GROUP_OBJ: u16 = super::ACL_GROUP_OBJ;
    pub const GROUP: u16 = super::ACL_GROUP;
    pub const MASK: u16 = super::ACL_MASK;
    pub const OTHER: u16 = 0x20;
    /// The id of an unnamed entry.
    pub const NO_ID: u32 = u32::MAX;

    /// Sets the access ACL of `path` to `entries` (tag, perm, id), which
    /// must be in the kernel's order (by tag, then id).
    pub fn set(path: &Path, entries: &[(u16, u16, u32)]) {
        let mut bytes = super::ACL_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            bytes.extend_from_slice(&tag.to_le_bytes());
            bytes.extend_from_slice(&perm.to_le_bytes());
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        rustix::fs::setxattr(
            path,
            super::ACL_XATTR,
            &bytes,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
}
