//! Handing a new secret to the API caller who asked for it
//! (`reveal_psk`): the pre-shared keys resolved at runtime build, the
//! envelope sealed under one of them in the same transaction that commits
//! Issued, its one-time hand-over, and its wiping.
//!
//! Lifetime of an envelope (store key `{rotation id}#psk`): written with
//! Issued; removed when the API handler takes it; removed at once when the
//! rotation is aborted (its key is revoked); at Completed, removed when the
//! key was issued at least [`ENVELOPE_GRACE`] ago, else left for the caller
//! who is still waiting and swept by the next [`Engine::sweep_envelopes`]
//! (after each completion, and at daemon start) once the rotation has been
//! finished for [`ENVELOPE_GRACE`]. Envelopes are sealed under the caller's
//! PSK and, in the store, under the master key as well.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};

use super::{Engine, EngineError, Runtime};
use keyrot_config::{ApiTokenConfig, Config};
use keyrot_core::crypto;
use keyrot_core::crypto::psk::{self, PskBytes};
use keyrot_core::error::CallError;
use keyrot_core::model::{RotationRecord, RotationState};
use keyrot_core::store::{Store, StoreError, Tx};

/// How long an envelope is kept for a caller at least, counted from the
/// new key's issue (at completion) or from the rotation's end (sweep).
/// Longer than the rotate API's 120 s wait.
pub const ENVELOPE_GRACE: SignedDuration = SignedDuration::from_mins(10);

/// Shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Makes read-then-wipe of an envelope one step, so two callers never
/// both get it.
static TAKE: Mutex<()> = Mutex::new(());

/// Resolves every `[[psk]]` to its 32 bytes; the error names the psk id
/// and where its key comes from, never the key.
pub fn resolve_psks(
    cfg: &Config,
    credentials_dir: Option<&Path>,
) -> Result<HashMap<String, PskBytes>, String> {
    let mut out = HashMap::new();
    for p in &cfg.psks {
        let text = p
            .key
            .resolve(credentials_dir)
            .map_err(|e| format!("psk {:?}: cannot read its key ({}): {e}", p.id, p.key))?;
        let bytes = psk::parse_psk(text.expose_secret().as_bytes()).ok_or_else(|| {
            format!(
                "psk {:?}: its key ({}) must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`; it holds {} characters",
                p.id,
                p.key,
                text.expose_secret().chars().count()
            )
        })?;
        out.insert(p.id.clone(), bytes);
    }
    Ok(out)
}

/// Reads one API token; refuses tokens shorter than [`MIN_TOKEN_LEN`].
pub fn resolve_token(
    t: &ApiTokenConfig,
    credentials_dir: Option<&Path>,
) -> Result<SecretString, String> {
    let token = t.token.resolve(credentials_dir).map_err(|e| {
        format!(
            "api_token {:?}: cannot read its token ({}): {e}",
            t.name, t.token
        )
    })?;
    let len = token.expose_secret().trim().chars().count();
    if len < MIN_TOKEN_LEN {
        return Err(format!(
            "api_token {:?}: its token ({}) is {len} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
            t.name, t.token
        ));
    }
    Ok(token)
}

/// Checks that every API token can be read now and that no two are the same.
pub fn check_tokens(cfg: &Config, credentials_dir: Option<&Path>) -> Result<(), String> {
    let mut seen: Vec<(String, &str)> = Vec::new();
    for t in &cfg.api_tokens {
        let token = resolve_token(t, credentials_dir)?;
        let hash = crypto::sha256_hex(token.expose_secret().trim().as_bytes());
        if let Some((_, other)) = seen.iter().find(|(h, _)| *h == hash) {
            return Err(format!(
                "api_token {:?} and api_token {other:?} have the same token; give each its own",
                t.name
            ));
        }
        seen.push((hash, &t.name));
    }
    Ok(())
}

/// A permanent error when the rotation asks for a PSK that is not (or no
/// longer) configured: checked before any key is issued.
pub(super) fn check_psk(rt: &Runtime, rec: &RotationRecord) -> Result<(), CallError> {
    match &rec.reveal_psk {
        Some(id) if !rt.psks.contains_key(id) => Err(CallError::permanent(format!(
            "pre-shared key {id:?} is not configured: add a [[psk]] with id = {id:?} and reload, then resume; or abort the rotation"
        ))),
        _ => Ok(()),
    }
}

