//! The orphan sweep. A key a provider lists is an **orphan** when it
//! carries keyrot's rotation tag ([`keyrot_peers::provider::tag`]) and
//! keyrot owns it in no way:
//!
//! - its id is no slot's current key (of that provider),
//! - it is not the old key, the new key or a `revoke_also` key of an
//!   unfinished rotation (any state but Completed and Aborted: a Failed
//!   rotation waits for resume, restart or abort, which deal with its
//!   keys), and
//! - the rotation its tag names is not an unfinished rotation (an issue in
//!   flight has a key at the provider before its id is in the store).
//!
//! Keys without keyrot's tag (made by hand) are never orphans: they are
//! someone else's. A provider whose listing carries no tags
//! ([`keyrot_peers::provider::Provider::lists_tags`]: Atlassian, aws-iam,
//! an `exec` provider without `find_tagged`, an `http` preset without a
//! tag) has no sweep.
//!
//! The inventory sync runs the sweep in its write transaction, after the
//! slots are bound, and keeps the result in the store (`orphans:NAME` in
//! `meta`), so `keyrot status` and `keyrot orphans` show them without
//! calling providers. What protected a key when the sync began is
//! protected too, so a rotation that completes while the listing is in
//! flight (its old key still listed, its record already terminal) makes no
//! false orphan. Each orphan is alerted once: a mail to every policy's
//! `notify` and `security_contacts`, a warning in the log and
//! `keyrot_orphan_keys_found_total`, when a sync first finds it.
//!
//! Orphans are revoked only by `keyrot orphans --revoke` or, at each sync,
//! by a provider with `revoke_orphans = true` ([`revoke`]): each one is
//! checked again against the store just before its revoke, and each revoke
//! is audited (`orphan.revoked`) in the transaction that drops it from the
//! list.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::names::shown;
use crate::notify::Composer;
use crate::notify::orphan::OrphanAction;
use crate::rotation::Engine;
use keyrot_core::model::{KeyInfo, KeyRecord, Orphan, RotationRecord, RotationState};
use keyrot_core::store::{StoreError, Tx};
use keyrot_peers::provider::tag::rotation_tag;

/// What makes a key keyrot's own: the key ids and the unfinished rotations
/// of one provider's slots.
#[derive(Clone, Debug, Default)]
pub struct Shield {
    /// Current keys, and the old, new and `revoke_also` keys of unfinished
    /// rotations.
    ids: HashSet<String>,
    /// Unfinished rotations.
    rotations: HashSet<String>,
}

/// Whether a rotation in `state` has let go of its keys.
fn finished(state: RotationState) -> bool {
    matches!(state, RotationState::Completed | RotationState::Aborted)
}

impl Shield {
    /// The shield of `provider`'s slots among `keys`, reading each slot's
    /// rotation with `rotation`.
    pub fn of(
        keys: &[KeyRecord],
        provider: &str,
        mut rotation: impl FnMut(&str) -> Result<Option<RotationRecord>, StoreError>,
    ) -> Result<Shield, StoreError> {
        let mut s = Shield::default();
        for k in keys.iter().filter(|k| k.provider == provider) {
            if let Some(c) = &k.current {
                s.ids.insert(c.id.clone());
            }
            let Some(id) = &k.active_rotation else {
                continue;
            };
            let Some(r) = rotation(id)? else { continue };
            if finished(r.state) {
                continue;
            }
            s.rotations.insert(r.id.clone());
            s.ids.extend(r.old_key_id.iter().cloned());
            s.ids.extend(r.new_key.iter().map(|n| n.id.clone()));
            s.ids.extend(r.revoke_also.iter().cloned());
        }
        Ok(s)
    }

    /// Both shields.
    pub fn merged(mut self, other: &Shield) -> Shield {
        self.ids.extend(other.ids.iter().cloned());
        self.rotations.extend(other.rotations.iter().cloned());
        self
    }
}

