//! Entry points for fuzzing: one function per target, each taking any
//! bytes, shared by the cargo-fuzz targets in `fuzz/` and the in-suite
//! replay (`crates/fuzzing/tests/fuzz_replay/`), so both run the same code.
//!
//! Pure parsers are called directly: the config loader, the PSK envelope,
//! AWS's error and XML readers, the Vault KV answers and the control API's
//! JSON bodies. Parsers that live inside a provider, a sink or the control
//! server are driven through their public surface in a [`Harness`]: the
//! `http` provider (every shipped preset), the `atlassian` provider and the
//! `openbao` sink answered by a scripted HTTP peer on loopback, the `exec`
//! provider answered by a scripted program, and the control server itself
//! on a unix socket. A target never panics, whatever the bytes; it returns
//! a [`Finding`] when an invariant it checks breaks (an error without a
//! message, a secret in an error, a control error that is not JSON).
//!
//! Input shapes are in `docs/reliability.md` and on each entry point;
//! every target also accepts any bytes. Nothing here is used by the
//! daemon. [`peer`] is the scripted HTTP peer, [`harness`] builds and
//! drives the providers, sinks and control server.

mod harness;
mod peer;

use std::fmt;
use std::path::Path;

use jiff::Timestamp;
use secrecy::{ExposeSecret as _, SecretString};

use keyrot::control::{EnrollRequest, ErrorBody, RotateRequest};
use keyrot_core::error::CallError;
use keyrot_peers::http::Answer;

pub use harness::Harness;

/// An invariant a fuzzed input broke (a panic reports itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding(pub String);

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a target returns.
pub type Outcome = Result<(), Finding>;

/// The pre-shared key the envelope targets open with (also in the seeds).
pub const FUZZ_PSK: [u8; 32] = [0x5a; 32];

/// Secrets the harness hands keyrot; none may appear in an error.
const MARKERS: [&str; 4] = [
    "ADMINKEY-fuzz-0a1b2c3d",
    "TOKEN-fuzz-4e5f6a7b",
    "VERIFY-fuzz-8c9d0e1f",
    "SECRETID-fuzz-2a3b4c5d",
];

/// A fixed "now", so runs replay exactly.
fn now() -> Timestamp {
    Timestamp::from_second(1_790_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn finding(what: impl Into<String>) -> Outcome {
    Err(Finding(what.into()))
}

/// The first line of `data` (the selector) and the rest.
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// `word` if it is one of `options`, else one chosen by its bytes (so every
/// mutation of a selector still selects something).
fn pick<'a>(word: &[u8], options: &[&'a str]) -> &'a str {
    let word = word.trim_ascii();
    if let Some(o) = options.iter().find(|o| o.as_bytes() == word) {
        return o;
    }
    let sum: usize = word.iter().map(|&b| usize::from(b)).sum();
    options[sum % options.len()]
}

/// An error must say something, and never carry a secret keyrot handed
/// over in the call (`secrets`, indexes into [`MARKERS`]): a peer may echo
/// what it was sent, and keyrot logs its errors.
fn check_error(e: &CallError, secrets: &[usize]) -> Outcome {
    if e.message.trim().is_empty() {
        return finding("an error with an empty message");
    }
    check_text("an error", &e.message, secrets)
}

fn check_text(what: &str, text: &str, secrets: &[usize]) -> Outcome {
    match secrets
        .iter()
        .filter_map(|&i| MARKERS.get(i))
        .find(|m| text.contains(*m))
    {
        Some(m) => finding(format!("{what} carries the secret {m:?}: {text}")),
        None => Ok(()),
    }
}

/// The config loader on any text: an error has diagnostics at real
/// positions; a valid config summarises.
pub fn config(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count() + 1;
    match keyrot_config::load_str(Path::new("/nonexistent/keyrot-fuzz/keyrot.toml"), &text) {
        Ok(cfg) => {
            let _ = keyrot_config::summary(&cfg, now());
            let _ = keyrot_config::secret_refs(&cfg).len();
            Ok(())
        }
        Err(errors) => {
            if errors.diagnostics.is_empty() {
                return finding("a config error with no diagnostic");
            }
            for d in &errors.diagnostics {
                if d.line == 0 || d.column == 0 || d.line > lines + 1 || d.message.is_empty() {
                    return finding(format!("a diagnostic out of place: {d}"));
                }
            }
            let _ = errors.to_string();
            Ok(())
        }
    }
}

/// The PSK envelope: `parse_psk` on the first line, `open` of the rest
/// under [`FUZZ_PSK`] with the first line as key id, `open_response` of
/// the rest as a rotate API answer, and seal-then-open round trips.
pub fn envelope(data: &[u8]) -> Outcome {
    use keyrot_core::crypto::psk;
    let (first, rest) = split_line(data);
    let _ = psk::parse_psk(first);
    let _ = psk::parse_psk(data);
    let key_id = String::from_utf8_lossy(first);
    let text = String::from_utf8_lossy(rest);
    let _ = psk::open(&FUZZ_PSK, &key_id, &text).map(|s| s.len());
    match keyrot::cli::decrypt::open_response(&text, &FUZZ_PSK) {
        Ok(secret) => {
            let _ = secret.len();
        }
        Err(e) => {
            if e.to_string().is_empty() {
                return finding("open_response failed without a message");
            }
        }
    }
    let mut nonce = [0u8; 12];
    for (n, b) in nonce.iter_mut().zip(data) {
        *n = *b;
    }
    if let Ok(sealed) = psk::seal_with_nonce(&FUZZ_PSK, &nonce, &key_id, &text) {
        match psk::open(&FUZZ_PSK, &key_id, &sealed) {
            Ok(back) if back.as_str() == text => {}
            _ => return finding("a sealed envelope did not open to its plaintext"),
        }
        if psk::open(&FUZZ_PSK, &format!("{key_id}x"), &sealed).is_ok() {
            return finding("an envelope opened under another key id");
        }
    }
    Ok(())
}

