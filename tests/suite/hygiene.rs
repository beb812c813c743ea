//! Secret hygiene: rotations through the real daemon with marker secrets,
//! then a scan of everything keyrot wrote or said for each marker.
//!
//! Markers: the sandbox's seeded secrets (the admin key among them), both
//! pre-shared keys, the OpenBao token, the rotate API's bearer token (and a
//! wrong one presented to it), the SMTP password, the master key, and
//! every new secret the rotations issued (read back from the file sinks
//! and from every OpenBao version). Forms: raw, hex (both cases), base64
//! and base64url at the three byte alignments (so a marker inside a longer
//! encoded blob, like SMTP `AUTH PLAIN`, is found), and percent-encoded.
//!
//! Scanned: every log line (text at `RUST_LOG=debug`, or `--log-format
//! json` at `RUST_LOG=trace`, where each line must also be JSON), every mail (the `.eml` files, or what the aiosmtpd
//! server received, raw and decoded), the audit chain (`/v1/audit`), the
//! control API's views and the error bodies of bad requests, the CLI's
//! output, and the raw bytes of the store's directory, mid-rotation (the
//! new secret sealed in the store while a sink holds the rotation in
//! Distributing) and at the end. Each marker is first found where it
//! belongs (the scanner works), then nowhere else. File modes are those the
//! docs promise: store 0600, master key 0600, file sinks 0600 by default
//! and 0640 when asked, control socket 0660 (the default).

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::fault_proxy::{Fault, FaultProxy};
use common::peers::{self, Peer, bao_api};
use common::smtp::{SmtpOptions, SmtpServer, make_cert, smtp_notify, with_notify};
use common::{Daemon, Sandbox, wait_until};
use rand::RngExt;
use serde_json::Value;

/// One secret and the byte strings that would betray it.
struct Marker {
    /// What it is.
    name: String,
    /// Its forms: name and bytes.
    forms: Vec<(String, Vec<u8>)>,
}

/// Every form of `secret` worth looking for (at least 12 bytes long).
fn forms(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = vec![("raw".into(), secret.to_vec())];
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".into(), hex.clone().into_bytes()));
    out.push(("HEX".into(), hex.to_uppercase().into_bytes()));
    let engines = [
        ("base64", base64::engine::general_purpose::STANDARD),
        ("base64url", base64::engine::general_purpose::URL_SAFE),
    ];
    for (name, engine) in engines {
        // With k bytes before it, the characters that depend on the
        // secret's bytes alone run from ceil(8k/6) to floor(8(k+n)/6)-1.
        for k in 0..3usize {
            let mut buf = vec![0u8; k];
            buf.extend_from_slice(secret);
            let enc = engine.encode(&buf).into_bytes();
            let (from, to) = ((8 * k).div_ceil(6), 8 * (k + secret.len()) / 6);
            out.push((format!("{name}@{k}"), enc[from..to].to_vec()));
        }
    }
    let url: String = secret
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    out.push(("url".into(), url.into_bytes()));
    let every: String = secret.iter().map(|b| format!("%{b:02X}")).collect();
    out.push(("url-every-byte".into(), every.into_bytes()));
    let mut seen = std::collections::HashSet::new();
    out.retain(|(_, f)| f.len() >= 12 && seen.insert(f.clone()));
    out
}

/// True when `hay` holds `needle`.
fn holds(hay: &[u8], text: &str, needle: &[u8]) -> bool {
    // std's substring search for ASCII needles (lossy UTF-8 keeps every
    // ASCII byte in place); a plain scan for binary ones.
    match std::str::from_utf8(needle) {
        Ok(n) if n.is_ascii() => text.contains(n),
        _ => hay.windows(needle.len()).any(|w| w == needle),
    }
}

/// The markers and what was scanned.
#[derive(Default)]
struct Scanner {
    /// Markers.
    markers: Vec<Marker>,
    /// Places scanned (log lines count one each).
    places: usize,
    /// Bytes scanned (each byte once, whatever the number of markers).
    bytes: usize,
    /// Findings: place, marker, form.
    hits: Vec<String>,
    /// Places by kind, for the figures.
    kinds: BTreeMap<&'static str, (usize, usize)>,
}

