//! The documented example of each message kind: fixed inputs whose
//! rendering `docs/notifications.md` shows word for word (a unit test keeps
//! the two in step), and against which `templates::check_dir` tries an
//! operator's overrides.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::message::{
    Composer, assisted_vars, completed_vars, failed_vars, live_vars, revoked_vars,
};
use super::render::Vars;
use super::templates::Templates;
use keyrot_config::Config;
use keyrot_core::model::{
    Initiator, KeyInfo, KeyRecord, NewKey, OutboxMessage, RotationRecord, RotationState,
    SinkResult, Transition, Trigger,
};

/// The host the examples' footers name.
pub const HOST: &str = "vm1.example.com";

/// The config of the examples: two policies, file transport.
const CONFIG: &str = r#"
[notify]
from = "keyrot@example.com"
transport = "file"
dir = "/var/lib/keyrot/mail"

[[provider]]
name = "atlassian"
type = "atlassian"
org_id = "8f7c2b1e-acme"
admin_key = { credential = "atlassian-admin-key" }

[[policy]]
name = "standard"
rotate_before_expiry = "30d"
overlap = "24h"
notify = ["ops@example.com"]
security_contacts = ["security@example.com"]
notify_before_expiry = ["30d", "14d", "7d", "1d"]

[[policy]]
name = "manual"
auto_rotate = false
notify = ["ops@example.com"]
notify_before_expiry = ["30d", "14d", "7d", "1d"]
"#;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

/// When the examples happen.
pub fn now() -> Timestamp {
    ts("2026-11-23T09:00:00Z")
}

/// The examples' config, or None if it no longer loads (a test fails).
pub fn config() -> Option<Arc<Config>> {
    keyrot_config::load_str(Path::new("/etc/keyrot/keyrot.toml"), CONFIG)
        .ok()
        .map(Arc::new)
}

fn key(name: &str, policy: &str, id: &str, scopes: &[&str], expires: &str) -> KeyRecord {
    KeyRecord {
        slot: format!("atlassian/{name}"),
        provider: "atlassian".into(),
        name: name.into(),
        current: Some(KeyInfo {
            id: id.into(),
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_by: Some("alice@example.com".into()),
            created_at: Some(ts("2025-11-01T00:00:00Z")),
            expires_at: Some(ts(expires)),
            last_used_at: None,
            tags: BTreeMap::new(),
        }),
        policy: policy.into(),
        next_due: None,
        due_reason: None,
        active_rotation: None,
        last_rotated_at: None,
        last_started_at: None,
        synced_at: Some(ts("2026-11-23T08:45:00Z")),
        sinks: vec!["vault".into(), "backup".into()],
        hooks: Vec::new(),
        scopes: Vec::new(),
        contacts: vec!["ci-owner@example.com".into()],
        group: None,
        ended: None,
        kept_secret: None,
    }
}

/// The slot `atlassian/ci-bot`, its rotation running.
pub fn ci_bot() -> KeyRecord {
    let mut k = key(
        "ci-bot",
        "standard",
        "key-2025-11",
        &["read:jira-work", "write:jira-work"],
        "2026-12-01T00:00:00Z",
    );
    k.active_rotation = Some(completed_rotation().id);
    k
}

fn step(at: &str, to: RotationState, note: &str) -> Transition {
    Transition {
        at: ts(at),
        to,
        note: note.into(),
    }
}

/// A rotation of `atlassian/ci-bot` asked for through the API.
fn rotation() -> RotationRecord {
    let started = ts("2026-11-22T09:00:00Z");
    RotationRecord {
        id: "0194f3c2-7b1e-7c4a-9d2e-5b8f0a1c3d4e".into(),
        slot: "atlassian/ci-bot".into(),
        provider: "atlassian".into(),
        policy: "standard".into(),
        state: RotationState::Pending,
        trigger: Trigger::Manual,
        reason: "yearly rotation before the key expires".into(),
        initiator: Initiator {
            rotated_by: Some("user@email.com".into()),
            initiated_from: Some("terraform".into()),
            rotation_policy_id: Some("pol-annual".into()),
        },
        old_key_id: Some("key-2025-11".into()),
        old_expires_at: Some(ts("2026-12-01T00:00:00Z")),
        requested_new_expiry: Some(ts("2027-11-01T00:00:00Z")),
        requested_old_expiry: None,
        scopes: vec!["read:jira-work".into(), "write:jira-work".into()],
        new_key: None,
        sinks: vec!["vault".into(), "backup".into()],
        sink_results: BTreeMap::new(),
        hooks: Vec::new(),
        hook_results: BTreeMap::new(),
        revoke_old_at: None,
        old_revoked_at: None,
        old_lost_at: None,
        revoke_also: Vec::new(),
        throttled: 0,
        attempts: 0,
        retry_at: None,
        last_error: None,
        failed_in: None,
        notify_contacts: true,
        reveal_psk: Some("caller".into()),
        created_at: started,
        updated_at: started,
        history: vec![step(
            "2026-11-22T09:00:00Z",
            RotationState::Pending,
            "yearly rotation before the key expires",
        )],
        old_last_use: None,
        old_last_use_checked_at: None,
        in_use_alerted_at: None,
    }
}

