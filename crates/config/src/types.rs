//! The validated configuration the rest of keyrot trusts: `Config`, its
//! sections, providers and keys. The `[[sink]]` kinds are in `sinks`,
//! `[notify]` in `notify` and `SecretRef` in `secret_ref`.

use std::path::PathBuf;

use jiff::SignedDuration;

use keyrot_core::policy::{Policy, Schedule};

use crate::access::{ApiTokenConfig, PskConfig};
use crate::approle::OpenBaoAppRoleProviderConfig;
use crate::aws_iam::AwsIamProviderConfig;
use crate::diag::Diagnostic;
use crate::exec_provider::ExecProviderConfig;
use crate::http_provider::HttpProviderConfig;
use crate::notify::NotifyConfig;
use crate::secret_ref::SecretRef;
use crate::sinks::SinkConfig;

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The main file, then drop-ins in the order they were merged.
    pub files: Vec<PathBuf>,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[[provider]]`, in file order.
    pub providers: Vec<ProviderConfig>,
    /// `[[sink]]`, in file order.
    pub sinks: Vec<SinkConfig>,
    /// `[[policy]]`, in file order.
    pub policies: Vec<Policy>,
    /// `[[key]]`, in file order.
    pub keys: Vec<KeySpec>,
    /// `[notify]`.
    pub notify: NotifyConfig,
    /// `[[psk]]`: keys new secrets are sealed under for API callers.
    pub psks: Vec<PskConfig>,
    /// `[[hook]]` entries.
    pub hooks: Vec<crate::hooks::HookConfig>,
    /// `[[api_token]]`: bearer tokens of the control API.
    pub api_tokens: Vec<ApiTokenConfig>,
    /// Where each secret reference is written (file, line, column; empty
    /// message), in the order read: problems found when one is resolved
    /// later point there.
    pub secret_sites: Vec<(SecretRef, Diagnostic)>,
}

/// `[daemon]`.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Control socket path (default `/run/keyrot/control.sock`).
    pub control_socket: PathBuf,
    /// Control socket mode (default 0o660).
    pub control_socket_mode: u32,
    /// Peer uids the control API serves without a token (default None:
    /// root and keyrot's own uid).
    pub control_allow_uids: Option<Vec<u32>>,
    /// Peer gids, primary or supplementary, the control API serves without
    /// a token (default None: keyrot's own gid when `control_socket_mode`
    /// lets the group write, else none).
    pub control_allow_gids: Option<Vec<u32>>,
    /// Most control connections open at once (default 128); past it the
    /// longest-idle one is closed, or the new one when none is idle.
    pub control_max_connections: usize,
    /// Time a control connection has to send a complete request head,
    /// from connecting or from its previous answer (default 10s).
    pub control_header_timeout: SignedDuration,
    /// Time a request's body has to arrive after its head (default 30s).
    pub control_body_timeout: SignedDuration,
    /// Time a control connection may stay open with no request in flight,
    /// whatever it does meanwhile (default 60s).
    pub control_idle_timeout: SignedDuration,
    /// How long SIGTERM waits for in-flight steps (default 30s).
    pub shutdown_timeout: SignedDuration,
    /// Inventory sync cron, 6 or 7 fields with seconds, UTC (default `0 */15 * * * *`).
    pub sync_schedule: Schedule,
    /// Where the Prometheus `/metrics` endpoint listens (default: none).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The proxy HTTP peers are reached through (`https://`, or `http://`
    /// to a loopback host); loopback peers never use it. `None`: direct,
    /// whatever `HTTP_PROXY` and its kin say (default).
    pub proxy: Option<reqwest::Url>,
    /// Retry budget for a rotation step.
    pub retry: RetryConfig,
}

/// Retry budget: exponential backoff with jitter.
#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Failed attempts of one step before the rotation is Failed (default 5).
    pub attempts: u32,
    /// First backoff (default 10s).
    pub initial: SignedDuration,
    /// Largest backoff (default 15m).
    pub max: SignedDuration,
}

