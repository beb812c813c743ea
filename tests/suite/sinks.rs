//! The real binary distributing one rotation to every kind of sink at
//! once: a real OpenBao (KV v2), a real moto (AWS Secrets Manager), the
//! Azure Key Vault emulator, an exec program and a file. Each ends up with
//! the same secret, `keyrot history` shows each sink's result, and a sink
//! that is down keeps the rotation retrying in Distributing (old key
//! untouched, across a kill -9 of keyrot) until it returns, with no second
//! key issued. `keyrot sink test` proves access through the daemon.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::azure::AzureEmulator;
use common::peers::{self, Peer, bao_api};
use common::{Daemon, wait_until};
use keyrot_core::crypto::sha256_hex;
use keyrot_peers::sink::SinkTarget;

/// Peers of one test, and the daemon using them.
struct World {
    bao: Peer,
    moto: Peer,
    azure: AzureEmulator,
    d: Daemon,
}

fn write_secret(dir: &Path, name: &str, value: &str) {
    let p = dir.join(name);
    fs::write(&p, value).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
}

fn world(tmp: &Path) -> World {
    let bao = peers::bao(&tmp.join("bao"));
    let moto = peers::moto(&tmp.join("moto"));
    let azure = AzureEmulator::start();
    // The daemon's directory is made first so secrets and scripts live in it.
    let mut d = Daemon::new("");
    let dir = d.dir.clone();
    write_secret(&dir, "bao-token", "root\n");
    write_secret(&dir, "aws-id", "AKIAKEYROTTEST000001\n");
    write_secret(&dir, "aws-secret", "keyrot-test-aws-secret-access-key\n");
    write_secret(&dir, "akv-secret", &format!("{}\n", azure.client_secret()));
    // The exec sink runs the example programs shipped in config/examples.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let put = examples
        .join("exec-sink-put.sh")
        .to_string_lossy()
        .into_owned();
    let read = examples
        .join("exec-sink-read.sh")
        .to_string_lossy()
        .into_owned();
    let hook_dir = dir.join("hook").to_string_lossy().into_owned();
    let base = common::base_config(1000);
    let config = format!(
        r#"{base}
[[provider]]
name = "local"
type = "local"

[[sink]]
name = "bao"
type = "openbao"
address = "{bao}"
path = "keyrot/{{provider}}/{{name}}"
token = {{ file = "bao-token" }}
timeout = "3s"

[[sink]]
name = "aws"
type = "aws-secretsmanager"
region = "us-east-1"
endpoint = "{moto}"
secret_name = "keyrot/{{provider}}/{{name}}"
create = true
access_key_id = {{ file = "aws-id" }}
secret_access_key = {{ file = "aws-secret" }}

[[sink]]
name = "akv"
type = "azure-keyvault"
vault_url = "{azure}"
authority_host = "{azure}"
secret_name = "{{provider}}-{{name}}"
tenant_id = "{tenant}"
client_id = "{client}"
client_secret = {{ file = "akv-secret" }}

[[sink]]
name = "hook"
type = "exec"
command = ["{put}", "{hook_dir}"]
read_command = ["{read}", "{hook_dir}"]

[[policy]]
name = "slow"
new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "2s"
jitter = false

[[key]]
name = "ci"
provider = "local"
policy = "slow"
sinks = ["out", "bao", "aws", "akv", "hook"]
"#,
        bao = bao.url,
        moto = moto.url,
        azure = azure.url(),
        tenant = azure.tenant_id(),
        client = azure.client_id(),
    );
    fs::write(d.config_path(), config).unwrap();
    d.start();
    World {
        bao,
        moto,
        azure,
        d,
    }
}

