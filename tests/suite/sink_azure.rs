//! The `azure-keyvault` sink against the Entra ID + Key Vault emulator
//! (tests/common/azure.rs): writes, idempotence, read-back, the token cache
//! and its renewal, 401/429 handling, the errors an operator sees, and that
//! no secret (client secret, token, value) reaches a message or `Debug`.
//! The first test checks the emulator itself against the reference shapes.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::azure::{self, AzureEmulator};
use jiff::{SignedDuration, Timestamp};
use keyrot_config::{AzureKeyVaultSinkConfig, SecretRef};
use keyrot_core::clock::ManualClock;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;
use keyrot_peers::sink::azure_kv::AzureKeyVaultSink;
use keyrot_peers::sink::{Sink, SinkTarget};
use secrecy::SecretString;

const VALUE: &str = "ATSBX-value-0f3c9a7e5b1d4c2a8e6f";

/// Settings for a sink against `emu`, its client secret in `dir`.
fn config(emu: &AzureEmulator, dir: &Path, client_secret: &str) -> AzureKeyVaultSinkConfig {
    let file = dir.join("client-secret");
    std::fs::write(&file, format!("{client_secret}\n")).unwrap();
    AzureKeyVaultSinkConfig {
        vault_url: emu.url(),
        secret_name: "{provider}-{name}".into(),
        tenant_id: azure::TENANT.into(),
        client_id: azure::CLIENT_ID.into(),
        client_secret: SecretRef::File(file),
        authority_host: emu.url(),
        content_type: "text/plain".into(),
        timeout: SignedDuration::from_secs(10),
    }
}

/// A sink against `emu` with the right client secret.
fn sink(emu: &AzureEmulator, dir: &tempfile::TempDir) -> AzureKeyVaultSink {
    AzureKeyVaultSink::new("kv", &config(emu, dir.path(), azure::CLIENT_SECRET), None).unwrap()
}

fn target(key: &str, rotation: &str) -> SinkTarget {
    SinkTarget {
        slot: format!("atlassian/{key}"),
        provider: "atlassian".into(),
        key_name: key.into(),
        key_id: format!("id-{key}"),
        rotation_id: rotation.into(),
        expires_at: Some("2027-03-01T12:00:00Z".parse().unwrap()),
        probe: false,
    }
}

fn secret(v: &str) -> SecretString {
    SecretString::from(v.to_string())
}

/// Asserts that no secret shows in `text`.
fn assert_no_secret(emu: &AzureEmulator, text: &str) {
    assert!(
        !text.contains(azure::CLIENT_SECRET),
        "client secret in {text}"
    );
    assert!(!text.contains(VALUE), "secret value in {text}");
    for t in emu.issued_tokens() {
        assert!(!text.contains(&t), "token in {text}");
    }
}

fn err_text(e: &CallError) -> String {
    format!("{e} / {e:?}")
}

