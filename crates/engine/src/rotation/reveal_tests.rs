//! The caller's envelope through the real state machine: a real store in a
//! temp dir, the local provider, a file sink, a manual clock, and a config
//! loaded from TOML with a `[[psk]]` whose key is a file.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::rotation::StartRequest;
use keyrot_config::load_str;
use keyrot_core::clock::ManualClock;
use keyrot_core::crypto::psk::{open, store_key};
use keyrot_core::crypto::{MasterKey, hex_encode, sha256_hex};
use keyrot_core::model::{Initiator, KeyRecord, Trigger};
use keyrot_core::policy::testutil::{dur, ts};
use keyrot_core::wake::Wake;

/// The PSK the tests seal under.
const PSK: [u8; 32] = [0x42; 32];

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
}

/// A config with provider `local`, sink `out`, policy `p` and `extra`.
fn config_text(dir: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[[provider]]
name = "local"
type = "local"

[[sink]]
name = "out"
type = "file"
path = "{out}/{{name}}.json"
format = "json"

[[policy]]
name = "p"
{extra}
"#,
        out = dir.display()
    )
}

fn psk_file(dir: &std::path::Path, content: &str) -> std::path::PathBuf {
    let path = dir.join("psk.hex");
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn build(dir: &std::path::Path, extra: &str) -> Result<(Arc<Store>, Runtime), String> {
    let cfg = load_str(&dir.join("keyrot.toml"), &config_text(dir, extra)).unwrap();
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("state-{n}.redb"));
    let store = Arc::new(Store::open(&path, MasterKey::generate()).unwrap());
    let rt = Runtime::build(Arc::new(cfg), &store)?;
    Ok((store, rt))
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let psk = psk_file(dir.path(), &format!("{}\n", hex_encode(&PSK)));
    let extra = format!(
        "[[psk]]\nid = \"p1\"\nkey = {{ file = \"{}\" }}\n",
        psk.display()
    );
    let (store, rt) = build(dir.path(), &extra).unwrap();
    let clock = Arc::new(ManualClock::new(ts("2026-11-23T10:00:00Z")));
    let engine = Engine::new(
        store,
        rt,
        clock.clone(),
        Wake::new(),
        CancellationToken::new(),
        TaskTracker::new(),
    );
    let slot = KeyRecord {
        hooks: Vec::new(),
        slot: "local/ci".into(),
        provider: "local".into(),
        name: "ci".into(),
        current: None,
        policy: "p".into(),
        next_due: None,
        due_reason: None,
        active_rotation: None,
        last_rotated_at: None,
        last_started_at: None,
        synced_at: None,
        sinks: vec!["out".into()],
        scopes: vec!["read:all".into()],
        contacts: vec![],
        group: None,
        ended: None,
        kept_secret: None,
    };
    engine.store().write(|tx| tx.put_key(&slot)).unwrap();
    Fixture {
        _dir: dir,
        engine,
        clock,
    }
}

fn revealing(psk: &str) -> StartRequest {
    StartRequest {
        trigger: Trigger::Manual,
        reason: "api".into(),
        initiator: Initiator::default(),
        new_expires_at: None,
        old_expires_at: None,
        notify_contacts: false,
        reveal_psk: Some(psk.into()),
    }
}

async fn settle(f: &Fixture, id: &str) -> RotationRecord {
    for _ in 0..500 {
        if !f.engine.running().contains(id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.engine.store().rotation(id).unwrap().unwrap()
}

#[tokio::test]
async fn envelope_is_sealed_with_issued_and_handed_out_once() {
    let f = fixture();
    let started = f.engine.start("local/ci", revealing("p1")).await.unwrap();
    let done = settle(&f, &started.id).await;
    assert_eq!(done.state, RotationState::Completed, "{done:?}");
    let new = done.new_key.clone().unwrap();
    // Completed right after Issued: the envelope waits for its caller.
    assert!(f.engine.store().has_secret(&store_key(&done.id)).unwrap());

    let env = f.engine.take_envelope(&done.id).await.unwrap().unwrap();
    let plain = open(&PSK, &new.id, env.expose_secret()).unwrap();
    assert_eq!(sha256_hex(plain.as_bytes()), new.secret_sha256);
    assert!(
        open(&PSK, "another-key", env.expose_secret()).is_err(),
        "AAD binds the key id"
    );
    assert!(f.engine.take_envelope(&done.id).await.unwrap().is_none());
    assert!(!f.engine.store().has_secret(&store_key(&done.id)).unwrap());
    let audit = f.engine.store().audit(0, 100).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.event == "rotation.secret_handed_out"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn unknown_psk_fails_before_any_key_is_issued() {
    let f = fixture();
    let started = f.engine.start("local/ci", revealing("nope")).await.unwrap();
    let done = settle(&f, &started.id).await;
    assert_eq!(done.state, RotationState::Failed);
    assert_eq!(done.failed_in, Some(RotationState::Pending));
    assert!(done.new_key.is_none());
    assert!(
        done.last_error.as_deref().unwrap().contains("\"nope\""),
        "{:?}",
        done.last_error
    );
    assert!(f.engine.store().local_keys().unwrap().is_empty());
}

#[tokio::test]
async fn envelopes_nobody_took_are_swept_after_the_grace() {
    let f = fixture();
    let started = f.engine.start("local/ci", revealing("p1")).await.unwrap();
    let done = settle(&f, &started.id).await;
    assert_eq!(done.state, RotationState::Completed);
    assert_eq!(f.engine.sweep_envelopes().await.unwrap(), 0, "too young");
    f.clock.advance(dur("9m"));
    assert_eq!(f.engine.sweep_envelopes().await.unwrap(), 0);
    f.clock.advance(dur("1m"));
    assert_eq!(f.engine.sweep_envelopes().await.unwrap(), 1);
    assert!(!f.engine.store().has_secret(&store_key(&done.id)).unwrap());
    assert!(f.engine.take_envelope(&done.id).await.unwrap().is_none());
}

#[test]
fn bad_psks_fail_the_build_naming_the_psk() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "[[psk]]\nid = \"gone\"\nkey = { file = \"/nonexistent/psk.hex\" }\n";
    let e = build(dir.path(), missing).err().unwrap();
    assert!(e.starts_with("psk \"gone\": cannot read its key"), "{e}");

    let path = psk_file(dir.path(), "not-hex-but-a-secret-value");
    let bad = format!(
        "[[psk]]\nid = \"short\"\nkey = {{ file = \"{}\" }}\n",
        path.display()
    );
    let e = build(dir.path(), &bad).err().unwrap();
    assert!(e.starts_with("psk \"short\": its key"), "{e}");
    assert!(e.contains("64 hex characters"), "{e}");
    assert!(!e.contains("secret-value"), "never the key: {e}");
}

#[test]
fn api_tokens_must_be_long_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let long = dir.path().join("long");
    std::fs::write(&long, "0123456789abcdef0123\n").unwrap();
    let token = |name: &str, file: &std::path::Path| {
        format!(
            "[[api_token]]\nname = \"{name}\"\ntoken = {{ file = \"{}\" }}\nkeys = [\"local/*\"]\n",
            file.display()
        )
    };
    let e = build(dir.path(), &token("ci", &short)).err().unwrap();
    assert!(
        e.contains("api_token \"ci\"") && e.contains("at least 16"),
        "{e}"
    );
    assert!(!e.contains("abc"), "{e}");
    let two = format!("{}{}", token("a", &long), token("b", &long));
    let e = build(dir.path(), &two).err().unwrap();
    assert!(e.contains("the same token"), "{e}");
    assert!(build(dir.path(), &token("a", &long)).is_ok());
}
