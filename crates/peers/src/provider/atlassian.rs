//! The `atlassian` provider: an Atlassian organisation's admin API keys,
//! through the Admin API (`/orgs/{orgId}/api-keys`): list (following
//! `links.next`), revoke, verify (an authenticated call made with the key
//! itself) and, with `rotate_api = "proposed"`, issue through the rotate
//! endpoint the customer proposed, whose new secret comes back sealed under
//! a pre-shared key and is opened here.
//!
//! Atlassian cannot create an org key through its API: without the proposed
//! endpoint this provider cannot issue, and rotations of its keys are
//! assisted (a person creates the key; `keyrot enroll`). It owns its HTTP
//! client and the admin key and PSK it resolved at build time; it never
//! touches the store. Secrets live in `SecretString`/`Zeroizing` buffers and
//! never reach a message.

mod http;
mod prove;
mod wire;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use self::http::{Answer, redact, status_error};
use super::{Capabilities, Identity, IssueMode, IssueRequest, IssuedKey, Provider};
use keyrot_config::{AtlassianProviderConfig, AtlassianRotateApi, SecretRef};
use keyrot_core::crypto::{self, KEY_LEN};
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

/// Most list pages followed in one `list` (a guard against a server that
/// never stops paging).
const MAX_PAGES: usize = 10_000;

/// A pre-shared key new secrets may be sealed under (`rotate_api = "proposed"`).
struct Psk {
    /// Its id, as a response names it in `encryption.pskId`.
    id: String,
    /// Its bytes, zeroed on drop.
    key: Zeroizing<[u8; KEY_LEN]>,
}

/// An Atlassian organisation's admin API keys.
pub struct AtlassianProvider {
    /// Config name.
    name: String,
    /// Organisation id.
    org_id: String,
    /// API base URL (no trailing `/`).
    base: Url,
    /// Where the admin key comes from, re-read when the API answers 401
    /// (keyrot may have rotated its own admin key into that file).
    admin_ref: SecretRef,
    /// `$CREDENTIALS_DIRECTORY` at build time.
    credentials_dir: Option<PathBuf>,
    /// The admin key in use.
    admin_key: RwLock<Arc<SecretString>>,
    /// The PSKs (the first is `psk_id`'s), when the proposed rotate API is on.
    psks: Vec<Psk>,
    /// Send `?pskId=` with the first PSK's id on the rotate call.
    send_psk_id: bool,
    /// Keys per list page.
    page_size: u32,
    /// Per-request timeout (for messages; the client enforces it).
    timeout: SignedDuration,
    /// HTTP client.
    http: reqwest::Client,
    /// How stale a listed `lastActiveAt` may be (`last_active_precision`).
    last_active_precision: SignedDuration,
}

impl AtlassianProvider {
    /// Builds the provider: resolves `admin_key` (and `psk`) now, so a
    /// missing secret fails at start with the provider and field named.
    pub fn from_config(
        name: &str,
        cfg: &AtlassianProviderConfig,
        credentials_dir: Option<&Path>,
    ) -> Result<AtlassianProvider, CallError> {
        let fail = |field: &str, why: String| {
            CallError::permanent(format!("provider {name:?}: `{field}`: {why}"))
        };
        let admin_key = cfg
            .admin_key
            .resolve(credentials_dir)
            .map_err(|e| fail("admin_key", e.to_string()))?;
        let (psk_refs, send_psk_id) = match &cfg.rotate_api {
            AtlassianRotateApi::None => (&[][..], false),
            AtlassianRotateApi::Proposed { psks, send_psk_id } => (&psks[..], *send_psk_id),
        };
        let mut psks = Vec::with_capacity(psk_refs.len());
        for (i, (id, psk)) in psk_refs.iter().enumerate() {
            let field = if i == 0 { "psk" } else { "psks" };
            let text = psk
                .resolve(credentials_dir)
                .map_err(|e| fail(field, e.to_string()))?;
            let key = parse_psk(text.expose_secret()).ok_or_else(|| {
                fail(
                    field,
                    format!("{psk} must hold 64 hex characters (32 bytes)"),
                )
            })?;
            psks.push(Psk {
                id: id.clone(),
                key,
            });
        }
        let base = Url::parse(&cfg.base_url)
            .map_err(|e| fail("base_url", format!("{:?} is not a URL: {e}", cfg.base_url)))?;
        // Never carry the admin key through a redirect (the shared client follows none).
        let http = crate::http::client(&format!("provider {name:?}"), cfg.timeout, None)?;
        Ok(AtlassianProvider {
            name: name.to_string(),
            org_id: cfg.org_id.clone(),
            base,
            admin_ref: cfg.admin_key.clone(),
            credentials_dir: credentials_dir.map(Path::to_path_buf),
            admin_key: RwLock::new(Arc::new(admin_key)),
            psks,
            send_psk_id,
            page_size: cfg.page_size,
            timeout: cfg.timeout,
            http,
            last_active_precision: cfg.last_active_precision,
        })
    }

