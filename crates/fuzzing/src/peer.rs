//! The scripted HTTP peer the harness points providers and sinks at: a
//! loopback server that answers each request with the next answer of the
//! current input's script, then with an empty 404 once the script is used
//! up (so a peer that pages forever cannot make an input run forever).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::find;

/// One answer of the scripted HTTP peer.
#[derive(Debug, Clone)]
struct Scripted {
    /// Status (200..=599).
    status: u16,
    /// Extra headers.
    headers: Vec<(String, String)>,
    /// Body.
    body: Vec<u8>,
}

/// Separates answers in a script.
const ANSWER_SEP: &[u8] = b"\n---\n";

/// Splits `data` into answers: each is an HTTP response without the
/// version, `STATUS\r\nName: value\r\n\r\nBODY`, or a bare body (200).
fn script(data: &[u8]) -> VecDeque<Scripted> {
    let mut out = VecDeque::new();
    let mut rest = data;
    loop {
        let (part, next) = match find(rest, ANSWER_SEP) {
            Some(i) => (&rest[..i], Some(&rest[i + ANSWER_SEP.len()..])),
            None => (rest, None),
        };
        out.push_back(scripted(part));
        match next {
            Some(n) => rest = n,
            None => return out,
        }
    }
}

fn scripted(part: &[u8]) -> Scripted {
    let Some(i) = find(part, b"\r\n\r\n") else {
        return Scripted {
            status: 200,
            headers: Vec::new(),
            body: part.to_vec(),
        };
    };
    let mut status = 200;
    let mut headers = Vec::new();
    for (n, line) in part[..i].split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        if n == 0
            && let Ok(s) = line.parse::<u16>()
        {
            status = s.clamp(200, 599);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let framing = matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "upgrade"
        );
        if token && !framing && value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            headers.push((name, value.to_string()));
        }
    }
    Scripted {
        status,
        headers,
        body: part[i + 4..].to_vec(),
    }
}

/// Answers once the script is used up: the peer has nothing more.
fn exhausted() -> Scripted {
    Scripted {
        status: 404,
        headers: Vec::new(),
        body: br#"{"errors":[]}"#.to_vec(),
    }
}

/// The scripted peer: answers each request on loopback with the next
/// scripted answer; counts requests.
#[derive(Default)]
pub(super) struct Peer {
    /// Answers still to give.
    script: Mutex<VecDeque<Scripted>>,
}

impl Peer {
    fn next(&self) -> Scripted {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or_else(exhausted)
    }

    pub(super) fn load(&self, data: &[u8]) {
        *self.script.lock().unwrap_or_else(PoisonError::into_inner) = script(data);
    }

    /// Serves one connection (keep-alive) until the client closes it.
    pub(super) async fn serve(self: Arc<Self>, mut conn: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = find(&buf, b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if buf.len() > 1 << 20 {
                    return;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..head_end + length);
            let a = self.next();
            let mut out = format!("HTTP/1.1 {} Scripted\r\n", a.status);
            for (k, v) in &a.headers {
                let _ = write!(out, "{k}: {v}\r\n");
            }
            if !a.headers.iter().any(|(k, _)| k == "content-type") {
                out.push_str("content-type: application/json\r\n");
            }
            let _ = write!(out, "content-length: {}\r\n\r\n", a.body.len());
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&a.body);
            if conn.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
}
