//! The outbox sender: delivers queued messages at least once through the
//! configured transport ([`Mailer`]), with retries and backoff, and a
//! stable Message-ID (`<message-id@from-domain>`) so that a message
//! delivered twice is recognisable as one. A message that keeps failing is
//! marked dead after its budget, logged at error and reported by
//! `keyrot status`.
//!
//! Delivery rules (docs/notifications.md repeats them for operators):
//! - Every failure is retried, with a backoff of 15 s doubling up to 1 h,
//!   until [`MAX_ATTEMPTS`] attempts (about 8 hours); then the message is
//!   dead. A permanent refusal (5xx) is retried too: it is often a
//!   configuration problem (relay denied, AUTH required) that an operator
//!   fixes, and a message must not be lost to it.
//! - A permanent refusal of a message to several recipients is followed
//!   at once by one delivery per recipient: the recipients accepted get
//!   it, and only the refused ones are kept for the retries.
//! - The transport is built once per configuration (one pooled SMTP
//!   connection); at start and after a reload that changes `[notify]`,
//!   every queued message is due at once. When a message is delivered,
//!   the others waiting out a backoff are sent in the same pass (the
//!   server is back). After the server refused the
//!   credentials, the password is read again before the next attempt.
//! - Crash between the server's acceptance and the commit that marks the
//!   message sent: it is sent again after the restart, with the same
//!   Message-ID (at least once).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::transport::{Failure, Mailer};
use keyrot_config::WebhookConfig;
use keyrot_config::{NotifyConfig, credentials_dir_from_env};
use keyrot_core::clock::Clock;
use keyrot_core::error::CallError;
use keyrot_core::model::{Channel, DeliveryState, OutboxMessage};
use keyrot_core::shutdown::Shutdown;
use keyrot_core::store::Store;
use keyrot_core::wake::Wake;

/// Delivery attempts before a message is dead (about 8 hours of retries).
pub const MAX_ATTEMPTS: u32 = 16;

/// First retry delay.
const FIRST_BACKOFF: SignedDuration = SignedDuration::from_secs(15);

/// Longest retry delay.
const MAX_BACKOFF: SignedDuration = SignedDuration::from_secs(3600);

/// The delay after the `attempts`-th failed attempt: 15 s, 30 s, 1 min,
/// ... up to 1 h.
pub fn backoff(attempts: u32) -> SignedDuration {
    let factor = 1i32 << attempts.saturating_sub(1).min(12);
    FIRST_BACKOFF
        .checked_mul(factor)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// The transport in use and why it may need building again.
#[derive(Default)]
struct Current {
    /// The configuration of the last build attempt.
    built_for: Option<NotifyConfig>,
    /// The transport, when the last build worked.
    mailer: Option<Mailer>,
    /// The server refused the credentials: build again (password re-read).
    stale: bool,
    /// The last build error logged (logged again only when it changes).
    logged: Option<String>,
}

impl Current {
    /// The transport for `want`, built again when the configuration changed,
    /// the last build failed or the credentials were refused. Returns it and
    /// whether the configuration is new (start or reload): then every queued
    /// message is due at once.
    async fn get(
        &mut self,
        want: &NotifyConfig,
        creds: Option<PathBuf>,
        installation: &str,
    ) -> (Result<&Mailer, CallError>, bool) {
        let new_config = self.built_for.as_ref() != Some(want);
        if new_config || self.mailer.is_none() || self.stale {
            if let Some(old) = self.mailer.take() {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), old.shutdown()).await;
            }
            self.built_for = Some(want.clone());
            self.stale = false;
            match Mailer::build(want, creds).await {
                Ok(mut m) => {
                    m.set_installation(Some(installation.to_string()));
                    if new_config {
                        tracing::info!(transport = %m.describe(), "notifications go through this transport");
                    }
                    self.mailer = Some(m);
                    self.logged = None;
                }
                Err(e) => {
                    if self.logged.as_deref() != Some(e.message.as_str()) {
                        tracing::error!(error = %e, "notify: cannot build the transport; queued messages are retried");
                        self.logged = Some(e.message.clone());
                    }
                    return (Err(e), new_config);
                }
            }
        }
        match &self.mailer {
            Some(m) => (Ok(m), new_config),
            None => (
                Err(CallError::permanent("notify: no transport")),
                new_config,
            ),
        }
    }
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
    let mut current = Current::default();
    let installation = installation(&store).await;
    loop {
        let want = cfg();
        let (mailer, fresh) = current
            .get(&want, credentials_dir_from_env(), &installation)
            .await;
        let out = Outlets {
            mail: mailer,
            hooks: &want.webhooks,
            installation: &installation,
            dry_run: want.dry_run,
        };
        // A pass may wait on a slow server (up to `timeout` per message):
        // shutdown does not wait for it. A message the server accepted but
        // that was not marked sent yet is sent again after the restart.
        let pass = tokio::select! {
            r = send_due(&store, &out, clock.now(), fresh) => r,
            _ = shutdown.recv() => break,
        };
        let next = match pass {
            Ok(pass) => {
                current.stale |= pass.auth_refused;
                pass.next
            }
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
            r = changed.changed() => if r.is_err() { break },
            _ = shutdown.recv() => break,
        }
    }
    if let Some(m) = current.mailer.take() {
        // QUIT on pooled connections, but never hold the daemon's stop up.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), m.shutdown()).await;
    }
}

