//! The generic `http` provider: every shipped preset (GitLab personal and
//! project access tokens, Grafana service account tokens, Datadog API and
//! application keys, Cloudflare API tokens) against scripted copies of
//! those APIs (`common::http_apis`, which check request shapes), the
//! sandbox preset against the real `keyrot sandbox`, and rotations through
//! the real daemon binary. Also: escaping of template values, paging,
//! `Retry-After`, redirects, and that no secret reaches an error or Debug.

use crate::common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use common::http_apis::{self as apis, HttpApis, Kind};
use common::{Daemon, Sandbox, wait_until};
use jiff::{SignedDuration, Timestamp};
use keyrot_config::{HttpProviderConfig, ProviderKind};
use keyrot_core::model::KeyInfo;
use keyrot_peers::provider::http::HttpProvider;
use keyrot_peers::provider::{IssueRequest, Provider};
use secrecy::{ExposeSecret, SecretString};

/// Credentials named as the presets name them, in a credentials directory.
fn creds() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("gitlab-token", apis::GITLAB_ADMIN),
        ("grafana-token", apis::GRAFANA_ADMIN),
        ("grafana-password", apis::GRAFANA_BASIC.1),
        ("datadog-api-key", apis::DD_API_KEY),
        ("datadog-app-key", apis::DD_APP_KEY),
        ("cloudflare-token", apis::CF_ADMIN),
    ] {
        std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
        std::fs::set_permissions(
            dir.path().join(name),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    dir
}

/// A shipped preset's text with `base_url` pointed at `base`.
fn preset(file: &str, base: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/providers")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("base_url = ") {
            out.push_str(&format!("base_url = \"{base}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.contains(base), "{file} has no base_url line");
    out
}

/// The http provider config of a config text (loaded as keyrot loads it).
fn config(text: &str) -> HttpProviderConfig {
    let cfg = keyrot_config::load_str(Path::new("/etc/keyrot/conf.d/test.toml"), text)
        .unwrap_or_else(|e| panic!("config does not load:\n{e}\n{text}"));
    match &cfg.providers[0].kind {
        ProviderKind::Http(h) => h.clone(),
        _ => panic!("not an http provider"),
    }
}

fn build(text: &str, creds: &Path) -> HttpProvider {
    HttpProvider::new("p", &config(text), Some(creds)).unwrap()
}

/// An issue request as the state machine makes it.
fn req(name: &str, replaces: Option<&str>, days: Option<i64>, scopes: &[&str]) -> IssueRequest {
    let now = common::wall_now();
    IssueRequest {
        name: name.to_string(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at: days.map(|d| now + SignedDuration::from_hours(24 * d)),
        tag: uuid::Uuid::now_v7().to_string(),
        replaces: replaces.map(str::to_string),
        resumed: false,
        created_by: "keyrot".into(),
        now,
        ..Default::default()
    }
}

fn named<'a>(keys: &'a [KeyInfo], name: &str) -> Vec<&'a KeyInfo> {
    keys.iter().filter(|k| k.name == name).collect()
}

fn utc_date(t: Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()
}

fn last(api: &HttpApis, method: &str, part: &str) -> apis::Seen {
    api.seen()
        .into_iter()
        .rev()
        .find(|s| s.method == method && s.path.contains(part))
        .unwrap_or_else(|| panic!("no {method} {part} among {:#?}", api.seen()))
}

#[tokio::test]
async fn gitlab_personal_token_rotates_natively_and_the_old_one_ends_at_once() {
    let api = HttpApis::start();
    let c = creds();
    let p = build(
        &preset(
            "gitlab-personal-access-tokens.toml",
            &format!("{}/gitlab/api/v4", api.url),
        ),
        c.path(),
    );
    let caps = p.capabilities();
    assert!(caps.list && caps.verify && caps.revoke);
    assert_eq!(
        caps.issue,
        keyrot_core::model::IssueMode::Rotate {
            keeps_scopes: false,
            old_ends: true,
        }
    );
    assert!(caps.idempotent_issue && !caps.tag);
    let old = api.seed(Kind::GitlabPat, "42", "ci-deploy", &["api"], 5);
    api.seed(Kind::GitlabPat, "43", "someone-else", &["api"], 5);

    let listed = p.list(common::wall_now()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(
        (listed[0].id.as_str(), listed[0].name.as_str()),
        (old.id.as_str(), "ci-deploy")
    );
    assert_eq!(listed[0].scopes, vec!["api"]);
    // GitLab's date: the token stops at 00:00 UTC of that day.
    assert_eq!(
        listed[0].expires_at.unwrap().to_string(),
        format!("{}T00:00:00Z", utc_date(old.expires_at.unwrap()))
    );
    let l = last(&api, "GET", "/personal_access_tokens");
    assert!(
        l.path.contains("user_id=42") && l.path.contains("state=active"),
        "{}",
        l.path
    );
    assert_eq!(
        l.header("authorization"),
        Some(format!("Bearer {}", apis::GITLAB_ADMIN).as_str())
    );

    let r = req("ci-deploy", Some(&old.id), Some(30), &["api"]);
    let new = p.issue(&r).await.unwrap();
    assert_ne!(new.info.id, old.id);
    let s = last(&api, "POST", "/rotate");
    assert_eq!(
        s.path,
        format!("/gitlab/api/v4/personal_access_tokens/{}/rotate", old.id)
    );
    assert_eq!(s.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        s.body.unwrap(),
        serde_json::json!({"expires_at": utc_date(r.expires_at.unwrap())})
    );
    // The old token ended in the same call; the new one is what keyrot holds.
    assert!(!api.token(&old.id).active);
    let held = api.token(&new.info.id);
    assert!(held.active && held.name == "ci-deploy");
    assert_eq!(new.secret.expose_secret(), held.secret);
    assert_eq!(new.info.scopes, vec!["api"]);
    assert_eq!(new.info.name, "ci-deploy");
    assert_eq!(
        utc_date(new.info.expires_at.unwrap()),
        utc_date(r.expires_at.unwrap())
    );

    // Verify: with the new token only (PRIVATE-TOKEN), and its id must match.
    p.verify(&new.info.id, &new.secret, r.now).await.unwrap();
    let v = last(&api, "GET", "/personal_access_tokens/self");
    assert_eq!(v.header("private-token"), Some(held.secret.as_str()));
    assert_eq!(
        v.header("authorization"),
        None,
        "the admin token went along"
    );
    let old_secret = SecretString::from(old.secret.clone());
    let e = p.verify(&old.id, &old_secret, r.now).await.unwrap_err();
    assert!(e.message.contains("does not authenticate"), "{}", e.message);
    assert!(!e.message.contains(&old.secret));

    // Revoke; again counts as done.
    p.revoke(&new.info.id, r.now).await.unwrap();
    assert!(!api.token(&new.info.id).active);
    p.revoke(&new.info.id, r.now).await.unwrap();
    assert_eq!(
        last(&api, "DELETE", "/personal_access_tokens/").method,
        "DELETE"
    );
}

#[tokio::test]
async fn gitlab_rotation_whose_answer_was_lost_rotates_the_token_it_made() {
    let api = HttpApis::start();
    let c = creds();
    let p = build(
        &preset(
            "gitlab-personal-access-tokens.toml",
            &format!("{}/gitlab/api/v4", api.url),
        ),
        c.path(),
    );
    let old = api.seed(Kind::GitlabPat, "42", "ci-deploy", &["api"], 5);
    // The rotate reaches GitLab, but its answer (the only copy of the new
    // token) is lost.
    api.lose_next_answer("/rotate");
    let r = req("ci-deploy", Some(&old.id), Some(30), &["api"]);
    let e = p.issue(&r).await.unwrap_err();
    assert!(e.transient, "{}", e.message);
    let orphan = api.active(Kind::GitlabPat, "ci-deploy");
    assert_eq!(orphan.len(), 1);
    assert!(!api.token(&old.id).active);

    // The state machine resumes the issue: the old token is gone, so the
    // token the lost call made is rotated in turn.
    let resumed = IssueRequest { resumed: true, ..r };
    let new = p.issue(&resumed).await.unwrap();
    assert!(!api.token(&orphan[0].id).active, "orphan left alive");
    let live = api.active(Kind::GitlabPat, "ci-deploy");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, new.info.id);
    assert_eq!(live[0].secret, new.secret.expose_secret());
    let rotates: Vec<String> = api
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.path)
        .collect();
    assert_eq!(
        rotates,
        vec![
            format!("/gitlab/api/v4/personal_access_tokens/{}/rotate", old.id),
            format!("/gitlab/api/v4/personal_access_tokens/{}/rotate", old.id),
            format!(
                "/gitlab/api/v4/personal_access_tokens/{}/rotate",
                orphan[0].id
            ),
        ]
    );

    // Not resumed, the same "already revoked" answer is just an error.
    let fresh = req("ci-deploy", Some(&old.id), Some(30), &["api"]);
    let e = p.issue(&fresh).await.unwrap_err();
    assert!(e.message.contains("token already revoked"), "{}", e.message);
    assert_eq!(api.active(Kind::GitlabPat, "ci-deploy").len(), 1);
    // Resumed with nothing made since the rotation started: an older token
    // of the same name is not taken for the orphan; nothing is rotated.
    let lonely = api.seed(Kind::GitlabPat, "42", "lonely", &["api"], 5);
    let twin = api.seed(Kind::GitlabPat, "42", "lonely", &["api"], 5);
    api.backdate(&twin.id, 3600);
    p.revoke(&lonely.id, fresh.now).await.unwrap();
    api.clear_seen();
    let gone = IssueRequest {
        resumed: true,
        ..req("lonely", Some(&lonely.id), Some(30), &["api"])
    };
    let e = p.issue(&gone).await.unwrap_err();
    assert!(
        e.message
            .contains("no other key named \"lonely\" made since the rotation started"),
        "{}",
        e.message
    );
    assert!(api.token(&twin.id).active);
    assert_eq!(api.seen().iter().filter(|s| s.method == "POST").count(), 1);
}

#[tokio::test]
async fn gitlab_project_tokens_are_created_then_rotated_under_an_encoded_project_path() {
    let api = HttpApis::start();
    let c = creds();
    let p = build(
        &preset(
            "gitlab-project-access-tokens.toml",
            &format!("{}/gitlab/api/v4", api.url),
        ),
        c.path(),
    );
    // The first token of a slot: created (no predecessor).
    let r = req(
        "deploy-bot",
        None,
        Some(60),
        &["read_api", "read_repository"],
    );
    let first = p.issue(&r).await.unwrap();
    let s = last(&api, "POST", "/access_tokens");
    assert_eq!(s.path, "/gitlab/api/v4/projects/acme%2Fweb/access_tokens");
    assert_eq!(
        s.body.unwrap(),
        serde_json::json!({"name": "deploy-bot", "scopes": ["read_api", "read_repository"],
            "expires_at": utc_date(r.expires_at.unwrap()), "access_level": 30})
    );
    let held = api.token(&first.info.id);
    assert_eq!(held.owner, "acme/web");
    assert_eq!(held.secret, first.secret.expose_secret());

    let listed = p.list(r.now).await.unwrap();
    assert_eq!(named(&listed, "deploy-bot").len(), 1);
    // Later ones: rotated natively.
    let r2 = req(
        "deploy-bot",
        Some(&first.info.id),
        Some(90),
        &["read_api", "read_repository"],
    );
    let second = p.issue(&r2).await.unwrap();
    assert_eq!(
        last(&api, "POST", "/rotate").path,
        format!(
            "/gitlab/api/v4/projects/acme%2Fweb/access_tokens/{}/rotate",
            first.info.id
        )
    );
    assert!(!api.token(&first.info.id).active);
    assert_eq!(second.info.scopes, vec!["read_api", "read_repository"]);
    p.verify(&second.info.id, &second.secret, r2.now)
        .await
        .unwrap();
    // Without scopes, the member is left out and GitLab's error comes back.
    let e = p
        .issue(&req("no-scopes", None, Some(30), &[]))
        .await
        .unwrap_err();
    assert!(
        !e.transient && e.message.contains("scopes is missing"),
        "{}",
        e.message
    );
    assert!(
        last(&api, "POST", "/access_tokens")
            .body
            .unwrap()
            .get("scopes")
            .is_none()
    );
}

#[tokio::test]
async fn grafana_names_with_quotes_and_slashes_survive_the_json_body_and_the_tag() {
    let api = HttpApis::start();
    let c = creds();
    let p = build(
        &preset(
            "grafana-service-account-tokens.toml",
            &format!("{}/grafana", api.url),
        ),
        c.path(),
    );
    let caps = p.capabilities();
    assert_eq!(caps.issue, keyrot_core::model::IssueMode::Create);
    assert!(caps.tag && !caps.idempotent_issue);
    let name = r#"ci "prod"/eu\1"#;
    let old = api.seed(Kind::Grafana, "2", name, &[], 10);
    let r = req(name, Some(&old.id), Some(7), &[]);
    let new = p.issue(&r).await.unwrap();
    let s = last(&api, "POST", "/tokens");
    assert_eq!(s.path, "/grafana/api/serviceaccounts/2/tokens");
    let body = s.body.unwrap();
    assert_eq!(body["name"], format!("{name}-keyrot-{}", r.tag));
    assert_eq!(body["secondsToLive"], serde_json::json!(7 * 86_400));
    assert_eq!(
        api.token(&new.info.id).name,
        format!("{name}-keyrot-{}", r.tag)
    );
    assert_eq!(new.info.tags["keyrot-rotation"], r.tag);
    // Listing strips the tag: both keys bind to the slot named `name`.
    let listed = p.list(r.now).await.unwrap();
    let both = named(&listed, name);
    assert_eq!(both.len(), 2, "{listed:#?}");
    let tagged: Vec<&&KeyInfo> = both
        .iter()
        .filter(|k| k.tags.contains_key("keyrot-rotation"))
        .collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].id, new.info.id);
    assert!(tagged[0].expires_at.is_some());
    // find_tagged finds exactly what a rotation made.
    let found = p.find_tagged(&r.tag, r.now).await.unwrap();
    assert_eq!(
        found.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        vec![new.info.id.as_str()]
    );
    assert!(
        p.find_tagged(&uuid::Uuid::now_v7().to_string(), r.now)
            .await
            .unwrap()
            .is_empty()
    );
    // Verify with the new token; then the overlap ends and the old one goes.
    p.verify(&new.info.id, &new.secret, r.now).await.unwrap();
    assert_eq!(
        last(&api, "GET", "/api/org").header("authorization"),
        Some(format!("Bearer {}", new.secret.expose_secret()).as_str())
    );
    p.revoke(&old.id, r.now).await.unwrap();
    assert_eq!(
        last(&api, "DELETE", "/tokens/").path,
        format!("/grafana/api/serviceaccounts/2/tokens/{}", old.id)
    );
    p.revoke(&old.id, r.now).await.unwrap();
    let listed = p.list(r.now).await.unwrap();
    assert_eq!(named(&listed, name).len(), 1);

    // An interrupted issue: the key it made is found by its tag.
    api.lose_next_answer("/tokens");
    let r2 = req(name, Some(&new.info.id), None, &[]);
    assert!(p.issue(&r2).await.is_err());
    let orphans = p.find_tagged(&r2.tag, r2.now).await.unwrap();
    assert_eq!(orphans.len(), 1);
    p.revoke(&orphans[0].id, r2.now).await.unwrap();
    // No expiry requested: secondsToLive is left out (never expires).
    let r3 = req(name, Some(&new.info.id), None, &[]);
    let third = p.issue(&r3).await.unwrap();
    assert!(
        last(&api, "POST", "/tokens")
            .body
            .unwrap()
            .get("secondsToLive")
            .is_none()
    );
    assert!(third.info.expires_at.is_none());

    // Basic auth works the same.
    let basic = preset(
        "grafana-service-account-tokens.toml",
        &format!("{}/grafana", api.url),
    )
    .replace(
        "auth = { type = \"bearer\", token = { credential = \"grafana-token\" } }",
        "auth = { type = \"basic\", user = \"admin\", password = { credential = \"grafana-password\" } }",
    );
    let pb = build(&basic, c.path());
    assert_eq!(named(&pb.list(r.now).await.unwrap(), name).len(), 2);
    assert!(
        last(&api, "GET", "/tokens")
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
}

