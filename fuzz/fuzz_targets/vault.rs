//! `keyrot_fuzzing::vault`: any bytes; a finding or a panic is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = keyrot_fuzzing::vault(data) {
        panic!("finding: {finding}");
    }
});