#[tokio::test]
async fn emulator_answers_in_the_reference_shapes() {
    let emu = AzureEmulator::start();
    keyrot_core::crypto::tls::provider();
    let http = reqwest::Client::new();
    let url = emu.url();
    let token_url = format!("{url}/{}/oauth2/v2.0/token", azure::TENANT);
    let form = |secret: &str, scope: &str| {
        format!(
            "client_id={}&client_secret={}&scope={}&grant_type=client_credentials",
            azure::CLIENT_ID,
            secret,
            scope.replace(':', "%3A").replace('/', "%2F")
        )
    };
    let post = |body: String| {
        http.post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };

    // Token endpoint: success, bad secret, bad scope, unknown tenant.
    let ok = post(form(azure::CLIENT_SECRET, azure::SCOPE))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["expires_in"], 3599);
    let token = ok["access_token"].as_str().unwrap().to_string();

    let bad = post(form("wrong", azure::SCOPE)).await.unwrap();
    assert_eq!(bad.status(), 401);
    let bad: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(bad["error"], "invalid_client");
    assert_eq!(bad["error_codes"][0], 7000215);
    assert!(
        bad["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215: ")
    );

    let scope = post(form(azure::CLIENT_SECRET, "https://vault.azure.net"))
        .await
        .unwrap();
    assert_eq!(scope.status(), 400);
    let scope: serde_json::Value = scope.json().await.unwrap();
    assert_eq!(scope["error"], "invalid_scope");

    let tenant = http
        .post(format!("{url}/other-tenant/oauth2/v2.0/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(azure::CLIENT_SECRET, azure::SCOPE))
        .send()
        .await
        .unwrap();
    assert_eq!(tenant.status(), 400);
    assert_eq!(
        tenant.json::<serde_json::Value>().await.unwrap()["error_codes"][0],
        90002
    );
    assert_eq!(emu.token_requests(), 4);

    // Vault: no token → 401 with the challenge and AKV10000.
    let secret_url = format!("{url}/secrets/app-key?api-version=7.4");
    let anon = http.get(&secret_url).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let challenge = anon.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization=\"{url}/{}\", resource=\"https://vault.azure.net\"",
            azure::TENANT
        )
    );
    let anon: serde_json::Value = anon.json().await.unwrap();
    assert_eq!(anon["error"]["code"], "Unauthorized");
    assert!(
        anon["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("AKV10000")
    );

    // Unknown secret → 404 SecretNotFound; bad name → 400; no api-version → 400.
    let get = |u: String| http.get(u).bearer_auth(&token).send();
    let missing = get(secret_url.clone()).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "SecretNotFound"
    );
    let bad_name = get(format!("{url}/secrets/app_key?api-version=7.4"))
        .await
        .unwrap();
    assert_eq!(bad_name.status(), 400);
    assert_eq!(
        bad_name.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "BadParameter"
    );
    let no_version = get(format!("{url}/secrets/app-key")).await.unwrap();
    assert_eq!(no_version.status(), 400);

    // Two versions; the latest is served with and without a trailing
    // slash, an older one by its id; ids are 32 hex.
    let put = |value: &str, enabled: bool| {
        http.put(&secret_url)
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "value": value,
                "contentType": "text/plain",
                "attributes": {"enabled": enabled, "exp": 1_900_000_000},
                "tags": {"a": "b"},
            }))
            .send()
    };
    let first: serde_json::Value = put("one", true).await.unwrap().json().await.unwrap();
    let second: serde_json::Value = put("two", true).await.unwrap().json().await.unwrap();
    assert_eq!(second["value"], "two");
    assert_eq!(second["contentType"], "text/plain");
    assert_eq!(second["tags"]["a"], "b");
    assert_eq!(second["attributes"]["exp"], 1_900_000_000);
    assert_eq!(
        second["attributes"]["recoveryLevel"],
        "Recoverable+Purgeable"
    );
    assert!(second["attributes"]["created"].as_i64().unwrap() > 1_700_000_000);
    let first_id = first["id"].as_str().unwrap();
    let (prefix, v1) = first_id.rsplit_once('/').unwrap();
    assert_eq!(prefix, format!("{url}/secrets/app-key"));
    assert!(
        v1.len() == 32 && v1.chars().all(|c| c.is_ascii_hexdigit()),
        "{v1}"
    );
    for u in [
        secret_url.clone(),
        format!("{url}/secrets/APP-KEY/?api-version=7.4"),
    ] {
        let latest: serde_json::Value = get(u).await.unwrap().json().await.unwrap();
        assert_eq!(latest["value"], "two");
    }
    let old: serde_json::Value = get(format!("{url}/secrets/app-key/{v1}?api-version=7.4"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(old["value"], "one");

    // A disabled latest version → 403 with inner error SecretDisabled.
    put("three", false).await.unwrap();
    let disabled = get(secret_url.clone()).await.unwrap();
    assert_eq!(disabled.status(), 403);
    assert_eq!(
        disabled.json::<serde_json::Value>().await.unwrap()["error"]["innererror"]["code"],
        "SecretDisabled"
    );
    assert_eq!(emu.versions("app-key").len(), 3);

    // Revoked token → 401; throttling → 429 with Retry-After.
    emu.throttle_next(1, 9);
    let throttled = get(secret_url.clone()).await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "9");
    emu.revoke_tokens();
    assert_eq!(get(secret_url).await.unwrap().status(), 401);
}

#[tokio::test]
async fn put_writes_a_version_with_attributes_and_tags_and_reads_back() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let t = target("build-bot", "rot-1");

    assert_eq!(s.read_back(&t).await.unwrap(), None);
    let version = s.put(&t, &secret(VALUE)).await.unwrap().unwrap();
    assert_eq!(
        s.read_back(&t).await.unwrap().as_deref(),
        Some(sha256_hex(VALUE.as_bytes()).as_str())
    );

    let versions = emu.versions("atlassian-build-bot");
    assert_eq!(versions.len(), 1);
    let v = &versions[0];
    assert_eq!(v.version, version);
    assert_eq!(v.value, VALUE);
    assert!(v.enabled);
    assert_eq!(
        v.exp,
        Some(
            "2027-03-01T12:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second()
        )
    );
    assert_eq!(v.content_type.as_deref(), Some("text/plain"));
    assert_eq!(v.tags["keyrot-key-id"], "id-build-bot");
    assert_eq!(v.tags["keyrot-rotation-id"], "rot-1");
    assert_eq!(v.tags["keyrot-provider"], "atlassian");
    assert_eq!(v.tags["keyrot-slot"], "atlassian/build-bot");
    assert_eq!(v.tags.len(), 4);
}

