//! `[[notify.webhook]]`: where rotation events are POSTed as JSON, besides
//! (or instead of) email. Raw fields as written, the validated settings,
//! the URL rule shared with delivery, and the secret references for
//! `keyrot check`. Delivery itself is in `crates/engine/src/notify/webhook.rs`.

use std::path::PathBuf;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use super::ctx::{Ctx, did_you_mean};
use super::raw::DurationText;
use super::raw::RawPassword;
use super::raw::SecretRefRaw;
use super::secret::SecretUse;
use super::secret::secret_ref;
use super::secret_ref::SecretRef;
use keyrot_core::model::MessageKind;

/// Default `timeout` of a webhook request.
pub const DEFAULT_WEBHOOK_TIMEOUT: SignedDuration = SignedDuration::from_secs(10);
/// Default `retry_initial`: the delay after the first failed delivery.
pub const DEFAULT_RETRY_INITIAL: SignedDuration = SignedDuration::from_secs(15);
/// Default `retry_max`: the longest delay between two attempts.
pub const DEFAULT_RETRY_MAX: SignedDuration = SignedDuration::from_secs(3600);
/// Default `attempts` before a delivery is given up (dead): with the
/// default delays, about 8 hours of retries.
pub const DEFAULT_ATTEMPTS: u32 = 16;
/// `format` values, as written.
const FORMATS: [&str; 2] = ["keyrot", "slack"];

/// One `[[notify.webhook]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Name, unique among webhooks; logs and `status` use it.
    pub name: Spanned<String>,
    /// Where events are POSTed: a URL, or a secret reference to one (a
    /// Slack or Teams URL carries its own token).
    pub url: Spanned<RawUrl>,
    /// HMAC-SHA256 key of `X-Keyrot-Signature` (a secret reference).
    pub secret: Option<Spanned<RawPassword>>,
    /// `keyrot` (default) or `slack`.
    pub format: Option<Spanned<String>>,
    /// Event names or `PREFIX.*` patterns; every event when absent.
    pub events: Option<Vec<Spanned<String>>>,
    /// Timeout of one request (default 10s).
    pub timeout: Option<Spanned<DurationText>>,
    /// PEM file of CA certificates trusted for the receiver.
    pub ca_file: Option<Spanned<String>>,
    /// Delay after the first failed delivery (default 15s), doubling.
    pub retry_initial: Option<Spanned<DurationText>>,
    /// Longest delay between attempts (default 1h).
    pub retry_max: Option<Spanned<DurationText>>,
    /// Attempts before a delivery is dead (default 16).
    pub attempts: Option<Spanned<i64>>,
}

/// `url` as written: a plain URL or a secret reference to one.
#[derive(Debug)]
pub enum RawUrl {
    /// `url = "https://…"`.
    Plain(String),
    /// `url = { credential = "…" }` and the like, or why it is not one.
    Secret(Result<SecretRefRaw, String>),
}

impl<'de> Deserialize<'de> for RawUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        Ok(match value {
            toml::Value::String(s) => RawUrl::Plain(s),
            other => RawUrl::Secret(
                SecretRefRaw::deserialize(other).map_err(|e| e.message().trim_end().to_string()),
            ),
        })
    }
}

/// Where a webhook's events go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookUrl {
    /// Written in the config (checked at load).
    Plain(reqwest::Url),
    /// Read from a secret when the webhook is used (checked then, with
    /// the same rule); never logged.
    Secret(SecretRef),
}

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// keyrot's own JSON (docs/notifications.md), signed.
    Keyrot,
    /// `{"text": …}`, what Slack's (and Mattermost's, Rocket.Chat's)
    /// incoming webhooks take.
    Slack,
}

impl WebhookFormat {
    /// The value as written.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Keyrot => "keyrot",
            WebhookFormat::Slack => "slack",
        }
    }
}

/// One validated `[[notify.webhook]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Name.
    pub name: String,
    /// Where events are POSTed.
    pub url: WebhookUrl,
    /// HMAC key of the signature header; required for `format = "keyrot"`.
    pub secret: Option<SecretRef>,
    /// Body format.
    pub format: WebhookFormat,
    /// Event filters (names or `PREFIX.*`); empty: every event.
    pub events: Vec<String>,
    /// Timeout of one request.
    pub timeout: SignedDuration,
    /// PEM file of CA certificates trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Delay after the first failed delivery; doubles after each failure.
    pub retry_initial: SignedDuration,
    /// Longest delay between attempts.
    pub retry_max: SignedDuration,
    /// Attempts before a delivery is dead.
    pub attempts: u32,
}

