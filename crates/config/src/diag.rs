//! Diagnostics: a problem found in the configuration, located at
//! `file:line:column`, and the list of all of them that `load` returns.
//!
//! Every file read is placed in one global byte-offset space (`Sources`),
//! so a span taken from any file, after drop-ins are merged, still maps
//! back to the file, line and column it came from.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl Diagnostic {
    /// A problem with a whole file (reported at 1:1).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found while loading a configuration (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems, in file order and then position order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One file read: its path as given, its text, and where its bytes sit in
/// the global offset space.
#[derive(Debug)]
pub(crate) struct SourceFile {
    /// The path as given (shown in diagnostics).
    pub path: PathBuf,
    /// The directory relative paths in this file are resolved against
    /// (absolute when it could be made so).
    pub dir: PathBuf,
    /// The file's text.
    pub text: String,
    /// Global offset of the file's first byte.
    pub base: usize,
}

/// All files read, in merge order, in one global offset space.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    /// The files, bases increasing.
    pub files: Vec<SourceFile>,
}

impl Sources {
    /// Adds a file; returns its index.
    pub fn push(&mut self, path: &Path, text: String) -> usize {
        // One byte of gap between files, so an end-of-file span (which
        // equals the length) never lands in the next file.
        let base = self.files.last().map_or(0, |f| f.base + f.text.len() + 1);
        self.files.push(SourceFile {
            path: path.to_path_buf(),
            dir: config_dir(path),
            text,
            base,
        });
        self.files.len() - 1
    }

    /// The file a global offset belongs to.
    pub fn file_at(&self, offset: usize) -> Option<&SourceFile> {
        self.files.iter().rev().find(|f| f.base <= offset)
    }

    /// A diagnostic at a global span.
    pub fn diag(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let message = message.into();
        let Some(file) = self.file_at(span.start) else {
            return Diagnostic::whole_file(Path::new("<config>"), message);
        };
        let (line, column) = line_column(&file.text, span.start - file.base);
        Diagnostic {
            file: file.path.clone(),
            line,
            column,
            message,
        }
    }

    /// The directory relative paths at this global offset resolve against.
    pub fn dir_at(&self, offset: usize) -> PathBuf {
        self.file_at(offset)
            .map_or_else(|| PathBuf::from("."), |f| f.dir.clone())
    }
}

/// 1-based line and character column of a byte offset in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The directory of a config file, absolute when possible, so relative
/// paths keep meaning the same thing if the daemon changes directory.
fn config_dir(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nb = \"é\" x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // `x` is byte 15 but character column 9 (é is two bytes).
        assert_eq!(line_column(text, 15), (2, 9));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn spans_map_back_to_their_file() {
        let mut s = Sources::default();
        s.push(Path::new("/etc/k/main.toml"), "a = 1\n".into());
        s.push(Path::new("/etc/k/conf.d/x.toml"), "b = 2\nc = 3\n".into());
        let second = s.files[1].base;
        let d = s.diag(&(second + 6..second + 7), "bad");
        assert_eq!(d.to_string(), "/etc/k/conf.d/x.toml:2:1: bad");
        assert_eq!(s.dir_at(second), PathBuf::from("/etc/k/conf.d"));
        let d = s.diag(&(6..6), "end");
        assert_eq!(d.to_string(), "/etc/k/main.toml:2:1: end");
    }

    #[test]
    fn errors_print_one_per_line() {
        let e = ConfigErrors {
            diagnostics: vec![
                Diagnostic::whole_file(Path::new("a.toml"), "one"),
                Diagnostic::whole_file(Path::new("b.toml"), "two"),
            ],
        };
        assert_eq!(e.to_string(), "a.toml:1:1: one\nb.toml:1:1: two");
    }
}
