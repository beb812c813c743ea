//! Raw configuration input: serde structs that mirror the TOML exactly,
//! with `deny_unknown_fields` and a span on every value validation may
//! reject. Nothing here is trusted; `validate` turns it into `Config`.
//!
//! Providers and sinks are open-ended (one set of fields per `type`), so
//! their entries are split in two: a head with the fields every type has
//! (`name`, `type`, ...) and a body deserialized into the struct of the
//! entry's type, each with `deny_unknown_fields`. That keeps an unknown
//! field an error with a position, which `#[serde(flatten)]` would lose.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

/// Defines a string newtype whose serde error names what was expected.
macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $expecting:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(pub String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name(v.to_string()))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

text_type!(
    /// A duration as written, e.g. `"30d"` or `"1h30m"`.
    DurationText,
    "a duration string such as \"30d\" or \"1h30m\""
);

text_type!(
    /// A file mode as written: an octal string such as `"0600"`.
    ModeText,
    "an octal mode string such as \"0600\""
);

/// `[daemon]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Control socket path.
    pub control_socket: Option<Spanned<String>>,
    /// Control socket mode (octal string).
    pub control_socket_mode: Option<Spanned<ModeText>>,
    /// Peer uids allowed on the control socket without a token.
    pub control_allow_uids: Option<Vec<Spanned<i64>>>,
    /// Peer gids (primary or supplementary) allowed without a token.
    pub control_allow_gids: Option<Vec<Spanned<i64>>>,
    /// Most control connections open at once.
    pub control_max_connections: Option<Spanned<i64>>,
    /// Time for a control connection to send a request head.
    pub control_header_timeout: Option<Spanned<DurationText>>,
    /// Time for a control request's body after its head.
    pub control_body_timeout: Option<Spanned<DurationText>>,
    /// Time a control connection may stay open with no request in flight.
    pub control_idle_timeout: Option<Spanned<DurationText>>,
    /// SIGTERM grace period.
    pub shutdown_timeout: Option<Spanned<DurationText>>,
    /// Inventory sync cron (6 or 7 fields, UTC).
    pub sync_schedule: Option<Spanned<String>>,
    /// Prometheus endpoint address (`IP:port`); absent = no endpoint.
    pub metrics_listen: Option<Spanned<String>>,
    /// HTTP(S) proxy for every peer but loopback ones; absent = direct.
    pub proxy: Option<Spanned<String>>,
    /// `[daemon.retry]`.
    pub retry: Option<RawRetry>,
}

/// `[daemon.retry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Failed attempts before a rotation is Failed.
    pub attempts: Option<Spanned<i64>>,
    /// First backoff.
    pub initial: Option<Spanned<DurationText>>,
    /// Largest backoff.
    pub max: Option<Spanned<DurationText>>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// Database file.
    pub path: Option<Spanned<String>>,
    /// Master key file.
    pub master_key_file: Option<Spanned<String>>,
    /// Create the master key if missing.
    pub create_master_key: Option<bool>,
    /// How long finished history is kept (a duration, or `"forever"`).
    pub history_retention: Option<Spanned<DurationText>>,
    /// How long audit entries are kept (a duration, or `"forever"`;
    /// default: as `history_retention`).
    pub audit_retention: Option<Spanned<DurationText>>,
    /// `"redb"` (default) or `"postgres"`.
    pub backend: Option<Spanned<String>>,
    /// PostgreSQL connection URL (a secret reference: it may hold a password).
    pub url: Option<Spanned<SecretRefRaw>>,
    /// CA certificates (PEM) for the PostgreSQL server's certificate.
    pub ca_file: Option<Spanned<String>>,
    /// PostgreSQL connections kept.
    pub pool_size: Option<Spanned<i64>>,
    /// How long a leader lease lasts on a shared store.
    pub lease: Option<Spanned<DurationText>>,
}

/// The fields every `[[provider]]` has, whatever its type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderHead {
    /// Unique name.
    pub name: Spanned<String>,
    /// Provider type.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Concurrent rotations.
    pub max_concurrent: Option<Spanned<i64>>,
    /// Requests per second to the provider's API (unset: unlimited).
    pub requests_per_second: Option<Spanned<f64>>,
    /// Where a person creates a key by hand (named in assisted requests).
    pub console_url: Option<Spanned<String>>,
    /// Revoke orphans (keys with keyrot's tag that no known rotation owns)
    /// at each inventory sync.
    pub revoke_orphans: Option<bool>,
}

/// Field names of [`RawProviderHead`], split off before the body.
pub const PROVIDER_HEAD_FIELDS: &[&str] = &[
    "name",
    "type",
    "max_concurrent",
    "requests_per_second",
    "console_url",
    "revoke_orphans",
];

