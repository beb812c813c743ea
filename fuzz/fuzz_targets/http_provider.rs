//! `keyrot_fuzzing::Harness::http_provider`: any bytes against the harness's
//! scripted peer (built once per process); a finding or a panic is a crash.
#![no_main]

use std::sync::OnceLock;

use keyrot_fuzzing::Harness;
use libfuzzer_sys::fuzz_target;

static HARNESS: OnceLock<Harness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let h = HARNESS.get_or_init(|| Harness::new().expect("fuzz harness"));
    if let Err(finding) = h.http_provider(data) {
        panic!("finding: {finding}");
    }
});
