//! End-to-end tests, continued: authentication and validation errors,
//! forced failures and the rate limit, revoke, admin-created keys, and state
//! surviving a restart. The harness is in `tests.rs`.

use std::os::unix::fs::PermissionsExt;

use jiff::SignedDuration;
use serde_json::{Value, json};

use super::tests::{start, t0, t0_plus_days};

/// The first error object of a response.
async fn error_of(resp: reqwest::Response) -> Value {
    resp.json::<Value>().await.unwrap()["errors"][0].clone()
}

#[tokio::test]
async fn auth_and_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin");
    let list = format!("{}/api-keys", sb.org);
    // 401: bad token, no header, key of the wrong org.
    let resp = sb.get(&list, "not-a-key").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(sb.client.get(&list).send().await.unwrap().status(), 401);
    let other_org = list.replace("demo-org", "other-org");
    assert_eq!(sb.get(&other_org, admin).await.status(), 401);
    // 404: unknown key.
    let resp = sb.rotate("no-such-key", admin, "", json!({})).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(error_of(resp).await["code"], "NOT_FOUND");
    // 400 naming the field: past oldKeyExpiresAt, keyWrap, limit.
    let past = t0() - SignedDuration::from_hours(1);
    let resp = sb
        .rotate(sb.id("ci-bot"), admin, "", json!({"oldKeyExpiresAt": past}))
        .await;
    assert_eq!(resp.status(), 400);
    let err = error_of(resp).await;
    assert_eq!(err["field"], "oldKeyExpiresAt");
    assert!(err["detail"].as_str().unwrap().contains("oldKeyExpiresAt"));
    let resp = sb
        .rotate(
            sb.id("ci-bot"),
            admin,
            "",
            json!({"encryption": {"keyWrap": true}}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let err = error_of(resp).await;
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("keyWrap is not supported")
    );
    let resp = sb.get(&format!("{list}?limit=0"), admin).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(error_of(resp).await["field"], "limit");
    // Unknown paths answer a JSON 404.
    let resp = sb
        .client
        .get(format!("{}/nope", sb.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_of(resp).await["code"], "NOT_FOUND");
    // Nothing was rotated by the refused calls.
    assert_eq!(sb.all_keys(admin, 100).await.len(), 5);
    // A rotate without any body uses every default.
    let url = format!("{}/api-keys/rotate/{}", sb.org, sb.id("ci-bot"));
    let resp = sb
        .client
        .patch(url)
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sb.all_keys(admin, 100).await.len(), 6);
    sb.stop().await;
}

#[tokio::test]
async fn forced_failures_and_rate_limit_carry_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin");
    let count = format!("{}/api-keys/count", sb.org);
    let resp = sb
        .client
        .post(format!("{}/_sandbox/fail", sb.base))
        .json(&json!({"status": 429, "retry_after": 2, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = sb.get(&count, admin).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(error_of(resp).await["code"], "RATE_LIMITED");
    assert_eq!(sb.get(&count, admin).await.status(), 200);
    sb.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), Some(2)).await;
    let admin = sb.secret("legacy-admin");
    let count = format!("{}/api-keys/count", sb.org);
    let mut limited = None;
    for _ in 0..6 {
        let resp = sb.get(&count, admin).await;
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let resp = limited.expect("six requests at once exceed 2 per second");
    assert_eq!(resp.headers()["retry-after"], "1");
    sb.stop().await;
}

#[tokio::test]
async fn revoked_key_gets_401_and_second_revoke_is_404() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin");
    let reporting = sb.id("reporting").to_string();
    let count = format!("{}/api-keys/count", sb.org);
    assert_eq!(sb.get(&count, sb.secret("reporting")).await.status(), 200);
    assert_eq!(sb.revoke(&reporting, admin).await.status(), 204);
    let resp = sb.get(&count, sb.secret("reporting")).await;
    assert_eq!(resp.status(), 401);
    assert!(
        error_of(resp).await["detail"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    assert_eq!(sb.revoke(&reporting, admin).await.status(), 404);
    assert_eq!(sb.listed(admin, &reporting).await["status"], "REVOKED");
    // A revoked key cannot be rotated either.
    assert_eq!(
        sb.rotate(&reporting, admin, "", json!({})).await.status(),
        404
    );
    sb.stop().await;
}

#[tokio::test]
async fn admin_keys_expire_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let create = |body: Value| {
        sb.client
            .post(format!("{}/_sandbox/keys", sb.base))
            .json(&body)
            .send()
    };
    let resp = create(
        json!({"orgId": "demo-org", "name": "short", "scopes": ["read:*"],
                             "expiresAt": t0() + SignedDuration::from_hours(1)}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    let made: Value = resp.json().await.unwrap();
    let secret = made["secret"].as_str().unwrap().to_string();
    let count = format!("{}/api-keys/count", sb.org);
    assert_eq!(sb.get(&count, &secret).await.status(), 200);
    // Read-only: rotating itself is 403.
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(sb.rotate(&id, &secret, "", json!({})).await.status(), 403);
    sb.clock.advance(SignedDuration::from_hours(2));
    let resp = sb.get(&count, &secret).await;
    assert_eq!(resp.status(), 401);
    assert!(
        error_of(resp).await["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    // Expired keys cannot be rotated (409); too long a life is refused.
    let admin = sb.secret("legacy-admin");
    assert_eq!(sb.rotate(&id, admin, "", json!({})).await.status(), 409);
    let resp = create(json!({"orgId": "demo-org", "name": "long", "expiresAt": t0_plus_days(400)}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_of(resp).await["field"], "expiresAt");
    sb.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin").to_string();
    let secrets_before = std::fs::read(dir.path().join("secrets.json")).unwrap();
    let mode = std::fs::metadata(dir.path().join("secrets.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let resp = sb
        .rotate(
            sb.id("ci-bot"),
            &admin,
            "",
            json!({"rotateReason": "before restart"}),
        )
        .await;
    let new_id = resp.json::<Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sb.revoke(sb.id("reporting"), &admin).await.status(), 204);
    let reporting = sb.secret("reporting").to_string();
    sb.stop().await;

    // Same state file, --seed again: nothing is re-seeded.
    let sb = start(dir.path(), None).await;
    assert_eq!(
        std::fs::read(dir.path().join("secrets.json")).unwrap(),
        secrets_before
    );
    let keys = sb.all_keys(&admin, 2).await;
    assert_eq!(keys.len(), 6);
    assert!(keys.iter().any(|k| k["id"] == new_id.as_str()));
    let count = format!("{}/api-keys/count", sb.org);
    assert_eq!(sb.get(&count, &reporting).await.status(), 401);
    let audit: Value = sb
        .client
        .get(format!("{}/_sandbox/audit", sb.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reasons: Vec<&Value> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["rotateReason"])
        .collect();
    assert!(reasons.contains(&&json!("before restart")));
    sb.stop().await;
}
