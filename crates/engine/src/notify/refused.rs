//! The alert for a key keyrot refused at inventory sync: a provider listed
//! a key that a `[[key]]` selects, but its name or id is not one keyrot
//! accepts (see `names`). The name and id are shown escaped,
//! never as given: they are the provider's, not keyrot's.

use jiff::Timestamp;

use super::message::{Composer, dedup, when};
use super::render::Vars;
use crate::names::shown;
use keyrot_core::crypto::sha256_hex;
use keyrot_core::model::{MessageKind, OutboxMessage};

/// A refused key, as the alert tells of it.
#[derive(Clone, Debug)]
pub struct RefusedKey<'a> {
    /// The provider that listed it.
    pub provider: &'a str,
    /// The policy of the `[[key]]` that selects it.
    pub policy: &'a str,
    /// Its name as listed (shown escaped).
    pub name: &'a str,
    /// Its id as listed (shown escaped).
    pub id: &'a str,
    /// Why it was refused.
    pub why: &'a str,
}

/// The stable id of the alert for a key: `refused.HASH`, HASH being 16 hex
/// digits of SHA-256 over provider, name and id, so each sync that lists
/// the same key finds the alert already queued.
pub fn refused_id(provider: &str, name: &str, id: &str) -> String {
    let hash = sha256_hex(format!("{provider}\n{name}\n{id}").as_bytes());
    format!("refused.{}", &hash[..16])
}

impl Composer {
    /// The alert for `key`, to its policy's `notify` and
    /// `security_contacts` (a name that tries to leave a sink's directory
    /// is their business). Id [`refused_id`].
    pub fn key_refused(&self, key: &RefusedKey<'_>, now: Timestamp) -> Vec<OutboxMessage> {
        let to = self
            .config()
            .policy(key.policy)
            .map(|p| dedup(p.notify.iter().chain(&p.security_contacts)))
            .unwrap_or_default();
        self.make(
            MessageKind::KeyRefused,
            "refused",
            refused_id(key.provider, key.name, key.id),
            to,
            &refused_vars(key, now),
            now,
        )
    }
}

/// Variables of `refused`.
pub(super) fn refused_vars(key: &RefusedKey<'_>, now: Timestamp) -> Vars {
    let mut v = Vars::new();
    v.set("provider", key.provider)
        .set("policy", key.policy)
        .set("key_name", shown(key.name))
        .set("key_id", shown(key.id))
        .set("reason", key.why)
        .set("refused_at", when(Some(now)));
    v
}

#[cfg(test)]
mod tests {
    use super::super::examples;
    use super::*;
    use crate::notify::templates::Templates;

    #[test]
    fn the_alert_shows_the_name_escaped_and_is_queued_once_per_key() {
        let key = examples::refused_key();
        // The example's reason is the one keyrot gives.
        assert_eq!(
            crate::names::name_problem(key.name).as_deref(),
            Some(key.why)
        );
        let cfg = examples::config().unwrap();
        let c = Composer::with_templates(cfg, Templates::builtin());
        let hostile = RefusedKey {
            name: "evil\nSubject: forged",
            ..key.clone()
        };
        let m = c.key_refused(&hostile, examples::now()).pop().unwrap();
        assert_eq!(m.kind, MessageKind::KeyRefused);
        assert_eq!(m.to, ["ops@example.com", "security@example.com"]);
        assert!(m.body.contains("evil\\nSubject: forged"), "{}", m.body);
        assert!(!m.body.contains("evil\nSubject"), "{}", m.body);
        assert_eq!(
            m.id,
            refused_id("atlassian", "evil\nSubject: forged", key.id)
        );
        assert_ne!(m.id, refused_id("atlassian", key.name, key.id));
    }
}
