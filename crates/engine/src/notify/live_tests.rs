//! When a rotation tells what: "new key live" as the overlap starts, one
//! "old key revoked" as it ends, one message saying both when there is no
//! overlap; times a message states stay true whenever it is delivered.

use super::*;
use crate::notify::examples::{self, now};
use crate::notify::templates::Templates;
use keyrot_core::model::RotationState;

const ID: &str = "0194f3c2-7b1e-7c4a-9d2e-5b8f0a1c3d4e";

fn composer() -> Composer {
    Composer::with_templates(examples::config().unwrap(), Templates::builtin())
        .with_host(examples::HOST)
}

fn one(mut msgs: Vec<OutboxMessage>) -> OutboxMessage {
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    msgs.remove(0)
}

#[test]
fn live_names_the_sinks_and_when_the_old_key_ends() {
    let m = one(composer().live(
        &examples::live_rotation(),
        Some(&examples::ci_bot()),
        true,
        false,
        now(),
    ));
    assert_eq!(m.kind, MessageKind::NewKeyLive);
    assert_eq!(m.id, format!("{ID}.live"));
    assert_eq!(
        m.subject,
        "[keyrot] new key live for atlassian/ci-bot; old key ends 2026-11-23 09:00 UTC"
    );
    for needle in [
        "the new key key-2026-11 is live in\nsink(s) vault, backup and verified.",
        "The old key key-2025-11 stays valid until 2026-11-23 09:00 UTC; then\nkeyrot revokes it.",
    ] {
        assert!(m.body.contains(needle), "{needle:?} not in:\n{}", m.body);
    }
    let html = m.html.as_deref().unwrap();
    assert!(html.contains("vault, backup"), "{html}");
    assert!(html.contains("2026-11-23 09:00 UTC"), "{html}");

    // A provider that cannot revoke: the old key lives until it expires.
    let m = one(composer().live(&examples::live_rotation(), None, false, false, now()));
    assert!(
        m.body.contains("stays valid until\n2026-12-01 00:00 UTC:"),
        "{}",
        m.body
    );
    assert!(m.body.contains("cannot revoke keys"), "{}", m.body);
}

#[test]
fn after_an_overlap_the_end_tells_only_the_revocation() {
    let c = composer();
    let done = examples::completed_rotation();
    assert!(went_live_before_end(&done));
    let m = one(c.finished(&done, Some(&examples::ci_bot()), now()));
    assert_eq!(m.kind, MessageKind::OldKeyRevoked);
    assert_eq!(m.id, format!("{ID}.revoked"));
    assert!(m.body.contains("after the overlap"), "{}", m.body);
    // Not revoked (the provider cannot): the live message said so already.
    let mut kept = done.clone();
    kept.old_revoked_at = None;
    assert!(c.finished(&kept, None, now()).is_empty());
}

#[test]
fn without_an_overlap_one_message_says_both() {
    let c = composer();
    // Overlap 0: Overlap and Revoking committed together.
    let at_once = examples::completed_at_once();
    assert!(!went_live_before_end(&at_once));
    let m = one(c.finished(&at_once, None, now()));
    assert_eq!(m.kind, MessageKind::RotationCompleted);
    assert!(
        m.body
            .contains("The new key key-2026-11 is in every sink and verified."),
        "{}",
        m.body
    );
    assert!(
        m.body.contains(
            "The old key key-2025-11 was revoked at 2026-11-22 09:00 UTC\n(there was no overlap)."
        ),
        "{}",
        m.body
    );
    // A native rotate: never in Overlap nor Revoking.
    let mut native = examples::completed_at_once();
    native
        .history
        .retain(|t| !matches!(t.to, RotationState::Overlap | RotationState::Revoking));
    native.revoke_old_at = None;
    let m = one(c.finished(&native, None, now()));
    assert_eq!(m.kind, MessageKind::RotationCompleted);
    assert!(m.body.contains("rotates natively"), "{}", m.body);
    // A first key.
    let mut first = examples::completed_at_once();
    first.old_key_id = None;
    first.old_revoked_at = None;
    let m = one(c.finished(&first, None, now()));
    assert!(m.body.contains("first key"), "{}", m.body);
}

#[test]
fn a_scheduled_reason_says_when_it_started_not_now() {
    let mut rec = examples::completed_at_once();
    rec.trigger = keyrot_core::model::Trigger::Schedule;
    rec.reason = "due 2026-11-21T04:00Z (lead time 30d before expiry); starts now in open window Sun 02:00-04:00 Europe/Berlin".into();
    let m = one(composer().finished(&rec, None, now()));
    assert!(
        m.body.contains(
            "Reason:          due 2026-11-21T04:00Z (lead time 30d before expiry); started 2026-11-22 09:00 UTC in open window"
        ),
        "{}",
        m.body
    );
    assert!(!m.body.contains("now in"), "{}", m.body);
    rec.reason = "EMERGENCY: expired 2026-11-21T04:00Z; starting now; due 2026-11-20T04:00Z".into();
    let m = one(composer().finished(&rec, None, now()));
    assert!(
        m.body
            .contains("expired 2026-11-21T04:00Z; started 2026-11-22 09:00 UTC; due"),
        "{}",
        m.body
    );
}

#[test]
fn a_failed_mail_says_when_it_failed() {
    let m = one(composer().failed(&examples::failed_rotation(), None, false, now()));
    assert!(
        m.body.contains("Failed at:  2026-11-22 09:31 UTC\n"),
        "{}",
        m.body
    );
    let html = m.html.as_deref().unwrap();
    assert!(html.contains("Failed at: 2026-11-22 09:31 UTC"), "{html}");
}

/// A notice is rendered when it is queued and may be delivered much later
/// (an SMTP outage, retries): it states absolute instants only, so it
/// never says "in less than a minute" under a Date after the expiry.
#[test]
fn an_expiry_notice_states_instants_that_stay_true_when_sent_late() {
    let cfg = examples::config().unwrap();
    let manual = cfg.policy("manual").unwrap();
    let key = examples::legacy_admin();
    let expires = key.current.as_ref().unwrap().expires_at.unwrap();
    // Queued 30 s before the key expires.
    let queued = expires - jiff::SignedDuration::from_secs(30);
    let m = one(composer().expiry_notice(&key, manual, None, examples::rung(), queued));
    let html = m.html.as_deref().unwrap();
    for part in [m.subject.as_str(), m.body.as_str(), html] {
        for relative in ["less than a minute", " ago", "expires in", " in 1 "] {
            assert!(!part.contains(relative), "{relative:?} in:\n{part}");
        }
    }
    let at = when(Some(expires));
    assert!(m.subject.contains(&at), "{}", m.subject);
    assert!(
        m.body.contains(&format!("is valid until {at}.")),
        "{}",
        m.body
    );
}
