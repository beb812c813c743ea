//! The alert for a slot's key that ended without keyrot replacing it: it
//! expired (while keyrot was down, say), or it vanished from the
//! provider's listing before its expiry (revoked or deleted by someone).
//! Consumers that use it fail, so this is the loudest message keyrot
//! sends: to the policy's `notify` and `security_contacts` and the key's
//! own contacts. When it is sent is the inventory sync's business
//! (`scheduler::bind` finds the key gone).

use jiff::Timestamp;

use super::message::{Composer, dedup, when};
use super::notice::span_words;
use super::render::Vars;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::model::{EndKind, EndedKey, KeyRecord, MessageKind, OutboxMessage};

/// The stable id of the alert for key `key_id` of `slot` with recorded
/// expiry `expires_at`: `ended.HASH`, HASH being 16 hex digits of SHA-256
/// over the three, so a sync after a restart finds it already queued.
pub fn ended_id(slot: &str, key_id: &str, expires_at: Option<Timestamp>) -> String {
    let exp = expires_at
        .map(|t| t.as_second().to_string())
        .unwrap_or_default();
    let hash = sha256_hex(format!("{slot}\n{key_id}\n{exp}").as_bytes());
    format!("ended.{}", &hash[..16])
}

/// `expired` or `vanished`.
pub fn kind_word(kind: EndKind) -> &'static str {
    match kind {
        EndKind::Expired => "expired",
        EndKind::Vanished => "vanished",
    }
}

impl Composer {
    /// The alert for `ended`, the key `key` (the slot as the sync wrote
    /// it) no longer has. Id [`ended_id`].
    pub fn key_ended(
        &self,
        key: &KeyRecord,
        ended: &EndedKey,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        let to = match self.config().policy(&key.policy) {
            Some(p) => dedup(
                p.notify
                    .iter()
                    .chain(&p.security_contacts)
                    .chain(&key.contacts),
            ),
            None => dedup(&key.contacts),
        };
        self.make(
            MessageKind::KeyEnded,
            "ended",
            ended_id(&key.slot, &ended.id, ended.expires_at),
            to,
            &ended_vars(key, ended, now),
            now,
        )
    }
}

/// Variables of `ended`.
pub(super) fn ended_vars(key: &KeyRecord, ended: &EndedKey, now: Timestamp) -> Vars {
    let mut v = Vars::new();
    v.set("slot", key.slot.as_str())
        .set("key_name", key.name.as_str())
        .set("provider", key.provider.as_str())
        .set("policy", key.policy.as_str())
        .set("key_id", ended.id.as_str())
        .set("state", kind_word(ended.kind))
        .flag("expired", ended.kind == EndKind::Expired)
        .set("expires", when(ended.expires_at))
        .set("ended_at", when(Some(ended.ended_at)))
        .set("ago", span_words(now.duration_since(ended.ended_at)))
        .set("noticed_at", when(Some(ended.noticed_at)))
        .set("next_rotation", when(key.next_due));
    v
}

#[cfg(test)]
mod tests {
    use super::super::examples;
    use super::*;
    use crate::notify::templates::Templates;

    #[test]
    fn the_alert_goes_to_every_contact_once_per_key_and_expiry() {
        let cfg = examples::config().unwrap();
        let c = Composer::with_templates(cfg, Templates::builtin());
        let (key, ended) = examples::ended_key();
        let m = c.key_ended(&key, &ended, examples::now()).pop().unwrap();
        assert_eq!(m.kind, MessageKind::KeyEnded);
        assert_eq!(
            m.to,
            [
                "ops@example.com",
                "security@example.com",
                "ci-owner@example.com"
            ]
        );
        assert!(m.subject.contains("EXPIRED"), "{}", m.subject);
        assert!(m.body.contains(&ended.id), "{}", m.body);
        assert_eq!(m.id, ended_id(&key.slot, &ended.id, ended.expires_at));
        assert_ne!(m.id, ended_id(&key.slot, &ended.id, None));
        assert_ne!(m.id, ended_id(&key.slot, "other", ended.expires_at));

        let vanished = EndedKey {
            kind: EndKind::Vanished,
            ..ended
        };
        let m = c.key_ended(&key, &vanished, examples::now()).pop().unwrap();
        assert!(m.subject.contains("VANISHED"), "{}", m.subject);
    }
}