fn new_key() -> NewKey {
    NewKey {
        id: "key-2026-11".into(),
        expires_at: Some(ts("2027-11-01T00:00:00Z")),
        // What the record holds; a test checks it never reaches a message.
        secret_sha256: "9f2c4e1ab37d5e80c6a1f0e2d4b7c9a8e3f5d1b0c2a4e6f8091a3b5c7d9e1f20".into(),
        scopes: vec!["read:jira-work".into(), "write:jira-work".into()],
    }
}

/// The rotation, completed: new key in both sinks, old key revoked after
/// a day of overlap.
pub fn completed_rotation() -> RotationRecord {
    let mut r = rotation();
    let results = [
        ("vault", "2026-11-22T09:00:02Z"),
        ("backup", "2026-11-22T09:00:03Z"),
    ];
    for (sink, at) in results {
        r.sink_results.insert(
            sink.into(),
            SinkResult {
                written_at: ts(at),
                verified_at: Some(ts("2026-11-22T09:00:04Z")),
                version: None,
            },
        );
    }
    r.new_key = Some(new_key());
    r.revoke_old_at = Some(ts("2026-11-23T09:00:04Z"));
    r.old_revoked_at = Some(ts("2026-11-23T09:00:05Z"));
    r.state = RotationState::Completed;
    r.updated_at = ts("2026-11-23T09:00:05Z");
    r.history.extend([
        step("2026-11-22T09:00:00Z", RotationState::Issuing, "issuing"),
        step(
            "2026-11-22T09:00:01Z",
            RotationState::Issued,
            "issued key-2026-11",
        ),
        step(
            "2026-11-22T09:00:01Z",
            RotationState::Distributing,
            "distributing",
        ),
        step(
            "2026-11-22T09:00:03Z",
            RotationState::Verifying,
            "all sinks written",
        ),
        step("2026-11-22T09:00:04Z", RotationState::Overlap, "verified"),
        step(
            "2026-11-23T09:00:04Z",
            RotationState::Revoking,
            "overlap over",
        ),
        step(
            "2026-11-23T09:00:05Z",
            RotationState::Completed,
            "old key revoked",
        ),
    ]);
    r
}

/// The rotation when it entered Overlap: the new key live in both sinks,
/// the old key valid for a day more.
pub fn live_rotation() -> RotationRecord {
    let mut r = completed_rotation();
    r.old_revoked_at = None;
    r.state = RotationState::Overlap;
    r.updated_at = ts("2026-11-22T09:00:04Z");
    r.history
        .retain(|t| !matches!(t.to, RotationState::Revoking | RotationState::Completed));
    r
}

/// The rotation completed without an overlap (`overlap = "0s"`): the old
/// key revoked in the same run that made the new one live.
pub fn completed_at_once() -> RotationRecord {
    let mut r = completed_rotation();
    r.revoke_old_at = Some(ts("2026-11-22T09:00:04Z"));
    r.old_revoked_at = Some(ts("2026-11-22T09:00:05Z"));
    r.updated_at = ts("2026-11-22T09:00:05Z");
    for t in &mut r.history {
        match t.to {
            RotationState::Revoking => t.at = ts("2026-11-22T09:00:04Z"),
            RotationState::Completed => t.at = ts("2026-11-22T09:00:05Z"),
            _ => {}
        }
    }
    r
}

