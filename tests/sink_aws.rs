//! The `aws-secretsmanager` sink against a real moto server: a missing
//! secret is created only with `create = true`; a write is one idempotent
//! AWSPENDING version keyed by the rotation id, invisible to consumers
//! (who read AWSCURRENT) until `finish` moves AWSCURRENT to it; JSON
//! secrets carry the metadata; credentials come from file references or
//! the standard environment variables; a server that is down is a
//! transient error; no secret ever reaches an error or `Debug` output.
//! Each test runs its own moto (moto does not check signatures, but routes
//! by the SigV4 credential scope, so a request it answers was signed for
//! Secrets Manager).

mod common;

use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use common::peers::{self, Peer};
use jiff::SignedDuration;
use keyrot_config::{AwsCredentialsConfig, AwsSecretsManagerSinkConfig, SecretFormat, SecretRef};
use keyrot_core::crypto::sha256_hex;
use keyrot_core::error::CallError;
use keyrot_peers::aws::{AwsClient, AwsCredentials, CredentialSource};
use keyrot_peers::sink::aws_sm::AwsSecretsManagerSink;
use keyrot_peers::sink::{Sink, SinkTarget};
use secrecy::SecretString;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Access key id the file references hold.
const ACCESS_KEY_ID: &str = "AKIAKEYROTFILEREF001";
/// Secret access key the file references hold (must never be shown).
const SECRET_ACCESS_KEY: &str = "fIlEsEcReT/ac+cessKeyDoNotShow0000000001";
/// Session token of the environment test (must never be shown).
const SESSION_TOKEN: &str = "EnvSessionTokenDoNotShow-FwoGZXIvYXdz";
/// Secret access key of the environment test (must never be shown).
const ENV_SECRET_ACCESS_KEY: &str = "eNvSeCrEt/ac+cessKeyDoNotShow0000000002";

/// Tests read the process environment (reqwest, the resolver); the one
/// test that changes it holds this for writing, every other for reading.
static ENV: RwLock<()> = RwLock::new(());

fn env_shared() -> RwLockReadGuard<'static, ()> {
    ENV.read().unwrap_or_else(|e| e.into_inner())
}

fn env_exclusive() -> RwLockWriteGuard<'static, ()> {
    ENV.write().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A moto server in a temp dir, with credential files beside it.
struct Moto {
    /// The server.
    peer: Peer,
    /// Holds moto's log and the credential files.
    dir: tempfile::TempDir,
}

impl Moto {
    fn start() -> Moto {
        let dir = tempfile::Builder::new().prefix("krsm").tempdir().unwrap();
        let peer = peers::moto(&dir.path().join("moto"));
        std::fs::write(dir.path().join("ak"), format!("{ACCESS_KEY_ID}\n")).unwrap();
        std::fs::write(dir.path().join("sk"), format!("{SECRET_ACCESS_KEY}\n")).unwrap();
        Moto { peer, dir }
    }

    /// Credentials from file references.
    fn file_creds(&self) -> AwsCredentialsConfig {
        file_creds(self.dir.path())
    }

    /// A sink config against this moto.
    fn cfg(&self, create: bool, format: SecretFormat) -> AwsSecretsManagerSinkConfig {
        AwsSecretsManagerSinkConfig {
            region: "eu-west-1".into(),
            endpoint: Some(self.peer.url.clone()),
            secret_name: "keyrot/{provider}/{name}".into(),
            create,
            kms_key_id: None,
            format,
            credentials: self.file_creds(),
            timeout: SignedDuration::from_secs(10),
        }
    }

    fn sink(&self, create: bool, format: SecretFormat) -> AwsSecretsManagerSink {
        AwsSecretsManagerSink::new("aws", &self.cfg(create, format), None).unwrap()
    }

    /// A Secrets Manager client of our own, to look at the secret the way
    /// an operator would.
    fn admin(&self) -> AwsClient {
        AwsClient::new(
            "test",
            "moto",
            "secretsmanager",
            "eu-west-1",
            Some(&self.peer.url),
            CredentialSource::Static(AwsCredentials::new(
                SecretString::from("AKIAKEYROTADMIN00001"),
                SecretString::from("admin-secret"),
                None,
            )),
            SignedDuration::from_secs(10),
        )
        .unwrap()
    }
}

fn file_creds(dir: &Path) -> AwsCredentialsConfig {
    AwsCredentialsConfig::Refs {
        access_key_id: SecretRef::File(dir.join("ak")),
        secret_access_key: SecretRef::File(dir.join("sk")),
        session_token: None,
    }
}

