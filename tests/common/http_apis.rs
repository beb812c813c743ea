//! Scripted HTTP APIs for the `http` provider's tests: GitLab (personal and
//! project access tokens), Grafana (service account tokens), Datadog (API
//! and application keys) and Cloudflare (user API tokens), each under its
//! own path prefix of one axum server on 127.0.0.1:0, run on a background
//! thread. A test double, because these services cannot run here: each one
//! checks what its public API reference requires of a request (method,
//! path, credentials, body fields and their JSON types) and answers in the
//! documented shape, with the documented errors, so a preset that sends the
//! wrong thing fails here as it would there. Every request is recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp, ToSpan as _};
use serde_json::{Value, json};

/// GitLab administrator token (the `gitlab-token` credential).
pub const GITLAB_ADMIN: &str = "glpat-admin-000000000000000000";
/// Grafana admin service account token (the `grafana-token` credential).
pub const GRAFANA_ADMIN: &str = "glsa_admin_0000000000000000000000";
/// Grafana basic auth user and password.
pub const GRAFANA_BASIC: (&str, &str) = ("admin", "grafana-admin-password");
/// Datadog API key keyrot calls with.
pub const DD_API_KEY: &str = "dd0000000000000000000000000api01";
/// Datadog application key keyrot calls with.
pub const DD_APP_KEY: &str = "dd000000000000000000000000000000000app01";
/// Cloudflare token with "API Tokens Write".
pub const CF_ADMIN: &str = "cf-admin-token-000000000000000000000000";

/// Which API a token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// GitLab personal access token (`owner` = user id).
    GitlabPat,
    /// GitLab project access token (`owner` = project path or id).
    GitlabProject,
    /// Grafana service account token (`owner` = service account id).
    Grafana,
    /// Datadog API key.
    DdApi,
    /// Datadog application key of the current user.
    DdApp,
    /// Cloudflare user API token.
    Cloudflare,
}

/// A token held by one of the fake APIs.
#[derive(Clone, Debug)]
pub struct Token {
    /// Which API.
    pub kind: Kind,
    /// Id (numeric text for GitLab and Grafana).
    pub id: String,
    /// Name as stored.
    pub name: String,
    /// The secret.
    pub secret: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Not revoked or deleted.
    pub active: bool,
    /// Owner: user id, project, service account.
    pub owner: String,
    /// Creation.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Raw path and query, as sent (percent-encoding kept).
    pub path: String,
    /// Headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// JSON body, if any.
    pub body: Option<Value>,
    /// Content-Type.
    pub content_type: Option<String>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    url: String,
    tokens: Vec<Token>,
    next_id: u64,
    seen: Vec<Seen>,
    fail: VecDeque<(u16, Option<u32>)>,
    lose: Option<String>,
    echo: bool,
}

type Shared = Arc<Mutex<Inner>>;

