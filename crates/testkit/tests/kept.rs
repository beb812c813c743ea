//! `keep_current_secret` in process, on redb and on PostgreSQL: each
//! completed rotation keeps its sealed secret as the slot's current one
//! and wipes the previous one in the same commit, so one secret is kept at
//! any time; `Engine::push` writes it again to the sink; a slot whose
//! policy no longer keeps secrets loses its kept one at the next sync.

use std::sync::Arc;

use secrecy::ExposeSecret as _;

use keyrot_core::model::RotationState;
use keyrot_engine::rotation::Runtime;
use keyrot_engine::scheduler::sync_provider;
use keyrot_testkit::{Backend, SLOT, World};

async fn kept(backend: Backend) {
    let w = World::tweaked_on(backend, |cfg| {
        for p in &mut cfg.policies {
            p.keep_current_secret = true;
        }
    });
    w.rotate().await.unwrap();
    let first = w.finish().await.remove(0);
    assert_eq!(first.state, RotationState::Completed);
    let store = w.store();
    let key = store.key(SLOT).unwrap().unwrap();
    assert_eq!(key.kept_secret.as_deref(), Some(first.id.as_str()));
    assert!(store.secret(&first.id).unwrap().is_some());

    w.rotate().await.unwrap();
    let second = w.finish().await.remove(0);
    assert_ne!(second.id, first.id);
    let key = store.key(SLOT).unwrap().unwrap();
    assert_eq!(key.kept_secret.as_deref(), Some(second.id.as_str()));
    assert!(store.secret(&first.id).unwrap().is_none(), "previous wiped");
    let secret = store.secret(&second.id).unwrap().unwrap();
    assert_eq!(
        keyrot_core::crypto::sha256_hex(secret.expose_secret().as_bytes()),
        second.new_key.as_ref().unwrap().secret_sha256
    );

    let report = w.engine().push(SLOT, None, "tester").await.unwrap();
    assert_eq!(report.sinks.len(), 1);
    assert!(report.sinks[0].error.is_none(), "{report:?}");
    assert_eq!(report.sinks[0].read_back, "matched");
    let audit = store.audit(0, 1000).unwrap();
    let push = audit
        .iter()
        .find(|e| e.event == "sink.push")
        .expect("audited");
    assert_eq!(push.actor.as_deref(), Some("tester"));
    assert!(!push.detail.contains(secret.expose_secret()));
}

async fn unkept_at_sync(backend: Backend) {
    let w = World::tweaked_on(backend, |cfg| {
        for p in &mut cfg.policies {
            p.keep_current_secret = true;
        }
    });
    w.rotate().await.unwrap();
    let first = w.finish().await.remove(0);
    // The policy stops keeping secrets (a reload); the next sync wipes it.
    let store = w.store();
    let mut cfg = (*w.engine().runtime().config).clone();
    for p in &mut cfg.policies {
        p.keep_current_secret = false;
    }
    let mut rt = Runtime::build(Arc::new(cfg), &store).unwrap();
    rt.inherit_limits(&w.engine().runtime());
    w.engine().set_runtime(rt);
    assert!(store.secret(&first.id).unwrap().is_some());
    sync_provider(w.engine(), "local").await.unwrap();
    assert!(store.key(SLOT).unwrap().unwrap().kept_secret.is_none());
    assert!(store.secret(&first.id).unwrap().is_none());
    let err = w.engine().push(SLOT, None, "tester").await.unwrap_err();
    assert!(err.to_string().contains("is not kept"), "{err}");
}

#[tokio::test]
async fn redb() {
    kept(Backend::Redb).await;
    unkept_at_sync(Backend::Redb).await;
}

#[tokio::test]
async fn postgres() {
    kept(Backend::Postgres).await;
    unkept_at_sync(Backend::Postgres).await;
}
