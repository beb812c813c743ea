//! How much of a peer's answer keyrot reads: a cap per kind of peer, the
//! error when an answer passes it, and the count of such answers
//! (`keyrot_peer_answer_too_large_total{peer}`).
//!
//! Every answer keyrot reads is a small JSON (or, for AWS IAM, XML)
//! document: a token, a secret of at most a few tens of KiB, a page of a
//! key list. An answer larger than its cap is a hostile or broken peer,
//! and reading it to the end would let that peer fill the daemon's memory
//! (a 2 GiB chunked answer once drove keyrot past 3 GiB resident). So the
//! read stops at the cap: a `Content-Length` above it fails before the
//! body is read, a longer stream fails as soon as it passes the cap.
//!
//! The error is transient. A cut answer is a lost answer: the peer may
//! have acted (made a key, written a secret), and the state machine's
//! handling of a lost answer (retry within the budget, find a key made by
//! a lost issue) is what keeps that safe; a permanent error would end the
//! rotation as if nothing had happened. Each retry reads at most the cap
//! again, and the retry budget ends it.

use std::sync::atomic::{AtomicU64, Ordering};

use keyrot_core::error::CallError;

/// One MiB.
const MIB: usize = 1 << 20;

/// The kinds of HTTP peer, each with the largest answer read from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerKind {
    /// OpenBao/Vault: KV v2 reads and writes, token lookups, AppRole.
    Vault,
    /// AWS Secrets Manager and IAM.
    Aws,
    /// Azure Key Vault and the Entra ID token endpoint.
    Azure,
    /// The Atlassian Admin API (and keyrot's sandbox of it).
    Atlassian,
    /// A `type = "http"` provider: any HTTP API, driven by config.
    HttpProvider,
    /// A `[[notify.webhook]]` receiver (its answer is only read for an
    /// error's detail).
    Webhook,
}

impl PeerKind {
    /// Every kind, in label order of the metric.
    pub const ALL: [PeerKind; 6] = [
        PeerKind::Vault,
        PeerKind::Aws,
        PeerKind::Azure,
        PeerKind::Atlassian,
        PeerKind::HttpProvider,
        PeerKind::Webhook,
    ];

    /// The `peer` label of `keyrot_peer_answer_too_large_total`.
    pub fn label(self) -> &'static str {
        match self {
            PeerKind::Vault => "openbao",
            PeerKind::Aws => "aws",
            PeerKind::Azure => "azure",
            PeerKind::Atlassian => "atlassian",
            PeerKind::HttpProvider => "http",
            PeerKind::Webhook => "webhook",
        }
    }

    /// The largest answer body read from this kind of peer, in bytes:
    /// 1 MiB for the vaults' and clouds' JSON APIs (a secret is at most
    /// 64 KiB in AWS Secrets Manager, 25 KiB in Azure Key Vault; a page of
    /// Atlassian keys is 100 keys), 4 MiB for an `http` provider, whose
    /// list page size is the API's choice (4 MiB is some 10,000 keys of
    /// 400 bytes in one page).
    pub fn max_answer(self) -> usize {
        match self {
            PeerKind::HttpProvider => 4 * MIB,
            PeerKind::Vault
            | PeerKind::Webhook
            | PeerKind::Aws
            | PeerKind::Azure
            | PeerKind::Atlassian => MIB,
        }
    }

    /// Index in [`TOO_LARGE`].
    fn index(self) -> usize {
        match self {
            PeerKind::Vault => 0,
            PeerKind::Aws => 1,
            PeerKind::Azure => 2,
            PeerKind::Atlassian => 3,
            PeerKind::HttpProvider => 4,
            PeerKind::Webhook => 5,
        }
    }
}

/// Answers cut at their cap since the process started, by [`PeerKind`].
/// Process-wide: the HTTP clients are built by providers and sinks, which
/// know nothing of the engine's registry.
static TOO_LARGE: [AtomicU64; PeerKind::ALL.len()] =
    [const { AtomicU64::new(0) }; PeerKind::ALL.len()];

/// Answers cut at their cap so far, by kind, for the metrics exposition.
pub fn answers_too_large() -> [(PeerKind, u64); PeerKind::ALL.len()] {
    PeerKind::ALL.map(|k| (k, TOO_LARGE[k.index()].load(Ordering::Relaxed)))
}