impl Scanner {
    /// Adds a marker (again under another name is a no-op).
    fn add(&mut self, name: &str, secret: &[u8]) {
        assert!(
            secret.len() >= 16,
            "marker {name} is too short to be a marker"
        );
        if self.markers.iter().any(|m| m.forms[0].1 == secret) {
            return;
        }
        self.markers.push(Marker {
            name: name.to_string(),
            forms: forms(secret),
        });
    }

    /// The markers (name, form) `data` holds.
    fn find(&self, data: &[u8]) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(data);
        let mut found = Vec::new();
        for m in &self.markers {
            for (form, bytes) in &m.forms {
                if holds(data, &text, bytes) {
                    found.push((m.name.clone(), form.clone()));
                }
            }
        }
        found
    }

    /// Scans one place; a finding is recorded, not asserted at once.
    fn scan(&mut self, kind: &'static str, place: &str, data: &[u8]) {
        self.places += 1;
        self.bytes += data.len();
        let k = self.kinds.entry(kind).or_default();
        k.0 += 1;
        k.1 += data.len();
        for (marker, form) in self.find(data) {
            self.hits.push(format!("{place}: {marker} ({form})"));
        }
    }

    /// Asserts that `data` (a place where `name` belongs) holds it raw.
    fn found_in(&self, name: &str, where_: &str, data: &[u8]) {
        let m = self.markers.iter().find(|m| m.name == name).unwrap();
        let text = String::from_utf8_lossy(data);
        assert!(
            holds(data, &text, &m.forms[0].1) || holds(data, &text, &m.forms[1].1),
            "marker {name} not found in {where_}: the scanner would miss it"
        );
    }

    fn forms(&self) -> usize {
        self.markers.iter().map(|m| m.forms.len()).sum()
    }
}

/// Random bytes as lower-case hex.
fn random_hex(n: usize) -> String {
    let mut r = rand::rng();
    (0..n)
        .map(|_| format!("{:02x}", r.random::<u8>()))
        .collect()
}

/// `text` in a 0600 file.
fn write_private(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// Bytes of a hex string.
fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// A call on the control socket: (status, body).
fn api(
    d: &Daemon,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&[u8]>,
) -> (u16, Vec<u8>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--unix-socket"])
        .arg(d.dir.join("control.sock"))
        .args(["-X", method, "-w", "\n%{http_code}"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.arg(format!("http://keyrot{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        if let Some(b) = body {
            stdin.write_all(b).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let pos = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&out.stdout[pos + 1..])
        .parse()
        .unwrap();
    (code, out.stdout[..pos].to_vec())
}

/// Views of a mail where a marker would show: the raw bytes, the text
/// with quoted-printable undone, and every base64 body decoded.
fn mail_views(raw: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(raw)
        .replace("=\r\n", "")
        .replace("=\n", "");
    let b = text.as_bytes();
    let mut qp = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'=', Some(v)) => {
                qp.push(v);
                i += 3;
            }
            (c, _) => {
                qp.push(c);
                i += 1;
            }
        }
    }
    let mut views = vec![raw.to_vec(), qp];
    let mut block = String::new();
    for line in text.lines().chain(std::iter::once("")) {
        let l = line.trim_end();
        let b64 = !l.is_empty()
            && l.len() >= 16
            && l.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c));
        if b64 {
            block.push_str(l);
        } else if !block.is_empty() {
            if let Ok(v) = base64::engine::general_purpose::STANDARD.decode(&block) {
                views.push(v);
            }
            block.clear();
        }
    }
    views
}

/// A request the control API must refuse: method, path, headers, body and
/// the status expected.
type BadRequest<'a> = (&'a str, String, Vec<&'a str>, Option<Vec<u8>>, u16);

/// Messages the scenario's four rotations send.
const MAILS: usize = 7;

/// Which variant of the run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Text log; mail as `.eml` files.
    TextLogFileMail,
    /// `--log-format json`; mail over SMTP with STARTTLS and AUTH.
    JsonLogSmtp,
}

