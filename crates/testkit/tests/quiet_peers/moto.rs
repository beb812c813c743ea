//! Against moto's IAM (`GetAccessKeyLastUsed`, precision 4h).

use super::*;

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
        keyrot_core::crypto::tls::provider();
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
