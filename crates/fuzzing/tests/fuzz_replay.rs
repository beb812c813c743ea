//! Every fuzz target (`keyrot_fuzzing`, the code the cargo-fuzz targets in
//! `fuzz/` call) run in-process over its seed corpus (`fuzz/corpus/NAME/`)
//! and then over inputs from a seeded generator: mutations of the corpus
//! (bit flips, byte changes, inserted tokens, cuts, truncations, splices,
//! repeats), random UTF-8, and JSON-, TOML- and HTTP-shaped inputs.
//!
//! A target must not panic and must report no finding. The seed is printed;
//! replay a run with `KEYROT_FUZZ_SEED=N`, scale it with
//! `KEYROT_FUZZ_INPUTS=N` (generated inputs per target; default 4000, the
//! process-spawning `exec_provider` gets a fifth, `openbao_sink`, which
//! builds its client per input, half). A failing input is
//! written to `target/fuzz-findings/` and can be copied into the corpus.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use keyrot_fuzzing::{self as fuzzing, FUZZ_PSK, Harness, Outcome};

/// Panics seen anywhere in the process (server tasks included).
static PANICS: AtomicUsize = AtomicUsize::new(0);
/// The last panic's message and place.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = info.to_string();
            }
            previous(info);
        }));
    });
}

/// SplitMix64: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Tokens worth inserting into JSON, TOML, XML and scripts.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "=",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e309",
    "-0",
    "18446744073709551616",
    "9223372036854775807",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\\",
    "\n",
    "\r\n",
    "\r\n\r\n",
    "\n---\n",
    "[[",
    "]]",
    "'''",
    "\"\"\"",
    "#",
    "é",
    "\u{10FFFF}",
    "\u{200B}",
    "<",
    ">",
    "</",
    "&amp;",
    "&#x10FFFF;",
    "&#xD800;",
    "&",
    "<Code>",
    "</Code>",
    "<Message>",
    "</Message>",
    "{{",
    "}}",
    "{{key.id}}",
    "1970-01-01T00:00:00Z",
    "2026-13-45",
    "9999-12-31T23:59:59Z",
    "-9999-01-01",
    "P90D",
    "PT0S",
    "\"data\"",
    "\"errors\"",
    "\"links\"",
    "\"next\"",
    "\"id\"",
    "\"secret\"",
    "\"keys\"",
    "\"auth\"",
    "\"client_token\"",
    "\"version\"",
    "\"encryptedSecret\"",
    "\"__type\"",
    "500\r\n\r\n",
    "429\r\nretry-after: 1\r\n\r\n",
    "200\r\nlink: </x>; rel=\"next\"\r\n\r\n",
    "/",
    "%00",
    "..",
    "//",
    "\t",
    " ",
    "\u{0}",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(10) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = *[0u8, 0xff, b'"', b'\\', b'\n', b'{', b'[', b'0', 0x80, 0xc3]
                .get(rng.below(12))
                .unwrap_or(&rng.byte());
        }
        2 | 3 => {
            let at = rng.below(len + 1);
            let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
            input.splice(at..at, t.iter().copied());
        }
        4 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(16)).min(len);
            input.drain(a..b);
        }
        5 => input.truncate(rng.below(len + 1)),
        6 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let a = rng.below(len + 1);
            let b = rng.below(other.len() + 1);
            input.truncate(a);
            input.extend_from_slice(&other[b..]);
        }
        7 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(32)).min(len);
            let chunk = input[a..b].to_vec();
            for _ in 0..1 + rng.below(8) {
                input.splice(b..b, chunk.iter().copied());
            }
        }
        _ => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            input.splice(at..at, bytes);
        }
    }
}

/// Random text: ASCII, multi-byte characters, controls.
fn random_utf8(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(200);
    let mut s = String::new();
    for _ in 0..n {
        let c = match rng.below(6) {
            0..=2 => char::from(b' ' + (rng.byte() % 95)),
            3 => char::from(rng.byte() % 32),
            4 => char::from_u32(0x80 + rng.below(0x800) as u32).unwrap_or('é'),
            _ => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{FFFD}'),
        };
        s.push(c);
    }
    s.into_bytes()
}

