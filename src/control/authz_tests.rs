//! One authorization model on every route, over a real unix socket with
//! the rotate API's harness (`orgs_tests.rs`). The test process runs as
//! root, which the default allow-lists admit, so these servers admit no
//! peer ([`NO_PEERS`]): every call must bring a token. For each route: no
//! token and a wrong token are 401, a token of too little scope is 403, a
//! token with the scope gets through; a key or rotation out of a token's
//! reach is answered exactly as an unknown one.

use serde_json::{Value, json};

use crate::control::server::orgs::tests::{MORE_TOKENS, PSKS, Running, TOKEN, patch, send, start};
use crate::control::views::tests::{put, rotation_rec};
use keyrot_core::model::RotationState;

/// `[daemon]` that admits no peer without a token.
const NO_PEERS: &str = "[daemon]\ncontrol_allow_uids = [4000000000]\ncontrol_allow_gids = []\n";

/// The token of `MORE_TOKENS` named `name`.
fn token(name: &str) -> &'static str {
    MORE_TOKENS.iter().find(|(n, _)| *n == name).unwrap().1
}

/// Tokens: `ci` (rotate, local/ci-*), `read` (every key), `operate`
/// (every key), `admin` (every key), `narrow` (read and operate,
/// local/ci-*).
fn tokens() -> String {
    let mut out = format!(
        "{NO_PEERS}{PSKS}[[api_token]]\nname = \"ci\"\ntoken = {{ file = \"TOKEN_FILE\" }}\n\
         keys = [\"local/ci-*\"]\n"
    );
    for (name, scope, keys) in [
        ("read", "read", "*"),
        ("operate", "operate", "*"),
        ("admin", "admin", "*"),
        ("narrow", "read\", \"operate", "local/ci-*"),
    ] {
        out.push_str(&format!(
            "[[api_token]]\nname = \"{name}\"\ntoken = {{ file = \"DIR/tok-{name}\" }}\n\
             keys = [\"{keys}\"]\nscopes = [\"{scope}\"]\n"
        ));
    }
    out
}

/// A server with [`tokens`] and a failed rotation of each of
/// `local/ci-bot` (`r-ci`, sealed for p1) and `atl/admin` (`r-atl`).
async fn server() -> Running {
    let srv = start(&tokens()).await;
    let mut ci = rotation_rec("r-ci", "local/ci-bot", RotationState::Failed);
    ci.reveal_psk = Some("p1".into());
    let atl = rotation_rec("r-atl", "atl/admin", RotationState::Failed);
    put(&srv.fake.store, &[], &[ci, atl]);
    srv
}

/// Every route but `/v1/health`: method and path, body (JSON, or empty),
/// a token of too little scope (or reach), a token that may call it, and
/// the status that call gets.
const ROUTES: &[(&str, &str, &str, &str, u16)] = &[
    ("GET /v1/status", "", "ci", "read", 200),
    ("GET /v1/status", "", "narrow", "read", 200),
    ("GET /v1/keys", "", "admin", "read", 200),
    ("GET /v1/keys/local/ci-bot", "", "admin", "ci", 200),
    (
        "POST /v1/rotate",
        r#"{"key":"local/ci-bot"}"#,
        "read",
        "ci",
        201,
    ),
    (
        "POST /v1/rotate",
        r#"{"key":"local/ci-bot"}"#,
        "operate",
        "ci",
        201,
    ),
    ("GET /v1/rotations/r-ci", "", "admin", "narrow", 200),
    ("POST /v1/rotations/r-ci/resume", "", "ci", "operate", 200),
    ("POST /v1/rotations/r-ci/abort", "", "read", "operate", 200),
    (
        "POST /v1/rotations/r-ci/restart",
        "",
        "read",
        "operate",
        201,
    ),
    ("POST /v1/rotations/r-ci/restart", "", "ci", "operate", 201),
    (
        "POST /v1/rotations/r-ci/enroll",
        r#"{"secret":"s"}"#,
        "ci",
        "operate",
        200,
    ),
    // 502: the rotate API's answer for a failed rotation.
    (
        "GET /v1/rotations/r-ci/encrypted-secret",
        "",
        "read",
        "ci",
        502,
    ),
    (
        "PATCH /orgs/local/api-keys/rotate/k1",
        "{}",
        "read",
        "ci",
        200,
    ),
    (
        "PATCH /orgs/local/api-keys/rotate/k1",
        "{}",
        "operate",
        "ci",
        200,
    ),
    ("GET /v1/history?key=ci-bot", "", "admin", "narrow", 200),
    ("GET /v1/history", "", "narrow", "read", 200),
    ("GET /v1/plan", "", "admin", "read", 200),
    ("GET /v1/audit", "", "admin", "read", 200),
    ("POST /v1/reload", "", "operate", "admin", 204),
    ("POST /v1/sinks/out/test", "", "admin", "operate", 200),
    ("POST /v1/store/backup", "", "read", "admin", 200),
    ("POST /v1/store/verify", "", "operate", "admin", 200),
];

