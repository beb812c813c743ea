//! The peers one test function shares (OpenBao, aiosmtpd, and the
//! provider side: `keyrot sandbox`, moto or nothing for the local
//! provider), the keys created at the provider for each case, and the
//! daemon config each case runs with.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use super::super::peers::{self, Peer, curl};
use super::super::smtp::{SmtpOptions, SmtpServer, smtp_notify, with_notify};
use super::super::{Daemon, Sandbox, base_config};
use super::{ASSISTED, Case, IAM, LOCAL, QUIET, SANDBOX, Slot};

/// The provider side of a world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `keyrot sandbox`, the Atlassian Admin API with the proposed rotate
    /// endpoint (idempotent issue, verify with the key itself), plus an
    /// assisted provider on the same organisation (`rotate_api = "none"`).
    Sandbox,
    /// keyrot's local provider (tags keys; its registry is in the store).
    Local,
    /// AWS IAM on moto, old key set Inactive for the overlap.
    Iam,
    /// Sandbox and local keys in one daemon (the randomized run).
    Mixed,
}

/// Peers shared by the cases of one test function.
pub struct World {
    /// What kind of provider its cases use.
    pub kind: Kind,
    /// OpenBao dev server (KV v2 at `secret/`).
    pub bao: Peer,
    /// aiosmtpd, storing every message.
    pub smtp: SmtpServer,
    /// The sandbox (Sandbox, Mixed).
    pub sandbox: Option<Sandbox>,
    /// moto (Iam).
    pub moto: Option<Peer>,
    /// Case counter, for names unique in the world.
    next: Cell<u32>,
    /// Peers' directories (removed on drop).
    root: tempfile::TempDir,
}

impl World {
    /// Starts the peers for `kind`.
    pub fn new(kind: Kind) -> World {
        let root = tempfile::Builder::new()
            .prefix("krcrash")
            .tempdir()
            .unwrap();
        let bao = peers::bao(&root.path().join("bao"));
        let smtp = SmtpServer::start_new(&root.path().join("smtp"), SmtpOptions::default());
        let sandbox = matches!(kind, Kind::Sandbox | Kind::Mixed).then(|| {
            let sb = Sandbox::start(&root.path().join("sandbox"));
            let admin = sb.dir.join("admin.key");
            fs::write(&admin, sb.seeded_secret("keyrot")).unwrap();
            fs::set_permissions(&admin, fs::Permissions::from_mode(0o600)).unwrap();
            sb
        });
        let moto = (kind == Kind::Iam).then(|| peers::moto(&root.path().join("moto")));
        World {
            kind,
            bao,
            smtp,
            sandbox,
            moto,
            next: Cell::new(0),
            root,
        }
    }

    pub(super) fn sb(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("a world with the sandbox")
    }