/// A Secrets Manager call that must succeed; its answer as JSON.
async fn call(admin: &AwsClient, op: &str, body: Value) -> Value {
    let ans = admin
        .json_call(
            &format!("secretsmanager.{op}"),
            Zeroizing::new(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    assert!(
        ans.status.is_success(),
        "{op} {body}: {}",
        admin.error(op, &ans, None)
    );
    serde_json::from_slice(&ans.body).unwrap()
}

/// Version id → sorted labels, from ListSecretVersionIds.
async fn versions(admin: &AwsClient, name: &str) -> Vec<(String, Vec<String>)> {
    let v = call(
        admin,
        "ListSecretVersionIds",
        json!({"SecretId": name, "IncludeDeprecated": true}),
    )
    .await;
    let mut out: Vec<(String, Vec<String>)> = v["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut labels: Vec<String> = e["VersionStages"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            labels.sort();
            labels.dedup();
            (e["VersionId"].as_str().unwrap().to_string(), labels)
        })
        .collect();
    out.sort();
    out
}

/// The labels of `version` (empty when it has none or is not listed).
async fn labels(admin: &AwsClient, name: &str, version: &str) -> Vec<String> {
    versions(admin, name)
        .await
        .into_iter()
        .find(|(v, _)| v == version)
        .map(|(_, l)| l)
        .unwrap_or_default()
}

/// What a consumer reads: the AWSCURRENT secret string. The stage is
/// named because moto, unlike AWS, keeps answering a GetSecretValue
/// without one from the version that was current before an
/// UpdateSecretVersionStage.
async fn current_value(admin: &AwsClient, name: &str) -> String {
    let v = call(
        admin,
        "GetSecretValue",
        json!({"SecretId": name, "VersionStage": "AWSCURRENT"}),
    )
    .await;
    v["SecretString"].as_str().unwrap().to_string()
}

fn target(rotation: u32, key_id: &str) -> SinkTarget {
    SinkTarget {
        slot: "local/ci".into(),
        provider: "local".into(),
        key_name: "ci".into(),
        key_id: key_id.into(),
        rotation_id: format!("0190f3a2-7c1e-7000-8000-{rotation:012}"),
        expires_at: Some("2027-06-01T00:00:00Z".parse().unwrap()),
        probe: false,
    }
}

const NAME: &str = "keyrot/local/ci";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Fails if `text` shows any secret this suite uses.
fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets
        .iter()
        .chain(&[SECRET_ACCESS_KEY, ENV_SECRET_ACCESS_KEY, SESSION_TOKEN])
    {
        assert!(!text.contains(s), "{s:?} shown in: {text}");
    }
}

