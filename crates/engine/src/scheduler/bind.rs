//! Binding a provider's inventory to the configured `[[key]]` entries: which
//! provider key is the live key of which slot. Pure: the caller reads the
//! inventory and the store, and writes what this returns.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;

use crate::rotation::plan;
use keyrot_config::{Config, KeyMatch, KeySpec};
use keyrot_core::model::{Duplicates, EndKind, EndedKey, KeyInfo, KeyRecord, slot_id};

/// What a sync changes.
#[derive(Debug, Default)]
pub struct Bound {
    /// Slot records to write: the provider's slots that are new or that
    /// the listing, the config or the policy changed (rescheduled), with
    /// `synced_at` set to this sync.
    pub records: Vec<KeyRecord>,
    /// Slots of the provider left exactly as the store holds them (not
    /// written; their `synced_at` is when a sync last changed them).
    pub unchanged: usize,
    /// Slots of the provider no `[[key]]` matches any more.
    pub removed: Vec<String>,
    /// Slots whose name the provider lists more than once: the live keys
    /// of that name other than the one the slot tracks (an abandoned
    /// copy, say, which would otherwise never show). A slot whose binding
    /// moved while the listing was in flight is left out until the next
    /// sync, as the listing may still hold the key it just replaced.
    pub duplicates: Duplicates,
    /// Slots whose key this sync found gone from the listing with no
    /// rotation replacing it (expired, or vanished before its expiry): the
    /// slot and the key that ended (also in the slot's record as written).
    pub ended: Vec<(String, EndedKey)>,
}

/// `*` matches any run of characters, `?` one character (`/` included:
/// names with `/` never get this far, see [`super::names`]).
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

/// The `[[key]]` of `provider` that selects `key` (the first one, as in
/// [`bind`]), if any.
pub fn claimant<'a>(cfg: &'a Config, provider: &str, key: &KeyInfo) -> Option<&'a KeySpec> {
    cfg.keys
        .iter()
        .filter(|s| s.provider == provider)
        .find(|s| selects(&s.matches, key))
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
    let by_slot: HashMap<&str, &KeyRecord> =
        existing.iter().map(|r| (r.slot.as_str(), r)).collect();
    // The listed keys by name: a slot's candidates in O(1), not a scan of
    // the whole listing per slot (100k slots × 100k keys otherwise).
    let mut by_name: HashMap<&str, Vec<&KeyInfo>> = HashMap::new();
    for k in &listed {
        by_name.entry(k.name.as_str()).or_default().push(k);
    }
    // The group view of the slots as this sync leaves them (each slot's
    // spec group with the start the store holds), then of every slot the
    // store holds, indexed once.
    let slot_ids: Vec<String> = slots.keys().map(|n| slot_id(provider, n)).collect();
    let mut groups = plan::GroupStarts::default();
    for (spec, slot) in slots.values().zip(&slot_ids) {
        let started = by_slot.get(slot.as_str()).and_then(|r| r.last_started_at);
        if let (Some(group), Some(at)) = (spec.group.as_deref(), started) {
            groups.add(group, slot, at);
        }
    }
    for r in existing {
        if let (Some(group), Some(at)) = (r.group.as_deref(), r.last_started_at) {
            groups.add(group, &r.slot, at);
        }
    }
    let mut records = Vec::new();
    let mut unchanged = 0;
    let mut duplicates = Duplicates::new();
    let mut ended = Vec::new();
    for ((name, spec), slot) in slots.iter().zip(&slot_ids) {
        let old = by_slot.get(slot.as_str()).copied();
        let mut rec = old.cloned().unwrap_or_else(|| KeyRecord {
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
            hooks: Vec::new(),
            scopes: Vec::new(),
            contacts: Vec::new(),
            group: None,
            ended: None,
            kept_secret: None,
        });
        rec.policy = spec.policy.clone();
        rec.sinks = spec.sinks.clone();
        rec.hooks = spec.hooks.clone();
        rec.scopes = spec.scopes.clone();
        rec.contacts = spec.contacts.clone();
        rec.group = spec.group.clone();
        let candidates: &[&KeyInfo] = by_name.get(name.as_str()).map_or(&[], Vec::as_slice);
        let adopt = match &spec.matches {
            KeyMatch::Named { id: Some(id), .. } => Some(id.as_str()),
            _ => None,
        };
        let hold = rec.active_rotation.is_some() || changed.contains(slot);
        let gone = rec
            .current
            .as_ref()
            .filter(|c| !hold && !candidates.iter().any(|k| k.id == c.id))
            .map(|c| end_of(c, now));
        rec.current = choose_current(rec.current.take(), candidates, adopt, hold);
        if let Some(e) = gone {
            rec.ended = Some(e.clone());
            ended.push((slot.clone(), e));
        }
        // A slot with a key again no longer reports the one that ended.
        if rec.current.is_some() {
            rec.ended = None;
        }
        let tracked = rec.current.as_ref().map(|k| k.id.as_str());
        let mut others: Vec<KeyInfo> = candidates
            .iter()
            .filter(|k| Some(k.id.as_str()) != tracked)
            .map(|k| (*k).clone())
            .collect();
        if !others.is_empty() && !changed.contains(slot) {
            others.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            duplicates.insert(slot.clone(), others);
        }
        let last = groups.last_start(&rec);
        plan::schedule(cfg, &mut rec, last, now);
        // A slot the sync leaves as it was is not written again: a sync of
        // 100k unchanged keys writes nothing but the provider's sync time.
        if let Some(old) = old {
            rec.synced_at = old.synced_at;
            if *old == rec {
                unchanged += 1;
                continue;
            }
        }
        rec.synced_at = Some(now);
        records.push(rec);
    }
    let removed = existing
        .iter()
        .filter(|r| {
            r.provider == provider && !slots.contains_key(&r.name) && r.active_rotation.is_none()
        })
        .map(|r| r.slot.clone())
        .collect();
    Bound {
        records,
        unchanged,
        removed,
        duplicates,
        ended,
    }
}

