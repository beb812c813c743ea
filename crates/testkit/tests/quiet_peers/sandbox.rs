//! Against the Atlassian sandbox under `--strict` (`lastActiveAt`, moved
//! lazily).

use super::*;

/// The sandbox's pre-shared key (64 hex characters).
const PSK_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A strict sandbox served in this process on the world's clock.
struct Sandbox {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dir: tempfile::TempDir,
    /// The admin key's secret (seeded key `keyrot`).
    admin: String,
}

impl Sandbox {
    async fn start(clock: Arc<dyn Clock>) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("psk.hex"), format!("{PSK_HEX}\n")).unwrap();
        let opts = keyrot_sandbox::SandboxOptions {
            state: dir.path().join("state.json"),
            psks: vec![("demo".into(), dir.path().join("psk.hex"))],
            seed: true,
            seed_secrets: Some(dir.path().join("secrets.json")),
            strict: true,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(keyrot_sandbox::serve_listener(
            listener,
            opts,
            clock,
            async move {
                let _ = rx.await;
            },
        ));
        keyrot_core::crypto::tls::provider();
        let http = reqwest::Client::new();
        let mut up = false;
        for _ in 0..500 {
            if http
                .get(format!("{base}/_sandbox/health"))
                .send()
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(up, "the sandbox did not come up");
        let secrets: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("secrets.json")).unwrap())
                .unwrap();
        let admin = secrets["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "keyrot")
            .unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_string();
        Sandbox {
            base,
            http,
            stop: Some(tx),
            dir,
            admin,
        }
    }

    /// Creates key `ci` as a person would in the console: (id, secret).
    async fn create_ci(&self) -> (String, String) {
        let v: Value = self
            .http
            .post(format!("{}/_sandbox/keys", self.base))
            .json(&json!({"orgId": "demo-org", "name": "ci", "scopes": ["read:jira-work"], "createdBy": "alice@example.com"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    /// The consumer: an API call authenticated with `secret`; its status.
    async fn use_key(&self, secret: &str) -> u16 {
        self.http
            .get(format!(
                "{}{}/orgs/demo-org/api-keys/count",
                self.base,
                keyrot_sandbox::API_BASE
            ))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The sandbox's own record of key `id` (`/_sandbox/keys`).
    async fn key(&self, id: &str) -> Value {
        let v: Value = self
            .http
            .get(format!("{}/_sandbox/keys", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no key {id}: {v}"))
    }

    async fn last_active(&self, id: &str) -> Option<Timestamp> {
        self.key(id).await["lastActiveAt"]
            .as_str()
            .map(|s| s.parse().unwrap())
    }

    fn provider(&self) -> ProviderKind {
        ProviderKind::Atlassian(AtlassianProviderConfig {
            org_id: "demo-org".into(),
            base_url: format!("{}{}", self.base, keyrot_sandbox::API_BASE),
            admin_key: secret_file(self.dir.path(), "admin.key", &self.admin),
            rotate_api: AtlassianRotateApi::Proposed {
                psks: vec![(
                    "demo".into(),
                    SecretRef::File(self.dir.path().join("psk.hex")),
                )],
                send_psk_id: false,
            },
            page_size: 50,
            timeout: SignedDuration::from_secs(10),
            last_active_precision: SANDBOX_PRECISION,
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The sandbox's clock: the world's manual clock once the world exists
/// (the sandbox starts first: the world's configuration needs its
/// address), the world's start time before.
struct Follow {
    world: std::sync::Mutex<Option<Arc<ManualClock>>>,
    before: Timestamp,
}

impl Clock for Follow {
    fn now(&self) -> Timestamp {
        match self.world.lock().ok().and_then(|w| w.clone()) {
            Some(c) => c.now(),
            None => self.before,
        }
    }
}

/// A strict sandbox on the world's clock, key `ci` made there by hand and
/// adopted, and a rotation started and in Overlap: (sandbox, world,
/// rotation id, old key id, old key's secret).
async fn sandbox_world(when: RevokeWhen) -> (Sandbox, World, String, String, String) {
    let follow = Arc::new(Follow {
        world: std::sync::Mutex::new(None),
        before: World::new().now(),
    });
    let sb = Sandbox::start(follow.clone()).await;
    let (old, secret) = sb.create_ci().await;
    let w = World::tweaked(tweak(sb.provider(), when));
    assert_eq!(w.now(), follow.now());
    *follow.world.lock().unwrap() = Some(w.clock.clone());
    adopt(&w, &old, &["read:jira-work"]);
    let rec = w.rotate().await.unwrap();
    w.settle().await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Overlap, "{r:#?}");
    assert_eq!(r.old_key_id.as_deref(), Some(old.as_str()));
    (sb, w, rec.id, old, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_a_consumer_that_keeps_using_the_old_key_raises_one_alert_then_at_deadline_revoke()
{
    let (sb, w, id, old, secret) = sandbox_world(rule("2h", "6h", AtDeadline::Revoke)).await;
    let overlap_end = newest(&w).revoke_old_at.unwrap();
    let deadline = overlap_end + dur("6h");
    // Used every 30 minutes (each use shows: the recorded one is older
    // than the sandbox's 10 minutes).
    while w.now() < deadline {
        assert_eq!(sb.use_key(&secret).await, 200);
        assert_eq!(sb.last_active(&old).await, Some(w.now()));
        tick(&w, &id, dur("30m")).await;
        let r = newest(&w);
        if w.now() < deadline {
            assert_eq!(r.state, RotationState::Overlap, "at {}", w.now());
            assert!(
                r.in_use_alerted_at.is_none(),
                "alerted early at {}",
                w.now()
            );
            assert_eq!(in_use_mails(&w), 0);
        }
    }
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Completed, "{r:#?}");
    assert_eq!(r.in_use_alerted_at, Some(deadline));
    assert_eq!(r.old_revoked_at, Some(deadline));
    assert_eq!(in_use_mails(&w), 1);
    assert_eq!(
        alerts(&w),
        "keyrot_old_keys_in_use_total{provider=\"local\"} 1"
    );
    // Revoked at the sandbox: the consumer is refused now.
    assert_eq!(sb.use_key(&secret).await, 401);
    assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_a_consumer_that_stops_is_revoked_one_quiet_period_plus_the_precision_later() {
    let (sb, w, id, old, secret) = sandbox_world(rule("2h", "24h", AtDeadline::Hold)).await;
    let overlap_end = newest(&w).revoke_old_at.unwrap();
    // Used 30 minutes into the overlap (recorded), then 9 minutes later
    // (not recorded: lazily, within the sandbox's 10 minutes), then never.
    tick(&w, &id, dur("30m")).await;
    assert_eq!(sb.use_key(&secret).await, 200);
    let recorded = w.now();
    tick(&w, &id, dur("9m")).await;
    assert_eq!(sb.use_key(&secret).await, 200);
    let last = w.now();
    assert_eq!(sb.last_active(&old).await, Some(recorded), "moved at once");
    tick_to(&w, &id, overlap_end).await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Overlap, "{r:#?}");
    assert_eq!(r.old_last_use, Some(LastUse::At { at: recorded }));
    let quiet_at = recorded + SANDBOX_PRECISION + dur("2h");
    assert_eq!(r.retry_at, Some(quiet_at));
    // One quiet period after the recorded use, the key was still used 9
    // minutes before: not revoked then, nor a second before the precision
    // is out.
    tick_to(&w, &id, recorded + dur("2h")).await;
    assert_eq!(newest(&w).state, RotationState::Overlap, "revoked early");
    tick_to(&w, &id, quiet_at - SignedDuration::from_secs(1)).await;
    assert_eq!(newest(&w).state, RotationState::Overlap, "revoked early");
    assert_eq!(sb.key(&old).await["status"], "ACTIVE");
    tick_to(&w, &id, quiet_at).await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Completed, "{r:#?}");
    assert_eq!(r.old_revoked_at, Some(quiet_at));
    assert!(r.old_revoked_at.unwrap() >= last + dur("2h"));
    assert!(r.in_use_alerted_at.is_none());
    assert_eq!(in_use_mails(&w), 0);
    assert_eq!(sb.use_key(&secret).await, 401);
    assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
}
