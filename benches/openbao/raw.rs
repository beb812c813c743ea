//! What keyrot is compared with: the raw client (reqwest, keep-alive, the
//! same requests per rotation as keyrot makes, nothing else) and the CLI
//! loop (`scripts/bench/openbao.sh --cli-loop`, a bash loop of `bao`
//! calls).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Result, bail};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::bao::{Bao, OTHER_MOUNT};

/// The raw client: keyrot's token, no keyrot.
pub struct Raw {
    /// OpenBao.
    pub bao: Bao,
    /// keyrot's token.
    pub token: String,
}

impl Raw {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        self.bao
            .call(&self.token, method, path, body.as_ref())
            .await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, v) = self.call(method, path, body).await?;
        if !(200..300).contains(&status) {
            bail!("raw {method} {path}: {status} {v}");
        }
        Ok(v)
    }

    /// One rotation of `role` as keyrot makes it, request for request
    /// (the bench checks this against OpenBao's audit log): issue; the
    /// sink's read, check-and-set write and metadata merge patch; verify
    /// (lookup by value, role-id, login, revoke the login's token) and the
    /// sink's read-back; destroy the old secret-id. Returns the new
    /// accessor.
    async fn rotate(&self, role: &str, old: &str) -> Result<String> {
        let base = format!("auth/{OTHER_MOUNT}/role/{role}");
        let kv = format!("secret/data/raw/{role}");
        let meta = json!({
            "keyrot_created_by": "bench",
            "keyrot_rotation": uuid::Uuid::now_v7().to_string(),
        });
        let v = self
            .ok(
                "POST",
                &format!("{base}/secret-id"),
                Some(json!({"metadata": meta.to_string(), "ttl": 86_400})),
            )
            .await?;
        let secret = v["data"]["secret_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let acc = v["data"]["secret_id_accessor"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (_, cur) = self.call("GET", &kv, None).await?;
        let version = cur["data"]["metadata"]["version"].as_u64().unwrap_or(0);
        self.ok(
            "POST",
            &kv,
            Some(json!({"options": {"cas": version}, "data": {"secret_id": secret}})),
        )
        .await?;
        let custom = json!({"custom_metadata": {
            "keyrot_key_id": format!("{role}/{acc}"),
            "keyrot_rotation_id": "bench",
            "keyrot_expires_at": "2099-01-01T00:00:00Z",
            "keyrot_provider": "raw",
            "keyrot_slot": format!("raw/{role}"),
        }});
        let status = self
            .bao
            .http
            .patch(format!("{}/v1/secret/metadata/raw/{role}", self.bao.addr))
            .header("X-Vault-Token", &self.token)
            .header("Content-Type", "application/merge-patch+json")
            .body(custom.to_string())
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("raw metadata patch {role}: {status}");
        }
        self.ok(
            "POST",
            &format!("{base}/secret-id/lookup"),
            Some(json!({"secret_id": secret})),
        )
        .await?;
        let rid = self.ok("GET", &format!("{base}/role-id"), None).await?;
        let login = self
            .ok(
                "POST",
                &format!("auth/{OTHER_MOUNT}/login"),
                Some(json!({"role_id": rid["data"]["role_id"], "secret_id": secret})),
            )
            .await?;
        self.ok(
            "POST",
            "auth/token/revoke",
            Some(json!({"token": login["auth"]["client_token"]})),
        )
        .await?;
        self.ok("GET", &kv, None).await?;
        self.ok(
            "POST",
            &format!("{base}/secret-id-accessor/destroy"),
            Some(json!({"secret_id_accessor": old})),
        )
        .await?;
        Ok(acc)
    }

    /// Rotates every role once, `concurrency` at a time; the seconds it
    /// took. `accessors` follows the roles' live secret-ids.
    pub async fn batch(
        &self,
        accessors: &mut HashMap<String, String>,
        roles: &[String],
        concurrency: usize,
    ) -> Result<f64> {
        let start = Instant::now();
        let work: Vec<(String, String)> = roles
            .iter()
            .map(|r| (r.clone(), accessors[r].clone()))
            .collect();
        let done: Vec<(String, String)> = stream::iter(work)
            .map(|(r, old)| async move {
                let new = self.rotate(&r, &old).await?;
                Ok::<_, anyhow::Error>((r, new))
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let secs = start.elapsed().as_secs_f64();
        accessors.extend(done);
        Ok(secs)
    }
}

/// One CLI-loop batch over `roles` (their old accessors in `dir/ROLE.acc`):
/// the seconds the bash loop took.
pub fn cli_batch(
    script: &Path,
    bao_cli: &Path,
    addr: &str,
    dir: &Path,
    roles: &[String],
) -> Result<f64> {
    let start = Instant::now();
    let out = Command::new("bash")
        .arg(script)
        .arg("--cli-loop")
        .arg(dir)
        .args(roles)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", "root")
        .env("KEYROT_BENCH_BAO_CLI", bao_cli)
        .env("KEYROT_BENCH_MOUNT", OTHER_MOUNT)
        .stdin(Stdio::null())
        .output()?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "CLI loop failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(secs)
}
