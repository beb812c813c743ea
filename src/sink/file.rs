//! The `file` sink: writes the secret atomically (temp file in the same
//! directory, fsync, rename, fsync of the directory), mode 0600 by default,
//! optional owner and group, as `raw`, `json` or `env`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{Sink, SinkTarget};
use crate::config::{FileFormat, FileSinkConfig};
use crate::crypto::sha256_hex;
use crate::error::CallError;

/// Writes secrets to files.
pub struct FileSink {
    /// Config name.
    name: String,
    /// Settings.
    cfg: FileSinkConfig,
    /// Resolved owner uid, if configured.
    uid: Option<u32>,
    /// Resolved group gid, if configured.
    gid: Option<u32>,
}

impl FileSink {
    /// A file sink; resolves owner and group names now so a typo fails early.
    pub fn new(name: &str, cfg: FileSinkConfig) -> Result<FileSink, CallError> {
        let uid = cfg.owner.as_deref().map(lookup_user).transpose()?;
        let gid = cfg.group.as_deref().map(lookup_group).transpose()?;
        Ok(FileSink {
            name: name.to_string(),
            cfg,
            uid,
            gid,
        })
    }

    /// The file path for a target: `{provider}`, `{name}`, `{slot}` filled in.
    pub fn path_for(&self, target: &SinkTarget) -> PathBuf {
        PathBuf::from(target.location(&self.cfg.path))
    }

    fn render(&self, target: &SinkTarget, secret: &SecretString) -> Zeroizing<Vec<u8>> {
        let value = secret.expose_secret();
        let text = match self.cfg.format {
            FileFormat::Raw => value.to_string(),
            FileFormat::Env => format!("{}={}\n", self.cfg.env_name, value),
            FileFormat::Json => {
                let doc = serde_json::json!({
                    "secret": value,
                    "key_id": target.key_id,
                    "expires_at": target.expires_at.map(|t| t.to_string()),
                    "rotation_id": target.rotation_id,
                    "provider": target.provider,
                    "name": target.key_name,
                });
                format!("{doc}\n")
            }
        };
        Zeroizing::new(text.into_bytes())
    }

    /// Extracts the secret from a file's bytes, per format.
    fn extract(&self, bytes: &[u8]) -> Option<Zeroizing<String>> {
        let text = std::str::from_utf8(bytes).ok()?;
        match self.cfg.format {
            FileFormat::Raw => Some(Zeroizing::new(text.to_string())),
            FileFormat::Env => {
                let prefix = format!("{}=", self.cfg.env_name);
                text.lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .map(|v| Zeroizing::new(v.to_string()))
            }
            FileFormat::Json => {
                let v: serde_json::Value = serde_json::from_str(text).ok()?;
                v.get("secret")
                    .and_then(|s| s.as_str())
                    .map(|s| Zeroizing::new(s.to_string()))
            }
        }
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "secret".into());
        let tmp = dir.join(format!(".{file_name}.keyrot-tmp"));
        let _ = fs::remove_file(&tmp);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.cfg.mode)
                .open(&tmp)?;
            // The umask may have narrowed the mode; set exactly what was asked.
            f.set_permissions(fs::Permissions::from_mode(self.cfg.mode))?;
            if self.uid.is_some() || self.gid.is_some() {
                std::os::unix::fs::fchown(&f, self.uid, self.gid)?;
            }
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    }
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    async fn put(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Option<String>, CallError> {
        let path = self.path_for(target);
        let bytes = self.render(target, secret);
        // File I/O with fsync blocks: keep it off the async threads.
        let sink = FileSink {
            name: self.name.clone(),
            cfg: self.cfg.clone(),
            uid: self.uid,
            gid: self.gid,
        };
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || sink.write_atomic(&path, &bytes))
            .await
            .map_err(|e| CallError::transient(format!("file sink task failed: {e}")))?
            .map_err(|e| CallError::transient(format!("writing {shown}: {e}")))?;
        Ok(None)
    }

    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError> {
        let path = self.path_for(target);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CallError::transient(format!(
                    "reading {}: {e}",
                    path.display()
                )));
            }
        };
        Ok(self.extract(&bytes).map(|s| sha256_hex(s.as_bytes())))
    }
}

fn lookup_user(name: &str) -> Result<u32, CallError> {
    lookup_id("/etc/passwd", name)
        .ok_or_else(|| CallError::permanent(format!("file sink owner: no user named {name:?}")))
}

fn lookup_group(name: &str) -> Result<u32, CallError> {
    lookup_id("/etc/group", name)
        .ok_or_else(|| CallError::permanent(format!("file sink group: no group named {name:?}")))
}

/// Looks a name up in a passwd/group style file (field 3 is the id). A
/// numeric name is taken as the id itself.
fn lookup_id(db: &str, name: &str) -> Option<u32> {
    if let Ok(id) = name.parse() {
        return Some(id);
    }
    let text = fs::read_to_string(db).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SinkTarget {
        SinkTarget {
            slot: "local/ci".into(),
            provider: "local".into(),
            key_name: "ci".into(),
            key_id: "lk_1".into(),
            rotation_id: "r1".into(),
            expires_at: None,
            probe: false,
        }
    }

    fn sink(dir: &Path, format: FileFormat) -> FileSink {
        FileSink::new(
            "f",
            FileSinkConfig {
                path: dir.join("{provider}-{name}.out").display().to_string(),
                format,
                env_name: "API_KEY".into(),
                mode: 0o600,
                owner: None,
                group: None,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn writes_each_format_with_mode_0600_and_reads_back_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let secret = SecretString::from("s3cr3t-value");
        for format in [FileFormat::Raw, FileFormat::Json, FileFormat::Env] {
            let s = sink(dir.path(), format);
            s.put(&target(), &secret).await.unwrap();
            let path = dir.path().join("local-ci.out");
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{format:?}");
            let got = s.read_back(&target()).await.unwrap();
            assert_eq!(got.as_deref(), Some(sha256_hex(b"s3cr3t-value").as_str()));
            let text = fs::read_to_string(&path).unwrap();
            match format {
                FileFormat::Raw => assert_eq!(text, "s3cr3t-value"),
                FileFormat::Env => assert_eq!(text, "API_KEY=s3cr3t-value\n"),
                FileFormat::Json => assert!(text.contains("\"key_id\":\"lk_1\"")),
            }
        }
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test]
    async fn read_back_of_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path(), FileFormat::Raw);
        assert_eq!(s.read_back(&target()).await.unwrap(), None);
    }

    #[test]
    fn unknown_owner_is_a_clear_error() {
        let err = FileSink::new(
            "f",
            FileSinkConfig {
                path: "/tmp/x".into(),
                format: FileFormat::Raw,
                env_name: "K".into(),
                mode: 0o600,
                owner: Some("no-such-user-keyrot".into()),
                group: None,
            },
        )
        .err()
        .unwrap();
        assert!(err.message.contains("no-such-user-keyrot"), "{err}");
    }
}
