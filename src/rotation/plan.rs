//! When a slot's next rotation starts: the policy's decision applied to a
//! key record. Used by the scheduler after a sync or a completed rotation,
//! and by `keyrot plan`.

use jiff::Timestamp;

use crate::config::Config;
use crate::model::{KeyRecord, Trigger};
use crate::policy::{self, Decision, KeyTimes};

/// The policy decision for a slot. `None` when the slot's policy is unknown
/// (a config reload removed it).
pub fn decide(
    cfg: &Config,
    rec: &KeyRecord,
    group_last_start: Option<Timestamp>,
    now: Timestamp,
) -> Option<Decision> {
    let policy = cfg.policy(&rec.policy)?;
    let times = rec.current.as_ref().map(|k| KeyTimes {
        created_at: k.created_at,
        expires_at: k.expires_at,
    });
    Some(policy::decide(
        policy,
        &rec.slot,
        times,
        group_last_start,
        now,
    ))
}

/// Sets `rec.next_due` and `rec.due_reason` from the policy.
pub fn schedule(
    cfg: &Config,
    rec: &mut KeyRecord,
    group_last_start: Option<Timestamp>,
    now: Timestamp,
) {
    if rec.active_rotation.is_some() {
        rec.next_due = None;
        rec.due_reason = Some("rotation in progress".into());
        return;
    }
    match decide(cfg, rec, group_last_start, now) {
        Some(d) => {
            rec.next_due = d.start_at;
            rec.due_reason = Some(d.explain);
        }
        None => {
            rec.next_due = None;
            rec.due_reason = Some(format!("policy {:?} is not configured", rec.policy));
        }
    }
}

/// The latest rotation start among other slots of `rec`'s group.
pub fn group_last_start<'a>(
    rec: &KeyRecord,
    all: impl IntoIterator<Item = &'a KeyRecord>,
) -> Option<Timestamp> {
    let group = rec.group.as_ref()?;
    all.into_iter()
        .filter(|r| r.slot != rec.slot && r.group.as_ref() == Some(group))
        .filter_map(|r| r.last_started_at)
        .max()
}

/// What kind of start a decision is.
pub fn trigger(rec: &KeyRecord, d: &Decision) -> Trigger {
    if rec.current.is_none() {
        Trigger::Initial
    } else if d.emergency {
        Trigger::Emergency
    } else {
        Trigger::Schedule
    }
}
