//! What a provider says about a key's last use, as keyrot records it for
//! the old key of a rotation (`RotationRecord::old_last_use`), and how
//! precisely a provider reports it (`Capabilities::last_used`).
//!
//! A provider's answer is untrusted input: every answer that is not a
//! clear "never used" or a readable time becomes [`LastUse::Unknown`],
//! which keyrot never reads as quiet.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A key's last use, as its provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LastUse {
    /// The provider states that the key was never used (AWS IAM's
    /// `GetAccessKeyLastUsed` with no `LastUsedDate`, the local provider).
    Never,
    /// Last used at this time (as the provider recorded it; see the
    /// provider's precision for how stale it may be).
    At {
        /// The provider's time of the last use.
        at: Timestamp,
    },
    /// The provider's answer does not say: no field, a null where the key
    /// may have been used, an unreadable time. Never counts as quiet.
    Unknown {
        /// Why, in words (ids only, no secret material).
        why: String,
    },
}

impl LastUse {
    /// The time of the last use, if one is known.
    pub fn at(&self) -> Option<Timestamp> {
        match self {
            LastUse::At { at } => Some(*at),
            _ => None,
        }
    }

    /// A short description for logs and output: `never used`, `last used
    /// at T`, `last use unknown (why)`.
    pub fn describe(&self) -> String {
        match self {
            LastUse::Never => "never used".into(),
            LastUse::At { at } => format!("last used at {at}"),
            LastUse::Unknown { why } => format!("last use unknown ({why})"),
        }
    }
}
