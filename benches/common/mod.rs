//! Helpers the benchmarks share (each bench is its own crate and uses a part).
#![allow(dead_code)]

pub mod rotations;

use jiff::Timestamp;
use keyrot_core::store::LocalKey;

/// `name` from the environment as a number, `default` when unset or empty.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

/// The median of `v` (the mean of the middle two for an even count; 0 when
/// empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// A live key `id` named `name` in the `local` provider's registry, as a
/// seed for a bench (its secret's hash is zeros: nothing verifies it).
pub fn live_local_key(
    id: String,
    name: String,
    created: Timestamp,
    expires: Timestamp,
) -> LocalKey {
    LocalKey {
        id,
        name,
        scopes: vec!["read:all".into()],
        created_by: "bench".into(),
        created_at: created,
        expires_at: Some(expires),
        secret_sha256: "0".repeat(64),
        tag: None,
        revoked_at: None,
        last_used_at: None,
    }
}

/// The wall clock, for tests against real peers and the real binary, which
/// keep real time (clippy.toml keeps it out of keyrot's own code, where time
/// is a parameter).
#[allow(clippy::disallowed_methods)]
pub fn wall_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
