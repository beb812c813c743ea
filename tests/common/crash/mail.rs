//! I6, the notifications: what the SMTP server received against the
//! rotations and the outbox the store holds.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::smtp::Received;
use super::checks::Report;
use super::observe::StoreView;

/// The event a message is about: (kind from its subject, rotation id
/// from its `Rotation:` line).
fn event(m: &Received) -> Option<(String, String)> {
    let subject = m.header("Subject")?;
    let kind = if subject.starts_with("[keyrot] rotated ") {
        "completed"
    } else if subject.starts_with("[keyrot] new key live for ") {
        "live"
    } else if subject.starts_with("[keyrot] revoked old key") {
        "revoked"
    } else if subject.starts_with("[keyrot] FAILED rotation") {
        "failed"
    } else if subject.starts_with("[keyrot] action needed") {
        "assisted"
    } else {
        return None;
    };
    let text = m.part("text/plain")?;
    let rot = text
        .lines()
        .find_map(|l| l.strip_prefix("Rotation:"))?
        .trim()
        .to_string();
    Some((kind.to_string(), rot))
}

/// I6: the outbox is empty (nothing queued, nothing dead); every
/// completed rotation's messages arrived; no event under two Message-IDs.
pub(super) fn check_mail(
    rotations: &[Value],
    mail: &[Received],
    store: &StoreView,
    v: &mut Vec<String>,
    report: &mut Report,
) {
    for (id, state) in &store.undelivered {
        v.push(format!("I6: message {id} is {state}, not delivered"));
    }
    let ours: BTreeMap<&str, &Value> = rotations
        .iter()
        .filter_map(|r| Some((r["id"].as_str()?, r)))
        .collect();
    let mut ids: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for m in mail {
        let Some((kind, rot)) = event(m) else {
            continue;
        };
        if !ours.contains_key(rot.as_str()) {
            continue;
        }
        report.messages += 1;
        *ids.entry((kind, rot))
            .or_default()
            .entry(m.message_id().to_string())
            .or_default() += 1;
    }
    for ((kind, rot), mids) in &ids {
        report.duplicates += mids.values().map(|n| n - 1).sum::<usize>();
        if kind == "failed" || kind == "assisted" {
            // One message per Failed transition / per reminder: each id
            // names its own event (`ROT.failed.N`, `ROT.assisted.N`).
            for mid in mids.keys() {
                if !mid.starts_with(&format!("<{rot}.{kind}.")) {
                    v.push(format!("I6: {kind} message of {rot} has Message-ID {mid}"));
                }
            }
            continue;
        }
        if mids.len() > 1 {
            v.push(format!(
                "I6: the {kind} event of rotation {rot} was delivered under {} Message-IDs: {:?}",
                mids.len(),
                mids.keys().collect::<Vec<_>>()
            ));
        }
        // `<ROT.KIND.INSTALLATION@domain>`: the installation id is 20
        // lowercase hex digits, the same for every message of a store.
        let want = format!("<{rot}.{kind}.INSTALLATION@example.com>");
        let stable = |mid: &str| {
            mid.strip_prefix(&format!("<{rot}.{kind}."))
                .and_then(|m| m.strip_suffix("@example.com>"))
                .is_some_and(|inst| {
                    inst.len() == 20 && inst.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                })
        };
        if !mids.keys().any(|m| stable(m)) {
            v.push(format!(
                "I6: the {kind} message of {rot} arrived as {:?}, not {want}",
                mids.keys().collect::<Vec<_>>()
            ));
        }
    }
    for (rot, r) in &ours {
        let mut want = Vec::new();
        // After a real overlap: "live" as it began, "revoked" as it
        // ended; without one, a single "completed" says both.
        let overlap_at = r["history"]
            .as_array()
            .and_then(|h| h.iter().rev().find(|t| t["to"] == "Overlap"))
            .map(|t| t["at"].clone());
        let waited = overlap_at.is_some_and(|at| r["revoke_old_at"] != at);
        if waited {
            want.push("live");
        }
        if r["state"] == "Completed" {
            if !waited {
                want.push("completed");
            } else if r["old_revoked_at"].is_string() {
                want.push("revoked");
            }
        }
        if r["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|t| t["to"] == "Failed"))
        {
            want.push("failed");
        }
        for kind in want {
            if !ids.contains_key(&(kind.to_string(), rot.to_string())) {
                v.push(format!(
                    "I6: no {kind} message for rotation {rot} was delivered"
                ));
            }
        }
    }
}
