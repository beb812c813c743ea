//! The `openbao` / `vault` sink: writes the secret into one field of a KV
//! v2 secret, keeping the secret's other fields, and tags the secret with
//! custom metadata (`keyrot_key_id`, `keyrot_rotation_id`,
//! `keyrot_expires_at`, `keyrot_provider`, `keyrot_slot`).
//!
//! A write reads the current version first. If the field already holds the
//! secret (same SHA-256) nothing is written: a repeated `put` of the same
//! rotation creates no new version. Otherwise the write carries the
//! version it read as check-and-set, so a concurrent writer is detected
//! (a transient error; the next attempt reads again) and never overwritten
//! blindly. Custom metadata is merged with a JSON merge patch, which keeps
//! the operator's own keys and settings (`max_versions`, ...); where PATCH
//! is not allowed (a policy without `patch`, an old Vault) the key's
//! custom metadata is read, merged and written back with POST, which also
//! leaves the other settings alone.
//!
//! Talking to the server (auth, namespace, TLS) is [`crate::vault`]'s job;
//! the secret is serialised into a wiped buffer and never logged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{Sink, SinkTarget};
use crate::http::{Answer, redact};
use crate::vault::kv::{self, Fields, ReadAnswer, WriteAnswer, WriteBody};
use crate::vault::{JsonBody, VaultClient, VaultOptions};
use keyrot_config::OpenBaoSinkConfig;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;

/// Writes secrets into an OpenBao/Vault KV v2 engine.
pub struct OpenBaoSink {
    /// Config name.
    name: String,
    /// Settings.
    cfg: OpenBaoSinkConfig,
    /// The authenticated client.
    client: VaultClient,
    /// PATCH on `metadata/` works; cleared after a 403 or 405, then the
    /// merged custom metadata is written with POST.
    patch_metadata: AtomicBool,
    /// Called between the read and the write of a `put` (tests make a
    /// concurrent write there).
    #[cfg(feature = "failpoints")]
    before_write: Option<Box<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for OpenBaoSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoSink")
            .field("name", &self.name)
            .field("flavor", &self.cfg.flavor)
            .field("mount", &self.cfg.mount)
            .field("path", &self.cfg.path)
            .field("field", &self.cfg.field)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// The current version of a secret, as read before a write.
#[derive(Default)]
struct Current {
    /// Its version (0: the secret does not exist yet).
    version: u64,
    /// Its fields (none when it does not exist or is deleted).
    fields: Fields,
    /// The key's custom metadata.
    custom: BTreeMap<String, String>,
}

impl OpenBaoSink {
    /// The sink; resolves the token or AppRole secret id now, so a missing
    /// one fails at start with the sink and field named.
    pub fn new(
        name: &str,
        cfg: &OpenBaoSinkConfig,
        creds: Option<&Path>,
    ) -> Result<OpenBaoSink, CallError> {
        let who = format!("sink {name:?}");
        let client = VaultClient::new(VaultOptions {
            who: &who,
            flavor: cfg.flavor,
            address: &cfg.address,
            namespace: cfg.namespace.as_deref(),
            ca_file: cfg.ca_file.as_deref(),
            timeout: cfg.timeout,
            auth: &cfg.auth,
            credentials_dir: creds,
        })?;
        Ok(OpenBaoSink {
            name: name.to_string(),
            cfg: cfg.clone(),
            client,
            patch_metadata: AtomicBool::new(true),
            #[cfg(feature = "failpoints")]
            before_write: None,
        })
    }

    /// Calls `hook` between the read and the write of every `put` (fault
    /// tests: a concurrent writer).
    #[cfg(feature = "failpoints")]
    pub fn set_before_write(&mut self, hook: impl Fn() + Send + Sync + 'static) {
        self.before_write = Some(Box::new(hook));
    }

    /// `{mount}/data/{location}`.
    fn data_path(&self, location: &str) -> String {
        format!("{}/data/{location}", self.cfg.mount)
    }

    /// `{mount}/metadata/{location}`.
    fn metadata_path(&self, location: &str) -> String {
        format!("{}/metadata/{location}", self.cfg.mount)
    }

