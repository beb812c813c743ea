//! Webhooks end to end, against a real HTTP receiver over loopback
//! (`tests/webhook_receiver.py`) that verifies every signature from the
//! documented contract: delivery at least once across a receiver outage
//! and a kill -9, duplicates only with the same event id, event filters,
//! the Slack body, a receiver that refuses the signature, and
//! `keyrot notify test`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::webhook::Receiver;
use common::{Daemon, config, wait_until, write_secret};
use serde_json::Value;

/// The secret keyrot and the receiver share.
const SECRET: &str = "whsec-7f3a9c1e5b2d4a6f8e0c";

/// A policy whose rotations complete at once (no overlap): one
/// `rotation.completed` event each.
const POLICY: &str = r#"new_key_lifetime = "1h"
rotate_before_expiry = "10m"
overlap = "0s"
jitter = false
"#;

/// `keys` local keys and a webhook to `url` taking `events`, signed with
/// `hook.secret`, retrying every 1-2 s for up to `attempts`.
fn with_webhook(keys: usize, url: &str, events: &str, attempts: u32, extra: &str) -> String {
    let names: Vec<String> = (0..keys).map(|i| format!("k{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut s = config(POLICY, &refs);
    s.push_str(&format!(
        r#"
[[notify.webhook]]
name = "ops"
url = "{url}"
secret = {{ file = "hook.secret" }}
events = {events}
retry_initial = "1s"
retry_max = "2s"
attempts = {attempts}
{extra}
"#
    ));
    s
}

fn daemon(cfg: &str) -> Daemon {
    let d = Daemon::new(cfg);
    write_secret(&d.dir.join("hook.secret"), SECRET);
    d
}

/// The ids of the deliveries the receiver accepted (valid signature).
fn accepted_ids(r: &Receiver) -> BTreeSet<String> {
    r.requests()
        .into_iter()
        .filter(|q| q["signature_ok"] == true)
        .filter_map(|q| q["id"].as_str().map(str::to_string))
        .collect()
}

fn restart(d: &mut Daemon) {
    // A killed daemon leaves its socket behind: the next CLI call must
    // wait for the new daemon, not find the dead one's file.
    let _ = std::fs::remove_file(d.dir.join("control.sock"));
    d.start();
}

#[test]
fn a_hundred_events_survive_a_sixty_second_receiver_outage_and_a_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(&tmp.path().join("rx"), SECRET);
    let mut d = daemon(&with_webhook(
        50,
        &rx.url(),
        r#"["rotation.completed"]"#,
        1000,
        "",
    ));
    d.start();
    // Phase 1: the 50 first issues, delivered while the receiver is up.
    assert!(
        wait_until(Duration::from_secs(120), || accepted_ids(&rx).len() == 50),
        "first 50 events not delivered: {} ; log:\n{}",
        accepted_ids(&rx).len(),
        d.log()
    );
    // Phase 2: the receiver goes away for 60 s. 25 rotations, kill -9, a
    // restart, 25 more rotations: 50 events queued while nobody listens.
    rx.stop();
    let outage = Instant::now();
    for i in 0..25 {
        d.rotate(&format!("k{i:03}"), "webhook outage test");
    }
    assert!(
        wait_until(Duration::from_secs(60), || d
            .log()
            .matches("notification not delivered")
            .count()
            >= 5),
        "no failed delivery before the kill; log:\n{}",
        d.log()
    );
    d.kill9();
    restart(&mut d);
    for i in 25..50 {
        d.rotate(&format!("k{i:03}"), "webhook outage test");
    }
    // The outage lasts 60 s (the scenario's length): the receiver comes
    // back once that much time has passed and the 50 events of the outage
    // are all queued (every rotation finished, the mail delivered); none
    // may be given up meanwhile.
    let status = || d.status();
    assert!(
        wait_until(Duration::from_secs(120), || {
            let st = status();
            assert_eq!(st["outbox_dead"], 0, "a delivery given up: {st}");
            outage.elapsed() >= Duration::from_secs(60)
                && st["active_rotations"] == 0
                && st["outbox_queued"] == 50
        }),
        "the outage's 50 events are not all queued: {}; log:\n{}",
        status(),
        d.log()
    );
    rx.resume();
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(120), || accepted_ids(&rx).len() == 100),
        "{} of 100 events delivered; log:\n{}",
        accepted_ids(&rx).len(),
        d.log()
    );
    let flushed_in = back.elapsed();

    let reqs = rx.requests();
    let valid: Vec<&Value> = reqs.iter().filter(|q| q["signature_ok"] == true).collect();
    assert_eq!(valid.len(), reqs.len(), "every delivery signed validly");
    // Duplicates only with the same event id: one body per id, the
    // header's id is the body's, and each is one rotation's completion.
    let mut bodies: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut rotations = BTreeSet::new();
    let mut slots = BTreeMap::<String, usize>::new();
    for q in &valid {
        let id = q["id"].as_str().unwrap();
        assert_eq!(q["header_id"].as_str(), Some(id));
        assert_eq!(q["event"], "rotation.completed");
        assert_eq!(q["header_event"], "rotation.completed");
        assert_eq!(q["content_type"], "application/json");
        bodies
            .entry(id)
            .or_default()
            .insert(q["body_sha256"].as_str().unwrap());
        let body: Value = serde_json::from_str(q["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["version"], 1);
        let installation = body["installation"].as_str().unwrap();
        assert!(id.ends_with(&format!(".completed.{installation}")), "{id}");
        rotations.insert(body["data"]["rotation_id"].as_str().unwrap().to_string());
        *slots
            .entry(body["data"]["slot"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for (id, shas) in &bodies {
        assert_eq!(shas.len(), 1, "event {id} delivered with different bodies");
    }
    assert_eq!(bodies.len(), 100);
    assert_eq!(rotations.len(), 100, "100 distinct rotations");
    let per_slot: BTreeSet<usize> = slots.values().copied().collect();
    assert_eq!(
        per_slot,
        BTreeSet::from([2]),
        "each key: first issue + one rotation"
    );
    // No delivery is left queued or dead.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let st = d.status();
            st["outbox_queued"] == 0 && st["outbox_dead"] == 0
        }),
        "outbox not empty: {}",
        d.json(&["status", "--json"])
    );
    println!(
        "webhook outage: 100 events, {} deliveries ({} duplicates), all signatures valid; \
         flushed {:.1} s after the receiver came back",
        valid.len(),
        valid.len() - 100,
        flushed_in.as_secs_f64()
    );
    let log = d.log();
    assert!(!log.contains(SECRET), "the webhook secret in the log");
}

#[test]
fn filters_slack_bodies_and_a_receiver_that_refuses_the_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(&tmp.path().join("rx"), SECRET);
    let slack = Receiver::start(&tmp.path().join("slack"), "not-the-secret");
    let extra = format!(
        r#"
[[notify.webhook]]
name = "chat"
url = "{}"
format = "slack"
events = ["rotation.*"]
retry_initial = "1s"
retry_max = "1s"
attempts = 2
"#,
        slack.url()
    );
    // `ops` takes failures only: a first issue is not one.
    let mut d = daemon(&with_webhook(
        1,
        &rx.url(),
        r#"["rotation.failed"]"#,
        3,
        &extra,
    ));
    d.start();
    d.wait_first_key();
    // The Slack receiver gets the completion, unsigned: it answers 401,
    // so the delivery is retried, then dead after its 2 attempts.
    assert!(
        wait_until(Duration::from_secs(30), || slack.requests().len() >= 2),
        "slack deliveries: {:?}; log:\n{}",
        slack.requests(),
        d.log()
    );
    let first = &slack.requests()[0];
    assert_eq!(first["signature_ok"], false);
    let body: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with('*') && text.contains("local/k000"),
        "{text}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "only `text`: {body}");
    assert!(
        wait_until(Duration::from_secs(30), || d.status()["outbox_dead"] == 1),
        "{}",
        d.json(&["status", "--json"])
    );
    let st = d.json(&["status", "--json"]);
    assert!(
        st["outbox_dead_ids"][0]
            .as_str()
            .unwrap()
            .ends_with(" webhook:chat"),
        "{st}"
    );
    assert!(d.log().contains("receiver answered 401"), "{}", d.log());
    assert!(
        rx.requests().is_empty(),
        "ops wants failures only: {:?}",
        rx.requests()
    );
}

