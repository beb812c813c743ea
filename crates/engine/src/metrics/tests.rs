//! The registry and the text format: the exposition as Prometheus reads it
//! (names, types, HELP, labels and values) against the one keyrot wrote
//! before it used `prometheus-client`, escaping, cumulative histogram
//! buckets with `+Inf`, `_sum` and `_count`, HELP and TYPE before every
//! family, the rotation counter's seed from history, and the
//! `metrics_listen` field.

use std::collections::BTreeMap;

use super::gauges::Gauges;
use super::*;
use keyrot_core::model::Transition;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The sample lines of `text` that start with `prefix`.
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The value of the sample `series` (name and labels exactly as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn gauges() -> Gauges {
    Gauges {
        providers: vec!["local".into()],
        sinks: vec!["out".into()],
        ..Gauges::default()
    }
}

fn render(m: &Metrics, g: &Gauges) -> String {
    m.render(g).unwrap()
}

/// What Prometheus reads from an exposition: HELP and TYPE by family, and
/// the value of every series.
#[derive(Debug, PartialEq)]
struct Read {
    help: BTreeMap<String, String>,
    kind: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

fn read(text: &str) -> Read {
    let mut r = Read {
        help: BTreeMap::new(),
        kind: BTreeMap::new(),
        samples: BTreeMap::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            r.help.insert(name.into(), help.into());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            r.kind.insert(name.into(), kind.into());
        } else {
            let (series, v) = line.rsplit_once(' ').unwrap();
            // Process-wide, bumped by other tests of this binary.
            let v = if series.starts_with("keyrot_peer_answer_too_large_total") {
                0.0
            } else {
                v.parse().unwrap()
            };
            r.samples.insert(series.into(), v);
        }
    }
    r
}

#[test]
fn the_exposition_reads_as_the_one_written_before_prometheus_client() {
    let m = Metrics::new(ts("2026-01-01T00:00Z"));
    m.skip_seed();
    m.rotation_ended("local", RotationState::Completed);
    m.provider_error("local", "issue");
    m.provider_error("local", "revoke");
    m.old_key_lost("local");
    m.old_key_in_use("local");
    m.key_refused("local");
    m.key_ended("local", "vanished");
    m.sink_error("out");
    m.hook_error("reload");
    m.synced("local", ts("2026-01-01T00:10:00.250Z"));
    for ms in [3, 5, 700, 1_000_000] {
        m.step_took(RotationState::Issuing, Duration::from_millis(ms));
    }
    let mut g = gauges();
    g.providers.push("atl".into());
    g.keys.insert("local".into(), 3);
    g.keys.insert("atl".into(), 0);
    g.expiring.insert(("local".into(), "7d"), 1);
    g.expiring.insert(("local".into(), "30d"), 2);
    g.in_progress.insert(("local".into(), "failed"), 1);
    g.outbox_pending = 4;
    g.outbox_dead = 1;
    g.last_synced.insert("atl".into(), ts("2026-01-01T00:00Z"));
    let text = render(&m, &g);
    let before = include_str!("testdata/exposition.txt");
    assert_eq!(read(&text), read(before), "{text}");
    // The same lines, but for series order and `0.0` for `0`.
    assert_eq!(text.lines().count(), before.lines().count());
}

#[test]
fn label_values_are_escaped_and_help_is_not_quoted() {
    let m = Metrics::new(ts("2026-01-01T00:00Z"));
    m.sink_error("we\"ird\nsink\\");
    let text = render(&m, &gauges());
    assert!(
        text.contains("keyrot_sink_errors_total{sink=\"we\\\"ird\\nsink\\\\\"} 1\n"),
        "{text}"
    );
    assert!(text.contains(
        "# HELP keyrot_rotations_in_progress Unfinished rotations by provider and state; state \"failed\" waits for an operator.\n"
    ));
    assert_eq!(
        unix_seconds(ts("2026-01-01T00:00:00.250Z")),
        1_767_225_600.25
    );
}

#[test]
fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
    let m = Metrics::new(ts("2026-01-01T00:00Z"));
    m.step_took(RotationState::Issuing, Duration::from_millis(3));
    m.step_took(RotationState::Issuing, Duration::from_millis(5));
    m.step_took(RotationState::Issuing, Duration::from_millis(700));
    m.step_took(RotationState::Issuing, Duration::from_secs(1000));
    // Terminal states take no step: ignored.
    m.step_took(RotationState::Completed, Duration::from_secs(1));
    let text = render(&m, &gauges());
    let b = lines(
        &text,
        "keyrot_step_duration_seconds_bucket{step=\"issuing\"",
    );
    assert_eq!(b.len(), STEP_BUCKETS.len() + 1);
    assert_eq!(
        b[0],
        "keyrot_step_duration_seconds_bucket{step=\"issuing\",le=\"0.005\"} 2"
    );
    assert_eq!(
        b[6],
        "keyrot_step_duration_seconds_bucket{step=\"issuing\",le=\"0.5\"} 2"
    );
    assert_eq!(
        b[7],
        "keyrot_step_duration_seconds_bucket{step=\"issuing\",le=\"1\"} 3"
    );
    assert_eq!(
        b[13],
        "keyrot_step_duration_seconds_bucket{step=\"issuing\",le=\"300\"} 3"
    );
    assert_eq!(
        b[14],
        "keyrot_step_duration_seconds_bucket{step=\"issuing\",le=\"+Inf\"} 4"
    );
    let counts: Vec<u64> = b
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(
        lines(&text, "keyrot_step_duration_seconds_sum{step=\"issuing\"}"),
        ["keyrot_step_duration_seconds_sum{step=\"issuing\"} 1000.708"]
    );
    assert_eq!(
        lines(
            &text,
            "keyrot_step_duration_seconds_count{step=\"issuing\"}"
        ),
        ["keyrot_step_duration_seconds_count{step=\"issuing\"} 4"]
    );
    // Every step is listed, observed or not.
    assert_eq!(
        lines(
            &text,
            "keyrot_step_duration_seconds_count{step=\"revoking\"}"
        ),
        ["keyrot_step_duration_seconds_count{step=\"revoking\"} 0"]
    );
    assert_eq!(lines(&text, "keyrot_step_duration_seconds_count").len(), 9);
    assert!(!text.contains("step=\"completed\""));
}