fn json_value(rng: &mut Rng, depth: usize) -> String {
    let scalar = |rng: &mut Rng| -> String {
        match rng.below(9) {
            0 => "null".into(),
            1 => "true".into(),
            2 => (rng.next() as i64).to_string(),
            3 => format!("{}e{}", rng.below(1000), rng.below(400)),
            4 => "\"2026-05-01T00:00:00Z\"".into(),
            5 => "\"2026-05-01\"".into(),
            6 => serde_json::to_string(&String::from_utf8_lossy(&random_utf8(rng))).unwrap(),
            7 => format!("\"{}\"", TOKENS[rng.below(TOKENS.len())].escape_default()),
            _ => format!("\"k{}\"", rng.below(5)),
        }
    };
    if depth == 0 || rng.chance(3) {
        return scalar(rng);
    }
    const KEYS: &[&str] = &[
        "data",
        "id",
        "name",
        "links",
        "next",
        "keys",
        "secret",
        "token",
        "errors",
        "auth",
        "client_token",
        "lease_duration",
        "version",
        "metadata",
        "custom_metadata",
        "result",
        "expires_at",
        "expiresAt",
        "status",
        "scopes",
        "encryptedSecret",
        "encryption",
        "algorithm",
        "keyWrap",
        "pskId",
        "key",
        "reason",
        "createdBy",
        "attributes",
        "ttl",
    ];
    if rng.chance(2) {
        let items: Vec<String> = (0..rng.below(4))
            .map(|_| json_value(rng, depth - 1))
            .collect();
        format!("[{}]", items.join(","))
    } else {
        let items: Vec<String> = (0..rng.below(5))
            .map(|_| {
                format!(
                    "\"{}\":{}",
                    KEYS[rng.below(KEYS.len())],
                    json_value(rng, depth - 1)
                )
            })
            .collect();
        format!("{{{}}}", items.join(","))
    }
}

fn toml_doc(rng: &mut Rng) -> String {
    const TABLES: &[&str] = &[
        "[daemon]",
        "[store]",
        "[[provider]]",
        "[[sink]]",
        "[[policy]]",
        "[[key]]",
        "[notify]",
        "[daemon.retry]",
        "[provider.list]",
        "[[psk]]",
        "[[api_token]]",
    ];
    const KEYS: &[&str] = &[
        "name",
        "type",
        "path",
        "provider",
        "policy",
        "sinks",
        "command",
        "base_url",
        "new_key_lifetime",
        "rotate_before_expiry",
        "overlap",
        "window",
        "timezone",
        "schedule",
        "token",
        "address",
        "field",
        "admin_key",
        "org_id",
        "items",
        "id",
        "secret",
        "format",
        "control_socket",
        "master_key_file",
        "from",
        "transport",
        "notify",
        "jitter",
        "scopes",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(8) {
        s.push_str(TABLES[rng.below(TABLES.len())]);
        s.push('\n');
        for _ in 0..rng.below(5) {
            let v = match rng.below(7) {
                0 => format!(
                    "\"{}\"",
                    ["local", "http", "exec", "file", "openbao", "90d", "1h"][rng.below(7)]
                ),
                1 => rng.below(100).to_string(),
                2 => "[\"a\", \"b\"]".into(),
                3 => "{ file = \"x\" }".into(),
                4 => "true".into(),
                5 => "1979-05-27T07:32:00Z".into(),
                _ => json_value(rng, 2),
            };
            s.push_str(&format!("{} = {v}\n", KEYS[rng.below(KEYS.len())]));
        }
    }
    s
}

/// One generated input: a mutated seed, random text, or a shaped input
/// behind a seed's first line (the target's selector).
fn generate(rng: &mut Rng, corpus: &[Vec<u8>], shaped: &dyn Fn(&mut Rng) -> Vec<u8>) -> Vec<u8> {
    let mut input = match rng.below(10) {
        0 => random_utf8(rng),
        1 | 2 => shaped(rng),
        _ if corpus.is_empty() => shaped(rng),
        _ => corpus[rng.below(corpus.len())].clone(),
    };
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut input, corpus);
    }
    input.truncate(64 * 1024);
    input
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn read_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seed", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