/// The rotation, failed while writing its first sink.
pub fn failed_rotation() -> RotationRecord {
    let mut r = rotation();
    r.new_key = Some(new_key());
    r.state = RotationState::Failed;
    r.attempts = 5;
    r.failed_in = Some(RotationState::Distributing);
    r.last_error =
        Some("sink \"vault\": 503 Service Unavailable from vault.example.com: sealed".into());
    r.updated_at = ts("2026-11-22T09:31:00Z");
    r.history.extend([
        step("2026-11-22T09:00:00Z", RotationState::Issuing, "issuing"),
        step(
            "2026-11-22T09:00:01Z",
            RotationState::Issued,
            "issued key-2026-11",
        ),
        step(
            "2026-11-22T09:00:01Z",
            RotationState::Distributing,
            "distributing",
        ),
        step(
            "2026-11-22T09:31:00Z",
            RotationState::Failed,
            "failed in distributing",
        ),
    ]);
    r
}

/// An assisted rotation of `atlassian/reporting`, waiting for a person.
pub fn assisted_rotation() -> RotationRecord {
    let mut r = rotation();
    r.id = "0194f3c9-1c2d-7e3f-8a4b-6c5d7e8f9a0b".into();
    r.slot = "atlassian/reporting".into();
    r.trigger = Trigger::Schedule;
    r.reason = "due: 30d before expiry (lead time)".into();
    r.initiator = Initiator {
        rotated_by: Some("keyrot".into()),
        initiated_from: Some("scheduler".into()),
        rotation_policy_id: None,
    };
    r.old_key_id = Some("key-reporting-1".into());
    r.old_expires_at = Some(ts("2026-12-20T00:00:00Z"));
    r.requested_new_expiry = None;
    r.scopes = vec!["read:jira-work".into()];
    r.notify_contacts = false;
    r.reveal_psk = None;
    r.state = RotationState::AwaitingSecret;
    r
}

/// The expiry notice's key: auto_rotate off, 14 days left.
pub fn legacy_admin() -> KeyRecord {
    let mut k = key(
        "legacy-admin",
        "manual",
        "key-legacy-7",
        &["admin:org"],
        "2026-12-07T09:00:00Z",
    );
    k.contacts = vec!["it-admin@example.com".into()];
    k
}

/// The keys of the digest, with the rotations they point at.
pub fn digest_keys() -> (Vec<KeyRecord>, BTreeMap<String, RotationRecord>) {
    let mut ci = ci_bot();
    let failed = failed_rotation();
    ci.active_rotation = Some(failed.id.clone());
    let mut reporting = key(
        "reporting",
        "standard",
        "key-reporting-1",
        &["read:jira-work"],
        "2026-12-20T00:00:00Z",
    );
    let waiting = assisted_rotation();
    reporting.active_rotation = Some(waiting.id.clone());
    let mut later = key(
        "wiki-bot",
        "standard",
        "key-wiki-3",
        &["read:confluence"],
        "2027-06-01T00:00:00Z",
    );
    later.next_due = Some(ts("2027-05-02T02:00:00Z"));
    let rotations = [failed, waiting]
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    (vec![ci, later, legacy_admin(), reporting], rotations)
}

/// The expiry notice's rung.
pub fn rung() -> SignedDuration {
    SignedDuration::from_hours(14 * 24)
}

/// The installation id of the examples' webhook bodies.
pub const INSTALLATION: &str = "3f2a9c41d07be5886a1c";

/// The webhook of the webhook examples.
const WEBHOOK: &str = r#"
[[notify.webhook]]
name = "ops-hook"
url = "https://hooks.example.com/keyrot"
secret = { file = "/etc/keyrot/webhook.secret" }
"#;

/// The example of each kind, rendered with `templates`, by kind.
pub fn messages(templates: Templates) -> Vec<(&'static str, OutboxMessage)> {
    match config() {
        Some(cfg) => every_message(cfg, templates),
        None => Vec::new(),
    }
}