#[tokio::test]
async fn datadog_api_and_application_keys_page_verify_and_revoke() {
    let api = HttpApis::start();
    let c = creds();
    let base = format!("{}/datadog", api.url);
    let p = build(
        &preset("datadog-api-keys.toml", &base).replace("size = 100", "size = 2"),
        c.path(),
    );
    for i in 1..=5 {
        api.seed(Kind::DdApi, "org", &format!("k{i}"), &[], 0);
    }
    api.clear_seen();
    let listed = p.list(common::wall_now()).await.unwrap();
    assert_eq!(listed.len(), 5, "{listed:#?}");
    let pages: Vec<String> = api.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(pages.len(), 3, "{pages:#?}");
    assert!(
        pages[2].contains("page%5Bnumber%5D=2") && pages[2].contains("page%5Bsize%5D=2"),
        "{pages:#?}"
    );
    let s = &api.seen()[0];
    assert_eq!(s.header("dd-api-key"), Some(apis::DD_API_KEY));
    assert_eq!(s.header("dd-application-key"), Some(apis::DD_APP_KEY));
    assert!(listed[0].created_at.is_some());

    let k1 = api.active(Kind::DdApi, "k1").remove(0);
    let r = req("k1", Some(&k1.id), None, &[]);
    let new = p.issue(&r).await.unwrap();
    let b = last(&api, "POST", "/api/v2/api_keys").body.unwrap();
    assert_eq!(
        b,
        serde_json::json!({"data": {"type": "api_keys", "attributes": {"name": format!("k1-keyrot-{}", r.tag)}}})
    );
    assert!(new.info.expires_at.is_none(), "Datadog keys do not expire");
    p.verify(&new.info.id, &new.secret, r.now).await.unwrap();
    let v = last(&api, "GET", "/api/v1/validate");
    assert_eq!(v.header("dd-api-key"), Some(new.secret.expose_secret()));
    assert_eq!(v.header("dd-application-key"), None);
    let e = p
        .verify(
            &new.info.id,
            &SecretString::from("not-a-key".to_string()),
            r.now,
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("403"), "{}", e.message);
    p.revoke(&k1.id, r.now).await.unwrap();
    assert!(!api.token(&k1.id).active);

    // Application keys: scopes go along; verified with the new app key.
    let pa = build(&preset("datadog-application-keys.toml", &base), c.path());
    let old = api.seed(Kind::DdApp, "me", "dashboards", &["dashboards_read"], 0);
    let r = req("dashboards", Some(&old.id), None, &["dashboards_read"]);
    let new = pa.issue(&r).await.unwrap();
    let b = last(&api, "POST", "/application_keys").body.unwrap();
    assert_eq!(b["data"]["type"], "application_keys");
    assert_eq!(
        b["data"]["attributes"]["scopes"],
        serde_json::json!(["dashboards_read"])
    );
    assert_eq!(new.info.scopes, vec!["dashboards_read"]);
    pa.verify(&new.info.id, &new.secret, r.now).await.unwrap();
    let v = last(&api, "GET", &format!("/application_keys/{}", new.info.id));
    assert_eq!(v.header("dd-api-key"), Some(apis::DD_API_KEY));
    assert_eq!(
        v.header("dd-application-key"),
        Some(new.secret.expose_secret())
    );
    let listed = pa.list(r.now).await.unwrap();
    assert_eq!(named(&listed, "dashboards").len(), 2);
    pa.revoke(&old.id, r.now).await.unwrap();
    assert_eq!(named(&pa.list(r.now).await.unwrap(), "dashboards").len(), 1);
}

