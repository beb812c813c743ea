//! The one helper around every provider and sink call of a step
//! ([`Engine::call`]): the leader-lease check, its two failpoints, its
//! span and its error metric.

use tracing::Instrument as _;

use keyrot_core::error::CallError;
use keyrot_core::failpoint;

use super::Engine;

/// Who an external call goes to, for its error metric.
#[derive(Clone, Copy, Debug)]
pub(super) enum Peer<'a> {
    /// A provider's operation (`keyrot_provider_errors_total{provider, op}`).
    Provider(&'a str, &'static str),
    /// A sink (`keyrot_sink_errors_total{sink}`); its errors name it.
    Sink(&'a str),
    /// A reload hook (`keyrot_hook_errors_total{hook}`); its errors name it.
    Hook(&'a str),
}

impl Engine {
    /// One external call of a step, between its two failpoints, inside a
    /// `call` span naming the provider's operation or the sink (what the
    /// peer layer logs meanwhile, retries and throttling, carries it), with
    /// a failure counted against the peer's error metric (and a sink's
    /// error naming the sink). Every provider and sink call a step makes
    /// goes through here.
    pub(super) async fn call<T>(
        &self,
        around: failpoint::Around,
        peer: Peer<'_>,
        call: impl std::future::Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        // On a shared store, only while this instance's leader lease is
        // within its renew deadline by the monotonic clock: a leader that
        // lost it makes no call (its writes are refused by the store too).
        if !self.store.lease_valid() {
            return Err(CallError::transient(
                "this keyrot does not hold a valid leader lease: no call is made",
            ));
        }
        failpoint::hit(around.before)?;
        let span = match peer {
            Peer::Provider(_, op) => tracing::info_span!("call", op),
            Peer::Sink(name) => tracing::info_span!("call", sink = name),
            Peer::Hook(name) => tracing::info_span!("call", hook = name),
        };
        let out = call.instrument(span).await.map_err(|e| match peer {
            Peer::Provider(provider, op) => {
                self.metrics.provider_error(provider, op);
                e
            }
            Peer::Sink(name) => {
                self.metrics.sink_error(name);
                naming_sink(name, e)
            }
            Peer::Hook(name) => {
                self.metrics.hook_error(name);
                e
            }
        })?;
        failpoint::hit(around.after)?;
        Ok(out)
    }
}

/// A sink's error, naming the sink once: sinks name themselves
/// (`sink "vault": …`), so only an error that does not is prefixed.
pub(super) fn naming_sink(name: &str, e: CallError) -> CallError {
    let prefix = format!("sink {name:?}");
    if e.message.starts_with(&prefix) {
        return e;
    }
    CallError {
        message: format!("{prefix}: {}", e.message),
        ..e
    }
}