/// The rotations of `local/ci`, newest first.
fn rotations(d: &Daemon) -> Vec<serde_json::Value> {
    d.json(&["history", "ci", "--json"])["rotations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The newest rotation of `local/ci` once it is Completed.
fn wait_completed(d: &Daemon, id: Option<&str>) -> serde_json::Value {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(90), || {
        found = rotations(d)
            .into_iter()
            .find(|r| r["state"] == "Completed" && id.is_none_or(|id| r["id"] == id));
        found.is_some()
    });
    assert!(
        ok,
        "no completed rotation; history: {:#?}\nlog:\n{}",
        rotations(d),
        d.log()
    );
    found.unwrap()
}

/// The secret every sink should hold, from the file sink.
fn file_secret(d: &Daemon) -> String {
    d.sink("ci").expect("file sink")["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Reads every sink back through keyrot's own sinks (the Verifying path)
/// and each store directly, and checks they all hold `secret`.
fn assert_every_sink_holds(w: &World, rec: &serde_json::Value, secret: &str) {
    // Directly, without keyrot: OpenBao, the emulator, the exec target.
    let (code, body) = bao_api(&w.bao, "GET", "secret/data/keyrot/local/ci", None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["data"]["secret"], secret, "openbao");
    assert_eq!(
        v["data"]["metadata"]["custom_metadata"]["keyrot_rotation_id"], rec["id"],
        "openbao metadata: {v}"
    );
    let latest = w.azure.latest("local-ci").expect("azure secret");
    assert_eq!(latest.value, secret, "azure");
    assert_eq!(
        latest.tags.get("keyrot-rotation-id").map(String::as_str),
        rec["id"].as_str()
    );
    assert_eq!(
        fs::read_to_string(w.d.dir.join("hook/ci")).unwrap(),
        secret,
        "exec"
    );
    // Through the sinks keyrot built from the same config (AWS included:
    // the version written by this rotation, now AWSCURRENT).
    let cfg = keyrot_config::load(&w.d.config_path()).unwrap();
    let target = SinkTarget {
        slot: "local/ci".into(),
        provider: "local".into(),
        key_name: "ci".into(),
        key_id: rec["new_key"]["id"].as_str().unwrap().into(),
        rotation_id: rec["id"].as_str().unwrap().into(),
        expires_at: rec["new_key"]["expires_at"]
            .as_str()
            .map(|t| t.parse().unwrap()),
        probe: false,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for sc in &cfg.sinks {
        let sink = keyrot_peers::sink::build(sc).unwrap();
        let hash = rt.block_on(sink.read_back(&target)).unwrap();
        assert_eq!(
            hash.as_deref(),
            Some(sha256_hex(secret.as_bytes()).as_str()),
            "sink {}",
            sc.name
        );
    }
    let stages = rt.block_on(aws_stages(&w.moto, "keyrot/local/ci"));
    let ours = stages.get(rec["id"].as_str().unwrap());
    assert!(
        ours.is_some_and(|l| l.iter().any(|s| s == "AWSCURRENT")),
        "aws stages: {stages:?}"
    );
}

/// Version id → staging labels of an AWS secret, from moto.
async fn aws_stages(moto: &Peer, name: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    use keyrot_peers::aws::{AwsClient, AwsCredentials, CredentialSource};
    use secrecy::SecretString;
    let client = AwsClient::new(
        "test",
        "moto",
        "secretsmanager",
        "us-east-1",
        Some(&moto.url),
        CredentialSource::Static(AwsCredentials::new(
            SecretString::from("AKIAKEYROTADMIN00001"),
            SecretString::from("admin-secret"),
            None,
        )),
        jiff::SignedDuration::from_secs(10),
    )
    .unwrap();
    let body = serde_json::to_vec(&serde_json::json!({ "SecretId": name })).unwrap();
    let ans = client
        .json_call(
            "secretsmanager.DescribeSecret",
            zeroize::Zeroizing::new(body),
        )
        .await
        .unwrap();
    assert_eq!(
        ans.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&ans.body)
    );
    let v: serde_json::Value = serde_json::from_slice(&ans.body).unwrap();
    v["VersionIdsToStages"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, l)| {
            let labels = l
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string());
            (k.clone(), labels.collect())
        })
        .collect()
}

#[test]
fn one_rotation_reaches_every_sink_with_the_same_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let w = world(tmp.path());
    // The first key of the slot is issued and distributed at start.
    let first = wait_completed(&w.d, None);
    assert!(first["old_key_id"].is_null(), "{first}");
    let s1 = file_secret(&w.d);
    assert_every_sink_holds(&w, &first, &s1);

    // A rotation replaces it everywhere.
    let out = w.d.json(&["rotate", "ci", "--json"]);
    let id = out["id"].as_str().unwrap().to_string();
    let second = wait_completed(&w.d, Some(&id));
    assert_eq!(second["old_key_id"], first["new_key"]["id"]);
    let s2 = file_secret(&w.d);
    assert_ne!(s1, s2);
    assert_every_sink_holds(&w, &second, &s2);
    let results = second["sink_results"].as_object().unwrap();
    assert_eq!(results.len(), 5, "{second}");
    for (name, r) in results {
        assert!(
            r["written_at"].is_string() && r["verified_at"].is_string(),
            "{name}: {r}"
        );
    }
    assert_eq!(results["bao"]["version"], "v2", "{second}");
    // The human history shows each sink's result.
    let text = String::from_utf8(w.d.cli(&["history", "ci"]).stdout).unwrap();
    for name in ["out", "bao", "aws", "akv", "hook"] {
        assert!(
            text.contains(&format!("{name}: written ✓ verified ✓")),
            "{text}"
        );
    }
    // AWS keeps the old secret as AWSPREVIOUS; Azure got the new key's expiry.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stages = rt.block_on(aws_stages(&w.moto, "keyrot/local/ci"));
    let old = stages.get(first["id"].as_str().unwrap()).unwrap();
    assert!(old.iter().any(|s| s == "AWSPREVIOUS"), "{stages:?}");
    // No secret anywhere keyrot writes for itself: log, mail, store, audit
    // (only the sinks hold it).
    for (path, bytes) in common::all_files(&w.d.dir) {
        let rel = path.strip_prefix(&w.d.dir).unwrap();
        if rel.starts_with("out") || rel.starts_with("hook") {
            continue;
        }
        for secret in [&s1, &s2] {
            assert!(
                !bytes
                    .windows(secret.len())
                    .any(|win| win == secret.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
    let latest = w.azure.latest("local-ci").unwrap();
    let exp: jiff::Timestamp = second["new_key"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(latest.exp, Some(exp.as_second()));
}

#[test]
fn a_sink_that_is_down_holds_the_rotation_in_distributing_until_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = world(tmp.path());
    let first = wait_completed(&w.d, None);
    let old_id = first["new_key"]["id"].as_str().unwrap().to_string();

    w.bao.stop();
    let out = w.d.json(&["rotate", "ci", "--json"]);
    let id = out["id"].as_str().unwrap().to_string();
    let show = |d: &Daemon| d.json(&["rotation", "show", &id, "--json"]);
    let mut rec = serde_json::Value::Null;
    let retrying = wait_until(Duration::from_secs(60), || {
        rec = show(&w.d);
        rec["state"] == "Distributing"
            && rec["attempts"].as_u64().unwrap_or(0) >= 2
            && rec["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("sink \"bao\""))
    });
    assert!(
        retrying,
        "not retrying in Distributing: {rec:#}\n{}",
        w.d.log()
    );
    let new_id = rec["new_key"]["id"].as_str().unwrap().to_string();
    // The other sinks are written; the old key is untouched and still current.
    assert!(
        rec["sink_results"]["out"]["written_at"].is_string(),
        "{rec}"
    );
    assert!(rec["old_revoked_at"].is_null(), "{rec}");
    let key = w.d.json(&["keys", "--json"]);
    assert!(key.to_string().contains(&old_id), "{key}");

    // keyrot dies mid-distribution and comes back while OpenBao is still down.
    w.d.kill9();
    w.d.start();
    let before = show(&w.d)["attempts"].as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || show(&w.d)["attempts"]
            .as_u64()
            .unwrap()
            > before),
        "no retry after restart: {}",
        w.d.log()
    );
    assert_eq!(show(&w.d)["state"], "Distributing");

    // OpenBao returns (empty: dev mode keeps nothing) and the rotation completes.
    w.bao.start();
    let done = wait_completed(&w.d, Some(&id));
    assert_eq!(
        done["new_key"]["id"],
        new_id.as_str(),
        "a second key was issued: {done}"
    );
    assert_eq!(done["old_key_id"], old_id.as_str());
    // Exactly two rotations ever (first key, this one): nothing else issued.
    assert_eq!(rotations(&w.d).len(), 2);
    let secret = file_secret(&w.d);
    assert_every_sink_holds(&w, &done, &secret);
}

#[test]
fn sink_test_probes_each_sink_through_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = world(tmp.path());
    for name in ["out", "bao", "aws", "akv", "hook"] {
        let report = w.d.json(&["sink", "test", name, "--json"]);
        assert_eq!(report["sink"], name);
        assert_eq!(report["read_back"], "matched", "{report}");
    }
    // The probe lands beside the keys, never on one.
    let (code, _) = bao_api(&w.bao, "GET", "secret/data/keyrot/local/keyrot-probe", None);
    assert_eq!(code, 200);
    assert!(w.azure.latest("keyrot-probe").is_some());
    assert!(w.d.dir.join("out/keyrot-probe").exists());
    // An unknown sink is a clear error.
    let out = w.d.cli(&["sink", "test", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no sink named \"nope\""), "{err}");
    // With the daemon stopped, the CLI probes by itself.
    w.d.kill9();
    let out = w.d.cli(&["sink", "test", "bao"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("read back: matched") && text.contains("run here (no daemon answers)"),
        "{text}"
    );
}