/// An [`Answer`] made of a status, one header and a body.
fn answer(status: u16, header: Option<(&'static str, &[u8])>, body: &[u8]) -> Answer {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some((name, value)) = header
        && let Ok(v) = reqwest::header::HeaderValue::from_bytes(value)
    {
        headers.insert(name, v);
    }
    Answer {
        status: reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_REQUEST),
        headers,
        body: zeroize::Zeroizing::new(body.to_vec()),
    }
}

/// The status a byte stands for.
fn status_of(b: u8) -> u16 {
    const STATUSES: [u16; 12] = [200, 400, 403, 404, 408, 409, 412, 429, 500, 502, 503, 504];
    STATUSES[usize::from(b) % STATUSES.len()]
}

/// AWS error answers and the XML reader: the first line is the
/// `X-Amzn-ErrorType` header (its first byte also picks the status), the
/// rest the body.
pub fn aws(data: &[u8]) -> Outcome {
    let (header, body) = split_line(data);
    let status = status_of(header.first().copied().unwrap_or(0));
    let header = (!header.is_empty()).then_some(("x-amzn-errortype", header));
    let ans = answer(status, header, body);
    let _ = keyrot_peers::aws::error_code(&ans);
    let e = keyrot_peers::aws::api_error("provider \"fuzz\"", "fuzz", "AWS", &ans, now(), None);
    check_error(&e, &[])?;
    let text = String::from_utf8_lossy(body);
    for tag in [
        "Code",
        "Message",
        "AccessKeyMetadata",
        "member",
        "SecretAccessKey",
    ] {
        for inner in keyrot_peers::aws::xml::elements(&text, tag) {
            let _ = keyrot_peers::aws::xml::element(inner, "member");
        }
        let _ = keyrot_peers::aws::xml::element(&text, tag);
    }
    if keyrot_peers::aws::xml::text(&text).len() > text.len() {
        return finding("unescaping made the text longer");
    }
    Ok(())
}

/// Vault KV v2 answers: every answer shape keyrot reads, the
/// check-and-set and no-route detectors, and the error message built
/// from the body (the first byte picks the status).
pub fn vault(data: &[u8]) -> Outcome {
    use keyrot_peers::vault::kv;
    let _ = serde_json::from_slice::<kv::ReadAnswer>(data).map(|a| format!("{a:?}"));
    let _ = serde_json::from_slice::<kv::MetadataAnswer>(data).map(|a| format!("{a:?}"));
    let _ = serde_json::from_slice::<kv::WriteAnswer>(data).map(|a| format!("{a:?}"));
    let _ = kv::is_cas_mismatch(data);
    let _ = kv::is_no_route(data);
    let ans = answer(status_of(data.first().copied().unwrap_or(0)), None, data);
    let e = keyrot_peers::http::status_error("sink \"fuzz\"", "fuzz", "OpenBao", &ans, now(), None);
    check_error(&e, &[])
}

/// The control API's JSON bodies: the requests the server reads and the
/// answers the CLI reads.
pub fn control_json(data: &[u8]) -> Outcome {
    use keyrot::control::rotate_api::{RotateKeyBody, SealedKeyResponse};
    use keyrot::control::{HistoryResponse, PlanResponse, StatusResponse};
    let _ = serde_json::from_slice::<RotateRequest>(data).map(|r| format!("{r:?}"));
    if let Ok(r) = serde_json::from_slice::<EnrollRequest>(data) {
        let other = EnrollRequest {
            secret: SecretString::from(format!("{}x", r.secret.expose_secret())),
            key_id: r.key_id.clone(),
            accept_unverified: r.accept_unverified,
        };
        if format!("{r:?}") != format!("{other:?}") {
            return finding("EnrollRequest's Debug output depends on its secret");
        }
    }
    let _ = serde_json::from_slice::<RotateKeyBody>(data).map(|r| format!("{r:?}"));
    let _ = serde_json::from_slice::<ErrorBody>(data).map(|r| format!("{r:?}"));
    let _ = serde_json::from_slice::<StatusResponse>(data).map(|r| format!("{r:?}"));
    let _ = serde_json::from_slice::<PlanResponse>(data).map(|r| format!("{r:?}"));
    let _ = serde_json::from_slice::<HistoryResponse>(data).map(|r| format!("{r:?}"));
    let _ = serde_json::from_slice::<SealedKeyResponse>(data).map(|r| format!("{r:?}"));
    Ok(())
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
