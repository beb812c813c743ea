//! Placeholder, being written.

use std::path::Path;

use async_trait::async_trait;
use secrecy::SecretString;

use super::{Sink, SinkTarget};
use crate::config::AwsSecretsManagerSinkConfig;
use crate::error::CallError;

/// Placeholder.
pub struct AwsSecretsManagerSink {
    name: String,
}

impl AwsSecretsManagerSink {
    /// Placeholder.
    pub fn new(
        name: &str,
        cfg: &AwsSecretsManagerSinkConfig,
        creds: Option<&Path>,
    ) -> Result<AwsSecretsManagerSink, CallError> {
        let _ = (cfg, creds);
        Ok(AwsSecretsManagerSink {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Sink for AwsSecretsManagerSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "aws_sm"
    }
    async fn put(&self, _t: &SinkTarget, _s: &SecretString) -> Result<Option<String>, CallError> {
        Err(CallError::permanent("not yet"))
    }
    async fn read_back(&self, _t: &SinkTarget) -> Result<Option<String>, CallError> {
        Err(CallError::permanent("not yet"))
    }
}