/// Starts `keyrot run --log-format json` in `d` and waits until it answers.
fn start_json(d: &mut Daemon) {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.log_path())
        .unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.args(["run", "--log-format", "json", "--config"])
        .arg(d.config_path())
        .current_dir(&d.dir)
        .env("RUST_LOG", "trace")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    d.child = Some(cmd.spawn().unwrap());
    let ok = wait_until(Duration::from_secs(30), || {
        d.cli(&["status", "--json"]).status.success()
    });
    assert!(ok, "daemon did not become ready; log:\n{}", d.log());
}

/// Waits until rotation `id` is Completed.
fn wait_completed(d: &Daemon, id: &str) -> Value {
    let mut rec = Value::Null;
    let ok = wait_until(Duration::from_secs(60), || {
        rec = d.rotation(id);
        rec["state"] == "Completed"
    });
    assert!(
        ok,
        "rotation {id} not completed: {rec:#}\nlog:\n{}",
        d.log()
    );
    rec
}

/// Every secret the file sinks hold now: (file, secret).
fn sink_secrets(d: &Daemon) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for (p, b) in common::all_files(&d.dir.join("out")) {
        let v: Value = serde_json::from_slice(&b).unwrap();
        out.push((p, v["secret"].as_str().unwrap().to_string()));
    }
    for (p, b) in common::all_files(&d.dir.join("env")) {
        let text = String::from_utf8(b).unwrap();
        let value = text.trim_end().split_once('=').unwrap().1.to_string();
        out.push((p, value));
    }
    out
}

/// Every version of every secret under `keyrot/` in OpenBao.
fn bao_secrets(bao: &Peer) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for provider in ["local", "atlassian"] {
        let (code, body) = bao_api(
            bao,
            "LIST",
            &format!("secret/metadata/keyrot/{provider}"),
            None,
        );
        if code != 200 {
            continue;
        }
        let v: Value = serde_json::from_str(&body).unwrap();
        for name in v["data"]["keys"].as_array().unwrap() {
            let path = format!("keyrot/{provider}/{}", name.as_str().unwrap());
            let (_, body) = bao_api(bao, "GET", &format!("secret/metadata/{path}"), None);
            let meta: Value = serde_json::from_str(&body).unwrap();
            let current = meta["data"]["current_version"].as_u64().unwrap();
            for n in 1..=current {
                let (_, body) =
                    bao_api(bao, "GET", &format!("secret/data/{path}?version={n}"), None);
                let v: Value = serde_json::from_str(&body).unwrap();
                if let Some(s) = v["data"]["data"]["secret"].as_str() {
                    out.push((format!("{path} v{n}"), s.to_string()));
                }
            }
        }
    }
    out
}

