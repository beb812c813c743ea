//! The `aws-iam` provider against a real moto server (IAM and STS on one
//! endpoint; signatures are not checked, but requests must be SigV4-shaped
//! and are routed by their credential scope, so a request moto answers was
//! signed for the right service).
//!
//! Provider level: list, issue, find by the user's issuing tags, verify,
//! deactivate and revoke; IAM's two-keys-per-user limit with and without
//! `delete_inactive`; last use; `users`/`path_prefix` bound what is
//! touched. Daemon level (the real binary): an adopted key is rotated with
//! the old key Inactive during the overlap, then deleted; `keyrot plan`
//! shows an IAM key due by `max_age`; and (with failpoints) a crash right
//! after the issue leaves an orphan key that the restart finds by the user
//! tag and deletes before issuing again.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::peers::{self, Peer, curl};
use common::{Daemon, wait_until};
use jiff::{SignedDuration, Timestamp};
use keyrot_config::{AwsCredentialsConfig, AwsIamProviderConfig, SecretRef};
use keyrot_peers::aws::{AwsClient, AwsCredentials, CredentialSource};
use keyrot_peers::provider::aws_iam::{AwsIamProvider, ISSUING_TAG};
use keyrot_peers::provider::{IssueRequest, Provider};
use secrecy::{ExposeSecret, SecretString};

/// Access key id keyrot's own credentials hold (moto does not check it).
const ADMIN_KEY_ID: &str = "AKIAKEYROTADMIN00001";
/// Secret access key of keyrot's own credentials (must never be shown).
const ADMIN_SECRET: &str = "kEyRoTaDmInSeCrEt/DoNotShow+0000000000001";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A moto server in a temp dir, with keyrot's credential files beside it.
struct Moto {
    /// The server.
    peer: Peer,
    /// Holds moto's log and the credential files.
    dir: tempfile::TempDir,
}

impl Moto {
    fn start() -> Moto {
        let dir = tempfile::Builder::new().prefix("kriam").tempdir().unwrap();
        let peer = peers::moto(&dir.path().join("moto"));
        write_secret(dir.path(), "aws-id", ADMIN_KEY_ID);
        write_secret(dir.path(), "aws-secret", ADMIN_SECRET);
        Moto { peer, dir }
    }

    /// A provider config against this moto.
    fn cfg(&self) -> AwsIamProviderConfig {
        AwsIamProviderConfig {
            region: "eu-west-1".into(),
            iam_endpoint: Some(self.peer.url.clone()),
            sts_endpoint: Some(self.peer.url.clone()),
            credentials: AwsCredentialsConfig::Refs {
                access_key_id: SecretRef::File(self.dir.path().join("aws-id")),
                secret_access_key: SecretRef::File(self.dir.path().join("aws-secret")),
                session_token: None,
            },
            deactivate_first: false,
            delete_inactive: false,
            users: Vec::new(),
            path_prefix: None,
            timeout: SignedDuration::from_secs(10),
        }
    }

    fn provider(&self, cfg: &AwsIamProviderConfig) -> AwsIamProvider {
        AwsIamProvider::new("iam", cfg, None).unwrap()
    }

    /// An IAM client signed with `key_id` (the admin's unless given).
    fn client(&self, key_id: &str) -> AwsClient {
        AwsClient::new(
            "test",
            "moto",
            "iam",
            "us-east-1",
            Some(&self.peer.url),
            CredentialSource::Static(AwsCredentials::new(
                SecretString::from(key_id.to_string()),
                SecretString::from("test-secret"),
                None,
            )),
            SignedDuration::from_secs(10),
        )
        .unwrap()
    }

