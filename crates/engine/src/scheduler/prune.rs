//! The daily history prune: once a day, at [`PRUNE_AT`] (UTC), the history
//! older than `[store] history_retention` is deleted from the store
//! ([`Store::prune_history`]: finished rotations, revoked local keys, sent
//! and dead messages; never an unfinished rotation or a key's latest
//! rotations), and the audit entries older than `[store] audit_retention`
//! from the start of the chain ([`Store::prune_audit`]), in transactions
//! of [`PRUNE_BATCH`] rows between which the state machine's writes go on.
//!
//! The loop sleeps until the next occurrence; it never polls. An expiry
//! notice that is still due, and the messages of a rotation still running,
//! are kept whatever their age: deleting them would queue them again.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use super::notices::standing;
use crate::rotation::Engine;
use keyrot_config::Config;
use keyrot_core::policy::Schedule;
use keyrot_core::store::{PRUNE_BATCH, PruneReport, Store, StoreError};

/// When the prune runs: 04:05 UTC every day (6-field cron, seconds first).
pub const PRUNE_AT: &str = "0 5 4 * * *";

/// Runs the daily prune until `stop`.
pub(super) async fn run(engine: Arc<Engine>, stop: CancellationToken) {
    let Ok(schedule) = Schedule::parse(PRUNE_AT) else {
        return;
    };
    loop {
        let Some(next) = schedule.next_after(engine.now()) else {
            return;
        };
        let wait = std::time::Duration::try_from(
            next.duration_since(engine.now()).max(SignedDuration::ZERO),
        )
        .unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        tokio::select! {
            r = prune(&engine, stop.clone()) => match r {
                Ok(Some(r)) if !r.is_empty() => tracing::info!(
                    rotations = r.rotations,
                    local_keys = r.local_keys,
                    messages = r.messages,
                    audit_entries = r.audit_entries,
                    transactions = r.transactions,
                    "history older than the retention pruned"
                ),
                Ok(_) => tracing::debug!("history prune: nothing to delete"),
                Err(e) => tracing::error!(error = %e, "history prune failed; it runs again tomorrow"),
            },
            // The batch in progress commits; no other starts (`prune`
            // checks `stop` between batches).
            _ = stop.cancelled() => return,
        }
    }
}

/// Prunes the history and the audit entries older than their configured
/// retentions, as of now; `None` when both are `"forever"`. Cancelling
/// `halt` ends it between batches.
pub async fn prune(
    engine: &Arc<Engine>,
    halt: CancellationToken,
) -> Result<Option<PruneReport>, String> {
    let cfg = Arc::clone(&engine.runtime().config);
    let (history, audit) = (cfg.store.history_retention, cfg.store.audit_retention);
    if history.is_none() && audit.is_none() {
        return Ok(None);
    }
    let now = engine.now();
    let report = engine
        .db(move |s| {
            let stop = || halt.is_cancelled();
            let mut report = match history {
                Some(retention) => {
                    let keep = messages_to_keep(s, &cfg, now)?;
                    s.prune_history(now - retention, &keep, PRUNE_BATCH, &stop)?
                }
                None => PruneReport::default(),
            };
            if let Some(retention) = audit {
                report.audit_entries = s.prune_audit(now - retention, now, PRUNE_BATCH, &stop)?;
            }
            Ok::<_, StoreError>(report)
        })
        .await
        .map_err(|e| e.to_string())?;
    keyrot_core::memory::release_free_memory();
    Ok(Some(report))
}

