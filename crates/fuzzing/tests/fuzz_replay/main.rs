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

mod generator;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use self::generator::{
    Rng, generate, http_script, json_bytes, json_value, random_utf8, toml_doc, with_selector,
};
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