impl WebhookConfig {
    /// Whether this webhook takes events of `kind`.
    pub fn wants(&self, kind: MessageKind) -> bool {
        self.events.is_empty() || self.events.iter().any(|p| matches(p, kind.event()))
    }

    /// The delay after the `attempts`-th failed delivery:
    /// `retry_initial`, doubling, at most `retry_max`.
    pub fn backoff(&self, attempts: u32) -> SignedDuration {
        let factor = 1i32 << attempts.saturating_sub(1).min(20);
        self.retry_initial
            .checked_mul(factor)
            .unwrap_or(self.retry_max)
            .min(self.retry_max)
    }
}

/// Whether event `name` matches `pattern`: the name itself, `PREFIX.*`
/// (every event under `PREFIX.`) or `*`.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) if prefix.ends_with('.') => name.starts_with(prefix),
        _ => pattern == name,
    }
}

/// Checks a webhook URL: `https://`, or plain `http://` to a loopback host
/// only; no credentials in it. A query is allowed (Teams' workflow URLs
/// carry their signature there), and is one more reason to give the URL
/// as a secret reference. The message never repeats the URL (it may be a
/// secret).
pub fn check_url(text: &str) -> Result<reqwest::Url, String> {
    let url =
        reqwest::Url::parse(text.trim()).map_err(|e| format!("the URL does not parse: {e}"))?;
    let loopback = url.host_str().is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
    });
    if url.host().is_none() {
        return Err("the URL has no host".into());
    }
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "plain http would send events unencrypted: use https (http is allowed only to a loopback host)"
                    .into(),
            );
        }
        other => return Err(format!("scheme {other:?}: use an https:// URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not hold credentials (use `secret` to sign instead)".into());
    }
    if url.fragment().is_some() {
        return Err("the URL must not have a fragment".into());
    }
    Ok(url)
}

