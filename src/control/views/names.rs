//! Key-name resolution: what a caller typed becomes a slot id, or a 404
//! with near matches (edit distance or substring) or a 400 listing the
//! slots of a name several providers hold.

use crate::control::ApiError;
use keyrot_core::model::KeyRecord;
use keyrot_core::store::Store;

/// Most near matches offered for an unknown key.
const MAX_SUGGESTIONS: usize = 5;

/// Largest edit distance at which a key name counts as a near match.
const MAX_DISTANCE: usize = 3;

/// Resolves what a caller typed to a slot id: an exact slot id, or a key
/// name unique across providers. Unknown: 404 with near matches; a name
/// several providers hold: 400 listing the slots.
pub fn resolve_key(store: &Store, name: &str) -> Result<String, ApiError> {
    if store.key(name)?.is_some() {
        return Ok(name.to_string());
    }
    let all = store.keys()?;
    let named: Vec<&KeyRecord> = all.iter().filter(|k| k.name == name).collect();
    match named.as_slice() {
        [one] => Ok(one.slot.clone()),
        [] => Err(unknown_key(name, &all)),
        many => {
            let slots: Vec<String> = many.iter().map(|k| k.slot.clone()).collect();
            let mut e = ApiError::bad_field(
                "key",
                format!(
                    "key name \"{name}\" is held by several providers ({}): give provider/name",
                    slots.join(", ")
                ),
            );
            e.suggestions = slots;
            Err(e)
        }
    }
}

/// The 404 for an unknown key, with near matches in the message and in
/// `suggestions`.
pub(super) fn unknown_key(name: &str, all: &[KeyRecord]) -> ApiError {
    let suggestions = near_matches(name, all);
    let message = if suggestions.is_empty() {
        format!("unknown key \"{name}\" (keyrot keys lists them)")
    } else {
        format!(
            "unknown key \"{name}\"; did you mean {}?",
            or_list(&suggestions)
        )
    };
    let mut e = ApiError::new(404, message);
    e.field = Some("key".to_string());
    e.suggestions = suggestions;
    e
}

/// "a", "a or b", "a, b or c".
pub(super) fn or_list(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Keys close to `input`: within [`MAX_DISTANCE`] edits, or one a
/// substring of the other. Compared with slot ids when `input` has a `/`,
/// else with key names; offered by name when the name is unique, else by
/// slot id. Closest first.
fn near_matches(input: &str, all: &[KeyRecord]) -> Vec<String> {
    let needle = input.to_lowercase();
    let mut found: Vec<(usize, String)> = Vec::new();
    for k in all {
        let target = if input.contains('/') {
            &k.slot
        } else {
            &k.name
        };
        let hay = target.to_lowercase();
        let dist = edit_distance(&needle, &hay);
        let close = dist <= MAX_DISTANCE
            || (!needle.is_empty() && (hay.contains(&needle) || needle.contains(&hay)));
        if !close {
            continue;
        }
        let unique = all.iter().filter(|o| o.name == k.name).count() == 1;
        let shown = if unique && !input.contains('/') {
            k.name.clone()
        } else {
            k.slot.clone()
        };
        if !found.iter().any(|(_, s)| *s == shown) {
            found.push((dist, shown));
        }
    }
    found.sort();
    found
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, s)| s)
        .collect()
}

/// Levenshtein distance over characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            let best = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(best);
        }
        prev = cur;
    }
    prev[b.len()]
}
