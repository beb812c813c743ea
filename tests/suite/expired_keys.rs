//! A key that expires while keyrot is down: the local provider no longer
//! lists it when keyrot starts again, and keyrot tells of it once, loudly:
//! a mail to the key's contacts, an ERROR line, `keyrot_keys_ended_total`
//! and an `expired` row in `keyrot status`. The daemon is stopped for real
//! time, as long as the key's short lifetime needs. And a key revoked by
//! hand at the provider while keyrot is down (it vanishes from the
//! listing, or is listed revoked): told the same way.

use crate::common;

use std::time::Duration;

use common::{Daemon, Sandbox, all_files, atlassian_config, base_config, wait_until};

/// The local provider, policy `p` (auto_rotate off, keys live 4 s, a
/// ladder of 1m/30s as in the reproduction) with `security_contacts`, one
/// key `legacy` owned by `owner@example.com`, and a metrics endpoint.
fn config() -> String {
    let mut s = base_config(3).replacen(
        "[daemon]\n",
        "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n",
        1,
    );
    s.push_str(
        r#"
[[provider]]
name = "local"
type = "local"
default_lifetime = "1h"

[[policy]]
name = "p"
auto_rotate = false
new_key_lifetime = "4s"
notify_before_expiry = ["1m", "30s"]
jitter = false
notify = ["ops@example.com"]
security_contacts = ["security@example.com"]

[[key]]
name = "legacy"
provider = "local"
policy = "p"
sinks = ["out"]
scopes = ["read:all"]
contacts = ["owner@example.com"]
"#,
    );
    s
}

/// The raw `.eml` files whose Message-ID starts with `<prefix`, headers
/// unfolded.
fn mails(d: &Daemon, prefix: &str) -> Vec<String> {
    all_files(&d.dir.join("mail"))
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "eml"))
        .map(|(_, b)| {
            String::from_utf8(b)
                .unwrap()
                .replace("\r\n ", " ")
                .replace("\r\n\t", " ")
        })
        .filter(|m| {
            m.lines().any(|l| {
                l.strip_prefix("Message-ID: <")
                    .is_some_and(|id| id.starts_with(prefix))
            })
        })
        .collect()
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    mail.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or_default()
}

/// `log` without terminal colour codes.
fn plain(log: &str) -> String {
    let mut out = String::new();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The metrics endpoint's address of the `n`th start, from the log.
fn metrics_addr(d: &Daemon, n: usize) -> String {
    const LISTENING: &str = "metrics endpoint listening on http://";
    let find = || -> Option<String> {
        let log = d.log();
        let (i, _) = log.match_indices(LISTENING).nth(n - 1)?;
        let rest = &log[i + LISTENING.len()..];
        Some(rest[..rest.find("/metrics")?].to_string())
    };
    assert!(
        wait_until(Duration::from_secs(30), || find().is_some()),
        "no metrics address; log:\n{}",
        d.log()
    );
    find().unwrap()
}

fn scrape(addr: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        keyrot_core::crypto::tls::provider();
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

fn stop(d: &mut Daemon) {
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).unwrap().success());
}

fn synced(d: &Daemon) -> usize {
    d.log().matches("inventory synced").count()
}

