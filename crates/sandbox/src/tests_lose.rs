//! End-to-end tests of lost rotate answers (`POST /_sandbox/lose`): the
//! rotation happens and is saved, and the client gets no answer (`drop`) or
//! a late one (`stall`). The harness is in `tests.rs`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::tests::{PSK, Running, open_secret, start};
use super::tests_strict::data;

impl Running {
    /// `POST /_sandbox/lose` with `body`; expects 204.
    async fn lose(&self, body: Value) {
        let resp = self
            .client
            .post(format!("{}/_sandbox/lose", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }

    /// The keys rotated from `old`, per `GET /_sandbox/keys`.
    async fn rotated_from(&self, old: &str) -> Vec<Value> {
        self.admin_keys()
            .await
            .into_iter()
            .filter(|k| k["rotatedFrom"] == old)
            .collect()
    }
}

/// Sends a rotate of `old` as the `keyrot` key on a fresh connection and
/// returns what the client saw: the body, or the error.
async fn rotate_outcome(sb: &Running, old: &str, idem: &str) -> Result<Value, reqwest::Error> {
    keyrot_core::crypto::tls::provider();
    let client = reqwest::Client::new();
    let resp = client
        .patch(format!("{}/api-keys/rotate/{old}", sb.org))
        .bearer_auth(sb.secret("keyrot"))
        .header("Idempotency-Key", idem)
        .json(&json!({"oldKeyExpiresAt": super::tests::t0_plus_days(1)}))
        .send()
        .await?;
    resp.json::<Value>().await
}

#[tokio::test]
async fn drop_cuts_the_answer_but_the_rotation_stands() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let old = sb.id("ci-bot").to_string();
    sb.lose(json!({})).await;
    // An error answer is not lost and does not use up the loss.
    let resp = sb
        .rotate(&old, sb.secret("read only demo"), "", json!({}))
        .await;
    assert_eq!(resp.status(), 403);
    // Nor are other calls touched.
    let count = format!("{}/api-keys/count", sb.org);
    assert_eq!(sb.get(&count, sb.secret("keyrot")).await.status(), 200);
    // No status line reaches the client: send() itself fails.
    keyrot_core::crypto::tls::provider();
    let err = reqwest::Client::new()
        .patch(format!("{}/api-keys/rotate/{old}", sb.org))
        .bearer_auth(sb.secret("keyrot"))
        .header("Idempotency-Key", "rot-1")
        .json(&json!({"oldKeyExpiresAt": super::tests::t0_plus_days(1)}))
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    // The rotation happened and was saved.
    let made = sb.rotated_from(&old).await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["status"], "ACTIVE");
    let new_id = made[0]["id"].as_str().unwrap().to_string();
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(state.contains(&new_id));
    assert_eq!(sb.last_audit().await["newApiKeyId"], new_id);
    // The loss is used up: the replay of the same call answers, with the key made.
    let replay = rotate_outcome(&sb, &old, "rot-1").await.unwrap();
    assert_eq!(replay["data"]["id"], new_id);
    let sealed = replay["data"]["encryptedSecret"].as_str().unwrap();
    assert!(open_secret(&PSK, &new_id, sealed).starts_with("ATSBX"));
    assert_eq!(sb.rotated_from(&old).await.len(), 1);
    // count 0 clears.
    sb.lose(json!({"count": 3, "mode": "drop"})).await;
    sb.lose(json!({"count": 0})).await;
    assert!(rotate_outcome(&sb, &old, "rot-2").await.is_ok());
    sb.stop().await;
}

#[tokio::test]
async fn stall_answers_late_after_acting() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start(dir.path(), None).await;
    let old = sb.id("ci-bot").to_string();
    sb.lose(json!({"mode": "stall", "stallMs": 50})).await;
    let began = Instant::now();
    let answer = rotate_outcome(&sb, &old, "rot-1").await.unwrap();
    assert!(began.elapsed() >= Duration::from_millis(50));
    assert_eq!(answer["data"]["id"], sb.rotated_from(&old).await[0]["id"]);
    // The next answer is on time again.
    let resp = sb.rotate(&old, sb.secret("keyrot"), "", json!({})).await;
    data(resp).await;
    sb.stop().await;
}

#[tokio::test]
async fn a_client_killed_during_a_stall_leaves_the_key_behind() {
    let dir = tempfile::tempdir().unwrap();
    let sb = std::sync::Arc::new(start(dir.path(), None).await);
    let old = sb.id("reporting").to_string();
    sb.lose(json!({"count": 1, "mode": "stall", "stallMs": 600_000}))
        .await;
    let call = {
        let (sb, old) = (sb.clone(), old.clone());
        tokio::spawn(async move { rotate_outcome(&sb, &old, "rot-1").await })
    };
    // Wait (without sleeping) until the server has acted.
    let mut made = Vec::new();
    for _ in 0..10_000 {
        made = sb.rotated_from(&old).await;
        if !made.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(made.len(), 1, "the stalled rotation was never made");
    assert!(!call.is_finished());
    // Other calls answer meanwhile; then the client dies mid-call.
    let count = format!("{}/api-keys/count", sb.org);
    assert_eq!(sb.get(&count, sb.secret("keyrot")).await.status(), 200);
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_eq!(
        sb.admin_key(made[0]["id"].as_str().unwrap()).await["status"],
        "ACTIVE"
    );
    // Stopping the server ends the stall instead of waiting ten minutes.
    let sb = std::sync::Arc::into_inner(sb).unwrap();
    sb.stop().await;
}
