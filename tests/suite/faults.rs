//! Faulty peers, through the real daemon: `keyrot sandbox` (the proposed
//! Admin API) and a real OpenBao behind the fault proxy of
//! `common::fault_proxy`, which answers 500/503/429 (with `Retry-After`),
//! loses answers, stalls past the client timeout, resets and closes
//! connections, cuts and garbles JSON, and flips bytes of the sealed
//! secret; and an OpenBao behind TLS with a certificate for another name.
//!
//! Expected, and checked: transient faults are retried with backoff and
//! `Retry-After` honoured (the gap is measured at the proxy); a rotation
//! that runs out of its retry budget is Failed with a notification and the
//! old key untouched (it still authenticates at the provider); a lost
//! answer never makes a second key; a tampered sealed secret fails at once
//! with a message naming the key it could not read, which resume then
//! adopts and abort revokes (the provider answers the repeated call, same
//! Idempotency-Key, with that key), so no key is orphaned; a certificate
//! for another name is a transient error that names the problem. keyrot never
//! panics and keeps serving `keyrot status` throughout.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::fault_proxy::{Fault, FaultProxy, Seal, TlsCerts, TlsEndpoint};
use common::peers::{self, Peer, bao_api};
use common::{Daemon, Sandbox, wait_until};
use serde_json::Value;

/// The path of the proposed rotate call, as the proxy's rules match it.
const ROTATE: &str = "/api-keys/rotate/";
/// The path the provider verifies a new key with.
const COUNT: &str = "/api-keys/count";
/// The path of the revoke call.
const REVOKE: &str = "/api-keys/revoke/";

/// A daemon whose `atlassian` provider talks to a sandbox through a proxy.
struct World {
    /// The daemon (its directory holds the sandbox's too).
    d: Daemon,
    /// The sandbox.
    sb: Sandbox,
    /// The proxy in front of the sandbox.
    api: FaultProxy,
}

