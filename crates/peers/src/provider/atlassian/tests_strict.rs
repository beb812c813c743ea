//! The Atlassian provider where a server is strict: a response sealed under
//! a PSK of the server's choosing, an unknown PSK, what the rotate body
//! says of the old key, and proving which key a secret belongs to.

use std::sync::Arc;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde_json::Value;

use super::{Sandbox, request, t0};
use crate::provider::atlassian::AtlassianProvider;
use crate::provider::{Identity, Provider};
use keyrot_config::{AtlassianRotateApi, SecretRef};
use keyrot_core::clock::Clock;
use keyrot_core::crypto;

/// A clock that moves 1 ms each time it is read, as a real one does
/// between calls (an identity proof needs `lastActiveAt` to move).
struct Ticking(Mutex<Timestamp>);

impl Clock for Ticking {
    fn now(&self) -> Timestamp {
        let mut t = self.0.lock().unwrap();
        *t += SignedDuration::from_millis(1);
        *t
    }
}

fn ticking() -> Arc<dyn Clock> {
    Arc::new(Ticking(Mutex::new(t0())))
}

/// The sandbox's audit entries.
async fn audit(sb: &Sandbox) -> Vec<Value> {
    keyrot_core::crypto::tls::provider();
    let v: Value = reqwest::get(format!("{}/_sandbox/audit", sb.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_answer_opens_under_the_psk_it_names_and_an_unknown_one_revokes_the_new_key() {
    // The server seals under its default, "server-default", whatever the
    // client would like; keyrot holds it as a second PSK.
    let server_psk = [0x17; 32];
    let sb = Sandbox::start_with(ticking(), vec![("server-default", server_psk)]).await;
    let hex = sb.dir.path().join("server-default.hex");
    let mut cfg = sb.config(50);
    cfg.rotate_api = AtlassianRotateApi::Proposed {
        psks: vec![
            (
                super::PSK_ID.into(),
                SecretRef::File(sb.dir.path().join("psk.hex")),
            ),
            ("server-default".into(), SecretRef::File(hex)),
        ],
        send_psk_id: false,
    };
    let p = AtlassianProvider::from_config("atl", &cfg, None).unwrap();
    let old = sb.id("ci-bot");
    let issued = p.issue(&request(Some(&old), "rot-a")).await.unwrap();
    p.verify(&issued.info.id, &issued.secret, t0())
        .await
        .unwrap();
    let last = audit(&sb).await.pop().unwrap();
    assert_eq!(last["pskId"], "server-default", "{last}");

    // Only the test PSK configured: the answer names one keyrot lacks.
    let only = sb.provider(50);
    let err = only.issue(&request(Some(&old), "rot-b")).await.unwrap_err();
    assert!(!err.transient);
    assert!(
        err.message
            .contains("sealed under PSK \"server-default\", which is not configured"),
        "{err}"
    );
    assert!(
        err.message.contains(&format!("old key {old} untouched")),
        "{err}"
    );
    let entries = audit(&sb).await;
    let rotated = entries
        .iter()
        .rev()
        .find(|e| e["action"] == "api-key.rotated")
        .unwrap();
    let new = rotated["newApiKeyId"].as_str().unwrap();
    let revoked = entries.last().unwrap();
    assert_eq!(
        (revoked["action"].as_str(), revoked["apiKeyId"].as_str()),
        (Some("api-key.revoked"), Some(new))
    );
    let live = only.list(t0()).await.unwrap();
    assert!(live.iter().any(|k| k.id == old) && !live.iter().any(|k| k.id == new));
    assert!(
        !format!("{err:?}").contains(&crypto::hex_encode(&server_psk)),
        "{err:?}"
    );
    sb.stop().await;
}

#[tokio::test]
async fn the_rotate_body_says_the_old_keys_end_and_the_callers_words() {
    let sb = Sandbox::start_with(ticking(), Vec::new()).await;
    let p = sb.provider(50);
    let old = sb.id("ci-bot");
    let end = t0() + SignedDuration::from_hours(24 * 20);
    let mut req = request(Some(&old), "rot-c");
    req.old_key_expires_at = Some(end);
    req.reason = "quarterly".into();
    req.rotated_by = "alice".into();
    req.initiated_from = "cli".into();
    req.policy_id = "standard".into();
    req.notify_contacts = true;
    p.issue(&req).await.unwrap();
    let last = audit(&sb).await.pop().unwrap();
    assert_eq!(last["rotateReason"], "quarterly");
    assert_eq!(last["notifyContacts"], true);
    assert_eq!(last["metadata"]["rotatedBy"], "alice");
    assert_eq!(last["metadata"]["initiatedFrom"], "cli");
    assert_eq!(last["metadata"]["rotationPolicyId"], "standard");
    assert_eq!(
        last["oldKeyExpiresAt"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .unwrap(),
        end
    );
    sb.stop().await;
}

#[tokio::test]
async fn identity_is_proven_for_the_right_key_and_refused_for_another() {
    let sb = Sandbox::start_with(ticking(), Vec::new()).await;
    let p = sb.provider(50);
    let ci = sb.id("ci-bot");
    let ci_secret = SecretString::from(sb.keys["ci-bot"].1.clone());
    assert_eq!(
        p.prove_identity(&ci, &ci_secret, t0()).await.unwrap(),
        Identity::Proven
    );
    // The secret of `ci-bot` offered as `reporting`'s: refused, naming ci-bot.
    let reporting = sb.id("reporting");
    let err = p
        .prove_identity(&reporting, &ci_secret, t0())
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains(&format!("belongs to key {ci}, not to key {reporting}")),
        "{err}"
    );
    // A secret that authenticates as nothing: refused.
    let nothing = SecretString::from("ATSBXnot-a-key".to_string());
    assert!(p.prove_identity(&ci, &nothing, t0()).await.is_err());
    // The admin key's own secret offered as ci-bot's: not provable.
    let admin = SecretString::from(sb.keys["keyrot"].1.clone());
    assert!(matches!(
        p.prove_identity(&ci, &admin, t0()).await.unwrap(),
        Identity::Unprovable(_)
    ));
    sb.stop().await;
}
