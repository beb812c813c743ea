//! systemd's manager over D-Bus (placeholder until the client lands).

use keyrot_core::error::CallError;

/// How units are reloaded.
#[derive(Clone, Copy, Debug)]
pub enum ReloadMode {
    /// `systemctl reload`.
    Reload,
    /// `systemctl try-reload-or-restart`.
    TryReloadOrRestart,
}

/// A connection to systemd's manager.
pub struct Systemd;

impl Systemd {
    /// Connects to the bus at `address`, or the system bus.
    pub async fn connect(_address: Option<&str>) -> Result<Self, CallError> {
        Err(CallError::permanent("the systemd action is not built yet"))
    }
    /// Reloads `unit`.
    pub async fn reload(
        &self,
        _unit: &str,
        _mode: ReloadMode,
        _timeout: std::time::Duration,
    ) -> Result<(), CallError> {
        Err(CallError::permanent("the systemd action is not built yet"))
    }
    /// Signals the unit's main process.
    pub async fn kill_main(&self, _unit: &str, _signal: i32) -> Result<(), CallError> {
        Err(CallError::permanent("the systemd action is not built yet"))
    }
}