/// The body the examples' webhook receives for each kind, as sent
/// (installation added) and pretty-printed; and the Slack body of the
/// failure.
pub fn webhook_bodies() -> (Vec<(&'static str, String)>, String) {
    let mut out = Vec::new();
    let mut slack = String::new();
    let Ok(cfg) = keyrot_config::load_str(
        Path::new("/etc/keyrot/keyrot.toml"),
        &format!("{CONFIG}{WEBHOOK}"),
    ) else {
        return (out, slack);
    };
    for (kind, m) in every_message(Arc::new(cfg), Templates::builtin()) {
        if m.channel == keyrot_core::model::Channel::Mail {
            continue;
        }
        let id = super::webhook::global_id(m.event_id(), INSTALLATION);
        let body = super::webhook::finish(&m.body, &id, INSTALLATION);
        let pretty = serde_json::from_str::<serde_json::Value>(&body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(body);
        out.push((kind, pretty));
        if kind == "failed" {
            let event = super::webhook::Event {
                kind: m.kind,
                id: m.event_id(),
                subject: &m.subject,
                text: "(the mail's text, as in the keyrot body)",
                vars: &Vars::new(),
                host: HOST,
                at: m.created_at,
            };
            slack = super::webhook::payload(keyrot_config::WebhookFormat::Slack, &event);
        }
    }
    (out, slack)
}

/// Every message of the examples under `cfg`, mail and webhook
/// deliveries.
fn every_message(cfg: Arc<Config>, templates: Templates) -> Vec<(&'static str, OutboxMessage)> {
    let c = Composer::with_templates(Arc::clone(&cfg), templates).with_host(HOST);
    let now = now();
    let done = completed_rotation();
    let key = ci_bot();
    let assisted = assisted_rotation();
    let mut reporting = key.clone();
    reporting.slot = assisted.slot.clone();
    reporting.contacts = Vec::new();
    let mut out = Vec::new();
    let mut add = |kind, msgs: Vec<OutboxMessage>| out.extend(msgs.into_iter().map(|m| (kind, m)));
    add(
        "live",
        c.live(&live_rotation(), Some(&key), true, false, now),
    );
    add(
        "completed",
        c.finished(&completed_at_once(), Some(&key), now),
    );
    add(
        "failed",
        c.failed(&failed_rotation(), Some(&key), false, now),
    );
    add("revoked", c.finished(&done, Some(&key), now));
    add(
        "assisted",
        c.assisted_request(
            &assisted,
            Some(&reporting),
            Some(ts("2027-11-23T09:00:00Z")),
            Some(ts("2026-12-13T00:00:00Z")),
            0,
            now,
        ),
    );
    if let Some(p) = cfg.policy("manual") {
        add(
            "expiry",
            c.expiry_notice(&legacy_admin(), p, None, rung(), now),
        );
    }
    let (keys, rotations) = digest_keys();
    add("digest", c.digests(&keys, &rotations, now));
    add("refused", c.key_refused(&refused_key(), now));
    let (lost, ended) = ended_key();
    add("ended", c.key_ended(&lost, &ended, now));
    add("failover", c.failover(&takeover()));
    let (in_use, u) = in_use_rotation();
    add("in_use", c.old_key_in_use(&in_use, Some(&key), &u, now));
    add(
        "orphan",
        c.orphan_found(&orphan(), &super::orphan::OrphanAction::Listed, now),
    );
    out
}

/// The variables of the example of `kind` (empty for an unknown kind).
pub fn vars(kind: &str) -> Vars {
    let now = now();
    match kind {
        "completed" => completed_vars(&completed_at_once()),
        "live" => live_vars(&live_rotation(), true, false),
        "failed" => match config() {
            Some(cfg) => failed_vars(&cfg, &failed_rotation(), false, now),
            None => Vars::new(),
        },
        "revoked" => revoked_vars(&completed_rotation()),
        "assisted" => {
            let mut v = assisted_vars(&assisted_rotation(), Some(now), Some(now), 1);
            v.set("org", "8f7c2b1e-acme").set(
                "console_url",
                "https://admin.atlassian.com/o/8f7c2b1e-acme/api-keys",
            );
            v
        }
        "expiry" => {
            let Some(cfg) = config() else {
                return Vars::new();
            };
            let Some(p) = cfg.policy("manual") else {
                return Vars::new();
            };
            let k = legacy_admin();
            let exp = k.current.as_ref().and_then(|c| c.expires_at).unwrap_or(now);
            super::notice::expiry_vars(&cfg, &k, p, Some(&failed_rotation()), rung(), exp, now)
        }
        "digest" => super::digest::digest_vars("2026-11-23", Vec::new(), now),
        "refused" => super::refused::refused_vars(&refused_key(), now),
        "ended" => {
            let (k, e) = ended_key();
            super::ended::ended_vars(&k, &e, now)
        }
        "failover" => super::failover::failover_vars(&takeover()),
        "in_use" => {
            let (r, u) = in_use_rotation();
            super::in_use::in_use_vars(&r, &u, now)
        }
        "orphan" => super::orphan::orphan_vars(&orphan(), &super::orphan::OrphanAction::Listed),
        _ => Vars::new(),
    }
}

/// The override check against these examples.
mod alerts;
pub use alerts::{ended_key, in_use_rotation, orphan, refused_key, takeover};

#[cfg(test)]
mod tests;
