//! The Prometheus endpoint of the real daemon: `metrics_listen` on port 0
//! (the bound address is read from the log), a first issue and a manual
//! rotation of a local-provider key, then a scrape over HTTP that counts
//! them, times their steps, counts a failing sink and the rotation it
//! fails, shows the sync and the expiring key, and holds no secret; other paths and methods answer 404; and after a restart the
//! rotation counter goes on from the store's history instead of resetting.

use crate::common;

use std::time::Duration;

use common::{Daemon, config, wait_until};

/// Keys live an hour: only the first issue and the rotation the test asks
/// for happen while it runs.
const POLICY: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "1s"
jitter = false"#;

/// A sink below a regular file, and key `beta` that writes to it.
const BROKEN: &str = r#"
[[sink]]
name = "broken"
type = "file"
path = "keyrot.toml/out/{name}.json"

[[key]]
name = "beta"
provider = "local"
policy = "fast"
sinks = ["broken"]
"#;

/// What the log says when the endpoint is up.
const LISTENING: &str = "metrics endpoint listening on http://";

/// The addresses the endpoint was bound to, one per start, from the log.
fn addresses(d: &Daemon) -> Vec<String> {
    d.log()
        .match_indices(LISTENING)
        .map(|(i, _)| {
            let rest = &d.log()[i + LISTENING.len()..];
            rest[..rest.find("/metrics").expect("address ends with /metrics")].to_string()
        })
        .collect()
}

/// Waits for the `n`th start's address.
fn address(d: &Daemon, n: usize) -> String {
    let ok = wait_until(Duration::from_secs(30), || addresses(d).len() >= n);
    assert!(ok, "no metrics address in the log:\n{}", d.log());
    addresses(d)[n - 1].clone()
}

/// Status, content type and body of `method url`.
fn fetch(method: &str, url: &str) -> (u16, String, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        keyrot_core::crypto::tls::provider();
        let r = reqwest::Client::new()
            .request(method, url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ctype, r.text().await.unwrap())
    })
}

/// The value of the sample `series` (name and labels exactly as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// Scrapes until `keyrot_rotations_total` is shown (the store's history is
/// counted in the background at start).
fn scrape(addr: &str) -> String {
    let mut body = String::new();
    let ok = wait_until(Duration::from_secs(30), || {
        let (status, ctype, text) = fetch("GET", &format!("http://{addr}/metrics"));
        assert_eq!(status, 200, "{text}");
        assert!(
            ctype.starts_with("text/plain; version=0.0.4"),
            "content type {ctype:?}"
        );
        body = text;
        body.contains("keyrot_rotations_total{")
    });
    assert!(ok, "keyrot_rotations_total never shown:\n{body}");
    body
}

/// The secret the JSON file sink holds for `name`.
fn sink_secret(d: &Daemon, name: &str) -> String {
    let v = d.sink(name).expect("sink file");
    v["secret"].as_str().expect("secret in sink").to_string()
}

#[test]
fn endpoint_counts_rotations_steps_and_syncs_without_secrets() {
    let mut cfg = config(POLICY, &["alpha"]).replacen(
        "[daemon]\n",
        "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n",
        1,
    );
    // Key `beta` goes to a sink that cannot be written (its directory
    // would be below a file): its first rotation fails.
    cfg.push_str(BROKEN);
    let mut d = Daemon::new(&cfg);
    d.start();
    let addr = address(&d, 1);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    // The first key is issued at start; then an operator rotates it.
    let first = wait_until(Duration::from_secs(60), || d.sink("alpha").is_some());
    assert!(first, "first key never written; log:\n{}", d.log());
    let mut secrets = vec![sink_secret(&d, "alpha")];
    let out = d.cli(&["rotate", "alpha", "--reason", "metrics test"]);
    assert!(out.status.success(), "{out:?}");
    let done = wait_until(Duration::from_secs(60), || {
        !d.completed_replacements("local/alpha").is_empty()
    });
    assert!(done, "rotation did not complete; log:\n{}", d.log());
    secrets.push(sink_secret(&d, "alpha"));
    assert_ne!(secrets[0], secrets[1]);
    let failed = wait_until(Duration::from_secs(60), || {
        d.rotations()
            .iter()
            .any(|r| r["slot"] == "local/beta" && r["state"] == "Failed")
    });
    assert!(failed, "beta's rotation did not fail; log:\n{}", d.log());

    let text = scrape(&addr);
    assert_eq!(value(&text, "keyrot_up"), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "keyrot_keys{provider=\"local\"}"),
        Some(2.0),
        "{text}"
    );
    // Alpha's key lives an hour: it expires within both windows (beta has
    // no key yet).
    for w in ["7d", "30d"] {
        assert_eq!(
            value(
                &text,
                &format!("keyrot_keys_expiring{{provider=\"local\",within=\"{w}\"}}")
            ),
            Some(1.0),
            "{text}"
        );
    }
    assert_eq!(
        value(
            &text,
            "keyrot_rotations_in_progress{provider=\"local\",state=\"failed\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let completed = "keyrot_rotations_total{provider=\"local\",result=\"completed\"}";
    let n = value(&text, completed).unwrap();
    assert!(n >= 2.0, "first issue and manual rotation: {text}");
    assert_eq!(
        value(
            &text,
            "keyrot_rotations_total{provider=\"local\",result=\"failed\"}"
        ),
        Some(1.0),
        "{text}"
    );
    for step in [
        "pending",
        "issuing",
        "distributing",
        "verifying",
        "revoking",
    ] {
        let count = value(
            &text,
            &format!("keyrot_step_duration_seconds_count{{step=\"{step}\"}}"),
        )
        .unwrap();
        assert!(count >= 1.0, "{step}: {text}");
        let inf = value(
            &text,
            &format!("keyrot_step_duration_seconds_bucket{{step=\"{step}\",le=\"+Inf\"}}"),
        );
        assert_eq!(inf, Some(count), "{step}: {text}");
    }
    let synced = value(
        &text,
        "keyrot_last_sync_success_timestamp_seconds{provider=\"local\"}",
    )
    .unwrap();
    assert!(synced > 1.7e9, "{text}");
    assert_eq!(
        value(&text, "keyrot_outbox_messages{state=\"dead\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "keyrot_sink_errors_total{sink=\"out\"}"),
        Some(0.0),
        "{text}"
    );
    // Three attempts (the test config's retry budget), each a failed write.
    assert_eq!(
        value(&text, "keyrot_sink_errors_total{sink=\"broken\"}"),
        Some(3.0),
        "{text}"
    );
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "a secret is in the scrape");
    }

    let (status, _, _) = fetch("GET", &format!("http://{addr}/other"));
    assert_eq!(status, 404);
    let (status, _, _) = fetch("POST", &format!("http://{addr}/metrics"));
    assert_eq!(status, 404);

    // After a restart the counter goes on from the store's history.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).is_some(), "no exit");
    d.start();
    let again = address(&d, 2);
    let text = scrape(&again);
    assert_eq!(value(&text, completed), Some(n), "{text}");
    assert_eq!(
        value(
            &text,
            "keyrot_rotations_total{provider=\"local\",result=\"failed\"}"
        ),
        Some(1.0),
        "{text}"
    );
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "a secret is in the scrape");
    }
}
