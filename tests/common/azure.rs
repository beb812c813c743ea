//! An emulator of Microsoft Entra ID's token endpoint and of Azure Key
//! Vault's secrets API, for the `azure-keyvault` sink's tests: no real Key
//! Vault can run here, so this test double stands in for it. It serves both
//! on one loopback port (`url()` is the vault URL *and* the authority host),
//! in a thread with its own tokio runtime, and stops when dropped.
//!
//! Follows, from Microsoft's published references:
//! - "Microsoft identity platform and the OAuth 2.0 client credentials
//!   flow": `POST /{tenant}/oauth2/v2.0/token`, form-encoded `client_id`,
//!   `client_secret`, `scope`, `grant_type=client_credentials`; success is
//!   200 `{token_type: "Bearer", expires_in, ext_expires_in, access_token}`
//!   (expires_in a number, as v2.0 sends it); errors are
//!   `{error, error_description, error_codes, timestamp, trace_id,
//!   correlation_id, error_uri}` with the AADSTS codes Entra uses: unknown
//!   tenant 400 invalid_request AADSTS90002, missing parameter 400
//!   invalid_request AADSTS900144, other grant 400 unsupported_grant_type
//!   AADSTS70003, unknown client 400 unauthorized_client AADSTS700016,
//!   missing secret 401 invalid_client AADSTS7000218, wrong secret 401
//!   invalid_client AADSTS7000215, scope without `/.default` 400
//!   invalid_scope AADSTS1002012, other resource 400 invalid_resource
//!   AADSTS500011. Tokens are opaque random strings (real ones are JWTs;
//!   clients must not read them).
//! - "Set Secret" (7.4): `PUT /secrets/{name}?api-version=…` with `value`
//!   (required), `contentType`, `attributes {enabled, nbf, exp}`, `tags`;
//!   each PUT adds a version with a 32-hex id; answers the SecretBundle
//!   `{value, contentType, id: URL/secrets/NAME/VERSION, attributes {enabled,
//!   nbf, exp, created, updated, recoveryLevel, recoverableDays}, tags}`.
//!   Limits from "About Azure Key Vault secrets": value ≤ 25 KB,
//!   contentType ≤ 255 characters; at most 15 tags.
//! - "Get Secret": `GET /secrets/{name}/{version}`, the version segment
//!   optional (absent or empty: the latest); 404 `SecretNotFound`; a
//!   disabled version answers 403 Forbidden, inner error `SecretDisabled`.
//! - "Azure Key Vault REST API Error Codes": KeyVaultError
//!   `{"error":{code, message, innererror?}}`; 401 `Unauthorized` with
//!   `WWW-Authenticate: Bearer authorization="{authority}/{tenant}",
//!   resource="https://vault.azure.net"`, and the message "AKV10000: Request
//!   is missing a Bearer or PoP token." when there is none.
//! - "Azure Key Vault throttling guidance": 429 with `Retry-After` (on
//!   demand: `throttle_next`).
//! - Secret names `^[0-9a-zA-Z-]+$`, 1–127 characters (400 `BadParameter`
//!   otherwise), compared case-insensitively; `api-version` is required.
//! - Soft delete, as far as a writer sees it: after `soft_delete(name)` a
//!   GET answers 404 SecretNotFound and a PUT 409 Conflict, inner error
//!   `ObjectIsDeletedButRecoverable`.
//!
//! Does not follow: the DELETE, recover and purge endpoints themselves,
//! RBAC and access policies (every issued token may do everything), token
//! audience/issuer/tenant checks beyond "issued here, not expired, not
//! revoked", `nbf`/`exp` enforcement (the service returns expired secrets
//! too), list operations and their paging, Update Secret (PATCH), backup
//! and restore, certificates and keys, managed HSM, private endpoints and
//! firewalls, PoP tokens, `x-ms-*` request/response headers, certificate
//! and federated client credentials, v1.0 token endpoint. Error *messages*
//! other than the AKV10000 and AADSTS texts above are the emulator's own
//! wording; codes and statuses are the services'.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The tenant the emulator knows.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The app registration (client id) it knows.
pub const CLIENT_ID: &str = "fad7d5b3-69d6-4b48-9259-8d12124e1cf1";
/// That app's client secret.
pub const CLIENT_SECRET: &str = "emu~Q8s.client-secret-value_0123456789";
/// The Key Vault resource tokens are issued for.
pub const RESOURCE: &str = "https://vault.azure.net";
/// The only scope the token endpoint accepts.
pub const SCOPE: &str = "https://vault.azure.net/.default";
/// API versions the vault accepts.
const API_VERSIONS: [&str; 8] = [
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
];
/// Largest secret value, in bytes.
const MAX_VALUE_BYTES: usize = 25 * 1024;
/// Longest contentType, in characters.
const MAX_CONTENT_TYPE_CHARS: usize = 255;
/// Most tags on one version.
const MAX_TAGS: usize = 15;
/// `recoveryLevel` the emulated vault reports (soft delete on, purge
/// protection off: the default of a new vault).
const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
/// Soft-delete retention the emulated vault reports.
const RECOVERABLE_DAYS: u32 = 90;

