//! What a provider can do, and how it makes a replacement key; the state
//! machine adapts to it.

use jiff::SignedDuration;
use serde::Serialize;

/// How a provider makes a replacement key: the one choice that decides the
/// shape of a rotation. Each variant is a combination that exists; the
/// ones that do not (a native rotate that keeps no key, an assisted
/// provider that ends the old key) cannot be written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueMode {
    /// It cannot create keys: people are asked to create one and hand it
    /// to `keyrot enroll` (assisted rotation).
    #[default]
    Assisted,
    /// It creates a new key beside the old one, with the scopes the policy
    /// asks for; both live through the overlap.
    Create,
    /// It rotates the old key in one call (a native rotate).
    Rotate {
        /// The new key gets the old key's scopes (the proposed Atlassian
        /// rotate): a policy asking for other scopes goes to assisted
        /// rotation instead.
        keeps_scopes: bool,
        /// The old key ends at once (GitLab's rotate): there is no
        /// overlap, and nothing to revoke later.
        old_ends: bool,
    },
}

impl IssueMode {
    /// Whether keyrot can make the new key itself.
    pub fn can_issue(self) -> bool {
        self != IssueMode::Assisted
    }
    /// Whether the new key gets the old key's scopes, whatever the policy says.
    pub fn keeps_scopes(self) -> bool {
        matches!(
            self,
            IssueMode::Rotate {
                keeps_scopes: true,
                ..
            }
        )
    }
    /// Whether issuing a replacement ends the old key at once.
    pub fn no_overlap(self) -> bool {
        matches!(self, IssueMode::Rotate { old_ends: true, .. })
    }
}

/// What a provider can do; the state machine adapts to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// How it makes a replacement key.
    pub issue: IssueMode,
    /// Lists its keys with expiry (inventory sync).
    pub list: bool,
    /// Revokes a key.
    pub revoke: bool,
    /// Checks that a key works.
    pub verify: bool,
    /// Marks a new key with the rotation id, so a crash can be recovered.
    pub tag: bool,
    /// Changes a key's expiry.
    pub set_expiry: bool,
    /// Issuing again with the same tag returns the same key (an idempotency
    /// key), so an interrupted issue is simply repeated.
    pub idempotent_issue: bool,
    /// Can set a key inactive without deleting it (`Provider::deactivate`);
    /// used at the start of the overlap when the provider is configured so.
    pub deactivate: bool,
    /// Can prove which key a secret belongs to (`Provider::prove_identity`),
    /// not only that it authenticates.
    pub prove_identity: bool,
    /// Reports when a key was last used (`Provider::last_used`), and how
    /// stale that report may be: `Some(precision)`, where a use up to
    /// `precision` ago may not show yet (APIs that update it lazily);
    /// `None`: it does not report last use.
    pub last_used: Option<SignedDuration>,
}
