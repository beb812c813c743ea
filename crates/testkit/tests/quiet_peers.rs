//! `revoke_when = "unused"` in process against real peers that report
//! last use: moto's IAM (`GetAccessKeyLastUsed`, precision 4h) and the
//! Atlassian sandbox under `--strict` (`lastActiveAt`, moved lazily: a use
//! within 10 minutes of the recorded one does not show). The world's slot
//! keeps its name (`local/ci`) but its provider `local` is configured as
//! an `aws-iam` provider against a moto server this test starts, or as an
//! `atlassian` provider against a sandbox served in this process; the
//! slot's current key is one made at the peer outside keyrot, whose id
//! (and secret) the consumer holds.
//!
//! The consumer is this test: a request signed with the old key (IAM
//! `ListUsers`) or authenticated with its secret (the sandbox's key count).
//! A consumer that keeps using the old key holds the revoke until the
//! deadline, where exactly one alert is raised (mail queued, metric), then
//! the key is held or revoked as `at_deadline` says; one that stops lets
//! the revoke happen one quiet period plus the provider's precision after
//! its (recorded) last use, not a second before.
//!
//! Time: moto stamps uses with the wall clock, so the engine's manual
//! clock starts at the real now and is moved by hours; every use the test
//! makes is stamped within seconds of that start. The sandbox shares the
//! engine's manual clock. Nothing sleeps to synchronise; the world's
//! `settle` polls its runners, and peers are waited for by polling their
//! health endpoint.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde_json::{Value, json};

use keyrot_config::{
    AtlassianProviderConfig, AtlassianRotateApi, AwsCredentialsConfig, AwsIamProviderConfig,
    ProviderKind, SecretRef,
};
use keyrot_core::clock::{Clock, ManualClock, SystemClock};
use keyrot_core::model::{KeyInfo, LastUse, MessageKind, RotationRecord, RotationState};
use keyrot_core::policy::testutil::dur;
use keyrot_core::policy::{AtDeadline, QuietRule, RevokeWhen};
use keyrot_peers::aws::{AwsClient, AwsCredentials, CredentialSource};
use keyrot_testkit::{SLOT, World};

/// IAM's declared precision (`GetAccessKeyLastUsed` may lag this much).
const IAM_PRECISION: SignedDuration = keyrot_config::AWS_IAM_LAST_USED_PRECISION;

/// The sandbox's lazy granularity under `--strict`, and the precision the
/// provider is configured with to match it.
const SANDBOX_PRECISION: SignedDuration = keyrot_sandbox::STRICT_LAST_ACTIVE_GRANULARITY;

fn rule(quiet: &str, deadline: &str, at_deadline: AtDeadline) -> RevokeWhen {
    RevokeWhen::Unused(QuietRule {
        quiet_period: dur(quiet),
        deadline: dur(deadline),
        at_deadline,
    })
}

fn newest(w: &World) -> RotationRecord {
    w.store().rotations(Some(SLOT), 1).unwrap().remove(0)
}

/// Moves the clock by `d`, then runs the rotation's step if it is due.
async fn tick(w: &World, id: &str, d: SignedDuration) {
    w.clock.advance(d);
    w.engine().spawn(id);
    w.settle().await;
}

/// Moves the clock to `at` (not backwards), then as [`tick`].
async fn tick_to(w: &World, id: &str, at: Timestamp) {
    let d = at.duration_since(w.now());
    assert!(d >= SignedDuration::ZERO, "{at} is before {}", w.now());
    tick(w, id, d).await;
}

fn in_use_mails(w: &World) -> usize {
    w.store()
        .outbox()
        .unwrap()
        .iter()
        .filter(|m| m.kind == MessageKind::OldKeyInUse)
        .count()
}

fn alerts(w: &World) -> String {
    let text = w.engine().metrics().render(&Default::default()).unwrap();
    text.lines()
        .find(|l| l.starts_with("keyrot_old_keys_in_use_total{"))
        .unwrap_or("")
        .to_string()
}

/// Makes `current` the slot's current key (adopted, as an inventory sync
/// of a key made outside keyrot would), with `scopes`.
fn adopt(w: &World, id: &str, scopes: &[&str]) {
    let mut k = w.store().key(SLOT).unwrap().unwrap();
    k.current = Some(KeyInfo {
        id: id.into(),
        name: "ci".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        created_by: None,
        created_at: None,
        expires_at: None,
        last_used_at: None,
        tags: Default::default(),
    });
    k.scopes = scopes.iter().map(|s| s.to_string()).collect();
    w.store().write(|tx| tx.put_key(&k)).unwrap();
}

