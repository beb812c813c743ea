//! Placeholder, being written.

use async_trait::async_trait;
use secrecy::SecretString;

use super::{Sink, SinkTarget};
use crate::config::ExecSinkConfig;
use crate::error::CallError;

/// Placeholder.
pub struct ExecSink {
    name: String,
}

impl ExecSink {
    /// Placeholder.
    pub fn new(name: &str, cfg: &ExecSinkConfig) -> Result<ExecSink, CallError> {
        let _ = cfg;
        Ok(ExecSink {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Sink for ExecSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "exec"
    }
    async fn put(&self, _t: &SinkTarget, _s: &SecretString) -> Result<Option<String>, CallError> {
        Err(CallError::permanent("not yet"))
    }
    async fn read_back(&self, _t: &SinkTarget) -> Result<Option<String>, CallError> {
        Err(CallError::permanent("not yet"))
    }
}
