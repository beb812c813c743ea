//! Every message kind rendered from the documented examples: subject,
//! recipients, both bodies, ids; no secret hash, no PSK; HTML escaping;
//! and `docs/notifications.md` showing each example word for word.

use std::sync::Arc;

use super::*;
use crate::notify::examples::{self, now};
use crate::notify::templates::{KINDS, Templates};
use keyrot_core::model::{RotationState, SinkResult};

fn composer() -> Composer {
    Composer::with_templates(examples::config().unwrap(), Templates::builtin())
        .with_host(examples::HOST)
}

fn one(mut msgs: Vec<OutboxMessage>) -> OutboxMessage {
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    msgs.remove(0)
}

fn html(m: &OutboxMessage) -> &str {
    m.html.as_deref().unwrap()
}

/// Runs of whitespace as one space.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The HTML body's text: tags dropped (entities kept), whitespace squashed.
fn html_text(m: &OutboxMessage) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html(m).chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    squash(&decoded)
}

/// Asserts `needle` is in the text body and in the text the HTML body
/// shows (line breaks and markup may differ).
fn in_both(m: &OutboxMessage, needle: &str) {
    assert!(
        m.body.contains(needle),
        "text lacks {needle:?}:\n{}",
        m.body
    );
    let needle = squash(needle);
    assert!(
        html_text(m).contains(&needle),
        "html lacks {needle:?}:\n{}",
        html(m)
    );
}

const ID: &str = "0194f3c2-7b1e-7c4a-9d2e-5b8f0a1c3d4e";

#[test]
fn completed_names_the_key_both_expiries_and_the_initiator() {
    let m = one(composer().completed(
        &examples::completed_rotation(),
        Some(&examples::ci_bot()),
        now(),
    ));
    assert_eq!(m.id, format!("{ID}.completed"));
    assert_eq!(m.kind, MessageKind::RotationCompleted);
    assert_eq!(
        m.subject,
        "[keyrot] rotated atlassian/ci-bot (expires 2027-11-01)"
    );
    // Policy notify, security contacts (the request said notifyContacts),
    // the key's contacts.
    assert_eq!(
        m.to,
        [
            "ops@example.com",
            "security@example.com",
            "ci-owner@example.com"
        ]
    );
    for needle in [
        "atlassian/ci-bot",
        "atlassian",
        "standard",
        "key-2025-11",
        "2026-12-01 00:00 UTC",
        "key-2026-11",
        "2027-11-01 00:00 UTC",
        ID,
        "yearly rotation before the key expires",
        "user@email.com",
        "terraform",
        "pol-annual",
        "vault: written 2026-11-22 09:00 UTC, verified 2026-11-22 09:00 UTC",
        "was revoked at 2026-11-23 09:00 UTC",
    ] {
        in_both(&m, needle);
    }
    assert!(m.body.contains("Scopes:          2\n"), "{}", m.body);
    assert!(html(&m).starts_with("<!DOCTYPE html>"), "{}", html(&m));
    assert_eq!(m.state, DeliveryState::Queued);
}

#[test]
fn completed_first_key_and_unrevocable_old_key() {
    let c = composer();
    let mut first = examples::completed_rotation();
    first.old_key_id = None;
    first.old_expires_at = None;
    first.old_revoked_at = None;
    let m = one(c.completed(&first, None, now()));
    in_both(&m, "This was the slot's first key");
    assert!(!m.body.contains("Old key:"), "{}", m.body);
    let mut kept = examples::completed_rotation();
    kept.old_revoked_at = None;
    let m = one(c.completed(&kept, None, now()));
    in_both(&m, "The provider cannot revoke keys");
    // No revocation, no revoked message.
    assert!(c.revoked(&kept, None, now()).is_empty());
    assert!(c.revoked(&first, None, now()).is_empty());
}

#[test]
fn failed_says_what_broke_what_happens_next_and_the_commands() {
    let m = one(composer().failed(
        &examples::failed_rotation(),
        Some(&examples::ci_bot()),
        false,
        now(),
    ));
    assert_eq!(m.kind, MessageKind::RotationFailed);
    assert_eq!(m.id, format!("{ID}.failed.5"));
    assert_eq!(
        m.subject,
        "[keyrot] FAILED rotation of atlassian/ci-bot in distributing"
    );
    for needle in [
        "sink \"vault\": 503 Service Unavailable from vault.example.com: sealed",
        "What keyrot does next: nothing, until an operator acts.",
        &format!("keyrot rotation show {ID}"),
        &format!("keyrot rotation resume {ID}"),
        &format!("keyrot rotation abort {ID}"),
    ] {
        in_both(&m, needle);
    }
    assert!(
        m.body.contains(
            "The old key key-2025-11 is untouched and stays valid until\n2026-12-01 00:00 UTC."
        ),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("give up; revokes the new key key-2026-11"),
        "{}",
        m.body
    );
    assert!(m.body.contains("failed 5 time(s)"), "{}", m.body);
}

