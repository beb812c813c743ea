//! The `exec` provider: an operator's program that speaks keyrot's JSON
//! protocol, for any system no built-in provider covers.
//!
//! Each call runs the program once ([`crate::exec`]: cleared environment,
//! `KEYROT_OP` and `KEYROT_PROVIDER` set, everything it started killed at
//! the timeout, exit codes as documented there). The request is one JSON object
//! on stdin — `{"version":1,"op":"issue","provider":..,"now":..,...}` — and
//! the answer one JSON object on stdout:
//!
//! | op | request fields | answer |
//! | --- | --- | --- |
//! | `list` | — | `{"keys":[KEY...]}` |
//! | `issue` | `name`, `scopes`, `expires_at`, `tag`, `replaces`, `resumed`, `created_by` | `{"id","secret", "expires_at"?, "scopes"?, "created_at"?}` |
//! | `find_tagged` | `tag` | `{"keys":[KEY...]}` |
//! | `verify` | `id`, `secret` | exit 0 when the secret works |
//! | `revoke` | `id` | exit 0 (also when already gone) |
//! | `deactivate` | `id` | exit 0 |
//!
//! A KEY is `{"id","name","scopes"?,"created_at"?,"expires_at"?,
//! "last_used_at"?,"created_by"?,"tags"?}` with RFC 3339 times. Secrets
//! travel only on stdin/stdout, are held in `SecretString`/wiped buffers,
//! and a malformed answer is described without echoing it.

use std::path::Path;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Capabilities, IssueMode, IssueRequest, IssuedKey, Provider};
use crate::exec::Program;
use keyrot_config::ExecProviderConfig;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

/// Protocol version sent in every request.
const PROTOCOL_VERSION: u32 = 1;
/// Most stdout a program may print, in bytes (a large key list fits).
const MAX_STDOUT: usize = 16 * 1024 * 1024;

/// Runs the configured program per call.
pub struct ExecProvider {
    /// Config name.
    name: String,
    /// `provider "NAME"`, for messages.
    who: String,
    /// Settings.
    cfg: ExecProviderConfig,
}

/// A request: the common fields and the op's own.
#[derive(Serialize)]
struct Request<'a> {
    /// Protocol version.
    version: u32,
    /// Operation.
    op: &'a str,
    /// Provider name.
    provider: &'a str,
    /// The current time.
    now: Timestamp,
    /// The op's fields.
    #[serde(flatten)]
    fields: Fields<'a>,
}

/// Per-op request fields.
#[derive(Serialize)]
#[serde(untagged)]
enum Fields<'a> {
    /// `list`.
    None {},
    /// `issue`.
    Issue {
        /// Key name.
        name: &'a str,
        /// Scopes.
        scopes: &'a [String],
        /// Requested expiry.
        expires_at: Option<Timestamp>,
        /// Rotation id to tag the key with.
        tag: &'a str,
        /// Key being replaced.
        replaces: Option<&'a str>,
        /// An earlier attempt may have reached the program's system.
        resumed: bool,
        /// Creator.
        created_by: &'a str,
    },
    /// `find_tagged`.
    Tag {
        /// Rotation id.
        tag: &'a str,
    },
    /// `revoke`, `deactivate`.
    Id {
        /// Key id.
        id: &'a str,
    },
    /// `verify`.
    Verify {
        /// Key id.
        id: &'a str,
        /// The secret to check.
        secret: &'a str,
    },
}

/// `{"keys":[...]}`.
#[derive(Deserialize)]
struct KeysAnswer {
    /// The keys.
    keys: Vec<KeyInfo>,
}

/// The answer to `issue`.
#[derive(Deserialize)]
struct IssueAnswer {
    /// New key id.
    id: String,
    /// Its one-time secret.
    secret: SecretString,
    /// Its name, if the program reports one.
    #[serde(default)]
    name: Option<String>,
    /// Its scopes, if reported.
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// Its expiry.
    #[serde(default)]
    expires_at: Option<Timestamp>,
    /// When it was created.
    #[serde(default)]
    created_at: Option<Timestamp>,
}

impl ExecProvider {
    /// An exec provider (the config is validated: absolute program path,
    /// known operations).
    pub fn new(
        name: &str,
        cfg: &ExecProviderConfig,
        creds: Option<&Path>,
    ) -> Result<ExecProvider, CallError> {
        let _ = creds;
        Ok(ExecProvider {
            name: name.to_string(),
            who: format!("provider {name:?}"),
            cfg: cfg.clone(),
        })
    }