#[test]
fn every_family_has_help_and_type_before_its_samples() {
    let m = Metrics::new(ts("2026-01-01T00:00Z"));
    m.skip_seed();
    m.provider_error("local", "issue");
    m.key_refused("local");
    m.key_refused("local");
    m.key_ended("local", "expired");
    m.synced("local", ts("2026-01-01T00:10Z"));
    let text = render(&m, &gauges());
    let mut declared = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            declared.push(name.to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = declared.last().unwrap();
            assert!(
                name == family
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{family}{s}")),
                "{line} is not in family {family}"
            );
        }
    }
    for name in [
        "keyrot_up",
        "keyrot_build_info",
        "keyrot_keys",
        "keyrot_keys_expiring",
        "keyrot_rotations_in_progress",
        "keyrot_outbox_messages",
        "keyrot_rotations_total",
        "keyrot_step_duration_seconds",
        "keyrot_provider_errors_total",
        "keyrot_sink_errors_total",
        "keyrot_keys_refused_total",
        "keyrot_keys_ended_total",
        "keyrot_peer_answer_too_large_total",
        "keyrot_last_sync_success_timestamp_seconds",
    ] {
        assert!(declared.iter().any(|d| d == name), "{name} missing");
    }
    assert!(text.contains("keyrot_provider_errors_total{provider=\"local\",op=\"issue\"} 1\n"));
    assert!(text.contains("keyrot_sink_errors_total{sink=\"out\"} 0\n"));
    assert!(text.contains("keyrot_keys_refused_total{provider=\"local\"} 2\n"));
    assert!(text.contains("keyrot_keys_ended_total{provider=\"local\",state=\"expired\"} 1\n"));
    assert!(text.contains("keyrot_keys_ended_total{provider=\"local\",state=\"vanished\"} 0\n"));
    // Every kind of peer is listed, counted or not.
    for peer in ["openbao", "aws", "azure", "atlassian", "http"] {
        let sample = format!("keyrot_peer_answer_too_large_total{{peer=\"{peer}\"}} ");
        assert!(text.contains(&sample), "{sample}");
    }
    assert_eq!(
        value(
            &text,
            "keyrot_last_sync_success_timestamp_seconds{provider=\"local\"}"
        ),
        Some(1_767_226_200.0)
    );
    assert!(text.contains(&format!(
        "keyrot_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
}

fn ended(provider: &str, at: &[(&str, RotationState)]) -> RotationRecord {
    let mut rec = crate::notify::examples::completed_rotation();
    rec.provider = provider.into();
    rec.history = at
        .iter()
        .map(|(t, s)| Transition {
            at: ts(t),
            to: *s,
            note: String::new(),
        })
        .collect();
    rec
}

#[test]
fn rotations_are_seeded_from_history_before_start_and_counted_after() {
    let m = Metrics::new(ts("2026-01-10T00:00Z"));
    m.rotation_ended("local", RotationState::Completed);
    m.rotation_ended("local", RotationState::Overlap);
    // Not shown until the store's history is counted.
    assert!(!render(&m, &gauges()).contains("keyrot_rotations_total"));
    let history = [
        // Failed, resumed and completed before the start: two endings.
        ended(
            "local",
            &[
                ("2026-01-01T00:00Z", RotationState::Pending),
                ("2026-01-01T00:01Z", RotationState::Failed),
                ("2026-01-02T00:00Z", RotationState::Issuing),
                ("2026-01-02T00:01Z", RotationState::Completed),
            ],
        ),
        // Ended after the start: already counted as it happened.
        ended(
            "local",
            &[
                ("2026-01-09T23:59Z", RotationState::Pending),
                ("2026-01-10T00:01Z", RotationState::Completed),
            ],
        ),
        ended(
            "other",
            &[
                ("2026-01-03T00:00Z", RotationState::Pending),
                ("2026-01-03T00:01Z", RotationState::Aborted),
            ],
        ),
    ];
    m.seed(&history);
    let text = render(&m, &gauges());
    let mut got = lines(&text, "keyrot_rotations_total{");
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "keyrot_rotations_total{provider=\"local\",result=\"aborted\"} 0",
            "keyrot_rotations_total{provider=\"local\",result=\"completed\"} 2",
            "keyrot_rotations_total{provider=\"local\",result=\"failed\"} 1",
            "keyrot_rotations_total{provider=\"other\",result=\"aborted\"} 1",
        ]
    );
}