/// The outbox ids a prune must keep whatever their age: every expiry
/// notice due now (the ladder would queue a deleted one again, see
/// [`super::notices`]) and every message of a rotation still active
/// (its ids start with the rotation's).
fn messages_to_keep(
    store: &Store,
    cfg: &Config,
    now: Timestamp,
) -> Result<HashSet<String>, StoreError> {
    let mut keep = HashSet::new();
    let mut active = Vec::new();
    for key in store.keys()? {
        let st = standing(store, cfg, &key)?;
        if let Some(r) = &st.rotation {
            active.push(r.id.clone());
        }
        if let Some((_, id)) = st.watched.and_then(|w| w.due(&key.slot, now)) {
            keep.insert(id);
        }
    }
    if !active.is_empty() {
        for m in store.outbox()? {
            if active.iter().any(|id| m.id.starts_with(id.as_str())) {
                keep.insert(m.id);
            }
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::notify::notice::notice_id;
    use keyrot_core::crypto::MasterKey;
    use keyrot_core::model::{KeyInfo, KeyRecord, OutboxMessage};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sent(id: &str, queued: &str) -> OutboxMessage {
        serde_json::from_value(serde_json::json!({
            "id": id, "kind": "expiry_warning", "to": ["o@example.com"], "subject": "s",
            "body": "b", "state": "sent", "attempts": 1, "next_attempt_at": queued,
            "last_error": null, "created_at": queued,
        }))
        .unwrap()
    }

    #[test]
    fn an_expiry_notice_still_due_is_kept_however_old() {
        let cfg = keyrot_config::load_str(
            Path::new("/etc/keyrot/keyrot.toml"),
            r#"
[[provider]]
name = "p"
type = "local"

[[sink]]
name = "out"
type = "file"
path = "/tmp/{name}"

[[policy]]
name = "manual"
auto_rotate = false
notify_before_expiry = ["30d"]

[[key]]
name = "k"
provider = "p"
policy = "manual"
sinks = ["out"]
"#,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&dir.path().join("s.redb"), MasterKey::from_bytes([7; 32])).unwrap();
        // A key that expired long ago and is still current: its last rung
        // stays due, so its notice must never be queued again.
        let key: KeyRecord = serde_json::from_value(serde_json::json!({
            "slot": "p/k", "provider": "p", "name": "k", "policy": "manual",
            "next_due": null, "active_rotation": null,
            "current": KeyInfo {
                id: "key-1".into(),
                name: "k".into(),
                scopes: vec![],
                created_by: None,
                created_at: Some(ts("2024-01-01T00:00:00Z")),
                expires_at: Some(ts("2025-01-01T00:00:00Z")),
                last_used_at: None,
                tags: Default::default(),
            },
        }))
        .unwrap();
        let now = ts("2026-06-01T00:00:00Z");
        let due = notice_id("p/k", "key-1", SignedDuration::from_hours(30 * 24));
        store
            .write(|tx| {
                tx.put_key(&key)?;
                tx.put_message(&sent(&due, "2024-12-02T00:00:00Z"))?;
                tx.put_message(&sent("other", "2024-12-02T00:00:00Z"))
            })
            .unwrap();
        let keep = messages_to_keep(&store, &cfg, now).unwrap();
        assert_eq!(keep, HashSet::from([due.clone()]));
        let before = now - SignedDuration::from_hours(24 * 30);
        let report = store
            .prune_history(before, &keep, PRUNE_BATCH, &|| false)
            .unwrap();
        assert_eq!(report.messages, 1);
        let left: Vec<String> = store.outbox().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(left, [due]);
    }

    /// An engine over a fresh store with `store_section` as `[store]`, its
    /// clock at `now`.
    fn engine(dir: &Path, store_section: &str, now: &str) -> Arc<Engine> {
        let text = format!("[store]\npath = \"s.redb\"\n{store_section}\n");
        let cfg = keyrot_config::load_str(&dir.join("keyrot.toml"), &text).unwrap();
        let store = Store::open(&cfg.store.path, MasterKey::generate()).unwrap();
        engine_over(cfg, store, now)
    }

    /// An engine with configuration `cfg` over `store`, its clock at `now`.
    fn engine_over(cfg: Config, store: Store, now: &str) -> Arc<Engine> {
        let (cfg, store) = (Arc::new(cfg), Arc::new(store));
        let rt = crate::rotation::Runtime::build(Arc::clone(&cfg), &store).unwrap();
        let clock = Arc::new(keyrot_core::clock::ManualClock::new(ts(now)));
        Engine::new(
            store,
            rt,
            clock,
            keyrot_core::wake::Wake::new(),
            CancellationToken::new(),
            tokio_util::task::TaskTracker::new(),
        )
    }

    #[tokio::test]
    async fn the_daily_prune_applies_each_retention() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(
            dir.path(),
            "history_retention = \"forever\"\naudit_retention = \"30d\"",
            "2026-06-01T00:00:00Z",
        );
        e.store()
            .write(|tx| {
                for day in ["2026-01-01", "2026-02-01", "2026-05-20"] {
                    tx.audit(
                        ts(&format!("{day}T00:00:00Z")),
                        "test.event",
                        None,
                        None,
                        None,
                        day,
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let halt = CancellationToken::new();
        let report = prune(&e, halt.clone()).await.unwrap().unwrap();
        // The two entries older than 30 days go; history is kept forever.
        assert_eq!(report.audit_entries, 2);
        assert_eq!(report.rotations + report.local_keys + report.messages, 0);
        let events: Vec<String> = e
            .store()
            .audit(0, 10)
            .unwrap()
            .into_iter()
            .map(|a| a.event)
            .collect();
        assert_eq!(events, ["test.event", "audit.pruned"]);
        assert_eq!(e.store().verify_audit_chain().unwrap(), 2);
        // Both forever: nothing to do at all.
        let dir = tempfile::tempdir().unwrap();
        let e = engine(
            dir.path(),
            "history_retention = \"forever\"\naudit_retention = \"forever\"",
            "2026-06-01T00:00:00Z",
        );
        assert_eq!(prune(&e, halt).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_daily_prune_runs_on_postgres_too() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[store]\nbackend = \"postgres\"\nurl = { credential = \"postgres-url\" }\n\
                    history_retention = \"30d\"\n";
        let cfg = keyrot_config::load_str(&dir.path().join("keyrot.toml"), text).unwrap();
        let url = keyrot_core::pgserver::PgServer::shared()
            .fresh_database()
            .unwrap();
        let store = Store::open_postgres(
            &url.into(),
            &keyrot_core::store::PgOptions::default(),
            Some(MasterKey::generate()),
        )
        .unwrap();
        // The leader prunes: this instance holds the lease.
        let hour = std::time::Duration::from_secs(3600);
        store
            .acquire_lease("test", hour, hour / 2)
            .unwrap()
            .unwrap();
        let e = engine_over(cfg, store, "2026-06-01T00:00:00Z");
        e.store()
            .write(|tx| {
                tx.put_message(&sent("old", "2026-01-01T00:00:00Z"))?;
                tx.put_message(&sent("recent", "2026-05-20T00:00:00Z"))?;
                for day in ["2026-01-01", "2026-02-01", "2026-05-20"] {
                    let at = ts(&format!("{day}T00:00:00Z"));
                    tx.audit(at, "test.event", None, None, None, day)?;
                }
                Ok(())
            })
            .unwrap();
        let report = prune(&e, CancellationToken::new()).await.unwrap().unwrap();
        assert_eq!((report.messages, report.audit_entries), (1, 2));
        let left: Vec<String> = e
            .store()
            .outbox()
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(left, ["recent"]);
        assert_eq!(e.store().verify_audit_chain().unwrap(), 2);
    }
}