/// `[store]`.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Database file (default `/var/lib/keyrot/state.redb`).
    pub path: PathBuf,
    /// Where the master key comes from: `$CREDENTIALS_DIRECTORY/master-key`
    /// when that exists, else `master_key_file`
    /// (default `/var/lib/keyrot/master.key`).
    pub master_key_file: PathBuf,
    /// Create the master key file if missing (demo use; default false).
    pub create_master_key: bool,
    /// How long finished rotations, revoked local keys and sent or dead
    /// messages are kept before the daily prune deletes them (default
    /// 400 days; `None`: `"forever"`, never pruned).
    pub history_retention: Option<SignedDuration>,
    /// How long audit entries are kept before the daily prune deletes
    /// them from the start of the chain (default: `history_retention`;
    /// `None`: `"forever"`).
    pub audit_retention: Option<SignedDuration>,
    /// The PostgreSQL backend (`backend = "postgres"`), else `None`: the
    /// redb file at `path`.
    pub postgres: Option<PostgresConfig>,
}

/// `[store] backend = "postgres"`.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// The connection URL (`url`), a secret reference: it may carry a
    /// password.
    pub url: SecretRef,
    /// CA certificates (PEM) to verify the server with (`ca_file`;
    /// default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Connections kept (`pool_size`, 1 to 64; default 4).
    pub pool_size: usize,
    /// How long the leader lease lasts once granted or renewed (`lease`,
    /// 3 s to 5 min; default 15 s): a standby takes over within it after
    /// the leader dies. The leader renews every fifth of it and trusts it
    /// for two thirds of it.
    pub lease: SignedDuration,
}

/// `[[provider]]`.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Unique name, used by keys and in slot ids.
    pub name: String,
    /// Rotations of this provider's keys running at once (default 4).
    pub max_concurrent: usize,
    /// Requests per second to the provider's API, shared by all its
    /// rotations and syncs (`None`: unlimited).
    pub requests_per_second: Option<f64>,
    /// `console_url`: where a person creates a key by hand, if set.
    pub console_url: Option<String>,
    /// Type-specific settings.
    pub kind: ProviderKind,
    /// `revoke_orphans`: each inventory sync revokes the orphans it finds
    /// (keys carrying keyrot's tag that belong to no known rotation);
    /// false (the default): they are listed and alerted, and revoked only
    /// by `keyrot orphans --revoke`.
    pub revoke_orphans: bool,
}

impl ProviderConfig {
    /// The organisation (or account) whose keys this provider manages,
    /// when its type names one: an Atlassian `org_id`.
    pub fn org(&self) -> Option<&str> {
        match &self.kind {
            ProviderKind::Atlassian(a) => Some(a.org_id.as_str()),
            _ => None,
        }
    }

    /// Where a person creates a key by hand: `console_url`, else the
    /// Atlassian admin console's API keys page of the org.
    pub fn console(&self) -> Option<String> {
        self.console_url.clone().or_else(|| match &self.kind {
            ProviderKind::Atlassian(a) => Some(format!(
                "https://admin.atlassian.com/o/{}/api-keys",
                a.org_id
            )),
            _ => None,
        })
    }
}

/// Provider types.
#[derive(Clone, Debug)]
pub enum ProviderKind {
    /// `type = "local"`: keys minted by keyrot itself.
    Local(LocalProviderConfig),
    /// `type = "atlassian"`: an Atlassian organisation's admin API keys.
    Atlassian(AtlassianProviderConfig),
    /// `type = "openbao-approle"`: AppRole secret-ids.
    OpenBaoAppRole(OpenBaoAppRoleProviderConfig),
    /// `type = "aws-iam"`: IAM users' access keys.
    AwsIam(AwsIamProviderConfig),
    /// `type = "http"`: any HTTP API, driven by config.
    Http(HttpProviderConfig),
    /// `type = "exec"`: a program speaking keyrot's JSON protocol.
    Exec(ExecProviderConfig),
}