    /// An IAM call as the admin that must succeed; its XML answer.
    fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        iam_as(&self.client(ADMIN_KEY_ID), action, params)
    }

    fn create_user(&self, user: &str, path: &str) {
        self.iam("CreateUser", &[("UserName", user), ("Path", path)]);
    }

    /// A new access key of `user`, made outside keyrot; its id.
    fn create_key(&self, user: &str) -> String {
        let xml = self.iam("CreateAccessKey", &[("UserName", user)]);
        texts(&xml, "AccessKeyId").remove(0)
    }

    fn set_status(&self, user: &str, id: &str, status: &str) {
        self.iam(
            "UpdateAccessKey",
            &[("UserName", user), ("AccessKeyId", id), ("Status", status)],
        );
    }

    /// `(id, status)` of each access key of `user`.
    fn keys(&self, user: &str) -> Vec<(String, String)> {
        let xml = self.iam("ListAccessKeys", &[("UserName", user)]);
        texts(&xml, "AccessKeyId")
            .into_iter()
            .zip(texts(&xml, "Status"))
            .collect()
    }

    /// The value of tag `key` on `user`.
    fn user_tag(&self, user: &str, key: &str) -> Option<String> {
        let xml = self.iam("ListUserTags", &[("UserName", user)]);
        let keys = texts(&xml, "Key");
        let values = texts(&xml, "Value");
        keys.into_iter()
            .position(|k| k == key)
            .and_then(|i| values.get(i).cloned())
    }

    /// The secret access key moto holds for key `id` (its state dump).
    fn secret_of(&self, id: &str) -> String {
        let out = curl(&[&format!("{}/moto-api/data.json", self.peer.url)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["iam"]["AccessKey"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["access_key_id"] == id)
            .unwrap_or_else(|| panic!("moto holds no key {id}"))["secret_access_key"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn write_secret(dir: &Path, name: &str, value: &str) {
    let p = dir.join(name);
    fs::write(&p, format!("{value}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
}

/// An IAM query call with `client` that must succeed; its XML answer.
fn iam_as(client: &AwsClient, action: &str, params: &[(&str, &str)]) -> String {
    let ans = runtime()
        .block_on(client.query_call(action, "2010-05-08", params))
        .unwrap();
    assert!(
        ans.status.is_success(),
        "{action} {params:?}: {}",
        client.error(action, &ans, None)
    );
    String::from_utf8(ans.body.to_vec()).unwrap()
}

/// The text of every `<tag>...</tag>` (and `<tag/>`) in document order.
fn texts(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let empty = format!("<{tag}/>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    loop {
        let o = rest.find(&open);
        let e = rest.find(&empty);
        match (o, e) {
            (Some(o), e) if e.is_none_or(|e| o < e) => {
                let start = o + open.len();
                let len = rest[start..].find(&close).unwrap();
                out.push(rest[start..start + len].to_string());
                rest = &rest[start + len + close.len()..];
            }
            (_, Some(e)) => {
                out.push(String::new());
                rest = &rest[e + empty.len()..];
            }
            _ => return out,
        }
    }
}

fn now() -> Timestamp {
    common::wall_now()
}

fn request(user: &str, tag: &str, replaces: Option<&str>) -> IssueRequest {
    IssueRequest {
        name: user.into(),
        scopes: Vec::new(),
        expires_at: None,
        tag: tag.into(),
        replaces: replaces.map(str::to_string),
        resumed: false,
        created_by: "keyrot".into(),
        now: now(),
        ..Default::default()
    }
}

#[test]
fn issues_lists_finds_verifies_deactivates_and_revokes() {
    let m = Moto::start();
    m.create_user("alice", "/svc/");
    let old = m.create_key("alice");
    let p = m.provider(&m.cfg());
    let rt = runtime();
    let caps = p.capabilities();
    assert!(caps.list && caps.verify && caps.revoke && caps.tag);
    assert_eq!(caps.issue, keyrot_core::model::IssueMode::Create);
    assert!(!caps.deactivate && !caps.idempotent_issue);

    let listed = rt.block_on(p.list(now())).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, old);
    assert_eq!(listed[0].name, "alice");
    assert!(listed[0].created_at.is_some());
    assert_eq!(listed[0].expires_at, None, "IAM keys do not expire");
    assert_eq!(listed[0].tags["status"], "Active");

    // Issue: the secret is the one IAM made, and the user carries the tag.
    let tag = "0190f3a2-7c1e-7000-8000-000000000001";
    let issued = rt
        .block_on(p.issue(&request("alice", tag, Some(&old))))
        .unwrap();
    let new = issued.info.id.clone();
    assert_ne!(new, old);
    assert_eq!(issued.info.name, "alice");
    assert_eq!(issued.info.expires_at, None);
    assert_eq!(issued.secret.expose_secret(), m.secret_of(&new));
    let shown = format!("{issued:?}");
    assert!(!shown.contains(issued.secret.expose_secret()), "{shown}");
    let mark = m.user_tag("alice", ISSUING_TAG).unwrap();
    assert!(mark.starts_with(&format!("{tag}@")), "{mark}");

    // Both keys are live; only the new one carries this rotation's tag.
    let mut ids: Vec<String> = rt
        .block_on(p.list(now()))
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    ids.sort();
    let mut want = vec![old.clone(), new.clone()];
    want.sort();
    assert_eq!(ids, want);
    let found = rt.block_on(p.find_tagged(tag, now())).unwrap();
    assert_eq!(
        found.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        [new.as_str()]
    );
    let other = rt
        .block_on(p.find_tagged("0190f3a2-7c1e-7000-8000-000000000002", now()))
        .unwrap();
    assert!(other.is_empty(), "{other:?}");

    // Verify: STS called with the new key names alice.
    rt.block_on(p.verify(&new, &issued.secret, now())).unwrap();
    // A key IAM does not list may just not be visible yet: retried.
    let err = rt
        .block_on(p.verify("AKIANOTAKEY000000000", &issued.secret, now()))
        .unwrap_err();
    assert!(err.transient, "{err}");
    assert!(err.message.contains("AKIANOTAKEY000000000"), "{err}");

    // Deactivate (idempotent): the old key is no longer live, nor verifiable.
    rt.block_on(p.deactivate(&old, now())).unwrap();
    rt.block_on(p.deactivate(&old, now())).unwrap();
    assert!(m.keys("alice").contains(&(old.clone(), "Inactive".into())));
    let live: Vec<String> = rt
        .block_on(p.list(now()))
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(live, std::slice::from_ref(&new));
    let err = rt
        .block_on(p.verify(&old, &SecretString::from("x"), now()))
        .unwrap_err();
    assert!(!err.transient, "{err}");
    assert!(err.message.contains("Inactive"), "{err}");

    // Revoke deletes; a key already gone counts as done.
    rt.block_on(p.revoke(&old, now())).unwrap();
    rt.block_on(p.revoke(&old, now())).unwrap();
    rt.block_on(p.revoke("AKIANOTAKEY000000000", now()))
        .unwrap();
    assert_eq!(m.keys("alice"), [(new.clone(), "Active".to_string())]);

    // The new key's secret never reaches an error.
    assert!(!format!("{err:?}").contains(issued.secret.expose_secret()));
}

#[test]
fn two_keys_are_the_limit_and_only_an_inactive_spare_is_deleted() {
    let m = Moto::start();
    m.create_user("bob", "/");
    let current = m.create_key("bob");
    let spare = m.create_key("bob");
    m.set_status("bob", &spare, "Inactive");
    let rt = runtime();

    // Without delete_inactive: a permanent error naming both keys and the fix.
    let strict = m.provider(&m.cfg());
    let err = rt
        .block_on(strict.issue(&request("bob", "rot-1", Some(&current))))
        .unwrap_err();
    assert!(!err.transient, "{err}");
    for part in [
        "IAM user \"bob\" already has 2 access keys",
        &format!("{current} (Active, current)"),
        &format!("{spare} (Inactive)"),
        &format!("--access-key-id {spare}"),
        "delete_inactive = true",
    ] {
        assert!(err.message.contains(part), "{part}: {err}");
    }
    assert_eq!(m.keys("bob").len(), 2, "nothing was deleted");

    // With delete_inactive: the inactive spare goes, the current key stays.
    let mut cfg = m.cfg();
    cfg.delete_inactive = true;
    let lenient = m.provider(&cfg);
    let issued = rt
        .block_on(lenient.issue(&request("bob", "rot-2", Some(&current))))
        .unwrap();
    assert_eq!(issued.info.tags["deleted_to_make_room"], spare);
    let mut ids: Vec<String> = m.keys("bob").into_iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut want = vec![current.clone(), issued.info.id.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Two Active keys: never deleted, even with delete_inactive.
    let err = rt
        .block_on(lenient.issue(&request("bob", "rot-3", Some(&current))))
        .unwrap_err();
    assert!(!err.transient, "{err}");
    assert!(
        err.message
            .contains("keyrot never deletes an active key to make room"),
        "{err}"
    );
    assert_eq!(m.keys("bob").len(), 2);

    // A user that does not exist is a clear permanent error.
    let err = rt
        .block_on(strict.issue(&request("nobody", "rot-4", None)))
        .unwrap_err();
    assert!(!err.transient);
    assert!(err.message.contains("\"nobody\" does not exist"), "{err}");
}

#[test]
fn last_use_is_reported() {
    let m = Moto::start();
    m.create_user("dave", "/");
    let id = m.create_key("dave");
    let p = m.provider(&m.cfg());
    let rt = runtime();
    assert_eq!(rt.block_on(p.list(now())).unwrap()[0].last_used_at, None);
    // An IAM call signed with dave's key is recorded as its last use.
    let before = now() - SignedDuration::from_secs(5);
    iam_as(&m.client(&id), "ListUsers", &[]);
    let used = rt.block_on(p.list(now())).unwrap()[0]
        .last_used_at
        .expect("last use filled");
    assert!(used >= before, "{used}");
}

#[test]
fn users_and_path_prefix_bound_what_is_listed_and_changed() {
    let m = Moto::start();
    m.create_user("ci-a", "/ci/");
    m.create_user("ci-b", "/ci/");
    m.create_user("human", "/people/");
    let a = m.create_key("ci-a");
    let b = m.create_key("ci-b");
    let h = m.create_key("human");
    let rt = runtime();
    let names = |p: &AwsIamProvider| {
        let mut n: Vec<String> = rt
            .block_on(p.list(now()))
            .unwrap()
            .into_iter()
            .map(|k| k.name)
            .collect();
        n.sort();
        n
    };

    let all = m.provider(&m.cfg());
    assert_eq!(names(&all), ["ci-a", "ci-b", "human"]);

    let mut cfg = m.cfg();
    cfg.path_prefix = Some("/ci/".into());
    let ci = m.provider(&cfg);
    assert_eq!(names(&ci), ["ci-a", "ci-b"]);
    let err = rt.block_on(ci.revoke(&h, now())).unwrap_err();
    assert!(
        err.message
            .contains("outside this provider's `path_prefix`"),
        "{err}"
    );
    let err = rt
        .block_on(ci.issue(&request("human", "rot-1", Some(&h))))
        .unwrap_err();
    assert!(!err.transient, "{err}");

    let mut cfg = m.cfg();
    cfg.users = vec!["ci-a".into(), "ghost".into()];
    let listed = m.provider(&cfg);
    assert_eq!(names(&listed), ["ci-a"]);
    let err = rt.block_on(listed.revoke(&b, now())).unwrap_err();
    assert!(
        err.message.contains("not in this provider's `users`"),
        "{err}"
    );

    // Nothing outside the bounds was touched.
    assert_eq!(m.keys("human"), [(h, "Active".to_string())]);
    assert_eq!(m.keys("ci-b"), [(b, "Active".to_string())]);
    assert_eq!(m.keys("ci-a"), [(a, "Active".to_string())]);
}

/// A daemon config with the aws-iam provider against `m` managing `user`
/// (adopting key `adopt`), a JSON file sink and one policy.
fn daemon_config(m: &Moto, provider_extra: &str, policy: &str, user: &str, adopt: &str) -> String {
    let d = m.dir.path().display();
    let base = common::base_config(5);
    format!(
        r#"{base}
[[provider]]
name = "iam"
type = "aws-iam"
region = "eu-west-1"
iam_endpoint = "{url}"
sts_endpoint = "{url}"
access_key_id = {{ file = "{d}/aws-id" }}
secret_access_key = {{ file = "{d}/aws-secret" }}
users = ["{user}"]
{provider_extra}

[[policy]]
name = "iam"
jitter = false
{policy}

[[key]]
name = "{user}"
id = "{adopt}"
provider = "iam"
policy = "iam"
sinks = ["out"]
"#,
        url = m.peer.url
    )
}

/// Starts `d` and waits until the slot's current key is `id`.
fn start_with_key(d: &mut Daemon, id: &str) {
    d.start();
    assert!(
        wait_until(Duration::from_secs(30), || d.status()["keys"][0]["key_id"]
            == id),
        "key {id} not adopted: {}\nlog:\n{}",
        d.json(&["status", "--json"]),
        d.log()
    );
}

/// Asks for a rotation of `key`; its id.
fn rotate(d: &Daemon, key: &str) -> String {
    let out = d.cli(&["rotate", key, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn rotation(d: &Daemon, id: &str) -> serde_json::Value {
    d.json(&["rotation", "show", id, "--json"])
}

#[test]
fn daemon_rotates_an_adopted_key_with_the_old_one_inactive_during_the_overlap() {
    let m = Moto::start();
    m.create_user("deploy-bot", "/");
    let old = m.create_key("deploy-bot");
    let mut d = Daemon::new(&daemon_config(
        &m,
        "deactivate_first = true",
        "max_age = \"90d\"\noverlap = \"20s\"",
        "deploy-bot",
        &old,
    ));
    start_with_key(&mut d, &old);
    let id = rotate(&d, "deploy-bot");

    // The overlap: the new key is live and distributed, the old one Inactive.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let s = rotation(&d, &id)["state"].clone();
            s == "Overlap" || s == "Completed" || s == "Failed"
        }),
        "log:\n{}",
        d.log()
    );
    let r = rotation(&d, &id);
    assert_eq!(r["state"], "Overlap", "{r}\nlog:\n{}", d.log());
    let new = r["new_key"]["id"].as_str().unwrap().to_string();
    let mut keys = m.keys("deploy-bot");
    keys.sort();
    let mut want = vec![
        (old.clone(), "Inactive".to_string()),
        (new.clone(), "Active".to_string()),
    ];
    want.sort();
    assert_eq!(keys, want, "during the overlap");

    // The end: the old key is deleted; the user has exactly the new key.
    assert!(
        wait_until(Duration::from_secs(60), || rotation(&d, &id)["state"]
            == "Completed"),
        "{}\nlog:\n{}",
        rotation(&d, &id),
        d.log()
    );
    let r = rotation(&d, &id);
    assert_eq!(r["old_key_id"], old.as_str());
    assert!(r["old_revoked_at"].is_string(), "{r}");
    assert_eq!(m.keys("deploy-bot"), [(new.clone(), "Active".to_string())]);
    let sink = d.sink("deploy-bot").expect("sink file");
    assert_eq!(sink["key_id"], new.as_str());
    assert_eq!(sink["secret"], m.secret_of(&new).as_str());
    assert_eq!(
        d.json(&["status", "--json"])["keys"][0]["key_id"],
        new.as_str()
    );
    // The new secret is nowhere but in the sink.
    let secret = m.secret_of(&new);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).unwrap().success());
    for (path, bytes) in common::all_files(&d.dir) {
        if path.starts_with(d.dir.join("out")) {
            continue;
        }
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(&secret), "secret found in {}", path.display());
        assert!(
            !hay.contains(ADMIN_SECRET),
            "admin secret in {}",
            path.display()
        );
    }
}

#[test]
fn plan_shows_an_iam_key_due_by_age() {
    let m = Moto::start();
    m.create_user("report-bot", "/");
    let key = m.create_key("report-bot");
    let mut d = Daemon::new(&daemon_config(
        &m,
        "",
        "max_age = \"90d\"",
        "report-bot",
        &key,
    ));
    start_with_key(&mut d, &key);
    let status = d.json(&["status", "--json"]);
    assert!(status["keys"][0]["expires_at"].is_null(), "{status}");
    let plan = d.json(&["plan", "--json"]);
    let row = &plan["rows"][0];
    assert_eq!(row["slot"], "iam/report-bot", "{plan}");
    let due: Timestamp = row["due_at"].as_str().unwrap().parse().unwrap();
    let in_days = due.duration_since(now()).as_secs() / 86_400;
    assert!(
        (89..=90).contains(&in_days),
        "due in {in_days} days: {plan}"
    );
    assert!(
        row["explain"].as_str().unwrap().contains("max age"),
        "{plan}"
    );
}

/// keyrot dies right after `CreateAccessKey` returned (before it recorded
/// the new key): the restart must find that key by the user's issuing tag,
/// delete it, issue a fresh one and complete, leaving the user one key.
#[cfg(feature = "failpoints")]
#[test]
fn a_crash_after_issue_leaves_no_orphan_key() {
    let m = Moto::start();
    m.create_user("etl", "/");
    let old = m.create_key("etl");
    let mut d = Daemon::new(&daemon_config(
        &m,
        "",
        "max_age = \"90d\"\noverlap = \"1s\"",
        "etl",
        &old,
    ));
    d.env = vec![("KEYROT_FAILPOINTS".into(), "after:issue=abort".into())];
    start_with_key(&mut d, &old);
    let id = rotate(&d, "etl");
    let st = d
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("failpoint never hit; log:\n{}", d.log()));
    assert!(!st.success());

    // The orphan: a second key whose secret keyrot never recorded.
    let keys = m.keys("etl");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let orphan = keys.iter().find(|(k, _)| *k != old).unwrap().0.clone();
    let mark = m.user_tag("etl", ISSUING_TAG).unwrap();
    assert!(mark.starts_with(&format!("{id}@")), "{mark}");

    d.env.clear();
    d.start();
    assert!(
        wait_until(Duration::from_secs(60), || rotation(&d, &id)["state"]
            == "Completed"),
        "{}\nlog:\n{}",
        rotation(&d, &id),
        d.log()
    );
    let r = rotation(&d, &id);
    let new = r["new_key"]["id"].as_str().unwrap().to_string();
    assert_ne!(new, orphan);
    assert_ne!(new, old);
    let notes: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["note"].as_str())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("revoked orphan(s) {orphan}"))),
        "{notes:?}"
    );
    assert_eq!(m.keys("etl"), [(new.clone(), "Active".to_string())]);
    assert_eq!(d.sink("etl").unwrap()["secret"], m.secret_of(&new).as_str());
}