/// `type = "local"` fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocalProvider {
    /// Lifetime of a new key when the policy sets none.
    pub default_lifetime: Option<Spanned<DurationText>>,
    /// Secret length in bytes.
    pub secret_bytes: Option<Spanned<i64>>,
}

/// `type = "atlassian"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAtlassianProvider {
    /// Organisation id.
    pub org_id: Spanned<String>,
    /// Admin API base URL.
    pub base_url: Option<Spanned<String>>,
    /// The org admin API key (a secret reference).
    pub admin_key: Spanned<SecretRefRaw>,
    /// `none` or `proposed`.
    pub rotate_api: Option<Spanned<String>>,
    /// PSK id, sent as `?pskId=` (with `rotate_api = "proposed"` only).
    pub psk_id: Option<Spanned<String>>,
    /// The PSK, a secret reference to 64 hex characters (ditto).
    pub psk: Option<Spanned<SecretRefRaw>>,
    /// More PSKs a response may name.
    pub psks: Option<Vec<RawNamedPsk>>,
    /// Send `?pskId=` on the rotate call.
    pub send_psk_id: Option<bool>,
    /// Keys per list page.
    pub page_size: Option<Spanned<i64>>,
    /// HTTP request timeout.
    pub timeout: Option<Spanned<DurationText>>,
    /// How stale `lastActiveAt` may be (the API updates it lazily).
    pub last_active_precision: Option<Spanned<DurationText>>,
}

/// One entry of an Atlassian provider's `psks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamedPsk {
    /// The id a response names in `encryption.pskId`.
    pub id: Spanned<String>,
    /// The key, a secret reference to 64 hex characters.
    pub key: Spanned<SecretRefRaw>,
}

/// The fields every `[[sink]]` has, whatever its type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSinkHead {
    /// Unique name.
    pub name: Spanned<String>,
    /// Sink type.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Hooks run once a rotation's secret is in this sink (and every other).
    pub hooks: Option<Vec<Spanned<String>>>,
}

/// Field names of [`RawSinkHead`], split off before the body.
pub const SINK_HEAD_FIELDS: &[&str] = &["name", "type", "hooks"];

/// `type = "file"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSink {
    /// Target path, with placeholders.
    pub path: Spanned<String>,
    /// `raw`, `json` or `env`.
    pub format: Option<Spanned<String>>,
    /// Variable name for `env`.
    pub env_name: Option<Spanned<String>>,
    /// File mode (octal string).
    pub mode: Option<Spanned<ModeText>>,
    /// Owner user.
    pub owner: Option<Spanned<String>>,
    /// Owner group.
    pub group: Option<Spanned<String>>,
}

/// `[[policy]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Unique name.
    pub name: Spanned<String>,
    /// Lead time before expiry.
    pub rotate_before_expiry: Option<Spanned<DurationText>>,
    /// Maximum key age.
    pub max_age: Option<Spanned<DurationText>>,
    /// Lifetime of a new key.
    pub new_key_lifetime: Option<Spanned<DurationText>>,
    /// Old and new key both valid this long.
    pub overlap: Option<Spanned<DurationText>>,
    /// Spread starts inside a window.
    pub jitter: Option<bool>,
    /// Start rotations automatically.
    pub auto_rotate: Option<bool>,
    /// Expiry-notice ladder.
    pub notify_before_expiry: Option<Vec<Spanned<DurationText>>>,
    /// Gap between starts of one group.
    pub stagger: Option<Spanned<DurationText>>,
    /// Addresses told about every rotation.
    pub notify: Option<Vec<Spanned<String>>>,
    /// Security contacts.
    pub security_contacts: Option<Vec<Spanned<String>>>,
    /// Scopes a key must end up with.
    pub scopes: Option<Vec<Spanned<String>>>,
    /// Refuse unscoped keys.
    pub require_scopes: Option<bool>,
    /// The reason scheduled rotations give the provider.
    pub reason: Option<Spanned<String>>,
    /// What an enrolled key whose scopes differ from `scopes` gets.
    pub scope_mismatch: Option<Spanned<String>>,
    /// `[[policy.window]]`.
    pub window: Option<Vec<RawWindow>>,
    /// `overlap` (default) or `unused`.
    pub revoke_when: Option<Spanned<String>>,
    /// With `unused`: how long the old key must have gone unused.
    pub quiet_period: Option<Spanned<DurationText>>,
    /// With `unused`: how long after the overlap's end to wait for quiet.
    pub revoke_deadline: Option<Spanned<DurationText>>,
    /// With `unused`: `hold` (default) or `revoke` at the deadline.
    pub at_deadline: Option<Spanned<String>>,
    /// Keep the current secret sealed between rotations (`keyrot sink push`).
    pub keep_current_secret: Option<bool>,
}

