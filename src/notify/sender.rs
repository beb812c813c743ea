//! The outbox sender: delivers queued messages at least once, with retries
//! and backoff, and a stable Message-ID (`<message-id@keyrot>`) so that a
//! message delivered twice is recognisable as one. A message that keeps
//! failing is marked dead after its budget and reported.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};

use crate::clock::Clock;
use crate::config::{NotifyConfig, NotifyTransport};
use crate::model::{DeliveryState, OutboxMessage};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::wake::Wake;

/// Delivery attempts before a message is dead.
pub const MAX_ATTEMPTS: u32 = 10;

/// Builds the email for an outbox message.
pub fn build_email(cfg: &NotifyConfig, m: &OutboxMessage) -> Result<Message, String> {
    let from: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| format!("notify.from {:?}: {e}", cfg.from))?;
    let mut b = Message::builder()
        .from(from)
        .subject(m.subject.clone())
        .message_id(Some(format!("<{}@keyrot>", m.id)))
        .header(ContentType::TEXT_PLAIN);
    for to in &m.to {
        let mb: Mailbox = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
        b = b.to(mb);
    }
    b.body(m.body.clone()).map_err(|e| e.to_string())
}

/// Sends one message through the configured transport.
async fn deliver(cfg: &NotifyConfig, m: &OutboxMessage) -> Result<(), String> {
    let email = build_email(cfg, m)?;
    if cfg.dry_run {
        tracing::info!(message = %m.id, subject = %m.subject, to = ?m.to, "notify.dry_run: not sending");
        return Ok(());
    }
    match &cfg.transport {
        NotifyTransport::None => Ok(()),
        NotifyTransport::File { dir } => {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            AsyncFileTransport::<Tokio1Executor>::new(dir)
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| format!("writing mail to {}: {e}", dir.display()))
        }
    }
}

fn backoff(attempts: u32) -> SignedDuration {
    SignedDuration::from_secs(30i64.saturating_mul(1i64 << attempts.min(10)).min(3600))
}

/// Runs until shutdown: sends what is due, then sleeps until the next
/// message is due or the outbox changes.
pub async fn run(
    store: Arc<Store>,
    cfg: impl Fn() -> NotifyConfig + Send + Sync + 'static,
    clock: Arc<dyn Clock>,
    wake: Wake,
    mut shutdown: Shutdown,
) {
    let mut changed = wake.subscribe();
    loop {
        let next = match send_due(&store, &cfg(), clock.now()).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "outbox: store error");
                Some(clock.now() + SignedDuration::from_secs(60))
            }
        };
        let sleep = next
            .map(|at| at.duration_since(clock.now()).max(SignedDuration::ZERO))
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .unwrap_or(std::time::Duration::from_secs(86_400 * 365));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            r = changed.changed() => if r.is_err() { return },
            _ = shutdown.recv() => return,
        }
    }
}

/// Sends every queued message that is due; returns when the next one is.
pub async fn send_due(
    store: &Arc<Store>,
    cfg: &NotifyConfig,
    now: Timestamp,
) -> Result<Option<Timestamp>, String> {
    let s = Arc::clone(store);
    let queued: Vec<OutboxMessage> = tokio::task::spawn_blocking(move || s.outbox())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|m| m.state == DeliveryState::Queued)
        .collect();
    let mut next: Option<Timestamp> = None;
    for mut m in queued {
        if m.next_attempt_at > now {
            next = Some(next.map_or(m.next_attempt_at, |n| n.min(m.next_attempt_at)));
            continue;
        }
        match deliver(cfg, &m).await {
            Ok(()) => {
                m.state = DeliveryState::Sent;
                m.last_error = None;
                tracing::info!(message = %m.id, subject = %m.subject, "notification sent");
            }
            Err(e) => {
                m.attempts += 1;
                m.last_error = Some(e.clone());
                if m.attempts >= MAX_ATTEMPTS {
                    m.state = DeliveryState::Dead;
                    tracing::error!(message = %m.id, attempts = m.attempts, error = %e, "notification is dead after its retry budget");
                } else {
                    m.next_attempt_at = now + backoff(m.attempts);
                    next = Some(next.map_or(m.next_attempt_at, |n| n.min(m.next_attempt_at)));
                    tracing::warn!(message = %m.id, attempts = m.attempts, error = %e, "notification failed; will retry");
                }
            }
        }
        let s = Arc::clone(store);
        tokio::task::spawn_blocking(move || s.write(|tx| tx.put_message(&m)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(next)
}