    /// The hint for a refused or failed call on `location`.
    fn hint(&self, status: StatusCode, location: &str) -> Option<String> {
        (status == StatusCode::FORBIDDEN).then(|| {
            format!(
                "{}; keyrot needs read, create and update on {}, and patch (or read and update) on {}",
                self.client.refused_hint(),
                self.data_path(location),
                self.metadata_path(location)
            )
        })
    }

    /// The error for an answer not accepted at `what`.
    fn status_error(&self, what: &str, ans: &Answer, location: &str) -> CallError {
        let hint = self.hint(ans.status, location);
        self.client.status_error(what, ans, hint.as_deref())
    }

    /// The current version of the secret at `location`; version 0 and no
    /// fields when there is none.
    async fn read(&self, location: &str) -> Result<Current, CallError> {
        let path = self.data_path(location);
        let what = format!("read {path}");
        let ans = self.client.request(&what, Method::GET, &path, None).await?;
        match ans.status {
            StatusCode::OK => {
                let read: ReadAnswer = self.client.take_json(ans, &what)?;
                Ok(current_of(read))
            }
            StatusCode::NOT_FOUND if kv::is_no_route(&ans.body) => Err(self.client.status_error(
                &what,
                &ans,
                Some(&format!(
                    "is `mount` {:?} a KV version 2 secrets engine?",
                    self.cfg.mount
                )),
            )),
            // No secret here; a deleted current version still tells its number.
            StatusCode::NOT_FOUND => Ok(self
                .client
                .take_json::<ReadAnswer>(ans, &what)
                .map(current_of)
                .unwrap_or_default()),
            _ => Err(self.status_error(&what, &ans, location)),
        }
    }

    /// Writes `secret` into the field, keeping the other fields, with
    /// check-and-set on the version read; the new version.
    async fn write(
        &self,
        location: &str,
        current: &Current,
        secret: &SecretString,
    ) -> Result<u64, CallError> {
        #[cfg(feature = "failpoints")]
        if let Some(hook) = &self.before_write {
            hook();
        }
        let path = self.data_path(location);
        let what = format!("write {path} (check-and-set version {})", current.version);
        let body = JsonBody::json(&WriteBody {
            cas: current.version,
            keep: &current.fields,
            field: &self.cfg.field,
            value: secret.expose_secret(),
        })
        .map_err(|e| {
            CallError::permanent(format!(
                "sink {:?}: {what}: cannot build the request: {e}",
                self.name
            ))
        })?;
        let ans = self
            .client
            .request(&what, Method::POST, &path, Some(&body))
            .await
            .map_err(|e| redact(e, secret.expose_secret()))?;
        drop(body);
        if ans.status == StatusCode::BAD_REQUEST && kv::is_cas_mismatch(&ans.body) {
            return Err(CallError::transient(format!(
                "sink {:?}: {what}: a concurrent writer changed the secret after keyrot read it; \
                 keyrot will read it again and retry (it never overwrites a version it has not seen)",
                self.name
            )));
        }
        if !ans.status.is_success() {
            let err = self.status_error(&what, &ans, location);
            return Err(redact(err, secret.expose_secret()));
        }
        let written: WriteAnswer = self.client.take_json(ans, &what)?;
        written.data.map(|d| d.version).ok_or_else(|| {
            CallError::permanent(format!(
                "sink {:?}: {what}: {} answered without a version: is `mount` {:?} a KV version 2 secrets engine?",
                self.name,
                self.client.peer(),
                self.cfg.mount
            ))
        })
    }

