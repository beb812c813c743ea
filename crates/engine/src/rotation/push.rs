//! `keyrot sink push KEY [--sink NAME]`: the slot's current secret written
//! again, without rotating: to repair a sink someone overwrote, or to fill
//! a sink newly added to the key. It needs the current secret, which keyrot
//! keeps only under policy `keep_current_secret` (off by default): a
//! completed rotation then keeps its sealed secret as the slot's current
//! one ([`KeyRecord::kept_secret`]) until the slot's next rotation
//! completes, which wipes it in the same transaction ([`settle_kept`]). A
//! policy that stops keeping secrets has them wiped at its provider's next
//! inventory sync ([`drop_unkept`]), as does a slot whose current key is
//! no longer the kept secret's.
//!
//! A push unseals the kept secret, checks that its SHA-256 is the one the
//! current key's rotation recorded, then writes each sink with the same
//! calls a rotation's distribution makes: `put`, the read-back compared by
//! hash (where the sink can be read back), `finish`. One audit entry,
//! `sink.push`, names who asked, the key and the sinks with their outcome;
//! the secret is never in it, in a log line or in the answer.

use jiff::Timestamp;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use super::call::Peer;
use super::distribute::target;
use super::{Engine, Refusal};
use keyrot_config::Config;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::failpoint;
use keyrot_core::model::KeyRecord;
use keyrot_core::store::{StoreError, Tx};

/// What a push did at one sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedSink {
    /// Sink name.
    pub sink: String,
    /// The secret was written.
    pub written: bool,
    /// The read-back: `matched`, `not supported` (the sink cannot be read
    /// back), or empty when the write failed.
    pub read_back: String,
    /// The sink's version marker, if it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What failed, if something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `keyrot sink push` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushReport {
    /// The slot.
    pub key: String,
    /// The current key's id at the provider.
    pub key_id: String,
    /// The rotation whose kept secret was written.
    pub rotation_id: String,
    /// Each sink, in the order written.
    pub sinks: Vec<PushedSink>,
}

/// At a rotation's completion, inside its transaction: wipes `key`'s
/// previously kept secret (a rotation other than `rotation`), then keeps
/// `rotation`'s secret as the slot's current one when `keep`, else wipes
/// it too. The caller writes `key`.
pub(super) fn settle_kept(
    tx: &mut Tx,
    key: Option<&mut KeyRecord>,
    rotation: &str,
    keep: bool,
) -> Result<(), StoreError> {
    let Some(k) = key else {
        return tx.wipe_secret(rotation);
    };
    if let Some(prev) = k.kept_secret.take()
        && prev != rotation
    {
        tx.wipe_secret(&prev)?;
    }
    if keep {
        k.kept_secret = Some(rotation.to_string());
    } else {
        tx.wipe_secret(rotation)?;
    }
    Ok(())
}

/// At an inventory sync of `provider`, inside its transaction: wipes the
/// kept secret of each of its slots whose policy no longer keeps secrets
/// (or whose policy is gone), or whose current key is no longer the kept
/// secret's key, audited as `secret.unkept`. Returns the slots.
pub fn drop_unkept(
    tx: &mut Tx,
    cfg: &Config,
    provider: &str,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let mut dropped = Vec::new();
    for mut k in tx.keys()? {
        if k.provider != provider || k.kept_secret.is_none() {
            continue;
        }
        let Some(r) = k.kept_secret.clone() else {
            continue;
        };
        let why = if !cfg.policy(&k.policy).is_some_and(|p| p.keep_current_secret) {
            format!(
                "policy {} does not keep the current secret: kept secret wiped",
                k.policy
            )
        } else {
            // Kept, unless the slot's key is no longer the one it belongs
            // to (the key vanished, or the slot tracks another one now).
            let kept_id = tx.rotation(&r)?.and_then(|x| x.new_key).map(|n| n.id);
            let current = k.current.as_ref().map(|c| c.id.clone());
            if kept_id.is_some() && kept_id == current {
                continue;
            }
            "the slot's current key is no longer the one the kept secret belongs to: kept secret wiped".to_string()
        };
        k.kept_secret = None;
        tx.wipe_secret(&r)?;
        tx.put_key(&k)?;
        tx.audit(now, "secret.unkept", Some(&k.slot), Some(&r), None, &why)?;
        dropped.push(k.slot.clone());
    }
    Ok(dropped)
}

/// The error of a push without a kept secret.
fn not_kept(slot: &str, policy: &str, keeps: bool) -> Refusal {
    let why = if keeps {
        "the key was rotated before `keep_current_secret` was on, or the secret was wiped"
    } else {
        "`keep_current_secret` is off for its policy"
    };
    Refusal::conflict(format!(
        "the current secret of {slot} is not kept ({why}; policy {policy}): keyrot cannot write it again. `keyrot rotate {slot}` issues a new key and writes its fresh secret to every sink"
    ))
}