#[test]
fn failed_after_a_sink_write_or_a_native_rotate_says_so() {
    let c = composer();
    let mut rec = examples::failed_rotation();
    rec.sink_results.insert(
        "vault".into(),
        SinkResult {
            written_at: now(),
            verified_at: None,
            version: None,
        },
    );
    rec.failed_in = Some(RotationState::Distributing);
    let m = one(c.failed(&rec, None, false, now()));
    in_both(&m, "is already in sink(s) vault");
    // Abort would be refused: not offered at all; restart is, and says
    // what it does to the sinks.
    assert!(!m.body.contains("rotation abort"), "{}", m.body);
    assert!(!html(&m).contains("rotation abort"), "{}", html(&m));
    assert!(!m.body.contains("give up"), "{}", m.body);
    in_both(&m, &format!("keyrot rotation restart {ID}"));
    assert!(m.body.contains("although sinks hold it"), "{}", m.body);
    let m = one(c.failed(&examples::failed_rotation(), None, true, now()));
    in_both(&m, "Consumers that still use the old key fail now");
    in_both(&m, "when it issued the new key");
    assert!(!m.body.contains("untouched"), "{}", m.body);
    // The provider ended the old key early (keyrot found it gone): said so,
    // never "untouched".
    let mut lost = examples::failed_rotation();
    lost.old_lost_at = Some(now());
    let m = one(c.failed(&lost, None, false, now()));
    in_both(&m, "the provider ended it before keyrot revoked it");
    in_both(&m, "Consumers that still use the old key fail now");
    assert!(!m.body.contains("untouched"), "{}", m.body);
}

#[test]
fn revoked_names_the_old_key_and_where_the_new_one_is() {
    let rec = examples::completed_rotation();
    let m = one(composer().revoked(&rec, Some(&examples::ci_bot()), now()));
    assert_eq!(m.kind, MessageKind::OldKeyRevoked);
    assert_eq!(m.id, format!("{ID}.revoked"));
    assert_eq!(
        m.subject,
        "[keyrot] revoked old key of atlassian/ci-bot (key-2025-11)"
    );
    in_both(&m, "after the overlap");
    in_both(&m, "Anything still using the old key now fails.");
    assert!(m.body.contains("  vault\n  backup\n"), "{}", m.body);
    // A native rotate never passes through Revoking.
    let mut native = rec.clone();
    native.history.retain(|t| t.to != RotationState::Revoking);
    let m = one(composer().revoked(&native, None, now()));
    in_both(&m, "rotates natively");
}

#[test]
fn assisted_request_and_reminder() {
    let c = composer();
    let rec = examples::assisted_rotation();
    let m = one(c.assisted_request(&rec, None, None, None, 0, now()));
    assert_eq!(m.kind, MessageKind::AssistedRequest);
    assert_eq!(m.id, format!("{}.assisted.0", rec.id));
    assert_eq!(
        m.subject,
        "[keyrot] action needed: create a new key for atlassian/reporting (old key expires 2026-12-20)"
    );
    // Security contacts are always asked to create the key.
    assert_eq!(m.to, ["ops@example.com", "security@example.com"]);
    assert!(
        m.body.starts_with("ACTION NEEDED: create a new key"),
        "{}",
        m.body
    );
    assert!(m.body.contains("     - read:jira-work\n"), "{}", m.body);
    in_both(
        &m,
        &format!("keyrot enroll {} --key-id NEW_KEY_ID < secret.txt", rec.id),
    );
    in_both(&m, "the provider's default");
    let m = one(c.assisted_request(&rec, None, Some(now()), Some(now()), 2, now()));
    assert_eq!(m.id, format!("{}.assisted.2", rec.id));
    assert!(
        m.subject
            .contains("(reminder 2, old key expires 2026-12-20)"),
        "{}",
        m.subject
    );
    assert!(
        m.body.starts_with("REMINDER 2, ACTION NEEDED"),
        "{}",
        m.body
    );
    in_both(&m, "Next reminder: 2026-11-23 09:00 UTC.");
}