#[test]
fn a_key_that_expired_while_keyrot_was_down_is_told_once_loudly() {
    let mut d = Daemon::new(&config());
    d.start();
    // auto_rotate is off: a person issues the first key.
    let id = d.rotate("local/legacy", "first key");
    d.wait_state(&id, "Completed", 30);
    let st = d.json(&["status", "--json"]);
    let key_id = st["keys"][0]["key_id"].as_str().unwrap().to_string();
    let expires: jiff::Timestamp = st["keys"][0]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    stop(&mut d);

    // keyrot is down while the key expires (real time: the reproduction).
    assert!(wait_until(Duration::from_secs(30), || common::wall_now()
        > expires + jiff::SignedDuration::from_secs(1)));
    d.start();

    // The mail: once, to every contact, saying EXPIRED and which key.
    assert!(
        wait_until(Duration::from_secs(30), || !mails(&d, "ended.").is_empty()),
        "no mail about the expired key; log:\n{}",
        d.log()
    );
    let got = mails(&d, "ended.");
    assert_eq!(got.len(), 1);
    let subject = header(&got[0], "Subject");
    assert!(subject.contains("EXPIRED"), "{subject}");
    assert!(subject.contains("local/legacy"), "{subject}");
    assert!(subject.contains(&key_id), "{subject}");
    let to = header(&got[0], "To");
    for who in [
        "ops@example.com",
        "security@example.com",
        "owner@example.com",
    ] {
        assert!(to.contains(who), "{who} not in {to}");
    }

    // The ERROR line names the key and when it ended.
    let log = plain(&d.log());
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains(&key_id))
        .unwrap_or_else(|| panic!("no ERROR line for {key_id}; log:\n{log}"));
    assert!(line.contains("EXPIRED"), "{line}");
    assert!(line.contains("ended_at="), "{line}");
    assert!(line.contains("local/legacy"), "{line}");

    // The metric.
    let text = scrape(&metrics_addr(&d, 2));
    assert!(
        text.contains("keyrot_keys_ended_total{provider=\"local\",state=\"expired\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("keyrot_keys_ended_total{provider=\"local\",state=\"vanished\"} 0\n"));

    // `status` says so, with the key and when.
    let st = d.json(&["status", "--json"]);
    let row = &st["keys"][0];
    assert!(row["key_id"].is_null(), "{row}");
    let flags: Vec<&str> = row["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(flags.contains(&"expired"), "{flags:?}");
    assert_eq!(row["ended"]["state"], "expired");
    assert_eq!(row["ended"]["key_id"], key_id.as_str());
    let ended_at: jiff::Timestamp = row["ended"]["ended_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(ended_at, expires);
    let table = String::from_utf8(d.cli(&["status"]).stdout).unwrap();
    assert!(table.contains("EXPIRED "), "{table}");
    assert!(table.contains(&format!("({key_id})")), "{table}");

    // A restart syncs again and does not tell it twice.
    let syncs = synced(&d);
    stop(&mut d);
    d.start();
    assert!(
        wait_until(Duration::from_secs(30), || synced(&d) > syncs),
        "no sync after the restart; log:\n{}",
        d.log()
    );
    assert!(wait_until(
        Duration::from_secs(30),
        || d.status()["outbox_queued"] == 0
    ));
    assert_eq!(mails(&d, "ended.").len(), 1);
    assert_eq!(
        d.json(&["status", "--json"])["keys"][0]["ended"]["state"],
        "expired"
    );
}

/// Revokes key `id` at the sandbox with the admin key, as a person in the
/// console would.
fn revoke_by_hand(sb: &Sandbox, id: &str) {
    let out = sb.curl(&[
        "-X",
        "PATCH",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Authorization: Bearer {}", sb.seeded_secret("keyrot")),
        &format!(
            "{}/admin/api-access/v1/orgs/demo-org/api-keys/revoke/{id}",
            sb.url
        ),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
}

#[test]
fn a_key_revoked_by_hand_while_keyrot_was_down_is_told_once_loudly() {
    let tmp = tempfile::tempdir().unwrap();
    let sb = Sandbox::start(&tmp.path().join("sandbox"));
    let policy = "auto_rotate = false\nnew_key_lifetime = \"365d\"\njitter = false\n";
    let cfg = atlassian_config(&sb, "proposed", policy, &["reporting"]).replacen(
        "[daemon]\n",
        "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n",
        1,
    );
    let mut d = Daemon::new(&cfg);
    d.start();
    d.wait_first_key();
    let key_id = d.json(&["status", "--json"])["keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    stop(&mut d);

    revoke_by_hand(&sb, &key_id);
    d.start();

    assert!(
        wait_until(Duration::from_secs(30), || !mails(&d, "ended.").is_empty()),
        "no mail about the revoked key; log:\n{}",
        d.log()
    );
    let got = mails(&d, "ended.");
    assert_eq!(got.len(), 1);
    let subject = header(&got[0], "Subject");
    assert!(subject.contains("atlassian/reporting"), "{subject}");
    assert!(subject.contains(&key_id), "{subject}");
    let to = header(&got[0], "To");
    assert!(
        to.contains("ops@example.com") && to.contains("security@example.com"),
        "{to}"
    );

    let log = plain(&d.log());
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains(&key_id)
            && l.contains("atlassian/reporting")),
        "no ERROR line for {key_id}; log:\n{log}"
    );
    let st = d.json(&["status", "--json"]);
    let row = &st["keys"][0];
    assert!(row["key_id"].is_null(), "{row}");
    assert_eq!(row["ended"]["key_id"], key_id.as_str());
    let state = row["ended"]["state"].as_str().unwrap().to_string();
    assert!(["vanished", "revoked"].contains(&state.as_str()), "{row}");
    let text = scrape(&metrics_addr(&d, 2));
    assert!(
        text.contains(&format!(
            "keyrot_keys_ended_total{{provider=\"atlassian\",state=\"{state}\"}} 1\n"
        )),
        "{text}"
    );
}