// A seed drawn from the wall clock (and printed) when none is given.
#[allow(clippy::disallowed_methods)]
fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("KEYROT_FUZZ_SEED") {
        Ok(s) => s.trim().parse().expect("KEYROT_FUZZ_SEED must be a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    })
}

fn inputs(divisor: usize) -> usize {
    let n = std::env::var("KEYROT_FUZZ_INPUTS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4000usize);
    (n / divisor).max(1)
}

/// Writes a failing input where a person can find it; returns the path.
fn keep(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-findings");
    std::fs::create_dir_all(&dir).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let path = dir.join(format!("{target}-{h:016x}"));
    std::fs::write(&path, input).unwrap();
    path
}

/// Runs `target` over its corpus and `count` generated inputs.
fn run(
    target: &str,
    count: usize,
    shaped: &dyn Fn(&mut Rng) -> Vec<u8>,
    f: &dyn Fn(&[u8]) -> Outcome,
) {
    install_hook();
    // One target at a time: the panic hook counts panics process-wide
    // (server tasks panic on other threads).
    static SERIAL: Mutex<()> = Mutex::new(());
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = seed();
    let corpus = read_corpus(target);
    // Each target gets its own stream, so one target's inputs do not
    // depend on another's.
    let mut rng = Rng(seed
        ^ target
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b)));
    let started = Instant::now();
    let generated = (0..count).map(|_| generate(&mut rng, &corpus, shaped));
    let mut total = 0;
    for (i, input) in corpus.iter().cloned().chain(generated).enumerate() {
        let before = PANICS.load(Ordering::SeqCst);
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&input)));
        let panicked = outcome.is_err() || PANICS.load(Ordering::SeqCst) != before;
        let what = match outcome {
            _ if panicked => Some(format!("panic: {}", LAST_PANIC.lock().unwrap())),
            Ok(Err(finding)) => Some(format!("finding: {finding}")),
            Ok(Ok(())) | Err(_) => None,
        };
        if let Some(what) = what {
            let kind = if i < corpus.len() {
                "seed"
            } else {
                "generated input"
            };
            panic!(
                "{target}: {kind} #{i} failed: {what}\ninput kept at {}\n{:?}\nreplay: KEYROT_FUZZ_SEED={seed} cargo test --features failpoints --test fuzz_replay {target}",
                keep(target, &input).display(),
                String::from_utf8_lossy(&input)
            );
        }
        total += 1;
    }
    eprintln!(
        "fuzz_replay {target}: seed {seed}: {} seeds + {count} generated = {total} inputs in {:.2} s, no panic, no finding",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A selector line from the corpus, then a shaped body.
fn with_selector(
    corpus: Vec<Vec<u8>>,
    body: fn(&mut Rng) -> Vec<u8>,
) -> impl Fn(&mut Rng) -> Vec<u8> {
    move |rng: &mut Rng| {
        let seed = &corpus[rng.below(corpus.len())];
        let line_end = seed.iter().position(|&b| b == b'\n').unwrap_or(seed.len());
        let mut out = seed[..line_end].to_vec();
        out.push(b'\n');
        out.extend(body(rng));
        out
    }
}

fn json_bytes(rng: &mut Rng) -> Vec<u8> {
    json_value(rng, 5).into_bytes()
}

/// A script of one to three HTTP answers with JSON bodies.
fn http_script(rng: &mut Rng) -> Vec<u8> {
    let mut parts = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let status = [200, 200, 201, 204, 400, 401, 403, 404, 409, 429, 500, 503][rng.below(12)];
        let header = match rng.below(4) {
            0 => "retry-after: 3\r\n".to_string(),
            1 => "link: </next?page=2>; rel=\"next\"\r\n".to_string(),
            _ => String::new(),
        };
        parts.push(format!("{status}\r\n{header}\r\n{}", json_value(rng, 5)));
    }
    parts.join("\n---\n").into_bytes()
}