/// One version of a secret, as the emulator holds it.
#[derive(Clone, Debug)]
pub struct SecretVersion {
    /// 32 lower-case hex characters.
    pub version: String,
    /// The value.
    pub value: String,
    /// `contentType`, if set.
    pub content_type: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// `attributes.enabled`.
    pub enabled: bool,
    /// `attributes.exp` (Unix seconds).
    pub exp: Option<i64>,
    /// `attributes.nbf` (Unix seconds).
    pub nbf: Option<i64>,
    /// `attributes.created` (Unix seconds).
    pub created: i64,
    /// `attributes.updated` (Unix seconds).
    pub updated: i64,
}

/// A secret: its name as first written, its versions (oldest first) and
/// whether it sits in the soft-deleted state.
#[derive(Default)]
struct StoredSecret {
    /// Name as first written.
    name: String,
    /// Versions, oldest first.
    versions: Vec<SecretVersion>,
    /// Deleted but recoverable.
    deleted: bool,
}

/// Everything the emulator holds.
#[derive(Default)]
struct Store {
    /// Issued tokens and when each expires.
    tokens: HashMap<String, Instant>,
    /// Lifetime of the tokens issued next, in seconds.
    expires_in: u64,
    /// Token requests received (successful or not).
    token_requests: usize,
    /// Vault requests received (answered or throttled).
    vault_requests: usize,
    /// Vault requests still to answer with 429.
    throttle: usize,
    /// The Retry-After of those answers, in seconds.
    retry_after: u64,
    /// Secrets by lower-case name.
    secrets: HashMap<String, StoredSecret>,
}

