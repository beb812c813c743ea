//! The configuration in force with the providers and sinks built from it,
//! a concurrency limit and an optional request rate limit per provider,
//! and the pre-shared keys new secrets are sealed under for API callers.
//! Swapped whole on reload.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use keyrot_config::Config;
use keyrot_core::crypto::psk::PskBytes;
use keyrot_core::store::Store;
use keyrot_peers::hook::{self, Hook};
use keyrot_peers::provider::limit::{Limited, RateLimit};
use keyrot_peers::provider::{self, Provider};
use keyrot_peers::sink::{self, Sink};

/// Config, providers, sinks and limits, as one unit.
pub struct Runtime {
    /// The configuration.
    pub config: Arc<Config>,
    /// Providers by name; those with `requests_per_second` are wrapped in
    /// [`Limited`], so every call waits for the provider's bucket.
    pub providers: HashMap<String, Arc<dyn Provider>>,
    /// Sinks by name.
    pub sinks: HashMap<String, Arc<dyn Sink>>,
    /// Reload hooks by name.
    pub hooks: HashMap<String, Arc<dyn Hook>>,
    /// At most `max_concurrent` runners per provider.
    pub limits: HashMap<String, Arc<Semaphore>>,
    /// The request buckets of providers with `requests_per_second`.
    pub rates: HashMap<String, Arc<RateLimit>>,
    /// `[[psk]]` keys by id, resolved (zeroed on drop).
    pub psks: HashMap<String, PskBytes>,
    /// The providers as built, before any rate limit, to wrap them again
    /// around an inherited bucket.
    unlimited: HashMap<String, Arc<dyn Provider>>,
}

impl Runtime {
    /// Builds every provider and sink and resolves the pre-shared keys
    /// (and checks the API tokens); the first that fails is the error.
    pub fn build(config: Arc<Config>, store: &Arc<Store>) -> Result<Runtime, String> {
        let creds = keyrot_config::credentials_dir_from_env();
        let psks = super::reveal::resolve_psks(&config, creds.as_deref())?;
        super::reveal::check_tokens(&config, creds.as_deref())?;
        // The mail transport's password and CA file, checked now so a bad
        // one stops the start (or the reload) instead of every delivery.
        crate::notify::transport::preflight(&config.notify, creds.clone())
            .map_err(|e| e.message)?;
        let mut providers = HashMap::new();
        let mut unlimited = HashMap::new();
        let mut limits = HashMap::new();
        let mut rates = HashMap::new();
        for p in &config.providers {
            let built =
                provider::build(p, store).map_err(|e| format!("provider {:?}: {e}", p.name))?;
            unlimited.insert(p.name.clone(), Arc::clone(&built));
            let built: Arc<dyn Provider> = match p.requests_per_second {
                Some(rate) => {
                    let bucket = Arc::new(RateLimit::new(rate));
                    rates.insert(p.name.clone(), Arc::clone(&bucket));
                    Arc::new(Limited::new(built, bucket))
                }
                None => built,
            };
            providers.insert(p.name.clone(), built);
            limits.insert(
                p.name.clone(),
                Arc::new(Semaphore::new(p.max_concurrent.max(1))),
            );
        }
        let mut sinks = HashMap::new();
        for s in &config.sinks {
            let built = sink::build(s).map_err(|e| format!("sink {:?}: {e}", s.name))?;
            sinks.insert(s.name.clone(), built);
        }
        let hooks = config
            .hooks
            .iter()
            .map(|h| (h.name.clone(), hook::build(h)))
            .collect();
        Ok(Runtime {
            config,
            providers,
            sinks,
            hooks,
            limits,
            rates,
            psks,
            unlimited,
        })
    }

    /// Keeps the concurrency limits and request buckets of `old` for
    /// providers that stay with the same setting, so a reload never lets
    /// more runners in, or more requests out, than allowed (runners still
    /// on the old runtime share them with the new one).
    pub fn inherit_limits(&mut self, old: &Runtime) {
        for (name, sem) in &old.limits {
            let same = old.config.provider(name).map(|p| p.max_concurrent)
                == self.config.provider(name).map(|p| p.max_concurrent);
            if same && self.limits.contains_key(name) {
                self.limits.insert(name.clone(), Arc::clone(sem));
            }
        }
        for (name, bucket) in &old.rates {
            let same = self
                .rates
                .get(name)
                .is_some_and(|b| b.per_second() == bucket.per_second());
            if let (true, Some(inner)) = (same, self.unlimited.get(name)) {
                let wrapped = Limited::new(Arc::clone(inner), Arc::clone(bucket));
                self.providers.insert(name.clone(), Arc::new(wrapped));
                self.rates.insert(name.clone(), Arc::clone(bucket));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use keyrot_core::crypto::MasterKey;

    fn runtime(store: &Arc<Store>, rate_a: &str) -> Runtime {
        let text = format!(
            "[[provider]]\nname = \"a\"\ntype = \"local\"\nrequests_per_second = {rate_a}\n\n[[provider]]\nname = \"b\"\ntype = \"local\"\n"
        );
        let cfg = keyrot_config::load_str(Path::new("keyrot.toml"), &text).unwrap();
        Runtime::build(Arc::new(cfg), store).unwrap()
    }

    #[tokio::test]
    async fn rate_limited_providers_are_wrapped_and_keep_their_bucket_across_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(&dir.path().join("state.redb"), MasterKey::generate()).unwrap());
        let now = jiff::Timestamp::UNIX_EPOCH;
        let old = runtime(&store, "100000");
        assert_eq!(old.rates.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(old.providers["a"].kind(), "local");
        old.providers["a"].list(now).await.unwrap();
        old.providers["b"].list(now).await.unwrap();
        assert_eq!(old.rates["a"].taken(), 1);
        // Same rate after a reload: the new runtime's calls take tokens
        // from the old bucket, which runners of the old runtime still use.
        let mut same = runtime(&store, "100000");
        same.inherit_limits(&old);
        assert!(Arc::ptr_eq(&same.rates["a"], &old.rates["a"]));
        same.providers["a"].list(now).await.unwrap();
        assert_eq!(old.rates["a"].taken(), 2);
        // A new rate gets a new bucket.
        let mut changed = runtime(&store, "50000");
        changed.inherit_limits(&old);
        assert!(!Arc::ptr_eq(&changed.rates["a"], &old.rates["a"]));
        changed.providers["a"].list(now).await.unwrap();
        assert_eq!(old.rates["a"].taken(), 2);
        assert_eq!(changed.rates["a"].taken(), 1);
    }
}