#[tokio::test]
async fn a_second_put_of_the_same_rotation_adds_no_version() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let t = target("build-bot", "rot-1");

    let first = s.put(&t, &secret(VALUE)).await.unwrap();
    let again = s.put(&t, &secret(VALUE)).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(emu.versions("atlassian-build-bot").len(), 1);

    // Another rotation (or another value) is a new version.
    let next = s
        .put(&target("build-bot", "rot-2"), &secret(VALUE))
        .await
        .unwrap();
    assert_ne!(next, first);
    s.put(&target("build-bot", "rot-2"), &secret("other-value"))
        .await
        .unwrap();
    let versions = emu.versions("atlassian-build-bot");
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[2].value, "other-value");
}

#[tokio::test]
async fn a_probe_writes_keyrot_probe() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let mut t = target("build-bot", "probe-1");
    t.probe = true;
    s.put(&t, &secret("probe-value")).await.unwrap();
    assert_eq!(emu.versions("keyrot-probe").len(), 1);
    assert!(emu.versions("atlassian-build-bot").is_empty());
}

#[tokio::test]
async fn the_token_is_cached_across_calls_and_callers() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(sink(&emu, &dir));
    for i in 0..3 {
        let t = target("build-bot", &format!("rot-{i}"));
        s.put(&t, &secret(VALUE)).await.unwrap();
        s.read_back(&t).await.unwrap();
    }
    assert_eq!(emu.token_requests(), 1);

    // Concurrent first calls of a fresh sink wait for one token request.
    let fresh = Arc::new(sink(&emu, &dir));
    let reads = (0..4).map(|i| {
        let f = Arc::clone(&fresh);
        tokio::spawn(async move { f.read_back(&target(&format!("k{i}"), "r")).await })
    });
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.unwrap().unwrap(), None);
    }
    assert_eq!(emu.token_requests(), 2);
}

#[tokio::test]
async fn the_token_is_renewed_before_it_expires() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(common::wall_now()));
    let s = sink(&emu, &dir).with_clock(clock.clone());
    let t = target("build-bot", "rot-1");

    // An hour-long token is renewed 5 minutes before it expires.
    emu.set_token_lifetime(3600);
    s.read_back(&t).await.unwrap();
    clock.advance(SignedDuration::from_mins(54));
    s.read_back(&t).await.unwrap();
    assert_eq!(emu.token_requests(), 1);
    clock.advance(SignedDuration::from_mins(1) + SignedDuration::from_secs(1));
    s.read_back(&t).await.unwrap();
    assert_eq!(emu.token_requests(), 2);

    // A short-lived one (20 s) 10 % of its lifetime (2 s) before.
    emu.set_token_lifetime(20);
    clock.advance(SignedDuration::from_hours(1));
    s.put(&t, &secret(VALUE)).await.unwrap();
    assert_eq!(emu.token_requests(), 3);
    clock.advance(SignedDuration::from_secs(17));
    s.read_back(&t).await.unwrap();
    assert_eq!(emu.token_requests(), 3);
    clock.advance(SignedDuration::from_secs(1));
    assert!(s.read_back(&t).await.unwrap().is_some());
    assert_eq!(emu.token_requests(), 4);
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_and_the_call_succeeds() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let t = target("build-bot", "rot-1");
    s.put(&t, &secret(VALUE)).await.unwrap();
    assert_eq!(emu.token_requests(), 1);

    emu.revoke_tokens();
    let before = emu.vault_requests();
    s.put(&target("build-bot", "rot-2"), &secret(VALUE))
        .await
        .unwrap();
    assert_eq!(emu.token_requests(), 2);
    // GET (401), GET again, PUT.
    assert_eq!(emu.vault_requests() - before, 3);
    assert_eq!(emu.versions("atlassian-build-bot").len(), 2);
}

#[tokio::test]
async fn throttling_is_transient_with_retry_after() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let t = target("build-bot", "rot-1");

    emu.throttle_next(1, 7);
    let e = s.put(&t, &secret(VALUE)).await.unwrap_err();
    assert!(e.transient, "{e}");
    assert_eq!(e.retry_after, Some(SignedDuration::from_secs(7)));
    assert!(e.message.contains("sink \"kv\""), "{e}");
    assert!(e.message.contains("429"), "{e}");
    assert!(e.message.contains("Throttled"), "{e}");
    assert_no_secret(&emu, &err_text(&e));

    // The next attempt goes through.
    s.put(&t, &secret(VALUE)).await.unwrap();
    assert_eq!(emu.versions("atlassian-build-bot").len(), 1);
}

