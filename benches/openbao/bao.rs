//! OpenBao as the bench drives it: root calls for setup, the file audit
//! device switched on and off around a measured stretch, and the audit log
//! read back as the requests OpenBao received.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::stream::{self, StreamExt, TryStreamExt};
use jiff::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

/// The AppRole mount of the roles keyrot rotates.
pub const KEYROT_MOUNT: &str = "approle";
/// The AppRole mount of the roles the raw client and the CLI loop rotate.
pub const OTHER_MOUNT: &str = "bench";
/// Calls in flight while setting OpenBao up.
const SETUP_CONCURRENCY: usize = 32;

/// What keyrot's token may do: the provider's documented policy and the
/// KV sink's, on both mounts (the raw client uses the same token).
const POLICY: &str = r#"
path "auth/approle/role"                               { capabilities = ["list"] }
path "auth/+/role/+/secret-id"                         { capabilities = ["list", "update"] }
path "auth/+/role/+/secret-id-accessor/lookup"         { capabilities = ["update"] }
path "auth/+/role/+/secret-id-accessor/destroy"        { capabilities = ["update"] }
path "auth/+/role/+/secret-id/lookup"                  { capabilities = ["update"] }
path "auth/+/role/+/role-id"                           { capabilities = ["read"] }
path "auth/token/revoke"                               { capabilities = ["update"] }
path "secret/data/*"                                   { capabilities = ["create", "read", "update"] }
path "secret/metadata/*"                               { capabilities = ["read", "update", "patch"] }
"#;

/// An OpenBao client (keep-alive pool).
#[derive(Clone)]
pub struct Bao {
    /// HTTP client.
    pub http: reqwest::Client,
    /// Server URL.
    pub addr: String,
}

impl Bao {
    pub fn new(addr: &str) -> Result<Bao> {
        keyrot_core::crypto::tls::provider();
        Ok(Bao {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            addr: addr.to_string(),
        })
    }

    /// One call with `token`: (status, JSON body or Null).
    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let method = Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| path.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A root call that must succeed.
    pub async fn root(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, v) = self.call("root", method, path, body.as_ref()).await?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: OpenBao answered {status}: {v}");
        }
        Ok(v)
    }

    /// Starts writing every request to `file` (a file audit device; the
    /// server must allow API-created audit devices).
    pub async fn audit_on(&self, file: &Path) -> Result<()> {
        let _ = fs::remove_file(file);
        let body = json!({"type": "file", "options": {"file_path": file.display().to_string()}});
        self.root("PUT", "sys/audit/bench", Some(body))
            .await
            .map(drop)
    }

    /// Stops the audit device.
    pub async fn audit_off(&self) -> Result<()> {
        self.root("DELETE", "sys/audit/bench", None).await.map(drop)
    }
}

/// One request OpenBao's audit log recorded.
pub struct Audited {
    /// When OpenBao received it.
    pub at: Timestamp,
    /// `op path`, with mount, role and secret names as placeholders.
    pub kind: String,
    /// Its path as sent.
    pub path: String,
}

/// The requests in an audit log, without the audit device's own.
pub fn read_audit(file: &Path) -> Result<Vec<Audited>> {
    let text = fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)?;
        if v["type"] != "request" {
            continue;
        }
        let path = v["request"]["path"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if path.starts_with("sys/audit") {
            continue;
        }
        let op = v["request"]["operation"].as_str().unwrap_or_default();
        let at: Timestamp = v["time"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .context("audit time")?;
        out.push(Audited {
            at,
            kind: kind(op, &path),
            path,
        });
    }
    Ok(out)
}

/// `op path` with the mount, role and secret names as placeholders, so
/// keyrot's requests and the raw client's compare.
fn kind(op: &str, path: &str) -> String {
    // KV v2 calls a write create or update by existence: one kind.
    let op = if op == "create" { "update" } else { op };
    let segs: Vec<&str> = path.split('/').collect();
    let norm = match segs.as_slice() {
        ["auth", "token", rest @ ..] => format!("auth/token/{}", rest.join("/")),
        ["auth", _mount, "role", _role, rest @ ..] => {
            format!("auth/MOUNT/role/ROLE/{}", rest.join("/"))
        }
        ["auth", _mount, rest @ ..] => format!("auth/MOUNT/{}", rest.join("/")),
        ["secret", kind, ..] => format!("secret/{kind}/NAME"),
        _ => path.to_string(),
    };
    format!("{op} {norm}")
}

/// Requests by kind, per rotation.
pub fn mix(entries: &[Audited], rotations: usize) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    for e in entries {
        *m.entry(e.kind.clone()).or_default() += 1.0;
    }
    for v in m.values_mut() {
        *v /= rotations.max(1) as f64;
    }
    m
}

/// Role names: `prefix` and a 4-digit index.
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

/// Creates `roles` on `mount`, each with one secret-id made by root;
/// returns role → accessor of that secret-id.
async fn make_roles(bao: &Bao, mount: &str, roles: &[String]) -> Result<HashMap<String, String>> {
    stream::iter(roles)
        .map(|r| async move {
            let body =
                json!({"secret_id_ttl": "48h", "token_ttl": "5m", "token_policies": ["default"]});
            bao.root("POST", &format!("auth/{mount}/role/{r}"), Some(body))
                .await?;
            let v = bao
                .root(
                    "POST",
                    &format!("auth/{mount}/role/{r}/secret-id"),
                    Some(json!({})),
                )
                .await?;
            let acc = v["data"]["secret_id_accessor"]
                .as_str()
                .ok_or_else(|| anyhow!("no accessor for {r}"))?
                .to_string();
            Ok::<_, anyhow::Error>((r.clone(), acc))
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// AppRole on two mounts, keyrot's policy and token (written to
/// `dir/token`, 0600), `keyrot_roles` on the keyrot mount and
/// `other_roles` on the other. Returns the token and the accessors of the
/// other roles' secret-ids.
pub async fn setup(
    bao: &Bao,
    dir: &Path,
    keyrot_roles: &[String],
    other_roles: &[String],
) -> Result<(String, HashMap<String, String>)> {
    for mount in [KEYROT_MOUNT, OTHER_MOUNT] {
        bao.root(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({"type": "approle"})),
        )
        .await?;
    }
    bao.root(
        "PUT",
        "sys/policies/acl/keyrot",
        Some(json!({"policy": POLICY})),
    )
    .await?;
    let v = bao
        .root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["keyrot"], "ttl": "8h", "no_parent": true})),
        )
        .await?;
    let token = v["auth"]["client_token"]
        .as_str()
        .ok_or_else(|| anyhow!("no token: {v}"))?
        .to_string();
    let path = dir.join("token");
    fs::write(&path, format!("{token}\n"))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    make_roles(bao, KEYROT_MOUNT, keyrot_roles).await?;
    let other = make_roles(bao, OTHER_MOUNT, other_roles).await?;
    Ok((token, other))
}