/// `type = "atlassian"` settings: the Admin API's org API-key endpoints.
#[derive(Clone, Debug)]
pub struct AtlassianProviderConfig {
    /// Organisation id (`{orgId}` in the API paths).
    pub org_id: String,
    /// Admin API base URL, no trailing `/` (default
    /// `https://api.atlassian.com/admin/api-access/v1`).
    pub base_url: String,
    /// The org admin API key, sent as `Authorization: Bearer`.
    pub admin_key: SecretRef,
    /// How new keys are made: not at all, or through the proposed rotate call.
    pub rotate_api: AtlassianRotateApi,
    /// Keys per list page (default 50, 1..=100).
    pub page_size: u32,
    /// Timeout of each HTTP request (default 30s).
    pub timeout: SignedDuration,
    /// How stale a key's `lastActiveAt` may be: a use this recent may not
    /// show yet (default 1h; see `quiet::ATLASSIAN_LAST_ACTIVE_PRECISION`).
    pub last_active_precision: SignedDuration,
}

/// `rotate_api` of an Atlassian provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtlassianRotateApi {
    /// `"none"` (default): Atlassian cannot create org keys through its API;
    /// rotations are assisted (a person creates the key, `keyrot enroll`).
    None,
    /// `"proposed"`: the customer's proposed rotate endpoint, its new secret
    /// sealed under a pre-shared key.
    Proposed {
        /// The pre-shared keys by id, `psk_id`/`psk` first, then `psks`: a
        /// response is opened with the one its `encryption.pskId` names.
        psks: Vec<(String, SecretRef)>,
        /// Send `?pskId=` with the first id (for servers that need a
        /// selector; the seed's API names the PSK in its response only).
        send_psk_id: bool,
    },
}

/// `type = "local"` settings.
#[derive(Clone, Debug)]
pub struct LocalProviderConfig {
    /// Lifetime of a new key when the policy sets none (default 90d).
    pub default_lifetime: SignedDuration,
    /// Secret length in bytes (default 32, i.e. 256 bits).
    pub secret_bytes: usize,
}

/// Which provider keys a `[[key]]` stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMatch {
    /// One key by name (and optionally the provider's current id to adopt).
    Named {
        /// Key name at the provider.
        name: String,
        /// Provider key id to adopt as current, if given.
        id: Option<String>,
    },
    /// Every provider key matching all given criteria.
    Select {
        /// Glob over key names (`*`, `?`).
        name: Option<String>,
        /// Glob that at least one scope must match.
        scope: Option<String>,
        /// `k=v` tag the key must carry.
        tag: Option<(String, String)>,
    },
}

/// `[[key]]`.
#[derive(Clone, Debug)]
pub struct KeySpec {
    /// Which keys.
    pub matches: KeyMatch,
    /// Provider name (checked to exist).
    pub provider: String,
    /// Policy name (checked to exist).
    pub policy: String,
    /// Sink names (checked to exist).
    pub sinks: Vec<String>,
    /// Scopes a new key gets when issued for an empty slot (otherwise the
    /// old key's scopes are kept, or the policy's `scopes` when it sets them).
    pub scopes: Vec<String>,
    /// The key's own contacts (email addresses).
    pub contacts: Vec<String>,
    /// Stagger group, if any.
    pub group: Option<String>,
    /// Hooks (config names) run once a new secret is in every sink.
    pub hooks: Vec<String>,
}

impl Config {
    /// Looks a provider up by name.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }
    /// Looks a sink up by name.
    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.iter().find(|s| s.name == name)
    }
    /// Looks a policy up by name.
    pub fn hook(&self, name: &str) -> Option<&crate::hooks::HookConfig> {
        self.hooks.iter().find(|h| h.name == name)
    }

    /// The hooks a rotation of a key with these hooks and sinks runs: the
    /// key's own, then each sink's, each once, in that order.
    pub fn hooks_for(&self, key_hooks: &[String], sinks: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let sink_hooks = sinks
            .iter()
            .filter_map(|s| self.sink(s))
            .flat_map(|s| s.hooks.iter());
        for h in key_hooks.iter().chain(sink_hooks) {
            if !out.contains(h) {
                out.push(h.clone());
            }
        }
        out
    }

    /// Looks a policy up by name.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}
