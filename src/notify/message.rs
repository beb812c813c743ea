//! Building outbox messages from rotation events.

use jiff::Timestamp;

use crate::config::{Config, NotifyTransport};
use crate::model::{DeliveryState, KeyRecord, MessageKind, OutboxMessage, RotationRecord};

/// Recipients: the policy's `notify`, the key's contacts and, when the
/// request asked for it, the policy's security contacts; de-duplicated,
/// compared case-insensitively, first spelling kept.
pub fn recipients(cfg: &Config, rec: &RotationRecord, key: Option<&KeyRecord>) -> Vec<String> {
    let policy = cfg.policy(&rec.policy);
    let mut all: Vec<&String> = Vec::new();
    if let Some(p) = policy {
        all.extend(&p.notify);
        if rec.notify_contacts {
            all.extend(&p.security_contacts);
        }
    }
    if let Some(k) = key {
        all.extend(&k.contacts);
    }
    let mut out: Vec<String> = Vec::new();
    for a in all {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
            out.push(a.clone());
        }
    }
    out
}

fn message(
    cfg: &Config,
    kind: MessageKind,
    id: String,
    to: Vec<String>,
    subject: String,
    body: String,
    now: Timestamp,
) -> Vec<OutboxMessage> {
    if matches!(cfg.notify.transport, NotifyTransport::None) || to.is_empty() {
        return Vec::new();
    }
    vec![OutboxMessage {
        id,
        kind,
        to,
        subject,
        body,
        html: None,
        state: DeliveryState::Queued,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        created_at: now,
    }]
}

fn details(rec: &RotationRecord) -> String {
    let new = rec.new_key.as_ref();
    let mut lines = vec![
        format!("Key:           {}", rec.slot),
        format!("Provider:      {}", rec.provider),
        format!("Policy:        {}", rec.policy),
        format!("Rotation:      {}", rec.id),
        format!("Trigger:       {:?}", rec.trigger),
        format!("Reason:        {}", rec.reason),
        format!(
            "Old key:       {}",
            rec.old_key_id.as_deref().unwrap_or("(none)")
        ),
        format!("Old expiry:    {}", opt(rec.old_expires_at)),
        format!(
            "New key:       {}",
            new.map(|k| k.id.as_str()).unwrap_or("(none)")
        ),
        format!("New expiry:    {}", opt(new.and_then(|k| k.expires_at))),
        format!("Scopes:        {}", rec.scopes.len()),
    ];
    if let Some(by) = &rec.initiator.rotated_by {
        lines.push(format!("Rotated by:    {by}"));
    }
    if let Some(from) = &rec.initiator.initiated_from {
        lines.push(format!("Initiated from: {from}"));
    }
    if let Some(p) = &rec.initiator.rotation_policy_id {
        lines.push(format!("Policy id:     {p}"));
    }
    for (sink, r) in &rec.sink_results {
        lines.push(format!(
            "Sink {sink}: written {}{}",
            r.written_at,
            r.verified_at
                .map(|v| format!(", verified {v}"))
                .unwrap_or_default()
        ));
    }
    lines.join("\n")
}

fn opt(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "never".into())
}

fn date(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "no expiry".into())
}

/// Messages for a completed rotation.
pub fn completed(
    cfg: &Config,
    rec: &RotationRecord,
    key: Option<&KeyRecord>,
    now: Timestamp,
) -> Vec<OutboxMessage> {
    let expiry = date(rec.new_key.as_ref().and_then(|k| k.expires_at));
    let subject = format!("[keyrot] rotated {} (expires {expiry})", rec.slot);
    let body = format!(
        "keyrot rotated {}.\n\n{}\n\nConsumers read the new secret from the sinks above. No action is needed.\n",
        rec.slot,
        details(rec)
    );
    message(
        cfg,
        MessageKind::RotationCompleted,
        format!("{}.completed", rec.id),
        recipients(cfg, rec, key),
        subject,
        body,
        now,
    )
}

/// Messages for a failed rotation.
pub fn failed(
    cfg: &Config,
    rec: &RotationRecord,
    key: Option<&KeyRecord>,
    now: Timestamp,
) -> Vec<OutboxMessage> {
    let step = rec.failed_in.map(|s| s.as_str()).unwrap_or("unknown");
    let subject = format!("[keyrot] FAILED rotation of {} in {step}", rec.slot);
    let body = format!(
        "keyrot could not rotate {} and stopped after {} attempt(s).\n\nStep:   {step}\nError:  {}\n\n{}\n\n\
         The old key is untouched and still valid until {}.\nkeyrot will not retry by itself. Fix the cause, then run one of:\n  \
         keyrot rotation resume {}\n  keyrot rotation abort {}\n",
        rec.slot,
        rec.attempts,
        rec.last_error.as_deref().unwrap_or("-"),
        details(rec),
        opt(rec.old_expires_at),
        rec.id,
        rec.id
    );
    message(
        cfg,
        MessageKind::RotationFailed,
        format!("{}.failed.{}", rec.id, rec.history.len()),
        recipients(cfg, rec, key),
        subject,
        body,
        now,
    )
}

/// Asks people to create a key by hand (assisted rotation), or reminds
/// them. Names the scopes to recreate exactly and the command that
/// finishes the rotation; the secret goes to `keyrot enroll` on stdin,
/// never into an email.
pub fn assisted_request(
    cfg: &Config,
    rec: &RotationRecord,
    key: Option<&KeyRecord>,
    expires_at: Option<Timestamp>,
    reminder: u32,
    now: Timestamp,
) -> Vec<OutboxMessage> {
    let mut to = recipients(cfg, rec, key);
    if let Some(p) = cfg.policy(&rec.policy) {
        for c in &p.security_contacts {
            if !to.iter().any(|t| t.eq_ignore_ascii_case(c)) {
                to.push(c.clone());
            }
        }
    }
    let name = rec
        .slot
        .split_once('/')
        .map(|(_, n)| n)
        .unwrap_or(&rec.slot);
    let scopes = if rec.scopes.is_empty() {
        "  (none: the old key is unscoped; consider a policy with `scopes`)".to_string()
    } else {
        rec.scopes
            .iter()
            .map(|s| format!("  - {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let prefix = if reminder == 0 {
        "ACTION NEEDED"
    } else {
        "REMINDER"
    };
    let subject = format!(
        "[keyrot] {prefix}: create a new key for {} (old expires {})",
        rec.slot,
        date(rec.old_expires_at)
    );
    let body = format!(
        "The provider of {slot} cannot create keys through its API, so keyrot needs a person to create one.\n\n\
         1. In the provider's console, create a new key named \"{name}\" with exactly these scopes\n   (least privilege: no more, no fewer):\n{scopes}\n\
         2. Set its expiry to {expiry}.\n\
         3. Copy the one-time secret and hand it to keyrot on standard input (never as an argument):\n\n     \
         keyrot enroll {id} --key-id NEW_KEY_ID < secret.txt\n\n   \
         or run `keyrot enroll {id}` and paste it. keyrot verifies it, writes it to every sink,\n   \
         waits for the overlap and revokes the old key {old}.\n\n{details}\n",
        slot = rec.slot,
        expiry = date(expires_at),
        id = rec.id,
        old = rec.old_key_id.as_deref().unwrap_or("(none)"),
        details = details(rec),
    );
    message(
        cfg,
        MessageKind::AssistedRequest,
        format!("{}.assisted.{reminder}", rec.id),
        to,
        subject,
        body,
        now,
    )
}