/// How `key`, no longer listed at `now`, ended: expired when its recorded
/// expiry has passed, else vanished (revoked or deleted behind keyrot's
/// back).
fn end_of(key: &KeyInfo, now: Timestamp) -> EndedKey {
    match key.expires_at {
        Some(e) if e <= now => EndedKey {
            id: key.id.clone(),
            kind: EndKind::Expired,
            expires_at: Some(e),
            ended_at: e,
            noticed_at: now,
        },
        e => EndedKey {
            id: key.id.clone(),
            kind: EndKind::Vanished,
            expires_at: e,
            ended_at: now,
            noticed_at: now,
        },
    }
}

/// The slot's live key after a sync: the same key refreshed when it is
/// still listed; else, when `hold` (a rotation runs, or the binding moved
/// while the listing was in flight), the key the store holds, which the
/// listing may not know yet; else an explicitly adopted id; else the newest
/// key of that name (by creation time, then by id, so that two listings in
/// another order pick the same one); else none. Other keys of that name do
/// not move a slot off the key it tracks.
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
    }
    if let Some(id) = adopt
        && let Some(k) = candidates.iter().find(|k| k.id == id)
    {
        return Some((*k).clone());
    }
    candidates
        .iter()
        .max_by_key(|k| (k.created_at, &k.id))
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
        // Two of one creation time: the larger id, whatever the order.
        let (x, y) = (key("x", "n", 30), key("y", "n", 30));
        assert_eq!(
            choose_current(None, &[&x, &y], None, false).unwrap().id,
            "y"
        );
        assert_eq!(
            choose_current(None, &[&y, &x], None, false).unwrap().id,
            "y"
        );
    }

    fn config() -> Config {
        keyrot_config::load_str(
            std::path::Path::new("/etc/keyrot/keyrot.toml"),
            "[[provider]]\nname = \"p\"\ntype = \"local\"\n\
             [[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/tmp/keyrot/{name}\"\n\
             [[policy]]\nname = \"std\"\n\
             [[key]]\nname = \"n\"\nprovider = \"p\"\npolicy = \"std\"\nsinks = [\"out\"]\n",
        )
        .unwrap()
    }

    fn ids(keys: &[KeyInfo]) -> Vec<&str> {
        keys.iter().map(|k| k.id.as_str()).collect()
    }

    #[test]
    fn keys_sharing_the_slots_name_are_reported_beside_the_one_it_tracks() {
        let cfg = config();
        let now = Timestamp::from_second(1_000).unwrap();
        let none = HashSet::new();
        let (a, b, c) = (key("a", "n", 10), key("b", "n", 20), key("c", "n", 5));
        let other = key("o", "other", 30);
        let listed = [a.clone(), other, c.clone(), b.clone()];

        // A new slot tracks the newest; the rest are its duplicates, newest
        // first.
        let out = bind(&cfg, "p", &listed, &[], &none, &none, now);
        let rec = &out.records[0];
        assert_eq!(rec.current.as_ref().unwrap().id, "b");
        assert_eq!(ids(&out.duplicates["p/n"]), ["a", "c"]);
        assert_eq!(out.duplicates.len(), 1);

        // A slot already bound keeps its key, however new the others.
        let mut bound = rec.clone();
        bound.current = Some(a.clone());
        let out = bind(&cfg, "p", &listed, &[bound.clone()], &none, &none, now);
        assert_eq!(out.records.len() + out.unchanged, 1);
        assert_eq!(ids(&out.duplicates["p/n"]), ["b", "c"]);

        // The new key of a rotation in flight is not a duplicate.
        let flying: HashSet<String> = ["b".to_string(), "c".to_string()].into();
        let out = bind(&cfg, "p", &listed, &[bound.clone()], &flying, &none, now);
        assert!(out.duplicates.is_empty(), "{:?}", out.duplicates);

        // A slot whose binding moved during the listing waits for the next
        // sync; one key of the name is no duplicate.
        let moved: HashSet<String> = ["p/n".to_string()].into();
        let out = bind(&cfg, "p", &listed, &[bound.clone()], &none, &moved, now);
        assert!(out.duplicates.is_empty());
        let out = bind(&cfg, "p", &[a], &[bound], &none, &none, now);
        assert!(out.duplicates.is_empty());
    }

    #[test]
    fn a_key_gone_from_the_listing_is_reported_once_as_expired_or_vanished() {
        let cfg = config();
        let none = HashSet::new();
        let now = Timestamp::from_second(1_000).unwrap();
        let mut gone = key("a", "n", 10);
        gone.expires_at = Some(Timestamp::from_second(900).unwrap());
        let out = bind(&cfg, "p", &[gone.clone()], &[], &none, &none, now);
        let rec = out.records[0].clone();
        assert!(out.ended.is_empty());

        // Expired while keyrot looked away: told as expired, at its expiry.
        let out = bind(
            &cfg,
            "p",
            &[],
            std::slice::from_ref(&rec),
            &none,
            &none,
            now,
        );
        let (slot, e) = &out.ended[0];
        assert_eq!((slot.as_str(), e.id.as_str()), ("p/n", "a"));
        assert_eq!(e.kind, EndKind::Expired);
        assert_eq!(e.ended_at, Timestamp::from_second(900).unwrap());
        let after = out.records[0].clone();
        assert!(after.current.is_none());
        assert_eq!(after.ended.as_ref(), Some(e));
        // The next sync finds nothing new to tell.
        let out = bind(
            &cfg,
            "p",
            &[],
            std::slice::from_ref(&after),
            &none,
            &none,
            now,
        );
        assert!(out.ended.is_empty());
        assert_eq!(out.unchanged, 1);

        // Gone before its expiry: vanished, at the sync that found it.
        let early = Timestamp::from_second(800).unwrap();
        let out = bind(
            &cfg,
            "p",
            &[],
            std::slice::from_ref(&rec),
            &none,
            &none,
            early,
        );
        assert_eq!(out.ended[0].1.kind, EndKind::Vanished);
        assert_eq!(out.ended[0].1.ended_at, early);

        // A rotation holds the key: nothing ended.
        let mut rotating = rec;
        rotating.active_rotation = Some("r1".into());
        let out = bind(&cfg, "p", &[], &[rotating], &none, &none, now);
        assert!(out.ended.is_empty());

        // A new key clears the report.
        let fresh = key("b", "n", 950);
        let out = bind(&cfg, "p", &[fresh], &[after], &none, &none, now);
        assert!(out.ended.is_empty());
        assert!(out.records[0].ended.is_none());
    }
}
