//! Building outbox messages from rotation events: who gets them, their
//! stable ids, and the variables their templates see.
//!
//! A message never carries a secret, a hash of one (`secret_sha256` is
//! never a variable) or a pre-shared key: templates can only name the
//! variables built here. Expiry notices are in `notice.rs`, the digest in
//! `digest.rs`.

use std::sync::Arc;

use jiff::Timestamp;

use super::render::{Row, Vars};
use super::templates::{Rendered, Templates};
use keyrot_config::{Config, NotifyTransport, ProviderKind};
use keyrot_core::model::{
    Channel, DeliveryState, KeyRecord, MessageKind, OutboxMessage, RotationRecord, RotationState,
    Trigger,
};

/// Renders messages with the config and templates in force.
#[derive(Clone, Debug)]
pub struct Composer {
    /// The config in force (policies for recipients, the transport).
    cfg: Arc<Config>,
    /// Built-in templates and the overrides of `notify.template_dir`.
    templates: Templates,
    /// The host name every message's footer names.
    host: String,
}

impl Composer {
    /// A composer for `cfg`, reading the overrides in `notify.template_dir`
    /// now (problems are logged; the built-ins stand in).
    pub fn new(cfg: Arc<Config>) -> Composer {
        let templates = Templates::load(cfg.notify.template_dir.as_deref());
        Composer::with_templates(cfg, templates)
    }

    /// A composer with the given templates.
    pub fn with_templates(cfg: Arc<Config>, templates: Templates) -> Composer {
        Composer {
            cfg,
            templates,
            host: keyrot_core::model::host_name(),
        }
    }

