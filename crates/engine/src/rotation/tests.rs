//! The state machine in process: a real store in a temp dir, the local
//! provider, a file sink and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use keyrot_config::*;
use keyrot_core::clock::ManualClock;
use keyrot_core::crypto::{MasterKey, sha256_hex};
use keyrot_core::model::{DeliveryState, KeyRecord};
use keyrot_core::policy::testutil::{dur, ts};
use keyrot_peers::sink::SinkTarget;

pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) engine: Arc<Engine>,
    pub(super) clock: Arc<ManualClock>,
    pub(super) out: std::path::PathBuf,
}

pub(super) fn fixture(sink_path: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let default_sink = out.join("{name}.json").display().to_string();
    let cfg = Arc::new(keyrot_config::testkit::local(
        &out,
        sink_path.unwrap_or(&default_sink),
    ));
    let store = Arc::new(Store::open(&out.join("state.redb"), MasterKey::generate()).unwrap());
    let rt = Runtime::build(Arc::clone(&cfg), &store).unwrap();
    let clock = Arc::new(ManualClock::new(ts("2026-11-23T10:00:00Z")));
    let engine = Engine::new(
        store,
        rt,
        clock.clone(),
        Wake::new(),
        CancellationToken::new(),
        TaskTracker::new(),
    );
    let slot = KeyRecord {
        hooks: Vec::new(),
        slot: "local/ci".into(),
        provider: "local".into(),
        name: "ci".into(),
        current: None,
        policy: "p".into(),
        next_due: None,
        due_reason: None,
        active_rotation: None,
        last_rotated_at: None,
        last_started_at: None,
        synced_at: None,
        sinks: vec!["out".into()],
        scopes: vec!["read:all".into()],
        contacts: vec!["owner@example.com".into()],
        group: None,
        ended: None,
        kept_secret: None,
    };
    engine.store().write(|tx| tx.put_key(&slot)).unwrap();
    Fixture {
        _dir: dir,
        engine,
        clock,
        out,
    }
}

pub(super) fn manual() -> StartRequest {
    StartRequest {
        trigger: Trigger::Manual,
        reason: "test".into(),
        initiator: Initiator::default(),
        new_expires_at: None,
        old_expires_at: None,
        notify_contacts: false,
        reveal_psk: None,
    }
}