#[test]
fn create_true_creates_the_secret_current_at_once_and_a_probe_passes() {
    let _env = env_shared();
    let moto = Moto::start();
    runtime().block_on(async {
        let sink = moto.sink(true, SecretFormat::Raw);
        let admin = moto.admin();
        let t = target(1, "lk_1");
        let secret = SecretString::from("first-secret-value");
        let version = sink.put(&t, &secret).await.unwrap();
        assert_eq!(version.as_deref(), Some(t.rotation_id.as_str()));
        // The first version of a created secret is current at once.
        assert_eq!(
            versions(&admin, NAME).await,
            vec![(t.rotation_id.clone(), strings(&["AWSCURRENT"]))]
        );
        assert_eq!(current_value(&admin, NAME).await, "first-secret-value");
        let described = call(&admin, "DescribeSecret", json!({"SecretId": NAME})).await;
        let mut tags: Vec<(String, String)> = described["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["Key"].as_str().unwrap().to_string(),
                    t["Value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        tags.sort();
        assert_eq!(
            tags,
            vec![
                ("keyrot:provider".to_string(), "local".to_string()),
                ("keyrot:slot".to_string(), "local/ci".to_string())
            ]
        );
        assert!(
            described["Description"]
                .as_str()
                .unwrap()
                .contains("keyrot"),
            "{described}"
        );
        // A retried put of the same rotation writes nothing new.
        assert_eq!(
            sink.put(&t, &secret).await.unwrap().as_deref(),
            Some(t.rotation_id.as_str())
        );
        assert_eq!(versions(&admin, NAME).await.len(), 1);
        assert_eq!(
            sink.read_back(&t).await.unwrap(),
            Some(sha256_hex(b"first-secret-value"))
        );
        // finish on a version that is already current changes nothing.
        sink.finish(&t).await.unwrap();
        sink.finish(&t).await.unwrap();
        assert_eq!(
            versions(&admin, NAME).await,
            vec![(t.rotation_id.clone(), strings(&["AWSCURRENT"]))]
        );
        // `keyrot sink test` lands beside the secret and passes.
        let report = keyrot_peers::sink::probe::run(&sink, "local", common::wall_now())
            .await
            .unwrap();
        assert_eq!(report.read_back, "matched");
        let probe_name = keyrot_peers::sink::probe::probe_target("local", common::wall_now())
            .location("keyrot/{provider}/{name}")
            .unwrap();
        assert_eq!(probe_name, "keyrot/local/keyrot-probe");
        let probe = current_value(&admin, &probe_name).await;
        assert!(probe.starts_with("keyrot-probe-"), "{probe}");
        assert_eq!(current_value(&admin, NAME).await, "first-secret-value");
    });
}

#[test]
fn a_second_rotation_is_pending_until_finish_makes_it_current() {
    let _env = env_shared();
    let moto = Moto::start();
    runtime().block_on(async {
        let sink = moto.sink(true, SecretFormat::Raw);
        let admin = moto.admin();
        let (t1, t2, t3) = (target(1, "lk_1"), target(2, "lk_2"), target(3, "lk_3"));
        let (s1, s2, s3) = (
            SecretString::from("old-secret-1"),
            SecretString::from("new-secret-2"),
            SecretString::from("newer-secret-3"),
        );
        sink.put(&t1, &s1).await.unwrap();
        sink.finish(&t1).await.unwrap();

        // Written: the new version is AWSPENDING, consumers still read the
        // old one.
        let v2 = sink.put(&t2, &s2).await.unwrap();
        assert_eq!(v2.as_deref(), Some(t2.rotation_id.as_str()));
        sink.put(&t2, &s2).await.unwrap();
        assert_eq!(
            versions(&admin, NAME).await,
            vec![
                (t1.rotation_id.clone(), strings(&["AWSCURRENT"])),
                (t2.rotation_id.clone(), strings(&["AWSPENDING"])),
            ]
        );
        assert_eq!(current_value(&admin, NAME).await, "old-secret-1");
        // Read back by version id: each rotation sees its own secret.
        assert_eq!(
            sink.read_back(&t2).await.unwrap(),
            Some(sha256_hex(b"new-secret-2"))
        );
        assert_eq!(
            sink.read_back(&t1).await.unwrap(),
            Some(sha256_hex(b"old-secret-1"))
        );

        // Finished: new is current, old is previous; AWSPENDING stays on
        // the new version, as AWS's own rotation functions leave it.
        sink.finish(&t2).await.unwrap();
        let after = versions(&admin, NAME).await;
        assert_eq!(
            after,
            vec![
                (t1.rotation_id.clone(), strings(&["AWSPREVIOUS"])),
                (
                    t2.rotation_id.clone(),
                    strings(&["AWSCURRENT", "AWSPENDING"])
                ),
            ]
        );
        assert_eq!(current_value(&admin, NAME).await, "new-secret-2");
        assert_eq!(
            sink.read_back(&t2).await.unwrap(),
            Some(sha256_hex(b"new-secret-2"))
        );
        // A repeated finish is harmless.
        sink.finish(&t2).await.unwrap();
        assert_eq!(versions(&admin, NAME).await, after);

        // The next rotation moves AWSPENDING on; after its finish the
        // first version has no label left.
        sink.put(&t3, &s3).await.unwrap();
        assert_eq!(labels(&admin, NAME, &t3.rotation_id).await, ["AWSPENDING"]);
        assert_eq!(labels(&admin, NAME, &t2.rotation_id).await, ["AWSCURRENT"]);
        sink.finish(&t3).await.unwrap();
        assert_eq!(
            labels(&admin, NAME, &t3.rotation_id).await,
            ["AWSCURRENT", "AWSPENDING"]
        );
        assert_eq!(labels(&admin, NAME, &t2.rotation_id).await, ["AWSPREVIOUS"]);
        assert!(labels(&admin, NAME, &t1.rotation_id).await.is_empty());
        assert_eq!(current_value(&admin, NAME).await, "newer-secret-3");
    });
}

#[test]
fn create_false_on_a_missing_secret_is_a_permanent_error_and_read_back_finds_nothing() {
    let _env = env_shared();
    let moto = Moto::start();
    runtime().block_on(async {
        let sink = moto.sink(false, SecretFormat::Raw);
        let t = target(1, "lk_1");
        let err = sink
            .put(&t, &SecretString::from("never-written-secret"))
            .await
            .unwrap_err();
        assert!(!err.transient, "{err}");
        assert!(
            err.message
                .starts_with("sink \"aws\": secret \"keyrot/local/ci\" does not exist"),
            "{err}"
        );
        assert!(err.message.contains("`create = true`"), "{err}");
        assert_no_secret(&err.message, &["never-written-secret"]);
        assert_eq!(sink.read_back(&t).await.unwrap(), None);

        // The secret exists (created by someone else): the write lands, and
        // an unknown version of it reads back as nothing.
        call(
            &moto.admin(),
            "CreateSecret",
            json!({"Name": NAME, "SecretString": "made-by-the-operator"}),
        )
        .await;
        assert_eq!(sink.read_back(&t).await.unwrap(), None);
        sink.put(&t, &SecretString::from("now-written"))
            .await
            .unwrap();
        assert_eq!(
            sink.read_back(&t).await.unwrap(),
            Some(sha256_hex(b"now-written"))
        );
        assert_eq!(
            current_value(&moto.admin(), NAME).await,
            "made-by-the-operator"
        );
        sink.finish(&t).await.unwrap();
        assert_eq!(current_value(&moto.admin(), NAME).await, "now-written");
    });
}

#[test]
fn json_format_carries_the_metadata_and_reads_back_the_field() {
    let _env = env_shared();
    let moto = Moto::start();
    runtime().block_on(async {
        let sink = moto.sink(
            true,
            SecretFormat::Json {
                field: "api_key".into(),
            },
        );
        let t = target(7, "lk_7");
        sink.put(&t, &SecretString::from("json-secret-\"7\""))
            .await
            .unwrap();
        let stored = call(
            &moto.admin(),
            "GetSecretValue",
            json!({"SecretId": NAME, "VersionId": t.rotation_id}),
        )
        .await;
        let doc: Value = serde_json::from_str(stored["SecretString"].as_str().unwrap()).unwrap();
        assert_eq!(
            doc,
            json!({
                "api_key": "json-secret-\"7\"",
                "key_id": "lk_7",
                "rotation_id": t.rotation_id,
                "expires_at": "2027-06-01T00:00:00Z",
                "provider": "local",
                "slot": "local/ci",
            })
        );
        assert_eq!(
            sink.read_back(&t).await.unwrap(),
            Some(sha256_hex(b"json-secret-\"7\""))
        );
        // A retried put sends the same document: still one version.
        sink.put(&t, &SecretString::from("json-secret-\"7\""))
            .await
            .unwrap();
        assert_eq!(versions(&moto.admin(), NAME).await.len(), 1);

        // Read through a sink with another format, the stored document has
        // no such member: a clear error that shows no secret.
        let other = moto.sink(
            true,
            SecretFormat::Json {
                field: "token".into(),
            },
        );
        let err = other.read_back(&t).await.unwrap_err();
        assert!(!err.transient, "{err}");
        assert!(err.message.contains("\"token\""), "{err}");
        assert_no_secret(&err.message, &["json-secret-"]);
    });
}

#[test]
fn credentials_from_the_standard_environment_variables() {
    let _env = env_exclusive();
    let moto = Moto::start();
    let cfg = AwsSecretsManagerSinkConfig {
        credentials: AwsCredentialsConfig::Environment,
        ..moto.cfg(true, SecretFormat::Raw)
    };
    let vars = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ];
    let saved: Vec<Option<std::ffi::OsString>> = vars.iter().map(std::env::var_os).collect();
    let set = |values: [Option<&str>; 3]| {
        for (var, value) in vars.iter().zip(values) {
            // SAFETY: every other test of this binary waits on `ENV`, so no
            // other thread reads the environment meanwhile.
            unsafe {
                match value {
                    Some(v) => std::env::set_var(var, v),
                    None => std::env::remove_var(var),
                }
            }
        }
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime().block_on(async {
            // Built without the variables: they are read at each call.
            set([None, None, None]);
            let sink = AwsSecretsManagerSink::new("aws", &cfg, None).unwrap();
            let t = target(1, "lk_1");
            let secret = SecretString::from("env-written-secret");
            let err = sink.put(&t, &secret).await.unwrap_err();
            assert!(!err.transient, "{err}");
            assert!(
                err.message
                    .starts_with("sink \"aws\": AWS credentials: environment variable AWS_ACCESS_KEY_ID is not set"),
                "{err}"
            );
            set([Some("AKIAKEYROTENVIRON001"), Some(""), None]);
            let err = sink.put(&t, &secret).await.unwrap_err();
            assert!(!err.transient, "{err}");
            assert!(
                err.message.contains("environment variable AWS_SECRET_ACCESS_KEY is not set"),
                "{err}"
            );
            assert_no_secret(&err.message, &["env-written-secret"]);

            set([
                Some("AKIAKEYROTENVIRON001"),
                Some(ENV_SECRET_ACCESS_KEY),
                Some(SESSION_TOKEN),
            ]);
            assert_eq!(
                sink.put(&t, &secret).await.unwrap().as_deref(),
                Some(t.rotation_id.as_str())
            );
            assert_eq!(
                sink.read_back(&t).await.unwrap(),
                Some(sha256_hex(b"env-written-secret"))
            );
            sink.finish(&t).await.unwrap();
            assert_eq!(current_value(&moto.admin(), NAME).await, "env-written-secret");
            assert_no_secret(&format!("{sink:?}"), &["env-written-secret"]);
        });
    }));
    for (var, value) in vars.iter().zip(saved) {
        // SAFETY: as above.
        unsafe {
            match value {
                Some(v) => std::env::set_var(var, v),
                None => std::env::remove_var(var),
            }
        }
    }
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn file_references_with_a_session_token_sign_requests_moto_accepts() {
    let _env = env_shared();
    let moto = Moto::start();
    std::fs::write(moto.dir.path().join("st"), SESSION_TOKEN).unwrap();
    let cfg = AwsSecretsManagerSinkConfig {
        credentials: AwsCredentialsConfig::Refs {
            access_key_id: SecretRef::File(moto.dir.path().join("ak")),
            secret_access_key: SecretRef::File(moto.dir.path().join("sk")),
            session_token: Some(SecretRef::File(moto.dir.path().join("st"))),
        },
        ..moto.cfg(true, SecretFormat::Raw)
    };
    runtime().block_on(async {
        let sink = AwsSecretsManagerSink::new("aws", &cfg, None).unwrap();
        let t = target(1, "lk_1");
        sink.put(&t, &SecretString::from("with-token"))
            .await
            .unwrap();
        assert_eq!(
            sink.read_back(&t).await.unwrap(),
            Some(sha256_hex(b"with-token"))
        );
        assert_no_secret(&format!("{sink:?}"), &["with-token"]);
    });
    // A reference that cannot be read fails the build, naming the field.
    let broken = AwsSecretsManagerSinkConfig {
        credentials: AwsCredentialsConfig::Refs {
            access_key_id: SecretRef::File(moto.dir.path().join("ak")),
            secret_access_key: SecretRef::File(moto.dir.path().join("no-such-file")),
            session_token: None,
        },
        ..moto.cfg(true, SecretFormat::Raw)
    };
    let err = AwsSecretsManagerSink::new("aws", &broken, None).unwrap_err();
    assert!(!err.transient, "{err}");
    assert!(
        err.message
            .starts_with("sink \"aws\": `secret_access_key`: file"),
        "{err}"
    );
}