/// The policy's `revoke_when`, and the provider `local` replaced by `kind`.
fn tweak(
    kind: ProviderKind,
    when: RevokeWhen,
) -> impl Fn(&mut keyrot_config::Config) + Send + Sync {
    move |cfg| {
        for p in &mut cfg.providers {
            p.kind = kind.clone();
        }
        for p in &mut cfg.policies {
            p.revoke_when = when;
        }
    }
}

fn secret_file(dir: &Path, name: &str, value: &str) -> SecretRef {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    SecretRef::File(p)
}

// ---------------------------------------------------------------- moto

/// A `moto_server` on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Moto {
    async fn start() -> Moto {
        let peers = std::env::var_os("KEYROT_PEERS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/keyrot/peers")
            });
        let bin = peers.join("venv/bin/moto_server");
        assert!(
            bin.is_file(),
            "moto is not installed at {}: run `bash scripts/peers.sh`",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut up = false;
        for _ in 0..600 {
            if client
                .get(format!("{url}/moto-api/"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            up,
            "moto did not come up: {}",
            std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
        );
        Moto { child, url, dir }
    }

    /// An IAM client signed with access key `key_id` (moto records the
    /// use; it does not check the signature).
    fn client(&self, key_id: &str) -> AwsClient {
        AwsClient::new(
            "test",
            "moto",
            "iam",
            "us-east-1",
            Some(&self.url),
            CredentialSource::Static(AwsCredentials::new(
                SecretString::from(key_id.to_string()),
                SecretString::from("test-secret"),
                None,
            )),
            SignedDuration::from_secs(10),
        )
        .unwrap()
    }

    async fn iam(&self, as_key: &str, action: &str, params: &[(&str, &str)]) -> String {
        let ans = self
            .client(as_key)
            .query_call(action, "2010-05-08", params)
            .await
            .unwrap();
        assert!(ans.status.is_success(), "{action}: {}", ans.status);
        String::from_utf8(ans.body.to_vec()).unwrap()
    }

    /// The ids of user `ci`'s access keys.
    async fn keys(&self) -> Vec<String> {
        let xml = self
            .iam(ADMIN, "ListAccessKeys", &[("UserName", "ci")])
            .await;
        xml.split("<AccessKeyId>")
            .skip(1)
            .filter_map(|s| s.split_once("</AccessKeyId>").map(|(id, _)| id.to_string()))
            .collect()
    }

    /// The consumer: a request signed with key `id`.
    async fn use_key(&self, id: &str) {
        self.iam(id, "ListUsers", &[]).await;
    }

    fn provider(&self) -> ProviderKind {
        ProviderKind::AwsIam(AwsIamProviderConfig {
            region: "eu-west-1".into(),
            iam_endpoint: Some(self.url.clone()),
            sts_endpoint: Some(self.url.clone()),
            credentials: AwsCredentialsConfig::Refs {
                access_key_id: secret_file(self.dir.path(), "aws-id", ADMIN),
                secret_access_key: secret_file(self.dir.path(), "aws-secret", "admin-secret"),
                session_token: None,
            },
            deactivate_first: false,
            delete_inactive: false,
            users: vec!["ci".into()],
            path_prefix: None,
            timeout: SignedDuration::from_secs(10),
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// keyrot's own access key id at moto.
const ADMIN: &str = "AKIAKEYROTADMIN00001";

/// Moto, user `ci` with a key made outside keyrot (adopted as the slot's
/// current key), a world whose clock stands at the real now, and a
/// rotation started and in Overlap: (moto, world, rotation id, old key).
async fn moto_world(when: RevokeWhen) -> (Moto, World, String, String) {
    let m = Moto::start().await;
    m.iam(ADMIN, "CreateUser", &[("UserName", "ci")]).await;
    let xml = m.iam(ADMIN, "CreateAccessKey", &[("UserName", "ci")]).await;
    let old = xml
        .split_once("<AccessKeyId>")
        .and_then(|(_, r)| r.split_once("</AccessKeyId>"))
        .map(|(id, _)| id.to_string())
        .unwrap();
    let w = World::tweaked(tweak(m.provider(), when));
    w.clock.advance(SystemClock.now().duration_since(w.now()));
    adopt(&w, &old, &[]);
    let rec = w.rotate().await.unwrap();
    w.settle().await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Overlap, "{r:#?}");
    assert_eq!(r.old_key_id.as_deref(), Some(old.as_str()));
    assert_eq!(m.keys().await.len(), 2);
    (m, w, rec.id, old)
}

/// The old key's last use as the rotation recorded it at its last check.
fn recorded_use(w: &World) -> Timestamp {
    match newest(w).old_last_use {
        Some(LastUse::At { at }) => at,
        other => panic!("no recorded use: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_a_consumer_that_keeps_using_the_old_key_holds_the_revoke_and_raises_one_alert() {
    // The quiet period is longer than the deadline: a key used within
    // the test's seconds of wall time is in use throughout.
    let (m, w, id, old) = moto_world(rule("24h", "3h", AtDeadline::Hold)).await;
    m.use_key(&old).await;
    let overlap_end = newest(&w).revoke_old_at.unwrap();
    let deadline = overlap_end + dur("3h");
    while w.now() < deadline {
        m.use_key(&old).await;
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
    assert_eq!(r.state, RotationState::Overlap, "held: {r:#?}");
    assert_eq!(r.in_use_alerted_at, Some(deadline));
    assert_eq!(in_use_mails(&w), 1);
    assert_eq!(
        alerts(&w),
        "keyrot_old_keys_in_use_total{provider=\"local\"} 1"
    );
    assert!(m.keys().await.contains(&old), "held, yet deleted at IAM");
    // Still used: held, no second alert.
    for _ in 0..4 {
        m.use_key(&old).await;
        tick(&w, &id, dur("1h")).await;
        assert_eq!(newest(&w).state, RotationState::Overlap);
    }
    assert_eq!(in_use_mails(&w), 1);
    // The consumer stops. Held, the rotation looks again when the last
    // use it saw would be quiet; there it sees the later ones and waits
    // for the newest: revoked at the last use + precision + quiet period,
    // not a second before.
    let mut last = recorded_use(&w);
    let r = loop {
        let quiet_at = last + IAM_PRECISION + dur("24h");
        assert_eq!(newest(&w).retry_at, Some(quiet_at));
        // (The uses are seconds apart: the clock may be past this already.)
        let before = quiet_at - SignedDuration::from_secs(1);
        if before > w.now() {
            tick_to(&w, &id, before).await;
        }
        assert_eq!(newest(&w).state, RotationState::Overlap, "revoked early");
        assert!(m.keys().await.contains(&old));
        tick_to(&w, &id, quiet_at).await;
        let r = newest(&w);
        if r.state == RotationState::Completed {
            assert_eq!(r.old_revoked_at, Some(quiet_at));
            break r;
        }
        let seen = recorded_use(&w);
        assert!(seen > last, "quiet, yet not revoked: {r:#?}");
        last = seen;
    };
    assert_eq!(m.keys().await, [r.new_key.unwrap().id]);
    assert_eq!(in_use_mails(&w), 1);
    assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_a_consumer_that_stops_lets_the_revoke_happen_one_quiet_period_later() {
    // The quiet period is longer than IAM's precision, as validation wants.
    let (m, w, id, old) = moto_world(rule("5h", "24h", AtDeadline::Hold)).await;
    // One use, then none.
    m.use_key(&old).await;
    let overlap_end = newest(&w).revoke_old_at.unwrap();
    tick_to(&w, &id, overlap_end).await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Overlap, "{r:#?}");
    let last = recorded_use(&w);
    assert!(
        last >= overlap_end - dur("1h") - dur("1m") && last <= SystemClock.now(),
        "{last}"
    );
    let quiet_at = last + IAM_PRECISION + dur("5h");
    assert_eq!(r.retry_at, Some(quiet_at));
    tick_to(&w, &id, quiet_at - SignedDuration::from_secs(1)).await;
    assert_eq!(newest(&w).state, RotationState::Overlap, "revoked early");
    assert!(m.keys().await.contains(&old));
    tick_to(&w, &id, quiet_at).await;
    let r = newest(&w);
    assert_eq!(r.state, RotationState::Completed, "{r:#?}");
    assert_eq!(r.old_revoked_at, Some(quiet_at));
    assert!(r.in_use_alerted_at.is_none());
    assert_eq!(in_use_mails(&w), 0);
    assert_eq!(m.keys().await, [r.new_key.unwrap().id]);
    assert!(w.check().await.is_empty(), "{:#?}", w.check().await);
}

// ------------------------------------------------------------- sandbox

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