    /// A sandbox key named `name` created outside keyrot (as in the
    /// admin console); its id.
    pub fn sandbox_key(&self, name: &str) -> String {
        let sb = self.sb();
        let expires =
            (crate::common::wall_now() + jiff::SignedDuration::from_hours(24 * 300)).to_string();
        let body = serde_json::json!({
            "orgId": "demo-org", "name": name,
            "scopes": ["read:jira-work", "write:jira-work"],
            "createdBy": "admin@example.com", "expiresAt": expires,
        });
        let out = sb.curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            &format!("{}/_sandbox/keys", sb.url),
            "-d",
            &body.to_string(),
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("sandbox key: {e}: {}", String::from_utf8_lossy(&out.stdout))
        });
        v["id"].as_str().unwrap().to_string()
    }

    /// A sandbox key created by hand for an assisted rotation: (id, secret).
    pub fn sandbox_key_with_secret(&self, name: &str) -> (String, String) {
        let sb = self.sb();
        let body = serde_json::json!({
            "orgId": "demo-org", "name": name,
            "scopes": ["read:jira-work", "write:jira-work"],
        });
        let out = sb.curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            &format!("{}/_sandbox/keys", sb.url),
            "-d",
            &body.to_string(),
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    /// An IAM call to moto (SigV4-shaped; moto checks no signature).
    pub(super) fn iam(&self, params: &str) -> String {
        let moto = self.moto.as_ref().expect("a world with moto");
        let out = curl(&[
            "-X",
            "POST",
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAKEYROTADMIN00001/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            "-d",
            &format!("{params}&Version=2010-05-08"),
            &moto.url,
        ]);
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// An IAM user with one access key made outside keyrot; its id.
    pub fn iam_user(&self, user: &str) -> String {
        self.iam(&format!("Action=CreateUser&UserName={user}"));
        let xml = self.iam(&format!("Action=CreateAccessKey&UserName={user}"));
        let start = xml
            .find("<AccessKeyId>")
            .unwrap_or_else(|| panic!("CreateAccessKey: {xml}"))
            + "<AccessKeyId>".len();
        xml[start..start + xml[start..].find('<').unwrap()].to_string()
    }

    /// A new case: a fresh daemon directory with `n` slots of `provider`
    /// (plus `assisted` slots of the assisted provider), started and
    /// settled (every slot has a key, nothing in flight, outbox empty).
    pub fn case(&self, label: &str, plan: &[(&str, usize)]) -> Case<'_> {
        let n = self.next.get() + 1;
        self.next.set(n);
        let mut slots = Vec::new();
        for (provider, count) in plan {
            for i in 0..*count {
                let prefix = match *provider {
                    SANDBOX => "s",
                    ASSISTED => "h",
                    LOCAL => "l",
                    QUIET => "q",
                    _ => "u",
                };
                let name = format!("{prefix}{n}-{i}");
                let initial = match *provider {
                    SANDBOX | ASSISTED => Some(self.sandbox_key(&name)),
                    IAM => Some(self.iam_user(&name)),
                    _ => None,
                };
                slots.push(Slot {
                    provider: if *provider == QUIET { LOCAL } else { provider }.to_string(),
                    name,
                    initial,
                });
            }
        }
        let hook_log = self.root.path().join(format!("hook-{n}.log"));
        let mut d = Daemon::new(&self.config(&slots, &hook_log));
        fs::write(d.dir.join("bao-token"), "root\n").unwrap();
        fs::set_permissions(d.dir.join("bao-token"), fs::Permissions::from_mode(0o600)).unwrap();
        d.env = vec![(
            "KEYROT_FAILPOINTS_FILE".into(),
            d.dir.join("failpoints").display().to_string(),
        )];
        let mut case = Case {
            world: self,
            d,
            slots,
            label: label.to_string(),
            fired_before: 0,
            hook_log,
        };
        case.d.start();
        case.settle_baseline();
        case
    }

    /// The daemon config for `slots`; every key has the reload hook
    /// `consumer`, which appends the rotation id and the time (ns) to
    /// `hook_log` (checked by I7).
    fn config(&self, slots: &[Slot], hook_log: &std::path::Path) -> String {
        let mut s = with_notify(&base_config(3), &smtp_notify(&self.smtp, "none", ""));
        s.push_str(&format!(
            r#"
[[sink]]
name = "bao"
type = "openbao"
address = "{bao}"
path = "keyrot/{{provider}}/{{name}}"
token = {{ file = "bao-token" }}
timeout = "3s"

[[hook]]
name = "consumer"
action = "exec"
command = ["/bin/sh", "-c", "echo \"$KEYROT_ROTATION_ID $(date +%s%N)\" >> {hook_log}"]
debounce = "0s"
timeout = "10s"

[[policy]]
name = "crash"
new_key_lifetime = "180d"
rotate_before_expiry = "1d"
overlap = "1s"
jitter = false
notify = ["ops@example.com"]
security_contacts = ["security@example.com"]

[[policy]]
name = "iam"
max_age = "90d"
overlap = "1s"
jitter = false
notify = ["ops@example.com"]

[[policy]]
name = "quiet"
new_key_lifetime = "180d"
rotate_before_expiry = "1d"
overlap = "1s"
revoke_when = "unused"
quiet_period = "1s"
revoke_deadline = "1m"
at_deadline = "revoke"
jitter = false
notify = ["ops@example.com"]
"#,
            bao = self.bao.url,
            hook_log = hook_log.display()
        ));
        let providers: BTreeSet<&str> = slots.iter().map(|s| s.provider.as_str()).collect();
        for p in providers {
            s.push_str(&self.provider_config(p));
        }
        for slot in slots {
            let policy = match slot.provider.as_str() {
                IAM => "iam",
                LOCAL if slot.name.starts_with('q') => "quiet",
                _ => "crash",
            };
            s.push_str(&format!(
                "\n[[key]]\nname = \"{}\"\nprovider = \"{}\"\npolicy = \"{policy}\"\nsinks = [\"out\", \"bao\"]\nhooks = [\"consumer\"]\n",
                slot.name, slot.provider
            ));
            match slot.provider.as_str() {
                LOCAL => s.push_str("scopes = [\"read:all\"]\n"),
                IAM => s.push_str(&format!(
                    "id = \"{}\"\n",
                    slot.initial.as_deref().unwrap_or_default()
                )),
                _ => {}
            }
        }
        s
    }

    fn provider_config(&self, provider: &str) -> String {
        match provider {
            SANDBOX | ASSISTED => {
                let sb = self.sb();
                let d = sb.dir.display();
                let rotate = if provider == SANDBOX {
                    format!(
                        "rotate_api = \"proposed\"\npsk_id = \"demo\"\npsk = {{ file = \"{d}/psk.hex\" }}\n"
                    )
                } else {
                    "rotate_api = \"none\"\n".to_string()
                };
                format!(
                    "\n[[provider]]\nname = \"{provider}\"\ntype = \"atlassian\"\norg_id = \"demo-org\"\n\
                     base_url = \"{}/admin/api-access/v1\"\nadmin_key = {{ file = \"{d}/admin.key\" }}\n\
                     page_size = 100\n{rotate}",
                    sb.url
                )
            }
            LOCAL => "\n[[provider]]\nname = \"local\"\ntype = \"local\"\n".to_string(),
            IAM => {
                let moto = self.moto.as_ref().unwrap();
                let dir = moto.dir.display();
                fs::write(moto.dir.join("aws-id"), "AKIAKEYROTADMIN00001\n").unwrap();
                fs::write(moto.dir.join("aws-secret"), "keyrot-crash-admin-secret\n").unwrap();
                for f in ["aws-id", "aws-secret"] {
                    fs::set_permissions(moto.dir.join(f), fs::Permissions::from_mode(0o600))
                        .unwrap();
                }
                format!(
                    "\n[[provider]]\nname = \"iam\"\ntype = \"aws-iam\"\nregion = \"eu-west-1\"\n\
                     iam_endpoint = \"{url}\"\nsts_endpoint = \"{url}\"\n\
                     access_key_id = {{ file = \"{dir}/aws-id\" }}\n\
                     secret_access_key = {{ file = \"{dir}/aws-secret\" }}\n\
                     deactivate_first = true\n",
                    url = moto.url
                )
            }
            other => panic!("unknown provider {other}"),
        }
    }
}
