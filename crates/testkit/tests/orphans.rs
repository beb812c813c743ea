//! The orphan sweep in process, on redb and on PostgreSQL: the `local`
//! provider holds the slot's key, a key tagged by an interrupted issue
//! (its rotation still in Issuing: not an orphan) and a key tagged by a
//! rotation the store does not know (as after restoring an old backup:
//! the orphan). Two syncs record it and queue one alert; it is not
//! revoked until `orphans::revoke`, which revokes and audits it.

use jiff::SignedDuration;

use keyrot_core::model::{MessageKind, RotationState};
use keyrot_core::store::LocalKey;
use keyrot_engine::scheduler::{orphans, sync_provider};
use keyrot_testkit::{Backend, SLOT, World};

/// The local provider's key `id` as the store has it.
fn held(w: &World, id: &str) -> LocalKey {
    let id = id.to_string();
    w.store()
        .write(move |tx| tx.local_get(&id))
        .unwrap()
        .unwrap()
}

fn local_key(id: &str, name: &str, tag: &str, w: &World) -> LocalKey {
    LocalKey {
        id: id.into(),
        name: name.into(),
        scopes: vec!["read:all".into()],
        created_by: "someone".into(),
        created_at: w.now(),
        expires_at: Some(w.now() + SignedDuration::from_hours(24 * 30)),
        secret_sha256: "0".repeat(64),
        tag: Some(tag.into()),
        revoked_at: None,
        last_used_at: None,
    }
}

async fn sweep(backend: Backend) {
    let w = World::on(backend);
    w.rotate().await.unwrap();
    let done = w.finish().await;
    assert_eq!(done[0].state, RotationState::Completed);
    let store = w.store();

    // An issue in flight: a rotation in Issuing whose key the provider has.
    let mut inflight = done[0].clone();
    inflight.id = "0190ffff-0000-7000-8000-00000000aaaa".into();
    inflight.state = RotationState::Issuing;
    inflight.new_key = None;
    inflight.old_key_id = store.key(SLOT).unwrap().unwrap().current.map(|k| k.id);
    let planted = local_key("lk_inflight", "ci", &inflight.id, &w);
    let orphan = local_key(
        "lk_restored",
        "ci-old",
        "0190aaaa-0000-7000-8000-000000000001",
        &w,
    );
    store
        .write(|tx| {
            let mut k = tx.key(SLOT)?.unwrap();
            k.active_rotation = Some(inflight.id.clone());
            tx.put_rotation(&inflight)?;
            tx.put_key(&k)?;
            tx.local_put(&planted)?;
            tx.local_put(&orphan)
        })
        .unwrap();

    for _ in 0..2 {
        sync_provider(w.engine(), "local").await.unwrap();
        let found = store.orphans().unwrap();
        let ids: Vec<&str> = found.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["lk_restored"], "{found:#?}");
        assert_eq!(found[0].rotation, "0190aaaa-0000-7000-8000-000000000001");
    }
    let alerts = store
        .outbox()
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::OrphanKey)
        .count();
    assert_eq!(alerts, 1, "one alert across two syncs");
    assert!(held(&w, "lk_restored").revoked_at.is_none());

    let out = orphans::revoke(w.engine(), Some("local"), "tester", false)
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].revoked, "{out:?}");
    assert!(held(&w, "lk_restored").revoked_at.is_some());
    assert!(held(&w, "lk_inflight").revoked_at.is_none());
    assert!(store.orphans().unwrap().is_empty());
    let audit = store.audit(0, 1000).unwrap();
    let entry = audit
        .iter()
        .find(|e| e.event == "orphan.revoked")
        .expect("audited");
    assert_eq!(entry.actor.as_deref(), Some("tester"));
    assert!(entry.detail.contains("lk_restored"), "{}", entry.detail);
}

#[tokio::test]
async fn redb() {
    sweep(Backend::Redb).await;
}

#[tokio::test]
async fn postgres() {
    sweep(Backend::Postgres).await;
}