/// The mode bits of `p`.
fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Runs the scenario and the scan; returns the figures line.
fn run(variant: Variant) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let bao = peers::bao(&tmp.path().join("bao"));
    // OpenBao accepts a chosen id for a token made by root: the marker.
    let bao_token = format!("keyrot-bao-marker-{}", random_hex(16));
    let (code, body) = bao_api(
        &bao,
        "POST",
        "auth/token/create",
        Some(&format!(
            r#"{{"id":"{bao_token}","policies":["root"],"ttl":"1h"}}"#
        )),
    );
    assert_eq!(code, 200, "{body}");
    let bao_proxy = FaultProxy::start(&bao.url);

    let mut d = Daemon::new("");
    let sb_dir = d.dir.join("sandbox");
    let sandbox_psk = random_hex(32);
    write_private(&sb_dir.join("psk.hex"), &format!("{sandbox_psk}\n"));
    let sb = Sandbox::start(&sb_dir);
    let admin = sb.seeded_secret("keyrot");
    write_private(&sb_dir.join("admin.key"), &admin);
    let caller_psk = random_hex(32);
    write_private(&d.dir.join("caller-psk.hex"), &caller_psk);
    write_private(&d.dir.join("bao-token"), &bao_token);
    let api_token = format!("kr-api-token-{}", random_hex(16));
    write_private(&d.dir.join("api-token"), &api_token);

    let mut smtp = None;
    let mut smtp_password = None;
    let base = common::base_config(30);
    let base = if variant == Variant::JsonLogSmtp {
        let certs = make_cert(&tmp.path().join("certs"));
        let password = format!("Smtp-{}", random_hex(12));
        let server_pass = tmp.path().join("smtp-pass");
        write_private(&server_pass, &format!("{password}\n"));
        write_private(&d.dir.join("smtp-pass"), &format!("{password}\n"));
        let server = SmtpServer::start_new(
            &tmp.path().join("smtp"),
            SmtpOptions {
                tls: "starttls",
                certs: Some(certs.clone()),
                auth: Some(("keyrot".into(), server_pass)),
                ..SmtpOptions::default()
            },
        );
        let extra = format!(
            "ca_file = \"{}\"\nusername = \"keyrot\"\npassword = {{ file = \"smtp-pass\" }}\n",
            certs.ca.display()
        );
        let notify = smtp_notify(&server, "starttls", &extra);
        smtp = Some(server);
        smtp_password = Some(password);
        with_notify(&base, &notify)
    } else {
        base
    };
    let s = sb_dir.display();
    let config = format!(
        r#"{base}
[[sink]]
name = "env640"
type = "file"
path = "env/{{name}}.env"
format = "env"
mode = "0640"

[[sink]]
name = "bao"
type = "openbao"
address = "{bao_url}"
path = "keyrot/{{provider}}/{{name}}"
token = {{ file = "bao-token" }}
timeout = "5s"

[[provider]]
name = "local"
type = "local"

[[provider]]
name = "atlassian"
type = "atlassian"
org_id = "demo-org"
base_url = "{sb_url}/admin/api-access/v1"
admin_key = {{ file = "{s}/admin.key" }}
rotate_api = "proposed"
psk_id = "demo"
psk = {{ file = "{s}/psk.hex" }}

[[psk]]
id = "caller"
key = {{ file = "caller-psk.hex" }}

[[api_token]]
name = "pipeline"
token = {{ file = "api-token" }}
keys = ["atlassian/*"]

[[policy]]
name = "fast"
notify = ["ops@example.com"]
new_key_lifetime = "180d"
rotate_before_expiry = "1d"
overlap = "1s"
jitter = false

[[key]]
name = "app"
provider = "local"
policy = "fast"
sinks = ["out", "env640", "bao"]

[[key]]
name = "ci-bot"
provider = "atlassian"
policy = "fast"
sinks = ["out", "env640", "bao"]

[[key]]
name = "reporting"
provider = "atlassian"
policy = "fast"
sinks = ["out", "bao"]
"#,
        bao_url = bao_proxy.url,
        sb_url = sb.url,
    );
    fs::write(d.config_path(), config).unwrap();
    d.env.push(("RUST_LOG".into(), "debug".into()));
    match variant {
        Variant::TextLogFileMail => d.start(),
        Variant::JsonLogSmtp => start_json(&mut d),
    }

    let mut sc = Scanner::default();
    for k in [
        "ci-bot",
        "read only demo",
        "legacy-admin",
        "reporting",
        "keyrot",
    ] {
        sc.add(
            &format!("sandbox seeded secret of {k}"),
            sb.seeded_secret(k).as_bytes(),
        );
    }
    sc.add("sandbox PSK (hex)", sandbox_psk.as_bytes());
    sc.add("sandbox PSK (bytes)", &unhex(&sandbox_psk));
    sc.add("caller PSK (hex)", caller_psk.as_bytes());
    sc.add("caller PSK (bytes)", &unhex(&caller_psk));
    sc.add("OpenBao token", bao_token.as_bytes());
    sc.add("rotate API bearer token", api_token.as_bytes());
    let wrong_token = format!("kr-wrong-token-{}", random_hex(16));
    sc.add("a wrong bearer token presented", wrong_token.as_bytes());
    if let Some(p) = &smtp_password {
        sc.add("SMTP password", p.as_bytes());
    }
    let master_hex = fs::read_to_string(d.dir.join("master.key")).unwrap();
    sc.add("master key (hex)", master_hex.trim().as_bytes());
    sc.add("master key (bytes)", &unhex(master_hex.trim()));
    let mut new_secrets = Vec::new();

    // 1. app's first key, issued at start.
    let ok = wait_until(Duration::from_secs(30), || {
        d.rotations()
            .iter()
            .any(|r| r["slot"] == "local/app" && r["state"] == "Completed")
    });
    assert!(ok, "app's first key not distributed; log:\n{}", d.log());
    new_secrets.extend(sink_secrets(&d));

    // 2. ci-bot, held in Distributing by OpenBao answering 503: the new
    // secret is sealed in the store now, and must not be there in clear.
    let held = "/v1/secret/data/keyrot/atlassian/ci-bot";
    bao_proxy.always("POST", held, Fault::retry_after(503, 1));
    let id = d.json(&["rotate", "ci-bot", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut rec = Value::Null;
    let ok = wait_until(Duration::from_secs(30), || {
        rec = d.rotation(&id);
        // A 503 with Retry-After is throttling: it does not spend the
        // retry budget (`attempts`) but is counted in `throttled`.
        rec["state"] == "Distributing"
            && rec["attempts"].as_u64().unwrap_or(0) + rec["throttled"].as_u64().unwrap_or(0) >= 1
            && rec["sink_results"]["out"]["written_at"].is_string()
    });
    assert!(ok, "not held in Distributing: {rec:#}\nlog:\n{}", d.log());
    let mid = d.sink("ci-bot").unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    // The secret of the key this rotation issued, which the store holds
    // sealed until every sink has it (views never show even its hash).
    let new_id = rec["new_key"]["id"].as_str().unwrap();
    assert_eq!(
        sb.key(new_id)["secretSha256"],
        keyrot_core::crypto::sha256_hex(mid.as_bytes()).as_str()
    );
    assert_eq!(rec["new_key"]["secret_sha256"], "", "{rec:#}");
    sc.add("ci-bot's new secret", mid.as_bytes());
    for (p, b) in common::all_files(&d.dir.join("state")) {
        sc.scan(
            "store (mid-rotation)",
            &format!("{} mid-rotation", p.display()),
            &b,
        );
    }
    bao_proxy.clear();
    wait_completed(&d, &id);

    // 3. reporting through the rotate API: the answer is sealed for the caller.
    let (code, body) = api(
        &d,
        "PATCH",
        "/orgs/demo-org/api-keys/rotate/reporting?pskId=caller",
        &[
            "Content-Type: application/json",
            &format!("Authorization: Bearer {api_token}"),
        ],
        Some(br#"{"rotateReason":"hygiene","metadata":{"rotatedBy":"hygiene@example.com"}}"#),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let resp: Value = serde_json::from_slice(&body).unwrap();
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(resp["data"]["encryptedSecret"].as_str().unwrap())
        .unwrap();
    let psk: [u8; 32] = unhex(&caller_psk).try_into().unwrap();
    let opened = keyrot_core::crypto::open(
        &psk,
        resp["data"]["id"].as_str().unwrap().as_bytes(),
        &sealed,
    )
    .expect("the sealed answer opens under the caller's PSK");
    let reporting_secret = String::from_utf8(opened.to_vec()).unwrap();
    sc.add(
        "reporting's new secret (from the rotate API)",
        reporting_secret.as_bytes(),
    );
    let mut scanned_api = vec![("rotate API answer (sealed)".to_string(), body)];

    // 4. app again.
    let id_app = d.json(&["rotate", "app", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_completed(&d, &id_app);
    let all_done = wait_until(Duration::from_secs(30), || {
        d.rotations().iter().all(|r| r["state"] == "Completed")
    });
    assert!(all_done, "{:#?}", d.rotations());
    assert_eq!(
        d.sink("reporting").unwrap()["secret"],
        reporting_secret.as_str(),
        "the sink got the secret the rotate API sealed"
    );
    new_secrets.extend(sink_secrets(&d));
    for (p, s) in &new_secrets {
        sc.add(&format!("secret in {}", p.display()), s.as_bytes());
    }
    let versions = bao_secrets(&bao);
    assert_eq!(
        versions.len(),
        4,
        "app v1, v2, ci-bot v1, reporting v1: {versions:?}"
    );
    for (p, s) in &versions {
        sc.add(&format!("OpenBao {p}"), s.as_bytes());
    }

    // 5. Bad requests on the control socket, several carrying markers in
    // bodies and headers; each must be refused with a 4xx JSON error.
    let done = d
        .rotations()
        .into_iter()
        .find(|r| r["slot"] == "atlassian/ci-bot")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let json = "Content-Type: application/json";
    let wrong_bearer = format!("Authorization: Bearer {wrong_token}");
    let good_bearer = format!("Authorization: Bearer {api_token}");
    let enroll = format!("/v1/rotations/{done}/enroll");
    let with_secret = |extra: &str| format!(r#"{{"secret":"{mid}"{extra}}}"#).into_bytes();
    let mut big = br#"{"secret":""#.to_vec();
    while big.len() < 70 * 1024 {
        big.extend_from_slice(mid.as_bytes());
    }
    big.extend_from_slice(br#""}"#);
    let bad: Vec<BadRequest> = vec![
        ("GET", "/v1/nothing".into(), vec![], None, 404),
        ("DELETE", "/v1/status".into(), vec![], None, 405),
        ("POST", enroll.clone(), vec![], Some(with_secret("")), 415),
        (
            "POST",
            enroll.clone(),
            vec![json],
            Some(with_secret("")),
            409,
        ),
        (
            "POST",
            enroll.clone(),
            vec![json],
            Some(with_secret(r#","key_id":7"#)),
            400,
        ),
        (
            "POST",
            enroll.clone(),
            vec![json],
            Some(with_secret(r#","extra":1"#)),
            400,
        ),
        (
            "POST",
            enroll.clone(),
            vec![json],
            Some(format!(r#"{{"secret":"{mid}"#).into_bytes()),
            400,
        ),
        ("POST", enroll.clone(), vec![json], Some(big), 413),
        (
            "POST",
            "/v1/rotations/01a00000-0000-7000-8000-000000000000/enroll".into(),
            vec![json],
            Some(with_secret("")),
            404,
        ),
        (
            "POST",
            "/v1/rotate".into(),
            vec![json],
            Some(br#"{"key":"app","reason":5}"#.to_vec()),
            400,
        ),
        ("GET", "/v1/audit?after=x".into(), vec![], None, 400),
        ("GET", "/v1/rotations/nope".into(), vec![], None, 404),
        (
            "PATCH",
            "/orgs/demo-org/api-keys/rotate/ci-bot".into(),
            vec![json, &wrong_bearer],
            Some(b"{}".to_vec()),
            401,
        ),
        (
            "PATCH",
            "/orgs/local/api-keys/rotate/app".into(),
            vec![json, &good_bearer],
            Some(b"{}".to_vec()),
            404,
        ),
        (
            "PATCH",
            "/orgs/demo-org/api-keys/rotate/ci-bot?pskId=nope".into(),
            vec![json, &good_bearer],
            Some(b"{}".to_vec()),
            400,
        ),
        (
            "GET",
            format!("/v1/rotations/{done}/encrypted-secret"),
            vec![&wrong_bearer],
            None,
            401,
        ),
    ];
    let n_bad = bad.len();
    for (method, path, headers, body, want) in bad {
        let (code, answer) = api(&d, method, &path, &headers, body.as_deref());
        assert_eq!(
            code,
            want,
            "{method} {path}: {}",
            String::from_utf8_lossy(&answer)
        );
        let v: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: not a JSON error ({e}): {}",
                String::from_utf8_lossy(&answer)
            )
        });
        assert_eq!(v["error"]["code"], want, "{v}");
        scanned_api.push((format!("error body of {method} {path} ({code})"), answer));
    }
    // The CLI refusing a secret on stdin says why, not what.
    let out: Output = d.enroll(&[&done], &mid);
    assert!(!out.status.success());
    scanned_api.push((
        "keyrot enroll (refused) stdout+stderr".into(),
        [out.stdout, out.stderr].concat(),
    ));

    // 6. What keyrot says about itself: views, audit, CLI output.
    for path in [
        "/v1/status",
        "/v1/keys",
        "/v1/history?limit=1000",
        "/v1/plan",
        "/v1/audit?limit=1000",
    ] {
        let (code, body) = api(&d, "GET", path, &[], None);
        assert_eq!(code, 200, "{path}");
        scanned_api.push((format!("GET {path}"), body));
    }
    let audit: Value = serde_json::from_slice(&scanned_api.last().unwrap().1).unwrap();
    let audit_entries = audit
        .as_array()
        .map_or(0, Vec::len)
        .max(audit["entries"].as_array().map_or(0, Vec::len));
    assert!(audit_entries >= 8, "{audit:#}");
    for r in d.rotations() {
        let id = r["id"].as_str().unwrap();
        let (_, body) = api(&d, "GET", &format!("/v1/rotations/{id}"), &[], None);
        scanned_api.push((format!("GET /v1/rotations/{id}"), body));
        let out = d.cli(&["rotation", "show", id]);
        scanned_api.push((format!("keyrot rotation show {id}"), out.stdout));
    }
    for args in [vec!["status"], vec!["history"], vec!["keys"], vec!["plan"]] {
        let out = d.cli(&args);
        scanned_api.push((
            format!("keyrot {}", args.join(" ")),
            [out.stdout, out.stderr].concat(),
        ));
    }

    // Mail: every message of the four rotations has been delivered: one
    // for the slot's first key, then "completed" and "old key revoked" for
    // each of the three replacements.
    let mails: Vec<(String, Vec<u8>)> = match &smtp {
        Some(server) => {
            let got = server.wait_accepted(MAILS, Duration::from_secs(30), &d.log());
            got.into_iter()
                .enumerate()
                .flat_map(|(i, m)| {
                    let mut v = vec![(format!("smtp message {i} (raw)"), m.raw.clone())];
                    v.extend(m.parts.iter().map(|(t, p)| {
                        (format!("smtp message {i} part {t}"), p.as_bytes().to_vec())
                    }));
                    v
                })
                .collect()
        }
        None => {
            let ok = wait_until(Duration::from_secs(30), || {
                common::all_files(&d.dir.join("mail")).len() >= MAILS
            });
            assert!(ok, "fewer than {MAILS} mails; log:\n{}", d.log());
            common::all_files(&d.dir.join("mail"))
                .into_iter()
                .map(|(p, b)| (p.display().to_string(), b))
                .collect()
        }
    };
    let n_mails = mails.iter().filter(|(n, _)| !n.contains(" part ")).count();
    assert_eq!(mode(&d.dir.join("control.sock")), 0o660, "control socket");
    d.signal(libc::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(20)).is_some(),
        "no clean stop"
    );

    // The scanner finds each marker where it belongs.
    let seeds = fs::read(sb_dir.join("seed-secrets.json")).unwrap();
    for k in [
        "ci-bot",
        "read only demo",
        "legacy-admin",
        "reporting",
        "keyrot",
    ] {
        sc.found_in(
            &format!("sandbox seeded secret of {k}"),
            "seed-secrets.json",
            &seeds,
        );
    }
    sc.found_in(
        "sandbox PSK (hex)",
        "psk.hex",
        &fs::read(sb_dir.join("psk.hex")).unwrap(),
    );
    sc.found_in(
        "caller PSK (hex)",
        "caller-psk.hex",
        &fs::read(d.dir.join("caller-psk.hex")).unwrap(),
    );
    sc.found_in(
        "OpenBao token",
        "bao-token",
        &fs::read(d.dir.join("bao-token")).unwrap(),
    );
    sc.found_in(
        "rotate API bearer token",
        "api-token",
        &fs::read(d.dir.join("api-token")).unwrap(),
    );
    sc.found_in(
        "master key (hex)",
        "master.key",
        &fs::read(d.dir.join("master.key")).unwrap(),
    );
    sc.found_in(
        "ci-bot's new secret",
        "the file sink",
        &fs::read(d.dir.join("out/ci-bot.json")).unwrap(),
    );
    if smtp_password.is_some() {
        sc.found_in(
            "SMTP password",
            "smtp-pass",
            &fs::read(d.dir.join("smtp-pass")).unwrap(),
        );
        // AUTH PLAIN carries it in base64 inside a longer blob: found.
        let plain = base64::engine::general_purpose::STANDARD
            .encode(format!("\0keyrot\0{}", smtp_password.as_deref().unwrap()));
        assert!(
            sc.find(plain.as_bytes())
                .iter()
                .any(|(m, _)| m == "SMTP password")
        );
    }

    // 7. The scan.
    let log = fs::read(d.log_path()).unwrap();
    let mut lines = 0;
    for (i, line) in log.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if variant == Variant::JsonLogSmtp {
            let v: Result<Value, _> = serde_json::from_slice(line);
            assert!(
                v.is_ok(),
                "log line {} is not JSON: {}",
                i + 1,
                String::from_utf8_lossy(line)
            );
        }
        sc.scan("log lines", &format!("log line {}", i + 1), line);
    }
    for (name, raw) in &mails {
        for (j, view) in mail_views(raw).iter().enumerate() {
            sc.scan("mail", &format!("{name} view {j}"), view);
        }
    }
    for (name, body) in &scanned_api {
        sc.scan("control API and CLI", name, body);
    }
    for (p, b) in common::all_files(&d.dir.join("state")) {
        sc.scan("store (final)", &p.display().to_string(), &b);
    }
    // Everything else keyrot wrote in its directory, besides the sinks
    // (whose job is to hold the secret) and the files the test wrote.
    let ours = [
        "keyrot.toml",
        "bao-token",
        "api-token",
        "caller-psk.hex",
        "smtp-pass",
        "master.key",
        "daemon.log",
    ];
    for (p, b) in common::all_files(&d.dir) {
        let rel = p.strip_prefix(&d.dir).unwrap();
        let skip = ["out", "env", "sandbox", "state", "mail"]
            .iter()
            .any(|s| rel.starts_with(s))
            || ours.iter().any(|o| rel == Path::new(o));
        if !skip {
            sc.scan("other files", &rel.display().to_string(), &b);
        }
    }

    // 8. File modes, as the docs promise.
    assert_eq!(mode(&d.dir.join("state/state.redb")), 0o600, "store file");
    assert_eq!(mode(&d.dir.join("master.key")), 0o600, "master key file");
    for name in ["app", "ci-bot", "reporting"] {
        assert_eq!(
            mode(&d.dir.join(format!("out/{name}.json"))),
            0o600,
            "file sink default"
        );
    }
    for name in ["app", "ci-bot"] {
        assert_eq!(
            mode(&d.dir.join(format!("env/{name}.env"))),
            0o640,
            "file sink mode 0640"
        );
    }

    assert!(
        sc.hits.is_empty(),
        "secrets found where they do not belong:\n{}",
        sc.hits.join("\n")
    );
    let kinds: Vec<String> = sc
        .kinds
        .iter()
        .map(|(k, (n, b))| format!("{k}: {n} places, {b} bytes"))
        .collect();
    format!(
        "{} markers in {} forms; {} places ({} log lines, {} mails, {} bad requests, {} audit entries), {} bytes scanned; {}; secrets leaked: 0",
        sc.markers.len(),
        sc.forms(),
        sc.places,
        lines,
        n_mails,
        n_bad,
        audit_entries,
        sc.bytes,
        kinds.join("; ")
    )
}

#[test]
fn no_secret_in_text_logs_mail_files_audit_api_errors_or_the_store() {
    let figures = run(Variant::TextLogFileMail);
    println!("hygiene (text log, file mail): {figures}");
}

#[test]
fn no_secret_in_json_logs_or_smtp_mail_and_auth() {
    let figures = run(Variant::JsonLogSmtp);
    println!("hygiene (JSON log, SMTP with AUTH): {figures}");
}