    /// The same composer, naming `host` in its footers instead of this
    /// machine (the documented examples).
    pub fn with_host(mut self, host: &str) -> Composer {
        self.host = host.to_string();
        self
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether a webhook delivery of event `id` is in the outbox, for
    /// checks that an event was told already when it may have gone to
    /// webhooks only.
    pub fn webhook_copy_queued(
        &self,
        tx: &keyrot_core::store::Tx,
        id: &str,
    ) -> Result<bool, keyrot_core::store::StoreError> {
        for h in &self.cfg.notify.webhooks {
            if tx
                .message(&super::webhook::delivery_id(id, &h.name))?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Renders `kind` and wraps it as queued messages: the mail to `to`
    /// (none when the transport is `none` or nobody is to be told) and
    /// one delivery per webhook that takes `kind` (see
    /// [`super::webhook`]), all under the event id `id`.
    pub(super) fn make(
        &self,
        kind: MessageKind,
        template: &str,
        id: String,
        to: Vec<String>,
        vars: &Vars,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        self.compose(kind, template, id, to, vars, now, true)
    }

    /// [`Composer::make`], with the webhooks' deliveries only when
    /// `hooks` (the digest tells webhooks once, not once per recipient).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn compose(
        &self,
        kind: MessageKind,
        template: &str,
        id: String,
        to: Vec<String>,
        vars: &Vars,
        now: Timestamp,
        hooks: bool,
    ) -> Vec<OutboxMessage> {
        let mail = !matches!(self.cfg.notify.transport, NotifyTransport::None) && !to.is_empty();
        let hooks = hooks && self.cfg.notify.webhooks.iter().any(|h| h.wants(kind));
        if !mail && !hooks {
            return Vec::new();
        }
        let Rendered {
            subject,
            mut text,
            mut html,
        } = self.templates.render(template, vars);
        let slot = Some(vars.text("slot")).filter(|s| !s.is_empty());
        super::footer::append_text(&mut text, &self.host, slot, now);
        let mut out = Vec::new();
        if hooks {
            out.extend(super::webhook::deliveries(
                &self.cfg.notify.webhooks,
                &super::webhook::Event {
                    kind,
                    id: &id,
                    subject: &subject,
                    text: &text,
                    vars,
                    host: &self.host,
                    at: now,
                },
            ));
        }
        if mail {
            super::footer::append_html(&mut html, &self.host, slot, now);
            out.insert(
                0,
                OutboxMessage {
                    thread: thread(kind, vars),
                    id,
                    kind,
                    to,
                    subject,
                    body: text,
                    html: Some(html),
                    channel: Channel::Mail,
                    state: DeliveryState::Queued,
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                    created_at: now,
                },
            );
        }
        out
    }

    /// A rotation completed. Id `ROTATION.completed`.
    pub fn completed(
        &self,
        rec: &RotationRecord,
        key: Option<&KeyRecord>,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        self.make(
            MessageKind::RotationCompleted,
            "completed",
            format!("{}.completed", rec.id),
            recipients(&self.cfg, rec, key),
            &completed_vars(rec),
            now,
        )
    }

    /// The new key is live: verified in every sink, while the old key
    /// stays valid until the overlap ends (`rec.revoke_old_at`). Queued in
    /// the commit that enters Overlap, so key owners learn of the new key
    /// when consumers can switch, not once the old key is dead.
    /// `can_revoke`: the provider can revoke the old key at the overlap's
    /// end (else it lives until it expires); `old_inactive`: the provider
    /// set the old key inactive for the overlap. Id `ROTATION.live`.
    pub fn live(
        &self,
        rec: &RotationRecord,
        key: Option<&KeyRecord>,
        can_revoke: bool,
        old_inactive: bool,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        self.make(
            MessageKind::NewKeyLive,
            "live",
            format!("{}.live", rec.id),
            recipients(&self.cfg, rec, key),
            &live_vars(rec, can_revoke, old_inactive),
            now,
        )
    }

    /// What the commit that completes a rotation queues: one message, each
    /// saying something the reader was not told yet. After an overlap the
    /// new key was announced when it went live ([`Composer::live`]), so
    /// only the old key's revocation is told (nothing when the provider
    /// cannot revoke: the live message said the old key lives until it
    /// expires). Without an overlap (a first key, a native rotate, overlap
    /// 0) one `completed` message says both.
    pub fn finished(
        &self,
        rec: &RotationRecord,
        key: Option<&KeyRecord>,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        if went_live_before_end(rec) {
            self.revoked(rec, key, now)
        } else {
            self.completed(rec, key, now)
        }
    }

    /// The old key of a rotation was revoked (or ended by a native
    /// rotate); nothing when it was not. Id `ROTATION.revoked`.
    pub fn revoked(
        &self,
        rec: &RotationRecord,
        key: Option<&KeyRecord>,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        if rec.old_key_id.is_none() || rec.old_revoked_at.is_none() {
            return Vec::new();
        }
        self.make(
            MessageKind::OldKeyRevoked,
            "revoked",
            format!("{}.revoked", rec.id),
            recipients(&self.cfg, rec, key),
            &revoked_vars(rec),
            now,
        )
    }

    /// A rotation failed after its retry budget. `old_key_ended`: the
    /// provider rotates natively and already ended the old key. Id
    /// `ROTATION.failed.N` (N counts the record's transitions, so a
    /// rotation resumed and failed again is told about again).
    pub fn failed(
        &self,
        rec: &RotationRecord,
        key: Option<&KeyRecord>,
        old_key_ended: bool,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        self.make(
            MessageKind::RotationFailed,
            "failed",
            format!("{}.failed.{}", rec.id, rec.history.len()),
            recipients(&self.cfg, rec, key),
            &failed_vars(&self.cfg, rec, old_key_ended, now),
            now,
        )
    }

    /// Asks people to create a key by hand (assisted rotation), or reminds
    /// them (`reminder` > 0). Names the scopes to recreate exactly and the
    /// command that finishes the rotation; the secret goes to `keyrot
    /// enroll` on stdin, never into an email. The policy's security
    /// contacts are always asked. Id `ROTATION.assisted.N`.
    pub fn assisted_request(
        &self,
        rec: &RotationRecord,
        key: Option<&KeyRecord>,
        new_key_expires: Option<Timestamp>,
        next_reminder: Option<Timestamp>,
        reminder: u32,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        let mut to = recipients(&self.cfg, rec, key);
        if let Some(p) = self.cfg.policy(&rec.policy) {
            to = dedup(to.iter().chain(&p.security_contacts));
        }
        let mut vars = assisted_vars(rec, new_key_expires, next_reminder, reminder);
        let provider = self.cfg.provider(&rec.provider);
        vars.set("org", provider.and_then(|p| p.org()).unwrap_or_default())
            .set(
                "console_url",
                provider.and_then(|p| p.console()).unwrap_or_default(),
            );
        self.make(
            MessageKind::AssistedRequest,
            "assisted",
            format!("{}.assisted.{reminder}", rec.id),
            to,
            &vars,
            now,
        )
    }
}

/// The thread a message belongs to: its rotation's (every message about
/// one rotation), else its key's (expiry notices, an ended or refused
/// key); none for a digest or a test.
fn thread(kind: MessageKind, vars: &Vars) -> Option<String> {
    if matches!(kind, MessageKind::Digest | MessageKind::Test) {
        return None;
    }
    let rotation = vars.text("rotation_id");
    if !rotation.is_empty() {
        return Some(format!("rotation.{rotation}"));
    }
    Some(vars.text("slot"))
        .filter(|s| !s.is_empty())
        .map(|s| format!("key.{s}"))
}

/// Whether the rotation waited in Overlap (and so announced its new key
/// with [`Composer::live`] when it entered): it entered Overlap with a
/// revoke time after that instant. An overlap of 0 commits Overlap and
/// Revoking together and announces nothing until the end.
pub fn went_live_before_end(rec: &RotationRecord) -> bool {
    rec.entered(RotationState::Overlap)
        .zip(rec.revoke_old_at)
        .is_some_and(|(entered, revoke)| revoke > entered)
}

/// Recipients: the policy's `notify`, the key's contacts and, when the
/// request asked for it, the policy's security contacts; de-duplicated,
/// compared case-insensitively, first spelling kept.
pub fn recipients(cfg: &Config, rec: &RotationRecord, key: Option<&KeyRecord>) -> Vec<String> {
    let policy = cfg.policy(&rec.policy);
    let mut all: Vec<&String> = Vec::new();
    if let Some(p) = policy {
        all.extend(&p.notify);
        if rec.notify_contacts {
            all.extend(&p.security_contacts);
        }
    }
    if let Some(k) = key {
        all.extend(&k.contacts);
    }
    dedup(all)
}

/// Recipients of a notice about a key: its policy's `notify` and its
/// contacts, plus the policy's security contacts when `rotation` (the
/// key's stuck rotation) was asked to notify them.
pub fn key_recipients(
    cfg: &Config,
    key: &KeyRecord,
    rotation: Option<&RotationRecord>,
) -> Vec<String> {
    let mut all: Vec<&String> = Vec::new();
    if let Some(p) = cfg.policy(&key.policy) {
        all.extend(&p.notify);
        if rotation.is_some_and(|r| r.notify_contacts) {
            all.extend(&p.security_contacts);
        }
    }
    all.extend(&key.contacts);
    dedup(all)
}

/// Addresses without case-insensitive duplicates, first spelling kept.
pub(super) fn dedup<'a>(all: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in all {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
            out.push(a.clone());
        }
    }
    out
}