    /// Runs `op` with `fields`; the answer's stdout when it exited 0.
    /// `secret` (in the request) is cut out of any error.
    async fn call(
        &self,
        op: &str,
        now: Timestamp,
        fields: Fields<'_>,
        secret: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, CallError> {
        if !self.cfg.has(op) {
            return Err(CallError::permanent(format!(
                "{}: the program does not implement {op:?} (add it to `operations` if it does)",
                self.who
            )));
        }
        let req = Request {
            version: PROTOCOL_VERSION,
            op,
            provider: &self.name,
            now,
            fields,
        };
        // Sized so it never grows (and leaves copies behind) while written.
        let mut body = Zeroizing::new(Vec::with_capacity(4096 + secret.map_or(0, |s| s.len() * 6)));
        serde_json::to_writer(&mut *body, &req).map_err(|e| {
            CallError::permanent(format!("{}: cannot encode the {op} request: {e}", self.who))
        })?;
        let program = Program {
            who: &self.who,
            what: "command",
            argv: &self.cfg.command,
            env: &self.cfg.env,
            vars: vec![
                ("KEYROT_OP", op.to_string()),
                ("KEYROT_PROVIDER", self.name.clone()),
            ],
            timeout: self.cfg.timeout,
            max_stdout: MAX_STDOUT,
        };
        let run = program.run(Some(&body)).await?;
        if run.code != Some(0) {
            return Err(run.failure(&self.who, &format!("command {op}"), secret));
        }
        Ok(run.stdout)
    }

    /// Parses an answer, describing a bad one without echoing it.
    fn parse<T: for<'de> Deserialize<'de>>(&self, op: &str, out: &[u8]) -> Result<T, CallError> {
        serde_json::from_slice(out).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "not valid JSON",
                serde_json::error::Category::Data => "JSON of the wrong shape",
                serde_json::error::Category::Eof => "truncated JSON",
            };
            CallError::transient(format!(
                "{}: the answer to {op} ({} bytes) is {kind} at line {} column {}; see docs/providers.md for the protocol",
                self.who,
                out.len(),
                e.line(),
                e.column()
            ))
        })
    }
}

