//! An orphan: a key a provider lists that carries keyrot's rotation tag
//! but belongs to no rotation keyrot knows (left by another installation,
//! a restored old backup, or a bug). The inventory sync finds them
//! (`keyrot_engine::scheduler::orphans`) and keeps them beside the slots,
//! one list per provider, so `keyrot status` and `keyrot orphans` show
//! them without asking the provider.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One orphan key as the last sync of its provider found it. Never holds
/// a secret (keyrot never saw one). Its id, name and tag are the
/// provider's, untrusted: shown escaped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// The provider (config name) that lists the key.
    pub provider: String,
    /// The key's id at the provider.
    pub id: String,
    /// The key's name at the provider.
    pub name: String,
    /// The rotation id its tag names (a rotation this store does not know,
    /// or one that ended without the key becoming any slot's key).
    pub rotation: String,
    /// When the provider says the key was created.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// When the key expires, if it does.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// The sync that first found it (kept by later syncs).
    pub found_at: Timestamp,
    /// The last sync that listed it.
    pub seen_at: Timestamp,
}

/// Each provider's orphans, as its last sync found them.
pub type Orphans = Vec<Orphan>;
