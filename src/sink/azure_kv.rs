//! Placeholder, being written.

use std::path::Path;

use async_trait::async_trait;
use secrecy::SecretString;

use super::{Sink, SinkTarget};
use crate::config::AzureKeyVaultSinkConfig;
use crate::error::CallError;

/// Placeholder.
pub struct AzureKeyVaultSink {
    name: String,
}

impl AzureKeyVaultSink {
    /// Placeholder.
    pub fn new(
        name: &str,
        cfg: &AzureKeyVaultSinkConfig,
        creds: Option<&Path>,
    ) -> Result<AzureKeyVaultSink, CallError> {
        let _ = (cfg, creds);
        Ok(AzureKeyVaultSink {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Sink for AzureKeyVaultSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "azure_kv"
    }
    async fn put(&self, _t: &SinkTarget, _s: &SecretString) -> Result<Option<String>, CallError> {
        Err(CallError::permanent("not yet"))
    }
    async fn read_back(&self, _t: &SinkTarget) -> Result<Option<String>, CallError> {
        Err(CallError::permanent("not yet"))
    }
}
