//! Loading: read the main file and its `conf.d/*.toml` drop-ins, parse,
//! merge, validate; every problem comes back as one `ConfigErrors`. Also
//! `socket_hint`, the control socket a file names even when it is invalid.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::ctx::Ctx;
use super::diag::{ConfigErrors, Diagnostic, Sources};
use super::merge::{Document, merge, parse};
use super::types::Config;
use super::validate::build;

/// Where `keyrot` looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/keyrot/keyrot.toml";

/// Loads `path` and the drop-ins `conf.d/*.toml` beside it (in file-name
/// order), and validates the result.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        diagnostics: vec![Diagnostic::whole_file(path, format!("cannot read: {e}"))],
    })?;
    let mut sources = Sources::default();
    sources.push(path, text);
    let mut unreadable = Vec::new();
    match drop_ins(path) {
        Ok(files) => {
            for file in files {
                match std::fs::read_to_string(&file) {
                    Ok(text) => {
                        sources.push(&file, text);
                    }
                    Err(e) => {
                        unreadable.push(Diagnostic::whole_file(&file, format!("cannot read: {e}")))
                    }
                }
            }
        }
        Err(d) => unreadable.push(d),
    }
    finish(&sources, unreadable)
}

/// Validates one config text named `name` (no drop-ins are read); relative
/// paths resolve against `name`'s directory.
pub fn load_str(name: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut sources = Sources::default();
    sources.push(name, text.to_string());
    finish(&sources, Vec::new())
}

/// The drop-in files of a main config file, sorted by file name. A missing
/// `conf.d` is no drop-ins; hidden files and non-`.toml` files are skipped.
pub fn drop_ins(main: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let dir = main.parent().unwrap_or(Path::new("")).join("conf.d");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Diagnostic::whole_file(
                &dir,
                format!("cannot read directory: {e}"),
            ));
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            !name.starts_with('.') && name.ends_with(".toml") && p.is_file()
        })
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Parses, merges and validates every source.
fn finish(sources: &Sources, unreadable: Vec<Diagnostic>) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx::new(sources);
    for d in unreadable {
        ctx.error_at_file(&d.file, usize::MAX, d.message);
    }
    let tables: Vec<_> = sources.files.iter().map(|f| parse(f, &mut ctx)).collect();
    // After a syntax error the rest of that file is guesswork: report
    // syntax errors alone rather than a cascade of invented ones.
    if ctx.has_errors() {
        return Err(ConfigErrors {
            diagnostics: ctx.into_diagnostics(),
        });
    }
    let mut doc = Document::default();
    for table in tables.into_iter().flatten() {
        merge(&mut doc, table, &mut ctx);
    }
    let files = sources.files.iter().map(|f| f.path.clone()).collect();
    match build(doc, files, &mut ctx) {
        Some(cfg) if !ctx.has_errors() => Ok(cfg),
        _ => Err(ConfigErrors {
            diagnostics: ctx.into_diagnostics(),
        }),
    }
}

/// The control socket a config file names, read as plain TOML without
/// validation, for CLI commands while the file has errors (the daemon keeps
/// running the last good config). Falls back to the default socket when
/// the file does not parse or names none.
pub fn socket_hint(path: &std::path::Path) -> Option<PathBuf> {
    let default = PathBuf::from("/run/keyrot/control.sock");
    let Some(table) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
    else {
        return Some(default);
    };
    let Some(sock) = table
        .get("daemon")
        .and_then(|d| d.get("control_socket"))
        .and_then(|s| s.as_str())
    else {
        return Some(default);
    };
    let p = PathBuf::from(sock);
    if p.is_absolute() {
        Some(p)
    } else {
        path.parent().map(|d| d.join(p))
    }
}