#[test]
fn expiry_notice_for_a_manual_key_and_for_a_failed_rotation() {
    let cfg = examples::config().unwrap();
    let c = composer();
    let manual = cfg.policy("manual").unwrap();
    let key = examples::legacy_admin();
    let m = one(c.expiry_notice(&key, manual, None, examples::rung(), now()));
    assert_eq!(m.kind, MessageKind::ExpiryWarning);
    assert_eq!(
        m.id,
        crate::notify::notice::notice_id(
            "atlassian/legacy-admin",
            "key-legacy-7",
            examples::rung()
        )
    );
    assert_eq!(
        m.subject,
        "[keyrot] expires 2026-12-07 09:00 UTC: atlassian/legacy-admin"
    );
    assert_eq!(m.to, ["ops@example.com", "it-admin@example.com"]);
    in_both(&m, "auto_rotate = false");
    in_both(
        &m,
        "keyrot rotate atlassian/legacy-admin --reason \"expires 2026-12-07\"",
    );
    assert!(
        m.body.contains("Next notice:     2026-11-30 09:00 UTC"),
        "{}",
        m.body
    );

    // A key whose rotation failed: the commands, the error; an expired key.
    let standard = cfg.policy("standard").unwrap();
    let failed = examples::failed_rotation();
    let later = now() + jiff::SignedDuration::from_hours(24 * 20);
    let m = one(c.expiry_notice(
        &examples::ci_bot(),
        standard,
        Some(&failed),
        examples::rung(),
        later,
    ));
    // The request said notifyContacts: security contacts hear too.
    assert_eq!(
        m.to,
        [
            "ops@example.com",
            "security@example.com",
            "ci-owner@example.com"
        ]
    );
    assert_eq!(
        m.subject,
        "[keyrot] EXPIRED 2026-12-01 00:00 UTC: atlassian/ci-bot"
    );
    in_both(&m, &format!("keyrot rotation resume {}", failed.id));
    in_both(
        &m,
        "failed in the distributing step at 2026-11-22 09:31 UTC",
    );
    assert!(m.body.contains("none; this was the last one"), "{}", m.body);
}

