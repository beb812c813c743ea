//! The [`Harness`] the peer-driven targets run in: a runtime, a scratch
//! directory, the scripted peer, the `http` provider of every shipped
//! preset, the `atlassian` and `exec` providers and the `openbao` sinks
//! pointed at it, and the control server on a unix socket
//! ([`control`]).

mod control;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;

use self::control::RefusingBackend;
use super::peer::Peer;
use super::{Finding, MARKERS, Outcome, check_error, check_text, now, pick, split_line};
use keyrot_config::{Config, ProviderKind, SinkKind};
use keyrot_core::store::Store;
use keyrot_peers::provider::{IssueRequest, Provider};
use keyrot_peers::sink::SinkTarget;

/// Presets of the `http` provider the target drives.
const PRESETS: [(&str, &str); 7] = [
    (
        "sandbox",
        include_str!("../../../config/providers/keyrot-sandbox.toml"),
    ),
    (
        "gitlab-pat",
        include_str!("../../../config/providers/gitlab-personal-access-tokens.toml"),
    ),
    (
        "gitlab-project",
        include_str!("../../../config/providers/gitlab-project-access-tokens.toml"),
    ),
    (
        "grafana",
        include_str!("../../../config/providers/grafana-service-account-tokens.toml"),
    ),
    (
        "datadog-api",
        include_str!("../../../config/providers/datadog-api-keys.toml"),
    ),
    (
        "datadog-app",
        include_str!("../../../config/providers/datadog-application-keys.toml"),
    ),
    (
        "cloudflare",
        include_str!("../../../config/providers/cloudflare-api-tokens.toml"),
    ),
];

/// Provider operations a target may call.
const OPS: [&str; 6] = [
    "list",
    "issue",
    "verify",
    "revoke",
    "find_tagged",
    "deactivate",
];

/// The config the control server and the stand-in backend use.
const CONTROL_CONFIG: &str = r#"
[daemon]
control_socket = "control.sock"
[store]
path = "state.redb"
master_key_file = "master.key"
[[provider]]
name = "local"
type = "local"
[[sink]]
name = "out"
type = "file"
path = "out/{name}.json"
[[policy]]
name = "p"
new_key_lifetime = "30d"
rotate_before_expiry = "7d"
[[key]]
name = "ci"
provider = "local"
policy = "p"
sinks = ["out"]
"#;

/// Everything the peer-driven targets need, built once: a runtime, a
/// temporary directory (removed on drop), the scripted peer, providers
/// and sinks pointed at it, and a control server on a unix socket.
pub struct Harness {
    /// Runs the peer, the control server and the calls.
    rt: tokio::runtime::Runtime,
    /// Scratch directory: credentials, the exec program's answer, the store.
    dir: PathBuf,
    /// The scripted HTTP peer.
    peer: Arc<Peer>,
    /// One `http` provider per preset.
    http: Vec<(&'static str, Arc<dyn Provider>)>,
    /// The `atlassian` provider (proposed rotate API, PSK [`FUZZ_PSK`]).
    atlassian: Arc<dyn Provider>,
    /// The `exec` provider, whose program prints `dir/out`.
    exec: Arc<dyn Provider>,
    /// `openbao` sinks (token auth, AppRole auth), built afresh for each
    /// input so no token lease carries over from one input to the next.
    bao: Vec<keyrot_config::SinkConfig>,
    /// The control socket.
    socket: PathBuf,
}

fn io_err(what: &str, e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("fuzz harness: {what}: {e}"))
}