#[test]
fn config() {
    let shaped = |rng: &mut Rng| {
        if rng.chance(8) {
            // Deep nesting: the TOML parser must not overflow the stack.
            let depth = 1 + rng.below(5000);
            let open = if rng.chance(2) { "[" } else { "{a=" };
            format!("x = {}", open.repeat(depth)).into_bytes()
        } else {
            toml_doc(rng).into_bytes()
        }
    };
    run("config", inputs(1), &shaped, &fuzzing::config);
}

#[test]
fn envelope() {
    let shaped = |rng: &mut Rng| {
        let id = format!("key-{}", rng.below(100));
        let secret = String::from_utf8_lossy(&random_utf8(rng)).into_owned();
        let nonce: [u8; 12] = std::array::from_fn(|_| rng.byte());
        let sealed =
            keyrot_core::crypto::psk::seal_with_nonce(&FUZZ_PSK, &nonce, &id, &secret).unwrap();
        if rng.chance(2) {
            format!("{id}\n{sealed}").into_bytes()
        } else {
            format!(
                "{id}\n{{\"data\":{{\"id\":\"{id}\",\"encryptedSecret\":\"{sealed}\",\"encryption\":{{\"algorithm\":\"AES-256-GCM\",\"pskId\":\"fuzz\",\"keyWrap\":false}},\"keyExpiresAt\":null}}}}"
            )
            .into_bytes()
        }
    };
    run("envelope", inputs(1), &shaped, &fuzzing::envelope);
}

#[test]
fn aws() {
    let shaped = |rng: &mut Rng| {
        let code = ["Throttling", "AccessDenied", "", "com.amazon#X"][rng.below(4)];
        let msg = String::from_utf8_lossy(&random_utf8(rng)).into_owned();
        if rng.chance(2) {
            format!("{code}\n<ErrorResponse><Error><Code>{code}</Code><Message>{msg}</Message></Error></ErrorResponse>").into_bytes()
        } else {
            format!("\n{}", json_value(rng, 4)).into_bytes()
        }
    };
    run("aws", inputs(1), &shaped, &fuzzing::aws);
}

#[test]
fn vault() {
    run("vault", inputs(1), &json_bytes, &fuzzing::vault);
}

#[test]
fn control_json() {
    run(
        "control_json",
        inputs(1),
        &json_bytes,
        &fuzzing::control_json,
    );
}

#[test]
fn http_provider() {
    let h = Harness::new().unwrap();
    let shaped = with_selector(read_corpus("http_provider"), http_script);
    run("http_provider", inputs(1), &shaped, &|d| h.http_provider(d));
}

#[test]
fn atlassian() {
    let h = Harness::new().unwrap();
    let shaped = with_selector(read_corpus("atlassian"), http_script);
    run("atlassian", inputs(1), &shaped, &|d| h.atlassian(d));
}

#[test]
fn openbao_sink() {
    let h = Harness::new().unwrap();
    let shaped = with_selector(read_corpus("openbao_sink"), http_script);
    run("openbao_sink", inputs(2), &shaped, &|d| h.openbao_sink(d));
}

#[test]
fn exec_provider() {
    let h = Harness::new().unwrap();
    let shaped = with_selector(read_corpus("exec_provider"), json_bytes);
    run("exec_provider", inputs(5), &shaped, &|d| h.exec_provider(d));
}

#[test]
fn control() {
    let h = Harness::new().unwrap();
    let shaped = with_selector(read_corpus("control"), |rng: &mut Rng| {
        let ct = [
            "application/json",
            "text/plain",
            "",
            "application/json; charset=utf-8",
        ][rng.below(4)];
        format!("{ct}\n\n{}", json_value(rng, 4)).into_bytes()
    });
    run("control", inputs(1), &shaped, &|d| h.control(d));
}
