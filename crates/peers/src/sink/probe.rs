//! `keyrot sink test NAME`: proves access to a sink before the first
//! rotation by writing a random probe value to the `keyrot-probe` location
//! beside the configured one (same directory, mount or name prefix; never a
//! key's own), reading it back and comparing hashes, then finishing it (a
//! staged version is made current) as a rotation would. The probe value is
//! random, never shown, and left in place (deleting it would need a
//! permission keyrot does not otherwise need).

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{PROBE_NAME, Sink, SinkTarget};
use keyrot_core::crypto::{hex_encode, sha256_hex};
use keyrot_core::error::CallError;

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Sink name.
    pub sink: String,
    /// Sink type.
    pub kind: String,
    /// The sink's version marker of the probe write, if it reports one.
    pub version: Option<String>,
    /// `matched`, or `not supported` for a sink that cannot be read back.
    pub read_back: String,
    /// Milliseconds for write, read-back and finish together.
    pub elapsed_ms: u64,
}

/// The provider a probe of sink `sink` stands for: that of the first
/// `[[key]]` writing to it, so `{provider}` in its template fills in as for
/// a real key (and the probe needs exactly the access a rotation needs);
/// `keyrot` when no key uses the sink yet.
pub fn probe_provider(cfg: &keyrot_config::Config, sink: &str) -> String {
    cfg.keys
        .iter()
        .find(|k| k.sinks.iter().any(|s| s == sink))
        .map_or_else(|| "keyrot".to_string(), |k| k.provider.clone())
}

/// The target a probe writes to (see [`SinkTarget::location`]).
pub fn probe_target(provider: &str, now: Timestamp) -> SinkTarget {
    SinkTarget {
        slot: format!("{provider}/{PROBE_NAME}"),
        provider: provider.into(),
        key_name: PROBE_NAME.into(),
        key_id: PROBE_NAME.into(),
        rotation_id: uuid::Uuid::now_v7().to_string(),
        expires_at: Some(now + SignedDuration::from_hours(24)),
        probe: true,
    }
}

/// Writes, reads back and finishes a random probe value, as a key of
/// `provider` would be written (see [`probe_provider`]).
pub async fn run(
    sink: &dyn Sink,
    provider: &str,
    now: Timestamp,
) -> Result<ProbeReport, CallError> {
    let started = Instant::now();
    let bytes = Zeroizing::new(rand::random::<[u8; 24]>());
    let secret = SecretString::from(format!("keyrot-probe-{}", hex_encode(&bytes[..])));
    let hash = sha256_hex(secrecy::ExposeSecret::expose_secret(&secret).as_bytes());
    let target = probe_target(provider, now);
    let version = sink.put(&target, &secret).await?;
    let read_back = if sink.can_read_back() {
        match sink.read_back(&target).await? {
            Some(h) if h == hash => "matched".to_string(),
            Some(_) => {
                return Err(CallError::permanent(format!(
                    "sink {:?}: the probe read back differs from the probe written (another writer, or a read path that does not match the write path)",
                    sink.name()
                )));
            }
            None => {
                return Err(CallError::permanent(format!(
                    "sink {:?}: the probe was written but reading it back found nothing",
                    sink.name()
                )));
            }
        }
    } else {
        "not supported".to_string()
    };
    sink.finish(&target).await?;
    Ok(ProbeReport {
        sink: sink.name().to_string(),
        kind: sink.kind().to_string(),
        version,
        read_back,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::file::FileSink;
    use keyrot_config::{FileFormat, FileSinkConfig};

    #[tokio::test]
    async fn a_probe_lands_beside_the_real_secret_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FileSinkConfig::new(
            dir.path()
                .join("keys/{name}.json")
                .to_string_lossy()
                .into_owned(),
        );
        cfg.format = FileFormat::Json;
        let sink = FileSink::new("out", cfg).unwrap();
        let now: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let report = run(&sink, "local", now).await.unwrap();
        assert_eq!(report.read_back, "matched");
        assert_eq!(report.kind, "file");
        let written = std::fs::read_to_string(dir.path().join("keys/keyrot-probe")).unwrap();
        assert!(written.contains("keyrot-probe-"), "{written}");
        // Nothing else was written.
        assert_eq!(
            std::fs::read_dir(dir.path().join("keys")).unwrap().count(),
            1
        );
    }

    #[test]
    fn probe_locations_replace_the_last_segment_only() {
        let t = probe_target("local", "2026-11-23T12:00:00Z".parse().unwrap());
        assert_eq!(
            t.location("/etc/app/{name}.env").unwrap(),
            "/etc/app/keyrot-probe"
        );
        assert_eq!(
            t.location("keyrot/{provider}/{name}").unwrap(),
            "keyrot/local/keyrot-probe"
        );
        assert_eq!(t.location("{provider}-{name}").unwrap(), "keyrot-probe");
        // A fixed location (no placeholder) is never overwritten by a probe.
        assert_eq!(
            t.location("/run/app/token").unwrap(),
            "/run/app/keyrot-probe"
        );
        assert_eq!(t.location("prod-token").unwrap(), "keyrot-probe");
    }
}