impl Harness {
    /// Builds the harness in a new directory under the system's temp dir.
    pub fn new() -> std::io::Result<Harness> {
        let dir = std::env::temp_dir().join(format!(
            "keyrot-fuzz-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        match Harness::build(&dir) {
            Ok(h) => Ok(h),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn build(dir: &Path) -> std::io::Result<Harness> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let peer = Arc::new(Peer::default());
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let base = format!("http://{}", listener.local_addr()?);
        let p = Arc::clone(&peer);
        rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(Arc::clone(&p).serve(conn));
            }
        });
        for (name, value) in [
            ("gitlab-token", MARKERS[0]),
            ("grafana-token", MARKERS[0]),
            ("grafana-password", MARKERS[0]),
            ("datadog-api-key", MARKERS[0]),
            ("datadog-app-key", MARKERS[0]),
            ("cloudflare-token", MARKERS[0]),
            ("sandbox-admin.key", MARKERS[0]),
            ("admin.key", MARKERS[0]),
            ("token", MARKERS[1]),
            ("secret-id", MARKERS[3]),
        ] {
            std::fs::write(dir.join(name), value)?;
        }
        std::fs::write(dir.join("psk.hex"), "5a".repeat(32))?;
        std::fs::write(dir.join("code"), "0")?;
        let _guard = rt.enter();
        let mut http = Vec::new();
        for (name, text) in PRESETS {
            let text: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("base_url = ") {
                        format!("base_url = \"{base}\"\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            let cfg = load(dir, &text)?;
            let ProviderKind::Http(c) = &cfg.providers[0].kind else {
                return Err(io_err(name, "not an http provider"));
            };
            let p = keyrot_peers::provider::http::HttpProvider::new("fuzz", c, Some(dir))
                .map_err(|e| io_err(name, e))?;
            http.push((name, Arc::new(p) as Arc<dyn Provider>));
        }
        let d = dir.display();
        let cfg = load(
            dir,
            &format!(
                r#"
[[provider]]
name = "atlassian"
type = "atlassian"
org_id = "fuzz-org"
base_url = "{base}/admin"
admin_key = {{ file = "{d}/admin.key" }}
rotate_api = "proposed"
psk_id = "fuzz"
psk = {{ file = "{d}/psk.hex" }}

[[provider]]
name = "exec"
type = "exec"
command = ["/bin/sh", "-c", "cat >/dev/null; cat \"$0/out\"; cat \"$0/err\" >&2; exit \"$(cat \"$0/code\")\"", "{d}"]
operations = ["list", "issue", "verify", "revoke", "find_tagged", "deactivate"]
timeout = "10s"

[[sink]]
name = "bao-token"
type = "openbao"
address = "{base}"
path = "keyrot/{{provider}}/{{name}}"
token = {{ file = "{d}/token" }}

[[sink]]
name = "bao-approle"
type = "openbao"
address = "{base}"
path = "keyrot/{{name}}"
role_id = "role-fuzz"
secret_id = {{ file = "{d}/secret-id" }}
"#
            ),
        )?;
        let mut providers = Vec::new();
        for p in &cfg.providers {
            let built: Arc<dyn Provider> = match &p.kind {
                ProviderKind::Atlassian(a) => Arc::new(
                    keyrot_peers::provider::atlassian::AtlassianProvider::from_config(
                        &p.name, a, None,
                    )
                    .map_err(|e| io_err(&p.name, e))?,
                ),
                ProviderKind::Exec(c) => Arc::new(
                    keyrot_peers::provider::exec::ExecProvider::new(&p.name, c, None)
                        .map_err(|e| io_err(&p.name, e))?,
                ),
                _ => return Err(io_err(&p.name, "unexpected provider type")),
            };
            providers.push(built);
        }
        let (Some(exec), Some(atlassian)) = (providers.pop(), providers.pop()) else {
            return Err(io_err("providers", "missing"));
        };
        let mut bao = Vec::new();
        for s in &cfg.sinks {
            if !matches!(s.kind, SinkKind::OpenBao(_)) {
                return Err(io_err(&s.name, "not an openbao sink"));
            }
            keyrot_peers::sink::build(s).map_err(|e| io_err(&s.name, e))?;
            bao.push(s.clone());
        }
        let control = load(dir, CONTROL_CONFIG)?;
        let master = keyrot_core::crypto::MasterKey::from_bytes([7; 32]);
        let store = Store::open(&dir.join("state.redb"), master).map_err(|e| io_err("store", e))?;
        let backend = Arc::new(RefusingBackend {
            store: Arc::new(store),
            config: Arc::new(control),
        });
        let socket = dir.join("control.sock");
        let listener = keyrot::control::server::bind(&socket, 0o600)?;
        rt.spawn(keyrot::control::server::serve(
            listener,
            backend,
            std::future::pending(),
        ));
        drop(_guard);
        Ok(Harness {
            rt,
            dir: dir.to_path_buf(),
            peer,
            http,
            atlassian,
            exec,
            bao,
            socket,
        })
    }

    /// The `http` provider: the first line names a preset and an
    /// operation (`gitlab-pat list`), the rest is the peer's script.
    pub fn http_provider(&self, data: &[u8]) -> Outcome {
        let (selector, rest) = split_line(data);
        let mut words = selector.splitn(2, |&b| b == b' ');
        let names: Vec<&str> = self.http.iter().map(|(n, _)| *n).collect();
        let preset = pick(words.next().unwrap_or_default(), &names);
        let op = pick(words.next().unwrap_or_default(), &OPS);
        let Some((_, provider)) = self.http.iter().find(|(n, _)| *n == preset) else {
            return Ok(());
        };
        self.peer.load(rest);
        self.call(provider.as_ref(), op, &OPS)
    }

    /// The `atlassian` provider: the first line names an operation, the
    /// rest is the peer's script.
    pub fn atlassian(&self, data: &[u8]) -> Outcome {
        let (selector, rest) = split_line(data);
        self.peer.load(rest);
        // Its `verify` is made with the new key alone.
        let admin = ["list", "issue", "revoke", "find_tagged", "deactivate"];
        self.call(self.atlassian.as_ref(), pick(selector, &OPS), &admin)
    }

    /// The `exec` provider: the first line names an operation and an exit
    /// code (`list 0`), the rest is what the program prints (stdout, and
    /// stderr too when it fails).
    pub fn exec_provider(&self, data: &[u8]) -> Outcome {
        let (selector, rest) = split_line(data);
        let mut words = selector.splitn(2, |&b| b == b' ');
        let op = pick(words.next().unwrap_or_default(), &OPS);
        let code = words
            .next()
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.trim().parse::<u8>().ok())
            .unwrap_or(0);
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(self.dir.join(name), bytes).map_err(|e| Finding(format!("harness: {e}")))
        };
        write("out", rest)?;
        write("err", if code == 0 { b"" } else { rest })?;
        write("code", code.to_string().as_bytes())?;
        self.call(self.exec.as_ref(), op, &[])
    }

    /// The `openbao` sink: the first line names the auth (`token`,
    /// `approle`) and a call (`read`, `put`), the rest is the peer's
    /// script.
    pub fn openbao_sink(&self, data: &[u8]) -> Outcome {
        let (selector, rest) = split_line(data);
        let mut words = selector.splitn(2, |&b| b == b' ');
        let auth = pick(words.next().unwrap_or_default(), &["token", "approle"]);
        let call = pick(words.next().unwrap_or_default(), &["read", "put"]);
        let Some(cfg) = self.bao.get(usize::from(auth == "approle")) else {
            return Ok(());
        };
        let sink = keyrot_peers::sink::build(cfg).map_err(|e| Finding(format!("harness: {e}")))?;
        self.peer.load(rest);
        let target = SinkTarget {
            provider: "p".into(),
            key_name: "ci".into(),
            slot: "p/ci".into(),
            key_id: "k-new".into(),
            rotation_id: "0195b7d2-0000-7000-8000-000000000001".into(),
            expires_at: None,
            probe: false,
        };
        let secret = SecretString::from(MARKERS[2]);
        let result = self.rt.block_on(async {
            match call {
                "put" => sink.put(&target, &secret).await.map(|_| ()),
                _ => sink.read_back(&target).await.map(|_| ()),
            }
        });
        // The token (or the secret id) goes with every call; the secret
        // with a put.
        let secrets = [usize::from(auth == "approle") * 2 + 1, 2];
        match result {
            Ok(()) => Ok(()),
            Err(e) => check_error(&e, &secrets[..1 + usize::from(call == "put")]),
        }
    }

    /// Calls `op` on `provider`; checks the error or the answer. `admin`:
    /// the operations that send the admin credential.
    fn call(&self, provider: &dyn Provider, op: &str, admin: &[&str]) -> Outcome {
        let t = now();
        let tag = "0195b7d2-0000-7000-8000-000000000001";
        let secret = SecretString::from(MARKERS[2]);
        let result = self.rt.block_on(async {
            match op {
                "list" => provider.list(t).await.map(|keys| format!("{keys:?}")),
                "issue" => {
                    let req = IssueRequest {
                        name: "ci".into(),
                        scopes: vec!["read:all".into()],
                        expires_at: Some(t + jiff::SignedDuration::from_hours(24 * 30)),
                        tag: tag.into(),
                        replaces: Some("k-old".into()),
                        resumed: false,
                        created_by: "keyrot".into(),
                        now: t,
                        ..Default::default()
                    };
                    provider.issue(&req).await.map(|k| format!("{k:?}"))
                }
                "verify" => provider
                    .verify("k-new", &secret, t)
                    .await
                    .map(|()| String::new()),
                "revoke" => provider.revoke("k-old", t).await.map(|()| String::new()),
                "find_tagged" => provider
                    .find_tagged(tag, t)
                    .await
                    .map(|keys| format!("{keys:?}")),
                _ => provider
                    .deactivate("k-old", t)
                    .await
                    .map(|()| String::new()),
            }
        });
        // The admin credential goes with the calls in `admin`; the new
        // key's secret only with `verify`.
        let mut secrets = Vec::new();
        if admin.contains(&op) {
            secrets.push(0);
        }
        if op == "verify" {
            secrets.push(2);
        }
        let secrets = &secrets;
        match result {
            Ok(shown) => check_text("an answer's Debug output", &shown, secrets),
            Err(e) => check_error(&e, secrets),
        }
    }
}

/// Loads a config text as if it were `dir/keyrot.toml`.
fn load(dir: &Path, text: &str) -> std::io::Result<Config> {
    keyrot_config::load_str(&dir.join("keyrot.toml"), text).map_err(|e| io_err("config", e))
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}
