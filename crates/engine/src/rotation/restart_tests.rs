//! Every failure state has a way out that its mails name: for each state a
//! rotation can fail in, the FAILED mail and the expiry notice are rendered
//! and every command they offer is run against the engine (each on a fresh
//! copy of the situation) and must be accepted.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::tests::{Fixture, fixture, manual, settle};
use super::*;
use keyrot_config::{FileFormat, FileSinkConfig, SinkConfig, SinkKind};
use keyrot_core::error::CallError;
use keyrot_core::model::MessageKind;
use keyrot_core::policy::testutil::dur;

/// The states a rotation can fail in, as an operator meets them.
#[derive(Clone, Copy, Debug)]
enum Situation {
    /// The provider call failed; an interrupted issue may have left a key.
    Issuing,
    /// One sink holds the new key, the other refused it.
    DistributingWritten,
    /// Distributed, then the provider no longer accepted the new key.
    Verifying,
    /// Resumed a month later: the new key (and the old) had expired.
    NewKeyExpired,
}

/// A runtime whose sink "bad" writes under a regular file (every write
/// fails) or, with `blocked` false, beside "out".
fn with_bad_sink(f: &Fixture, blocked: bool) {
    let mut cfg = (*f.engine.runtime().config).clone();
    let dir = if blocked {
        f.out.join("blocker")
    } else {
        f.out.clone()
    };
    cfg.sinks.retain(|s| s.name != "bad");
    cfg.sinks.push(SinkConfig {
        hooks: Vec::new(),
        name: "bad".into(),
        kind: SinkKind::File(FileSinkConfig {
            path: dir.join("{name}-bad.json").display().to_string(),
            format: FileFormat::Json,
            env_name: "K".into(),
            mode: 0o600,
            owner: None,
            group: None,
        }),
    });
    f.engine
        .set_runtime(Runtime::build(Arc::new(cfg), &f.engine.store()).unwrap());
}

/// Drives `id` (retrying on the manual clock) until it fails.
async fn until_failed(f: &Fixture, id: &str) -> RotationRecord {
    let mut rec = settle(f, id).await;
    for _ in 0..10 {
        if rec.state == RotationState::Failed {
            return rec;
        }
        f.clock.advance(dur("1s"));
        f.engine.spawn(id);
        rec = settle(f, id).await;
    }
    panic!("never failed: {rec:?}");
}

/// A fresh fixture whose second rotation failed as `s` says; the key has a
/// current key with an expiry (so an expiry notice can be rendered).
async fn failed(s: Situation) -> (Fixture, RotationRecord) {
    let f = fixture(None);
    std::fs::write(f.out.join("blocker"), b"x").unwrap();
    with_bad_sink(&f, false);
    f.engine
        .store()
        .write(|tx| {
            let mut k = tx.key("local/ci")?.unwrap();
            k.sinks = vec!["out".into(), "bad".into()];
            tx.put_key(&k)
        })
        .unwrap();
    let first = f.engine.start("local/ci", manual()).await.unwrap();
    assert_eq!(
        settle(&f, &first.id).await.state,
        RotationState::Completed,
        "the first key"
    );
    if let Situation::Issuing = s {
        let rt = f.engine.runtime();
        let mut key = f.engine.store().key("local/ci").unwrap().unwrap();
        let mut rec = super::new_record(&rt, &key, manual(), f.engine.now());
        rec.transition(RotationState::Issuing, f.engine.now(), "issuing");
        rt.providers["local"]
            .issue(&keyrot_peers::provider::IssueRequest {
                name: "ci".into(),
                tag: rec.id.clone(),
                created_by: "keyrot".into(),
                now: f.engine.now(),
                ..Default::default()
            })
            .await
            .unwrap();
        key.active_rotation = Some(rec.id.clone());
        f.engine
            .store()
            .write(|tx| {
                tx.put_rotation(&rec)?;
                tx.put_key(&key)
            })
            .unwrap();
        f.engine
            .record_failure(
                &rt,
                &rec.id,
                RotationState::Issuing,
                CallError::permanent("provider answered 500"),
            )
            .await
            .unwrap();
        let rec = f.engine.store().rotation(&rec.id).unwrap().unwrap();
        return (f, rec);
    }
    with_bad_sink(&f, true);
    let rot = f.engine.start("local/ci", manual()).await.unwrap();
    let rec = until_failed(&f, &rot.id).await;
    assert_eq!(rec.failed_in, Some(RotationState::Distributing));
    assert!(rec.sink_results.contains_key("out"), "{rec:?}");
    let rec = match s {
        Situation::Issuing | Situation::DistributingWritten => rec,
        Situation::Verifying | Situation::NewKeyExpired => {
            if let Situation::Verifying = s {
                // Someone revoked the new key at the provider meanwhile.
                let new = rec.new_key.as_ref().unwrap().id.clone();
                let rt = f.engine.runtime();
                rt.providers["local"]
                    .revoke(&new, f.engine.now())
                    .await
                    .unwrap();
            } else {
                f.clock.advance(dur("31d"));
            }
            with_bad_sink(&f, false);
            f.engine.resume(&rot.id).await.unwrap();
            until_failed(&f, &rot.id).await
        }
    };
    if !matches!(s, Situation::DistributingWritten) {
        assert_eq!(rec.failed_in, Some(RotationState::Verifying), "{rec:?}");
    }
    (f, rec)
}