/// State shared by the server and the test.
struct Shared {
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// The store.
    store: Mutex<Store>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running emulator; stops when dropped.
pub struct AzureEmulator {
    /// Shared state.
    shared: Arc<Shared>,
    /// Tells the server thread to stop.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server thread.
    thread: Option<JoinHandle<()>>,
}

impl AzureEmulator {
    /// Starts an emulator on a free loopback port; tokens last an hour
    /// (`expires_in` 3599, as Entra issues them) until told otherwise.
    pub fn start() -> AzureEmulator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            url: format!("http://127.0.0.1:{port}"),
            store: Mutex::new(Store {
                expires_in: 3599,
                ..Store::default()
            }),
        });
        let app = router(Arc::clone(&shared));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("azure-emulator".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        r = axum::serve(listener, app).into_future() => {
                            if let Err(e) = r {
                                eprintln!("azure emulator stopped: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here ends every open connection.
            })
            .expect("spawn the emulator thread");
        AzureEmulator {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`: the vault URL and the authority host.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// The tenant it knows ([`TENANT`]).
    pub fn tenant_id(&self) -> &'static str {
        TENANT
    }

    /// The client id it knows ([`CLIENT_ID`]).
    pub fn client_id(&self) -> &'static str {
        CLIENT_ID
    }

    /// That client's secret ([`CLIENT_SECRET`]).
    pub fn client_secret(&self) -> &'static str {
        CLIENT_SECRET
    }

    /// Tokens issued from now on last `secs` seconds.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.shared.lock().expires_in = secs;
    }

    /// The next `n` vault requests answer 429 with `Retry-After: secs`.
    pub fn throttle_next(&self, n: usize, retry_after_secs: u64) {
        let mut s = self.shared.lock();
        s.throttle = n;
        s.retry_after = retry_after_secs;
    }

    /// Token requests received so far.
    pub fn token_requests(&self) -> usize {
        self.shared.lock().token_requests
    }

    /// Vault requests received so far.
    pub fn vault_requests(&self) -> usize {
        self.shared.lock().vault_requests
    }

    /// Every token issued so far (to check none leaks into a message).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.keys().cloned().collect()
    }

    /// Makes every issued token invalid: the vault answers 401 to them.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Issues a token directly, as a successful client-credentials
    /// request would (counted as one).
    pub fn issue_token(&self) -> String {
        let mut s = self.shared.lock();
        s.token_requests += 1;
        issue(&mut s).0
    }

    /// The versions of secret `name`, oldest first (empty when unknown).
    pub fn versions(&self, name: &str) -> Vec<SecretVersion> {
        self.shared
            .lock()
            .secrets
            .get(&name.to_ascii_lowercase())
            .map(|s| s.versions.clone())
            .unwrap_or_default()
    }

    /// The latest version of secret `name`, if it has one.
    pub fn latest(&self, name: &str) -> Option<SecretVersion> {
        self.versions(name).pop()
    }

    /// Puts secret `name` in the deleted-but-recoverable state, as a
    /// DELETE on a vault with soft delete would.
    pub fn soft_delete(&self, name: &str) {
        if let Some(s) = self
            .shared
            .lock()
            .secrets
            .get_mut(&name.to_ascii_lowercase())
        {
            s.deleted = true;
        }
    }

    /// Stops the server (also done on drop).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AzureEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/secrets/{name}", get(get_latest).put(set_secret))
        .route("/secrets/{name}/", get(get_latest))
        .route("/secrets/{name}/{version}", get(get_version))
        .with_state(shared)
}

// ---------------------------------------------------------------------
// Entra ID.

/// A new random token and its lifetime.
fn issue(s: &mut Store) -> (String, u64) {
    let token = format!(
        "emu.{}",
        keyrot_core::crypto::hex_encode(&rand::random::<[u8; 32]>())
    );
    let lifetime = s.expires_in;
    s.tokens.insert(
        token.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    );
    (token, lifetime)
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = shared.lock();
    s.token_requests += 1;
    if tenant != TENANT {
        return entra_error(
            &shared.url,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let form_typed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form = if form_typed {
        form_decode(&body)
    } else {
        HashMap::new()
    };
    let missing = |p: &str| {
        entra_error(
            &shared.url,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{p}'."),
        )
    };
    let Some(grant) = form.get("grant_type") else {
        return missing("grant_type");
    };
    if grant != "client_credentials" {
        return entra_error(
            &shared.url,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let Some(client_id) = form.get("client_id") else {
        return missing("client_id");
    };
    if client_id != CLIENT_ID {
        return entra_error(
            &shared.url,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    }
    let Some(secret) = form.get("client_secret") else {
        return entra_error(
            &shared.url,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if secret != CLIENT_SECRET {
        return entra_error(
            &shared.url,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    let Some(scope) = form.get("scope") else {
        return missing("scope");
    };
    if !scope.ends_with("/.default") {
        return entra_error(
            &shared.url,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    if scope != SCOPE {
        let resource = scope.trim_end_matches("/.default");
        return entra_error(
            &shared.url,
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}."
            ),
        );
    }
    let (token, lifetime) = issue(&mut s);
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store, no-cache")],
        axum::Json(json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        })),
    )
        .into_response()
}

/// An Entra ID error answer.
fn entra_error(base: &str, status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    let trace = uuid::Uuid::now_v7();
    let correlation = uuid::Uuid::now_v7();
    let now = crate::common::wall_now()
        .strftime("%Y-%m-%d %H:%M:%SZ")
        .to_string();
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {now}"
            ),
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
            "error_uri": format!("{base}/error?code={code}"),
        })),
    )
        .into_response()
}

/// Decodes `application/x-www-form-urlencoded` (later duplicates win).
fn form_decode(body: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, |b| *b == b'=');
        let k = percent_decode(it.next().unwrap_or_default());
        let v = percent_decode(it.next().unwrap_or_default());
        out.insert(k, v);
    }
    out
}

/// `+` as space, `%XX` as that byte; invalid UTF-8 replaced.
fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------
// Key Vault.

/// A KeyVaultError answer.
fn kv_error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        error["innererror"] = json!({ "code": inner });
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// The checks every vault request goes through, in the service's order:
/// throttling, the bearer token, the api-version, the name. `Some` is the
/// answer to give instead.
fn admit(
    shared: &Shared,
    s: &mut Store,
    headers: &HeaderMap,
    query: Option<&str>,
    name: &str,
) -> Option<Response> {
    s.vault_requests += 1;
    if s.throttle > 0 {
        s.throttle -= 1;
        let mut r = kv_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received.",
            None,
        );
        if let Ok(v) = HeaderValue::from_str(&s.retry_after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Some(r);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let unauthorized = |message: &str| {
        let mut r = kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", message, None);
        let challenge = format!(
            "Bearer authorization=\"{}/{TENANT}\", resource=\"{RESOURCE}\"",
            shared.url
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    };
    match bearer {
        None => {
            return Some(unauthorized(
                "AKV10000: Request is missing a Bearer or PoP token.",
            ));
        }
        Some(t) => match s.tokens.get(t) {
            None => {
                return Some(unauthorized(
                    "The access token was not issued by this tenant's Entra ID, or was revoked.",
                ));
            }
            Some(exp) if *exp <= Instant::now() => {
                return Some(unauthorized("The access token has expired."));
            }
            Some(_) => {}
        },
    }
    let params = form_decode(query.unwrap_or_default().as_bytes());
    match params.get("api-version") {
        None => {
            return Some(kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The 'api-version' query parameter is required.",
                None,
            ));
        }
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => {
            return Some(kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                &format!(
                    "The specified version ({v}) is not recognized. Consider using the latest supported version (7.4)."
                ),
                None,
            ));
        }
        Some(_) => {}
    }
    let name_ok = (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !name_ok {
        return Some(kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!("The request URI contains an invalid name: {name}"),
            None,
        ));
    }
    None
}

fn not_found(name: &str) -> Response {
    kv_error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command."
        ),
        None,
    )
}

/// The SecretBundle of one version.
fn bundle(base: &str, name: &str, v: &SecretVersion) -> Value {
    let mut attributes = json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": RECOVERY_LEVEL,
        "recoverableDays": RECOVERABLE_DAYS,
    });
    if let Some(exp) = v.exp {
        attributes["exp"] = json!(exp);
    }
    if let Some(nbf) = v.nbf {
        attributes["nbf"] = json!(nbf);
    }
    let mut b = json!({
        "value": v.value,
        "id": format!("{base}/secrets/{name}/{}", v.version),
        "attributes": attributes,
    });
    if let Some(ct) = &v.content_type {
        b["contentType"] = json!(ct);
    }
    if !v.tags.is_empty() {
        b["tags"] = json!(v.tags);
    }
    b
}

/// A Get Secret answer for `version` (None: the latest).
fn get_answer(shared: &Shared, s: &Store, name: &str, version: Option<&str>) -> Response {
    let Some(secret) = s
        .secrets
        .get(&name.to_ascii_lowercase())
        .filter(|x| !x.deleted)
    else {
        return not_found(name);
    };
    let found = match version {
        None => secret.versions.last(),
        Some(v) => secret
            .versions
            .iter()
            .find(|x| x.version.eq_ignore_ascii_case(v)),
    };
    let Some(v) = found else {
        return not_found(&format!("{name}/{}", version.unwrap_or_default()));
    };
    if !v.enabled {
        return kv_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            Some("SecretDisabled"),
        );
    }
    (
        StatusCode::OK,
        axum::Json(bundle(&shared.url, &secret.name, v)),
    )
        .into_response()
}

async fn get_latest(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut s = shared.lock();
    if let Some(r) = admit(&shared, &mut s, &headers, query.as_deref(), &name) {
        return r;
    }
    get_answer(&shared, &s, &name, None)
}

async fn get_version(
    State(shared): State<Arc<Shared>>,
    Path((name, version)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut s = shared.lock();
    if let Some(r) = admit(&shared, &mut s, &headers, query.as_deref(), &name) {
        return r;
    }
    get_answer(&shared, &s, &name, Some(&version))
}

async fn set_secret(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = shared.lock();
    if let Some(r) = admit(&shared, &mut s, &headers, query.as_deref(), &name) {
        return r;
    }
    let bad = |m: &str| kv_error(StatusCode::BAD_REQUEST, "BadParameter", m, None);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return bad("The request body is not valid JSON.");
    };
    let Some(value) = req.get("value").and_then(Value::as_str) else {
        return bad("Property 'value' is required and must be a string.");
    };
    if value.len() > MAX_VALUE_BYTES {
        return bad("The secret value exceeds the maximum size of 25 KB.");
    }
    let content_type = match req.get("contentType") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if c.chars().count() <= MAX_CONTENT_TYPE_CHARS => Some(c.clone()),
        Some(_) => {
            return bad("Property 'contentType' must be a string of at most 255 characters.");
        }
    };
    let attrs = req.get("attributes").cloned().unwrap_or(json!({}));
    let int = |k: &str| attrs.get(k).and_then(Value::as_i64);
    let enabled = attrs
        .get("enabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut tags = BTreeMap::new();
    if let Some(t) = req.get("tags").filter(|t| !t.is_null()) {
        let Some(obj) = t.as_object() else {
            return bad("Property 'tags' must be an object.");
        };
        if obj.len() > MAX_TAGS {
            return bad("A secret may have at most 15 tags.");
        }
        for (k, v) in obj {
            let Some(v) = v.as_str() else {
                return bad("Tag values must be strings.");
            };
            tags.insert(k.clone(), v.to_string());
        }
    }
    let key = name.to_ascii_lowercase();
    if s.secrets.get(&key).is_some_and(|x| x.deleted) {
        return kv_error(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
            ),
            Some("ObjectIsDeletedButRecoverable"),
        );
    }
    let now = crate::common::wall_now().as_second();
    let version = SecretVersion {
        version: keyrot_core::crypto::hex_encode(&rand::random::<[u8; 16]>()),
        value: value.to_string(),
        content_type,
        tags,
        enabled,
        exp: int("exp"),
        nbf: int("nbf"),
        created: now,
        updated: now,
    };
    let secret = s.secrets.entry(key).or_insert_with(|| StoredSecret {
        name: name.clone(),
        ..StoredSecret::default()
    });
    let answer = bundle(&shared.url, &secret.name, &version);
    secret.versions.push(version);
    (StatusCode::OK, axum::Json(answer)).into_response()
}