#[tokio::test]
async fn cloudflare_roll_keeps_the_token_id_and_verifies_the_new_secret() {
    let api = HttpApis::start();
    let c = creds();
    let p = build(
        &preset(
            "cloudflare-api-tokens.toml",
            &format!("{}/cloudflare/client/v4", api.url),
        ),
        c.path(),
    );
    let caps = p.capabilities();
    assert_eq!(
        caps.issue,
        keyrot_core::model::IssueMode::Rotate {
            keeps_scopes: false,
            old_ends: true,
        }
    );
    assert!(caps.idempotent_issue);
    let tok = api.seed(Kind::Cloudflare, "user", "edge-deploy", &[], 20);
    let listed = p.list(common::wall_now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].expires_at.is_some());

    let r = req("edge-deploy", Some(&tok.id), Some(90), &[]);
    let new = p.issue(&r).await.unwrap();
    assert_eq!(new.info.id, tok.id, "a roll keeps the id");
    let s = last(&api, "PUT", "/value");
    assert_eq!(
        s.path,
        format!("/cloudflare/client/v4/user/tokens/{}/value", tok.id)
    );
    assert_eq!(s.body.unwrap(), serde_json::json!({}));
    assert_eq!(api.token(&tok.id).secret, new.secret.expose_secret());
    // The roll sends no expiry, so keyrot claims none (the next sync reads it).
    assert!(new.info.expires_at.is_none());
    p.verify(&tok.id, &new.secret, r.now).await.unwrap();
    let e = p
        .verify(&tok.id, &SecretString::from(tok.secret.clone()), r.now)
        .await
        .unwrap_err();
    assert!(e.message.contains("does not authenticate"), "{}", e.message);
    assert!(!e.message.contains(&tok.secret));
    // A resumed roll rolls again: the unseen value dies with it.
    let again = p.issue(&IssueRequest { resumed: true, ..r }).await.unwrap();
    assert_ne!(again.secret.expose_secret(), new.secret.expose_secret());
    assert_eq!(api.token(&tok.id).secret, again.secret.expose_secret());
}