#[test]
fn metrics_listen_is_an_ip_address_and_port() {
    let base = "[daemon]\nmetrics_listen = ";
    let name = std::path::Path::new("/etc/keyrot/keyrot.toml");
    let ok = |v: &str| {
        keyrot_config::load_str(name, &format!("{base}{v}\n"))
            .map(|c| c.daemon.metrics_listen)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        ok("\"127.0.0.1:9464\"").unwrap(),
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(ok("\"[::1]:0\"").unwrap(), Some("[::1]:0".parse().unwrap()));
    let absent = keyrot_config::load_str(name, "[daemon]\n").unwrap();
    assert_eq!(absent.daemon.metrics_listen, None);
    let e = ok("\"localhost:9464\"").unwrap_err();
    assert!(
        e.contains(
            "keyrot.toml:2:18: `metrics_listen` \"localhost:9464\" is not an IP address and port"
        ),
        "{e}"
    );
    let e = ok("9464").unwrap_err();
    assert!(e.contains("keyrot.toml:2:18:"), "{e}");
}

#[test]
fn the_last_sync_gauge_reads_the_sync_time_the_store_keeps() {
    use keyrot_core::crypto::MasterKey;
    use keyrot_core::model::KeyRecord;
    let dir = tempfile::tempdir().unwrap();
    let store =
        keyrot_core::store::Store::open(&dir.path().join("s.redb"), MasterKey::generate()).unwrap();
    let cfg = keyrot_config::load_str(
        std::path::Path::new("/etc/keyrot/keyrot.toml"),
        "[[provider]]\nname = \"local\"\ntype = \"local\"\n",
    )
    .unwrap();
    let now = ts("2026-01-02T00:00Z");
    // No sync yet: no sample.
    assert!(
        !Gauges::read(&store, &cfg, now)
            .unwrap()
            .last_synced
            .contains_key("local")
    );
    // A key written by the first sync, then a later sync that changed no
    // slot (it records only its time).
    let key: KeyRecord = serde_json::from_value(serde_json::json!({
        "slot": "local/a", "provider": "local", "name": "a", "current": null,
        "policy": "standard", "next_due": null, "due_reason": null,
        "active_rotation": null, "last_rotated_at": null, "last_started_at": null,
        "synced_at": "2026-01-01T00:00:00Z", "sinks": [], "scopes": [],
        "contacts": [], "group": null
    }))
    .unwrap();
    store
        .write(|tx| {
            tx.put_key(&key)?;
            tx.set_last_sync("local", ts("2026-01-01T23:00Z"))
        })
        .unwrap();
    let g = Gauges::read(&store, &cfg, now).unwrap();
    assert_eq!(g.last_synced.get("local"), Some(&ts("2026-01-01T23:00Z")));
    let text = render(&Metrics::new(now), &g);
    assert_eq!(
        value(
            &text,
            "keyrot_last_sync_success_timestamp_seconds{provider=\"local\"}"
        ),
        Some(1_767_308_400.0),
        "{text}"
    );
}
