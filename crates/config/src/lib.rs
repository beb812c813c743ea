//! Configuration: the TOML schema, its validation with `file:line:column`
//! errors, and secret references.
//!
//! Raw input (serde structs with spans, `deny_unknown_fields`) lives in
//! `raw.rs`; `types.rs` holds the validated types the rest of keyrot
//! trusts (with the `[[sink]]` kinds in `sinks`, `[notify]` in `notify` and
//! `SecretRef` in `secret_ref`). Nothing past `config/` sees a raw string
//! where a type belongs. This file only declares the modules and re-exports
//! the public items.
//!
//! Submodules: `load` (files, drop-ins, entry points), `merge` (spanned
//! TOML trees, drop-in merge), `validate`/`typed`/`policies`/`keys` (raw →
//! validated, collecting every problem), `diag` (`file:line:column`
//! diagnostics), `secret` (secret references), `summary` (`keyrot check`
//! output), `defaults` (documented defaults), `access` (`[[psk]]` and
//! `[[api_token]]` of the rotate API), `perms` (who may change the config
//! files and read the secret files: refused like sshd's `StrictModes`).

pub mod access;
mod approle;
mod atlassian;
mod aws_iam;
mod ctx;
mod defaults;
pub mod diag;
mod exec_provider;
pub mod hooks;
pub mod http_provider;
mod keys;
mod load;
mod merge;
mod notify;
mod perms;
mod policies;
mod quiet;
pub mod raw;
pub mod secret;
mod secret_ref;
mod sinks;
mod summary;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;
mod typed;
mod types;
mod validate;
pub mod webhook;

pub use access::{ApiScope, ApiTokenConfig, PskConfig, PskGrant};
pub use approle::OpenBaoAppRoleProviderConfig;
pub use aws_iam::AwsIamProviderConfig;
pub use defaults::{DEFAULT_MAX_CONCURRENT, DEFAULT_OVERLAP};
pub use diag::{ConfigErrors, Diagnostic};
pub use exec_provider::ExecProviderConfig;
pub use http_provider::HttpProviderConfig;
pub use load::{DEFAULT_PATH, drop_ins, load, load_str, socket_hint};
pub use notify::{
    NotifyConfig, NotifyTransport, SendmailConfig, SmtpAuth, SmtpConfig, SmtpSecurity,
};
pub use perms::load_checked;
pub use quiet::{ATLASSIAN_LAST_ACTIVE_PRECISION, AWS_IAM_LAST_USED_PRECISION, last_use_precision};
pub use secret::SecretUse;
pub use secret::{SecretRefError, credentials_dir_from_env};
pub use secret_ref::SecretRef;
pub use sinks::{
    AZURE_API_VERSION, AwsCredentialsConfig, AwsSecretsManagerSinkConfig, AzureKeyVaultSinkConfig,
    ExecSinkConfig, FileFormat, FileSinkConfig, OpenBaoSinkConfig, SecretFormat, SinkConfig,
    SinkKind, VaultAuth, azure_name_ok,
};
pub use summary::{check_secrets, check_secrets_in, secret_refs, summary};
pub use typed::{PROVIDER_TYPES, SINK_TYPES};
pub use types::{
    AtlassianProviderConfig, AtlassianRotateApi, Config, DaemonConfig, KeyMatch, KeySpec,
    LocalProviderConfig, PostgresConfig, ProviderConfig, ProviderKind, RetryConfig, StoreConfig,
};
pub use webhook::{WebhookConfig, WebhookFormat, WebhookUrl};