/// The orphans among `listed` (keys of `provider`): tagged keys the shield
/// does not cover whose tagged rotation `state_of` does not know as
/// unfinished. An orphan `previous` holds keeps its `found_at`.
pub fn detect(
    provider: &str,
    listed: &[KeyInfo],
    shield: &Shield,
    previous: &[Orphan],
    mut state_of: impl FnMut(&str) -> Result<Option<RotationState>, StoreError>,
    now: Timestamp,
) -> Result<Vec<Orphan>, StoreError> {
    let mut out = Vec::new();
    for k in listed {
        let Some(tag) = rotation_tag(k) else { continue };
        if shield.ids.contains(&k.id) || shield.rotations.contains(tag) {
            continue;
        }
        if state_of(tag)?.is_some_and(|s| !finished(s)) {
            continue;
        }
        let found_at = previous
            .iter()
            .find(|o| o.id == k.id)
            .map_or(now, |o| o.found_at);
        out.push(Orphan {
            provider: provider.to_string(),
            id: k.id.clone(),
            name: k.name.clone(),
            rotation: tag.to_string(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            found_at,
            seen_at: now,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

/// The sweep inside the sync's write transaction (after the slots are
/// written): records `provider`'s orphans among `listed` and queues the
/// alert of each one found for the first time, unless the provider
/// revokes orphans (the revoke's outcome is mailed then). Returns the
/// orphans found for the first time.
pub fn sweep(
    tx: &mut Tx,
    mail: &Composer,
    provider: &str,
    listed: &[KeyInfo],
    before: &Shield,
    revokes: bool,
    now: Timestamp,
) -> Result<Vec<Orphan>, StoreError> {
    let keys = tx.keys()?;
    let shield = Shield::of(&keys, provider, |id| tx.rotation(id))?.merged(before);
    drop(keys);
    let previous = tx.orphans_of(provider)?;
    let found = detect(
        provider,
        listed,
        &shield,
        &previous,
        |id| Ok(tx.rotation(id)?.map(|r| r.state)),
        now,
    )?;
    let fresh: Vec<Orphan> = found
        .iter()
        .filter(|o| !previous.iter().any(|p| p.id == o.id))
        .cloned()
        .collect();
    if found != previous {
        tx.set_orphans(provider, &found)?;
    }
    if !revokes {
        for o in &fresh {
            queue_once(tx, mail, o, &OrphanAction::Listed, now)?;
        }
    }
    Ok(fresh)
}

/// Queues the alert of `o` unless it was queued before.
fn queue_once(
    tx: &mut Tx,
    mail: &Composer,
    o: &Orphan,
    action: &OrphanAction,
    now: Timestamp,
) -> Result<(), StoreError> {
    for m in mail.orphan_found(o, action, now) {
        if tx.message(&m.id)?.is_none() {
            tx.put_message(&m)?;
        }
    }
    Ok(())
}

/// Logs and counts the orphans a sync of `provider` found for the first
/// time.
pub fn report(engine: &Engine, provider: &str, fresh: &[Orphan], revokes: bool) {
    for o in fresh {
        engine.metrics().orphan_found(provider);
        tracing::warn!(
            provider = %shown(provider),
            key_id = %shown(&o.id),
            name = %shown(&o.name),
            rotation = %shown(&o.rotation),
            "orphan key: the provider lists a key with keyrot's tag for a rotation keyrot does not know; {}",
            if revokes {
                "revoke_orphans = true: keyrot revokes it now"
            } else {
                "left as it is (keyrot orphans --revoke revokes it)"
            }
        );
    }
}

/// What became of one orphan `keyrot orphans --revoke` (or a sync with
/// `revoke_orphans`) was asked to revoke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeOutcome {
    /// The provider.
    pub provider: String,
    /// The key's id at the provider.
    pub id: String,
    /// The key's name at the provider.
    pub name: String,
    /// Revoked (and audited).
    pub revoked: bool,
    /// Why not, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Revokes the stored orphans of `provider` (every provider's when none),
/// each checked again against the store just before its revoke, each
/// revoke audited as `orphan.revoked` with `actor` in the transaction
/// that drops the key from the list. `by_sync`: the sync of a provider
/// with `revoke_orphans` (the outcome is mailed, once per key).
pub async fn revoke(
    engine: &Arc<Engine>,
    provider: Option<&str>,
    actor: &str,
    by_sync: bool,
) -> Result<Vec<RevokeOutcome>, String> {
    let stored = engine
        .db(|s| s.orphans())
        .await
        .map_err(|e| e.to_string())?;
    let rt = engine.runtime();
    let mail = Composer::new(Arc::clone(&rt.config));
    let mut out = Vec::new();
    for o in stored
        .into_iter()
        .filter(|o| provider.is_none_or(|p| p == o.provider))
    {
        let mut outcome = RevokeOutcome {
            provider: o.provider.clone(),
            id: o.id.clone(),
            name: o.name.clone(),
            revoked: false,
            error: None,
        };
        let Some(p) = rt.providers.get(&o.provider).cloned() else {
            outcome.error = Some("its provider is no longer configured".into());
            out.push(outcome);
            continue;
        };
        if !p.capabilities().revoke {
            outcome.error = Some(format!(
                "provider {} cannot revoke keys: revoke it at the provider by hand",
                shown(&o.provider)
            ));
            out.push(outcome);
            continue;
        }
        // Still an orphan, by the store as it is now?
        let again = o.clone();
        let still = engine
            .db(move |s| {
                let listed = s
                    .orphans()?
                    .into_iter()
                    .any(|x| x.provider == again.provider && x.id == again.id);
                if !listed {
                    return Ok(false);
                }
                let keys = s.keys()?;
                let shield = Shield::of(&keys, &again.provider, |id| s.rotation(id))?;
                let unfinished = s
                    .rotation(&again.rotation)?
                    .is_some_and(|r| !finished(r.state));
                Ok(!shield.ids.contains(&again.id)
                    && !shield.rotations.contains(&again.rotation)
                    && !unfinished)
            })
            .await
            .map_err(|e| e.to_string())?;
        if !still {
            outcome.error = Some("no longer an orphan (keyrot owns it now, or it is gone)".into());
            out.push(outcome);
            continue;
        }
        if !engine.store().lease_valid() {
            outcome.error =
                Some("this keyrot does not hold a valid leader lease: no call is made".into());
            out.push(outcome);
            continue;
        }
        let now = engine.now();
        let result = p.revoke(&o.id, now).await;
        let actor_s = actor.to_string();
        let mail_c = mail.clone();
        let done = o.clone();
        let failed = result.as_ref().err().map(|e| e.message.clone());
        if let Some(e) = &failed {
            engine.metrics().provider_error(&o.provider, "revoke");
            tracing::error!(provider = %shown(&o.provider), key_id = %shown(&o.id), error = %e,
                "revoking an orphan key failed");
        }
        let failed_c = failed.clone();
        engine
            .db(move |s| {
                s.write(|tx| {
                    match &failed_c {
                        None => {
                            let mut list = tx.orphans_of(&done.provider)?;
                            list.retain(|x| x.id != done.id);
                            tx.set_orphans(&done.provider, &list)?;
                            tx.audit(
                                now,
                                "orphan.revoked",
                                None,
                                None,
                                Some(&actor_s),
                                &format!(
                                    "provider={} key={} name={} tagged_rotation={}",
                                    shown(&done.provider),
                                    shown(&done.id),
                                    shown(&done.name),
                                    shown(&done.rotation)
                                ),
                            )?;
                            if by_sync {
                                queue_once(tx, &mail_c, &done, &OrphanAction::Revoked, now)?;
                            }
                        }
                        Some(e) if by_sync => {
                            let action = OrphanAction::RevokeFailed(e.clone());
                            queue_once(tx, &mail_c, &done, &action, now)?;
                        }
                        Some(_) => {}
                    }
                    Ok(())
                })
            })
            .await
            .map_err(|e| e.to_string())?;
        match failed {
            None => {
                engine.metrics().orphan_revoked(&o.provider);
                tracing::warn!(provider = %shown(&o.provider), key_id = %shown(&o.id),
                    actor = %shown(actor), "revoked an orphan key");
                outcome.revoked = true;
            }
            Some(e) => outcome.error = Some(e),
        }
        out.push(outcome);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "orphans_tests.rs"]
mod tests;
