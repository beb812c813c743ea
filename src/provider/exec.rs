//! The `exec` provider: a program speaking keyrot's JSON protocol. (Placeholder, being written.)

use std::path::Path;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use super::{Capabilities, IssueRequest, IssuedKey, Provider};
use crate::config::ExecProviderConfig;
use crate::error::CallError;
use crate::model::KeyInfo;

/// Placeholder.
pub struct ExecProvider {
    /// Config name.
    name: String,
}

impl ExecProvider {
    /// Builds the provider; secret references are resolved now.
    pub fn new(
        name: &str,
        cfg: &ExecProviderConfig,
        creds: Option<&Path>,
    ) -> Result<ExecProvider, CallError> {
        let _ = (cfg, creds);
        Ok(ExecProvider {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Provider for ExecProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "exec"
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
