//! Webhooks: the events mail tells, POSTed as JSON to `[[notify.webhook]]`
//! receivers, through the same durable outbox.
//!
//! One outbox message per event and webhook (id `EVENT webhook:NAME`),
//! queued in the commit that causes the event, delivered at least once
//! with its own attempts and backoff (`retry_initial`, `retry_max`,
//! `attempts` of the webhook). The body is built when the event is queued
//! and never changes; each attempt is signed anew:
//!
//! - `X-Keyrot-Signature: t=UNIX,v1=HEX`, HEX being HMAC-SHA256 under the
//!   webhook's `secret` over `UNIX` `.` body. A receiver recomputes it,
//!   compares in constant time and refuses a `t` more than 5 minutes from
//!   its clock (the replay window docs/notifications.md documents).
//! - `X-Keyrot-Event` (e.g. `rotation.failed`) and `X-Keyrot-Event-Id`,
//!   the event's id, the same for every attempt and every webhook: a
//!   receiver drops a second delivery of an id it has seen.
//!
//! Bodies (`format = "keyrot"`, version 1) carry what the mail says and
//! the same variables its templates see, never a secret: see [`payload`].
//! `format = "slack"` sends `{"text": …}` for chat incoming webhooks.
//!
//! A URL given as a secret reference is read when the delivery is made,
//! checked with the rule the config applies, and never logged: errors name
//! the webhook.

use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret;
use serde_json::{Map, Value as Json, json};

use super::render::{Value, Vars};
use keyrot_config::{WebhookConfig, WebhookFormat, WebhookUrl, credentials_dir_from_env};
use keyrot_core::error::CallError;
use keyrot_core::model::{Channel, DeliveryState, MessageKind, OutboxMessage};
use keyrot_peers::http::{self, PeerKind};

/// Version of the `keyrot` body format.
pub const BODY_VERSION: u32 = 1;

/// Separator between an event's id and the webhook in a delivery's
/// outbox id: a space never occurs in a key id or a webhook name, so the
/// event id is recovered exactly ([`OutboxMessage::event_id`]).
pub const ID_SEPARATOR: &str = " webhook:";

/// The outbox id of `event`'s delivery to webhook `hook`.
pub fn delivery_id(event: &str, hook: &str) -> String {
    format!("{event}{ID_SEPARATOR}{hook}")
}

/// What an event says, for [`deliveries`].
pub struct Event<'a> {
    /// Kind of event.
    pub kind: MessageKind,
    /// Its stable id (the mail's outbox id).
    pub id: &'a str,
    /// The mail's subject.
    pub subject: &'a str,
    /// The mail's plain-text body, footer included.
    pub text: &'a str,
    /// The variables the mail's templates saw.
    pub vars: &'a Vars,
    /// The host that queued it.
    pub host: &'a str,
    /// When.
    pub at: Timestamp,
}

/// One queued delivery of `event` to every webhook of `hooks` that takes
/// it.
pub fn deliveries(hooks: &[WebhookConfig], event: &Event<'_>) -> Vec<OutboxMessage> {
    hooks
        .iter()
        .filter(|h| h.wants(event.kind))
        .map(|h| OutboxMessage {
            id: delivery_id(event.id, &h.name),
            kind: event.kind,
            to: Vec::new(),
            subject: event.subject.to_string(),
            body: payload(h.format, event),
            html: None,
            channel: Channel::Webhook(h.name.clone()),
            thread: None,
            state: DeliveryState::Queued,
            attempts: 0,
            next_attempt_at: event.at,
            last_error: None,
            created_at: event.at,
        })
        .collect()
}

