//! The `http` provider: any HTTP API that mints and revokes keys, driven
//! entirely by config ([`spec`]): which request each operation sends
//! ([`template`]s for paths, headers and JSON bodies) and where in the JSON
//! answer the id, secret, expiry and the rest are (`answer`). Presets for
//! GitLab, Grafana, Datadog and Cloudflare ship in `config/providers/`.
//!
//! What it can do follows from the operations configured. A native
//! `rotate` (GitLab's `.../rotate`, Cloudflare's token roll) is used to
//! replace a key; when it ends the old key at once (`no_overlap`), an
//! interrupted rotation is recovered here: if the old key is already gone,
//! the key the lost attempt made is found by listing and rotated in turn,
//! so its unseen secret dies instead of living on as an orphan.
//!
//! Modules: [`spec`] (the validated description), [`template`], `answer`
//! (reading JSON answers), `client` (credentials, requests, scrubbing) and
//! `list` (paging).
//!
//! It owns its HTTP client (no redirects) and the credentials it resolved
//! at build time (re-read once when the API answers 401); it never touches
//! the store. Secrets live in `SecretString`/`Zeroizing` buffers, header
//! values carrying them are marked sensitive, and every error is scrubbed
//! of them.

mod answer;
mod client;
mod list;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use jiff::Timestamp;
use reqwest::{StatusCode, Url};
use secrecy::SecretString;
use serde_json::Value;

use self::answer::{TAG_KEY, all_hold, key_info, take_secret, text};
use self::client::{AuthHeader, resolve_auth};
use super::{Capabilities, IssueRequest, IssuedKey, Provider};
use crate::http::Answer;
use keyrot_config::HttpProviderConfig;
use keyrot_config::http_provider::spec::{Auth, Fields, IssueOp, Pointer, RotateOp, TagPlace};
use keyrot_config::http_provider::template::Values;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

/// How far the provider's clock may lag keyrot's when a lost rotation's
/// key is told apart from older keys of the same name.
const ORPHAN_CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// When the rotation with id `tag` (a UUIDv7) was created, if it is one.
fn rotation_started(tag: &str) -> Option<Timestamp> {
    let (secs, nanos) = uuid::Uuid::parse_str(tag).ok()?.get_timestamp()?.to_unix();
    Timestamp::new(i64::try_from(secs).ok()?, i32::try_from(nanos).ok()?).ok()
}

/// Any HTTP API described by config.
pub struct HttpProvider {
    /// Config name.
    name: String,
    /// `provider "name"`, for messages.
    who: String,
    /// The API's host (and port), for messages.
    peer: String,
    /// What to send and how to read answers.
    spec: HttpProviderConfig,
    /// `base_url`, parsed.
    base: Url,
    /// HTTP client (no redirects).
    http: reqwest::Client,
    /// `$CREDENTIALS_DIRECTORY` at build time (auth is re-read on 401).
    credentials_dir: Option<PathBuf>,
    /// The credentials in use.
    auth: RwLock<Arc<Vec<AuthHeader>>>,
}

impl std::fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth: Vec<String> = self.spec.auth.iter().map(Auth::describe).collect();
        f.debug_struct("HttpProvider")
            .field("name", &self.name)
            .field("base_url", &self.spec.base_url)
            .field("auth", &auth)
            .field("capabilities", &self.spec.capabilities())
            .finish_non_exhaustive()
    }
}

/// Why a rotate call failed.
enum RotateFail {
    /// The key to rotate is already gone (a `gone_status` answer).
    Gone(CallError),
    /// Anything else.
    Other(CallError),
}

impl RotateFail {
    fn into_error(self) -> CallError {
        match self {
            RotateFail::Gone(e) | RotateFail::Other(e) => e,
        }
    }
}