#[test]
fn digest_goes_to_each_recipient_with_their_keys() {
    let (keys, rotations) = examples::digest_keys();
    let msgs = composer().digests(&keys, &rotations, now());
    let to: Vec<&str> = msgs.iter().map(|m| m.to[0].as_str()).collect();
    assert_eq!(
        to,
        [
            "ci-owner@example.com",
            "it-admin@example.com",
            "ops@example.com"
        ]
    );
    let ops = &msgs[2];
    // Logged and counted as a digest, not as one key's expiry warning.
    assert!(msgs.iter().all(|m| m.kind == MessageKind::Digest));
    assert_eq!(
        ops.id,
        crate::notify::digest::digest_id("2026-11-23", "OPS@example.com")
    );
    assert!(ops.id.starts_with("digest.2026-11-23."), "{}", ops.id);
    assert_eq!(ops.subject, "[keyrot] digest: 3 keys expire within 30 days");
    // Soonest first; wiki-bot (June) is beyond 30 days.
    let order: Vec<usize> = ["ci-bot", "legacy-admin", "reporting"]
        .iter()
        .map(|n| ops.body.find(&format!("atlassian/{n} (")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", ops.body);
    assert!(!ops.body.contains("wiki-bot"));
    in_both(ops, "rotation FAILED in distributing");
    in_both(ops, "auto_rotate is off: rotate it by hand");
    in_both(ops, "waiting for a new key: keyrot enroll");
    assert_eq!(
        msgs[1].subject,
        "[keyrot] digest: 1 key expires within 30 days"
    );
    // Nothing within 30 days: no digest at all.
    let far: Vec<KeyRecord> = keys.into_iter().filter(|k| k.name == "wiki-bot").collect();
    assert!(composer().digests(&far, &rotations, now()).is_empty());
}

#[test]
fn html_escapes_what_callers_wrote_and_text_keeps_it() {
    let mut rec = examples::completed_rotation();
    rec.reason = "<script>alert('x')</script> & co".into();
    rec.initiator.rotated_by = Some("\"eve\" <eve@example.com>".into());
    for m in [
        one(composer().completed(&rec, None, now())),
        one(composer().failed(&rec, None, false, now())),
        one(composer().revoked(&rec, None, now())),
    ] {
        let h = html(&m);
        assert!(!h.contains("<script>"), "{h}");
        assert!(
            h.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"),
            "{h}"
        );
        assert!(h.contains("&quot;eve&quot; &lt;eve@example.com&gt;"), "{h}");
        assert!(m.body.contains("<script>alert('x')</script> & co"));
    }
}

#[test]
fn no_message_carries_a_secret_hash_or_a_psk() {
    let hash = examples::completed_rotation()
        .new_key
        .unwrap()
        .secret_sha256;
    let msgs = examples::messages(Templates::builtin());
    assert_eq!(msgs.len(), 14, "one of each kind, three digests");
    for (kind, m) in &msgs {
        for part in [m.subject.as_str(), m.body.as_str(), html(m)] {
            assert!(!part.contains(&hash[..12]), "{kind}: secret hash in {part}");
            // reveal_psk names the caller's PSK ("caller"): never shown.
            assert!(!part.contains("caller"), "{kind}: PSK in {part}");
        }
        // Every variable of every kind is known to render.rs's checker,
        // and none is the hash.
        for (name, _) in examples::vars(kind).iter() {
            assert!(!name.contains("sha") && !name.contains("secret"), "{name}");
        }
    }
}

#[test]
fn nothing_is_queued_without_transport_or_recipients() {
    let mut cfg = (*examples::config().unwrap()).clone();
    let rec = examples::completed_rotation();
    cfg.notify.transport = keyrot_config::NotifyTransport::None;
    let c = Composer::with_templates(Arc::new(cfg.clone()), Templates::builtin());
    assert!(c.completed(&rec, None, now()).is_empty());
    cfg.notify.transport = examples::config().unwrap().notify.transport.clone();
    for p in &mut cfg.policies {
        p.notify.clear();
        p.security_contacts.clear();
    }
    let c = Composer::with_templates(Arc::new(cfg), Templates::builtin());
    assert!(c.completed(&rec, None, now()).is_empty());
}

#[test]
fn recipients_are_deduplicated_case_insensitively() {
    let cfg = examples::config().unwrap();
    let mut key = examples::ci_bot();
    key.contacts = vec![
        "OPS@example.com".into(),
        "dev@example.com".into(),
        "Dev@Example.com".into(),
    ];
    let rec = examples::completed_rotation();
    assert_eq!(
        recipients(&cfg, &rec, Some(&key)),
        ["ops@example.com", "security@example.com", "dev@example.com"]
    );
    let mut quiet = rec.clone();
    quiet.notify_contacts = false;
    assert_eq!(
        recipients(&cfg, &quiet, Some(&key)),
        ["ops@example.com", "dev@example.com"]
    );
    assert_eq!(
        key_recipients(&cfg, &key, None),
        ["ops@example.com", "dev@example.com"]
    );
}

#[test]
fn example_bodies_are_ascii_with_lines_mail_can_carry() {
    // ASCII keeps a body 7bit or quoted-printable, never base64, so the
    // raw message stays readable; SMTP allows 998 characters a line.
    for (kind, m) in examples::messages(Templates::builtin()) {
        for part in [m.subject.as_str(), m.body.as_str(), html(&m)] {
            for line in part.lines() {
                assert!(line.is_ascii(), "{kind}: {line}");
                assert!(line.len() < 998, "{kind}: {line}");
            }
        }
    }
}

/// The block `docs/notifications.md` shows for a message.
fn doc_block(m: &OutboxMessage) -> String {
    format!(
        "To: {}\nSubject: {}\n\n{}",
        m.to.join(", "),
        m.subject,
        m.body
    )
}

#[test]
fn docs_show_each_webhook_body_exactly_as_sent() {
    let doc = include_str!("../../../../docs/notifications.md");
    let (bodies, slack) = examples::webhook_bodies();
    for kind in KINDS {
        let body = bodies
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("no webhook example of {kind}"));
        assert!(
            doc.contains(&format!("```json\n{body}\n```\n")),
            "docs/notifications.md must show the {kind} webhook body as sent:\n```json\n{body}\n```"
        );
    }
    assert!(
        doc.contains(&format!("```json\n{slack}\n```\n")),
        "docs/notifications.md must show the Slack body:\n```json\n{slack}\n```"
    );
}

#[test]
fn docs_show_each_kind_exactly_as_rendered() {
    let doc = include_str!("../../../../docs/notifications.md");
    let msgs = examples::messages(Templates::builtin());
    for kind in KINDS {
        let m = msgs
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, m)| m)
            .find(|m| kind != "digest" || m.to == ["ops@example.com"])
            .unwrap_or_else(|| panic!("no example of {kind}"));
        let block = doc_block(m);
        assert!(
            doc.contains(&format!("```text\n{block}```\n")),
            "docs/notifications.md must show the {kind} example as rendered:\n```text\n{block}```"
        );
        // Every variable of the kind is documented.
        for (name, value) in examples::vars(kind).iter() {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{kind}: variable {name} undocumented"
            );
            if let super::super::render::Value::List { fields, .. } = value {
                for f in *fields {
                    assert!(
                        doc.contains(&format!("`{f}`")),
                        "{kind}: field {name}.{f} undocumented"
                    );
                }
            }
        }
    }
}