/// Every `[[notify.webhook]]`; `None` when any has an error (each is
/// reported).
pub(crate) fn webhooks(ctx: &mut Ctx<'_>, raw: &[RawWebhook]) -> Option<Vec<WebhookConfig>> {
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: Vec<String> = Vec::new();
    for w in raw {
        let name = w.name.get_ref().trim();
        if seen.iter().any(|s| s == name) {
            ctx.error(
                w.name.span(),
                format!("a webhook named {name:?} is already defined"),
            );
            ok = false;
            continue;
        }
        seen.push(name.to_string());
        match webhook(ctx, w) {
            Some(c) => out.push(c),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One `[[notify.webhook]]`.
fn webhook(ctx: &mut Ctx<'_>, raw: &RawWebhook) -> Option<WebhookConfig> {
    let name = webhook_name(ctx, &raw.name);
    let url = match raw.url.get_ref() {
        RawUrl::Plain(text) => match check_url(text) {
            Ok(u) => Some(WebhookUrl::Plain(u)),
            Err(e) => {
                ctx.error(raw.url.span(), format!("`url`: {e}"));
                None
            }
        },
        RawUrl::Secret(Ok(r)) => {
            secret_ref(ctx, &Spanned::new(raw.url.span(), r.clone())).map(WebhookUrl::Secret)
        }
        RawUrl::Secret(Err(msg)) => {
            ctx.error(
                raw.url.span(),
                format!("`url` must be a URL or a secret reference: {msg}"),
            );
            None
        }
    };
    let format = match &raw.format {
        None => Some(WebhookFormat::Keyrot),
        Some(f) => match f.get_ref().as_str() {
            "keyrot" => Some(WebhookFormat::Keyrot),
            "slack" => Some(WebhookFormat::Slack),
            other => {
                let hint = did_you_mean(other, FORMATS);
                ctx.error(
                    f.span(),
                    format!("unknown format {other:?}{hint}: use \"keyrot\" or \"slack\""),
                );
                None
            }
        },
    };
    let secret = match &raw.secret {
        None => Some(None),
        Some(s) => match &s.get_ref().0 {
            Ok(r) => secret_ref(ctx, &Spanned::new(s.span(), r.clone())).map(Some),
            Err(msg) => {
                ctx.error(s.span(), msg.clone());
                None
            }
        },
    };
    if format == Some(WebhookFormat::Keyrot) && matches!(secret, Some(None)) {
        ctx.error(
            raw.name.span(),
            "a webhook with format = \"keyrot\" needs `secret` (a secret reference such as \
             { credential = \"webhook-secret\" }): its receiver must be able to tell keyrot's \
             events from forged ones",
        );
        return None;
    }
    let events = events(ctx, raw.events.as_deref().unwrap_or_default());
    let duration = |ctx: &mut Ctx<'_>, d: &Option<Spanned<DurationText>>, field, default| match d {
        None => Some(default),
        Some(d) => ctx.positive(d, field),
    };
    let timeout = duration(ctx, &raw.timeout, "timeout", DEFAULT_WEBHOOK_TIMEOUT);
    let retry_initial = duration(
        ctx,
        &raw.retry_initial,
        "retry_initial",
        DEFAULT_RETRY_INITIAL,
    );
    let retry_max = duration(ctx, &raw.retry_max, "retry_max", DEFAULT_RETRY_MAX);
    if let (Some(i), Some(m), Some(at)) = (retry_initial, retry_max, &raw.retry_max)
        && m < i
    {
        ctx.error(
            at.span(),
            "`retry_max` must not be shorter than `retry_initial`",
        );
        return None;
    }
    let attempts = match &raw.attempts {
        None => Some(DEFAULT_ATTEMPTS),
        Some(a) => match u32::try_from(*a.get_ref()) {
            Ok(v) if (1..=1000).contains(&v) => Some(v),
            _ => {
                ctx.error(a.span(), "`attempts` must be within 1-1000");
                None
            }
        },
    };
    let ca_file = match &raw.ca_file {
        None => Some(None),
        Some(f) => ctx.path(f, "ca_file").map(Some),
    };
    Some(WebhookConfig {
        name: name?,
        url: url?,
        secret: secret?,
        format: format?,
        events: events?,
        timeout: timeout?,
        ca_file: ca_file?,
        retry_initial: retry_initial?,
        retry_max: retry_max?,
        attempts: attempts?,
    })
}

/// A webhook's name: what logs, `status` and outbox ids carry, so letters,
/// digits, `-` and `_` only.
fn webhook_name(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let v = raw.get_ref().trim();
    let fine = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !fine {
        ctx.error(
            raw.span(),
            format!(
                "webhook name {:?} must be 1-64 letters, digits, `-` or `_`",
                keyrot_core::escape::controls(v)
            ),
        );
        return None;
    }
    Some(v.to_string())
}

/// `events`: each an event name or `PREFIX.*` that matches at least one.
fn events(ctx: &mut Ctx<'_>, raw: &[Spanned<String>]) -> Option<Vec<String>> {
    let names: Vec<&str> = MessageKind::ALL.iter().map(|k| k.event()).collect();
    let mut ok = true;
    let mut out = Vec::new();
    for p in raw {
        let v = p.get_ref().trim();
        if names.iter().any(|n| matches(v, n)) {
            out.push(v.to_string());
        } else {
            let hint = did_you_mean(v, names.iter().copied());
            ctx.error(
                p.span(),
                format!(
                    "unknown event {v:?}{hint}: use one of {} or a prefix such as \"rotation.*\"",
                    names.join(", ")
                ),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

/// The secret references of the webhooks (signing keys and URLs).
pub(crate) fn secret_uses(hooks: &[WebhookConfig]) -> Vec<SecretUse<'_>> {
    let mut out = Vec::new();
    for w in hooks {
        let owner = format!("webhook {:?}", w.name);
        if let WebhookUrl::Secret(r) = &w.url {
            out.push(SecretUse {
                owner: owner.clone(),
                field: "url",
                secret: r,
            });
        }
        if let Some(r) = &w.secret {
            out.push(SecretUse {
                owner,
                field: "secret",
                secret: r,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_prefixes_only() {
        assert!(matches("rotation.failed", "rotation.failed"));
        assert!(matches("rotation.*", "rotation.failed"));
        assert!(matches("*", "digest"));
        assert!(!matches("rotation.*", "key.ended"));
        assert!(!matches("rot*", "rotation.failed"));
        assert!(!matches("rotation", "rotation.failed"));
    }

    #[test]
    fn urls_are_https_or_loopback_and_never_echoed() {
        assert!(check_url("https://hooks.example.com/x?sig=abc").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://[::1]:8080/hook").is_ok());
        let e = check_url("http://hooks.example.com/T0KEN").unwrap_err();
        assert!(e.contains("plain http"), "{e}");
        assert!(!e.contains("T0KEN"));
        assert!(check_url("https://u:p@hooks.example.com/").is_err());
        assert!(check_url("ftp://hooks.example.com/").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let w = WebhookConfig {
            name: "w".into(),
            url: WebhookUrl::Plain(check_url("https://h/").unwrap()),
            secret: None,
            format: WebhookFormat::Slack,
            events: vec![],
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
            ca_file: None,
            retry_initial: SignedDuration::from_secs(2),
            retry_max: SignedDuration::from_secs(10),
            attempts: 5,
        };
        let secs: Vec<i64> = (1..=5).map(|a| w.backoff(a).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 10, 10]);
        assert!(w.wants(MessageKind::Digest));
    }
}