#[async_trait]
impl Provider for ExecProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "exec"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: self.cfg.has("list"),
            // A program configured `no_overlap` ends the old key when it
            // issues the new one: a native rotate, in effect.
            issue: if self.cfg.no_overlap {
                IssueMode::Rotate {
                    keeps_scopes: false,
                    old_ends: true,
                }
            } else {
                IssueMode::Create
            },
            revoke: self.cfg.has("revoke"),
            verify: self.cfg.has("verify"),
            tag: self.cfg.has("find_tagged"),
            set_expiry: false,
            idempotent_issue: false,
            deactivate: self.cfg.has("deactivate"),
            prove_identity: false,
            // The protocol has no last-use call.
            last_used: None,
        }
    }

    async fn list(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let out = self.call("list", now, Fields::None {}, None).await?;
        Ok(self.parse::<KeysAnswer>("list", &out)?.keys)
    }

    async fn issue(&self, req: &IssueRequest) -> Result<IssuedKey, CallError> {
        let fields = Fields::Issue {
            name: &req.name,
            scopes: &req.scopes,
            expires_at: req.expires_at,
            tag: &req.tag,
            replaces: req.replaces.as_deref(),
            resumed: req.resumed,
            created_by: &req.created_by,
        };
        let out = self.call("issue", req.now, fields, None).await?;
        let a: IssueAnswer = self.parse("issue", &out)?;
        if a.id.is_empty() || a.secret.expose_secret().is_empty() {
            return Err(CallError::permanent(format!(
                "{}: the answer to issue has an empty `id` or `secret`",
                self.who
            )));
        }
        Ok(IssuedKey {
            info: KeyInfo {
                id: a.id,
                name: a.name.unwrap_or_else(|| req.name.clone()),
                scopes: a.scopes.unwrap_or_else(|| req.scopes.clone()),
                created_by: Some(req.created_by.clone()),
                created_at: a.created_at.or(Some(req.now)),
                expires_at: a.expires_at,
                last_used_at: None,
                tags: [("keyrot_rotation".to_string(), req.tag.clone())].into(),
            },
            secret: a.secret,
        })
    }

    async fn find_tagged(&self, tag: &str, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let out = self
            .call("find_tagged", now, Fields::Tag { tag }, None)
            .await?;
        Ok(self.parse::<KeysAnswer>("find_tagged", &out)?.keys)
    }

    async fn verify(
        &self,
        id: &str,
        secret: &SecretString,
        now: Timestamp,
    ) -> Result<(), CallError> {
        let value = secret.expose_secret();
        self.call(
            "verify",
            now,
            Fields::Verify { id, secret: value },
            Some(value),
        )
        .await
        .map(drop)
    }

    async fn revoke(&self, id: &str, now: Timestamp) -> Result<(), CallError> {
        self.call("revoke", now, Fields::Id { id }, None)
            .await
            .map(drop)
    }

    async fn deactivate(&self, id: &str, now: Timestamp) -> Result<(), CallError> {
        self.call("deactivate", now, Fields::Id { id }, None)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn example() -> String {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/examples/exec-provider.py"
        )
        .to_string()
    }

    fn provider(command: Vec<String>, ops: &[&str]) -> ExecProvider {
        ExecProvider::new(
            "legacy",
            &ExecProviderConfig {
                command,
                operations: ops.iter().map(|s| s.to_string()).collect(),
                no_overlap: false,
                env: BTreeMap::new(),
                timeout: keyrot_core::policy::parse_duration("20s").unwrap(),
            },
            None,
        )
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    fn request(tag: &str) -> IssueRequest {
        IssueRequest {
            name: "ci".into(),
            scopes: vec!["read".into()],
            expires_at: Some("2027-11-23T12:00:00Z".parse().unwrap()),
            tag: tag.into(),
            replaces: None,
            resumed: false,
            created_by: "keyrot".into(),
            now: now(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_example_program_speaks_the_whole_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(
            vec![example(), dir.path().to_string_lossy().into_owned()],
            &["list", "issue", "verify", "revoke", "find_tagged"],
        );
        let caps = p.capabilities();
        assert!(
            caps.list && caps.issue == IssueMode::Create && caps.verify && caps.revoke && caps.tag
        );
        assert!(!caps.deactivate && !caps.issue.no_overlap());
        let a = p.issue(&request("rot-1")).await.unwrap();
        let b = p.issue(&request("rot-2")).await.unwrap();
        assert_ne!(a.info.id, b.info.id);
        assert_eq!(
            a.info.expires_at,
            Some("2027-11-23T12:00:00Z".parse().unwrap())
        );
        assert!(a.secret.expose_secret().starts_with("lgc_"));
        // Only a hash is kept by the program.
        let stored = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(!stored.contains(a.secret.expose_secret()));
        assert_eq!(p.list(now()).await.unwrap().len(), 2);
        let tagged = p.find_tagged("rot-2", now()).await.unwrap();
        assert_eq!(tagged.len(), 1);
        assert_eq!(tagged[0].id, b.info.id);
        p.verify(&a.info.id, &a.secret, now()).await.unwrap();
        let wrong = p.verify(&a.info.id, &b.secret, now()).await.unwrap_err();
        assert!(wrong.transient, "{wrong:?}");
        assert!(
            !wrong.message.contains(b.secret.expose_secret()),
            "{}",
            wrong.message
        );
        p.revoke(&a.info.id, now()).await.unwrap();
        p.revoke(&a.info.id, now()).await.unwrap();
        let left = p.list(now()).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, b.info.id);
        assert!(p.verify(&a.info.id, &a.secret, now()).await.is_err());
    }

    fn script(dir: &Path, body: &str) -> String {
        let p = dir.join("prog");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[tokio::test]
    async fn bad_answers_and_missing_operations_are_clear_errors_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        // An answer that is not JSON (and holds something secret-looking).
        let garbage = provider(
            vec![script(dir.path(), "echo 'id=1 secret=hunter2'")],
            &["issue", "list"],
        );
        let e = garbage.issue(&request("r")).await.unwrap_err();
        assert!(
            e.message
                .contains("the answer to issue (20 bytes) is not valid JSON"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let e = garbage.revoke("k", now()).await.unwrap_err();
        assert!(
            !e.transient && e.message.contains("does not implement \"revoke\""),
            "{}",
            e.message
        );
        // A wrong shape: a secret but no id.
        let dir2 = tempfile::tempdir().unwrap();
        let shape = provider(
            vec![script(dir2.path(), r#"echo '{"secret":"hunter2"}'"#)],
            &["issue"],
        );
        let e = shape.issue(&request("r")).await.unwrap_err();
        assert!(
            e.message.contains("JSON of the wrong shape"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        // A verify that echoes the secret to stderr gets it cut out.
        let dir3 = tempfile::tempdir().unwrap();
        let echo = provider(
            vec![script(dir3.path(), "cat >&2; exit 65")],
            &["issue", "verify"],
        );
        let e = echo
            .verify("k1", &SecretString::from("s3cr3t-marker"), now())
            .await
            .unwrap_err();
        assert!(!e.transient, "{e:?}");
        assert!(
            e.message.contains("`command verify` exited with 65"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("s3cr3t-marker"), "{}", e.message);
    }
}