/// An instant as mail shows it: `2027-11-01 00:00 UTC`; empty for none.
pub(super) fn when(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A date as subjects show it: `2027-11-01`; empty for none.
pub(super) fn day(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// A trigger as mail shows it.
fn trigger(t: Trigger) -> &'static str {
    match t {
        Trigger::Schedule => "schedule",
        Trigger::Emergency => "emergency (outside a window: the key would expire first)",
        Trigger::Initial => "initial (the slot had no key)",
        Trigger::Manual => "manual",
    }
}

/// The key name part of a slot id.
pub(super) fn key_name(slot: &str) -> &str {
    slot.split_once('/').map(|(_, n)| n).unwrap_or(slot)
}

/// The rotation's reason as a message tells it. A scheduled start records
/// the scheduler's explanation, written at the start ("…; starts now in
/// open window …"): a message read later names that instant instead of
/// "now", which would be false by then.
pub(super) fn reason_as_told(rec: &RotationRecord) -> String {
    let started = format!("; started {}", when(Some(rec.created_at)));
    rec.reason
        .replace("; starts now", &started)
        .replace("; starting now", &started)
}

/// Variables every rotation message has. No secret, no hash, no PSK.
pub(super) fn rotation_vars(rec: &RotationRecord) -> Vars {
    let mut v = Vars::new();
    let new = rec.new_key.as_ref();
    let init = &rec.initiator;
    v.set("slot", rec.slot.as_str())
        .set("key_name", key_name(&rec.slot))
        .set("provider", rec.provider.as_str())
        .set("policy", rec.policy.as_str())
        .set("rotation_id", rec.id.as_str())
        .set("state", rec.state.as_str())
        .set("trigger", trigger(rec.trigger))
        .set("reason", reason_as_told(rec))
        .set("rotated_by", init.rotated_by.clone().unwrap_or_default())
        .set(
            "initiated_from",
            init.initiated_from.clone().unwrap_or_default(),
        )
        .set(
            "rotation_policy_id",
            init.rotation_policy_id.clone().unwrap_or_default(),
        )
        .set("started_at", when(Some(rec.created_at)))
        .set("old_key_id", rec.old_key_id.clone().unwrap_or_default())
        .set("old_expires", when(rec.old_expires_at))
        .set("old_expires_date", day(rec.old_expires_at))
        .set("new_key_id", new.map(|k| k.id.clone()).unwrap_or_default())
        .set("new_expires", when(new.and_then(|k| k.expires_at)))
        .set("new_expires_date", day(new.and_then(|k| k.expires_at)))
        .set("scopes_count", rec.scopes.len().to_string())
        .set("revoke_old_at", when(rec.revoke_old_at))
        .set("old_revoked_at", when(rec.old_revoked_at));
    let scopes = rec
        .scopes
        .iter()
        .map(|s| Row::from([("scope", s.clone())]))
        .collect();
    v.list("scopes", &["scope"], scopes);
    let sinks = rec
        .sinks
        .iter()
        .map(|name| {
            let r = rec.sink_results.get(name);
            Row::from([
                ("sink", name.clone()),
                ("written", when(r.map(|r| r.written_at))),
                ("verified", when(r.and_then(|r| r.verified_at))),
            ])
        })
        .collect();
    v.list("sinks", &["sink", "written", "verified"], sinks);
    v
}

/// A native rotate ends the old key when it issues the new one: such a
/// rotation never passes through Revoking.
fn native(rec: &RotationRecord) -> bool {
    rec.old_key_id.is_some() && !rec.history.iter().any(|t| t.to == RotationState::Revoking)
}

/// Variables of `completed`.
pub(super) fn completed_vars(rec: &RotationRecord) -> Vars {
    let mut v = rotation_vars(rec);
    v.flag("first_key", rec.old_key_id.is_none())
        .flag("native", native(rec) && rec.old_revoked_at.is_some());
    v
}

/// Variables of `live`.
pub(super) fn live_vars(rec: &RotationRecord, can_revoke: bool, old_inactive: bool) -> Vars {
    let mut v = rotation_vars(rec);
    v.set("sink_names", rec.sinks.join(", "))
        .flag("can_revoke", can_revoke)
        .flag("old_inactive", old_inactive);
    v
}

/// Variables of `revoked`.
pub(super) fn revoked_vars(rec: &RotationRecord) -> Vars {
    let mut v = rotation_vars(rec);
    v.flag("native", native(rec));
    v
}

/// The commands keyrot accepts for a Failed rotation besides `show` and
/// `resume` (always accepted for Failed). Mirrors what
/// `rotation::Engine::abort` and `restart` refuse, so that a message never
/// offers a command keyrot then refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exits {
    /// `keyrot rotation abort` is accepted: no sink holds the new key, it
    /// was not verified, and no native rotate ended the old key.
    pub abort: bool,
    /// `keyrot rotation restart` is accepted: anything but a native rotate
    /// that ended the old key (the new key is then the only live one).
    pub restart: bool,
}

