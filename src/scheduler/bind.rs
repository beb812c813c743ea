//! Binding a provider's inventory to the configured `[[key]]` entries: which
//! provider key is the live key of which slot. Pure: the caller reads the
//! inventory and the store, and writes what this returns.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;

use crate::config::{Config, KeyMatch, KeySpec};
use crate::model::{KeyInfo, KeyRecord, slot_id};
use crate::rotation::plan;

/// What a sync changes.
#[derive(Debug, Default)]
pub struct Bound {
    /// Slot records to write (every slot of the provider, rescheduled).
    pub records: Vec<KeyRecord>,
    /// Slots of the provider no `[[key]]` matches any more.
    pub removed: Vec<String>,
}

/// `*` matches any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn selects(m: &KeyMatch, k: &KeyInfo) -> bool {
    match m {
        KeyMatch::Named { name, .. } => &k.name == name,
        KeyMatch::Select { name, scope, tag } => {
            name.as_ref().is_none_or(|g| glob(g, &k.name))
                && scope
                    .as_ref()
                    .is_none_or(|g| k.scopes.iter().any(|s| glob(g, s)))
                && tag
                    .as_ref()
                    .is_none_or(|(tk, tv)| k.tags.get(tk) == Some(tv))
        }
    }
}

/// Binds `listed` (the provider's live keys) to the slots of `provider`.
/// `in_flight` are new keys of unfinished rotations: they belong to their
/// rotation until it completes, never to a slot. `changed` are slots whose
/// binding moved (a rotation started or completed) after the listing was
/// asked for: the listing cannot know their new key, so they keep the key
/// the store holds and the next sync reconciles them.
pub fn bind(
    cfg: &Config,
    provider: &str,
    listed: &[KeyInfo],
    existing: &[KeyRecord],
    in_flight: &HashSet<String>,
    changed: &HashSet<String>,
    now: Timestamp,
) -> Bound {
    let listed: Vec<&KeyInfo> = listed
        .iter()
        .filter(|k| !in_flight.contains(&k.id))
        .collect();
    // Slot name -> the spec that claims it (first spec wins).
    let mut slots: BTreeMap<String, &KeySpec> = BTreeMap::new();
    for spec in cfg.keys.iter().filter(|s| s.provider == provider) {
        match &spec.matches {
            KeyMatch::Named { name, .. } => {
                slots.entry(name.clone()).or_insert(spec);
            }
            m @ KeyMatch::Select { .. } => {
                for k in listed.iter().filter(|k| selects(m, k)) {
                    slots.entry(k.name.clone()).or_insert(spec);
                }
            }
        }
    }
    let by_slot: BTreeMap<&str, &KeyRecord> =
        existing.iter().map(|r| (r.slot.as_str(), r)).collect();
    let mut records = Vec::new();
    for (name, spec) in &slots {
        let slot = slot_id(provider, name);
        let mut rec = by_slot
            .get(slot.as_str())
            .map(|r| (*r).clone())
            .unwrap_or_else(|| KeyRecord {
                slot: slot.clone(),
                provider: provider.to_string(),
                name: name.clone(),
                current: None,
                policy: spec.policy.clone(),
                next_due: None,
                due_reason: None,
                active_rotation: None,
                last_rotated_at: None,
                last_started_at: None,
                synced_at: None,
                sinks: Vec::new(),
                scopes: Vec::new(),
                contacts: Vec::new(),
                group: None,
            });
        rec.policy = spec.policy.clone();
        rec.sinks = spec.sinks.clone();
        rec.scopes = spec.scopes.clone();
        rec.contacts = spec.contacts.clone();
        rec.group = spec.group.clone();
        rec.synced_at = Some(now);
        let candidates: Vec<&KeyInfo> =
            listed.iter().copied().filter(|k| &k.name == name).collect();
        let adopt = match &spec.matches {
            KeyMatch::Named { id: Some(id), .. } => Some(id.as_str()),
            _ => None,
        };
        let hold = rec.active_rotation.is_some() || changed.contains(&slot);
        rec.current = choose_current(rec.current.take(), &candidates, adopt, hold);
        records.push(rec);
    }
    // Reschedule with the group view of the records as they now stand.
    let snapshot = records.clone();
    for rec in &mut records {
        let last = plan::group_last_start(rec, snapshot.iter().chain(existing.iter()));
        plan::schedule(cfg, rec, last, now);
    }
    let removed = existing
        .iter()
        .filter(|r| {
            r.provider == provider && !slots.contains_key(&r.name) && r.active_rotation.is_none()
        })
        .map(|r| r.slot.clone())
        .collect();
    Bound { records, removed }
}

/// The slot's live key after a sync: the same key refreshed when it is
/// still listed; else, when `hold` (a rotation runs, or the binding moved
/// while the listing was in flight), the key the store holds, which the
/// listing may not know yet; else an explicitly adopted id; else the newest
/// key of that name; else none.
fn choose_current(
    current: Option<KeyInfo>,
    candidates: &[&KeyInfo],
    adopt: Option<&str>,
    hold: bool,
) -> Option<KeyInfo> {
    if let Some(cur) = &current {
        if let Some(fresh) = candidates.iter().find(|k| k.id == cur.id) {
            return Some((*fresh).clone());
        }
        if hold {
            return current;
        }
        tracing::warn!(key_id = %cur.id, name = %cur.name, "the slot's key is no longer listed by its provider");
    }
    if let Some(id) = adopt
        && let Some(k) = candidates.iter().find(|k| k.id == id)
    {
        return Some((*k).clone());
    }
    candidates
        .iter()
        .max_by_key(|k| k.created_at)
        .map(|k| (*k).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_and_marks() {
        assert!(glob("ci-*", "ci-bot"));
        assert!(glob("*", ""));
        assert!(glob("c?-b*t", "ci-bot"));
        assert!(!glob("ci-*", "cd-bot"));
        assert!(glob("read:*", "read:jira"));
        assert!(!glob("read:?", "read:ab"));
    }

    fn key(id: &str, name: &str, created: i64) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            name: name.into(),
            scopes: vec![],
            created_by: None,
            created_at: Some(Timestamp::from_second(created).unwrap()),
            expires_at: None,
            last_used_at: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn current_key_is_kept_refreshed_or_replaced_by_the_newest() {
        let a = key("a", "n", 10);
        let b = key("b", "n", 20);
        // Still listed: kept.
        assert_eq!(
            choose_current(Some(a.clone()), &[&a, &b], None, false)
                .unwrap()
                .id,
            "a"
        );
        // Gone and not rotating: the newest of that name.
        let c = key("c", "n", 5);
        assert_eq!(
            choose_current(Some(c.clone()), &[&a, &b], None, false)
                .unwrap()
                .id,
            "b"
        );
        // Gone while rotating, or bound anew while the listing was in
        // flight: left alone (the listing cannot know the new key).
        assert_eq!(
            choose_current(Some(c), &[&a, &b], None, true).unwrap().id,
            "c"
        );
        // An explicit id is adopted over the newest.
        assert_eq!(
            choose_current(None, &[&a, &b], Some("a"), false)
                .unwrap()
                .id,
            "a"
        );
        assert!(choose_current(None, &[], None, false).is_none());
    }
}
