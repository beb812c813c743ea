//! Keys an inventory sync refuses: a listed key whose name or id is not
//! acceptable ([`super::names`]) never enters the inventory. When a
//! `[[key]]` selects it, keyrot says so each sync (a warning naming the
//! provider and the escaped name, `keyrot_keys_refused_total`) and queues
//! one alert to that entry's policy (`notify::refused`). A refused key no
//! `[[key]]` selects would not have entered the inventory anyway: it is
//! only logged at debug level.

use jiff::Timestamp;

use super::bind::claimant;
use crate::metrics::Metrics;
use crate::names::{problem, shown};
use crate::notify::Composer;
use crate::notify::refused::RefusedKey;
use keyrot_config::Config;
use keyrot_core::model::KeyInfo;
use keyrot_core::store::{StoreError, Tx};

/// A listed key a `[[key]]` selects, refused.
#[derive(Clone, Debug)]
pub struct Refused {
    /// The key as listed.
    pub key: KeyInfo,
    /// Why it was refused.
    pub why: String,
    /// The policy of the `[[key]]` that selects it.
    pub policy: String,
}

/// Splits `listed` into the keys the inventory takes and the refused
/// keys some `[[key]]` of `provider` selects.
pub fn screen(cfg: &Config, provider: &str, listed: Vec<KeyInfo>) -> (Vec<KeyInfo>, Vec<Refused>) {
    let mut kept = Vec::with_capacity(listed.len());
    let mut refused = Vec::new();
    for key in listed {
        let Some(why) = problem(&key) else {
            kept.push(key);
            continue;
        };
        match claimant(cfg, provider, &key) {
            Some(spec) => refused.push(Refused {
                policy: spec.policy.clone(),
                key,
                why,
            }),
            None => tracing::debug!(
                provider = %provider,
                name = %shown(&key.name),
                reason = %why,
                "listed key left out: its name or id is not allowed, and no [[key]] selects it"
            ),
        }
    }
    (kept, refused)
}

/// Logs and counts each refused key.
pub fn report(metrics: &Metrics, provider: &str, refused: &[Refused]) {
    for r in refused {
        metrics.key_refused(provider);
        tracing::warn!(
            provider = %provider,
            name = %shown(&r.key.name),
            key_id = %shown(&r.key.id),
            reason = %r.why,
            "refused a listed key that a [[key]] selects: {}; it is left out of the inventory (not rotated, no sink written)",
            r.why
        );
    }
}

/// Queues the alert of each refused key not alerted yet (the alert's id
/// is stable per key); returns how many were queued.
pub fn queue(
    tx: &mut Tx,
    mail: &Composer,
    provider: &str,
    refused: &[Refused],
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for r in refused {
        let key = RefusedKey {
            provider,
            policy: &r.policy,
            name: &r.key.name,
            id: &r.key.id,
            why: &r.why,
        };
        for m in mail.key_refused(&key, now) {
            if tx.message(&m.id)?.is_none() {
                tx.put_message(&m)?;
                queued += 1;
            }
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, name: &str) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            name: name.into(),
            scopes: vec![],
            created_by: None,
            created_at: None,
            expires_at: None,
            last_used_at: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn only_keys_a_selector_claims_are_reported_and_none_refused_is_kept() {
        let cfg = keyrot_config::load_str(
            std::path::Path::new("/etc/keyrot/keyrot.toml"),
            "[[provider]]\nname = \"p\"\ntype = \"local\"\n\
             [[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/tmp/keyrot/{name}\"\n\
             [[policy]]\nname = \"std\"\n\
             [[key]]\nselect = { name = \"ci-*\" }\nprovider = \"p\"\npolicy = \"std\"\nsinks = [\"out\"]\n",
        )
        .unwrap();
        let listed = vec![
            key("1", "ci-good"),
            key("2", "ci-x/../../escaped/pwned"),
            key("3", "other/../x"),
            key("4\n", "ci-bad-id"),
        ];
        let (kept, refused) = screen(&cfg, "p", listed);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "ci-good");
        let ids: Vec<&str> = refused.iter().map(|r| r.key.id.as_str()).collect();
        assert_eq!(ids, ["2", "4\n"]);
        assert!(refused.iter().all(|r| r.policy == "std"));
        assert!(refused[0].why.contains("'/'"), "{}", refused[0].why);
        assert!(refused[1].why.contains("id"), "{}", refused[1].why);
    }
}
