//! The control API: HTTP/1.1 + JSON on a unix socket, served by the daemon
//! and used by the CLI. Reads come from the store and config through
//! [`views`]; writes go through the daemon's [`Backend`].

pub mod api;
pub mod client;
pub mod conn;

pub mod peer;
pub mod rotate_api;
pub mod server;
pub mod socket;
pub mod views;

use std::sync::Arc;

use async_trait::async_trait;

use keyrot_config::Config;
use keyrot_core::model::RotationRecord;
use keyrot_core::store::Store;
use keyrot_engine::rotation::Refusal;

pub use api::*;

/// An error the API turns into a status code and a JSON body.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Message for the caller.
    pub message: String,
    /// Field at fault.
    pub field: Option<String>,
    /// Near matches for an unknown key.
    pub suggestions: Vec<String>,
    /// A rotation already running.
    pub rotation_id: Option<String>,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            suggestions: Vec::new(),
            rotation_id: None,
        }
    }
    /// 400 naming a field.
    pub fn bad_field(field: &str, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(400, message);
        e.field = Some(field.to_string());
        e
    }
}

/// The state machine's refusals as HTTP: unknown 404, conflict 409,
/// invalid 400, a provider's failure 502, keyrot's own 500.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Unknown(m) => ApiError::new(404, m),
            Refusal::Conflict {
                message,
                rotation_id,
            } => ApiError {
                rotation_id,
                ..ApiError::new(409, message)
            },
            Refusal::Invalid {
                field: Some(f),
                message,
            } => ApiError::bad_field(f, message),
            Refusal::Invalid {
                field: None,
                message,
            } => ApiError::new(400, message),
            Refusal::Peer(m) => ApiError::new(502, m),
            Refusal::Internal(m) => ApiError::new(500, m),
        }
    }
}

/// What the daemon offers the control server.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The store (reads only: the state machine is the only writer).
    fn store(&self) -> Arc<Store>;
    /// The configuration in force.
    fn config(&self) -> Arc<Config>;
    /// While this instance is a standby (a shared store whose leader lease
    /// another instance holds): the leader, as `holder (epoch N)`. Calls
    /// that would change something are then answered 503.
    fn standby(&self) -> Option<String> {
        None
    }
    /// On a shared store: this instance's role.
    fn role(&self) -> Option<InstanceRole> {
        None
    }
    /// Starts a rotation now; returns its record as created (Pending).
    async fn rotate(&self, req: RotateRequest) -> Result<RotationRecord, ApiError>;
    /// Resumes a Failed rotation from the state it failed in.
    async fn resume(&self, id: &str) -> Result<RotationRecord, ApiError>;
    /// Aborts a rotation (revoking its new key if one was issued).
    async fn abort(&self, id: &str) -> Result<RotationRecord, ApiError>;
    /// Restarts a Failed rotation afresh (revoking its new key, even one
    /// sinks hold); returns the fresh rotation (Pending).
    async fn restart(&self, id: &str) -> Result<RotationRecord, ApiError> {
        let _ = id;
        Err(ApiError::new(501, "this keyrot cannot restart rotations"))
    }
    /// Enrolls the secret of a key created by hand (assisted rotation).
    async fn enroll(&self, id: &str, req: EnrollRequest) -> Result<RotationRecord, ApiError>;
    /// Reloads the configuration; a bad one is rejected with its errors.
    async fn reload(&self) -> Result<(), ApiError>;
    /// Writes, reads back and finishes a probe value in sink `name`
    /// (`keyrot sink test`), with the credentials the daemon holds.
    async fn test_sink(
        &self,
        name: &str,
    ) -> Result<keyrot_peers::sink::probe::ProbeReport, ApiError> {
        let _ = name;
        Err(ApiError::new(501, "this keyrot cannot test sinks"))
    }
    /// Whether provider `name`'s syncs sweep for orphans (it lists keys
    /// with their tags), as the running daemon built it (None: not known
    /// here).
    fn sweeps(&self, name: &str) -> Option<bool> {
        let _ = name;
        None
    }
    /// Revokes the orphans of `provider` (every provider's when none), each
    /// audited with `actor` (`keyrot orphans --revoke`).
    async fn revoke_orphans(
        &self,
        provider: Option<&str>,
        actor: &str,
    ) -> Result<Vec<keyrot_engine::scheduler::orphans::RevokeOutcome>, ApiError> {
        let _ = (provider, actor);
        Err(ApiError::new(501, "this keyrot cannot revoke orphan keys"))
    }
    /// Writes `slot`'s kept current secret again to its sinks (or `sink`),
    /// audited with `actor` (`keyrot sink push`).
    async fn push(
        &self,
        slot: &str,
        sink: Option<&str>,
        actor: &str,
    ) -> Result<keyrot_engine::rotation::push::PushReport, ApiError> {
        let _ = (slot, sink, actor);
        Err(ApiError::new(
            501,
            "this keyrot cannot push secrets to sinks",
        ))
    }
    /// Hands out, once, the new secret of rotation `rotation_id` sealed
    /// under the caller's pre-shared key (and wipes it from the store).
    /// None when there is none (not issued yet, taken, or wiped).
    async fn take_envelope(
        &self,
        rotation_id: &str,
    ) -> Result<Option<secrecy::SecretString>, ApiError> {
        let _ = rotation_id;
        Err(ApiError::new(
            501,
            "this keyrot cannot hand out sealed secrets",
        ))
    }
}
