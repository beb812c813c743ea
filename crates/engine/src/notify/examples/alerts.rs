//! The examples of the alerts (keys refused or ended at a sync, an old key
//! still in use at its deadline, an orphan key, a leader's takeover), for
//! the documentation's messages and their tests.

use super::*;

/// The rotation in its overlap under `revoke_when = "unused"`, its old key
/// still used 20 minutes before the deadline (a day after the overlap's
/// end) passed: the `in_use` example, with what it says.
pub fn in_use_rotation() -> (RotationRecord, super::super::in_use::InUse<'static>) {
    static LAST: std::sync::OnceLock<keyrot_core::model::LastUse> = std::sync::OnceLock::new();
    let last = LAST.get_or_init(|| keyrot_core::model::LastUse::At {
        at: ts("2026-11-23T08:40:00Z"),
    });
    let mut r = live_rotation();
    r.revoke_old_at = Some(ts("2026-11-22T09:00:04Z"));
    r.old_last_use = Some(last.clone());
    r.old_last_use_checked_at = Some(now());
    let u = super::super::in_use::InUse {
        last_use: last,
        precision: SignedDuration::from_hours(1),
        rule: keyrot_core::policy::QuietRule {
            quiet_period: SignedDuration::from_hours(24),
            deadline: SignedDuration::from_hours(24),
            at_deadline: keyrot_core::policy::AtDeadline::Hold,
        },
        deadline: ts("2026-11-23T09:00:04Z"),
    };
    (r, u)
}

/// The refused key of the `refused` example: a name that tries to leave
/// a sink's directory.
pub fn refused_key() -> super::super::refused::RefusedKey<'static> {
    super::super::refused::RefusedKey {
        provider: "atlassian",
        policy: "standard",
        name: "ci-x/../../escaped/pwned",
        id: "key-2026-12",
        why: "the name holds '/', which a name may not (letters, digits and ` ._-@:+=,()` only)",
    }
}

/// The slot of the `ended` example and the key it lost: `ci-bot`'s key
/// expired at 02:00 while keyrot was down; the sync at 09:00 found it gone.
pub fn ended_key() -> (KeyRecord, keyrot_core::model::EndedKey) {
    let mut k = key(
        "ci-bot",
        "standard",
        "key-2025-11",
        &["read:jira-work"],
        "2026-11-23T02:00:00Z",
    );
    k.current = None;
    k.next_due = Some(now());
    let e = keyrot_core::model::EndedKey {
        id: "key-2025-11".into(),
        kind: keyrot_core::model::EndKind::Expired,
        expires_at: Some(ts("2026-11-23T02:00:00Z")),
        ended_at: ts("2026-11-23T02:00:00Z"),
        noticed_at: now(),
    };
    k.ended = Some(e.clone());
    (k, e)
}

/// The orphan of the `orphan` example: a key tagged by a rotation a
/// restored backup no longer knows.
pub fn orphan() -> keyrot_core::model::Orphan {
    keyrot_core::model::Orphan {
        provider: "atlassian".into(),
        id: "7c1e2a90-4b6d-4f1e-9a51-3d2f0c8e6b14".into(),
        name: "ci-bot".into(),
        rotation: "0193a1f2-5c3e-7d4b-8e9f-0a1b2c3d4e5f".into(),
        created_at: Some(ts("2026-10-02T03:14:00Z")),
        expires_at: Some(ts("2027-10-02T03:14:00Z")),
        found_at: now(),
        seen_at: now(),
    }
}

/// The takeover of the `failover` example: `vm2` took over from `vm1`.
pub fn takeover() -> super::super::failover::Takeover<'static> {
    super::super::failover::Takeover {
        instance: "vm2.example.com:4121:9f3c",
        previous: "vm1.example.com:3988:01ad",
        epoch: 7,
        at: now(),
        lease: jiff::SignedDuration::from_secs(15),
    }
}
