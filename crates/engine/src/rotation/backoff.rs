//! Retry backoff: exponential with jitter, bounded, Retry-After honoured.

use jiff::SignedDuration;
use rand::RngExt;

use keyrot_config::RetryConfig;

/// The wait before attempt `attempt + 1` (attempt counts from 1): the
/// exponential delay capped at `max`, scaled by a random factor in
/// [0.5, 1.0] so that many failing rotations do not retry in step, and never
/// shorter than the peer's Retry-After.
pub fn delay(
    cfg: &RetryConfig,
    attempt: u32,
    retry_after: Option<SignedDuration>,
) -> SignedDuration {
    let factor: f64 = 0.5 + rand::rng().random::<f64>() * 0.5;
    delay_with(cfg, attempt, retry_after, factor)
}

/// [`delay`] with the random factor given (tests).
pub fn delay_with(
    cfg: &RetryConfig,
    attempt: u32,
    retry_after: Option<SignedDuration>,
    factor: f64,
) -> SignedDuration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = cfg.initial.as_secs_f64() * f64::from(1u32 << exp.min(20));
    let capped = base.min(cfg.max.as_secs_f64());
    let jittered = SignedDuration::from_secs_f64((capped * factor).max(0.001));
    match retry_after {
        Some(after) if after > jittered => after,
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            attempts: 5,
            initial: SignedDuration::from_secs(10),
            max: SignedDuration::from_secs(60),
        }
    }

    #[test]
    fn doubles_then_caps() {
        let d = |n| delay_with(&cfg(), n, None, 1.0).as_secs();
        assert_eq!((d(1), d(2), d(3), d(4), d(5)), (10, 20, 40, 60, 60));
    }

    #[test]
    fn jitter_halves_at_most() {
        assert_eq!(delay_with(&cfg(), 2, None, 0.5).as_secs(), 10);
        for n in 1..8 {
            let d = delay(&cfg(), n, None);
            assert!(d >= SignedDuration::from_secs(5) && d <= SignedDuration::from_secs(60));
        }
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let after = SignedDuration::from_secs(120);
        assert_eq!(delay_with(&cfg(), 1, Some(after), 1.0), after);
        let short = SignedDuration::from_secs(1);
        assert_eq!(delay_with(&cfg(), 1, Some(short), 1.0).as_secs(), 10);
    }
}