#[tokio::test]
async fn lists_follow_link_headers_and_page_numbers_without_looping() {
    let api = HttpApis::start();
    let c = creds();
    let gl = build(
        &preset(
            "gitlab-personal-access-tokens.toml",
            &format!("{}/gitlab/api/v4", api.url),
        )
        .replace("per_page=100", "per_page=2"),
        c.path(),
    );
    let cf = build(
        &preset(
            "cloudflare-api-tokens.toml",
            &format!("{}/cloudflare/client/v4", api.url),
        )
        .replace("size = 50", "size = 2"),
        c.path(),
    );
    for i in 0..5 {
        api.seed(Kind::GitlabPat, "42", &format!("t{i}"), &["api"], 30);
        api.seed(Kind::Cloudflare, "u", &format!("c{i}"), &[], 30);
    }
    api.clear_seen();
    let g = gl.list(common::wall_now()).await.unwrap();
    assert_eq!(g.len(), 5);
    let pages: Vec<String> = api.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(pages.len(), 3, "{pages:#?}");
    assert!(
        pages[1].contains("page=2") && pages[2].contains("page=3"),
        "{pages:#?}"
    );
    api.clear_seen();
    let f = cf.list(common::wall_now()).await.unwrap();
    assert_eq!(f.len(), 5);
    // Pages 1, 2, 3; the third has one token, fewer than the size: done.
    assert_eq!(api.seen().len(), 3);
    // A server that ignores the page parameter is caught, not followed forever.
    let looping = build(
        &preset(
            "cloudflare-api-tokens.toml",
            &format!("{}/cloudflare/client/v4", api.url),
        )
        .replace("size = 50", "size = 5")
        .replace("param = \"page\"", "param = \"ignored\""),
        c.path(),
    );
    let e = looping.list(common::wall_now()).await.unwrap_err();
    assert!(
        e.message.contains("repeats keys already listed"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn rate_limits_carry_retry_after_and_redirects_are_refused() {
    let api = HttpApis::start();
    let c = creds();
    let p = build(
        &preset(
            "gitlab-personal-access-tokens.toml",
            &format!("{}/gitlab/api/v4", api.url),
        ),
        c.path(),
    );
    api.seed(Kind::GitlabPat, "42", "ci", &["api"], 30);
    api.fail_next(429, Some(7), 1);
    let e = p.list(common::wall_now()).await.unwrap_err();
    assert!(e.transient, "{}", e.message);
    assert_eq!(e.retry_after, Some(SignedDuration::from_secs(7)));
    assert!(e.message.contains("429"), "{}", e.message);
    assert_eq!(p.list(common::wall_now()).await.unwrap().len(), 1);
    api.fail_next(503, None, 1);
    let e = p.list(common::wall_now()).await.unwrap_err();
    assert!(e.transient && e.retry_after.is_none());
    // A redirect is an error; the credential does not follow it.
    let text = format!(
        "[[provider]]\nname = \"r\"\ntype = \"http\"\nbase_url = \"{}\"\nauth = {{ type = \"bearer\", token = {{ credential = \"gitlab-token\" }} }}\n[provider.list]\npath = \"/redirect/keys\"\nid = \"/id\"\nname = \"/name\"\n",
        api.url
    );
    let r = build(&text, c.path());
    let e = r.list(common::wall_now()).await.unwrap_err();
    assert!(!e.transient, "{}", e.message);
    assert!(
        e.message.contains("302") && e.message.contains("redirects are not followed"),
        "{}",
        e.message
    );
    assert!(!api.seen().iter().any(|s| s.path.contains("stolen")));
}

#[tokio::test]
async fn secrets_never_reach_errors_or_debug() {
    let api = HttpApis::start();
    api.echo_credentials(true);
    let c = creds();
    let wrong = "glsa_wrong_admin_token_1234567890";
    std::fs::write(c.path().join("grafana-token"), wrong).unwrap();
    let text = preset(
        "grafana-service-account-tokens.toml",
        &format!("{}/grafana", api.url),
    );
    let p = build(&text, c.path());
    let debug = format!("{p:?}");
    assert!(
        !debug.contains(wrong) && debug.contains("bearer"),
        "{debug}"
    );
    // The API echoes the credential it refused: keyrot scrubs it.
    let e = p.list(common::wall_now()).await.unwrap_err();
    assert!(e.message.contains("401"), "{}", e.message);
    assert!(e.message.contains("[redacted]"), "{}", e.message);
    assert!(!e.message.contains(wrong), "{}", e.message);
    assert!(!format!("{e:?}").contains(wrong));
    // So is a new key's secret the verify call carried.
    std::fs::write(c.path().join("grafana-token"), apis::GRAFANA_ADMIN).unwrap();
    let p = build(&text, c.path());
    let bogus = SecretString::from("glsa_bogus_new_secret_0987654321".to_string());
    let e = p.verify("9", &bogus, common::wall_now()).await.unwrap_err();
    assert!(!e.message.contains(bogus.expose_secret()), "{}", e.message);
    // An issue answer without the secret where config says: the key exists,
    // the message says so, and the secret the API did send is not in it.
    let broken = build(
        &text.replace("secret = \"/key\"", "secret = \"/token\""),
        c.path(),
    );
    let old = api.seed(Kind::Grafana, "2", "ci", &[], 10);
    let e = broken
        .issue(&req("ci", Some(&old.id), Some(7), &[]))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("no secret at /token") && e.message.contains("probably created"),
        "{}",
        e.message
    );
    let made = api
        .tokens(Kind::Grafana)
        .into_iter()
        .find(|t| t.name.starts_with("ci-keyrot-"))
        .unwrap();
    assert!(!e.message.contains(&made.secret));
    // A missing credential names the field, never a value.
    std::fs::remove_file(c.path().join("grafana-token")).unwrap();
    let e = HttpProvider::new("g", &config(&text), Some(c.path())).unwrap_err();
    assert!(
        e.message.contains("`auth.token`") && e.message.contains("grafana-token"),
        "{}",
        e.message
    );
}

/// The sandbox preset, against a real `keyrot sandbox`.
fn sandbox_provider(sb: &Sandbox, edit: impl Fn(String) -> String) -> HttpProvider {
    let key = sb.dir.join("admin.key");
    std::fs::write(&key, sb.seeded_secret("keyrot")).unwrap();
    let text = preset("keyrot-sandbox.toml", &sb.url).replace(
        "{ file = \"sandbox-admin.key\" }",
        &format!("{{ file = \"{}\" }}", key.display()),
    );
    HttpProvider::new("sandbox", &config(&edit(text)), None).unwrap()
}

#[tokio::test]
async fn the_generic_provider_drives_the_real_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let sb = Sandbox::start(&tmp.path().join("sb"));
    // Pages of two: five seeded keys come in three pages, by cursor.
    let p = sandbox_provider(&sb, |t| t.replace("limit=50", "limit=2"));
    let now = common::wall_now();
    let listed = p.list(now).await.unwrap();
    let mut names: Vec<&str> = listed.iter().map(|k| k.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "ci-bot",
            "keyrot",
            "legacy-admin",
            "read only demo",
            "reporting"
        ]
    );
    let ci = named(&listed, "ci-bot")[0].clone();
    assert_eq!(ci.scopes, vec!["read:jira-work", "write:jira-work"]);
    assert_eq!(ci.created_by.as_deref(), Some("admin@example.com"));
    assert!(ci.expires_at.is_some() && ci.last_used_at.is_some());

    // Verify: the count endpoint, called with the key itself.
    let secret = SecretString::from(sb.seeded_secret("ci-bot"));
    p.verify(&ci.id, &secret, now).await.unwrap();
    let bad = SecretString::from("ATSBX-not-a-key-000000".to_string());
    let e = p.verify(&ci.id, &bad, now).await.unwrap_err();
    assert!(
        e.message.contains("401") && !e.message.contains("ATSBX-not"),
        "{}",
        e.message
    );

    // Issue: the sandbox's admin endpoint, with the tag in the name.
    let reporting = named(&listed, "reporting")[0].clone();
    let r = req(
        "reporting",
        Some(&reporting.id),
        Some(30),
        &["read:jira-work"],
    );
    let new = p.issue(&r).await.unwrap();
    let stored = sb.key(&new.info.id);
    assert_eq!(stored["name"], format!("reporting-keyrot-{}", r.tag));
    assert_eq!(stored["scopes"], serde_json::json!(["read:jira-work"]));
    assert_eq!(stored["createdBy"], "keyrot@example.com");
    let listed = p.list(now).await.unwrap();
    assert_eq!(named(&listed, "reporting").len(), 2);
    let found = p.find_tagged(&r.tag, now).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, new.info.id);
    p.verify(&new.info.id, &new.secret, now).await.unwrap();

    // Revoke the old key; revoking it again (404) counts as done.
    p.revoke(&reporting.id, now).await.unwrap();
    assert!(sb.key(&reporting.id)["revokedAt"].is_string());
    p.revoke(&reporting.id, now).await.unwrap();
    let listed = p.list(now).await.unwrap();
    assert_eq!(
        named(&listed, "reporting")
            .iter()
            .map(|k| k.id.as_str())
            .collect::<Vec<_>>(),
        vec![new.info.id.as_str()]
    );

    // The sandbox's forced 429 comes back with its Retry-After.
    let out = sb.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        &format!("{}/_sandbox/fail", sb.url),
        "-d",
        r#"{"status":429,"retry_after":3}"#,
    ]);
    assert!(out.status.success());
    let e = p.list(now).await.unwrap_err();
    assert!(e.transient);
    assert_eq!(e.retry_after, Some(SignedDuration::from_secs(3)));
    assert_eq!(p.list(now).await.unwrap().len(), 5);
}