/// `[[policy.window]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// 5-field cron start.
    pub cron: Spanned<String>,
    /// How long the window stays open.
    pub duration: Spanned<DurationText>,
    /// IANA zone (default UTC).
    pub timezone: Option<Spanned<String>>,
}

/// `[[key]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// One key by name ...
    pub name: Option<Spanned<String>>,
    /// ... optionally with the provider's current id.
    pub id: Option<Spanned<String>>,
    /// ... or every key matching a selector.
    pub select: Option<Spanned<RawSelect>>,
    /// Provider name.
    pub provider: Spanned<String>,
    /// Policy name.
    pub policy: Spanned<String>,
    /// Sink names.
    pub sinks: Option<Vec<Spanned<String>>>,
    /// Hooks run once the new secret is in every sink.
    pub hooks: Option<Vec<Spanned<String>>>,
    /// Scopes of a newly issued key.
    pub scopes: Option<Vec<Spanned<String>>>,
    /// The key's own contacts.
    pub contacts: Option<Vec<Spanned<String>>>,
    /// Stagger group.
    pub group: Option<Spanned<String>>,
}

/// `select = { ... }` of a `[[key]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelect {
    /// Glob over key names.
    pub name: Option<Spanned<String>>,
    /// Glob one scope must match.
    pub scope: Option<Spanned<String>>,
    /// `k=v` tag.
    pub tag: Option<Spanned<String>>,
}

/// The message for a plain string where a secret reference belongs.
pub const INLINE_SECRET_MESSAGE: &str = "inline secrets are not allowed: use { credential = \"NAME\" } \
     (systemd LoadCredential), { file = \"/path\" } or { env = \"VAR\" }";

/// A secret reference as written: exactly one of the three keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRefRaw {
    /// `{ credential = "name" }`.
    Credential(String),
    /// `{ file = "/path" }` (relative to the config file's directory).
    File(String),
    /// `{ env = "VAR" }`.
    Env(String),
}

impl<'de> Deserialize<'de> for SecretRefRaw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RefVisitor)
    }
}

/// Accepts a one-key table; every other shape gets a message that never
/// repeats the value (it may be a secret pasted in by mistake).
struct RefVisitor;

impl RefVisitor {
    /// The error for anything that is not a table.
    fn not_a_table<E: de::Error>(&self) -> E {
        E::custom(
            "a secret must be a table: { credential = \"NAME\" }, { file = \"/path\" } or { env = \"VAR\" }",
        )
    }
}

impl<'de> Visitor<'de> for RefVisitor {
    type Value = SecretRefRaw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{ credential = \"NAME\" }, { file = \"/path\" } or { env = \"VAR\" }")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRefRaw, E> {
        Err(E::custom(INLINE_SECRET_MESSAGE))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRefRaw, E> {
        Err(E::custom(INLINE_SECRET_MESSAGE))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRefRaw, E> {
        Err(E::custom(INLINE_SECRET_MESSAGE))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRefRaw, E> {
        Err(E::custom(INLINE_SECRET_MESSAGE))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRefRaw, E> {
        Err(self.not_a_table())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretRefRaw, A::Error> {
        Err(self.not_a_table())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRefRaw, A::Error> {
        let mut found: Option<SecretRefRaw> = None;
        while let Some(key) = map.next_key::<String>()? {
            let make: fn(String) -> SecretRefRaw = match key.as_str() {
                "credential" => SecretRefRaw::Credential,
                "file" => SecretRefRaw::File,
                "env" => SecretRefRaw::Env,
                _ => {
                    return Err(de::Error::custom(format!(
                        "unknown secret source `{key}`: use exactly one of `credential`, `file` or `env`"
                    )));
                }
            };
            let value: String = map.next_value()?;
            if found.is_some() {
                return Err(de::Error::custom(
                    "a secret reference takes exactly one of `credential`, `file` or `env`",
                ));
            }
            found = Some(make(value));
        }
        found.ok_or_else(|| {
            de::Error::custom("a secret reference needs one of `credential`, `file` or `env`")
        })
    }
}

/// `password` as written: a secret reference, or why it is not one. Read
/// leniently, so that a bad value is reported once, at the field, with no
/// cascaded "`username` needs `password`". No message repeats the value.
#[derive(Debug)]
pub struct RawPassword(pub(crate) Result<SecretRefRaw, String>);

impl<'de> Deserialize<'de> for RawPassword {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        Ok(RawPassword(
            SecretRefRaw::deserialize(value).map_err(|e| e.message().trim_end().to_string()),
        ))
    }
}
