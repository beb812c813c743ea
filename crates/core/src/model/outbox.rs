//! The outbox: a notification waiting to be delivered (or delivered), its
//! kind, its channel and its delivery state.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Kinds of notification the outbox carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A rotation completed.
    RotationCompleted,
    /// A rotation failed after its retry budget.
    RotationFailed,
    /// The new key is live in every sink; the old key lives on until the
    /// overlap ends.
    NewKeyLive,
    /// The old key was revoked.
    OldKeyRevoked,
    /// A key is about to expire and is not rotated automatically.
    ExpiryWarning,
    /// An operator must create a key by hand (assisted rotation).
    AssistedRequest,
    /// A provider listed a key whose name or id keyrot refuses.
    KeyRefused,
    /// A slot's key expired or vanished without keyrot replacing it.
    KeyEnded,
    /// A test message (`keyrot notify test`).
    Test,
    /// The daily digest of the keys that expire soon.
    Digest,
    /// On a shared store, an instance took over the leader lease from
    /// another one.
    Failover,
    /// The old key of a rotation was still in use at the policy's
    /// `revoke_deadline` (`revoke_when = "unused"`).
    OldKeyInUse,
    /// A provider lists a key with keyrot's tag that belongs to no
    /// rotation keyrot knows (an orphan).
    OrphanKey,
}

impl MessageKind {
    /// Every kind, in the order docs/notifications.md lists their events.
    pub const ALL: [MessageKind; 13] = [
        MessageKind::NewKeyLive,
        MessageKind::OldKeyInUse,
        MessageKind::OldKeyRevoked,
        MessageKind::RotationCompleted,
        MessageKind::RotationFailed,
        MessageKind::AssistedRequest,
        MessageKind::ExpiryWarning,
        MessageKind::KeyEnded,
        MessageKind::KeyRefused,
        MessageKind::OrphanKey,
        MessageKind::Digest,
        MessageKind::Failover,
        MessageKind::Test,
    ];

    /// The event name webhooks carry and `[[notify.webhook]] events`
    /// filters on, e.g. `rotation.failed`.
    pub fn event(self) -> &'static str {
        match self {
            MessageKind::NewKeyLive => "rotation.new_key_live",
            MessageKind::OldKeyRevoked => "rotation.old_key_revoked",
            MessageKind::RotationCompleted => "rotation.completed",
            MessageKind::RotationFailed => "rotation.failed",
            MessageKind::AssistedRequest => "rotation.assisted_request",
            MessageKind::ExpiryWarning => "key.expiring",
            MessageKind::KeyEnded => "key.ended",
            MessageKind::KeyRefused => "key.refused",
            MessageKind::OrphanKey => "key.orphan",
            MessageKind::Digest => "digest",
            MessageKind::Failover => "keyrot.failover",
            MessageKind::OldKeyInUse => "rotation.old_key_in_use",
            MessageKind::Test => "test",
        }
    }
}

/// Where an outbox message goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email, through `[notify] transport`, to the message's `to`.
    #[default]
    Mail,
    /// The `[[notify.webhook]]` of this name; the body is the JSON the
    /// webhook receives.
    Webhook(String),
}

/// Delivery state of an outbox message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be sent (or retried).
    Queued,
    /// Delivered to the transport.
    Sent,
    /// Gave up after its retry budget.
    Dead,
}

/// A notification waiting in (or delivered from) the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Stable id derived from the event; also the Message-ID's local part.
    pub id: String,
    /// What kind of event.
    pub kind: MessageKind,
    /// Recipients, de-duplicated.
    pub to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// HTML alternative of the body, if rendered.
    #[serde(default)]
    pub html: Option<String>,
    /// Where it goes: email (default, and every message queued by an
    /// older keyrot) or one webhook.
    #[serde(default)]
    pub channel: Channel,
    /// The message this one follows in its thread (a rotation's or a
    /// key's), for `In-Reply-To`/`References`; none for a message that
    /// stands alone.
    #[serde(default)]
    pub thread: Option<String>,
    /// Delivery state.
    pub state: DeliveryState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Next attempt not before.
    pub next_attempt_at: Timestamp,
    /// Last delivery error.
    pub last_error: Option<String>,
    /// When queued.
    pub created_at: Timestamp,
}

impl OutboxMessage {
    /// The id of the event this message tells: its own id for a mail, the
    /// part before ` webhook:NAME` for a webhook delivery.
    pub fn event_id(&self) -> &str {
        match &self.channel {
            Channel::Mail => &self.id,
            Channel::Webhook(name) => self
                .id
                .strip_suffix(name.as_str())
                .and_then(|s| s.strip_suffix(" webhook:"))
                .unwrap_or(&self.id),
        }
    }
}
