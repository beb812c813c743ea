//! A consumer that reads its key file only at start and on SIGHUP (as many
//! services do), calling the API with its key all along, while keyrot
//! rotates that key again and again against `keyrot sandbox`: with a
//! `signal` reload hook no request fails; without one the consumer keeps
//! the key it started with, which is revoked at the end of the first
//! overlap, and its requests fail. The consumer counts every answer
//! (tests/consumer/consumer.py). `KEYROT_CONSUMER_ROTATIONS` rotations
//! (10 in CI; the acceptance figure in docs/consumers.md is from 50).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::{Daemon, Sandbox, atlassian_config, wait_until};

const KEY: &str = "ci-bot";
const POLICY: &str = r#"new_key_lifetime = "180d"
rotate_before_expiry = "10d"
overlap = "1s"
jitter = false"#;

/// The consumer process and its files.
struct Consumer {
    child: Child,
    status: PathBuf,
}

impl Consumer {
    /// Starts it on the key file `key_file`, once that holds a key.
    fn start(dir: &Path, key_file: &Path, sb: &Sandbox) -> Consumer {
        let status = dir.join("consumer.status");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/consumer/consumer.py");
        let url = format!(
            "{}/admin/api-access/v1/orgs/demo-org/api-keys/count",
            sb.url
        );
        let child = Command::new("python3")
            .arg(script)
            .arg(key_file)
            .arg(url)
            .arg(dir.join("consumer.pid"))
            .arg(&status)
            .spawn()
            .expect("python3");
        let c = Consumer { child, status };
        assert!(
            wait_until(Duration::from_secs(20), || c.counts().0 > 0),
            "the consumer made no request"
        );
        c
    }

    /// Requests that authenticated, requests refused with 401, key reloads.
    fn counts(&self) -> (u64, u64, u64) {
        let text = std::fs::read_to_string(&self.status).unwrap_or_default();
        let v: Vec<u64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        match v[..] {
            [ok, failed, reloads] => (ok, failed, reloads),
            _ => (0, 0, 0),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon against the sandbox with one key; `hooked` adds the `signal`
/// hook that sends the consumer SIGHUP.
fn world(hooked: bool) -> (Daemon, Sandbox, PathBuf) {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    let mut config = atlassian_config(&sb, "proposed", POLICY, &[KEY]);
    if hooked {
        config = config.replace(
            "sinks = [\"out\"]\n",
            "sinks = [\"out\"]\nhooks = [\"consumer\"]\n",
        );
        config.push_str(&format!(
            "\n[[hook]]\nname = \"consumer\"\naction = \"signal\"\nsignal = \"HUP\"\npid_file = \"{}\"\ndebounce = \"0s\"\n",
            d.dir.join("consumer.pid").display()
        ));
    }
    std::fs::write(d.config_path(), config).unwrap();
    // The key the consumer starts with: the one keyrot adopts.
    let key_file = d.dir.join("out").join(format!("{KEY}.json"));
    std::fs::create_dir_all(d.dir.join("out")).unwrap();
    let first = serde_json::json!({ "secret": sb.seeded_secret(KEY) });
    std::fs::write(&key_file, first.to_string()).unwrap();
    d.start();
    assert!(
        wait_until(Duration::from_secs(20), || {
            d.status()["keys"]
                .as_array()
                .is_some_and(|k| k.len() == 1 && k[0]["key_id"].is_string())
        }),
        "key not adopted; log:\n{}",
        d.log()
    );
    (d, sb, key_file)
}

fn rotations() -> usize {
    std::env::var("KEYROT_CONSUMER_ROTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

#[test]
fn a_consumer_that_rereads_only_on_sighup_never_sees_a_revoked_key_with_a_signal_hook() {
    let (d, sb, key_file) = world(true);
    let consumer = Consumer::start(&d.dir, &key_file, &sb);
    let runs = rotations();
    for i in 0..runs {
        let id = d.rotate(KEY, &format!("consumer run {i}"));
        let rec = d.wait_state(&id, "Completed", 60);
        assert!(rec["old_revoked_at"].is_string(), "{rec:#}");
        assert!(
            rec["hook_results"]["consumer"]["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("sent SIGHUP to process")),
            "{rec:#}"
        );
    }
    // A few more requests with the last key, then the counts.
    let (ok_before, _, _) = consumer.counts();
    assert!(wait_until(Duration::from_secs(10), || consumer.counts().0
        > ok_before + 5));
    let (ok, failed, reloads) = consumer.counts();
    println!(
        "consumer with a signal hook: {runs} rotations, {} requests, {failed} refused with a revoked key, {} reloads on SIGHUP",
        ok + failed,
        reloads - 1
    );
    assert_eq!(failed, 0, "requests failed with a revoked key");
    assert_eq!(
        reloads,
        runs as u64 + 1,
        "one reload per rotation (and the start)"
    );
}

#[test]
fn without_a_hook_the_same_consumer_fails_once_its_first_key_is_revoked() {
    let (d, sb, key_file) = world(false);
    let consumer = Consumer::start(&d.dir, &key_file, &sb);
    let id = d.rotate(KEY, "consumer run without a hook");
    let rec = d.wait_state(&id, "Completed", 60);
    assert!(rec["hook_results"].is_null(), "{rec:#}");
    assert!(
        wait_until(Duration::from_secs(20), || consumer.counts().1 > 0),
        "the consumer never failed: {:?}",
        consumer.counts()
    );
    let (ok, failed, reloads) = consumer.counts();
    println!(
        "consumer without a hook: 1 rotation, {} requests, {failed} refused with a revoked key, {} reloads",
        ok + failed,
        reloads - 1
    );
    assert_eq!(reloads, 1, "nothing told it to reload");
}
