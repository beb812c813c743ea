//! Who may change or read what keyrot trusts, checked as sshd's
//! `StrictModes` does: the config files and their directories (the
//! config's directory, `conf.d`, each drop-in) must be writable by no one
//! but root and keyrot's own user (the effective uid); secret files
//! (`{ file = ... }`, `{ credential = ... }`, the master key) must also be
//! readable by no one else. Every one of them, and every directory above
//! it, must be owned by root or that user: an owner can always change the
//! mode back. A config that others could change could add an `exec` sink,
//! and so run their commands as keyrot.
//!
//! Symlinks are followed: the target and its directories are checked, and
//! so is the directory holding the link (whoever can write there can point
//! it elsewhere). The directory holding a file is checked strictly; those
//! above it may instead carry the sticky bit (`/tmp`), which keeps others
//! from renaming what they do not own.
//!
//! POSIX ACLs count: where a file carries one, its group mode bits are the
//! ACL's mask and the entries decide who that is. systemd writes a
//! credential owned by root, mode 0400, with an ACL entry that lets the
//! service's user read it (so its mode shows 0440), or, where the file
//! system has no ACLs, owned by that user with mode 0400: both pass under
//! the same rules as every other secret file.
//!
//! [`load_checked`] is what `keyrot check`, the daemon's start and every
//! reload use. Client commands (`keyrot status`, run by an operator as
//! another user) keep plain [`super::load`]: who owns the files matters to
//! the process that acts on them.

mod rules;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::diag::{ConfigErrors, Diagnostic};
use super::load::{drop_ins, load};
use super::secret::credentials_dir_from_env;
use super::secret_ref::SecretRef;
use super::summary::secret_refs;
use super::types::Config;
use keyrot_core::crypto::CREDENTIAL_NAME;
pub(crate) use rules::Checker;
use rules::{Holds, parent_of};

/// Loads the config like [`load`], then refuses it when others could
/// change a config file or read a secret file it names: every problem,
/// of the files and of their contents, comes back in one `ConfigErrors`.
/// Credentials come from `$CREDENTIALS_DIRECTORY`.
pub fn load_checked(path: &Path) -> Result<Config, ConfigErrors> {
    let mut checker = Checker::new();
    let mut problems = config_files(path, &mut checker);
    match load(path) {
        Ok(cfg) => {
            let creds = credentials_dir_from_env();
            problems.extend(secret_files(&cfg, creds.as_deref(), &mut checker));
            problems.extend(master_key(&cfg, creds.as_deref(), &mut checker));
            if problems.is_empty() {
                Ok(cfg)
            } else {
                Err(ConfigErrors {
                    diagnostics: problems,
                })
            }
        }
        Err(mut errors) => {
            problems.append(&mut errors.diagnostics);
            Err(ConfigErrors {
                diagnostics: problems,
            })
        }
    }
}

/// The problems of the main config file, its directory, `conf.d` and each
/// drop-in, each reported at the file's `1:1`.
pub(crate) fn config_files(main: &Path, checker: &mut Checker) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut add = |file: &Path, messages: Vec<String>| {
        out.extend(
            messages
                .into_iter()
                .map(|m| Diagnostic::whole_file(file, m)),
        );
    };
    add(main, checker.file(main, Holds::Config));
    // conf.d itself, even empty: whoever can write it can add a drop-in.
    let conf_d = parent_of(main).join("conf.d");
    if conf_d.is_dir() {
        add(&conf_d, checker.dir(&conf_d));
    }
    // A conf.d that cannot be listed is reported by `load`.
    for file in drop_ins(main).unwrap_or_default() {
        add(&file, checker.file(&file, Holds::Config));
    }
    out
}

/// The problems of every secret file the config references, each placed
/// where the reference is written and naming who uses it.
pub(crate) fn secret_files(
    cfg: &Config,
    credentials_dir: Option<&Path>,
    checker: &mut Checker,
) -> Vec<Diagnostic> {
    let main = main_file(cfg);
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut out = Vec::new();
    for u in secret_refs(cfg) {
        let path = match u.secret {
            SecretRef::File(p) => p.clone(),
            // Without a credentials directory the reference cannot be
            // resolved at all, which resolving reports.
            SecretRef::Credential(name) => match credentials_dir {
                Some(dir) => dir.join(name),
                None => continue,
            },
            SecretRef::Env(_) => continue,
        };
        if !seen.insert(path.clone()) {
            continue;
        }
        for m in checker.file(&path, Holds::Secret) {
            let message = format!("{} `{}` ({}): {m}", u.owner, u.field, u.secret);
            out.push(match cfg.secret_sites.iter().find(|(r, _)| r == u.secret) {
                Some((_, site)) => Diagnostic {
                    message,
                    ..site.clone()
                },
                None => Diagnostic::whole_file(main, message),
            });
        }
    }
    out
}

/// The problems of the master key the store will be opened with: the
/// credential `master-key` when systemd passed one, else
/// `store.master_key_file`, or, while that does not exist, the directory
/// it would be created in.
pub(crate) fn master_key(
    cfg: &Config,
    credentials_dir: Option<&Path>,
    checker: &mut Checker,
) -> Vec<Diagnostic> {
    let main = main_file(cfg);
    let at = |what: String, messages: Vec<String>| -> Vec<Diagnostic> {
        messages
            .into_iter()
            .map(|m| Diagnostic::whole_file(main, format!("{what}: {m}")))
            .collect()
    };
    if let Some(dir) = credentials_dir {
        let cred = dir.join(CREDENTIAL_NAME);
        if cred.exists() {
            let problems = checker.file(&cred, Holds::Secret);
            return at(
                format!("the master key (credential {CREDENTIAL_NAME:?})"),
                problems,
            );
        }
    }
    let file = &cfg.store.master_key_file;
    let what = format!("the master key (store.master_key_file {})", file.display());
    if std::fs::symlink_metadata(file).is_ok() {
        let problems = checker.file(file, Holds::Secret);
        at(what, problems)
    } else {
        let problems = checker.dir(parent_of(file));
        at(what, problems)
    }
}

/// The main config file, where problems without a place of their own go.
fn main_file(cfg: &Config) -> &Path {
    cfg.files
        .first()
        .map_or(Path::new("<config>"), |p| p.as_path())
}
