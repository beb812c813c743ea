//! `keyrot orphans` and `GET /v1/orphans`: the orphans each provider's last
//! sync found (from the store: no provider is called), and per provider
//! whether its syncs sweep at all.

use super::super::{ApiError, OrphanSweep, OrphansResponse};
use keyrot_config::Config;
use keyrot_core::store::Store;

/// The orphans of `provider` (every provider's when none), with each
/// provider's sweep: `sweeps` says whether a provider is swept, where known.
pub fn orphans(
    store: &Store,
    cfg: &Config,
    provider: Option<&str>,
    live: bool,
    sweeps: &dyn Fn(&str) -> Option<bool>,
) -> Result<OrphansResponse, ApiError> {
    if let Some(p) = provider
        && cfg.provider(p).is_none()
    {
        let known: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        return Err(ApiError::bad_field(
            "provider",
            format!(
                "no provider named {:?} is configured (providers: {})",
                keyrot_core::escape::controls(p),
                known.join(", ")
            ),
        ));
    }
    let mut providers = Vec::new();
    for p in cfg
        .providers
        .iter()
        .filter(|p| provider.is_none_or(|n| n == p.name))
    {
        providers.push(OrphanSweep {
            provider: p.name.clone(),
            swept: sweeps(&p.name),
            revoke_orphans: p.revoke_orphans,
            last_sync: store.last_sync(&p.name)?,
        });
    }
    let orphans = store
        .orphans()?
        .into_iter()
        .filter(|o| provider.is_none_or(|n| n == o.provider))
        .collect();
    Ok(OrphansResponse {
        live,
        orphans,
        providers,
    })
}
