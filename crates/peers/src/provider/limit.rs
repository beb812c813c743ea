//! `[[provider]] requests_per_second`: a token bucket per provider, shared
//! by every runner and sync of that provider, and the [`Limited`] wrapper
//! that applies it to every call through the [`Provider`] trait, so no
//! provider carries code of its own for it.
//!
//! The limit counts HTTP requests, not trait calls: one `verify` of an
//! AppRole secret-id is four requests. The wrapper takes one token before
//! it delegates (so a call that sends nothing over HTTP, an `exec` program
//! or the `local` store, still counts as one request) and runs the call
//! inside a task-local scope (the bucket and the scope are the HTTP
//! layer's, [`crate::http::limit`], since every HTTP request is paced
//! there). Outside a limited call (sinks, a provider without
//! `requests_per_second`) requests go at once. A burst larger than one
//! would only lower the latency of an occasional lone call, which a
//! background rotation does not need.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use super::{Capabilities, Identity, Interrupted, IssueRequest, IssuedKey, Provider};
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

pub use crate::http::limit::{RateLimit, before_request, within};

/// A provider whose calls wait for tokens of a shared [`RateLimit`].
pub struct Limited {
    /// The provider itself.
    inner: Arc<dyn Provider>,
    /// Its bucket, shared by every runner (and kept across reloads).
    limit: Arc<RateLimit>,
}

impl Limited {
    /// `inner` limited by `limit`.
    pub fn new(inner: Arc<dyn Provider>, limit: Arc<RateLimit>) -> Limited {
        Limited { inner, limit }
    }

    /// Runs `call` once a token is free, inside the limit's scope.
    async fn run<T>(&self, call: impl Future<Output = T>) -> T {
        within(&self.limit, call).await
    }
}

#[async_trait]
impl Provider for Limited {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn list(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        self.run(self.inner.list(now)).await
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        self.run(self.inner.issue(req)).await
    }

    async fn find_tagged(&self, tag: &str, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        self.run(self.inner.find_tagged(tag, now)).await
    }

    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<(), CallError> {
        self.run(self.inner.verify(id, secret, now)).await
    }

    async fn revoke(&self, id: &str, now: Timestamp) -> Result<(), CallError> {
        self.run(self.inner.revoke(id, now)).await
    }

    async fn last_used(&self, id: &str, now: Timestamp) -> Result<super::LastUse, CallError> {
        self.run(self.inner.last_used(id, now)).await
    }

    async fn deactivate(&self, id: &str, now: Timestamp) -> Result<(), CallError> {
        self.run(self.inner.deactivate(id, now)).await
    }

    fn lists_tags(&self) -> bool {
        self.inner.lists_tags()
    }

