//! A reload hook that records its runs: which rotation ran it and which
//! key id the sink held at that moment (what a consumer re-reading the
//! file would have got), with failures on demand. It stands in for the
//! configured action, in process, so paused tokio time stays exact.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use keyrot_core::error::CallError;
use keyrot_peers::hook::{Hook, HookEvent};

/// One run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookRun {
    /// The rotation whose step ran it.
    pub rotation: String,
    /// The run id it was given.
    pub run_id: String,
    /// The key id in the sink file when it ran (None: no file).
    pub sink_key: Option<String>,
    /// When it ran, by the engine's clock.
    pub at: jiff::Timestamp,
}

/// See the module docs.
pub struct RecordingHook {
    sink_file: PathBuf,
    runs: Mutex<Vec<HookRun>>,
    failing: AtomicBool,
}

impl RecordingHook {
    /// A hook that reads the key id from the JSON sink file `sink_file`.
    pub fn new(sink_file: PathBuf) -> RecordingHook {
        RecordingHook {
            sink_file,
            runs: Mutex::new(Vec::new()),
            failing: AtomicBool::new(false),
        }
    }

    /// Every run so far, in order.
    pub fn runs(&self) -> Vec<HookRun> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// While set, every run fails (transiently, as a consumer that is
    /// down does).
    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
}

#[async_trait]
impl Hook for RecordingHook {
    fn name(&self) -> &str {
        "reload"
    }

    async fn run(&self, event: &HookEvent) -> Result<String, CallError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(CallError::transient(
                "hook \"reload\": the consumer is down",
            ));
        }
        let sink_key = std::fs::read_to_string(&self.sink_file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["key_id"].as_str().map(str::to_string));
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(HookRun {
                rotation: event.rotation_id.clone(),
                run_id: event.run_id.clone(),
                sink_key,
                at: event.at,
            });
        Ok("recorded".into())
    }
}