/// Waits until the rotation's runner has stopped and returns its record.
pub(super) async fn settle(f: &Fixture, id: &str) -> RotationRecord {
    for _ in 0..500 {
        if !f.engine.running().contains(id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.engine.store().rotation(id).unwrap().unwrap()
}

fn target(f: &Fixture, rec: &RotationRecord) -> SinkTarget {
    let _ = f;
    SinkTarget {
        slot: rec.slot.clone(),
        provider: "local".into(),
        key_name: "ci".into(),
        key_id: String::new(),
        rotation_id: rec.id.clone(),
        expires_at: None,
        probe: false,
    }
}

/// A failed commit is fatal and travels up: the caller gets the error, the
/// engine says why (the first failure's reason), starts no runner any more
/// and wakes whoever waits for it (the daemon, which exits with status 70).
#[tokio::test]
async fn a_failed_commit_stops_the_engine_and_says_why() {
    let f = fixture(None);
    assert_eq!(f.engine.fatal(), None);
    f.engine
        .store()
        .fail_commits_for_test("store s.redb: disk gone");
    let err = f.engine.start("local/ci", manual()).await.unwrap_err();
    assert!(
        matches!(&err, Refusal::Internal(m) if m.contains("disk gone")),
        "{err:?}"
    );
    assert_eq!(f.engine.fatal(), Some("store s.redb: disk gone"));
    tokio::time::timeout(Duration::from_secs(5), f.engine.until_fatal())
        .await
        .unwrap();
    assert!(f.engine.stop.is_cancelled());
    let again = f.engine.db(|s| s.write(|_| Ok(()))).await;
    assert!(
        matches!(again, Err(EngineError::Store(StoreError::CommitFailed(_)))),
        "{again:?}"
    );
    assert_eq!(f.engine.fatal(), Some("store s.redb: disk gone"));
    assert!(f.engine.running().is_empty());
}

#[tokio::test]
async fn first_issue_then_rotation_with_overlap_and_revoke() {
    let f = fixture(None);
    let first = f.engine.start("local/ci", manual()).await.unwrap();
    let first = settle(&f, &first.id).await;
    assert_eq!(first.state, RotationState::Completed, "{first:?}");
    let key = f.engine.store().key("local/ci").unwrap().unwrap();
    let old_id = key.current.as_ref().unwrap().id.clone();
    assert_eq!(
        key.current.as_ref().unwrap().scopes,
        vec!["read:all".to_string()]
    );
    assert!(key.active_rotation.is_none());
    assert!(key.next_due.is_some(), "rescheduled after completion");

    let second = f.engine.start("local/ci", manual()).await.unwrap();
    let waiting = settle(&f, &second.id).await;
    assert_eq!(waiting.state, RotationState::Overlap);
    assert_eq!(waiting.revoke_old_at, Some(ts("2026-11-23T11:00:00Z")));
    // The old key still works during the overlap.
    let local = f.engine.store().local_key(&old_id).unwrap().unwrap();
    assert!(local.revoked_at.is_none());
    // The sink already holds the new secret.
    let sink = f.engine.runtime().sinks["out"].clone();
    let held = sink
        .read_back(&target(&f, &waiting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held, waiting.new_key.as_ref().unwrap().secret_sha256);
    assert!(f.engine.store().has_secret(&second.id).unwrap());

    f.clock.advance(dur("1h"));
    f.engine.spawn(&second.id);
    let done = settle(&f, &second.id).await;
    assert_eq!(done.state, RotationState::Completed, "{done:?}");
    assert_eq!(done.old_revoked_at, Some(ts("2026-11-23T11:00:00Z")));
    assert!(
        f.engine
            .store()
            .local_key(&old_id)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        !f.engine.store().has_secret(&second.id).unwrap(),
        "secret wiped on completion"
    );
    let key = f.engine.store().key("local/ci").unwrap().unwrap();
    assert_eq!(key.current.unwrap().id, done.new_key.unwrap().id);
    // The first key's completion, the second rotation's "new key live"
    // (as the overlap began) and its old key's revocation (as it ended)
    // are queued for policy notify + key contacts.
    let msgs = f.engine.store().outbox().unwrap();
    let mut kinds: Vec<_> = msgs.iter().map(|m| format!("{:?}", m.kind)).collect();
    kinds.sort();
    assert_eq!(kinds, ["NewKeyLive", "OldKeyRevoked", "RotationCompleted"]);
    assert!(
        msgs.iter()
            .any(|m| m.id == format!("{}.revoked", second.id))
    );
    assert!(msgs.iter().all(|m| m.to
        == vec![
            "ops@example.com".to_string(),
            "owner@example.com".to_string()
        ]));
    assert!(msgs.iter().all(|m| m.state == DeliveryState::Queued));
    // The audit chain holds and names the events.
    assert!(f.engine.store().verify_audit_chain().unwrap() >= 6);
}

/// A 7-day overlap: key owners hear of the new key when it goes live, and
/// once more, of the revocation only, when the overlap ends.
#[tokio::test]
async fn a_week_of_overlap_mails_new_key_live_at_its_start_and_revoked_at_its_end() {
    let f = fixture(None);
    let mut cfg = (*f.engine.runtime().config).clone();
    cfg.policies[0].overlap = dur("7d");
    f.engine
        .set_runtime(Runtime::build(Arc::new(cfg), &f.engine.store()).unwrap());
    let first = f.engine.start("local/ci", manual()).await.unwrap();
    settle(&f, &first.id).await;
    let start = f.clock.now();
    let rot = f.engine.start("local/ci", manual()).await.unwrap();
    let waiting = settle(&f, &rot.id).await;
    assert_eq!(waiting.state, RotationState::Overlap);
    let new_id = waiting.new_key.as_ref().unwrap().id.clone();
    let about = |id: &str| -> Vec<keyrot_core::model::OutboxMessage> {
        let mut m: Vec<_> = f
            .engine
            .store()
            .outbox()
            .unwrap()
            .into_iter()
            .filter(|m| m.id.starts_with(id))
            .collect();
        m.sort_by_key(|m| m.created_at);
        m
    };
    // As the overlap starts: "new key live", in the sink, old key until T.
    let at_start = about(&rot.id);
    assert_eq!(at_start.len(), 1, "{at_start:#?}");
    let live = &at_start[0];
    assert_eq!(live.kind, keyrot_core::model::MessageKind::NewKeyLive);
    assert_eq!(live.created_at, start);
    assert_eq!(
        live.subject,
        "[keyrot] new key live for local/ci; old key ends 2026-11-30 10:00 UTC"
    );
    assert!(
        live.body.contains(&format!(
            "the new key {new_id} is live in\nsink(s) out and verified."
        )),
        "{}",
        live.body
    );

    // A moment before the end: nothing more.
    f.clock.advance(dur("7d") - dur("1s"));
    f.engine.spawn(&rot.id);
    assert_eq!(settle(&f, &rot.id).await.state, RotationState::Overlap);
    assert_eq!(about(&rot.id).len(), 1);

    // As the overlap ends: one message, the revocation, nothing repeated.
    f.clock.advance(dur("1s"));
    f.engine.spawn(&rot.id);
    let done = settle(&f, &rot.id).await;
    assert_eq!(done.state, RotationState::Completed, "{done:?}");
    let all = about(&rot.id);
    assert_eq!(all.len(), 2, "{all:#?}");
    let end = &all[1];
    assert_eq!(end.kind, keyrot_core::model::MessageKind::OldKeyRevoked);
    assert_eq!(end.created_at, start + dur("7d"));
    assert!(
        end.body
            .contains("at\n2026-11-30 10:00 UTC, after the overlap."),
        "{}",
        end.body
    );
    assert_ne!(live.subject, end.subject);
}

#[tokio::test]
async fn a_conflicting_start_is_refused_with_the_running_id() {
    let f = fixture(None);
    let first = f.engine.start("local/ci", manual()).await.unwrap();
    settle(&f, &first.id).await;
    let second = f.engine.start("local/ci", manual()).await.unwrap();
    settle(&f, &second.id).await; // waits in Overlap
    let err = f.engine.start("local/ci", manual()).await.unwrap_err();
    assert!(
        matches!(&err, Refusal::Conflict { rotation_id: Some(r), .. } if *r == second.id),
        "{err:?}"
    );
    let err = f.engine.start("local/nope", manual()).await.unwrap_err();
    assert!(matches!(err, Refusal::Unknown(_)), "{err:?}");
}

#[tokio::test]
async fn a_sink_that_keeps_failing_fails_the_rotation_and_abort_revokes_the_new_key() {
    let f = fixture(None);
    let first = f.engine.start("local/ci", manual()).await.unwrap();
    settle(&f, &first.id).await;
    let old_id = f
        .engine
        .store()
        .key("local/ci")
        .unwrap()
        .unwrap()
        .current
        .unwrap()
        .id;
    // Point the sink under a regular file: every write fails.
    std::fs::write(f.out.join("blocker"), b"x").unwrap();
    let mut cfg = (*f.engine.runtime().config).clone();
    let SinkKind::File(s) = &mut cfg.sinks[0].kind else {
        panic!("not a file sink")
    };
    s.path = f.out.join("blocker/{name}.json").display().to_string();
    f.engine
        .set_runtime(Runtime::build(Arc::new(cfg), &f.engine.store()).unwrap());

    let rot = f.engine.start("local/ci", manual()).await.unwrap();
    let mut rec = settle(&f, &rot.id).await;
    // Retries within the budget, each after its backoff.
    for _ in 0..5 {
        if rec.state == RotationState::Failed {
            break;
        }
        assert!(rec.retry_at.is_some(), "{rec:?}");
        f.clock.advance(dur("1s"));
        f.engine.spawn(&rot.id);
        rec = settle(&f, &rot.id).await;
    }
    assert_eq!(rec.state, RotationState::Failed, "{rec:?}");
    assert_eq!(rec.failed_in, Some(RotationState::Distributing));
    let error = rec.last_error.as_deref().unwrap();
    assert!(error.contains("blocker"), "{error}");
    // The sink is named once: the file sink names itself already.
    assert!(error.starts_with("sink \"out\": "), "{error}");
    assert_eq!(error.matches("\"out\"").count(), 1, "{error}");
    assert!(!error.contains("sink out:"), "{error}");
    // Old key untouched, failure mail queued.
    assert!(
        f.engine
            .store()
            .local_key(&old_id)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        f.engine
            .store()
            .outbox()
            .unwrap()
            .iter()
            .any(|m| m.subject.contains("FAILED"))
    );

    let new_id = rec.new_key.as_ref().unwrap().id.clone();
    let aborted = f.engine.abort(&rot.id).await.unwrap();
    assert_eq!(aborted.state, RotationState::Aborted);
    assert!(
        f.engine
            .store()
            .local_key(&new_id)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        f.engine
            .store()
            .local_key(&old_id)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(!f.engine.store().has_secret(&rot.id).unwrap());
    let key = f.engine.store().key("local/ci").unwrap().unwrap();
    assert!(key.active_rotation.is_none());
    assert_eq!(key.current.unwrap().id, old_id);
}

#[tokio::test]
async fn resuming_from_issuing_revokes_the_key_an_interrupted_attempt_made() {
    let f = fixture(None);
    let first = f.engine.start("local/ci", manual()).await.unwrap();
    settle(&f, &first.id).await;
    // A rotation recorded in Issuing whose provider call did happen: the
    // provider holds a key tagged with it whose secret keyrot never saw.
    let rt = f.engine.runtime();
    let key = f.engine.store().key("local/ci").unwrap().unwrap();
    let mut rec = super::new_record(&rt, &key, manual(), f.engine.now());
    rec.transition(RotationState::Issuing, f.engine.now(), "issuing");
    let orphan = rt.providers["local"]
        .issue(&keyrot_peers::provider::IssueRequest {
            name: "ci".into(),
            scopes: vec![],
            expires_at: None,
            tag: rec.id.clone(),
            replaces: None,
            resumed: false,
            created_by: "keyrot".into(),
            now: f.engine.now(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut key = key;
    key.active_rotation = Some(rec.id.clone());
    f.engine
        .store()
        .write(|tx| {
            tx.put_rotation(&rec)?;
            tx.put_key(&key)
        })
        .unwrap();

    f.engine.resume_all().await.unwrap();
    let waiting = settle(&f, &rec.id).await;
    assert_eq!(waiting.state, RotationState::Overlap, "{waiting:?}");
    assert!(
        f.engine
            .store()
            .local_key(&orphan.info.id)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert_ne!(waiting.new_key.as_ref().unwrap().id, orphan.info.id);
    let issued_note = &waiting
        .history
        .iter()
        .find(|t| t.to == RotationState::Issued)
        .unwrap()
        .note;
    assert!(issued_note.contains(&orphan.info.id), "{issued_note}");
    // The sink holds the secret of the key keyrot kept, not the orphan's.
    let sink = f.engine.runtime().sinks["out"].clone();
    let held = sink
        .read_back(&target(&f, &waiting))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(held, sha256_hex(b""));
    assert_eq!(held, waiting.new_key.unwrap().secret_sha256);
}

#[tokio::test]
async fn a_revoke_without_an_old_key_id_fails_and_never_calls_the_provider_with_an_empty_id() {
    let f = fixture(None);
    let first = settle(&f, &f.engine.start("local/ci", manual()).await.unwrap().id).await;
    let live = first.new_key.unwrap().id;
    let second = f.engine.start("local/ci", manual()).await.unwrap();
    let mut rec = settle(&f, &second.id).await;
    assert_eq!(rec.state, RotationState::Overlap);
    // A record whose invariant broke: the overlap is over, but the old
    // key's id is gone.
    rec.old_key_id = None;
    rec.revoke_old_at = Some(f.engine.now());
    f.engine.store().write(|tx| tx.put_rotation(&rec)).unwrap();
    f.engine.resume_all().await.unwrap();
    let failed = settle(&f, &rec.id).await;
    assert_eq!(failed.state, RotationState::Failed, "{failed:?}");
    let why = failed.last_error.unwrap_or_default();
    assert!(why.contains("has no old key id"), "{why}");
    // The key that was live before stays live.
    let before = f.engine.store().local_key(&live).unwrap().unwrap();
    assert!(before.revoked_at.is_none());
}