/// The caller's envelope of a new secret, when the rotation asks for one.
/// Sealing cannot fail for a secret this size; should it anyway, the
/// rotation goes on (its key exists) and the caller gets no envelope.
pub(super) fn seal_for_caller(
    rt: &Runtime,
    rec: &RotationRecord,
    key_id: &str,
    secret: &SecretString,
) -> Option<SecretString> {
    let id = rec.reveal_psk.as_ref()?;
    let Some(psk) = rt.psks.get(id) else {
        tracing::error!(rotation = %rec.id, psk = %id, "pre-shared key vanished before the secret could be sealed for the caller");
        return None;
    };
    match psk::seal(psk, key_id, secret) {
        Ok(env) => Some(env),
        Err(e) => {
            tracing::error!(rotation = %rec.id, psk = %id, error = %e, "cannot seal the new secret for the caller");
            None
        }
    }
}

/// Stores the envelope (if any) in the caller's transaction.
pub(super) fn keep(
    tx: &mut Tx,
    rotation_id: &str,
    env: Option<&SecretString>,
) -> Result<(), StoreError> {
    match env {
        Some(e) => tx.put_secret(&psk::store_key(rotation_id), e),
        None => Ok(()),
    }
}

/// At Completed: wipes the envelope when the key was issued at least
/// [`ENVELOPE_GRACE`] ago (a waiting caller has had its chance).
pub(super) fn wipe_if_stale(
    tx: &mut Tx,
    rec: &RotationRecord,
    now: Timestamp,
) -> Result<(), StoreError> {
    let stale = rec
        .entered(RotationState::Issued)
        .is_none_or(|at| now.duration_since(at) >= ENVELOPE_GRACE);
    if stale {
        tx.wipe_secret(&psk::store_key(&rec.id))?;
    }
    Ok(())
}

/// Ids of finished rotations (Completed or Aborted at least
/// [`ENVELOPE_GRACE`] ago) that still hold an envelope. Reads the
/// envelopes' keys (few: only those no caller took yet) and their
/// rotations, not the rotation history: it runs after every completion.
/// An envelope whose rotation is no longer in the store is stale too.
fn stale_envelopes(store: &Store, now: Timestamp) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for key in store.secret_keys_ending(psk::STORE_SUFFIX)? {
        let Some(id) = key.strip_suffix(psk::STORE_SUFFIX) else {
            continue;
        };
        let Some(r) = store.rotation(id)? else {
            // Its rotation was pruned from the history: nobody can take it.
            out.push(id.to_string());
            continue;
        };
        let done = matches!(r.state, RotationState::Completed | RotationState::Aborted);
        if done && now.duration_since(r.updated_at) >= ENVELOPE_GRACE {
            out.push(r.id);
        }
    }
    Ok(out)
}

impl Engine {
    /// Hands out rotation `id`'s envelope once: returns it and wipes it in
    /// one step (audited). None when there is none (not sealed yet, taken,
    /// or wiped).
    pub async fn take_envelope(&self, id: &str) -> Result<Option<SecretString>, EngineError> {
        let now = self.now();
        let id = id.to_string();
        self.db(move |s| {
            let _one_at_a_time = TAKE.lock().unwrap_or_else(PoisonError::into_inner);
            let key = psk::store_key(&id);
            let Some(env) = s.secret(&key)? else {
                return Ok(None);
            };
            let slot = s.rotation(&id)?.map(|r| r.slot);
            s.write(|tx| {
                tx.wipe_secret(&key)?;
                tx.audit(
                    now,
                    "rotation.secret_handed_out",
                    slot.as_deref(),
                    Some(&id),
                    None,
                    "new secret handed to the API caller, sealed under its pre-shared key",
                )
            })?;
            Ok(Some(env))
        })
        .await
    }

    /// Wipes the envelopes no caller took from rotations finished at least
    /// [`ENVELOPE_GRACE`] ago; returns how many.
    pub async fn sweep_envelopes(&self) -> Result<usize, EngineError> {
        let now = self.now();
        self.db(move |s| {
            let stale = stale_envelopes(s, now)?;
            if !stale.is_empty() {
                s.write(|tx| {
                    for id in &stale {
                        tx.wipe_secret(&psk::store_key(id))?;
                    }
                    Ok(())
                })?;
                tracing::info!(
                    count = stale.len(),
                    "wiped sealed secrets no API caller took"
                );
            }
            Ok(stale.len())
        })
        .await
    }
}

#[cfg(test)]
#[path = "reveal_tests.rs"]
mod tests;