    /// `{base}/orgs/{org}/{segments...}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["orgs", self.org_id.as_str()]);
            path.extend(segments);
        }
        url
    }

    /// Sends a request and reads the whole answer.
    async fn send(&self, what: &str, req: RequestBuilder) -> Result<Answer, CallError> {
        crate::http::send(
            &format!("provider {:?}", self.name),
            what,
            crate::http::PeerKind::Atlassian,
            self.timeout,
            req,
        )
        .await
    }

    /// The admin key in use.
    fn admin_key(&self) -> Arc<SecretString> {
        match self.admin_key.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads `admin_key` from its reference; true when it changed
    /// (then the new one is in use).
    async fn reload_admin_key(&self, used: &SecretString) -> bool {
        let r = self.admin_ref.clone();
        let dir = self.credentials_dir.clone();
        let fresh = tokio::task::spawn_blocking(move || r.resolve(dir.as_deref())).await;
        let Ok(Ok(fresh)) = fresh else {
            return false;
        };
        if fresh.expose_secret() == used.expose_secret() {
            return false;
        }
        tracing::info!(provider = %self.name, "admin_key changed at its source; using the new one");
        match self.admin_key.write() {
            Ok(mut k) => *k = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
        true
    }

    /// A call with the admin key. On 401 the key is re-read from its
    /// source, and the call is made once more if it changed.
    async fn admin(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Answer, CallError> {
        let key = self.admin_key();
        let mut ans = self
            .send(what, build().bearer_auth(key.expose_secret()))
            .await?;
        if ans.status == StatusCode::UNAUTHORIZED && self.reload_admin_key(&key).await {
            let key = self.admin_key();
            ans = self
                .send(what, build().bearer_auth(key.expose_secret()))
                .await?;
            scrub(&mut ans.body, key.expose_secret());
            return Ok(ans);
        }
        scrub(&mut ans.body, key.expose_secret());
        Ok(ans)
    }

    /// The URL of the next list page: a full URL (same origin as
    /// `base_url` only: the admin key goes nowhere else) or a cursor token
    /// added to the first page's URL.
    fn next_url(&self, first: &Url, next: &str) -> Result<Url, CallError> {
        if next.starts_with("http://") || next.starts_with("https://") || next.starts_with('/') {
            let url = self.base.join(next).map_err(|e| {
                CallError::permanent(format!(
                    "provider {:?}: list API keys: links.next is not a URL: {e}",
                    self.name
                ))
            })?;
            if url.origin() != self.base.origin() {
                return Err(CallError::permanent(format!(
                    "provider {:?}: list API keys: links.next points at {}, not at base_url's host; refusing to send the admin key there",
                    self.name,
                    url.origin().ascii_serialization()
                )));
            }
            return Ok(url);
        }
        let mut url = first.clone();
        url.query_pairs_mut().append_pair("cursor", next);
        Ok(url)
    }

    /// One page of the key list.
    async fn page(&self, url: &Url, now: Timestamp) -> Result<wire::Page, CallError> {
        let what = "list API keys";
        let ans = self
            .admin(what, || self.http.request(Method::GET, url.clone()))
            .await?;
        if !ans.status.is_success() {
            return Err(status_error(&self.name, what, &ans, now));
        }
        serde_json::from_slice(&ans.body).map_err(|e| {
            CallError::permanent(format!(
                "provider {:?}: {what}: unexpected response: {e}",
                self.name
            ))
        })
    }

    /// The rotate call of the proposed API, and the new secret opened.
    /// Every field of the request goes upstream, the old key's end
    /// explicitly (a server may read an absent `oldKeyExpiresAt` as "now").
    /// The call is not assumed idempotent: an `Idempotency-Key` is sent,
    /// but a lost answer is recovered by the state machine (listing).
    async fn rotate(&self, old: &str, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        let what = format!("rotate API key {old}");
        let mut url = self.url(&["api-keys", "rotate", old]);
        if self.send_psk_id
            && let Some(first) = self.psks.first()
        {
            url.query_pairs_mut().append_pair("pskId", &first.id);
        }
        let body = wire::rotate_body(req);
        let ans = self
            .admin(&what, || {
                self.http
                    .request(Method::PATCH, url.clone())
                    .header(
                        "Idempotency-Key",
                        if req.idempotency_key.is_empty() {
                            req.tag.as_str()
                        } else {
                            req.idempotency_key.as_str()
                        },
                    )
                    .json(&body)
            })
            .await?;
        if !ans.status.is_success() {
            return Err(status_error(&self.name, &what, &ans, req.now));
        }
        // A cut or garbled answer is transient: the key may have been made;
        // the state machine finds it by listing and revokes it before it
        // rotates again.
        let resp: wire::RotateResponse = ans
            .json(&format!("provider {:?}", self.name), &what)
            .map_err(|e| CallError {
                message: format!(
                    "{}; expected data.id, data.encryptedSecret, data.encryption",
                    e.message
                ),
                ..e
            })?;
        let key = resp.data;
        let secret = match self.open(&key) {
            Ok(s) => s,
            Err(why) => return Err(self.unusable(&key.id, old, &why, req.now).await),
        };
        Ok(IssuedKey {
            info: KeyInfo {
                id: key.id,
                name: req.name.clone(),
                // The rotate keeps the old key's scopes; the state machine
                // reads them back from the list once the key is issued.
                scopes: req.scopes.clone(),
                created_by: Some(req.created_by.clone()),
                created_at: Some(req.now),
                expires_at: key.key_expires_at,
                last_used_at: None,
                tags: Default::default(),
            },
            secret,
        })
    }

    /// A new key whose secret keyrot can never read (sealed under a PSK it
    /// does not hold, or damaged): revoked at once, so that no key is left
    /// that nobody holds; the old key is untouched.
    async fn unusable(&self, new: &str, old: &str, why: &str, now: Timestamp) -> CallError {
        let revoked = match self.revoke(new, now).await {
            Ok(()) => format!("new key {new} revoked at once"),
            Err(e) => format!(
                "new key {new} could NOT be revoked ({}): revoke it at admin.atlassian.com",
                e.message
            ),
        };
        tracing::error!(provider = %self.name, new_key = %new, old_key = %old, reason = %why, "the new key's secret cannot be opened; {revoked}");
        CallError::permanent(format!(
            "provider {:?}: rotate: {why}; {revoked}; old key {old} untouched",
            self.name
        ))
    }

    /// Checks how the new secret is sealed and opens it under the PSK the
    /// response names (each configured PSK in turn when it names none),
    /// with the new key's id as associated data. The error says why, in
    /// words without secret material.
    fn open(&self, key: &wire::RotatedKey) -> Result<SecretString, String> {
        let enc = &key.encryption;
        if enc.algorithm != "AES-256-GCM" || enc.key_wrap {
            return Err(format!(
                "the new secret is sealed with {:?}{}, keyrot opens only AES-256-GCM without key wrap",
                enc.algorithm,
                if enc.key_wrap { " and key wrap" } else { "" }
            ));
        }
        let candidates: Vec<&Psk> = match enc.psk_id.as_deref() {
            Some(id) => {
                let named: Vec<&Psk> = self.psks.iter().filter(|p| p.id == id).collect();
                if named.is_empty() {
                    let known: Vec<&str> = self.psks.iter().map(|p| p.id.as_str()).collect();
                    return Err(format!(
                        "the new secret is sealed under PSK {id:?}, which is not configured (known: {})",
                        known.join(", ")
                    ));
                }
                named
            }
            None => self.psks.iter().collect(),
        };
        let sealed = STANDARD
            .decode(key.encrypted_secret.trim())
            .map_err(|_| "encryptedSecret is not base64".to_string())?;
        let plain = candidates
            .iter()
            .find_map(|psk| crypto::open(&psk.key, key.id.as_bytes(), &sealed).ok())
            .ok_or_else(|| {
                let ids: Vec<&str> = candidates.iter().map(|p| p.id.as_str()).collect();
                format!(
                    "sealed secret does not open under PSK {} (wrong PSK or tampered response)",
                    ids.join(", ")
                )
            })?;
        match std::str::from_utf8(&plain) {
            Ok(text) if !text.is_empty() => Ok(SecretString::from(text.to_owned())),
            _ => Err("the opened secret is empty or not UTF-8 text".into()),
        }
    }
}

/// 64 hex characters (surrounding whitespace ignored) as 32 key bytes.
fn parse_psk(text: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let text = text.trim().as_bytes();
    if text.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (dst, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        let (hi, lo) = (digit(pair[0])?, digit(pair[1])?);
        *dst = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(key)
}

/// Replaces every copy of `secret` in an answer's body with `[redacted]`:
/// a server (or a proxy before it) that echoes the `Authorization` header
/// in an error must not put the admin key into keyrot's errors, logs and
/// mails. The old body is wiped.
fn scrub(body: &mut Zeroizing<Vec<u8>>, secret: &str) {
    let secret = secret.as_bytes();
    if secret.is_empty() || !body.windows(secret.len()).any(|w| w == secret) {
        return;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut rest = &body[..];
    while !rest.is_empty() {
        if rest.starts_with(secret) {
            out.extend_from_slice(b"[redacted]");
            rest = &rest[secret.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    *body = out;
}

#[async_trait]
impl Provider for AtlassianProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "atlassian"
    }

    fn capabilities(&self) -> Capabilities {
        let proposed = !self.psks.is_empty();
        Capabilities {
            // The proposed rotate keeps the old key's scopes and leaves the
            // old key alive until told; without it, people create keys.
            issue: if proposed {
                IssueMode::Rotate {
                    keeps_scopes: true,
                    old_ends: false,
                }
            } else {
                IssueMode::Assisted
            },
            list: true,
            revoke: true,
            verify: true,
            tag: false,
            set_expiry: false,
            // An Idempotency-Key is sent, but the seed's API names none:
            // never relied on.
            idempotent_issue: false,
            deactivate: false,
            prove_identity: true,
            last_used: Some(self.last_active_precision),
        }
    }

    /// The key's `lastActiveAt` from the admin listing. A key not listed
    /// (revoked, expired, gone), or listed with `lastActiveAt` null, absent
    /// or unreadable, is unknown: the API may update it lazily, and a key
    /// in use as the old key of an overlap may have been used without it
    /// showing, so "no time" is never read as "never used".
    async fn last_used(&self, id: &str, now: Timestamp) -> Result<super::LastUse, CallError> {
        let keys = self.list(now).await?;
        Ok(match keys.into_iter().find(|k| k.id == id) {
            None => super::LastUse::Unknown {
                why: format!("key {id} is not among the organisation's live API keys"),
            },
            Some(k) => match k.last_used_at {
                Some(at) => super::LastUse::At { at },
                None => super::LastUse::Unknown {
                    why: format!("the listing gives key {id} no readable lastActiveAt"),
                },
            },
        })
    }

    async fn list(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let mut first = self.url(&["api-keys"]);
        first
            .query_pairs_mut()
            .append_pair("limit", &self.page_size.to_string());
        let mut url = first.clone();
        let mut keys = Vec::new();
        let mut cursors = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let page = self.page(&url, now).await?;
            keys.extend(page.data.into_iter().filter_map(wire::ListedKey::into_info));
            let Some(next) = page.links.and_then(|l| l.next).filter(|n| !n.is_empty()) else {
                return Ok(keys);
            };
            if !cursors.insert(next.clone()) {
                return Err(CallError::permanent(format!(
                    "provider {:?}: list API keys: the server repeated a page cursor; stopping instead of looping",
                    self.name
                )));
            }
            url = self.next_url(&first, &next)?;
        }
        Err(CallError::permanent(format!(
            "provider {:?}: list API keys: more than {MAX_PAGES} pages",
            self.name
        )))
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        if self.psks.is_empty() {
            return Err(CallError::permanent(format!(
                "provider {:?}: Atlassian cannot create keys through its API (rotate_api = \"none\"): create the key at admin.atlassian.com and enroll it with `keyrot enroll`",
                self.name
            )));
        }
        let Some(old) = req.replaces.as_deref() else {
            return Err(CallError::permanent(format!(
                "provider {:?}: Atlassian cannot create a first key through its API: create it at admin.atlassian.com and let keyrot adopt it",
                self.name
            )));
        };
        self.rotate(old, req).await
    }

    async fn find_tagged(&self, _tag: &str, _now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        // Atlassian keys carry no tags: an interrupted rotate is found by
        // listing (`Provider::find_interrupted`).
        Ok(Vec::new())
    }

    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<(), CallError> {
        let what = format!("verify key {id}");
        let url = self.url(&["api-keys", "count"]);
        let req = self
            .http
            .request(Method::GET, url)
            .bearer_auth(secret.expose_secret());
        let ans = self
            .send(&what, req)
            .await
            .map_err(|e| redact(e, secret.expose_secret()))?;
        match ans.status {
            // 403: the key authenticated but may not read key counts.
            s if s.is_success() || s == StatusCode::FORBIDDEN => Ok(()),
            StatusCode::UNAUTHORIZED => Err(redact(
                CallError::permanent(format!(
                    "provider {:?}: the new key does not authenticate (key {id}: GET api-keys/count with it answered 401{})",
                    self.name,
                    http::error_detail(&ans.body)
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
                secret.expose_secret(),
            )),
            _ => Err(redact(
                status_error(&self.name, &what, &ans, now),
                secret.expose_secret(),
            )),
        }
    }

    async fn prove_identity(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<Identity, CallError> {
        self.prove(id, secret, now).await
    }

    async fn revoke(&self, id: &str, now: Timestamp) -> Result<(), CallError> {
        let what = format!("revoke API key {id}");
        let url = self.url(&["api-keys", "revoke", id]);
        let ans = self
            .admin(&what, || self.http.request(Method::PATCH, url.clone()))
            .await?;
        match ans.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => {
                tracing::info!(provider = %self.name, key = %id, "revoke: key not found or already revoked; counts as done");
                Ok(())
            }
            _ => Err(status_error(&self.name, &what, &ans, now)),
        }
    }
}