/// The body `format` gives `event`.
///
/// `keyrot` (version 1): `{"version": 1, "id", "event", "occurred_at",
/// "host", "subject", "text", "data": {…}}`, `data` holding the template
/// variables (text as strings, flags as booleans, lists as arrays of
/// objects). The sender adds `"installation"` and makes `id` unique
/// between installations when it sends ([`finish`]).
pub fn payload(format: WebhookFormat, event: &Event<'_>) -> String {
    let body = match format {
        WebhookFormat::Keyrot => json!({
            "version": BODY_VERSION,
            "id": event.id,
            "event": event.kind.event(),
            "occurred_at": event.at.to_string(),
            "host": event.host,
            "subject": event.subject,
            "text": event.text,
            "data": data(event.vars),
        }),
        WebhookFormat::Slack => json!({
            "text": format!("*{}*\n{}", slack_escape(event.subject), slack_escape(event.text)),
        }),
    };
    body.to_string()
}

/// The variables as JSON.
fn data(vars: &Vars) -> Json {
    let mut out = Map::new();
    for (name, v) in vars.iter() {
        let j = match v {
            Value::Text(t) if vars.is_flag(name) => Json::Bool(!t.is_empty()),
            Value::Text(t) => Json::String(t.clone()),
            Value::List { rows, .. } => Json::Array(
                rows.iter()
                    .map(|r| {
                        Json::Object(
                            r.iter()
                                .map(|(f, c)| ((*f).to_string(), Json::String(c.clone())))
                                .collect(),
                        )
                    })
                    .collect(),
            ),
        };
        out.insert(name.to_string(), j);
    }
    Json::Object(out)
}

/// Slack's mrkdwn control characters as its docs ask: `&`, `<`, `>`.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The event id a receiver sees: the outbox's event id, then this
/// installation's id, so that two installations posting to one receiver
/// never share one.
pub fn global_id(event: &str, installation: &str) -> String {
    format!("{event}.{installation}")
}

/// The body as sent: for `keyrot` bodies, `id` made global and
/// `installation` added; other bodies unchanged.
pub fn finish(body: &str, event_id: &str, installation: &str) -> String {
    match serde_json::from_str::<Json>(body) {
        Ok(Json::Object(mut m)) if m.contains_key("version") => {
            m.insert("id".into(), Json::String(event_id.to_string()));
            m.insert(
                "installation".into(),
                Json::String(installation.to_string()),
            );
            Json::Object(m).to_string()
        }
        _ => body.to_string(),
    }
}

pub use keyrot_peers::http::signature;

/// Delivers `body` (the event `event_id` of `kind`) to `hook`; `attempt`
/// counts from 1. 2xx is delivered; anything else is an error naming the
/// webhook (transient for timeouts, connection failures, 408, 429 and 5xx,
/// with the receiver's `Retry-After`).
pub async fn deliver(
    hook: &WebhookConfig,
    kind: MessageKind,
    event_id: &str,
    body: &str,
    attempt: u32,
    now: Timestamp,
) -> Result<(), CallError> {
    let who = format!("webhook {:?}", hook.name);
    let url = url(hook, &who)?;
    let client = http::client(&who, hook.timeout, hook.ca_file.as_deref())?;
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Keyrot-Event", kind.event())
        .header("X-Keyrot-Event-Id", event_id)
        .header("X-Keyrot-Delivery-Attempt", attempt.to_string())
        .body(body.to_string());
    if let Some(secret) = &hook.secret {
        let key = secret
            .resolve(credentials_dir_from_env().as_deref())
            .map_err(|e| CallError::permanent(format!("{who}: `secret`: {e}")))?;
        req = req.header(
            "X-Keyrot-Signature",
            signature(key.expose_secret().as_bytes(), now, body),
        );
    }
    let ans = send(&who, hook.timeout, req).await?;
    if ans.status.is_success() {
        return Ok(());
    }
    Err(http::status_error(
        &who,
        "delivering an event",
        "the receiver",
        &ans,
        now,
        None,
    ))
}

/// Sends without the URL in any error (it may hold the webhook's token).
async fn send(
    who: &str,
    timeout: SignedDuration,
    req: reqwest::RequestBuilder,
) -> Result<http::Answer, CallError> {
    http::send_hiding_url(who, "delivering an event", PeerKind::Webhook, timeout, req).await
}