    /// Makes the key's custom metadata name this rotation; nothing is sent
    /// when it already does.
    async fn tag(
        &self,
        location: &str,
        target: &SinkTarget,
        existing: &BTreeMap<String, String>,
    ) -> Result<(), CallError> {
        let wanted = custom_metadata(target);
        if is_tagged(existing, &wanted) {
            return Ok(());
        }
        let path = self.metadata_path(location);
        let what = format!("set custom metadata on {path}");
        let build_error = |e: serde_json::Error| {
            CallError::permanent(format!(
                "sink {:?}: {what}: cannot build the request: {e}",
                self.name
            ))
        };
        if self.patch_metadata.load(Ordering::Relaxed) {
            let patch: BTreeMap<&str, &Option<String>> =
                wanted.iter().map(|(k, v)| (*k, v)).collect();
            let body = JsonBody::merge_patch(&serde_json::json!({ "custom_metadata": patch }))
                .map_err(build_error)?;
            let ans = self
                .client
                .request(&what, Method::PATCH, &path, Some(&body))
                .await?;
            match ans.status {
                s if s.is_success() => return Ok(()),
                StatusCode::FORBIDDEN | StatusCode::METHOD_NOT_ALLOWED => {
                    tracing::info!(
                        sink = %self.name,
                        status = ans.status.as_u16(),
                        "PATCH on metadata is not allowed; custom metadata is merged and written with POST from now on"
                    );
                    self.patch_metadata.store(false, Ordering::Relaxed);
                }
                _ => return Err(self.status_error(&what, &ans, location)),
            }
        }
        // POST replaces the whole custom metadata map: merge into what the
        // key holds now (the data read does not show it when the key has
        // metadata but no live version).
        let existing = self.custom_metadata_of(location, &path).await?;
        let merged = merged_metadata(&existing, &wanted);
        let body = JsonBody::json(&serde_json::json!({ "custom_metadata": merged }))
            .map_err(build_error)?;
        let ans = self
            .client
            .request(&what, Method::POST, &path, Some(&body))
            .await?;
        if ans.status.is_success() {
            Ok(())
        } else {
            Err(self.status_error(&what, &ans, location))
        }
    }
}

impl OpenBaoSink {
    /// The key's custom metadata, read from `path` (its `metadata/` path);
    /// empty when the key has no metadata yet.
    async fn custom_metadata_of(
        &self,
        location: &str,
        path: &str,
    ) -> Result<BTreeMap<String, String>, CallError> {
        let what = format!("read {path}");
        let ans = self.client.request(&what, Method::GET, path, None).await?;
        match ans.status {
            StatusCode::OK => {
                let meta: kv::MetadataAnswer = self.client.take_json(ans, &what)?;
                Ok(meta
                    .data
                    .and_then(|d| d.custom_metadata)
                    .unwrap_or_default())
            }
            StatusCode::NOT_FOUND => Ok(BTreeMap::new()),
            _ => Err(self.status_error(&what, &ans, location)),
        }
    }
}

#[async_trait]
impl Sink for OpenBaoSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        self.cfg.flavor
    }

    async fn put(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Option<String>, CallError> {
        let location = target.location(&self.cfg.path)?;
        let current = self.read(&location).await?;
        let wanted = sha256_hex(secret.expose_secret().as_bytes());
        let holds = current
            .fields
            .get(&self.cfg.field)
            .is_some_and(|v| hash_of(v) == wanted);
        let version = if holds {
            tracing::debug!(sink = %self.name, path = %location, version = current.version, "already holds this secret; nothing written");
            current.version
        } else {
            let v = self.write(&location, &current, secret).await?;
            tracing::debug!(sink = %self.name, path = %location, version = v, "secret written");
            v
        };
        self.tag(&location, target, &current.custom).await?;
        Ok(Some(format!("v{version}")))
    }

    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError> {
        let location = target.location(&self.cfg.path)?;
        let current = self.read(&location).await?;
        Ok(current.fields.get(&self.cfg.field).map(hash_of))
    }
}

/// What a read answer says about the current version.
fn current_of(read: ReadAnswer) -> Current {
    let Some(data) = read.data else {
        return Current::default();
    };
    let (version, custom) = data
        .metadata
        .map(|m| (m.version, m.custom_metadata.unwrap_or_default()))
        .unwrap_or_default();
    Current {
        version,
        fields: data.data.unwrap_or_default(),
        custom,
    }
}

/// SHA-256 (hex) of a field's value: the string itself, or the JSON text
/// of a value that is not a string (which then never matches a secret).
fn hash_of(v: &Value) -> String {
    match v {
        Value::String(s) => sha256_hex(s.as_bytes()),
        other => sha256_hex(Zeroizing::new(other.to_string()).as_bytes()),
    }
}

/// The custom metadata keyrot keeps on a secret; `None` removes a key (no
/// expiry).
fn custom_metadata(target: &SinkTarget) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("keyrot_key_id", Some(target.key_id.clone())),
        ("keyrot_rotation_id", Some(target.rotation_id.clone())),
        (
            "keyrot_expires_at",
            target.expires_at.map(|t| t.to_string()),
        ),
        ("keyrot_provider", Some(target.provider.clone())),
        ("keyrot_slot", Some(target.slot.clone())),
    ]
}

