//! Failpoints for the crash and fault suites, compiled only with the cargo
//! feature `failpoints`; without it [`hit`] is an empty inline function.
//!
//! `KEYROT_FAILPOINTS` lists `name=action` pairs separated by commas, where
//! action is `abort` (the process dies at once, like `kill -9`), `error`
//! (the call fails with a transient error) or `delay(MS)`. Names are
//! `after:<state>` (just after the commit entering a state), and
//! `before:<call>` / `after:<call>` around external calls (`issue`,
//! `verify`, `revoke`, `sink-put`, `sink-read`, `sink-finish`).

use crate::error::CallError;

/// Acts on failpoint `name` if it is configured.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> Result<(), CallError> {
    let Ok(spec) = std::env::var("KEYROT_FAILPOINTS") else {
        return Ok(());
    };
    for pair in spec.split(',') {
        let Some((n, action)) = pair.trim().split_once('=') else {
            continue;
        };
        if n != name {
            continue;
        }
        eprintln!("keyrot: failpoint {name}: {action}");
        if action == "abort" {
            std::process::abort();
        } else if action == "error" {
            return Err(CallError::transient(format!("failpoint {name}")));
        } else if let Some(ms) = action
            .strip_prefix("delay(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|m| m.parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    Ok(())
}

/// Acts on failpoint `name` if it is configured (compiled out).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> Result<(), CallError> {
    Ok(())
}