#[test]
fn notify_test_reaches_every_webhook_and_fails_loudly_when_one_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(&tmp.path().join("rx"), SECRET);
    let d = daemon(&with_webhook(1, &rx.url(), r#"["rotation.*"]"#, 3, ""));
    let out = d.cli(&["notify", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("delivered to webhook \"ops\""));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["signature_ok"], true);
    assert_eq!(reqs[0]["event"], "test");
    // A wrong secret: the receiver refuses it and the command says so.
    write_secret(&d.dir.join("hook.secret"), "wrong");
    let out = d.cli(&["notify", "test", "--webhook", "ops"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("webhook \"ops\"") && err.contains("401"),
        "{err}"
    );
    let out = d.cli(&["notify", "test", "--webhook", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhooks: ops"));
}

#[test]
fn a_plain_http_url_off_loopback_and_an_unsigned_keyrot_webhook_are_refused() {
    let cfg = with_webhook(1, "http://hooks.example.com/T0KEN", "[]", 3, "");
    let d = daemon(&cfg);
    let out = d.cli(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keyrot.toml:") && err.contains("plain http"),
        "{err}"
    );
    assert!(!err.contains("T0KEN"), "the URL is not echoed: {err}");
    let cfg = with_webhook(1, "https://hooks.example.com/x", "[]", 3, "")
        .replace("secret = { file = \"hook.secret\" }\n", "");
    let d = daemon(&cfg);
    let out = d.cli(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs `secret`"), "{err}");
}

/// A kill at each side of one webhook post: before it, the delivery is
/// made once after the restart; after the receiver accepted it but before
/// keyrot recorded it, it is made again under the same event id (at least
/// once, the duplicate recognisable) — and never a third time.
#[cfg(feature = "failpoints")]
#[test]
fn a_kill_around_a_webhook_post_delivers_again_under_the_same_id() {
    for (fp, copies) in [("before:webhook-send", 1), ("after:webhook-send", 2)] {
        let tmp = tempfile::tempdir().unwrap();
        let rx = Receiver::start(&tmp.path().join("rx"), SECRET);
        let mut d = daemon(&with_webhook(1, &rx.url(), r#"["rotation.*"]"#, 16, ""));
        d.env
            .push(("KEYROT_FAILPOINTS".into(), format!("{fp}=abort")));
        d.spawn();
        // The key's first rotation (it has none yet) starts at once; its
        // event is the first delivery, and that post aborts keyrot.
        assert!(
            d.wait_exit(Duration::from_secs(60)).is_some(),
            "{fp}: the failpoint did not stop keyrot; log:\n{}",
            d.log()
        );
        let before = rx.requests().len();
        assert_eq!(before, copies - 1, "{fp}: {:?}", rx.requests());
        d.env.clear();
        restart(&mut d);
        let done = wait_until(Duration::from_secs(60), || rx.requests().len() == copies);
        assert!(done, "{fp}: {:?}; log:\n{}", rx.requests(), d.log());
        let drained = wait_until(Duration::from_secs(30), || {
            let st = d.status();
            st["outbox_queued"] == 0 && st["outbox_dead"] == 0
        });
        assert!(drained, "{fp}: outbox not empty; log:\n{}", d.log());
        let reqs = rx.requests();
        let ids: BTreeSet<&str> = reqs.iter().filter_map(|q| q["id"].as_str()).collect();
        assert_eq!(ids.len(), 1, "{fp}: {reqs:?}");
        assert!(
            reqs.iter().all(|q| q["signature_ok"] == true),
            "{fp}: {reqs:?}"
        );
        assert!(
            reqs.iter().all(|q| q["event"] == "rotation.completed"),
            "{fp}: {reqs:?}"
        );
    }
}