/// True when `existing` already says what `wanted` says.
fn is_tagged(existing: &BTreeMap<String, String>, wanted: &[(&str, Option<String>)]) -> bool {
    wanted.iter().all(|(k, v)| existing.get(*k) == v.as_ref())
}

/// `existing` with keyrot's keys set (or removed): the operator's own keys
/// stay.
fn merged_metadata(
    existing: &BTreeMap<String, String>,
    wanted: &[(&str, Option<String>)],
) -> BTreeMap<String, String> {
    let mut merged = existing.clone();
    for (k, v) in wanted {
        match v {
            Some(v) => merged.insert((*k).to_string(), v.clone()),
            None => merged.remove(*k),
        };
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_config::{SecretRef, VaultAuth};

    fn target(expires: Option<&str>) -> SinkTarget {
        SinkTarget {
            slot: "local/ci".into(),
            provider: "local".into(),
            key_name: "ci".into(),
            key_id: "lk_1".into(),
            rotation_id: "r1".into(),
            expires_at: expires.map(|e| e.parse().unwrap()),
            probe: false,
        }
    }

    fn config(auth: VaultAuth) -> OpenBaoSinkConfig {
        OpenBaoSinkConfig {
            flavor: "openbao",
            address: "http://127.0.0.1:1".into(),
            mount: "secret".into(),
            path: "keyrot/{slot}".into(),
            field: "secret".into(),
            namespace: None,
            auth,
            ca_file: None,
            timeout: jiff::SignedDuration::from_secs(5),
        }
    }

    #[test]
    fn custom_metadata_is_merged_and_compared() {
        let t = target(Some("2027-01-01T00:00:00Z"));
        let wanted = custom_metadata(&t);
        let mut existing = BTreeMap::from([
            ("owner".to_string(), "ops".to_string()),
            ("keyrot_key_id".to_string(), "lk_0".to_string()),
        ]);
        assert!(!is_tagged(&existing, &wanted));
        existing = merged_metadata(&existing, &wanted);
        assert!(is_tagged(&existing, &wanted));
        assert_eq!(existing["owner"], "ops");
        assert_eq!(existing["keyrot_key_id"], "lk_1");
        assert_eq!(existing["keyrot_expires_at"], "2027-01-01T00:00:00Z");
        assert_eq!(existing["keyrot_slot"], "local/ci");
        // A key without expiry drops the old expiry.
        let no_expiry = custom_metadata(&target(None));
        assert!(!is_tagged(&existing, &no_expiry));
        let merged = merged_metadata(&existing, &no_expiry);
        assert!(!merged.contains_key("keyrot_expires_at"));
        assert!(is_tagged(&merged, &no_expiry));
    }

    #[test]
    fn values_hash_as_strings_or_json_text() {
        assert_eq!(hash_of(&Value::from("abc")), sha256_hex(b"abc"));
        assert_eq!(hash_of(&Value::from(3)), sha256_hex(b"3"));
    }

    #[test]
    fn a_missing_secret_names_the_sink_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SecretRef::File(dir.path().join("absent"));
        let err = OpenBaoSink::new("bao", &config(VaultAuth::Token(missing.clone())), None)
            .err()
            .unwrap();
        assert!(!err.transient);
        assert!(err.message.starts_with("sink \"bao\": `token`:"), "{err}");
        let approle = VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: "role".into(),
            secret_id: missing,
        };
        let err = OpenBaoSink::new("bao", &config(approle), None)
            .err()
            .unwrap();
        assert!(
            err.message.starts_with("sink \"bao\": `secret_id`:"),
            "{err}"
        );
    }

    #[test]
    fn read_answers_give_version_fields_and_metadata() {
        let read: ReadAnswer = serde_json::from_str(
            r#"{"data":{"data":{"secret":"x"},"metadata":{"version":7,"custom_metadata":{"a":"b"}}}}"#,
        )
        .unwrap();
        let c = current_of(read);
        assert_eq!(c.version, 7);
        assert_eq!(c.custom["a"], "b");
        assert!(c.fields.get("secret").is_some());
        let c = current_of(serde_json::from_str(r#"{"errors":[]}"#).unwrap());
        assert_eq!(c.version, 0);
        assert!(c.fields.get("secret").is_none());
    }
}