/// The webhook's URL, read from its secret when it is one.
fn url(hook: &WebhookConfig, who: &str) -> Result<reqwest::Url, CallError> {
    match &hook.url {
        WebhookUrl::Plain(u) => Ok(u.clone()),
        WebhookUrl::Secret(r) => {
            let text = r
                .resolve(credentials_dir_from_env().as_deref())
                .map_err(|e| CallError::permanent(format!("{who}: `url`: {e}")))?;
            keyrot_config::webhook::check_url(text.expose_secret())
                .map_err(|e| CallError::permanent(format!("{who}: `url` (from its secret): {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("slot", "p/k")
            .flag("can_abort", true)
            .flag("native", false);
        let row: super::super::render::Row =
            [("name", "vault".to_string()), ("state", "ok".to_string())].into();
        v.list("sinks", &["name", "state"], vec![row]);
        v
    }

    fn event(v: &Vars) -> Event<'_> {
        Event {
            kind: MessageKind::RotationFailed,
            id: "r1.failed.4",
            subject: "[keyrot] FAILED <p/k>",
            text: "body & more",
            vars: v,
            host: "vm1",
            at: Timestamp::from_second(1_800_000_000).unwrap(),
        }
    }

    #[test]
    fn the_keyrot_body_carries_the_event_and_typed_variables() {
        let v = vars();
        let body: Json = serde_json::from_str(&payload(WebhookFormat::Keyrot, &event(&v))).unwrap();
        assert_eq!(body["version"], 1);
        assert_eq!(body["event"], "rotation.failed");
        assert_eq!(body["id"], "r1.failed.4");
        assert_eq!(body["data"]["slot"], "p/k");
        assert_eq!(body["data"]["can_abort"], true);
        assert_eq!(body["data"]["native"], false);
        assert_eq!(body["data"]["sinks"][0]["name"], "vault");
        let sent: Json =
            serde_json::from_str(&finish(&body.to_string(), "r1.failed.4.abc", "abc")).unwrap();
        assert_eq!(sent["id"], "r1.failed.4.abc");
        assert_eq!(sent["installation"], "abc");
    }

    #[test]
    fn the_slack_body_is_text_with_mrkdwn_escaped() {
        let v = vars();
        let body: Json = serde_json::from_str(&payload(WebhookFormat::Slack, &event(&v))).unwrap();
        assert_eq!(
            body["text"],
            "*[keyrot] FAILED &lt;p/k&gt;*\nbody &amp; more"
        );
        assert_eq!(finish(&body.to_string(), "x", "y"), body.to_string());
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_time_dot_body() {
        use hmac::{KeyInit as _, Mac as _};
        // RFC 4231 test case 2 shape: key "Jefe"; the message here is
        // "1800000000.what do ya want for nothing?".
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let sig = signature(b"Jefe", at, "what do ya want for nothing?");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1800000000.what do ya want for nothing?");
        let want = keyrot_core::crypto::hex_encode(&mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1800000000,v1={want}"));
        assert_ne!(sig, signature(b"Jefe", at, "what do ya want for nothing!"));
    }

    #[test]
    fn delivery_ids_give_back_their_event_id() {
        let v = vars();
        let hook = WebhookConfig {
            name: "ops".into(),
            url: WebhookUrl::Plain(keyrot_config::webhook::check_url("https://h/").unwrap()),
            secret: None,
            format: WebhookFormat::Slack,
            events: vec!["rotation.*".into()],
            timeout: SignedDuration::from_secs(1),
            ca_file: None,
            retry_initial: SignedDuration::from_secs(1),
            retry_max: SignedDuration::from_secs(1),
            attempts: 1,
        };
        let mut e = event(&v);
        e.id = "p/a webhook:x.expiry.7d";
        let m = deliveries(std::slice::from_ref(&hook), &e).pop().unwrap();
        assert_eq!(m.id, "p/a webhook:x.expiry.7d webhook:ops");
        assert_eq!(m.event_id(), "p/a webhook:x.expiry.7d");
        e.kind = MessageKind::Digest;
        assert!(deliveries(&[hook], &e).is_empty(), "filtered out");
    }
}
