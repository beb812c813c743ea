//! The configuration in force with the providers and sinks built from it,
//! a concurrency limit per provider, and the pre-shared keys new secrets
//! are sealed under for API callers. Swapped whole on reload.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::control::envelope::PskBytes;
use crate::provider::{self, Provider};
use crate::sink::{self, Sink};
use crate::store::Store;

/// Config, providers, sinks and limits, as one unit.
pub struct Runtime {
    /// The configuration.
    pub config: Arc<Config>,
    /// Providers by name.
    pub providers: HashMap<String, Arc<dyn Provider>>,
    /// Sinks by name.
    pub sinks: HashMap<String, Arc<dyn Sink>>,
    /// At most `max_concurrent` runners per provider.
    pub limits: HashMap<String, Arc<Semaphore>>,
    /// `[[psk]]` keys by id, resolved (zeroed on drop).
    pub psks: HashMap<String, PskBytes>,
}

impl Runtime {
    /// Builds every provider and sink and resolves the pre-shared keys
    /// (and checks the API tokens); the first that fails is the error.
    pub fn build(config: Arc<Config>, store: &Arc<Store>) -> Result<Runtime, String> {
        let creds = crate::config::credentials_dir_from_env();
        let psks = super::reveal::resolve_psks(&config, creds.as_deref())?;
        super::reveal::check_tokens(&config, creds.as_deref())?;
        // The mail transport's password and CA file, checked now so a bad
        // one stops the start (or the reload) instead of every delivery.
        crate::notify::transport::preflight(&config.notify, creds.clone())
            .map_err(|e| e.message)?;
        let mut providers = HashMap::new();
        let mut limits = HashMap::new();
        for p in &config.providers {
            let built =
                provider::build(p, store).map_err(|e| format!("provider {:?}: {e}", p.name))?;
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
        Ok(Runtime {
            config,
            providers,
            sinks,
            limits,
            psks,
        })
    }

    /// Keeps the concurrency limits of `old` for providers that stay, so a
    /// reload never lets more runners in than allowed.
    pub fn inherit_limits(&mut self, old: &Runtime) {
        for (name, sem) in &old.limits {
            let same = old.config.provider(name).map(|p| p.max_concurrent)
                == self.config.provider(name).map(|p| p.max_concurrent);
            if same && self.limits.contains_key(name) {
                self.limits.insert(name.clone(), Arc::clone(sem));
            }
        }
    }
}