/// The FAILED mail queued for `rec`'s last failure and an expiry notice
/// rendered now, as (text, html) pairs.
fn mails(f: &Fixture, rec: &RotationRecord) -> Vec<(String, String)> {
    let outbox = f.engine.store().outbox().unwrap();
    let failed = outbox
        .iter()
        .filter(|m| m.kind == MessageKind::RotationFailed && m.id.starts_with(&rec.id))
        .max_by_key(|m| m.id.rsplit('.').next().unwrap().parse::<usize>().unwrap())
        .expect("a FAILED mail");
    let rt = f.engine.runtime();
    let key = f.engine.store().key(&rec.slot).unwrap().unwrap();
    let policy = rt.config.policy("p").unwrap();
    let composer = crate::notify::Composer::new(Arc::clone(&rt.config));
    let notice = composer
        .expiry_notice(&key, policy, Some(rec), dur("7d"), f.engine.now())
        .pop()
        .expect("an expiry notice");
    [failed.clone(), notice]
        .into_iter()
        .map(|m| (m.body, m.html.unwrap_or_default()))
        .collect()
}

/// Every `keyrot rotation ACTION ID` a text names.
fn offered(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("keyrot rotation ") {
        rest = &rest[i + "keyrot rotation ".len()..];
        let mut words = rest.split_whitespace();
        let (Some(action), Some(id)) = (words.next(), words.next()) else {
            break;
        };
        let id = id.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        out.insert((action.to_string(), id.to_string()));
    }
    out
}

/// Renders the mails of situation `s`, checks they offer `expected`, then
/// runs each offered command on a fresh copy of the situation.
async fn every_offered_command_succeeds(s: Situation, expected: &[&str]) {
    let (f, rec) = failed(s).await;
    let mut all = BTreeSet::new();
    for (text, html) in mails(&f, &rec) {
        let (t, h) = (offered(&text), offered(&html));
        assert_eq!(t, h, "text and html offer different commands:\n{text}");
        all.extend(t);
    }
    let actions: Vec<&str> = all
        .iter()
        .inspect(|(_, id)| assert_eq!(id, &rec.id, "{s:?}"))
        .map(|(a, _)| a.as_str())
        .collect();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(actions, want, "{s:?}");
    drop(f);
    for action in actions {
        let (f, rec) = failed(s).await;
        let out = match action {
            "show" => f
                .engine
                .store()
                .rotation(&rec.id)
                .unwrap()
                .ok_or_else(|| Refusal::unknown("unknown")),
            "resume" => f.engine.resume(&rec.id).await,
            "abort" => f.engine.abort(&rec.id).await,
            "restart" => f.engine.restart(&rec.id).await,
            other => panic!("a mail offers an unknown command {other:?}"),
        };
        let got = out.unwrap_or_else(|e| panic!("{s:?}: `{action}` refused: {e}"));
        if action == "restart" {
            restarted(&f, &rec, &got).await;
        }
    }
}

