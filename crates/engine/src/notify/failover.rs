//! The message a takeover of the leader lease sends (a shared PostgreSQL
//! store): to every policy's `notify` and `security_contacts`, once per
//! epoch. The daemon queues it when its instance takes over
//! (`daemon/leader.rs`).

use jiff::{SignedDuration, Timestamp};

use super::message::{Composer, dedup, when};
use super::render::Vars;
use keyrot_core::model::{MessageKind, OutboxMessage};
use keyrot_core::policy::format_duration;

/// A takeover: who leads now, from whom, under which epoch, when.
#[derive(Clone, Debug)]
pub struct Takeover<'a> {
    /// The instance that leads now (`host:pid:suffix`).
    pub instance: &'a str,
    /// The instance whose lease expired.
    pub previous: &'a str,
    /// The epoch granted.
    pub epoch: u64,
    /// When.
    pub at: Timestamp,
    /// The configured lease.
    pub lease: SignedDuration,
}

impl Composer {
    /// The failover message for `t`, id `failover.EPOCH`.
    pub fn failover(&self, t: &Takeover<'_>) -> Vec<OutboxMessage> {
        let cfg = self.config();
        let to = dedup(
            cfg.policies
                .iter()
                .flat_map(|p| p.notify.iter().chain(&p.security_contacts)),
        );
        self.make(
            MessageKind::Failover,
            "failover",
            format!("failover.{}", t.epoch),
            to,
            &failover_vars(t),
            t.at,
        )
    }
}

/// Variables of `failover`.
pub(super) fn failover_vars(t: &Takeover<'_>) -> Vars {
    let mut v = Vars::new();
    v.set("instance", t.instance)
        .set("previous", t.previous)
        .set("epoch", t.epoch.to_string().as_str())
        .set("at", when(Some(t.at)))
        .set("lease", format_duration(t.lease));
    v
}
