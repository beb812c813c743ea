//! When a slot's next rotation starts: the policy's decision applied to a
//! key record. Used by the scheduler after a sync or a completed rotation,
//! and by `keyrot plan`.

use std::collections::HashMap;

use jiff::Timestamp;

use keyrot_config::Config;
use keyrot_core::model::{KeyRecord, Trigger};
use keyrot_core::policy::{self, Decision, KeyTimes};

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

/// The latest rotation start of each stagger group, indexed once so that
/// a slot's [`group_last_start`] is a lookup rather than a scan of every
/// slot (which made a sync of n grouped slots O(n²)). Per group it keeps
/// the latest start and the latest start of any *other* slot, which is
/// what a slot that holds the group's latest start itself must see.
#[derive(Debug, Default)]
pub struct GroupStarts<'a> {
    /// Group → its two latest starts, of two different slots.
    by_group: HashMap<&'a str, Latest<'a>>,
}

/// The two latest starts of a group, of different slots, latest first.
#[derive(Debug, Default)]
struct Latest<'a> {
    /// The latest start and its slot.
    first: Option<(Timestamp, &'a str)>,
    /// The latest start of a slot other than `first`'s.
    second: Option<(Timestamp, &'a str)>,
}

impl<'a> Latest<'a> {
    /// Takes `slot`'s start `at` into account (a slot may come twice).
    fn add(&mut self, at: Timestamp, slot: &'a str) {
        match self.first {
            None => self.first = Some((at, slot)),
            Some((t, s)) if s == slot => {
                if at > t {
                    self.first = Some((at, slot));
                }
            }
            Some(first) if at > first.0 => {
                self.second = Some(first);
                self.first = Some((at, slot));
            }
            Some(_) => match self.second {
                Some((t, s)) if s == slot || at <= t => {
                    if s == slot && at > t {
                        self.second = Some((at, slot));
                    }
                }
                _ => self.second = Some((at, slot)),
            },
        }
    }
}

impl<'a> GroupStarts<'a> {
    /// Indexes the starts of `all` (slots may repeat: the latest counts).
    pub fn new(all: impl IntoIterator<Item = &'a KeyRecord>) -> GroupStarts<'a> {
        let mut index = GroupStarts::default();
        for r in all {
            if let (Some(group), Some(at)) = (r.group.as_deref(), r.last_started_at) {
                index.add(group, &r.slot, at);
            }
        }
        index
    }

    /// Takes into account that `slot`, of `group`, last started at `at`.
    pub fn add(&mut self, group: &'a str, slot: &'a str, at: Timestamp) {
        self.by_group.entry(group).or_default().add(at, slot);
    }

    /// The latest rotation start among the other slots of `rec`'s group:
    /// what [`group_last_start`] returns over the same records.
    pub fn last_start(&self, rec: &KeyRecord) -> Option<Timestamp> {
        let latest = self.by_group.get(rec.group.as_deref()?)?;
        match latest.first {
            Some((at, slot)) if slot != rec.slot => Some(at),
            _ => latest.second.map(|(at, _)| at),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(slot: &str, group: Option<&str>, started: Option<i64>) -> KeyRecord {
        KeyRecord {
            hooks: Vec::new(),
            slot: slot.into(),
            provider: "p".into(),
            name: slot.into(),
            current: None,
            policy: "std".into(),
            next_due: None,
            due_reason: None,
            active_rotation: None,
            last_rotated_at: None,
            last_started_at: started.map(|s| Timestamp::from_second(s).unwrap()),
            synced_at: None,
            sinks: vec![],
            scopes: vec![],
            contacts: vec![],
            group: group.map(str::to_owned),
            ended: None,
            kept_secret: None,
        }
    }

    /// The index over `all`, after checking that it answers what a scan of
    /// `all` answers for every record.
    fn index_matching_the_scan(all: &[KeyRecord]) -> GroupStarts<'_> {
        let index = GroupStarts::new(all.iter());
        for r in all {
            assert_eq!(
                index.last_start(r),
                group_last_start(r, all.iter()),
                "{}",
                r.slot
            );
        }
        index
    }

    #[test]
    fn group_index_agrees_with_the_scan() {
        // Slots repeat (a sync's new records, then the store's), groups
        // interleave, some slots never started, one group has one slot.
        let all = vec![
            rec("p/a", Some("g"), Some(30)),
            rec("p/b", Some("g"), Some(10)),
            rec("p/c", Some("g"), None),
            rec("p/d", Some("h"), Some(5)),
            rec("p/e", None, Some(50)),
            rec("p/a", Some("g"), Some(30)),
            rec("p/b", Some("g"), Some(20)),
            rec("q/f", Some("g"), Some(25)),
            rec("p/i", Some("i"), None),
        ];
        let index = index_matching_the_scan(&all);
        // The slot holding the group's latest start sees the next one.
        assert_eq!(
            index.last_start(&all[0]),
            Some(Timestamp::from_second(25).unwrap())
        );
        assert_eq!(index.last_start(&all[3]), None);
    }

    #[test]
    fn group_index_keeps_two_distinct_slots() {
        // The same slot arriving twice with later starts must not push
        // the other slot out of second place.
        let all = vec![
            rec("p/b", Some("g"), Some(10)),
            rec("p/a", Some("g"), Some(20)),
            rec("p/a", Some("g"), Some(40)),
            rec("p/c", Some("g"), Some(15)),
        ];
        index_matching_the_scan(&all);
    }
}
