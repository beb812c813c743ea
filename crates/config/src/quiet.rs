//! `revoke_when = "unused"`: the policy's settings (`revoke_when`,
//! `quiet_period`, `revoke_deadline`, `at_deadline`), and which provider
//! types report a key's last use and how precisely ([`last_use_precision`],
//! the one place both this validation and the providers' capabilities read
//! it from), so a key under such a policy on a provider that cannot tell is
//! refused at load, naming where the setting and the provider are written.

use std::ops::Range;

use jiff::SignedDuration;

use super::ctx::Ctx;
use super::raw::RawPolicy;
use super::types::ProviderKind;
use keyrot_core::policy::{AtDeadline, QuietRule, RevokeWhen, format_duration};

/// How stale AWS IAM's `GetAccessKeyLastUsed` may be. AWS documents its last
/// accessed information as not real-time: "Recent activity usually appears
/// within 4 hours".
pub const AWS_IAM_LAST_USED_PRECISION: SignedDuration = SignedDuration::from_hours(4);

/// Default `last_active_precision` of an Atlassian provider: the proposed
/// Admin API states no bound on how lazily `lastActiveAt` is updated, so
/// keyrot assumes an hour unless the operator says otherwise.
pub const ATLASSIAN_LAST_ACTIVE_PRECISION: SignedDuration = SignedDuration::from_hours(1);

/// Whether a provider of this type reports a key's last use, and how stale
/// the report may be (`None`: it does not report it).
pub fn last_use_precision(kind: &ProviderKind) -> Option<SignedDuration> {
    match kind {
        // keyrot records the local provider's uses itself, at once.
        ProviderKind::Local(_) => Some(SignedDuration::ZERO),
        ProviderKind::AwsIam(_) => Some(AWS_IAM_LAST_USED_PRECISION),
        ProviderKind::Atlassian(a) => Some(a.last_active_precision),
        ProviderKind::Http(h) => h.capabilities().last_used,
        ProviderKind::Exec(_) | ProviderKind::OpenBaoAppRole(_) => None,
    }
}

/// `revoke_when` and the settings that go with it.
pub(crate) fn revoke_when(ctx: &mut Ctx<'_>, raw: &RawPolicy) -> Option<RevokeWhen> {
    let unused = match &raw.revoke_when {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "overlap" => false,
            "unused" => true,
            other => {
                ctx.error(
                    v.span(),
                    format!("unknown revoke_when {other:?}: use \"overlap\" or \"unused\""),
                );
                return None;
            }
        },
    };
    if !unused {
        let mut ok = true;
        for (field, span) in [
            ("quiet_period", raw.quiet_period.as_ref().map(|d| d.span())),
            (
                "revoke_deadline",
                raw.revoke_deadline.as_ref().map(|d| d.span()),
            ),
            ("at_deadline", raw.at_deadline.as_ref().map(|d| d.span())),
        ] {
            if let Some(span) = span {
                ctx.error(
                    span,
                    format!("`{field}` applies only with revoke_when = \"unused\""),
                );
                ok = false;
            }
        }
        return ok.then_some(RevokeWhen::Overlap);
    }
    let at = raw
        .revoke_when
        .as_ref()
        .map(|v| v.span())
        .unwrap_or_default();
    let quiet_period = match &raw.quiet_period {
        Some(d) => ctx.positive(d, "quiet_period"),
        None => {
            ctx.error(
                at.clone(),
                "revoke_when = \"unused\" needs `quiet_period`: how long the old key must go unused before it is revoked",
            );
            None
        }
    };
    let deadline = match &raw.revoke_deadline {
        Some(d) => ctx.duration(d),
        None => {
            ctx.error(
                at,
                "revoke_when = \"unused\" needs `revoke_deadline`: how long after the overlap keyrot waits for the old key to go quiet before it alerts",
            );
            None
        }
    };
    let at_deadline = match &raw.at_deadline {
        None => Some(AtDeadline::Hold),
        Some(v) => match v.get_ref().as_str() {
            "hold" => Some(AtDeadline::Hold),
            "revoke" => Some(AtDeadline::Revoke),
            other => {
                ctx.error(
                    v.span(),
                    format!("unknown at_deadline {other:?}: use \"hold\" or \"revoke\""),
                );
                None
            }
        },
    };
    Some(RevokeWhen::Unused(QuietRule {
        quiet_period: quiet_period?,
        deadline: deadline?,
        at_deadline: at_deadline?,
    }))
}

/// A validated policy's quiet rule and where its `revoke_when` and
/// `quiet_period` are written.
#[derive(Clone, Debug)]
pub(crate) struct QuietAt {
    /// The rule.
    pub rule: QuietRule,
    /// `revoke_when = "unused"`.
    pub revoke_when: Range<usize>,
    /// `quiet_period`.
    pub quiet_period: Range<usize>,
}

/// The problem with a key under a policy `policy` whose rule is `quiet` on
/// provider `provider` of `kind`: the provider reports no last use, or
/// reports it less precisely than the quiet period. With the span to
/// report it at.
pub(crate) fn problem(
    provider: &str,
    kind: &ProviderKind,
    policy: &str,
    quiet: &QuietAt,
) -> Option<(Range<usize>, String)> {
    let Some(precision) = last_use_precision(kind) else {
        return Some((
            quiet.revoke_when.clone(),
            format!(
                "policy {policy:?} revokes old keys once unused, but provider {provider:?} ({}) does not report when a key was last used: \
                 use revoke_when = \"overlap\" for its keys, or a provider that reports last use (see docs/providers.md)",
                type_name(kind)
            ),
        ));
    };
    if quiet.rule.quiet_period <= precision {
        return Some((
            quiet.quiet_period.clone(),
            format!(
                "`quiet_period` ({}) of policy {policy:?} must be longer than the precision of provider {provider:?}'s last use ({}): \
                 a use that recent may not show yet, so the key could look quiet while still in use",
                format_duration(quiet.rule.quiet_period),
                format_duration(precision)
            ),
        ));
    }
    None
}

/// The `type` a provider of `kind` is written with.
fn type_name(kind: &ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Local(_) => "local",
        ProviderKind::Atlassian(_) => "atlassian",
        ProviderKind::OpenBaoAppRole(_) => "openbao-approle",
        ProviderKind::AwsIam(_) => "aws-iam",
        ProviderKind::Http(_) => "http",
        ProviderKind::Exec(_) => "exec",
    }
}
