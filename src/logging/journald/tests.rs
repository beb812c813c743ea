//! Tests of the journald layer: the wire format, fields of events and
//! spans, the memfd form, and the stderr fallback.

use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

/// Decodes a native protocol datagram into (name, value) pairs.
fn decode(mut d: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap();
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8(line[..eq].to_vec()).unwrap(),
                line[eq + 1..].to_vec(),
            ));
            d = &d[nl + 1..];
        } else {
            let name = String::from_utf8(line.to_vec()).unwrap();
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let start = nl + 9;
            out.push((name, d[start..start + len].to_vec()));
            assert_eq!(
                d[start + len],
                b'\n',
                "binary value not closed by a newline"
            );
            d = &d[start + len + 1..];
        }
    }
    out
}

fn get<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

#[test]
fn plain_and_binary_forms() {
    let mut buf = Vec::new();
    put_field(&mut buf, "MESSAGE", b"hello = world");
    assert_eq!(buf, b"MESSAGE=hello = world\n");

    let mut buf = Vec::new();
    put_field(&mut buf, "KEYROT_ERROR", b"line one\nline two");
    let mut want = b"KEYROT_ERROR\n".to_vec();
    want.extend_from_slice(&17u64.to_le_bytes());
    want.extend_from_slice(b"line one\nline two\n");
    assert_eq!(buf, want);
    assert_eq!(
        decode(&buf),
        vec![("KEYROT_ERROR".to_string(), b"line one\nline two".to_vec())]
    );

    let mut buf = Vec::new();
    put_field(&mut buf, "MESSAGE", b"");
    assert_eq!(buf, b"MESSAGE=\n");
}

#[test]
fn field_names_are_prefixed_and_upper_cased() {
    assert_eq!(field_name("key"), "KEYROT_KEY");
    assert_eq!(field_name("rotation"), "KEYROT_ROTATION");
    assert_eq!(field_name("new_key"), "KEYROT_NEW_KEY");
    assert_eq!(field_name("log.target"), "KEYROT_LOG_TARGET");
    assert_eq!(field_name("r#type"), "KEYROT_TYPE");
    assert_eq!(field_name("sink-name"), "KEYROT_SINK_NAME");
    assert_eq!(field_name("Ünicode!x"), "KEYROT_NICODEX");
    assert_eq!(field_name(&"a".repeat(100)).len(), 64);
}

#[test]
fn priorities_follow_syslog() {
    assert_eq!(priority(&Level::ERROR), 3);
    assert_eq!(priority(&Level::WARN), 4);
    assert_eq!(priority(&Level::INFO), 6);
    assert_eq!(priority(&Level::DEBUG), 7);
    assert_eq!(priority(&Level::TRACE), 7);
}

/// A shared buffer to stand for stderr.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

impl Buf {
    fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A bound receiver in a temp dir, and a fallback buffer.
struct Journal {
    _dir: tempfile::TempDir,
    path: PathBuf,
    rx: UnixDatagram,
    fallback: Buf,
}

impl Journal {
    fn new() -> Journal {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Journal {
            _dir: dir,
            path,
            rx,
            fallback: Buf::default(),
        }
    }

    fn layer(&self) -> JournaldLayer<Buf> {
        JournaldLayer::new(&self.path, self.fallback.clone())
    }