/// Policy and key for a daemon test; the provider comes from a drop-in.
fn daemon_config(provider: &str, key: &str, policy: &str) -> String {
    let base = common::base_config(3);
    format!(
        r#"{base}
[[policy]]
name = "fast"
jitter = false
{policy}

[[key]]
name = "{key}"
provider = "{provider}"
policy = "fast"
sinks = ["out"]
"#
    )
}

fn rotation_of(d: &Daemon, slot: &str) -> Option<serde_json::Value> {
    d.rotations().into_iter().find(|r| r["slot"] == slot)
}

#[test]
fn the_daemon_rotates_a_gitlab_token_natively_without_overlap() {
    let api = HttpApis::start();
    let c = creds();
    let mut d = Daemon::new(&daemon_config(
        "gitlab",
        "ci-deploy",
        "new_key_lifetime = \"30d\"\nrotate_before_expiry = \"10d\"\noverlap = \"1h\"",
    ));
    std::fs::create_dir_all(d.dir.join("conf.d")).unwrap();
    std::fs::write(
        d.dir.join("conf.d/10-gitlab.toml"),
        preset(
            "gitlab-personal-access-tokens.toml",
            &format!("{}/gitlab/api/v4", api.url),
        ),
    )
    .unwrap();
    d.env.push((
        "CREDENTIALS_DIRECTORY".into(),
        c.path().display().to_string(),
    ));
    // Expires in 5 days, inside the 10-day lead time: due at once.
    let old = api.seed(
        Kind::GitlabPat,
        "42",
        "ci-deploy",
        &["api", "read_repository"],
        5,
    );
    d.start();
    let done = wait_until(Duration::from_secs(40), || {
        rotation_of(&d, "gitlab/ci-deploy").is_some_and(|r| r["state"] == "Completed")
    });
    assert!(done, "{:#?}\nlog:\n{}", d.rotations(), d.log());
    let r = rotation_of(&d, "gitlab/ci-deploy").unwrap();
    assert_eq!(r["old_key_id"], old.id.as_str());
    let new_id = r["new_key"]["id"].as_str().unwrap().to_string();
    let held = api.token(&new_id);
    assert!(held.active && !api.token(&old.id).active);
    assert_eq!(held.scopes, vec!["api", "read_repository"]);
    // The sink holds the token GitLab made; the rotation says there was no overlap.
    assert_eq!(d.sink("ci-deploy").unwrap()["secret"], held.secret.as_str());
    let notes: Vec<String> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["note"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("rotates natively") && n.contains("no overlap")),
        "{notes:#?}"
    );
    // keyrot never revoked anything itself: GitLab's rotate did.
    assert!(!api.seen().iter().any(|s| s.method == "DELETE"));
    let rotate = last(&api, "POST", "/rotate");
    let expires = rotate.body.unwrap()["expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    let in_30 = utc_date(common::wall_now() + SignedDuration::from_hours(24 * 30));
    let in_29 = utc_date(common::wall_now() + SignedDuration::from_hours(24 * 29));
    assert!(expires == in_30 || expires == in_29, "{expires}");
    // Neither token reached the log.
    let log = d.log();
    assert!(!log.contains(&held.secret) && !log.contains(apis::GITLAB_ADMIN));
    let status = d.json(&["status", "--json"]);
    let key = status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci-deploy")
        .cloned()
        .unwrap();
    assert!(key.to_string().contains(&new_id), "{key}");
}