#[test]
fn a_server_that_is_down_is_transient_and_errors_show_no_secret() {
    let _env = env_shared();
    let mut moto = Moto::start();
    runtime().block_on(async {
        let sink = moto.sink(true, SecretFormat::Raw);
        let t = target(1, "lk_1");
        let secret = SecretString::from("down-server-secret");
        sink.put(&t, &secret).await.unwrap();

        // The same rotation id with another value is refused by AWS: a
        // permanent error that does not echo either value.
        let err = sink
            .put(&t, &SecretString::from("a-different-value"))
            .await
            .unwrap_err();
        assert!(!err.transient, "{err}");
        assert!(err.message.contains("PutSecretValue"), "{err}");
        assert_no_secret(&err.message, &["down-server-secret", "a-different-value"]);

        moto.peer.stop();
        let mut errors: Vec<CallError> = Vec::new();
        errors.push(sink.put(&target(2, "lk_2"), &secret).await.unwrap_err());
        errors.push(sink.read_back(&t).await.unwrap_err());
        errors.push(sink.finish(&t).await.unwrap_err());
        for e in &errors {
            assert!(e.transient, "{e}");
            assert!(e.message.starts_with("sink \"aws\": "), "{e}");
            assert_no_secret(&format!("{e} {e:?}"), &["down-server-secret"]);
        }
        assert_no_secret(&format!("{sink:?}"), &["down-server-secret"]);
        assert!(format!("{sink:?}").contains("[redacted]"));
    });
}