/// Counts one answer of `kind` cut at its cap and returns the error:
/// `{who}: {what}: the answer (more than N bytes) passed the 1 MiB that
/// keyrot reads from openbao peers`. `said` is the `Content-Length` the
/// peer announced, if that is how it was found.
pub fn too_large(who: &str, what: &str, kind: PeerKind, said: Option<u64>) -> CallError {
    TOO_LARGE[kind.index()].fetch_add(1, Ordering::Relaxed);
    let size = match said {
        Some(n) => format!("{n} bytes, by its Content-Length"),
        None => format!("more than {} bytes", kind.max_answer()),
    };
    CallError::transient(format!(
        "{who}: {what}: the answer ({size}) is larger than the {} keyrot reads from {} peers; \
         the call failed (transient: retried within the retry budget) and is counted in \
         keyrot_peer_answer_too_large_total",
        human(kind.max_answer()),
        kind.label()
    ))
}

/// A byte count as `1 MiB` when whole MiB, else bytes.
fn human(n: usize) -> String {
    if n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A peer that answers one request with `head`, then (when `chunks`)
    /// 64 KiB chunks of `x` until `limit` bytes or the client goes away;
    /// returns its URL and the body bytes it got written.
    async fn peer(
        head: &'static str,
        chunks: bool,
        limit: usize,
    ) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/x", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(head.as_bytes()).await.unwrap();
            let mut sent = 0;
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            while chunks && sent < limit {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += 0x10000;
            }
            if chunks && sent >= limit {
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
            sent
        });
        (url, task)
    }

    async fn get(url: &str, kind: PeerKind) -> Result<crate::http::Answer, CallError> {
        let timeout = SignedDuration::from_secs(30);
        let client = crate::http::client_via("sink \"t\"", timeout, None, None).unwrap();
        crate::http::send("sink \"t\"", "read", kind, timeout, client.get(url)).await
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn a_stream_past_the_cap_fails_and_is_not_read_to_its_end() {
        let before = answers_too_large()[PeerKind::Vault.index()].1;
        let (url, server) = peer(CHUNKED, true, 256 << 20).await;
        let e = get(&url, PeerKind::Vault).await.err().unwrap();
        assert!(e.transient);
        assert!(
            e.message.starts_with(
                "sink \"t\": read: the answer (more than 1048576 bytes) is larger than the 1 MiB keyrot reads from openbao peers"
            ),
            "{}",
            e.message
        );
        // The client hung up: the peer could not write its 256 MiB.
        let sent = server.await.unwrap();
        assert!(sent < 64 << 20, "the peer wrote {sent} bytes");
        assert!(answers_too_large()[PeerKind::Vault.index()].1 > before);
    }

    #[tokio::test]
    async fn a_content_length_past_the_cap_fails_before_the_body() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 5000000000\r\n\r\n";
        let (url, _server) = peer(head, false, 0).await;
        let e = get(&url, PeerKind::Aws).await.err().unwrap();
        assert!(
            e.message.contains("(5000000000 bytes, by its Content-Length) is larger than the 1 MiB keyrot reads from aws peers"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn an_answer_of_exactly_the_cap_is_read() {
        let (url, _server) = peer(CHUNKED, true, MIB).await;
        let a = get(&url, PeerKind::Atlassian).await.unwrap();
        assert_eq!(a.body.len(), MIB);
        // An http provider's cap is larger.
        let (url, _server) = peer(CHUNKED, true, 2 * MIB).await;
        assert_eq!(
            get(&url, PeerKind::HttpProvider).await.unwrap().body.len(),
            2 * MIB
        );
    }

    #[test]
    fn caps_are_well_under_16_mib_and_messages_name_peer_and_cap() {
        for k in PeerKind::ALL {
            assert!(k.max_answer() >= MIB && k.max_answer() < 16 * MIB, "{k:?}");
            assert_eq!(PeerKind::ALL[k.index()], k);
        }
        let before = answers_too_large()[PeerKind::Azure.index()].1;
        let e = too_large("sink \"kv\"", "read", PeerKind::Azure, Some(5 << 30));
        assert!(e.transient);
        assert_eq!(
            e.message,
            "sink \"kv\": read: the answer (5368709120 bytes, by its Content-Length) is larger \
             than the 1 MiB keyrot reads from azure peers; the call failed (transient: retried \
             within the retry budget) and is counted in keyrot_peer_answer_too_large_total"
        );
        // Other tests may count too: at least this one was.
        assert!(answers_too_large()[PeerKind::Azure.index()].1 > before);
    }
}
