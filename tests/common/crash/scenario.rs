//! Deterministic crash scenarios: which failpoint kills the daemon, what
//! sets the rotation going, and the recovery that follows.

use super::{Case, Report};

/// A deterministic crash scenario: arm `arm`, do `trigger`, expect the
/// daemon to die at failpoint `expect`; then (`then`, if any) restart
/// armed with it and expect a second death there; then restart clean.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The failpoint spec armed first.
    pub arm: String,
    /// What sets the rotation going.
    pub trigger: Trigger,
    /// The failpoint that must kill the daemon.
    pub expect: String,
    /// A second spec armed for the restart, with the failpoint it kills at.
    pub then: Option<(String, String)>,
}

/// What a scenario does after arming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `keyrot rotate` on the first slot.
    Rotate,
    /// SIGHUP (reload, then inventory sync).
    Reload,
}

impl Scenario {
    /// `fp=abort` on a rotation.
    pub fn abort(fp: &str) -> Scenario {
        Scenario::abort_at(fp, None)
    }

    /// `fp=abort@N` on a rotation (N-th hit since armed).
    pub fn abort_at(fp: &str, nth: Option<u32>) -> Scenario {
        Scenario {
            arm: match nth {
                Some(n) => format!("{fp}=abort@{n}"),
                None => format!("{fp}=abort"),
            },
            trigger: Trigger::Rotate,
            expect: fp.to_string(),
            then: None,
        }
    }

    /// Crash after the provider issued the key (its secret lost), then at
    /// `fp` while the restart cleans up the orphan.
    pub fn orphan(fp: &str) -> Scenario {
        Scenario {
            arm: "after:issue=abort".into(),
            trigger: Trigger::Rotate,
            expect: "after:issue".into(),
            then: Some((format!("{fp}=abort"), fp.to_string())),
        }
    }

    /// `fp=abort` during inventory sync (after SIGHUP).
    pub fn sync(fp: &str) -> Scenario {
        Scenario {
            arm: format!("{fp}=abort"),
            trigger: Trigger::Reload,
            expect: fp.to_string(),
            then: None,
        }
    }

    /// Every failpoint name the scenario kills the daemon at.
    pub fn names(&self) -> Vec<String> {
        let mut v = vec![self.expect.clone()];
        v.extend(self.then.as_ref().map(|(_, n)| n.clone()));
        v
    }

    /// A label.
    pub fn label(&self) -> String {
        match &self.then {
            Some((spec, _)) => format!("{} then {spec}", self.arm),
            None => self.arm.clone(),
        }
    }

    /// Runs the scenario in `case`: crash(es), clean restart, settle,
    /// then the invariants.
    pub fn run(&self, case: &mut Case<'_>) -> Report {
        case.arm(&self.arm);
        let _ = match self.trigger {
            Trigger::Rotate => case.rotate(0).is_some(),
            Trigger::Reload => case.reload(),
        };
        case.expect_death(&self.expect);
        if let Some((spec, name)) = &self.then {
            case.arm(spec);
            case.spawn();
            case.expect_death(name);
        }
        case.disarm();
        case.start();
        let mut report = case.recover();
        report.add(&case.check(true).unwrap_or_else(|e| panic!("{e}")));
        report
    }
}
