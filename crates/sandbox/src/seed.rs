//! `--seed`: when the state is empty, creates the organisation `demo-org`
//! with keys like an admin console's list (a CI bot near expiry, a read-only
//! key never used, an unscoped legacy key, a reporting key about to expire,
//! and a scoped key for keyrot itself) plus two users' API tokens. The keys'
//! secrets go only to the `--seed-secrets` file (mode 0600), never to
//! stdout, stderr or the log.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use zeroize::Zeroizing;

use super::error::SandboxError;
use super::state::{ApiKey, State, UserToken, after, mint_secret, new_id};

/// The seeded organisation's id.
pub const DEMO_ORG: &str = "demo-org";

/// One seeded key: name, scopes, creator, age and remaining life in days,
/// hours since last use.
struct Spec {
    /// Key name.
    name: &'static str,
    /// Scopes (empty: unscoped).
    scopes: &'static [&'static str],
    /// Creator's email.
    created_by: &'static str,
    /// Days since creation.
    age_days: i64,
    /// Days until expiry.
    life_days: i64,
    /// Hours since last use; `None`: never used.
    used_hours_ago: Option<i64>,
}

/// The demo keys, in list order.
const SPECS: &[Spec] = &[
    Spec {
        name: "ci-bot",
        scopes: &["read:jira-work", "write:jira-work"],
        created_by: "admin@example.com",
        age_days: 345,
        life_days: 20,
        used_hours_ago: Some(2),
    },
    Spec {
        name: "read only demo",
        scopes: &[
            "read:jira-work",
            "read:jira-user",
            "read:confluence-content.summary",
        ],
        created_by: "admin@example.com",
        age_days: 3,
        life_days: 27,
        used_hours_ago: None,
    },
    Spec {
        name: "legacy-admin",
        scopes: &[],
        created_by: "it-ops@example.com",
        age_days: 65,
        life_days: 300,
        used_hours_ago: Some(24),
    },
    Spec {
        name: "reporting",
        scopes: &["read:jira-work"],
        created_by: "reports@example.com",
        age_days: 360,
        life_days: 5,
        used_hours_ago: Some(6),
    },
    Spec {
        name: "keyrot",
        scopes: &[
            "read:api-keys:admin",
            "write:api-keys:admin",
            "delete:api-keys:admin",
        ],
        created_by: "admin@example.com",
        age_days: 10,
        life_days: 355,
        used_hours_ago: None,
    },
];

/// `now` moved by `days` (negative: earlier).
fn days(now: Timestamp, days: i64) -> Timestamp {
    after(now, SignedDuration::from_hours(24 * days))
}

/// Seeds `demo-org` if `state` holds no organisation. Writes the secrets
/// file first, so a failure leaves the state empty and seeding can be
/// retried. Returns whether it seeded.
pub fn seed_if_empty(
    state: &mut State,
    secrets_file: Option<&Path>,
    now: Timestamp,
) -> Result<bool, SandboxError> {
    if !state.orgs.is_empty() {
        return Ok(false);
    }
    let mut keys = Vec::with_capacity(SPECS.len());
    let mut secrets = Vec::with_capacity(SPECS.len());
    for spec in SPECS {
        let (secret, secret_sha256) = mint_secret();
        let key = ApiKey {
            id: new_id(),
            name: spec.name.to_string(),
            scopes: spec.scopes.iter().map(|s| s.to_string()).collect(),
            created_by: spec.created_by.to_string(),
            created_at: days(now, -spec.age_days),
            expires_at: days(now, spec.life_days),
            last_active_at: spec
                .used_hours_ago
                .map(|h| after(now, SignedDuration::from_hours(-h))),
            revoked_at: None,
            secret_sha256,
            rotated_from: None,
        };
        secrets.push((key.id.clone(), key.name.clone(), secret));
        keys.push(key);
    }
    match secrets_file {
        Some(path) => write_secrets(path, &secrets)?,
        None => tracing::warn!(
            "--seed without --seed-secrets: the demo keys' secrets are discarded; create a usable key with POST /_sandbox/keys"
        ),
    }
    for key in keys {
        state.insert_key(DEMO_ORG, key, now);
    }
    if let Some(org) = state.orgs.get_mut(DEMO_ORG) {
        org.api_tokens = demo_tokens(now);
    }
    Ok(true)
}

/// Two users' API tokens for the token list.
fn demo_tokens(now: Timestamp) -> Vec<UserToken> {
    vec![
        UserToken {
            id: new_id(),
            label: "laptop cli".into(),
            account_id: "5b10ac8d82e05b22cc7d4ef5".into(),
            email: "alice@example.com".into(),
            created_at: days(now, -200),
            expires_at: days(now, 165),
            last_active_at: Some(days(now, -1)),
        },
        UserToken {
            id: new_id(),
            label: "jira-sync".into(),
            account_id: "5b10a2844c20165700ede21g".into(),
            email: "bob@example.com".into(),
            created_at: days(now, -30),
            expires_at: days(now, 335),
            last_active_at: None,
        },
    ]
}

/// One line of the secrets file (borrowed, so the secret is not copied).
#[derive(Serialize)]
struct SecretLine<'a> {
    /// Key id.
    id: &'a str,
    /// Key name.
    name: &'a str,
    /// Plaintext secret.
    secret: &'a str,
}

/// The secrets file: `{"orgId": .., "keys": [{id, name, secret}, ..]}`.
#[derive(Serialize)]
struct SecretsFile<'a> {
    /// Always [`DEMO_ORG`].
    #[serde(rename = "orgId")]
    org_id: &'a str,
    /// One entry per seeded key.
    keys: Vec<SecretLine<'a>>,
}

/// Writes the secrets to `path` with mode 0600 (also tightening an
/// existing file before anything is written to it).
fn write_secrets(
    path: &Path,
    secrets: &[(String, String, Zeroizing<String>)],
) -> Result<(), SandboxError> {
    let err = |source| SandboxError::SeedSecrets {
        path: path.to_path_buf(),
        source,
    };
    let doc = SecretsFile {
        org_id: DEMO_ORG,
        keys: secrets
            .iter()
            .map(|(id, name, secret)| SecretLine {
                id,
                name,
                secret: secret.as_str(),
            })
            .collect(),
    };
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    serde_json::to_writer_pretty(&mut *bytes, &doc).map_err(|e| err(e.into()))?;
    bytes.push(b'\n');
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    file.set_len(0).map_err(err)?;
    file.write_all(&bytes).map_err(err)?;
    file.sync_all().map_err(err)
}
