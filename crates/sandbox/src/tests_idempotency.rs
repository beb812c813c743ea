//! End-to-end tests of the rotate call's `Idempotency-Key` (keyrot's
//! extension to the proposal): a repeat replays the first response, for the
//! same org and old key, within 24 hours, and survives a restart. The
//! harness is in `tests.rs`.

use jiff::SignedDuration;
use serde_json::{Value, json};

use super::tests::{PSK, Running, open_secret, start};

/// PATCH rotate of `id` as the seeded admin with an `Idempotency-Key`.
async fn rotate_with_key(sb: &Running, id: &str, key: &str) -> reqwest::Response {
    sb.client
        .patch(format!("{}/api-keys/rotate/{id}", sb.org))
        .bearer_auth(sb.secret("keyrot"))
        .header("Idempotency-Key", key)
        .json(&json!({"rotateReason": "test"}))
        .send()
        .await
        .unwrap()
}

/// The `data` of a 200 rotate response.
async fn data(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["data"].clone()
}

#[tokio::test]
async fn a_repeat_with_the_same_key_replays_the_first_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let admin = sb.secret("legacy-admin").to_string();
    let old = sb.id("ci-bot").to_string();
    let first = data(rotate_with_key(&sb, &old, "rot-1").await).await;
    sb.clock.advance(SignedDuration::from_hours(23));
    let again = data(rotate_with_key(&sb, &old, "rot-1").await).await;
    // Same new key, same sealed bytes: the one-time secret is recovered.
    assert_eq!(again, first);
    let id = first["id"].as_str().unwrap();
    let secret = open_secret(&PSK, id, first["encryptedSecret"].as_str().unwrap());
    assert_eq!(
        sb.get(&format!("{}/api-keys/count", sb.org), &secret)
            .await
            .status(),
        200
    );
    // Only one rotation happened: 5 seeded keys + 1.
    assert_eq!(sb.all_keys(&admin, 100).await.len(), 6);
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(state.contains("idempotentRotations"), "{state}");
    assert!(!state.contains(secret.as_str()));
    // Another key, or the same key for another old key, rotates anew.
    let other = data(rotate_with_key(&sb, &old, "rot-2").await).await;
    assert_ne!(other["id"], first["id"]);
    let reporting = sb.id("reporting").to_string();
    let third = data(rotate_with_key(&sb, &reporting, "rot-1").await).await;
    assert_ne!(third["id"], first["id"]);
    assert_eq!(sb.all_keys(&admin, 100).await.len(), 8);
    // After 24 hours the key is forgotten and the call rotates again.
    sb.clock.advance(SignedDuration::from_hours(2));
    let late = data(rotate_with_key(&sb, &old, "rot-1").await).await;
    assert_ne!(late["id"], first["id"]);
    sb.stop().await;
}

#[tokio::test]
async fn a_replay_survives_a_restart_and_still_needs_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let old = sb.id("ci-bot").to_string();
    let first = data(rotate_with_key(&sb, &old, "rot-restart").await).await;
    // The replay needs a key that may rotate.
    let resp = sb
        .client
        .patch(format!("{}/api-keys/rotate/{old}", sb.org))
        .bearer_auth(sb.secret("read only demo"))
        .header("Idempotency-Key", "rot-restart")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A bad header is a 400 naming it.
    let resp = rotate_with_key(&sb, &old, "has space").await;
    assert_eq!(resp.status(), 400);
    let err = resp.json::<Value>().await.unwrap()["errors"][0].clone();
    assert_eq!(err["field"], "Idempotency-Key");
    sb.stop().await;
    let sb = start(dir.path(), None).await;
    let again = data(rotate_with_key(&sb, &old, "rot-restart").await).await;
    assert_eq!(again, first);
    sb.stop().await;
}