#[tokio::test]
async fn a_bad_client_secret_is_permanent_and_names_invalid_client() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong~client-secret-value";
    let s = AzureKeyVaultSink::new("kv", &config(&emu, dir.path(), wrong), None).unwrap();
    let e = s
        .put(&target("build-bot", "rot-1"), &secret(VALUE))
        .await
        .unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("sink \"kv\""), "{e}");
    assert!(e.message.contains("Entra ID answered 401"), "{e}");
    assert!(e.message.contains("invalid_client"), "{e}");
    assert!(e.message.contains("AADSTS7000215"), "{e}");
    assert!(e.message.contains("client_secret"), "{e}");
    assert!(!err_text(&e).contains(wrong), "{e}");
    assert_no_secret(&emu, &err_text(&e));
    assert_eq!(emu.vault_requests(), 0);
}

#[tokio::test]
async fn a_missing_client_secret_fails_at_build_naming_the_field() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&emu, dir.path(), azure::CLIENT_SECRET);
    cfg.client_secret = SecretRef::File(dir.path().join("absent"));
    let e = AzureKeyVaultSink::new("kv", &cfg, None).unwrap_err();
    assert!(!e.transient);
    assert!(e.message.contains("sink \"kv\": `client_secret`"), "{e}");
}

#[tokio::test]
async fn an_invalid_name_is_permanent_and_names_the_rule() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let t = target("build_bot", "rot-1");
    for e in [
        s.put(&t, &secret(VALUE)).await.unwrap_err(),
        s.read_back(&t).await.unwrap_err(),
    ] {
        assert!(!e.transient, "{e}");
        assert!(e.message.contains("\"atlassian-build_bot\""), "{e}");
        assert!(e.message.contains("'_'"), "{e}");
        assert!(
            e.message.contains("1 to 127 ASCII letters, digits and '-'"),
            "{e}"
        );
        assert!(e.message.contains("Change `secret_name`"), "{e}");
    }
    // Checked before any request.
    assert_eq!(emu.token_requests() + emu.vault_requests(), 0);
}

#[tokio::test]
async fn a_soft_deleted_secret_is_permanent_with_recover_or_purge_advice() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let t = target("build-bot", "rot-1");
    s.put(&t, &secret(VALUE)).await.unwrap();
    emu.soft_delete("atlassian-build-bot");

    assert_eq!(s.read_back(&t).await.unwrap(), None);
    let e = s
        .put(&target("build-bot", "rot-2"), &secret(VALUE))
        .await
        .unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("deleted but recoverable"), "{e}");
    assert!(e.message.contains("az keyvault secret recover"), "{e}");
    assert!(e.message.contains("az keyvault secret purge"), "{e}");
    assert_no_secret(&emu, &err_text(&e));
}

#[tokio::test]
async fn a_disabled_latest_version_is_replaced_by_put_and_fails_read_back() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let t = target("build-bot", "rot-1");
    let token = emu.issue_token();
    keyrot_core::crypto::tls::provider();
    let resp = reqwest::Client::new()
        .put(format!(
            "{}/secrets/atlassian-build-bot?api-version=7.4",
            emu.url()
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"value": "old", "attributes": {"enabled": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let e = s.read_back(&t).await.unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("disabled"), "{e}");
    s.put(&t, &secret(VALUE)).await.unwrap();
    assert_eq!(emu.versions("atlassian-build-bot").len(), 2);
    assert_eq!(
        s.read_back(&t).await.unwrap().as_deref(),
        Some(sha256_hex(VALUE.as_bytes()).as_str())
    );
}

#[tokio::test]
async fn no_secret_appears_in_debug_or_errors() {
    let emu = AzureEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let s = sink(&emu, &dir);
    let t = target("build-bot", "rot-1");
    s.put(&t, &secret(VALUE)).await.unwrap();
    // A token is cached now: Debug must show neither it nor the secrets.
    let debug = format!("{s:?}");
    assert!(debug.contains("AzureKeyVaultSink"), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert_no_secret(&emu, &debug);

    let mut errors = Vec::new();
    emu.throttle_next(2, 1);
    errors.push(s.put(&t, &secret(VALUE)).await.unwrap_err());
    errors.push(s.read_back(&t).await.unwrap_err());
    errors.push(
        s.put(&target("bad_name", "rot-1"), &secret(VALUE))
            .await
            .unwrap_err(),
    );
    emu.soft_delete("atlassian-build-bot");
    errors.push(
        s.put(&target("build-bot", "rot-2"), &secret(VALUE))
            .await
            .unwrap_err(),
    );
    let wrong = AzureKeyVaultSink::new("kv", &config(&emu, dir.path(), "nope"), None).unwrap();
    errors.push(wrong.put(&t, &secret(VALUE)).await.unwrap_err());
    assert_eq!(errors.len(), 5);
    for e in &errors {
        assert_no_secret(&emu, &err_text(e));
    }
}
