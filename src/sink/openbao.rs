//! Placeholder, being written.

use std::path::Path;

use async_trait::async_trait;
use secrecy::SecretString;

use super::{Sink, SinkTarget};
use crate::config::OpenBaoSinkConfig;
use crate::error::CallError;

/// Placeholder.
pub struct OpenBaoSink {
    name: String,
}

impl OpenBaoSink {
    /// Placeholder.
    pub fn new(
        name: &str,
        cfg: &OpenBaoSinkConfig,
        creds: Option<&Path>,
    ) -> Result<OpenBaoSink, CallError> {
        let _ = (cfg, creds);
        Ok(OpenBaoSink {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Sink for OpenBaoSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "openbao"
    }
    async fn put(&self, _t: &SinkTarget, _s: &SecretString) -> Result<Option<String>, CallError> {
        Err(CallError::permanent("not yet"))
    }
    async fn read_back(&self, _t: &SinkTarget) -> Result<Option<String>, CallError> {
        Err(CallError::permanent("not yet"))
    }
}
