//! The state file: read once at start (absent means empty), and replaced
//! atomically after every change — written to a temporary file beside it
//! (mode 0600), fsynced, renamed over the old one, and the directory fsynced —
//! so a crash leaves either the old state or the new, never half of one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::SandboxError;
use super::state::{STATE_VERSION, State};

/// Reads the state file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<State, SandboxError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(State {
                version: STATE_VERSION,
                ..State::default()
            });
        }
        Err(source) => {
            return Err(SandboxError::StateRead {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|source| SandboxError::StateParse {
        path: path.to_path_buf(),
        source,
    })
}

/// Serialises `state` (pretty JSON, for people reading the file).
pub fn encode(state: &State) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Replaces `path` with `bytes` atomically (temp file + rename + fsyncs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    let err = |source| SandboxError::StateWrite {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// `FILE.tmp.PID` beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let empty = load(&path).unwrap();
        assert!(empty.orgs.is_empty());
        let mut s = State::default();
        s.orgs.insert("o".into(), Default::default());
        write_atomic(&path, &encode(&s)).unwrap();
        assert!(load(&path).unwrap().orgs.contains_key("o"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, b"{not json").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
