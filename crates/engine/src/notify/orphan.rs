//! The alert for an orphan key: a provider lists a key that carries
//! keyrot's tag but belongs to no rotation keyrot knows (another
//! installation's, one a restored old backup forgot, or a bug's). An
//! orphan belongs to no slot, so no policy of its own: the alert goes to
//! every policy's `notify` and `security_contacts`, once per key (its id
//! is stable per provider and key id). The key's id, name and tag are the
//! provider's and shown escaped. When it is queued is the inventory
//! sync's business (`scheduler::orphans`).

use jiff::Timestamp;

use super::message::{Composer, dedup, when};
use super::render::Vars;
use crate::names::shown;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::model::{MessageKind, Orphan, OutboxMessage};

/// What keyrot did about an orphan when it alerted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrphanAction {
    /// Nothing: listed, left as it is (`keyrot orphans --revoke` revokes).
    Listed,
    /// Revoked by the sync (`revoke_orphans = true`).
    Revoked,
    /// The sync's revoke failed (why); it tries again at the next sync.
    RevokeFailed(String),
}

/// The stable id of the alert for orphan `key_id` of `provider`:
/// `orphan.HASH`, HASH being 16 hex digits of SHA-256 over the two.
pub fn orphan_id(provider: &str, key_id: &str) -> String {
    let hash = sha256_hex(format!("{provider}\n{key_id}").as_bytes());
    format!("orphan.{}", &hash[..16])
}

impl Composer {
    /// The alert for `orphan`, id [`orphan_id`].
    pub fn orphan_found(
        &self,
        orphan: &Orphan,
        action: &OrphanAction,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        let cfg = self.config();
        let to = dedup(
            cfg.policies
                .iter()
                .flat_map(|p| p.notify.iter().chain(&p.security_contacts)),
        );
        self.make(
            MessageKind::OrphanKey,
            "orphan",
            orphan_id(&orphan.provider, &orphan.id),
            to,
            &orphan_vars(orphan, action),
            now,
        )
    }
}

/// Variables of `orphan`.
pub(super) fn orphan_vars(o: &Orphan, action: &OrphanAction) -> Vars {
    let mut v = Vars::new();
    v.set("provider", shown(&o.provider))
        .set("key_id", shown(&o.id))
        .set("key_name", shown(&o.name))
        .set("rotation", shown(&o.rotation))
        .set("created_at", when(o.created_at))
        .set("expires", when(o.expires_at))
        .set("found_at", when(Some(o.found_at)))
        .flag("revoked", *action == OrphanAction::Revoked)
        .flag(
            "revoke_failed",
            matches!(action, OrphanAction::RevokeFailed(_)),
        )
        .set(
            "error",
            match action {
                OrphanAction::RevokeFailed(e) => e.as_str(),
                _ => "",
            },
        );
    v
}

#[cfg(test)]
mod tests {
    use super::super::examples;
    use super::*;
    use crate::notify::templates::Templates;

    #[test]
    fn the_alert_escapes_the_providers_words_and_has_one_id_per_key() {
        let cfg = examples::config().unwrap();
        let c = Composer::with_templates(cfg, Templates::builtin());
        let mut o = examples::orphan();
        o.name = "evil\nSubject: forged".into();
        let m = c
            .orphan_found(&o, &OrphanAction::Listed, examples::now())
            .pop()
            .unwrap();
        assert_eq!(m.kind, MessageKind::OrphanKey);
        assert!(
            m.to.contains(&"security@example.com".to_string()),
            "{:?}",
            m.to
        );
        assert!(m.body.contains("evil\\nSubject: forged"), "{}", m.body);
        assert!(!m.body.contains("evil\nSubject"), "{}", m.body);
        assert!(m.body.contains("--revoke"), "{}", m.body);
        assert_eq!(m.id, orphan_id(&o.provider, &o.id));
        assert_ne!(m.id, orphan_id(&o.provider, "other"));
        let r = c
            .orphan_found(&o, &OrphanAction::Revoked, examples::now())
            .pop()
            .unwrap();
        assert!(r.subject.contains("revoked"), "{}", r.subject);
    }
}