    fn recv(&self) -> Vec<(String, Vec<u8>)> {
        let mut buf = vec![0u8; 1 << 16];
        let n = self.rx.recv(&mut buf).unwrap();
        decode(&buf[..n])
    }
}

#[test]
fn events_carry_span_fields_priority_and_identifier() {
    let j = Journal::new();
    let subscriber = tracing_subscriber::registry().with(j.layer());
    tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!("run", key = "atl/other", host = "h1");
        let _o = outer.enter();
        let span = tracing::info_span!(
            "step",
            rotation = %"0190-abc",
            key = %"atl/ci-bot",
            provider = %"atl",
            step = %"Issuing"
        );
        let _e = span.enter();
        tracing::info!(rotation = %"0190-abc", new_key = %"k-2", "new key issued");
        tracing::error!(
            error = "first\nsecond",
            attempts = 3u32,
            "step failed: {}",
            "a\nERROR forged\x1b[2J"
        );
    });
    let f = j.recv();
    assert_eq!(get(&f, "MESSAGE"), Some("new key issued"));
    assert_eq!(get(&f, "PRIORITY"), Some("6"));
    assert_eq!(get(&f, "SYSLOG_IDENTIFIER"), Some("keyrot"));
    assert_eq!(get(&f, "KEYROT_ROTATION"), Some("0190-abc"));
    assert_eq!(get(&f, "KEYROT_PROVIDER"), Some("atl"));
    assert_eq!(get(&f, "KEYROT_STEP"), Some("Issuing"));
    assert_eq!(get(&f, "KEYROT_NEW_KEY"), Some("k-2"));
    assert_eq!(get(&f, "KEYROT_HOST"), Some("h1"));
    assert!(get(&f, "CODE_FILE").unwrap().ends_with("journald/tests.rs"));
    assert!(get(&f, "CODE_LINE").unwrap().parse::<u32>().is_ok());
    let all = |name: &str| -> Vec<&str> {
        f.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
            .collect()
    };
    assert_eq!(all("KEYROT_KEY"), ["atl/other", "atl/ci-bot"], "{f:?}");
    assert_eq!(all("KEYROT_ROTATION"), ["0190-abc"], "sent once: {f:?}");
    assert_eq!(all("MESSAGE"), ["new key issued"]);

    let f = j.recv();
    assert_eq!(get(&f, "PRIORITY"), Some("3"));
    // The message is one line without terminal sequences; structured
    // fields keep their bytes (journald stores them length-prefixed).
    assert_eq!(
        get(&f, "MESSAGE"),
        Some("step failed: a\\nERROR forged\\x1b[2J")
    );
    assert_eq!(get(&f, "KEYROT_ERROR"), Some("first\nsecond"));
    assert_eq!(get(&f, "KEYROT_ATTEMPTS"), Some("3"));
    assert_eq!(get(&f, "KEYROT_STEP"), Some("Issuing"));
    assert!(j.fallback.is_empty());
}

#[test]
fn fields_recorded_later_on_a_span_are_included() {
    let j = Journal::new();
    let subscriber = tracing_subscriber::registry().with(j.layer());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("step", key = "a/b", sink = tracing::field::Empty);
        span.record("sink", "vault");
        span.in_scope(|| tracing::warn!("written"));
    });
    let f = j.recv();
    assert_eq!(get(&f, "PRIORITY"), Some("4"));
    assert_eq!(get(&f, "KEYROT_SINK"), Some("vault"));
    assert_eq!(get(&f, "KEYROT_KEY"), Some("a/b"));
}

#[test]
fn an_entry_too_large_for_a_datagram_goes_in_a_sealed_memfd() {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let j = Journal::new();
    let big = "x".repeat(1 << 20);
    let subscriber = tracing_subscriber::registry().with(j.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(big = %big, "large");
    });
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut data = [0u8; 16];
    let got = rustix::net::recvmsg(
        &j.rx,
        &mut [io::IoSliceMut::new(&mut data)],
        &mut control,
        RecvFlags::empty(),
    )
    .unwrap();
    assert_eq!(got.bytes, 0, "the datagram itself is empty");
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    assert_eq!(fds.len(), 1);
    let file = std::fs::File::from(fds.pop().unwrap());
    let seals = rustix::fs::fcntl_get_seals(&file).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::SEAL));
    let mut payload = Vec::new();
    let len = file.metadata().unwrap().len() as usize;
    payload.resize(len, 0);
    file.read_exact_at(&mut payload, 0).unwrap();
    let f = decode(&payload);
    assert_eq!(get(&f, "MESSAGE"), Some("large"));
    assert_eq!(get(&f, "KEYROT_BIG").map(str::len), Some(1 << 20));
    assert!(j.fallback.is_empty());
}

#[test]
fn without_journald_the_line_goes_to_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let fallback = Buf::default();
    let layer = JournaldLayer::new(dir.path().join("absent.sock"), fallback.clone());
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("step", key = "a/b");
        span.in_scope(|| tracing::info!(n = 1, "first"));
        tracing::warn!(detail = "x\ny\x1b[2J", "second");
    });
    let text = fallback.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("cannot log to journald at"), "{text}");
    assert!(lines[0].contains("absent.sock"), "{text}");
    assert!(lines[1].contains(" INFO first key=a/b n=1"), "{text}");
    assert!(
        lines[2].contains(" WARN second detail=x\\ny\\x1b[2J"),
        "{text}"
    );
}