/// The bearer value of token `name` (`ci` is [`TOKEN`]).
fn bearer(name: &str) -> &'static str {
    if name == "ci" { TOKEN } else { token(name) }
}

#[tokio::test]
async fn every_route_checks_its_caller() {
    let srv = server().await;
    for &(call, body, too_little, enough, ok) in ROUTES {
        let (method, path) = call.split_once(' ').unwrap();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap()
        };
        let none = send(&srv, method, path, None, &body).await;
        assert_eq!(none.status, 401, "{call} without a token: {}", none.body);
        assert_eq!(none.headers["www-authenticate"], "Bearer realm=\"keyrot\"");
        let wrong = Some("not-a-token-0123456789");
        let wrong = send(&srv, method, path, wrong, &body).await;
        assert_eq!(
            wrong.status, 401,
            "{call} with a wrong token: {}",
            wrong.body
        );
        let little = send(&srv, method, path, Some(bearer(too_little)), &body).await;
        assert_eq!(
            little.status, 403,
            "{call} with {too_little}: {}",
            little.body
        );
        let named = format!("api_token \"{too_little}\"");
        assert!(
            little.message().contains(&named),
            "{call}: {}",
            little.message()
        );
        let allowed = send(&srv, method, path, Some(bearer(enough)), &body).await;
        assert_eq!(allowed.status, ok, "{call} with {enough}: {}", allowed.body);
    }
    // Health answers anyone who can connect: it tells nothing.
    let h = send(&srv, "GET", "/v1/health", None, &Value::Null).await;
    assert_eq!((h.status, &h.body["ok"]), (200, &json!(true)));
}