/// The running fake APIs.
pub struct HttpApis {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpApis {
    /// Starts the server on a free loopback port.
    pub fn start() -> HttpApis {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Shared = Arc::new(Mutex::new(Inner {
            url: url.clone(),
            next_id: 100,
            ..Inner::default()
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        HttpApis {
            url,
            state,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap()
    }

    /// Creates a token as a person would in the API's console.
    pub fn seed(&self, kind: Kind, owner: &str, name: &str, scopes: &[&str], days: i64) -> Token {
        let mut st = self.lock();
        let t = mint(
            &mut st,
            kind,
            owner,
            name,
            scopes.iter().map(|s| s.to_string()).collect(),
            Some(crate::common::wall_now() + SignedDuration::from_hours(24 * days)),
        );
        st.tokens.push(t.clone());
        t
    }

    /// Moves a token's creation time `secs` into the past.
    pub fn backdate(&self, id: &str, secs: i64) {
        let mut st = self.lock();
        if let Some(t) = st.tokens.iter_mut().find(|t| t.id == id) {
            t.created_at -= SignedDuration::from_secs(secs);
        }
    }

    /// Every token of `kind`, oldest first.
    pub fn tokens(&self, kind: Kind) -> Vec<Token> {
        self.lock()
            .tokens
            .iter()
            .filter(|t| t.kind == kind)
            .cloned()
            .collect()
    }

    /// The token with `id`.
    pub fn token(&self, id: &str) -> Token {
        self.lock()
            .tokens
            .iter()
            .find(|t| t.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no token {id}"))
    }

    /// Live tokens of `kind` named `name`.
    pub fn active(&self, kind: Kind, name: &str) -> Vec<Token> {
        self.tokens(kind)
            .into_iter()
            .filter(|t| t.active && t.name == name)
            .collect()
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_seen(&self) {
        self.lock().seen.clear();
    }

    /// The next `count` requests get `status` (with `Retry-After`).
    pub fn fail_next(&self, status: u16, retry_after: Option<u32>, count: usize) {
        let mut st = self.lock();
        st.fail.clear();
        for _ in 0..count {
            st.fail.push_back((status, retry_after));
        }
    }

    /// The next request whose path contains `part` is carried out, but its
    /// answer is lost (502, empty body), as when a connection drops.
    pub fn lose_next_answer(&self, part: &str) {
        self.lock().lose = Some(part.to_string());
    }

    /// 401 answers echo the credential they were given (as some careless
    /// APIs do), to check that keyrot scrubs it from its errors.
    pub fn echo_credentials(&self, on: bool) {
        self.lock().echo = on;
    }
}

impl Drop for HttpApis {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mint(
    st: &mut Inner,
    kind: Kind,
    owner: &str,
    name: &str,
    scopes: Vec<String>,
    expires_at: Option<Timestamp>,
) -> Token {
    st.next_id += 1;
    let n = st.next_id;
    let rand = uuid::Uuid::now_v7().simple().to_string();
    let (id, secret) = match kind {
        Kind::GitlabPat | Kind::GitlabProject => (n.to_string(), format!("glpat-{rand}")),
        Kind::Grafana => (n.to_string(), format!("glsa_{rand}_{n:08x}")),
        Kind::DdApi => (format!("dd-api-{n}-{}", &rand[..8]), rand[..32].to_string()),
        Kind::DdApp => (
            format!("dd-app-{n}-{}", &rand[..8]),
            format!("{rand}{n:08x}"),
        ),
        Kind::Cloudflare => (
            format!("{:032x}", u128::from(n) << 64 | 0xcf),
            format!("cf-{rand}"),
        ),
    };
    Token {
        kind,
        id,
        name: name.to_string(),
        secret,
        scopes,
        active: true,
        owner: owner.to_string(),
        created_at: crate::common::wall_now(),
        expires_at,
    }
}

fn reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn empty(status: u16) -> Response {
    StatusCode::from_u16(status).unwrap().into_response()
}

/// The request's parts the APIs look at.
struct Req {
    method: Method,
    segs: Vec<String>,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Option<Value>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    }
}

async fn handle(State(st): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw_body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let uri: Uri = parts.uri.clone();
    let body: Option<Value> = if raw_body.is_empty() {
        None
    } else {
        serde_json::from_slice(&raw_body).ok()
    };
    let query: HashMap<String, String> = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0.into_iter().collect())
        .unwrap_or_default();
    let mut st = st.lock().unwrap();
    st.seen.push(Seen {
        method: parts.method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.clone(),
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    if let Some((status, retry)) = st.fail.pop_front() {
        let mut r = reply(status, json!({"message": "forced failure"}));
        if let Some(s) = retry {
            r.headers_mut().insert(
                "retry-after",
                HeaderValue::from_str(&s.to_string()).unwrap(),
            );
        }
        return r;
    }
    let path = uri.path().to_string();
    let segs: Vec<String> = path.split('/').skip(1).map(str::to_string).collect();
    let req = Req {
        method: parts.method,
        segs,
        query,
        headers: parts.headers,
        body,
    };
    let answer = match req.segs.first().map(String::as_str) {
        Some("gitlab") => gitlab(&mut st, &req),
        Some("grafana") => grafana(&mut st, &req),
        Some("datadog") => datadog(&mut st, &req),
        Some("cloudflare") => cloudflare(&mut st, &req),
        Some("redirect") => {
            let mut r = empty(302);
            r.headers_mut().insert(
                "location",
                HeaderValue::from_static("http://127.0.0.1:9/stolen"),
            );
            r
        }
        _ => reply(404, json!({"message": "404 Not Found"})),
    };
    if let Some(part) = st.lose.clone()
        && path.contains(&part)
    {
        st.lose = None;
        return empty(502);
    }
    answer
}

fn unauthorized(st: &Inner, given: Option<&str>, body: Value) -> Response {
    let mut body = body;
    if st.echo
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert(
            "message".into(),
            json!(format!("invalid credential {}", given.unwrap_or("-"))),
        );
    }
    reply(401, body)
}

fn ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn date(t: Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()
}

// ---------------------------------------------------------------------
// GitLab: /gitlab/api/v4/...

fn gitlab_json(t: &Token, with_secret: bool) -> Value {
    let mut v = json!({
        "id": t.id.parse::<u64>().unwrap(),
        "name": t.name,
        "revoked": !t.active,
        "created_at": ts(t.created_at),
        "scopes": t.scopes,
        "user_id": 7,
        "last_used_at": null,
        "active": t.active,
        "expires_at": t.expires_at.map(date),
    });
    if t.kind == Kind::GitlabProject {
        v["access_level"] = json!(30);
    }
    if with_secret {
        v["token"] = json!(t.secret);
    }
    v
}

/// `expires_at` of a GitLab body: absent, or a `YYYY-MM-DD` string within
/// a year; anything else is the error GitLab gives.
fn gitlab_expiry(req: &Req, default_days: i64) -> Result<Timestamp, (u16, Value)> {
    let today = crate::common::wall_now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let Some(v) = req.body.as_ref().and_then(|b| b.get("expires_at")) else {
        let d = today.checked_add(default_days.days()).unwrap();
        return Ok(d.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp());
    };
    let s = v.as_str().filter(|s| s.len() == 10);
    let Some(d) = s.and_then(|s| s.parse::<jiff::civil::Date>().ok()) else {
        return Err((400, json!({"error": "expires_at is invalid"})));
    };
    if d <= today || d > today.checked_add(365.days()).unwrap() {
        return Err((
            400,
            json!({"message": "400 Bad request - Expiration date must be within a year"}),
        ));
    }
    Ok(d.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp())
}

fn gitlab_page(st: &Inner, req: &Req, list: Vec<&Token>) -> Response {
    let per_page: usize = req
        .query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20)
        .min(100);
    let page: usize = req
        .query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let items: Vec<Value> = list
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|t| gitlab_json(t, false))
        .collect();
    let mut r = reply(200, Value::Array(items));
    if page * per_page < list.len() {
        let mut q: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        q.sort();
        q.push(("page".into(), (page + 1).to_string()));
        let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let link = format!(
            "<{}/{}?{}>; rel=\"next\", <{}/{}?page=1>; rel=\"first\"",
            st.url,
            req.segs.join("/"),
            qs.join("&"),
            st.url,
            req.segs.join("/")
        );
        r.headers_mut()
            .insert("link", HeaderValue::from_str(&link).unwrap());
        r.headers_mut().insert(
            "x-next-page",
            HeaderValue::from_str(&(page + 1).to_string()).unwrap(),
        );
    }
    r
}

fn gitlab(st: &mut Inner, req: &Req) -> Response {
    let s: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    if s.get(1..3) != Some(&["api", "v4"]) {
        return reply(404, json!({"message": "404 Not Found"}));
    }
    let s = &s[3..];
    let given = req.bearer().or(req.header("private-token"));
    // GET /personal_access_tokens/self: authenticated by the token itself.
    if req.method == Method::GET && s == ["personal_access_tokens", "self"] {
        return match st.tokens.iter().find(|t| {
            matches!(t.kind, Kind::GitlabPat | Kind::GitlabProject)
                && t.active
                && Some(t.secret.as_str()) == given
        }) {
            Some(t) => reply(200, gitlab_json(t, false)),
            None => unauthorized(st, given, json!({"message": "401 Unauthorized"})),
        };
    }
    if given != Some(GITLAB_ADMIN) {
        return unauthorized(st, given, json!({"message": "401 Unauthorized"}));
    }
    if req.body.is_some() && !req.is_json() {
        return reply(415, json!({"message": "415 Unsupported Media Type"}));
    }
    let (kind, owner, rest): (Kind, String, &[&str]) = match s {
        ["personal_access_tokens", rest @ ..] => (
            Kind::GitlabPat,
            req.query.get("user_id").cloned().unwrap_or_default(),
            rest,
        ),
        ["projects", project, "access_tokens", rest @ ..] => {
            // GitLab wants a project path URL-encoded: "acme%2Fweb".
            (Kind::GitlabProject, project.replace("%2F", "/"), rest)
        }
        _ => return reply(404, json!({"message": "404 Not Found"})),
    };
    match (&req.method, rest) {
        (&Method::GET, []) => {
            let active_only = req.query.get("state").map(String::as_str) == Some("active");
            let list: Vec<&Token> = st
                .tokens
                .iter()
                .filter(|t| {
                    t.kind == kind
                        && (kind == Kind::GitlabPat && owner.is_empty() || t.owner == owner)
                })
                .filter(|t| !active_only || t.active)
                .collect();
            gitlab_page(st, req, list)
        }
        (&Method::POST, []) if kind == Kind::GitlabProject => {
            let b = req.body.clone().unwrap_or(Value::Null);
            let name = b["name"].as_str().filter(|n| !n.is_empty());
            let scopes: Option<Vec<String>> = b["scopes"].as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            });
            let level_ok = b
                .get("access_level")
                .is_none_or(|l| [10, 20, 30, 40, 50].contains(&l.as_i64().unwrap_or(0)));
            let (Some(name), Some(scopes)) = (name, scopes.filter(|s| !s.is_empty())) else {
                return reply(400, json!({"error": "name is missing, scopes is missing"}));
            };
            if !level_ok {
                return reply(
                    400,
                    json!({"error": "access_level does not have a valid value"}),
                );
            }
            let exp = match gitlab_expiry(req, 30) {
                Ok(e) => e,
                Err((status, body)) => return reply(status, body),
            };
            let t = mint(st, kind, &owner, name, scopes, Some(exp));
            st.tokens.push(t.clone());
            reply(201, gitlab_json(&t, true))
        }
        (&Method::POST, [id, "rotate"]) => {
            let Some(i) = st.tokens.iter().position(|t| {
                t.kind == kind && t.id == *id && (kind == Kind::GitlabPat || t.owner == owner)
            }) else {
                return reply(404, json!({"message": "404 Not Found"}));
            };
            if !st.tokens[i].active {
                return reply(
                    400,
                    json!({"message": "400 Bad request - token already revoked"}),
                );
            }
            let exp = match gitlab_expiry(req, 7) {
                Ok(e) => e,
                Err((status, body)) => return reply(status, body),
            };
            st.tokens[i].active = false;
            let old = st.tokens[i].clone();
            let t = mint(
                st,
                kind,
                &old.owner,
                &old.name,
                old.scopes.clone(),
                Some(exp),
            );
            st.tokens.push(t.clone());
            reply(200, gitlab_json(&t, true))
        }
        (&Method::DELETE, [id]) => {
            match st
                .tokens
                .iter_mut()
                .find(|t| t.kind == kind && t.id == *id && t.active)
            {
                Some(t) => {
                    t.active = false;
                    empty(204)
                }
                None => reply(404, json!({"message": "404 Not Found"})),
            }
        }
        _ => reply(404, json!({"message": "404 Not Found"})),
    }
}

// ---------------------------------------------------------------------
// Grafana: /grafana/api/...

fn grafana(st: &mut Inner, req: &Req) -> Response {
    let s: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let s = &s[1..];
    let given = req.bearer();
    if req.method == Method::GET && s == ["api", "org"] {
        let ok = st
            .tokens
            .iter()
            .any(|t| t.kind == Kind::Grafana && t.active && Some(t.secret.as_str()) == given);
        return if ok {
            reply(200, json!({"id": 1, "name": "Main Org.", "address": {}}))
        } else {
            unauthorized(st, given, json!({"message": "invalid API key"}))
        };
    }
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", GRAFANA_BASIC.0, GRAFANA_BASIC.1))
    );
    if given != Some(GRAFANA_ADMIN) && req.header("authorization") != Some(basic.as_str()) {
        return unauthorized(st, given, json!({"message": "Unauthorized"}));
    }
    let ["api", "serviceaccounts", sa, "tokens", rest @ ..] = s else {
        return reply(404, json!({"message": "Not found"}));
    };
    let sa = sa.to_string();
    match (&req.method, rest) {
        (&Method::GET, []) => {
            let now = crate::common::wall_now();
            let list: Vec<Value> = st
                .tokens
                .iter()
                .filter(|t| t.kind == Kind::Grafana && t.owner == sa && t.active)
                .map(|t| {
                    json!({
                        "id": t.id.parse::<u64>().unwrap(),
                        "name": t.name,
                        "created": ts(t.created_at),
                        "lastUsedAt": null,
                        "expiration": t.expires_at.map(ts),
                        "secondsUntilExpiration": t.expires_at.map(|e| (e.as_second() - now.as_second()).max(0)).unwrap_or(0),
                        "hasExpired": t.expires_at.is_some_and(|e| e <= now),
                        "isRevoked": false,
                    })
                })
                .collect();
            reply(200, Value::Array(list))
        }
        (&Method::POST, []) => {
            if !req.is_json() {
                return reply(400, json!({"message": "bad request data"}));
            }
            let b = req.body.clone().unwrap_or(Value::Null);
            let Some(name) = b["name"].as_str().filter(|n| !n.is_empty()) else {
                return reply(
                    400,
                    json!({"message": "bad request data: name is required"}),
                );
            };
            let ttl = match b.get("secondsToLive") {
                None => 0,
                Some(v) => match v.as_i64().filter(|n| *n >= 0) {
                    Some(n) => n,
                    None => {
                        return reply(
                            400,
                            json!({"message": "bad request data: secondsToLive must be an integer"}),
                        );
                    }
                },
            };
            if st
                .tokens
                .iter()
                .any(|t| t.kind == Kind::Grafana && t.owner == sa && t.active && t.name == name)
            {
                return reply(
                    409,
                    json!({"message": "service account token with given name already exists in the organization"}),
                );
            }
            let exp = (ttl > 0).then(|| crate::common::wall_now() + SignedDuration::from_secs(ttl));
            let t = mint(st, Kind::Grafana, &sa, name, Vec::new(), exp);
            st.tokens.push(t.clone());
            reply(
                200,
                json!({"id": t.id.parse::<u64>().unwrap(), "name": t.name, "key": t.secret}),
            )
        }
        (&Method::DELETE, [id]) => match st
            .tokens
            .iter_mut()
            .find(|t| t.kind == Kind::Grafana && t.owner == sa && t.id == *id && t.active)
        {
            Some(t) => {
                t.active = false;
                reply(200, json!({"message": "Service account token deleted"}))
            }
            None => reply(404, json!({"message": "service account token not found"})),
        },
        _ => reply(404, json!({"message": "Not found"})),
    }
}

// ---------------------------------------------------------------------
// Datadog: /datadog/api/...

fn dd_json(t: &Token, with_secret: bool) -> Value {
    let kind = if t.kind == Kind::DdApi {
        "api_keys"
    } else {
        "application_keys"
    };
    let mut attrs = json!({
        "created_at": t.created_at.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
        "last4": &t.secret[t.secret.len() - 4..],
        "name": t.name,
    });
    if t.kind == Kind::DdApi {
        attrs["modified_at"] = attrs["created_at"].clone();
        attrs["remote_config_read_enabled"] = json!(false);
    } else {
        attrs["scopes"] = if t.scopes.is_empty() {
            Value::Null
        } else {
            json!(t.scopes)
        };
        attrs["last_used_at"] = Value::Null;
    }
    if with_secret {
        attrs["key"] = json!(t.secret);
    }
    json!({"type": kind, "id": t.id, "attributes": attrs})
}

fn datadog(st: &mut Inner, req: &Req) -> Response {
    let s: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let s = &s[1..];
    let forbidden = || reply(403, json!({"errors": ["Forbidden"]}));
    let api = req.header("dd-api-key");
    let app = req.header("dd-application-key");
    if req.method == Method::GET && s == ["api", "v1", "validate"] {
        let ok = api == Some(DD_API_KEY)
            || st
                .tokens
                .iter()
                .any(|t| t.kind == Kind::DdApi && t.active && Some(t.secret.as_str()) == api);
        return if ok {
            reply(200, json!({"valid": true}))
        } else {
            forbidden()
        };
    }
    let app_ok = app == Some(DD_APP_KEY)
        || st
            .tokens
            .iter()
            .any(|t| t.kind == Kind::DdApp && t.active && Some(t.secret.as_str()) == app);
    if api != Some(DD_API_KEY) || !app_ok {
        return forbidden();
    }
    // Only reading one's own app key is allowed with a non-admin app key.
    let admin = app == Some(DD_APP_KEY);
    let (kind, rest) = match s {
        ["api", "v2", "api_keys", rest @ ..] => (Kind::DdApi, rest),
        ["api", "v2", "current_user", "application_keys", rest @ ..] => (Kind::DdApp, rest),
        _ => return reply(404, json!({"errors": ["Not found"]})),
    };
    if !(admin || req.method == Method::GET && rest.len() == 1) {
        return forbidden();
    }
    let type_name = if kind == Kind::DdApi {
        "api_keys"
    } else {
        "application_keys"
    };
    match (&req.method, rest) {
        (&Method::GET, []) => {
            let size: usize = match req.query.get("page[size]").map(|s| s.parse::<usize>()) {
                None => 10,
                Some(Ok(n)) if (1..=100).contains(&n) => n,
                _ => {
                    return reply(
                        400,
                        json!({"errors": ["page[size] must be between 1 and 100"]}),
                    );
                }
            };
            let number: usize = req
                .query
                .get("page[number]")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let all: Vec<&Token> = st
                .tokens
                .iter()
                .filter(|t| t.kind == kind && t.active)
                .collect();
            let data: Vec<Value> = all
                .iter()
                .skip(number * size)
                .take(size)
                .map(|t| dd_json(t, false))
                .collect();
            reply(
                200,
                json!({"data": data, "meta": {"page": {"total_filtered_count": all.len()}}}),
            )
        }
        (&Method::POST, []) => {
            let b = req.body.clone().unwrap_or(Value::Null);
            if !req.is_json() || b["data"]["type"] != type_name {
                return reply(
                    400,
                    json!({"errors": [format!("data.type must be {type_name}")]}),
                );
            }
            let attrs = &b["data"]["attributes"];
            let Some(name) = attrs["name"].as_str().filter(|n| !n.is_empty()) else {
                return reply(400, json!({"errors": ["name is required"]}));
            };
            let scopes = match &attrs["scopes"] {
                Value::Null => Vec::new(),
                Value::Array(a) if kind == Kind::DdApp => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
                _ => {
                    return reply(
                        400,
                        json!({"errors": ["scopes must be an array of strings"]}),
                    );
                }
            };
            let t = mint(st, kind, "current_user", name, scopes, None);
            st.tokens.push(t.clone());
            reply(201, json!({"data": dd_json(&t, true)}))
        }
        (&Method::GET, [id]) => match st
            .tokens
            .iter()
            .find(|t| t.kind == kind && t.id == *id && t.active)
        {
            Some(t) => reply(200, json!({"data": dd_json(t, false)})),
            None => reply(404, json!({"errors": ["Not found"]})),
        },
        (&Method::DELETE, [id]) => match st
            .tokens
            .iter_mut()
            .find(|t| t.kind == kind && t.id == *id && t.active)
        {
            Some(t) => {
                t.active = false;
                empty(204)
            }
            None => reply(404, json!({"errors": ["API key not found"]})),
        },
        _ => reply(404, json!({"errors": ["Not found"]})),
    }
}

// ---------------------------------------------------------------------
// Cloudflare: /cloudflare/client/v4/...

fn cf_ok(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn cf_err(code: u32, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

fn cf_json(t: &Token) -> Value {
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "status": if t.active { "active" } else { "disabled" },
        "issued_on": t.created_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "modified_on": t.created_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "policies": [],
    });
    if let Some(e) = t.expires_at {
        v["expires_on"] = json!(e.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    v
}

fn cloudflare(st: &mut Inner, req: &Req) -> Response {
    let s: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    if s.get(1..3) != Some(&["client", "v4"]) {
        return reply(404, cf_err(7000, "No route for that URI"));
    }
    let s = &s[3..];
    let given = req.bearer();
    if req.method == Method::GET && s == ["user", "tokens", "verify"] {
        return match st
            .tokens
            .iter()
            .find(|t| t.kind == Kind::Cloudflare && t.active && Some(t.secret.as_str()) == given)
        {
            Some(t) => {
                let mut r = json!({"id": t.id, "status": "active"});
                if let Some(e) = t.expires_at {
                    r["expires_on"] = json!(e.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
                }
                reply(200, cf_ok(r))
            }
            None => unauthorized(st, given, cf_err(1000, "Invalid API Token")),
        };
    }
    if given != Some(CF_ADMIN) {
        return unauthorized(st, given, cf_err(10000, "Authentication error"));
    }
    match (&req.method, s) {
        (&Method::GET, ["user", "tokens"]) => {
            let per_page: usize = req
                .query
                .get("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(20);
            if !(1..=50).contains(&per_page) {
                return reply(400, cf_err(1001, "per_page must be between 5 and 50"));
            }
            let page: usize = req
                .query
                .get("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let all: Vec<&Token> = st
                .tokens
                .iter()
                .filter(|t| t.kind == Kind::Cloudflare)
                .collect();
            let result: Vec<Value> = all
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|t| cf_json(t))
                .collect();
            let mut body = cf_ok(Value::Array(result.clone()));
            body["result_info"] = json!({
                "page": page, "per_page": per_page, "count": result.len(),
                "total_count": all.len(), "total_pages": all.len().div_ceil(per_page),
            });
            reply(200, body)
        }
        (&Method::PUT, ["user", "tokens", id, "value"]) => {
            if !req.is_json() || !req.body.as_ref().is_some_and(Value::is_object) {
                return reply(
                    400,
                    cf_err(6003, "Invalid request body: expected a JSON object"),
                );
            }
            let rand = uuid::Uuid::now_v7().simple().to_string();
            match st
                .tokens
                .iter_mut()
                .find(|t| t.kind == Kind::Cloudflare && t.id == *id && t.active)
            {
                Some(t) => {
                    t.secret = format!("cf-{rand}");
                    reply(200, cf_ok(json!(t.secret)))
                }
                None => reply(404, cf_err(1003, "Invalid token id")),
            }
        }
        (&Method::DELETE, ["user", "tokens", id]) => match st
            .tokens
            .iter_mut()
            .find(|t| t.kind == Kind::Cloudflare && t.id == *id && t.active)
        {
            Some(t) => {
                t.active = false;
                reply(200, cf_ok(json!({"id": t.id})))
            }
            None => reply(404, cf_err(1003, "Invalid token id")),
        },
        _ => reply(404, cf_err(7000, "No route for that URI")),
    }
}
