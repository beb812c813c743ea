//! Which key a secret belongs to. The Admin API has no "who am I" call, but
//! every authenticated call moves the calling key's `lastActiveAt`: keyrot
//! lists the keys twice with the admin key (keys that move between those
//! two lists are busy: the admin key itself, consumers at work), makes one
//! authenticated call with the secret, and lists again. The secret belongs
//! to key K when K, and no other key that was quiet, moved. A quiet key
//! other than K that moved owns the secret: the enrollment is refused,
//! naming it. Anything else (K busy, nothing moved because the server
//! updates `lastActiveAt` lazily, several quiet keys moved) proves nothing.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use secrecy::SecretString;

use super::AtlassianProvider;
use crate::provider::{Identity, Provider};
use keyrot_core::error::CallError;

/// Rounds tried while other keys' use blurs the picture.
const ROUNDS: usize = 3;

/// `lastActiveAt` of every live key, by id.
type Activity = BTreeMap<String, Option<Timestamp>>;

impl AtlassianProvider {
    /// Every live key's `lastActiveAt`, from one admin listing.
    async fn activity(&self, now: Timestamp) -> Result<Activity, CallError> {
        Ok(self
            .list(now)
            .await?
            .into_iter()
            .map(|k| (k.id, k.last_used_at))
            .collect())
    }

    /// See the module comment.
    pub(super) async fn prove(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<Identity, CallError> {
        let mut why = String::new();
        for _ in 0..ROUNDS {
            let first = self.activity(now).await?;
            let before = self.activity(now).await?;
            if !before.contains_key(id) {
                return Err(CallError::permanent(format!(
                    "provider {:?}: key {id} is not a live key of organisation {}",
                    self.name, self.org_id
                )));
            }
            let busy = moved(&first, &before);
            self.verify(id, secret, now).await?;
            let after = self.activity(now).await?;
            let quiet_moved: BTreeSet<String> = moved(&before, &after)
                .into_iter()
                .filter(|k| !busy.contains(k))
                .collect();
            match judge(id, &busy, &quiet_moved) {
                Verdict::Proven => return Ok(Identity::Proven),
                Verdict::Other(other) => {
                    return Err(CallError::permanent(format!(
                        "provider {:?}: the secret belongs to key {other}, not to key {id} (an authenticated call with it moved {other}'s lastActiveAt)",
                        self.name
                    )));
                }
                Verdict::Unclear(w) => why = w,
            }
        }
        Ok(Identity::Unprovable(format!(
            "provider {:?}: cannot tell which key the secret belongs to: {why}",
            self.name
        )))
    }
}

/// What one round showed.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Only `id` moved.
    Proven,
    /// Only this other quiet key moved: the secret is its.
    Other(String),
    /// Nothing can be said (why).
    Unclear(String),
}

/// Judges one round: `busy` moved without the secret's call; `moved` are
/// the quiet keys that moved across it.
fn judge(id: &str, busy: &BTreeSet<String>, moved: &BTreeSet<String>) -> Verdict {
    if busy.contains(id) {
        return Verdict::Unclear(format!(
            "key {id} was in use by something else during the check"
        ));
    }
    let others: Vec<&String> = moved.iter().filter(|k| k.as_str() != id).collect();
    match (moved.contains(id), others.as_slice()) {
        (true, []) => Verdict::Proven,
        (false, [one]) => Verdict::Other((*one).clone()),
        (false, []) => Verdict::Unclear(
            "no key's lastActiveAt moved (the server may update it lazily, or the secret is the admin key's)"
                .to_string(),
        ),
        (_, many) => Verdict::Unclear(format!(
            "other keys were used at the same time: {}",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Keys whose `lastActiveAt` is later in `after` than in `before`.
fn moved(before: &Activity, after: &Activity) -> BTreeSet<String> {
    after
        .iter()
        .filter(|(id, t)| match (before.get(*id), t) {
            (Some(b), Some(a)) => b.is_none_or(|b| *a > b),
            (None, Some(_)) => true,
            _ => false,
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn judges_a_round() {
        assert_eq!(
            judge("new", &set(&["admin"]), &set(&["new"])),
            Verdict::Proven
        );
        assert_eq!(
            judge("new", &set(&["admin"]), &set(&["old"])),
            Verdict::Other("old".into())
        );
        assert!(matches!(
            judge("new", &set(&[]), &set(&[])),
            Verdict::Unclear(_)
        ));
        assert!(matches!(
            judge("new", &set(&["new"]), &set(&[])),
            Verdict::Unclear(_)
        ));
        assert!(matches!(
            judge("new", &set(&[]), &set(&["new", "x"])),
            Verdict::Unclear(_)
        ));
        assert!(matches!(
            judge("new", &set(&[]), &set(&["x", "y"])),
            Verdict::Unclear(_)
        ));
    }

    #[test]
    fn moved_keys_are_those_used_later() {
        let t = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        let before: Activity = [
            ("a".to_string(), None),
            ("b".to_string(), t("2026-01-01T00:00:00Z")),
            ("c".to_string(), t("2026-01-01T00:00:00Z")),
        ]
        .into();
        let after: Activity = [
            ("a".to_string(), t("2026-01-01T00:00:01Z")),
            ("b".to_string(), t("2026-01-01T00:00:00Z")),
            ("c".to_string(), t("2026-01-01T00:00:02Z")),
            ("d".to_string(), None),
        ]
        .into();
        assert_eq!(moved(&before, &after), set(&["a", "c"]));
    }
}
