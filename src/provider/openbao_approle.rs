//! The `openbao-approle` provider: AppRole secret-ids of OpenBao/Vault roles. (Placeholder, being written.)

use std::path::Path;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use super::{Capabilities, IssueRequest, IssuedKey, Provider};
use crate::config::OpenBaoAppRoleProviderConfig;
use crate::error::CallError;
use crate::model::KeyInfo;

/// Placeholder.
pub struct OpenBaoAppRoleProvider {
    /// Config name.
    name: String,
}

impl OpenBaoAppRoleProvider {
    /// Builds the provider; secret references are resolved now.
    pub fn new(
        name: &str,
        cfg: &OpenBaoAppRoleProviderConfig,
        creds: Option<&Path>,
    ) -> Result<OpenBaoAppRoleProvider, CallError> {
        let _ = (cfg, creds);
        Ok(OpenBaoAppRoleProvider {
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Provider for OpenBaoAppRoleProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "openbao-approle"
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
