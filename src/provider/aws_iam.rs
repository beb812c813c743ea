//! The `aws-iam` provider: access keys of AWS IAM users. (Placeholder, being written.)

use std::path::Path;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use super::{Capabilities, IssueRequest, IssuedKey, Provider};
use crate::config::AwsIamProviderConfig;
use crate::error::CallError;
use crate::model::KeyInfo;

/// Placeholder.
pub struct AwsIamProvider {
    /// Config name.
    name: String,
}

impl AwsIamProvider {
    /// Builds the provider; secret references are resolved now.
    pub fn new(
        name: &str,
        cfg: &AwsIamProviderConfig,
        creds: Option<&Path>,
    ) -> Result<AwsIamProvider, CallError> {
        let _ = (cfg, creds);
        Ok(AwsIamProvider {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Provider for AwsIamProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "aws-iam"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn list(&self, _now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        Err(CallError::permanent("not yet"))
    }
    async fn issue(&self, _req: &IssueRequest) -> Result<IssuedKey, CallError> {
        Err(CallError::permanent("not yet"))
    }
    async fn find_tagged(&self, _tag: &str, _now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        Err(CallError::permanent("not yet"))
    }
    async fn verify(
        &self,
        _id: &str,
        _secret: &SecretString,
        _now: Timestamp,
    ) -> Result<(), CallError> {
        Err(CallError::permanent("not yet"))
    }
    async fn revoke(&self, _id: &str, _now: Timestamp) -> Result<(), CallError> {
        Err(CallError::permanent("not yet"))
    }
}