#[test]
fn the_daemon_rotates_a_sandbox_key_with_overlap_through_the_generic_provider() {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    let key = sb.dir.join("admin.key");
    std::fs::write(&key, sb.seeded_secret("keyrot")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let provider = preset("keyrot-sandbox.toml", &sb.url).replace(
        "{ file = \"sandbox-admin.key\" }",
        &format!("{{ file = \"{}\" }}", key.display()),
    );
    std::fs::write(
        d.config_path(),
        daemon_config(
            "sandbox",
            "reporting",
            "new_key_lifetime = \"90d\"\nrotate_before_expiry = \"10d\"\noverlap = \"2s\"",
        ) + &provider,
    )
    .unwrap();
    d.start();
    let done = wait_until(Duration::from_secs(40), || {
        rotation_of(&d, "sandbox/reporting").is_some_and(|r| r["state"] == "Completed")
    });
    assert!(done, "{:#?}\nlog:\n{}", d.rotations(), d.log());
    let r = rotation_of(&d, "sandbox/reporting").unwrap();
    let old = sb.key(r["old_key_id"].as_str().unwrap());
    let new = sb.key(r["new_key"]["id"].as_str().unwrap());
    assert_eq!(new["scopes"], old["scopes"], "scopes kept");
    assert_eq!(
        new["name"],
        format!("reporting-keyrot-{}", r["id"].as_str().unwrap())
    );
    // Old key revoked only after the overlap, which began once verified.
    let revoked: Timestamp = old["revokedAt"].as_str().unwrap().parse().unwrap();
    let revoke_at: Timestamp = r["revoke_old_at"].as_str().unwrap().parse().unwrap();
    assert!(revoked >= revoke_at);
    let secret = d.sink("reporting").unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    use sha2::Digest as _;
    let hash: String = sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(new["secretSha256"], hash.as_str());
    assert!(!d.log().contains(&secret));
}

/// kill -9 right after GitLab rotated the token but before keyrot stored
/// the new secret: on restart the rotation resumes, finds the old token
/// gone, and rotates the token the lost call made, so exactly one live
/// token remains and the sink holds it.
#[cfg(feature = "failpoints")]
#[test]
fn a_crash_after_gitlab_rotated_leaves_no_orphan_token() {
    let api = HttpApis::start();
    let c = creds();
    let mut d = Daemon::new(&daemon_config(
        "gitlab",
        "ci-deploy",
        "new_key_lifetime = \"30d\"\nrotate_before_expiry = \"10d\"",
    ));
    std::fs::create_dir_all(d.dir.join("conf.d")).unwrap();
    std::fs::write(
        d.dir.join("conf.d/10-gitlab.toml"),
        preset(
            "gitlab-personal-access-tokens.toml",
            &format!("{}/gitlab/api/v4", api.url),
        ),
    )
    .unwrap();
    let creds_env = (
        "CREDENTIALS_DIRECTORY".to_string(),
        c.path().display().to_string(),
    );
    let old = api.seed(Kind::GitlabPat, "42", "ci-deploy", &["api"], 5);
    d.env = vec![
        creds_env.clone(),
        ("KEYROT_FAILPOINTS".into(), "after:issue=abort".into()),
    ];
    d.spawn();
    let st = d
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("failpoint never hit; log:\n{}", d.log()));
    assert!(!st.success());
    // GitLab rotated: the old token is gone, and the new one's secret is lost.
    assert!(!api.token(&old.id).active);
    let orphan = api.active(Kind::GitlabPat, "ci-deploy");
    assert_eq!(orphan.len(), 1);

    d.env = vec![creds_env];
    d.start();
    let done = wait_until(Duration::from_secs(40), || {
        rotation_of(&d, "gitlab/ci-deploy").is_some_and(|r| r["state"] == "Completed")
    });
    assert!(done, "{:#?}\nlog:\n{}", d.rotations(), d.log());
    let r = rotation_of(&d, "gitlab/ci-deploy").unwrap();
    assert_eq!(r["old_key_id"], old.id.as_str());
    let live = api.active(Kind::GitlabPat, "ci-deploy");
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(r["new_key"]["id"], live[0].id.as_str());
    assert!(!api.token(&orphan[0].id).active, "the orphan lives on");
    assert_eq!(
        d.sink("ci-deploy").unwrap()["secret"],
        live[0].secret.as_str()
    );
    assert!(!d.log().contains(&live[0].secret));
}