/// `secret` in a 0600 file `name` under `dir`.
fn write_secret(dir: &std::path::Path, name: &str, secret: &str) {
    let p = dir.join(name);
    fs::write(&p, secret).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A sandbox behind a proxy and a daemon with `attempts` attempts per step
/// (1-2 s backoff), a 2 s provider timeout, key `ci-bot` writing to the
/// file sink `out` and to `sinks` (extra `[[sink]]` tables in `more`).
fn world(attempts: u32, sinks: &[&str], more: &str) -> World {
    let mut d = Daemon::new("");
    let sb = Sandbox::start(&d.dir.join("sandbox"));
    let api = FaultProxy::start(&sb.url);
    write_secret(&sb.dir, "admin.key", &sb.seeded_secret("keyrot"));
    write_secret(&d.dir, "bao-token", "root\n");
    let s = sb.dir.display();
    let mut all = vec!["\"out\"".to_string()];
    all.extend(sinks.iter().map(|s| format!("{s:?}")));
    let config = format!(
        r#"{base}
[[provider]]
name = "atlassian"
type = "atlassian"
org_id = "demo-org"
base_url = "{proxy}/admin/api-access/v1"
admin_key = {{ file = "{s}/admin.key" }}
rotate_api = "proposed"
psk_id = "demo"
psk = {{ file = "{s}/psk.hex" }}
timeout = "2s"
{more}
[[policy]]
name = "fast"
notify = ["ops@example.com"]
new_key_lifetime = "180d"
rotate_before_expiry = "1d"
overlap = "1s"
jitter = false

[[key]]
name = "ci-bot"
provider = "atlassian"
policy = "fast"
sinks = [{sinks}]
"#,
        base = common::base_config(attempts),
        proxy = api.url,
        sinks = all.join(", "),
    );
    fs::write(d.config_path(), config).unwrap();
    d.start();
    assert!(
        wait_until(Duration::from_secs(20), || current_key(&d).is_some()),
        "ci-bot was not adopted; log:\n{}",
        d.log()
    );
    World { d, sb, api }
}

/// The id of ci-bot's current key, as keyrot sees it.
fn current_key(d: &Daemon) -> Option<String> {
    d.json(&["status", "--json"])["keys"]
        .as_array()?
        .iter()
        .find(|k| k["name"] == "ci-bot")?["key_id"]
        .as_str()
        .map(str::to_string)
}

/// Starts a rotation of `key`; its id.
fn rotate(d: &Daemon, key: &str) -> String {
    d.json(&["rotate", key, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// keyrot did not panic and still answers `keyrot status`.
fn assert_serving(d: &Daemon) {
    let log = d.log();
    assert!(!log.contains("panicked"), "keyrot panicked:\n{log}");
    // The sandbox (`keyrot sandbox`, in the daemon's directory) neither.
    let sandbox = fs::read_to_string(d.dir.join("sandbox/sandbox.log")).unwrap_or_default();
    assert!(
        !sandbox.contains("panicked"),
        "the sandbox panicked:\n{sandbox}"
    );
    let out = d.cli(&["status"]);
    assert!(
        out.status.success(),
        "keyrot status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The status `GET .../api-keys/count` answers with `secret` as bearer,
/// straight to the sandbox (not through the proxy).
fn authenticates(sb: &Sandbox, secret: &str) -> u16 {
    let out = sb.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Authorization: Bearer {secret}"),
        &format!(
            "{}/admin/api-access/v1/orgs/demo-org/api-keys/count",
            sb.url
        ),
    ]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The sandbox's keys named `name`.
fn keys_named(sb: &Sandbox, name: &str) -> Vec<Value> {
    sb.keys()
        .into_iter()
        .filter(|k| k["name"] == name)
        .collect()
}

/// The ids of the sandbox's live (not revoked) keys named `name`.
fn live_named(sb: &Sandbox, name: &str) -> Vec<String> {
    keys_named(sb, name)
        .into_iter()
        .filter(|k| k["revokedAt"].is_null())
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every mail keyrot wrote (file transport), as text with quoted-printable
/// undone (long lines are soft-broken, which would split a key id).
fn mails(d: &Daemon) -> Vec<String> {
    common::all_files(&d.dir.join("mail"))
        .into_iter()
        .map(|(_, b)| unquote(&String::from_utf8_lossy(&b)))
        .collect()
}

/// Quoted-printable decoding (soft line breaks and `=XX`).
fn unquote(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let b = joined.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (b[i], hex) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The audit chain, as the control API serves it.
fn audit(d: &Daemon) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(d.dir.join("control.sock"))
        .arg("http://keyrot/v1/audit?limit=1000")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Log lines of retries of rotation `id`.
fn retries(d: &Daemon, id: &str) -> Vec<String> {
    d.log()
        .lines()
        .filter(|l| l.contains(id) && l.contains("will retry"))
        .map(str::to_string)
        .collect()
}

/// Checks that the faults of rule `rule` were injected in order, each
/// followed by a retry no sooner than backoff (0.5 s at least) or its
/// Retry-After allows, and that a clean pass ended them.
fn assert_retried(p: &FaultProxy, rule: usize, faults: &[Fault]) {
    let evs = p.events_of(rule);
    assert!(evs.len() > faults.len(), "{evs:#?}");
    let got: Vec<&Fault> = evs.iter().map(|e| &e.fault).take(faults.len()).collect();
    assert_eq!(got, faults.iter().collect::<Vec<_>>());
    assert!(
        evs.iter().take(faults.len()).all(|e| e.note.is_empty()),
        "{evs:#?}"
    );
    assert_eq!(evs[faults.len()].fault, Fault::Pass);
    // (After a stall the client gave up before the proxy did: no gap.)
    for w in evs.windows(2).take(faults.len()) {
        if matches!(w[0].fault, Fault::Stall(_)) {
            continue;
        }
        let gap = w[1].arrived.duration_since(w[0].done);
        assert!(
            gap >= Duration::from_millis(500),
            "retried after {gap:?}: {w:#?}"
        );
    }
    for (gap, after) in p.retry_after_gaps(rule) {
        assert!(
            gap >= after,
            "retried {gap:?} after a Retry-After of {after:?}"
        );
    }
}

/// Prints what `p` injected, for the figures in docs/reliability.md.
fn figures(test: &str, p: &FaultProxy) {
    let injected = p.injected();
    let mut kinds: Vec<&str> = injected.iter().map(|e| e.fault.name()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    println!(
        "{test}: {} requests, {} faults injected ({})",
        p.events().len(),
        injected.len(),
        kinds.join(", ")
    );
}

#[test]
fn lost_answers_resets_and_timeouts_of_the_rotate_call_are_retried_without_a_second_key() {
    let w = world(10, &[], "");
    let old = current_key(&w.d).unwrap();
    let faults = vec![
        Fault::retry_after(503, 2),
        Fault::Reset,
        Fault::Close,
        Fault::Stall(Duration::from_secs(3)),
        Fault::LoseAnswer(500),
        Fault::ShortBody,
    ];
    let rule = w.api.script("PATCH", ROTATE, faults.clone());
    let id = rotate(&w.d, "ci-bot");
    // Still serving while the provider misbehaves.
    assert!(wait_until(Duration::from_secs(30), || w.api.pending(rule) <= 3));
    assert_serving(&w.d);
    let rec = w.d.wait_state(&id, "Completed", 90);
    assert_retried(&w.api, rule, &faults);
    let lines = retries(&w.d, &id);
    assert_eq!(lines.len(), faults.len(), "{lines:#?}");
    let text = lines.join("\n");
    for needle in ["503", "no answer within 2s", "500"] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    // Faults that reached the sandbox made keys whose answers were lost;
    // keyrot never relies on the Idempotency-Key: it found each by listing
    // and revoked it before rotating again. One key lives: the new one.
    let new = rec["new_key"]["id"].as_str().unwrap();
    let live = live_named(&w.sb, "ci-bot");
    assert_eq!(
        live,
        vec![new.to_string()],
        "orphans left: {:#?}",
        keys_named(&w.sb, "ci-bot")
    );
    let sink = w.d.sink("ci-bot").unwrap();
    assert_eq!(
        keyrot_core::crypto::sha256_hex(sink["secret"].as_str().unwrap().as_bytes()),
        w.sb.key(new)["secretSha256"].as_str().unwrap()
    );
    assert!(w.sb.key(&old)["revokedAt"].is_string());
    figures("rotate: lost answers, resets, timeouts", &w.api);
    assert_serving(&w.d);
}

#[test]
fn garbled_answers_and_throttling_are_retried_and_retry_after_is_honoured() {
    let w = world(6, &[], "");
    let old = current_key(&w.d).unwrap();
    let rotate_faults = vec![
        Fault::TruncatedJson,
        Fault::MalformedJson,
        Fault::retry_after(429, 3),
    ];
    let verify_faults = vec![Fault::status(500), Fault::retry_after(429, 2)];
    let revoke_faults = vec![Fault::retry_after(503, 2), Fault::Reset];
    let r1 = w.api.script("PATCH", ROTATE, rotate_faults.clone());
    let r2 = w.api.script("GET", COUNT, verify_faults.clone());
    let r3 = w.api.script("PATCH", REVOKE, revoke_faults.clone());
    let id = rotate(&w.d, "ci-bot");
    let rec = w.d.wait_state(&id, "Completed", 90);
    assert_retried(&w.api, r1, &rotate_faults);
    assert_retried(&w.api, r2, &verify_faults);
    assert_retried(&w.api, r3, &revoke_faults);
    let text = retries(&w.d, &id).join("\n");
    for needle in ["truncated JSON", "malformed JSON", "429", "500", "503"] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    // Retry-After of the 429 on the rotate call, seen from keyrot's side.
    let at = |state: &str| -> jiff::Timestamp {
        let h = rec["history"].as_array().unwrap();
        h.iter().find(|t| t["to"] == state).unwrap()["at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(at("Issued").duration_since(at("Issuing")) >= jiff::SignedDuration::from_secs(3));
    assert_eq!(
        live_named(&w.sb, "ci-bot"),
        vec![rec["new_key"]["id"].as_str().unwrap().to_string()]
    );
    assert!(w.sb.key(&old)["revokedAt"].is_string());
    assert_eq!(
        rec["new_key"]["id"].as_str(),
        current_key(&w.d).as_deref(),
        "{rec:#}"
    );
    figures("rotate/verify/revoke: garbled answers, throttling", &w.api);
    assert_serving(&w.d);
}

#[test]
fn a_provider_failing_past_the_budget_fails_the_rotation_and_the_old_key_keeps_working() {
    let w = world(3, &[], "");
    let old = current_key(&w.d).unwrap();
    let faults = vec![
        Fault::status(500),
        Fault::Reset,
        Fault::Stall(Duration::from_secs(3)),
    ];
    let rule = w.api.script("PATCH", ROTATE, faults.clone());
    let id = rotate(&w.d, "ci-bot");
    let rec = w.d.wait_state(&id, "Failed", 60);
    assert_eq!(rec["failed_in"], "Issuing", "{rec:#}");
    assert_eq!(rec["attempts"], 3, "{rec:#}");
    let err = rec["last_error"].as_str().unwrap();
    assert!(err.contains("no answer within 2s"), "{err}");
    // The stalled request is recorded when the proxy gives up on it.
    assert!(wait_until(Duration::from_secs(5), || w
        .api
        .events_of(rule)
        .len()
        >= 3));
    assert_eq!(w.api.events_of(rule).len(), 3, "a fourth attempt was made");
    // Nothing reached the sandbox: no new key, and the old one still works.
    let keys = keys_named(&w.sb, "ci-bot");
    assert_eq!(keys.len(), 1, "{keys:#?}");
    assert!(w.sb.key(&old)["revokedAt"].is_null());
    assert_eq!(authenticates(&w.sb, &w.sb.seeded_secret("ci-bot")), 200);
    assert_eq!(current_key(&w.d).as_deref(), Some(old.as_str()));
    // People are told, with the commands.
    let ok = wait_until(Duration::from_secs(10), || {
        mails(&w.d)
            .iter()
            .any(|m| m.contains("FAILED rotation of atlassian/ci-bot"))
    });
    assert!(ok, "no failure mail: {:#?}", mails(&w.d));
    let mail = mails(&w.d)
        .into_iter()
        .find(|m| m.contains("FAILED rotation"))
        .unwrap();
    assert!(
        mail.contains(&format!("keyrot rotation resume {id}")),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("The old key {old} is untouched")),
        "{mail}"
    );
    assert!(audit(&w.d).contains("rotation.failed"));
    assert_serving(&w.d);

    // The provider is back: resume finishes the same rotation.
    let out = w.d.cli(&["rotation", "resume", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = w.d.wait_state(&id, "Completed", 60);
    assert_eq!(keys_named(&w.sb, "ci-bot").len(), 2);
    assert_eq!(rec["old_key_id"], old.as_str());
    figures("provider down past the budget", &w.api);
    assert_serving(&w.d);
}

#[test]
fn a_tampered_sealed_secret_fails_at_once_naming_the_key_it_could_not_read() {
    let w = world(5, &[], "");
    let old = current_key(&w.d).unwrap();
    w.api
        .script("PATCH", ROTATE, vec![Fault::MangleSealed(Seal::Ciphertext)]);
    let id = rotate(&w.d, "ci-bot");
    let rec = w.d.wait_state(&id, "Failed", 30);
    // Permanent: one attempt, no retry.
    assert_eq!(rec["attempts"], 1, "{rec:#}");
    assert_eq!(rec["failed_in"], "Issuing");
    assert!(rec["new_key"].is_null(), "{rec:#}");
    // The sandbox made key X; keyrot could not read its secret. X is named
    // in the error, the failure mail and the audit chain.
    let made: Vec<String> = keys_named(&w.sb, "ci-bot")
        .into_iter()
        .filter(|k| k["id"] != old.as_str())
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let x = &made[0];
    let err = rec["last_error"].as_str().unwrap();
    assert!(
        err.contains("sealed secret does not open under PSK demo (wrong PSK or tampered response)")
            && err.contains(&format!("new key {x} revoked at once"))
            && err.contains(&format!("old key {old} untouched")),
        "{err}"
    );
    // A key nobody can ever read is not left live.
    assert!(w.sb.key(x)["revokedAt"].is_string());
    assert!(wait_until(Duration::from_secs(10), || mails(&w.d)
        .iter()
        .any(|m| m.contains("FAILED") && m.contains(x.as_str()))));
    assert!(audit(&w.d).contains(x.as_str()));
    // Nothing was distributed; the old key works on.
    assert!(w.d.sink("ci-bot").is_none());
    assert_eq!(authenticates(&w.sb, &w.sb.seeded_secret("ci-bot")), 200);
    assert_serving(&w.d);

    // Resume rotates again (the unreadable key X is gone, so there is
    // nothing to clean up): one new key, readable this time.
    let out = w.d.cli(&["rotation", "resume", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = w.d.wait_state(&id, "Completed", 30);
    let z = rec["new_key"]["id"].as_str().unwrap().to_string();
    assert_ne!(z, x.as_str());
    assert_eq!(live_named(&w.sb, "ci-bot"), vec![z.clone()]);
    assert!(w.sb.key(&old)["revokedAt"].is_string());

    // A flipped tag fails the same way on every repeat: each key whose
    // secret cannot be read is revoked at once, and abort has nothing left
    // to clean up.
    let tamper = w
        .api
        .always("PATCH", ROTATE, Fault::MangleSealed(Seal::Tag));
    let id2 = rotate(&w.d, "ci-bot");
    let rec2 = w.d.wait_state(&id2, "Failed", 30);
    assert_eq!(rec2["attempts"], 1);
    let y: Vec<String> = keys_named(&w.sb, "ci-bot")
        .into_iter()
        .filter(|k| k["id"] != x.as_str() && k["id"] != z.as_str() && k["id"] != old.as_str())
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(y.len(), 1, "{y:?}");
    let y = &y[0];
    let err = rec2["last_error"].as_str().unwrap();
    assert!(
        err.contains("tampered") && err.contains(&format!("new key {y} revoked at once")),
        "{err}"
    );
    assert!(w.sb.key(y)["revokedAt"].is_string());
    let out = w.d.cli(&["rotation", "abort", &id2]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.d.show(&id2)["state"], "Aborted");
    assert_eq!(w.api.events_of(tamper).len(), 1, "abort made a rotate call");
    assert_eq!(current_key(&w.d).as_deref(), Some(z.as_str()));
    assert_eq!(live_named(&w.sb, "ci-bot"), vec![z.clone()]);
    assert!(audit(&w.d).contains("rotation.aborted"));
    figures("tampered sealed secret", &w.api);
    assert_serving(&w.d);
}

/// A daemon with the local provider and sinks `out` and `bao` (OpenBao
/// behind a proxy, 2 s timeout), key `ci`; returns it once the slot's
/// first key is distributed.
fn local_with_bao(bao_url: &str, attempts: u32) -> Daemon {
    let mut d = Daemon::new("");
    write_secret(&d.dir, "bao-token", "root\n");
    let config = format!(
        r#"{base}
[[provider]]
name = "local"
type = "local"

[[sink]]
name = "bao"
type = "openbao"
address = "{bao_url}"
path = "keyrot/{{provider}}/{{name}}"
token = {{ file = "bao-token" }}
timeout = "2s"
{policy}
[[key]]
name = "ci"
provider = "local"
policy = "slow"
sinks = ["out", "bao"]
"#,
        base = common::base_config(attempts),
        policy = common::SLOW_POLICY,
    );
    fs::write(d.config_path(), config).unwrap();
    d.start();
    let ok = wait_until(Duration::from_secs(30), || {
        d.rotations().iter().any(|r| r["state"] == "Completed")
    });
    assert!(ok, "first key not distributed; log:\n{}", d.log());
    d
}

#[test]
fn openbao_faults_are_retried_and_leave_exactly_one_version_per_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let bao: Peer = peers::bao(&tmp.path().join("bao"));
    let p = FaultProxy::start(&bao.url);
    let d = local_with_bao(&p.url, 10);
    let data = "/v1/secret/data/keyrot/local/ci";
    let meta = "/v1/secret/metadata/keyrot/local/ci";
    let reads = vec![
        Fault::retry_after(503, 2),
        Fault::MalformedJson,
        Fault::ShortBody,
    ];
    // The second write fault is forwarded: OpenBao stores the version and
    // keyrot sees a cut answer; the next attempt reads it back and writes
    // nothing more.
    let writes = vec![Fault::Reset, Fault::TruncatedJson];
    let tags = vec![Fault::Stall(Duration::from_secs(3)), Fault::LoseAnswer(500)];
    let r1 = p.script("GET", data, reads.clone());
    let r2 = p.script("POST", data, writes.clone());
    let r3 = p.script("PATCH", meta, tags.clone());
    let id = rotate(&d, "ci");
    let rec = d.wait_state(&id, "Completed", 90);
    assert_retried(&p, r1, &reads);
    assert_eq!(
        p.events_of(r2).len(),
        writes.len(),
        "a third write was sent"
    );
    assert_eq!(p.events_of(r3).len(), tags.len(), "metadata written again");
    assert_eq!(p.injected().len(), 7);
    let text = retries(&d, &id).join("\n");
    for needle in [
        "sink \"bao\"",
        "503",
        "malformed JSON",
        "truncated JSON",
        "no answer within 2s",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let (code, body) = bao_api(&bao, "GET", "secret/metadata/keyrot/local/ci", None);
    assert_eq!(code, 200, "{body}");
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["data"]["current_version"], 2, "{m:#}");
    assert_eq!(m["data"]["versions"].as_object().unwrap().len(), 2, "{m:#}");
    assert_eq!(
        m["data"]["custom_metadata"]["keyrot_rotation_id"],
        id.as_str()
    );
    let (_, body) = bao_api(&bao, "GET", "secret/data/keyrot/local/ci", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["data"]["secret"], d.sink("ci").unwrap()["secret"]);
    assert_eq!(rec["sink_results"]["bao"]["version"], "v2", "{rec:#}");
    figures("openbao sink faults", &p);
    assert_serving(&d);
}

#[test]
fn a_certificate_for_another_name_fails_naming_it_and_resume_completes_once_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let bao: Peer = peers::bao(&tmp.path().join("bao"));
    let certs = TlsCerts::make(&tmp.path().join("certs"));
    let good = TlsEndpoint::start(&tmp.path().join("tls-good"), &certs.good, bao.port);
    let mut wrong = TlsEndpoint::start(&tmp.path().join("tls-wrong"), &certs.wrong, bao.port);
    let sinks = |name: &str, url: &str| {
        format!(
            r#"
[[sink]]
name = "{name}"
type = "openbao"
address = "{url}"
path = "{name}/{{provider}}/{{name}}"
token = {{ file = "bao-token" }}
ca_file = "{ca}"
timeout = "2s"
"#,
            ca = certs.ca.display()
        )
    };
    let more = sinks("bao-ok", &good.url) + &sinks("bao-tls", &wrong.url);
    let w = world(3, &["bao-ok", "bao-tls"], &more);
    let old = current_key(&w.d).unwrap();
    let id = rotate(&w.d, "ci-bot");
    let rec = w.d.wait_state(&id, "Failed", 60);
    assert_eq!(rec["failed_in"], "Distributing", "{rec:#}");
    let err = rec["last_error"].as_str().unwrap();
    assert!(
        err.contains("sink \"bao-tls\"")
            && err.contains("certificate")
            && (err.contains("NotValidForName") || err.contains("not valid for name")),
        "{err}"
    );
    let lines = retries(&w.d, &id);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains("certificate")),
        "{lines:#?}"
    );
    let failed_handshakes = wrong.failed_handshakes().len();
    assert!(failed_handshakes >= 3, "{:?}", wrong.failed_handshakes());
    let err_text = err.to_string();
    // The same CA works for the right name: bao-ok was written.
    assert!(
        rec["sink_results"]["bao-ok"]["written_at"].is_string(),
        "{rec:#}"
    );
    assert!(rec["sink_results"]["bao-tls"].is_null(), "{rec:#}");
    // The old key is untouched and works; the new one waits sealed.
    assert!(w.sb.key(&old)["revokedAt"].is_null());
    assert_eq!(authenticates(&w.sb, &w.sb.seeded_secret("ci-bot")), 200);
    let new = rec["new_key"]["id"].as_str().unwrap().to_string();
    assert!(w.sb.key(&new)["revokedAt"].is_null());
    assert!(
        wait_until(Duration::from_secs(10), || mails(&w.d).iter().any(|m| {
            m.contains("FAILED rotation of atlassian/ci-bot in distributing")
                && m.contains("already in sink(s) bao-ok, out")
        })),
        "{:#?}",
        mails(&w.d)
    );
    // Abort would revoke a key that consumers of bao-ok may read: refused.
    let out = w.d.cli(&["rotation", "abort", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resume"));
    assert_serving(&w.d);

    // The certificate is fixed: resume writes the missing sink and completes.
    wrong.restart_with(&certs.good);
    let out = w.d.cli(&["rotation", "resume", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = w.d.wait_state(&id, "Completed", 60);
    assert_eq!(rec["new_key"]["id"], new.as_str());
    let (code, body) = bao_api(&bao, "GET", "secret/data/bao-tls/atlassian/ci-bot", None);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["data"]["secret"],
        w.d.sink("ci-bot").unwrap()["secret"]
    );
    assert!(w.sb.key(&old)["revokedAt"].is_string());
    println!(
        "tls: {} handshakes refused; keyrot said: {err_text}",
        failed_handshakes
    );
    assert_serving(&w.d);
}
