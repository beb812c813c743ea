//! `revoke_when = "unused"`: its settings, and the check that every key
//! under such a policy is on a provider that reports last use more
//! precisely than the quiet period, with the error at the setting.

use super::{assert_one, errors, ok};
use keyrot_core::policy::{AtDeadline, RevokeWhen};

/// Provider `p` of `provider` (lines 1-5), sink `out` (6-9), policy `q`
/// (10-11, then `policy`'s lines from 12), and one key `k` at `p` under `q`.
fn with(provider: &str, policy: &str) -> String {
    format!(
        "[[provider]]\nname = \"p\"\n{provider}\
         [[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/tmp/keyrot/{{name}}\"\n\
         [[policy]]\nname = \"q\"\n{policy}\
         [[key]]\nname = \"k\"\nprovider = \"p\"\npolicy = \"q\"\nsinks = [\"out\"]\n"
    )
}

const LOCAL: &str = "type = \"local\"\n\n\n";
const AWS: &str = "type = \"aws-iam\"\nregion = \"us-east-1\"\nusers = [\"ci\"]\n";
const APPROLE: &str = "type = \"openbao-approle\"\naddress = \"https://bao.example.com\"\nroles = [\"ci\"]\ntoken = { env = \"T\" }\n";

#[test]
fn unused_is_read_with_its_settings_and_hold_by_default() {
    let cfg = ok(&with(
        LOCAL,
        "revoke_when = \"unused\"\nquiet_period = \"2h\"\nrevoke_deadline = \"7d\"\n",
    ));
    let RevokeWhen::Unused(rule) = cfg.policy("q").unwrap().revoke_when else {
        panic!("not unused");
    };
    assert_eq!(rule.quiet_period, super::dur("2h"));
    assert_eq!(rule.deadline, super::dur("7d"));
    assert_eq!(rule.at_deadline, AtDeadline::Hold);
    let cfg = ok(&with(LOCAL, ""));
    assert_eq!(cfg.policy("q").unwrap().revoke_when, RevokeWhen::Overlap);
}

#[test]
fn unused_settings_are_checked() {
    assert_one(
        &with(LOCAL, "revoke_when = \"later\"\n"),
        "12:15: unknown revoke_when \"later\"",
    );
    assert_one(
        &with(LOCAL, "quiet_period = \"1h\"\n"),
        "12:16: `quiet_period` applies only with revoke_when = \"unused\"",
    );
    assert_one(
        &with(
            LOCAL,
            "revoke_when = \"unused\"\nrevoke_deadline = \"1d\"\n",
        ),
        "12:15: revoke_when = \"unused\" needs `quiet_period`",
    );
    assert_one(
        &with(
            LOCAL,
            "revoke_when = \"unused\"\nquiet_period = \"0s\"\nrevoke_deadline = \"1d\"\n",
        ),
        "13:16: `quiet_period` must be greater than 0s",
    );
    assert_one(
        &with(
            LOCAL,
            "revoke_when = \"unused\"\nquiet_period = \"1h\"\nrevoke_deadline = \"1d\"\nat_deadline = \"panic\"\n",
        ),
        "15:15: unknown at_deadline \"panic\"",
    );
}

#[test]
fn unused_needs_a_provider_that_reports_last_use() {
    let policy = "revoke_when = \"unused\"\nquiet_period = \"1d\"\nrevoke_deadline = \"7d\"\n";
    assert_one(
        &with(APPROLE, policy),
        "13:15: policy \"q\" revokes old keys once unused, but provider \"p\" (openbao-approle) does not report when a key was last used",
    );
    let errs = errors(&with(APPROLE, policy));
    assert!(
        errs[0].ends_with(
            "(the [[key]] at /etc/keyrot/keyrot.toml:18:12; provider \"p\" defined at /etc/keyrot/keyrot.toml:2:8)"
        ),
        "{errs:?}"
    );
    ok(&with(AWS, policy));
    ok(&with(LOCAL, policy));
}

#[test]
fn the_quiet_period_must_be_longer_than_the_providers_precision() {
    // AWS IAM's last use may lag by 4 hours.
    assert_one(
        &with(
            AWS,
            "revoke_when = \"unused\"\nquiet_period = \"4h\"\nrevoke_deadline = \"7d\"\n",
        ),
        "13:16: `quiet_period` (4h) of policy \"q\" must be longer than the precision of provider \"p\"'s last use (4h)",
    );
    ok(&with(
        AWS,
        "revoke_when = \"unused\"\nquiet_period = \"5h\"\nrevoke_deadline = \"7d\"\n",
    ));
}
