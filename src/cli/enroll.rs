//! `keyrot enroll ROTATION_ID [--key-id ID]`: hands keyrot the secret of a
//! key a person created by hand (assisted rotation). The secret is read from
//! standard input — never from an argument, where `ps` and shell history
//! would see it — and goes only to the daemon over the control socket.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::output::{self, needs_daemon};
use crate::control::EnrollBody;
use crate::control::client::Client;
use keyrot_core::model::RotationRecord;

/// Reads the secret from stdin (one trailing newline trimmed).
fn read_secret() -> anyhow::Result<SecretString> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("Paste the new key's secret, then press Enter and Ctrl-D:");
    }
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin().read_to_string(&mut buf)?;
    let trimmed = buf.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        anyhow::bail!("no secret on standard input");
    }
    Ok(SecretString::from(trimmed.to_string()))
}

/// Runs the command. A refusal by the daemon (the secret does not work as
/// the key, the rotation is not awaiting one, ...) is reported in the
/// daemon's own words; only a daemon that does not answer is reported as
/// such.
pub async fn run(
    id: &str,
    key_id: Option<&str>,
    accept_unverified: bool,
    socket: &Path,
) -> anyhow::Result<ExitCode> {
    let secret = read_secret()?;
    let client = Client::new(socket);
    let body = EnrollBody {
        secret: secret.expose_secret(),
        key_id,
        accept_unverified,
    };
    let rec: RotationRecord = client
        .post(&format!("/v1/rotations/{id}/enroll"), &body)
        .await
        .map_err(|e| needs_daemon(e, "keyrot enroll"))?;
    output::outln(&format!(
        "enrolled key {} for {}; rotation {} is {} and goes on (distribute, verify, overlap, revoke)",
        output::clean(rec.new_key.as_ref().map(|k| k.id.as_str()).unwrap_or("-")),
        output::clean(&rec.slot),
        rec.id,
        rec.state
    ))?;
    Ok(ExitCode::SUCCESS)
}
