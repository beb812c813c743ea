//! The `file` sink: writes the secret atomically (temp file in the same
//! directory, fsync, rename, fsync of the directory), mode 0600 by default,
//! optional owner and group, as `raw`, `json` or `env`. The file is reached
//! below the sink's directory without following links ([`super::confined`]).
//! What was written is read back at once: a file that does not hold the
//! secret is removed (when it is still keyrot's own write) and the write
//! fails, so a broken file is never left for consumers.

use std::fs;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::confined::Place;
use super::{Sink, SinkTarget};
use keyrot_config::{FileFormat, FileSinkConfig};
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;

/// Writes secrets to files.
#[derive(Clone)]
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

    /// Where a target's file is: `{provider}`, `{name}`, `{slot}` filled
    /// in, refused unless it stays below the sink's directory.
    pub fn place_for(&self, target: &SinkTarget) -> Result<Place, CallError> {
        let who = format!("sink {:?}", self.name);
        let filled = target
            .location(&self.cfg.path)
            .map_err(|e| CallError::permanent(format!("{who}: {}", e.message)))?;
        Place::new(&self.cfg.path, &filled).map_err(|e| CallError::permanent(format!("{who}: {e}")))
    }

    fn render(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Zeroizing<Vec<u8>>, CallError> {
        let value = secret.expose_secret();
        let text = match self.cfg.format {
            FileFormat::Raw => value.to_string(),
            FileFormat::Env => {
                // A line break would end the assignment and start a line
                // of the secret's choosing.
                if value.chars().any(char::is_control) {
                    return Err(CallError::permanent(format!(
                        "sink {:?}: the secret of key {} holds a control character (a line break, say), which `format = \"env\"` cannot carry; use `format = \"raw\"` or `\"json\"`",
                        self.name, target.key_id
                    )));
                }
                format!("{}={}\n", self.cfg.env_name, value)
            }
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
        Ok(Zeroizing::new(text.into_bytes()))
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

    /// The SHA-256 of the secret in a file's bytes, None when there is none.
    fn hash_of(&self, bytes: &[u8]) -> Option<String> {
        self.extract(bytes).map(|s| sha256_hex(s.as_bytes()))
    }

    /// Writes `bytes` at `place` and reads them back: a file whose secret
    /// does not hash to `want` is removed when it is still the file just
    /// written, and the write fails.
    fn write_verified(&self, place: &Place, bytes: &[u8], want: &str) -> Result<(), CallError> {
        let shown = place.display();
        let io = |what: &str, e: std::io::Error| {
            CallError::transient(format!("sink {:?}: {what} {shown}: {e}", self.name))
        };
        let written = place
            .write(bytes, self.cfg.mode, self.uid, self.gid)
            .map_err(|e| io("writing", e))?;
        let got = place.read().map_err(|e| io("reading back", e))?;
        let matches = got
            .as_ref()
            .is_some_and(|(b, w)| *w == written && self.hash_of(b).as_deref() == Some(want));
        if matches {
            return Ok(());
        }
        let removed = place.remove_if(written).map_err(|e| io("removing", e))?;
        let what = if removed {
            "does not read back as the secret written; removed it"
        } else {
            "was replaced before it could be read back; left as found"
        };
        Err(CallError::permanent(format!(
            "sink {:?}: {shown} {what}",
            self.name
        )))
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
        let place = self.place_for(target)?;
        let bytes = self.render(target, secret)?;
        let want = sha256_hex(secret.expose_secret().as_bytes());
        // File I/O with fsync blocks: keep it off the async threads.
        let sink = self.clone();
        tokio::task::spawn_blocking(move || sink.write_verified(&place, &bytes, &want))
            .await
            .map_err(|e| CallError::transient(format!("file sink task failed: {e}")))??;
        Ok(None)
    }

    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError> {
        let place = self.place_for(target)?;
        let sink = self.clone();
        tokio::task::spawn_blocking(move || match place.read() {
            Ok(got) => Ok(got.and_then(|(bytes, _)| sink.hash_of(&bytes))),
            Err(e) => Err(CallError::transient(format!(
                "sink {:?}: reading {}: {e}",
                sink.name,
                place.display()
            ))),
        })
        .await
        .map_err(|e| CallError::transient(format!("file sink task failed: {e}")))?
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
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

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

    #[tokio::test]
    async fn a_hostile_name_writes_nothing_outside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let s = FileSink::new(
            "f",
            FileSinkConfig {
                path: out.join("{name}.env").display().to_string(),
                format: FileFormat::Raw,
                env_name: "API_KEY".into(),
                mode: 0o600,
                owner: None,
                group: None,
            },
        )
        .unwrap();
        let mut t = target();
        for name in ["ci-x/../../escaped/pwned", "..", ".hidden", "a\nb"] {
            t.key_name = name.into();
            let e = s.put(&t, &SecretString::from("v")).await.unwrap_err();
            assert!(
                !e.transient && e.message.contains("cannot fill {name}"),
                "{e}"
            );
            assert!(s.read_back(&t).await.is_err());
        }
        assert!(!dir.path().join("escaped").exists());
        assert!(!out.exists(), "nothing was written at all");
    }

    #[tokio::test]
    async fn env_refuses_a_secret_with_a_line_break_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path(), FileFormat::Env);
        let e = s
            .put(&target(), &SecretString::from("abc\nINJECTED=1"))
            .await
            .unwrap_err();
        assert!(!e.transient, "{e:?}");
        assert!(e.message.contains("control character"), "{}", e.message);
        assert!(!e.message.contains("INJECTED"), "{}", e.message);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        // The other formats carry it exactly.
        for format in [FileFormat::Raw, FileFormat::Json] {
            let s = sink(dir.path(), format);
            s.put(&target(), &SecretString::from("abc\nx"))
                .await
                .unwrap();
            let got = s.read_back(&target()).await.unwrap();
            assert_eq!(got.as_deref(), Some(sha256_hex(b"abc\nx").as_str()));
        }
    }

    #[test]
    fn a_write_that_does_not_read_back_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path(), FileFormat::Env);
        let place = s.place_for(&target()).unwrap();
        // Bytes that do not hold the secret hashed as `want`.
        let e = s
            .write_verified(&place, b"OTHER=1\n", &sha256_hex(b"v"))
            .unwrap_err();
        assert!(e.message.contains("removed it"), "{}", e.message);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
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