/// What a restart leaves: the failed rotation Aborted with its successor
/// named, the new key revoked, and a fresh rotation of the same key with
/// the same trigger, reason and initiator, driven.
async fn restarted(f: &Fixture, old: &RotationRecord, fresh: &RotationRecord) {
    let store = f.engine.store();
    let ended = store.rotation(&old.id).unwrap().unwrap();
    assert_eq!(ended.state, RotationState::Aborted);
    let note = &ended.history.last().unwrap().note;
    assert!(
        note.contains(&format!("restarted as {}", fresh.id)),
        "{note}"
    );
    assert!(!store.has_secret(&old.id).unwrap());
    if let Some(new) = &old.new_key {
        assert!(
            store
                .local_key(&new.id)
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
    }
    assert_ne!(fresh.id, old.id);
    assert_eq!(fresh.slot, old.slot);
    assert_eq!(fresh.trigger, old.trigger);
    assert_eq!(fresh.reason, old.reason);
    assert_eq!(fresh.initiator, old.initiator);
    let key = store.key(&old.slot).unwrap().unwrap();
    assert_eq!(key.active_rotation.as_deref(), Some(fresh.id.as_str()));
    // The fresh rotation runs: it issues a key of its own.
    let driven = settle(f, &fresh.id).await;
    let issued = driven.new_key.expect("the fresh rotation issued a key");
    assert_ne!(Some(&issued.id), old.new_key.as_ref().map(|k| &k.id));
}

#[tokio::test]
async fn failed_in_issuing_every_command_offered_succeeds() {
    every_offered_command_succeeds(Situation::Issuing, &["show", "resume", "abort", "restart"])
        .await;
}

#[tokio::test]
async fn failed_in_distributing_with_a_sink_written_every_command_offered_succeeds() {
    every_offered_command_succeeds(
        Situation::DistributingWritten,
        &["show", "resume", "restart"],
    )
    .await;
}

#[tokio::test]
async fn failed_in_verifying_every_command_offered_succeeds() {
    every_offered_command_succeeds(Situation::Verifying, &["show", "resume", "restart"]).await;
}

#[tokio::test]
async fn failed_because_the_new_key_expired_every_command_offered_succeeds() {
    every_offered_command_succeeds(Situation::NewKeyExpired, &["show", "resume", "restart"]).await;
}

#[tokio::test]
async fn a_failed_mail_after_the_old_key_expired_says_so_rather_than_valid_until() {
    let (f, rec) = failed(Situation::NewKeyExpired).await;
    let old_expires = rec
        .old_expires_at
        .unwrap()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();
    let (text, html) = mails(&f, &rec).remove(0);
    assert!(!text.contains("stays valid"), "{text}");
    assert!(
        text.contains(&format!("expired at {old_expires}")),
        "{text}"
    );
    assert!(!html.contains("stays valid"), "{html}");
    assert!(text.contains("although sinks hold it"), "{text}");
}

#[tokio::test]
async fn restart_refuses_a_rotation_that_has_not_failed_and_changes_nothing() {
    let f = fixture(None);
    let first = f.engine.start("local/ci", manual()).await.unwrap();
    settle(&f, &first.id).await;
    let rot = f.engine.start("local/ci", manual()).await.unwrap();
    let waiting = settle(&f, &rot.id).await;
    assert_eq!(waiting.state, RotationState::Overlap);
    let e = f.engine.restart(&rot.id).await.unwrap_err();
    assert!(
        matches!(&e, Refusal::Conflict { message, .. } if message.contains("not failed")),
        "{e:?}"
    );
    let after = f.engine.store().rotation(&rot.id).unwrap().unwrap();
    assert_eq!(after.state, RotationState::Overlap);
    let new = after.new_key.unwrap().id;
    assert!(
        f.engine
            .store()
            .local_key(&new)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(matches!(
        f.engine.restart("nope").await.unwrap_err(),
        Refusal::Unknown(_)
    ));
}