impl Engine {
    /// Writes `slot`'s kept current secret again to its sinks, or to
    /// `only` (one of the key's configured sinks, perhaps added after the
    /// rotation); audited as `sink.push` with `actor`.
    pub async fn push(
        &self,
        slot: &str,
        only: Option<&str>,
        actor: &str,
    ) -> Result<PushReport, Refusal> {
        let rt = self.runtime();
        let slot_s = slot.to_string();
        let key = self
            .db(move |s| s.key(&slot_s))
            .await?
            .ok_or_else(|| Refusal::unknown(format!("no key {slot} in the inventory")))?;
        let keeps = rt
            .config
            .policy(&key.policy)
            .is_some_and(|p| p.keep_current_secret);
        if let Some(r) = &key.active_rotation {
            return Err(Refusal::running(
                format!(
                    "rotation {r} of {slot} is in progress: it writes its new secret to every sink itself"
                ),
                r.clone(),
            ));
        }
        let Some(kept) = key.kept_secret.clone() else {
            return Err(not_kept(slot, &key.policy, keeps));
        };
        let kept_q = kept.clone();
        let rec = self
            .db(move |s| s.rotation(&kept_q))
            .await?
            .ok_or_else(|| not_kept(slot, &key.policy, keeps))?;
        let new = rec
            .new_key
            .clone()
            .ok_or_else(|| not_kept(slot, &key.policy, keeps))?;
        let current = key.current.as_ref().map(|c| c.id.as_str());
        if current != Some(new.id.as_str()) {
            return Err(Refusal::conflict(format!(
                "the kept secret is key {}'s, but {slot}'s current key is {}: not written. `keyrot rotate {slot}` writes a fresh one to every sink",
                new.id,
                current.unwrap_or("none")
            )));
        }
        let sinks: Vec<String> = match only {
            Some(name) if key.sinks.iter().any(|s| s == name) => vec![name.to_string()],
            Some(name) => {
                return Err(Refusal::bad_field(
                    "sink",
                    format!(
                        "sink {name:?} is not one of {slot}'s sinks ({}): add it to the key's [[key]] sinks and reload first",
                        key.sinks.join(", ")
                    ),
                ));
            }
            None => key.sinks.clone(),
        };
        if sinks.is_empty() {
            return Err(Refusal::invalid(format!("{slot} has no sinks")));
        }
        let kept_s = kept.clone();
        let secret = self
            .db(move |s| s.secret(&kept_s))
            .await?
            .ok_or_else(|| not_kept(slot, &key.policy, keeps))?;
        if sha256_hex(secret.expose_secret().as_bytes()) != new.secret_sha256 {
            return Err(Refusal::internal(format!(
                "the kept secret of {slot} does not match the SHA-256 its rotation {kept} recorded for key {}: nothing written",
                new.id
            )));
        }
        let target = target(&rec).map_err(|e| Refusal::internal(e.message))?;
        let mut out = Vec::new();
        for name in &sinks {
            let mut done = PushedSink {
                sink: name.clone(),
                written: false,
                read_back: String::new(),
                version: None,
                error: None,
            };
            let Some(sink) = rt.sinks.get(name).cloned() else {
                done.error = Some(format!("sink {name:?} is not configured"));
                out.push(done);
                continue;
            };
            match self
                .call(
                    failpoint::around("before:sink-put", "after:sink-put"),
                    Peer::Sink(name),
                    sink.put(&target, &secret),
                )
                .await
            {
                Ok(v) => {
                    done.written = true;
                    done.version = v;
                }
                Err(e) => {
                    done.error = Some(e.message);
                    out.push(done);
                    continue;
                }
            }
            if sink.can_read_back() {
                match self
                    .call(
                        failpoint::around("before:sink-read", "after:sink-read"),
                        Peer::Sink(name),
                        sink.read_back(&target),
                    )
                    .await
                {
                    Ok(Some(h)) if h == new.secret_sha256 => done.read_back = "matched".into(),
                    Ok(Some(_)) => {
                        done.read_back = "different".into();
                        done.error = Some(format!(
                            "sink {name} holds a different secret than the one written (another writer?)"
                        ));
                    }
                    Ok(None) => {
                        done.read_back = "nothing".into();
                        done.error = Some(format!("sink {name} holds no secret for {slot}"));
                    }
                    Err(e) => done.error = Some(e.message),
                }
            } else {
                done.read_back = "not supported".into();
            }
            if done.error.is_none()
                && let Err(e) = self
                    .call(
                        failpoint::around("before:sink-finish", "after:sink-finish"),
                        Peer::Sink(name),
                        sink.finish(&target),
                    )
                    .await
            {
                done.error = Some(e.message);
            }
            out.push(done);
        }
        drop(secret);
        let now = self.now();
        let detail = out
            .iter()
            .map(|d| match &d.error {
                None => format!("{}: written, read back {}", d.sink, d.read_back),
                Some(e) => format!("{}: FAILED ({e})", d.sink),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let (slot_a, rot_a, actor_a) = (slot.to_string(), kept.clone(), actor.to_string());
        let detail_a = format!("key {}: {detail}", new.id);
        self.db(move |s| {
            s.write(|tx| {
                tx.audit(
                    now,
                    "sink.push",
                    Some(&slot_a),
                    Some(&rot_a),
                    Some(&actor_a),
                    &detail_a,
                )
            })
        })
        .await?;
        for d in &out {
            match &d.error {
                None => tracing::info!(key = %slot, sink = %d.sink, actor = %actor,
                    "current secret pushed to the sink again (keyrot sink push)"),
                Some(e) => tracing::warn!(key = %slot, sink = %d.sink, actor = %actor, error = %e,
                    "keyrot sink push failed at the sink"),
            }
        }
        Ok(PushReport {
            key: slot.to_string(),
            key_id: new.id,
            rotation_id: kept,
            sinks: out,
        })
    }
}
