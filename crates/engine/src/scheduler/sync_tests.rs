//! The sync loop against a provider whose list fails: the failed sync is
//! tried again with the daemon's backoff (Retry-After honoured), long before
//! the next `sync_schedule` occurrence, then the loop sleeps; shutdown ends
//! it. Real time with short delays, as in the state machine's tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;

use super::*;
use crate::rotation::Runtime;
use keyrot_core::clock::SystemClock;
use keyrot_core::crypto::MasterKey;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;
use keyrot_core::store::Store;
use keyrot_peers::provider::{Capabilities, IssueRequest, IssuedKey, Provider};

/// A provider whose first `fail` lists fail (transient, with `retry_after`)
/// and whose later lists give one key named `ci`.
struct FlakyList {
    /// Lists still to fail.
    fail: AtomicU32,
    /// Lists asked for.
    calls: AtomicU32,
    /// The Retry-After each failure carries.
    retry_after: Option<SignedDuration>,
}

#[async_trait]
impl Provider for FlakyList {
    fn name(&self) -> &str {
        "p"
    }
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: true,
            ..Capabilities::default()
        }
    }
    async fn list(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let e = CallError::transient("GET /keys: 503 Service Unavailable");
            return Err(match self.retry_after {
                Some(after) => e.with_retry_after(after),
                None => e,
            });
        }
        Ok(vec![KeyInfo {
            id: "k-1".into(),
            name: "ci".into(),
            scopes: vec!["read".into()],
            created_by: None,
            created_at: Some(now),
            expires_at: None,
            last_used_at: None,
            tags: Default::default(),
        }])
    }
    async fn issue(&self, _req: &IssueRequest) -> Result<IssuedKey, CallError> {
        Err(CallError::permanent("not used"))
    }
    async fn find_tagged(&self, _t: &str, _n: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        Ok(Vec::new())
    }
    async fn verify(&self, _i: &str, _s: &SecretString, _n: Timestamp) -> Result<(), CallError> {
        Ok(())
    }
    async fn revoke(&self, _id: &str, _now: Timestamp) -> Result<(), CallError> {
        Ok(())
    }
}

/// An engine whose provider `p` is `provider`, scheduled to sync in 2099
/// only, retrying after 50 ms doubling to 100 ms.
fn engine(
    dir: &std::path::Path,
    provider: Arc<FlakyList>,
    stop: &CancellationToken,
) -> Arc<Engine> {
    let d = dir.display();
    let text = format!(
        "[daemon]\nsync_schedule = \"0 0 0 1 1 * 2099\"\n\
         [store]\npath = \"{d}/state.redb\"\nmaster_key_file = \"{d}/master.key\"\n\
         [[provider]]\nname = \"p\"\ntype = \"local\"\n\
         [[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"{d}/{{name}}.json\"\n\
         [[policy]]\nname = \"std\"\nauto_rotate = false\n\
         [[key]]\nname = \"ci\"\nprovider = \"p\"\npolicy = \"std\"\nsinks = [\"out\"]\n"
    );
    let mut cfg = keyrot_config::load_str(&dir.join("keyrot.toml"), &text).unwrap();
    cfg.daemon.retry.initial = SignedDuration::from_millis(50);
    cfg.daemon.retry.max = SignedDuration::from_millis(100);
    let store = Arc::new(Store::open(&dir.join("state.redb"), MasterKey::generate()).unwrap());
    let mut rt = Runtime::build(Arc::new(cfg), &store).unwrap();
    rt.providers.insert("p".into(), provider);
    Engine::new(
        store,
        rt,
        Arc::new(SystemClock),
        Wake::new(),
        stop.child_token(),
        tokio_util::task::TaskTracker::new(),
    )
}

fn flaky(fail: u32, retry_after: Option<SignedDuration>) -> Arc<FlakyList> {
    Arc::new(FlakyList {
        fail: AtomicU32::new(fail),
        calls: AtomicU32::new(0),
        retry_after,
    })
}

/// Waits up to 10 s for slot `p/ci` to be bound to a key.
async fn bound(engine: &Arc<Engine>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let rec = engine.store().key("p/ci").unwrap();
        if rec.is_some_and(|r| r.current.is_some()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_failed_sync_is_retried_after_its_retry_after_not_at_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let p = flaky(1, Some(SignedDuration::from_millis(400)));
    let engine = engine(dir.path(), Arc::clone(&p), &stop);
    let (wake, retries) = (Wake::new(), SyncRetries::default());

    // The first sync (the daemon's at start) fails...
    let started = Instant::now();
    sync_all(&engine, &wake, &retries).await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    assert!(engine.store().key("p/ci").unwrap().is_none());
    let at = retries.next().expect("a retry is scheduled");
    assert!(
        at >= engine.now() + SignedDuration::from_millis(300),
        "{at}"
    );

    // ...and the loop, due to sync next in 2099, tries again once the
    // provider's Retry-After (longer than the backoff) has passed.
    let task = tokio::spawn(sync_loop(
        Arc::clone(&engine),
        wake,
        retries.clone(),
        stop.clone(),
    ));
    assert!(bound(&engine).await, "the retry never bound the slot");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    // The slot is bound in the sync's commit; the retry is cleared just
    // after it: wait for that rather than race it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while retries.next().is_some() && Instant::now() < deadline {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(retries.next(), None);

    // Synced: no more wake-ups until the schedule says so.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);

    // Shutdown ends the loop.
    stop.cancel();
    drop(engine);
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}

#[tokio::test]
async fn a_sync_failing_in_the_loop_backs_off_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    // Fails 4 times without a Retry-After: 50 ms doubling to 100 ms,
    // jittered down to half, so at least 25+50+50+50 ms in all.
    let p = flaky(4, None);
    let engine = engine(dir.path(), Arc::clone(&p), &stop);
    let (wake, retries) = (Wake::new(), SyncRetries::default());
    let started = Instant::now();
    let task = tokio::spawn(sync_loop(
        Arc::clone(&engine),
        wake.clone(),
        retries.clone(),
        stop.clone(),
    ));
    // A failure recorded elsewhere (a reload's sync) wakes the loop.
    sync_all(&engine, &wake, &retries).await;
    assert!(bound(&engine).await, "never synced");
    assert!(started.elapsed() >= Duration::from_millis(175));
    assert_eq!(p.calls.load(Ordering::SeqCst), 5);
    stop.cancel();
    drop(engine);
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}