    async fn prove_identity(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<Identity, CallError> {
        self.run(self.inner.prove_identity(id, secret, now)).await
    }

    async fn find_interrupted(
        &self,
        req: &IssueRequest,
        since: Timestamp,
        known: &std::collections::HashSet<String>,
    ) -> Result<Interrupted, CallError> {
        self.run(self.inner.find_interrupted(req, since, known))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn ms(start: Instant, at: Instant) -> u128 {
        at.duration_since(start).as_millis()
    }

    #[test]
    fn slots_are_spaced_one_interval_apart_and_do_not_pile_up() {
        let start = Instant::now();
        let l = RateLimit::new(4.0);
        // Five at once: 0, 250, 500, 750, 1000 ms.
        let slots: Vec<u128> = (0..5).map(|_| ms(start, l.reserve(start))).collect();
        assert_eq!(slots, [0, 250, 500, 750, 1000]);
        // Asked later than the next free slot: at once, and the one after
        // follows one interval later.
        let late = start + Duration::from_secs(10);
        assert_eq!(ms(start, l.reserve(late)), 10_000);
        assert_eq!(ms(start, l.reserve(late)), 10_250);
        // An idle second saves no tokens (burst 1).
        let idle = start + Duration::from_secs(20);
        assert_eq!(ms(start, l.reserve(idle)), 20_000);
        assert_eq!(ms(start, l.reserve(idle)), 20_250);
        assert_eq!(l.per_second(), 4.0);
        // A fraction: one request every two seconds.
        let slow = RateLimit::new(0.5);
        assert_eq!(ms(start, slow.reserve(start)), 0);
        assert_eq!(ms(start, slow.reserve(start)), 2000);
        // The slowest rate the config takes.
        let day = RateLimit::new(1.0 / 86_400.0);
        day.reserve(start);
        assert_eq!(day.reserve(start).duration_since(start).as_secs(), 86_400);
    }

    /// A provider whose `issue` sends `requests` HTTP requests and whose
    /// other calls send none. With a `url` they are real requests through
    /// [`crate::http::send`] (as every HTTP provider sends them); without,
    /// it only calls the hook that function calls.
    #[derive(Default)]
    struct Fake {
        requests: usize,
        url: Option<String>,
    }

    #[async_trait]
    impl Provider for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        async fn list(&self, _now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
            Ok(Vec::new())
        }
        async fn issue(&self, _req: &IssueRequest) -> Result<IssuedKey, CallError> {
            let timeout = jiff::SignedDuration::from_secs(5);
            let client = crate::http::client("fake", timeout, None)?;
            for _ in 0..self.requests {
                match &self.url {
                    Some(url) => {
                        let get = client.get(url);
                        let answer = crate::http::send(
                            "fake",
                            "get",
                            crate::http::PeerKind::HttpProvider,
                            timeout,
                            get,
                        )
                        .await?;
                        assert!(answer.status.is_success());
                    }
                    None => before_request().await,
                }
            }
            Err(CallError::permanent("fake: not a real issue"))
        }
        async fn find_tagged(&self, _t: &str, _n: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
            Ok(Vec::new())
        }
        async fn verify(
            &self,
            _i: &str,
            _s: &SecretString,
            _n: Timestamp,
        ) -> Result<(), CallError> {
            Ok(())
        }
        async fn revoke(&self, _id: &str, _now: Timestamp) -> Result<(), CallError> {
            Ok(())
        }
    }

    fn request() -> IssueRequest {
        IssueRequest {
            name: "k".into(),
            scopes: Vec::new(),
            expires_at: None,
            tag: "t".into(),
            replaces: None,
            resumed: false,
            created_by: "keyrot".into(),
            now: Timestamp::UNIX_EPOCH,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn every_request_of_a_limited_call_takes_a_token() {
        // Fast enough that the test does not wait; `taken` counts.
        let limit = Arc::new(RateLimit::new(100_000.0));
        let three = Limited::new(
            Arc::new(Fake {
                requests: 3,
                ..Fake::default()
            }),
            Arc::clone(&limit),
        );
        // Three requests: the token taken before the call, then two more.
        let _ = three.issue(&request()).await;
        assert_eq!(limit.taken(), 3);
        // A call that sends nothing still takes one token.
        three.revoke("k/1", Timestamp::UNIX_EPOCH).await.unwrap();
        assert_eq!(limit.taken(), 4);
        // Outside a limited call the hook takes nothing, and the same
        // provider unwrapped is not limited at all.
        before_request().await;
        let _ = Fake {
            requests: 3,
            ..Fake::default()
        }
        .issue(&request())
        .await;
        assert_eq!(limit.taken(), 4);
        // Capabilities and names are not requests.
        assert_eq!(three.name(), "fake");
        assert_eq!(three.kind(), "fake");
        assert_eq!(three.capabilities(), Capabilities::default());
        assert_eq!(limit.taken(), 4);
    }

    #[tokio::test]
    async fn runners_of_one_provider_share_its_bucket() {
        let limit = Arc::new(RateLimit::new(100_000.0));
        let one = Arc::new(Limited::new(
            Arc::new(Fake {
                requests: 2,
                ..Fake::default()
            }),
            Arc::clone(&limit),
        ));
        // Eight concurrent runners, each an issue of two requests and a
        // revoke: 24 tokens from the one bucket.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let p = Arc::clone(&one);
            tasks.push(tokio::spawn(async move {
                let _ = p.issue(&request()).await;
                p.revoke(&format!("k/{i}"), Timestamp::UNIX_EPOCH).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(limit.taken(), 24);
    }

    /// A loopback server answering 200 to anything, and the number of
    /// requests it has seen.
    async fn counting_server() -> (String, Arc<AtomicU64>) {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    #[tokio::test]
    async fn every_request_through_the_shared_http_layer_takes_a_token() {
        let (url, seen) = counting_server().await;
        let limit = Arc::new(RateLimit::new(100_000.0));
        let fake = |url: &str| Fake {
            requests: 5,
            url: Some(url.to_string()),
        };
        let five = Limited::new(Arc::new(fake(&url)), Arc::clone(&limit));
        let _ = five.issue(&request()).await;
        // Five requests reached the server, five tokens were taken: the
        // one the wrapper took before the call, then one per further request.
        assert_eq!(seen.load(Ordering::SeqCst), 5);
        assert_eq!(limit.taken(), 5);
        // Unwrapped, the same requests take nothing.
        let _ = fake(&url).issue(&request()).await;
        assert_eq!(seen.load(Ordering::SeqCst), 10);
        assert_eq!(limit.taken(), 5);
    }
}
