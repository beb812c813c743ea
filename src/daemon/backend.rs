//! What the control server calls into: [`DaemonBackend`], the daemon's
//! side of [`Backend`] (reads from the store, rotations through the
//! engine, reloads, orphans, sink pushes, the leader's role).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::leader::Leadership;
use super::reload;
use crate::control::{self, ApiError, Backend, RotateRequest};
use keyrot_config::Config;
use keyrot_core::model::{Initiator, RotationRecord, Trigger};
use keyrot_core::store::Store;
use keyrot_core::wake::Wake;
use keyrot_engine::rotation::{Engine, Refusal, StartRequest};
use keyrot_engine::scheduler::SyncRetries;

/// What the control server calls into.
pub(super) struct DaemonBackend {
    /// The state machine.
    pub(super) engine: Arc<Engine>,
    /// The config file, for reloads.
    pub(super) config_path: PathBuf,
    /// One reload at a time (shared with the SIGHUP handler).
    pub(super) reload_lock: Arc<Mutex<()>>,
    /// Wakes scheduler and sender.
    pub(super) wake: Wake,
    /// Failed inventory syncs, retried by the sync loop.
    pub(super) sync_retries: SyncRetries,
    /// Leadership, on a shared store.
    pub(super) leadership: Option<Arc<Leadership>>,
}

#[async_trait]
impl Backend for DaemonBackend {
    fn store(&self) -> Arc<Store> {
        self.engine.store()
    }

    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.engine.runtime().config)
    }

    fn standby(&self) -> Option<String> {
        self.leadership.as_ref().and_then(|l| l.standby())
    }

    fn role(&self) -> Option<crate::control::InstanceRole> {
        self.leadership.as_ref().map(|l| l.view())
    }

    async fn rotate(&self, req: RotateRequest) -> Result<RotationRecord, ApiError> {
        let store = self.engine.store();
        let key = req.key.clone();
        let slot = tokio::task::spawn_blocking(move || control::views::resolve_key(&store, &key))
            .await
            .map_err(|e| ApiError::new(500, e.to_string()))??;
        let now = self.engine.now();
        if let Some(t) = req.new_expires_at.filter(|t| *t <= now) {
            return Err(ApiError::bad_field(
                "new_expires_at",
                format!("{t} is in the past"),
            ));
        }
        if let Some(id) = req.reveal_psk.as_deref()
            && !self.engine.runtime().psks.contains_key(id)
        {
            return Err(ApiError::bad_field(
                "reveal_psk",
                format!("no [[psk]] with id {id:?} is configured"),
            ));
        }
        let reason = req
            .reason
            .clone()
            .unwrap_or_else(|| "requested by an operator".into());
        let start = StartRequest {
            trigger: Trigger::Manual,
            reason,
            initiator: Initiator {
                rotated_by: req.rotated_by,
                initiated_from: req.initiated_from,
                rotation_policy_id: req.rotation_policy_id,
            },
            new_expires_at: req.new_expires_at,
            old_expires_at: req.old_expires_at,
            notify_contacts: req.notify_contacts,
            reveal_psk: req.reveal_psk.clone(),
        };
        Ok(self.engine.start(&slot, start).await?)
    }

    async fn test_sink(
        &self,
        name: &str,
    ) -> Result<keyrot_peers::sink::probe::ProbeReport, ApiError> {
        let sink = self
            .engine
            .runtime()
            .sinks
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::new(404, format!("no sink named {name:?} is configured")))?;
        let provider =
            keyrot_peers::sink::probe::probe_provider(&self.engine.runtime().config, name);
        keyrot_peers::sink::probe::run(sink.as_ref(), &provider, self.engine.now())
            .await
            .map_err(|e| ApiError::new(502, e.message))
    }

    async fn resume(&self, id: &str) -> Result<RotationRecord, ApiError> {
        Ok(self.engine.resume(id).await?)
    }

    async fn abort(&self, id: &str) -> Result<RotationRecord, ApiError> {
        Ok(self.engine.abort(id).await?)
    }

    async fn restart(&self, id: &str) -> Result<RotationRecord, ApiError> {
        Ok(self.engine.restart(id).await?)
    }

    async fn enroll(
        &self,
        id: &str,
        req: control::EnrollRequest,
    ) -> Result<RotationRecord, ApiError> {
        Ok(self
            .engine
            .enroll(id, req.key_id, req.secret, req.accept_unverified)
            .await?)
    }

    async fn reload(&self) -> Result<(), ApiError> {
        reload(
            &self.engine,
            &self.config_path,
            &self.reload_lock,
            &self.wake,
            &self.sync_retries,
        )
        .await
        .map_err(|e| ApiError::new(400, e))
    }

    fn sweeps(&self, name: &str) -> Option<bool> {
        self.engine
            .runtime()
            .providers
            .get(name)
            .map(|p| p.lists_tags())
    }

    async fn revoke_orphans(
        &self,
        provider: Option<&str>,
        actor: &str,
    ) -> Result<Vec<keyrot_engine::scheduler::orphans::RevokeOutcome>, ApiError> {
        keyrot_engine::scheduler::orphans::revoke(&self.engine, provider, actor, false)
            .await
            .map_err(|e| ApiError::new(500, e))
    }

    async fn push(
        &self,
        slot: &str,
        sink: Option<&str>,
        actor: &str,
    ) -> Result<keyrot_engine::rotation::push::PushReport, ApiError> {
        Ok(self.engine.push(slot, sink, actor).await?)
    }

    async fn take_envelope(
        &self,
        rotation_id: &str,
    ) -> Result<Option<secrecy::SecretString>, ApiError> {
        Ok(self
            .engine
            .take_envelope(rotation_id)
            .await
            .map_err(Refusal::from)?)
    }
}