#[tokio::test]
async fn keys_and_rotations_out_of_reach_are_unknown() {
    let srv = server().await;
    let pairs = [
        (
            "GET",
            "/v1/keys/atl/admin",
            "/v1/keys/atl/nothing",
            Value::Null,
        ),
        (
            "GET",
            "/v1/rotations/r-atl",
            "/v1/rotations/r-none",
            Value::Null,
        ),
        (
            "GET",
            "/v1/rotations/r-atl/encrypted-secret",
            "/v1/rotations/r-none/encrypted-secret",
            Value::Null,
        ),
        (
            "POST",
            "/v1/rotate",
            "/v1/rotate",
            json!({"key": "atl/admin"}),
        ),
        ("POST", "/v1/rotate", "/v1/rotate", json!({"key": "admin"})),
        (
            "GET",
            "/v1/history?key=admin",
            "/v1/history?key=nothing",
            Value::Null,
        ),
    ];
    for (method, hidden, unknown, body) in pairs {
        check_hidden(&srv, TOKEN, method, hidden, unknown, body).await;
    }
    let steer = ["resume", "abort", "restart"].map(|a| {
        (
            format!("/v1/rotations/r-atl/{a}"),
            format!("/v1/rotations/r-none/{a}"),
        )
    });
    for (hidden, unknown) in &steer {
        check_hidden(&srv, token("narrow"), "POST", hidden, unknown, Value::Null).await;
    }
    let enroll = json!({"secret": "s"});
    let (hidden, unknown) = ("/v1/rotations/r-atl/enroll", "/v1/rotations/r-none/enroll");
    check_hidden(&srv, token("narrow"), "POST", hidden, unknown, enroll).await;
    assert!(
        srv.fake.seen.lock().unwrap().is_empty(),
        "nothing out of reach reached the backend"
    );
    // The same calls by a token that covers the key get through.
    let a = send(
        &srv,
        "GET",
        "/v1/keys/atl/admin",
        Some(token("read")),
        &Value::Null,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A token's own rotations, started by name, record who started them.
    let a = send(
        &srv,
        "POST",
        "/v1/rotate",
        Some(TOKEN),
        &json!({"key": "ci-bot"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let seen = srv.fake.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.key, "local/ci-bot");
    assert_eq!(seen.rotated_by.as_deref(), Some("api_token:ci"));
}

/// `method hidden` (out of the token's reach) and `method unknown` (does
/// not exist) get the same 404, naming nothing out of reach.
async fn check_hidden(
    srv: &Running,
    bearer: &str,
    method: &str,
    hidden: &str,
    unknown: &str,
    body: Value,
) {
    let other = match body.get("key") {
        Some(_) => json!({"key": "local/nothing"}),
        None => body.clone(),
    };
    let a = send(srv, method, hidden, Some(bearer), &body).await;
    let b = send(srv, method, unknown, Some(bearer), &other).await;
    assert_eq!(a.status, 404, "{method} {hidden}: {}", a.body);
    let scrub = |v: &Value| v.to_string().replace("r-atl", "ID").replace("r-none", "ID");
    assert_eq!(
        scrub(&a.body),
        scrub(&b.body),
        "{method} {hidden} vs {unknown}"
    );
    assert!(!a.body.to_string().contains("atl/admin"), "{}", a.body);
}

#[tokio::test]
async fn an_admitted_peer_needs_no_token_and_a_token_never_widens() {
    // Default allow-lists: root (this test) is admitted.
    let srv = start(&format!(
        "{PSKS}[[api_token]]\nname = \"ci\"\ntoken = {{ file = \"TOKEN_FILE\" }}\nkeys = [\"local/ci-*\"]\n"
    ))
    .await;
    let a = send(&srv, "POST", "/v1/reload", None, &Value::Null).await;
    assert_eq!(a.status, 204, "{}", a.body);
    let a = patch(&srv, "/orgs/org-1/api-keys/rotate/ak-1", &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // With a token, the token's limits apply even to an admitted peer.
    let a = send(&srv, "POST", "/v1/reload", Some(TOKEN), &Value::Null).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = send(
        &srv,
        "POST",
        "/v1/reload",
        Some("wrong-0123456789abcdef"),
        &Value::Null,
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
}

#[tokio::test]
async fn tokens_authenticate_and_limit_keys() {
    let tokens = format!(
        "{NO_PEERS}{PSKS}[[api_token]]\nname = \"ci\"\ntoken = {{ file = \"TOKEN_FILE\" }}\nkeys = [\"local/ci-*\", \"local/slow\"]\n"
    );
    let srv = start(&tokens).await;
    let url = "/orgs/local/api-keys/rotate/k1";
    let a = patch(&srv, url, &json!({})).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.headers["www-authenticate"], "Bearer realm=\"keyrot\"");
    assert!(
        a.message().contains("control_allow_uids"),
        "{}",
        a.message()
    );
    let a = send(
        &srv,
        "PATCH",
        url,
        Some("wrong-token-0123456789"),
        &json!({}),
    )
    .await;
    assert_eq!(a.status, 401);
    // Authentication comes before the body is looked at.
    let a = send(&srv, "PATCH", url, None, &json!({"bogus": 1})).await;
    assert_eq!(a.status, 401);

    let a = send(&srv, "PATCH", url, Some(TOKEN), &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = srv.fake.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.rotated_by.as_deref(), Some("api_token:ci"));

    // A key out of reach and a key that does not exist get one answer.
    let out_of_reach = send(
        &srv,
        "PATCH",
        "/orgs/org-1/api-keys/rotate/ak-1",
        Some(TOKEN),
        &json!({}),
    )
    .await;
    let unknown = send(
        &srv,
        "PATCH",
        "/orgs/org-1/api-keys/rotate/ak-nope",
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(out_of_reach.status, 404, "{}", out_of_reach.body);
    assert_eq!(out_of_reach.body, unknown.body);
    assert!(!out_of_reach.body.to_string().contains("atl/admin"));
    let by_name = send(
        &srv,
        "PATCH",
        "/orgs/atl/api-keys/rotate/admin",
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(by_name.body, unknown.body);
    let a = send(
        &srv,
        "PATCH",
        "/orgs/local/api-keys/rotate/ci-bto",
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.body["error"].get("suggestions"),
        None,
        "no key names for tokens"
    );

    let a = send(
        &srv,
        "PATCH",
        "/orgs/local/api-keys/rotate/slow?wait=false",
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(a.status, 202);
    let g = send(
        &srv,
        "GET",
        "/v1/rotations/r2/encrypted-secret",
        None,
        &Value::Null,
    )
    .await;
    assert_eq!(g.status, 401);
    let g = send(
        &srv,
        "GET",
        "/v1/rotations/r2/encrypted-secret",
        Some(TOKEN),
        &Value::Null,
    )
    .await;
    assert_eq!(g.status, 202);
    // Another slot's rotation is out of this token's reach: "unknown".
    put(
        &srv.fake.store,
        &[],
        &[rotation_rec("r-atl", "atl/admin", RotationState::Issued)],
    );
    let g = send(
        &srv,
        "GET",
        "/v1/rotations/r-atl/encrypted-secret",
        Some(TOKEN),
        &Value::Null,
    )
    .await;
    assert_eq!(g.status, 404);
    assert_eq!(
        g.message(),
        "unknown rotation \"r-atl\" (keyrot history lists rotations)"
    );
    assert_eq!(srv.fake.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn tokens_seal_only_under_their_psks() {
    // p1 is the default; this token may use p2 alone.
    let tokens = format!(
        "{NO_PEERS}{PSKS}[[api_token]]\nname = \"ci\"\ntoken = {{ file = \"TOKEN_FILE\" }}\nkeys = [\"local/*\"]\npsk_ids = [\"p2\"]\n"
    );
    let srv = start(&tokens).await;
    let url = "/orgs/local/api-keys/rotate/k1";
    let refused = send(
        &srv,
        "PATCH",
        &format!("{url}?pskId=p1"),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    let unknown = send(
        &srv,
        "PATCH",
        &format!("{url}?pskId=p9"),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!((refused.status, refused.field()), (400, Some("pskId")));
    assert_eq!(
        refused.message().replace("p1", "X"),
        unknown.message().replace("p9", "X"),
        "a PSK out of reach and an unknown one are answered alike"
    );
    assert!(!unknown.message().contains("p1") && !unknown.message().contains("p2"));
    // Without ?pskId= the token gets the first PSK it may use.
    let a = send(&srv, "PATCH", url, Some(TOKEN), &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["encryption"]["pskId"], "p2");
    assert_eq!(srv.fake.seen.lock().unwrap().len(), 1);

    // The default grant is the first [[psk]] alone.
    let tokens = format!(
        "{NO_PEERS}{PSKS}[[api_token]]\nname = \"ci\"\ntoken = {{ file = \"TOKEN_FILE\" }}\nkeys = [\"local/*\"]\n"
    );
    let srv = start(&tokens).await;
    let a = send(
        &srv,
        "PATCH",
        &format!("{url}?pskId=p2"),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!((a.status, a.field()), (400, Some("pskId")), "{}", a.body);
    let a = send(&srv, "PATCH", url, Some(TOKEN), &json!({})).await;
    assert_eq!(a.body["data"]["encryption"]["pskId"], "p1", "{}", a.body);
}