/// What one pass over the outbox found.
#[derive(Debug, Default)]
pub struct Pass {
    /// When the next queued message is due, if any is queued.
    pub next: Option<Timestamp>,
    /// Messages delivered in this pass.
    pub sent: usize,
    /// A server refused the credentials in this pass.
    pub auth_refused: bool,
}

/// Where a pass delivers: the mail transport (or why there is none) and
/// the webhooks of the config in force.
pub struct Outlets<'a> {
    /// The mail transport, or its build error.
    pub mail: Result<&'a Mailer, CallError>,
    /// `[[notify.webhook]]`.
    pub hooks: &'a [WebhookConfig],
    /// This installation's id, which webhook event ids carry.
    pub installation: &'a str,
    /// `notify.dry_run`: log instead of sending.
    pub dry_run: bool,
}

impl<'a> Outlets<'a> {
    /// Mail only, through `mail` (its config's `dry_run`).
    pub fn mail(mail: Result<&'a Mailer, CallError>) -> Outlets<'a> {
        let dry_run = mail.as_ref().is_ok_and(|m| m.config.dry_run);
        Outlets {
            mail,
            hooks: &[],
            installation: "",
            dry_run,
        }
    }
}

/// Sends every queued message that is due (all of them when `all_due`),
/// oldest first: mail through `out.mail` (or fails each with its build
/// error), webhook deliveries to their webhook. With `transport = "none"`
/// queued mail is left alone.
pub async fn send_due(
    store: &Arc<Store>,
    out: &Outlets<'_>,
    now: Timestamp,
    all_due: bool,
) -> Result<Pass, String> {
    let mut pass = Pass::default();
    let no_mail = out.mail.as_ref().is_ok_and(|m| m.is_none());
    let s = Arc::clone(store);
    // The messages read may have been queued by commits not durable yet
    // (group commit): flush before sending, so that a crash cannot take
    // back a transition whose message went out.
    let mut queued: Vec<OutboxMessage> = tokio::task::spawn_blocking(move || {
        let all = s.outbox()?;
        s.flush()?;
        Ok::<_, keyrot_core::store::StoreError>(all)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?
    .into_iter()
    .filter(|m| m.state == DeliveryState::Queued)
    .filter(|m| !(no_mail && m.channel == Channel::Mail))
    .collect();
    queued.sort_by_key(|m| (m.next_attempt_at, m.created_at));
    // Once one message goes through, its outlet works again: the messages
    // to that outlet still waiting out their backoff are sent now, so
    // that the queue flushes when the server is back rather than one by
    // one over the following hour. (Due messages sort first, so every
    // waiting one comes after the success that releases it.)
    let mut working: HashSet<Channel> = HashSet::new();
    for mut m in queued {
        if !all_due && !working.contains(&m.channel) && m.next_attempt_at > now {
            due_next(m.next_attempt_at, &mut pass.next);
            continue;
        }
        let (label, result, hook) = match &m.channel {
            Channel::Mail => {
                let label = out
                    .mail
                    .as_ref()
                    .map(|x| x.message_id(&m.id))
                    .unwrap_or_default();
                let result = match &out.mail {
                    Ok(mailer) => attempt(mailer, &m).await,
                    Err(e) => Err(Failure::all(e.clone())),
                };
                (label, result, None)
            }
            Channel::Webhook(name) => {
                let hook = out.hooks.iter().find(|h| &h.name == name);
                let id = super::webhook::global_id(m.event_id(), out.installation);
                let result = match hook {
                    Some(h) => hook_attempt(h, &m, &id, out, now).await,
                    None => Err(Failure::all(CallError::transient(format!(
                        "webhook {name:?} is not in the config any more (the delivery waits for it)"
                    )))),
                };
                (id, result, hook)
            }
        };
        m.attempts += 1;
        let budget = hook.map_or(MAX_ATTEMPTS, |h| h.attempts);
        match result {
            Ok(()) => {
                m.state = DeliveryState::Sent;
                m.last_error = None;
                pass.sent += 1;
                working.insert(m.channel.clone());
                tracing::info!(notification = %m.id, message_id = %label, kind = %m.kind.event(), recipients = m.to.len(), attempt = m.attempts, "notification sent");
            }
            Err(f) => {
                pass.auth_refused |= f.auth;
                if let Some(rest) = f.remaining {
                    tracing::warn!(notification = %m.id, message_id = %label, error = %f.error, "notification delivered to some recipients only; the others are retried");
                    m.to = rest;
                }
                m.last_error = Some(f.error.message.clone());
                if m.attempts >= budget {
                    m.state = DeliveryState::Dead;
                    tracing::error!(notification = %m.id, message_id = %label, kind = %m.kind.event(), to = ?m.to, attempts = m.attempts, error = %f.error, "notification is dead after its retry budget; see `keyrot status`");
                } else {
                    let wait = match hook {
                        Some(h) => {
                            let asked = f.error.retry_after.unwrap_or_default();
                            h.backoff(m.attempts).max(asked.min(h.retry_max))
                        }
                        None => backoff(m.attempts),
                    };
                    m.next_attempt_at = now + wait;
                    due_next(m.next_attempt_at, &mut pass.next);
                    tracing::warn!(notification = %m.id, message_id = %label, attempts = m.attempts, transient = f.error.transient, next_attempt_at = %m.next_attempt_at, error = %f.error, "notification not delivered; will retry");
                }
            }
        }
        let s = Arc::clone(store);
        tokio::task::spawn_blocking(move || {
            s.write(|tx| match tx.message(&m.id)? {
                // Written back only while it is still the queued message
                // read above (never resurrect a pruned one).
                Some(cur) if cur.state == DeliveryState::Queued => tx.put_message(&m),
                _ => Ok(()),
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    }
    Ok(pass)
}

/// One webhook delivery, with the failpoints of the crash suite around
/// it: `before:webhook-send` and `after:webhook-send` (after the receiver
/// accepted it, before the commit).
async fn hook_attempt(
    hook: &WebhookConfig,
    m: &OutboxMessage,
    id: &str,
    out: &Outlets<'_>,
    now: Timestamp,
) -> Result<(), Failure> {
    let fail = Failure::all;
    keyrot_core::failpoint::hit("before:webhook-send").map_err(fail)?;
    if out.dry_run {
        tracing::info!(notification = %m.id, webhook = %hook.name, event = %m.kind.event(), "notify.dry_run: not sending");
        return Ok(());
    }
    let body = super::webhook::finish(&m.body, id, out.installation);
    super::webhook::deliver(hook, m.kind, id, &body, m.attempts + 1, now)
        .await
        .map_err(fail)?;
    keyrot_core::failpoint::hit("after:webhook-send").map_err(fail)?;
    Ok(())
}

/// The store's installation id; a process-local one when the store has
/// none or cannot be read (logged), so ids stay unique if not stable.
async fn installation(store: &Arc<Store>) -> String {
    let s = Arc::clone(store);
    match tokio::task::spawn_blocking(move || s.installation()).await {
        Ok(Ok(Some(id))) => id,
        other => {
            let bytes: [u8; 10] = rand::random();
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            tracing::warn!(result = ?other.map(|r| r.map(|_| ())), installation = %id, "outbox: the store holds no installation id; Message-IDs use a new one until the next start");
            id
        }
    }
}

/// Keeps the earliest of `next` and `at`.
fn due_next(at: Timestamp, next: &mut Option<Timestamp>) {
    *next = Some(next.map_or(at, |n| n.min(at)));
}

/// One attempt, with the failpoints of the crash suite around it:
/// `before:mail-send` (fails it) and `after:mail-send` (after the
/// transport accepted it, before the commit).
async fn attempt(mailer: &Mailer, m: &OutboxMessage) -> Result<(), Failure> {
    let fail = Failure::all;
    keyrot_core::failpoint::hit("before:mail-send").map_err(fail)?;
    if mailer.config.dry_run {
        tracing::info!(notification = %m.id, subject = %m.subject, to = ?m.to, "notify.dry_run: not sending");
        return Ok(());
    }
    mailer.send(m).await?;
    keyrot_core::failpoint::hit("after:mail-send").map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_config::{NotifyTransport, SendmailConfig};
    use keyrot_core::crypto::MasterKey;
    use keyrot_core::model::MessageKind;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap()
    }

    fn queued(id: &str, attempts: u32, at: Timestamp) -> OutboxMessage {
        OutboxMessage {
            id: id.into(),
            kind: MessageKind::RotationCompleted,
            to: vec!["ops@example.com".into()],
            subject: "[keyrot] rotated p/k".into(),
            body: "body".into(),
            html: None,
            channel: keyrot_core::model::Channel::Mail,
            thread: None,
            state: DeliveryState::Queued,
            attempts,
            next_attempt_at: at,
            last_error: None,
            created_at: t(0),
        }
    }

    fn store(dir: &std::path::Path) -> Arc<Store> {
        Arc::new(Store::open(&dir.join("state.redb"), MasterKey::generate()).unwrap())
    }

    fn cfg(transport: NotifyTransport) -> NotifyConfig {
        NotifyConfig {
            from: "keyrot@example.com".into(),
            transport,
            ..NotifyConfig::default()
        }
    }

    fn by_id(store: &Store, id: &str) -> OutboxMessage {
        store
            .outbox()
            .unwrap()
            .into_iter()
            .find(|m| m.id == id)
            .unwrap()
    }

    #[test]
    fn backoff_doubles_to_an_hour_and_the_budget_spans_hours() {
        assert_eq!(backoff(1), SignedDuration::from_secs(15));
        assert_eq!(backoff(2), SignedDuration::from_secs(30));
        assert_eq!(backoff(5), SignedDuration::from_secs(240));
        assert_eq!(backoff(9), SignedDuration::from_secs(3600));
        assert_eq!(backoff(40), SignedDuration::from_secs(3600));
        let total: i64 = (1..MAX_ATTEMPTS).map(|a| backoff(a).as_secs()).sum();
        assert!((6 * 3600..10 * 3600).contains(&total), "{total}");
    }

    #[tokio::test]
    async fn failures_back_off_then_die_and_status_reports_the_dead() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        // A "sendmail" that always fails with EX_TEMPFAIL.
        let failing = cfg(NotifyTransport::Sendmail(SendmailConfig {
            command: PathBuf::from("/bin/false"),
            timeout: SignedDuration::from_secs(10),
        }));
        store
            .write(|tx| {
                tx.put_message(&queued("m.first", 0, t(0)))?;
                tx.put_message(&queued("m.last", MAX_ATTEMPTS - 1, t(0)))?;
                tx.put_message(&queued("m.later", 0, t(100)))
            })
            .unwrap();
        let mailer = Mailer::build(&failing, None).await.unwrap();
        let pass = send_due(&store, &Outlets::mail(Ok(&mailer)), t(10), false)
            .await
            .unwrap();
        let first = by_id(&store, "m.first");
        assert_eq!((first.state, first.attempts), (DeliveryState::Queued, 1));
        assert_eq!(first.next_attempt_at, t(10) + backoff(1));
        assert!(
            first
                .last_error
                .as_deref()
                .unwrap()
                .contains("exited with 1")
        );
        assert_eq!(by_id(&store, "m.last").state, DeliveryState::Dead);
        assert_eq!(by_id(&store, "m.later").attempts, 0, "not due yet");
        assert_eq!(pass.next, Some(t(25)));

        // What `keyrot status` counts from the outbox: two queued, the
        // dead one by id, the next attempt.
        let outbox = store.outbox().unwrap();
        let in_state = |s: DeliveryState| outbox.iter().filter(move |m| m.state == s);
        assert_eq!(in_state(DeliveryState::Queued).count(), 2);
        let dead: Vec<&str> = in_state(DeliveryState::Dead)
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(dead, ["m.last"]);
        let next = in_state(DeliveryState::Queued)
            .map(|m| m.next_attempt_at)
            .min();
        assert_eq!(next, Some(t(25)));

        // A new configuration (start, reload) makes everything due at once.
        let dir_ok = dir.path().join("mail");
        let working = Mailer::build(
            &cfg(NotifyTransport::File {
                dir: dir_ok.clone(),
            }),
            None,
        )
        .await
        .unwrap();
        let pass = send_due(&store, &Outlets::mail(Ok(&working)), t(11), true)
            .await
            .unwrap();
        assert_eq!((pass.sent, pass.next), (2, None));
        assert_eq!(by_id(&store, "m.first").state, DeliveryState::Sent);
        assert_eq!(by_id(&store, "m.later").state, DeliveryState::Sent);
        assert_eq!(by_id(&store, "m.last").state, DeliveryState::Dead);
        assert_eq!(std::fs::read_dir(&dir_ok).unwrap().count(), 2);
    }

    #[tokio::test]
    async fn one_delivery_makes_the_messages_waiting_out_a_backoff_due_now() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        // After an outage: one message is due, two wait out longer backoffs.
        store
            .write(|tx| {
                tx.put_message(&queued("m.due", 3, t(5)))?;
                tx.put_message(&queued("m.wait1", 6, t(900)))?;
                tx.put_message(&queued("m.wait2", 9, t(3000)))
            })
            .unwrap();
        let out = dir.path().join("mail");
        let working = Mailer::build(&cfg(NotifyTransport::File { dir: out.clone() }), None)
            .await
            .unwrap();
        let pass = send_due(&store, &Outlets::mail(Ok(&working)), t(10), false)
            .await
            .unwrap();
        assert_eq!((pass.sent, pass.next), (3, None));
        for id in ["m.due", "m.wait1", "m.wait2"] {
            assert_eq!(by_id(&store, id).state, DeliveryState::Sent, "{id}");
        }
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
    }

    #[tokio::test]
    async fn a_failed_attempt_does_not_release_the_waiting_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store
            .write(|tx| {
                tx.put_message(&queued("m.due", 0, t(5)))?;
                tx.put_message(&queued("m.wait", 4, t(900)))
            })
            .unwrap();
        let failing = cfg(NotifyTransport::Sendmail(SendmailConfig {
            command: PathBuf::from("/bin/false"),
            timeout: SignedDuration::from_secs(10),
        }));
        let mailer = Mailer::build(&failing, None).await.unwrap();
        let pass = send_due(&store, &Outlets::mail(Ok(&mailer)), t(10), false)
            .await
            .unwrap();
        assert_eq!(pass.sent, 0);
        assert_eq!(by_id(&store, "m.wait").attempts, 4, "still waiting");
        assert_eq!(pass.next, Some(t(25)));
    }

    #[tokio::test]
    async fn a_transport_that_cannot_be_built_fails_each_due_message_and_none_waits() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store
            .write(|tx| tx.put_message(&queued("m1", 0, t(0))))
            .unwrap();
        let none = Mailer::build(&cfg(NotifyTransport::None), None)
            .await
            .unwrap();
        let pass = send_due(&store, &Outlets::mail(Ok(&none)), t(1), true)
            .await
            .unwrap();
        assert_eq!((pass.sent, pass.next), (0, None));
        assert_eq!(
            by_id(&store, "m1").attempts,
            0,
            "transport none leaves it queued"
        );
        let e = CallError::permanent("[notify] `password` (file /x): cannot read");
        send_due(&store, &Outlets::mail(Err(e)), t(1), false)
            .await
            .unwrap();
        let m = by_id(&store, "m1");
        assert_eq!((m.state, m.attempts), (DeliveryState::Queued, 1));
        assert!(m.last_error.unwrap().contains("`password`"));
    }
}