/// What [`Exits`] `rec` has under `cfg` (none unless it is Failed). A
/// provider no longer configured counts as one that does not rotate
/// natively: keyrot then refuses every command alike, naming the missing
/// provider, until the config names it again.
pub fn exits(cfg: &Config, rec: &RotationRecord) -> Exits {
    if rec.state != RotationState::Failed {
        return Exits::default();
    }
    let native = cfg.provider(&rec.provider).is_some_and(|p| match &p.kind {
        ProviderKind::Http(h) => h.capabilities().issue.no_overlap(),
        ProviderKind::Exec(e) => e.no_overlap,
        _ => false,
    });
    let native_ended = rec.old_key_ended_natively(native);
    Exits {
        abort: !rec.new_key_distributed() && !native_ended,
        restart: !native_ended,
    }
}

/// Sets the flags `can_abort` and `can_restart` from [`exits`].
pub(super) fn offer_exits(v: &mut Vars, cfg: &Config, rec: Option<&RotationRecord>) {
    let e = rec.map(|r| exits(cfg, r)).unwrap_or_default();
    v.flag("can_abort", e.abort).flag("can_restart", e.restart);
}

/// Variables of `failed`.
pub(super) fn failed_vars(
    cfg: &Config,
    rec: &RotationRecord,
    old_key_ended: bool,
    now: Timestamp,
) -> Vars {
    let mut v = rotation_vars(rec);
    let step = rec.failed_in.map_or("unknown", RotationState::as_str);
    let written: Vec<&str> = rec.sink_results.keys().map(String::as_str).collect();
    v.set("step", step)
        .set("failed_at", when(rec.entered(RotationState::Failed)))
        .set("error", rec.last_error.clone().unwrap_or_default())
        .set("attempts", rec.attempts.to_string())
        .set("sinks_written", written.join(", "))
        .flag(
            "old_key_ended",
            (old_key_ended || rec.old_lost_at.is_some()) && rec.old_key_id.is_some(),
        )
        .flag("old_key_lost", rec.old_lost_at.is_some())
        .flag("old_expired", rec.old_expires_at.is_some_and(|t| t <= now));
    offer_exits(&mut v, cfg, Some(rec));
    if old_key_ended {
        v.flag("can_abort", false).flag("can_restart", false);
    }
    v
}

/// Variables of `assisted`.
pub(super) fn assisted_vars(
    rec: &RotationRecord,
    new_key_expires: Option<Timestamp>,
    next_reminder: Option<Timestamp>,
    reminder: u32,
) -> Vars {
    let mut v = rotation_vars(rec);
    v.set(
        "reminder",
        if reminder == 0 {
            String::new()
        } else {
            reminder.to_string()
        },
    )
    .set("new_key_expires", when(new_key_expires))
    .set("next_reminder", when(next_reminder));
    v
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "live_tests.rs"]
mod live_tests;