impl HttpProvider {
    /// Builds the provider; secret references are resolved now, so a
    /// missing credential fails at start with the provider and field named.
    pub fn new(
        name: &str,
        cfg: &HttpProviderConfig,
        creds: Option<&Path>,
    ) -> Result<HttpProvider, CallError> {
        let who = format!("provider {name:?}");
        let base = Url::parse(&cfg.base_url).map_err(|e| {
            CallError::permanent(format!(
                "{who}: `base_url` {:?} is not a URL: {e}",
                cfg.base_url
            ))
        })?;
        let peer = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => cfg.base_url.clone(),
        };
        let auth = resolve_auth(&who, &cfg.auth, creds)?;
        let http = crate::http::client(&who, cfg.timeout, cfg.ca_file.as_deref())?;
        Ok(HttpProvider {
            name: name.to_string(),
            who,
            peer,
            spec: cfg.clone(),
            base,
            http,
            credentials_dir: creds.map(Path::to_path_buf),
            auth: RwLock::new(Arc::new(auth)),
        })
    }

    /// Values of an issue or rotate call.
    fn issue_values<'r>(&self, req: &'r IssueRequest, key_id: Option<&'r str>) -> Values<'r> {
        let tag = self.spec.tag.as_ref().map(|t| t.render(&req.tag));
        let tagged_name = match (&self.spec.tag, &tag) {
            (Some(t), Some(text)) if t.place == TagPlace::Name => format!("{}{text}", req.name),
            _ => req.name.clone(),
        };
        Values {
            key_id,
            key_name: Some(&req.name),
            tagged_name: Some(tagged_name),
            tag,
            rotation_id: Some(&req.tag),
            expires_at: req.expires_at,
            now: Some(req.now),
            scopes: Some(&req.scopes),
            secret: None,
        }
    }

    /// The new key of a successful issue or rotate answer. Past this point
    /// a key exists at the provider, so every error says so.
    #[allow(clippy::too_many_arguments)]
    fn issued(
        &self,
        what: &str,
        ans: &Answer,
        secret_at: &Pointer,
        fields: &Fields,
        sends_expiry: bool,
        same_id: Option<&str>,
        req: &IssueRequest,
    ) -> Result<IssuedKey, CallError> {
        let created = |why: String| {
            CallError::permanent(format!(
                "{}: {what}: {why}; a key named {:?} was probably created at the provider: check it there, and revoke it if keyrot cannot use it",
                self.who, req.name
            ))
        };
        let mut doc: Value = serde_json::from_slice(&ans.body).map_err(|e| {
            created(format!(
                "the answer ({} bytes) is not JSON (line {}, column {})",
                ans.body.len(),
                e.line(),
                e.column()
            ))
        })?;
        let secret = take_secret(&mut doc, secret_at);
        let mut info = key_info(&doc, fields, None, req.now).map_err(created)?;
        if fields.id.is_none() {
            info.id = same_id.unwrap_or_default().to_string();
        }
        let Some(secret) = secret else {
            return Err(created(format!(
                "the answer has no secret at {secret_at} (key {})",
                info.id
            )));
        };
        if info.scopes.is_empty() {
            info.scopes = req.scopes.clone();
        }
        info.name = req.name.clone();
        info.created_by = info.created_by.or_else(|| Some(req.created_by.clone()));
        info.created_at = info.created_at.or(Some(req.now));
        if info.expires_at.is_none() && sends_expiry {
            info.expires_at = req.expires_at;
        }
        info.last_used_at = None;
        if self.spec.tag.is_some() {
            info.tags.insert(TAG_KEY.to_string(), req.tag.clone());
        }
        Ok(IssuedKey { info, secret })
    }

    /// `[provider.issue]`: a new key beside the old one.
    async fn create(&self, op: &IssueOp, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        let what = format!("issue key {:?}", req.name);
        let vals = self.issue_values(req, None);
        let url = self.url(&what, &op.call, &vals)?;
        let ans = self.call(&what, &op.call, &url, &vals, true).await?;
        if !ans.status.is_success() {
            return Err(self.status_error(&what, &ans, req.now));
        }
        self.issued(
            &what,
            &ans,
            &op.secret,
            &op.fields,
            op.call.sends_expiry(),
            None,
            req,
        )
    }

    /// One call of `[provider.rotate]` on key `old`.
    async fn rotate_once(
        &self,
        op: &RotateOp,
        old: &str,
        req: &IssueRequest,
    ) -> Result<IssuedKey, RotateFail> {
        let what = format!("rotate key {old}");
        let vals = self.issue_values(req, Some(old));
        let url = self
            .url(&what, &op.call, &vals)
            .map_err(RotateFail::Other)?;
        let ans = self
            .call(&what, &op.call, &url, &vals, true)
            .await
            .map_err(RotateFail::Other)?;
        if !ans.status.is_success() {
            let err = self.status_error(&what, &ans, req.now);
            return Err(if op.gone_status.contains(&ans.status.as_u16()) {
                RotateFail::Gone(err)
            } else {
                RotateFail::Other(err)
            });
        }
        self.issued(
            &what,
            &ans,
            &op.secret,
            &op.fields,
            op.call.sends_expiry(),
            Some(old),
            req,
        )
        .map_err(RotateFail::Other)
    }

    /// Replaces `old` through the native rotate. When it ends the old key
    /// at once and this issue may be a repeat, an "already gone" answer
    /// means an earlier attempt rotated it and its answer was lost: the key
    /// that attempt made (the newest listed key of this name) is rotated
    /// instead, so its unseen secret is ended, not orphaned.
    async fn rotate(
        &self,
        op: &RotateOp,
        old: &str,
        req: &IssueRequest,
    ) -> Result<IssuedKey, CallError> {
        let gone = match self.rotate_once(op, old, req).await {
            Ok(k) => return Ok(k),
            Err(RotateFail::Gone(e)) if req.resumed && op.no_overlap => e,
            Err(f) => return Err(f.into_error()),
        };
        tracing::warn!(provider = %self.name, old_key = %old, "the key to rotate is already gone: an interrupted attempt may have rotated it; looking for the key it made");
        let listed = self.list(req.now).await?;
        if listed.iter().any(|k| k.id == old) {
            // Still live: the answer meant something else.
            return Err(gone);
        }
        // Only a key made since this rotation started can be what it lost;
        // an older key of the same name is someone else's and stays alone.
        let since = rotation_started(&req.tag).map(|t| t - ORPHAN_CLOCK_SKEW);
        let orphan = listed
            .into_iter()
            .filter(|k| k.name == req.name && k.id != old)
            .filter(|k| match (since, k.created_at) {
                (Some(since), Some(created)) => created >= since,
                _ => true,
            })
            .max_by_key(|k| k.created_at);
        let Some(orphan) = orphan else {
            return Err(CallError::permanent(format!(
                "{}: rotate key {old}: it is already gone ({}) and no other key named {:?} made since the rotation started is listed: create a new key at the provider and enroll it",
                self.who, gone.message, req.name
            )));
        };
        tracing::warn!(provider = %self.name, old_key = %old, orphan = %orphan.id,
            "rotating the key an interrupted rotation made (its secret was never seen)");
        self.rotate_once(op, &orphan.id, req)
            .await
            .map_err(RotateFail::into_error)
    }

    /// Before a repeated, non-idempotent create: revoke the keys an earlier
    /// attempt may have made (by tag), or stop for an operator. (The state
    /// machine skips this when the rotate path is safe to repeat.)
    async fn clean_orphans(&self, req: &IssueRequest) -> Result<(), CallError> {
        if !self.capabilities().tag || self.spec.revoke.is_none() {
            return Err(CallError::permanent(format!(
                "{}: interrupted while issuing, and this provider cannot find what the attempt made (no [provider.tag] with list and revoke): look for a key named {:?} created after the rotation started and revoke it before resuming",
                self.who, req.name
            )));
        }
        for orphan in self.find_tagged(&req.tag, req.now).await? {
            self.revoke(&orphan.id, req.now).await?;
            tracing::warn!(provider = %self.name, orphan = %orphan.id, "revoked a key an interrupted attempt had issued (its secret was never seen)");
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for HttpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn capabilities(&self) -> Capabilities {
        self.spec.capabilities()
    }

    async fn list(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        self.list_keys(now).await
    }

    /// The key's `last_used_at` from the list, for a preset that declares
    /// `last_used_precision`. A key not listed, or listed without a
    /// readable `last_used_at` (null, absent, unparsable), is unknown: an
    /// API cannot tell "never used" from "not recorded yet" in one field.
    async fn last_used(&self, id: &str, now: Timestamp) -> Result<super::LastUse, CallError> {
        if self.spec.capabilities().last_used.is_none() {
            return Err(CallError::permanent(format!(
                "{}: its preset declares no `last_used_precision`: it does not report last use",
                self.who
            )));
        }
        let keys = self.list_keys(now).await?;
        Ok(match keys.into_iter().find(|k| k.id == id) {
            None => super::LastUse::Unknown {
                why: format!("key {id} is not listed"),
            },
            Some(k) => match k.last_used_at {
                Some(at) => super::LastUse::At { at },
                None => super::LastUse::Unknown {
                    why: format!("the list gives key {id} no readable last_used_at"),
                },
            },
        })
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        if let (Some(old), Some(op)) = (req.replaces.as_deref(), &self.spec.rotate) {
            return self.rotate(op, old, req).await;
        }
        let Some(op) = &self.spec.issue else {
            let why = if self.spec.rotate.is_some() {
                format!(
                    "only [provider.rotate] is configured, which needs a key to rotate: create the first key named {:?} at the provider and let keyrot adopt it (or configure [provider.issue])",
                    req.name
                )
            } else {
                "no [provider.issue] is configured".to_string()
            };
            return Err(CallError::permanent(format!("{}: {why}", self.who)));
        };
        if req.resumed && !op.idempotent && self.capabilities().idempotent_issue {
            self.clean_orphans(req).await?;
        }
        self.create(op, req).await
    }

    async fn find_tagged(&self, tag: &str, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        if !self.capabilities().tag {
            return Ok(Vec::new());
        }
        Ok(self
            .list(now)
            .await?
            .into_iter()
            .filter(|k| k.tags.get(TAG_KEY).map(String::as_str) == Some(tag))
            .collect())
    }

    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<(), CallError> {
        let Some(op) = &self.spec.verify else {
            return Ok(());
        };
        let what = format!("verify key {id}");
        let vals = Values {
            key_id: Some(id),
            now: Some(now),
            secret: Some(secret),
            ..Values::default()
        };
        let url = self.url(&what, &op.call, &vals)?;
        let ans = self.call(&what, &op.call, &url, &vals, op.use_auth).await?;
        let scrub = |e: CallError| self.scrub(e, Some(secret));
        let accepted = if op.ok_status.is_empty() {
            ans.status.is_success()
        } else {
            op.ok_status.contains(&ans.status.as_u16())
        };
        if !accepted {
            if matches!(ans.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                let detail = crate::http::error_detail(&ans.body)
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                // Transient: some APIs take a moment to accept a new key.
                return Err(scrub(CallError::transient(format!(
                    "{}: the new key does not authenticate (key {id}: {} {} with it answered {}{detail})",
                    self.who,
                    op.call.method,
                    url.path(),
                    ans.status.as_u16()
                ))));
            }
            return Err(scrub(self.status_error(&what, &ans, now)));
        }
        if op.expect_id.is_none() && op.expect.is_empty() {
            return Ok(());
        }
        let doc = self.json(&what, &ans).map_err(scrub)?;
        if let Some(p) = &op.expect_id {
            let got = p.get(&doc).and_then(text);
            if got.as_deref() != Some(id) {
                return Err(scrub(CallError::permanent(format!(
                    "{}: {what}: the new secret authenticates as key {}, not {id}",
                    self.who,
                    got.as_deref().unwrap_or("(none at the pointer)")
                ))));
            }
        }
        if !all_hold(&doc, &op.expect) {
            let want: Vec<String> = op
                .expect
                .iter()
                .map(|(p, v)| format!("{} = {v}", p.0))
                .collect();
            return Err(scrub(CallError::transient(format!(
                "{}: {what}: the answer does not show the key as working (expected {})",
                self.who,
                want.join(", ")
            ))));
        }
        Ok(())
    }

    async fn revoke(&self, id: &str, now: Timestamp) -> Result<(), CallError> {
        let Some(op) = &self.spec.revoke else {
            return Err(CallError::permanent(format!(
                "{}: no [provider.revoke] is configured",
                self.who
            )));
        };
        let what = format!("revoke key {id}");
        let vals = Values {
            key_id: Some(id),
            now: Some(now),
            ..Values::default()
        };
        let url = self.url(&what, &op.call, &vals)?;
        let ans = self.call(&what, &op.call, &url, &vals, true).await?;
        if ans.status.is_success() {
            return Ok(());
        }
        if op.gone_status.contains(&ans.status.as_u16()) {
            tracing::info!(provider = %self.name, key_id = %id, status = ans.status.as_u16(), "revoke: key not found or already revoked; counts as done");
            return Ok(());
        }
        Err(self.status_error(&what, &ans, now))
    }
}

#[cfg(test)]
mod tests;
