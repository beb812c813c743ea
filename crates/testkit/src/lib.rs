//! keyrot's state machine in process, for tests: a [`World`] holds a real
//! store, the local provider (its keys live in that store), a file sink, a
//! manual clock and an engine. The store is on either [`Backend`]: a redb
//! file in the world's temporary directory ([`World::new`]), or a fresh
//! database of the test process's PostgreSQL server
//! ([`World::on`]`(Backend::Postgres)`), whose leader lease the world takes
//! as holder `testkit`. A "crash" is the engine dropped with its runners
//! and the store closed; [`World::restart`] reopens the same store with the
//! same master key and a new engine, as keyrot does after `kill -9` (on
//! PostgreSQL it takes the lease again at once, under a new epoch: the
//! same holder may). [`World::check`] states what must hold once
//! every rotation has ended: the invariants the binary-level crash suite
//! checks from outside, here read from the store and the sink directly.
//!
//! [`World::shaped`] puts a [`fake::Fake`] provider in place of the local
//! one: a provider that sets the old key inactive for the overlap, or one
//! that cannot create keys, so people make them and enroll them.
//!
//! A world's time is the manual clock (and, in `#[tokio::test(start_paused
//! = true)]` tests, tokio's paused clock): no world test waits on the wall
//! clock.
//!
//! [`systemd_double::SystemdDouble`] is systemd's manager as the
//! `systemd` reload hook sees it, on a private D-Bus bus
//! ([`dbus_daemon::DbusDaemon`]), for engine and binary tests alike. Its
//! jobs and its bus are real processes and sockets: waits on it are
//! bounded by timeouts the tests give.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use keyrot_core::clock::{Clock as _, ManualClock};
use keyrot_core::crypto::MasterKey;
use keyrot_core::model::{Initiator, KeyRecord, RotationRecord, RotationState, Trigger};
use keyrot_core::pgserver::PgServer;
use keyrot_core::policy::testutil::{dur, ts};
use keyrot_core::store::{PgOptions, Store};
use keyrot_core::wake::Wake;
use keyrot_engine::rotation::{Engine, Runtime, StartRequest};
use keyrot_peers::provider::Provider;
use keyrot_peers::sink::SinkTarget;

pub mod dbus_daemon;
pub mod fake;
pub mod hook;
pub mod quiet;
pub mod systemd_double;
use fake::{Fake, Shape};
pub use hook::RecordingHook;

/// The one slot every world has.
pub const SLOT: &str = "local/ci";

/// The policy's overlap (`keyrot_config::testkit::local`): how far
/// [`World::finish`] moves the clock.
pub const OVERLAP: &str = "1h";

/// The holder id a world takes the PostgreSQL leader lease under.
pub const HOLDER: &str = "testkit";

/// Where a world keeps its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// A redb file in the world's temporary directory.
    Redb,
    /// A fresh database of the test process's PostgreSQL server
    /// ([`PgServer::shared`]), whose leader lease the world holds.
    Postgres,
}

impl Backend {
    /// Both, redb first.
    pub const ALL: [Backend; 2] = [Backend::Redb, Backend::Postgres];

    /// `redb` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Redb => "redb",
            Backend::Postgres => "postgres",
        }
    }
}

/// A store, a clock and the engine over them.
pub struct World {
    dir: tempfile::TempDir,
    /// The database's URL, on PostgreSQL; `None`: the redb file in `dir`.
    database: Option<String>,
    master: [u8; 32],
    /// The manual clock every engine of this world reads.
    pub clock: Arc<ManualClock>,
    engine: Option<Arc<Engine>>,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The provider in place of the local one, if shaped; it outlives
    /// every crash, as a provider outside keyrot does.
    fake: Option<Arc<Fake>>,
    /// A change to the test configuration, made at every (re)start.
    tweak: Option<Tweak>,
    /// The reload hook in place of the configured one, if hooked; it
    /// outlives every crash, as a consumer outside keyrot does.
    hook: Option<Arc<RecordingHook>>,
}

/// A change to the test configuration.
pub type Tweak = Arc<dyn Fn(&mut keyrot_config::Config) + Send + Sync>;

impl World {
    /// A fresh redb store with one slot (`local/ci`, policy overlap 1h,
    /// one file sink `out`) and an engine over it.
    pub fn new() -> World {
        World::on(Backend::Redb)
    }

    /// The same world with its store on `backend`.
    pub fn on(backend: Backend) -> World {
        World::with(backend, None, None)
    }

    /// The same world (redb) with a [`Fake`] provider of `shape` in place
    /// of the local one.
    pub fn shaped(shape: Shape) -> World {
        World::shaped_on(Backend::Redb, shape)
    }

    /// The same on `backend`.
    pub fn shaped_on(backend: Backend, shape: Shape) -> World {
        World::with(backend, Some(Arc::new(Fake::new(shape))), None)
    }

    /// The same world (redb) with `tweak` applied to its configuration
    /// (e.g. a webhook), at the start and at every restart.
    pub fn tweaked(tweak: impl Fn(&mut keyrot_config::Config) + Send + Sync + 'static) -> World {
        World::tweaked_on(Backend::Redb, tweak)
    }

    /// The same on `backend`.
    pub fn tweaked_on(
        backend: Backend,
        tweak: impl Fn(&mut keyrot_config::Config) + Send + Sync + 'static,
    ) -> World {
        World::with(backend, None, Some(Arc::new(tweak)))
    }

    /// A world on `backend` whose sink `out` has a reload hook `reload`
    /// (`exec`, debounce 1 s) that appends the rotation id and the key id
    /// the sink holds when it runs to `hook.log` ([`World::hook_log`]).
    pub fn hooked_on(backend: Backend) -> World {
        let mut w = World::tweaked_on(backend, hook_tweak);
        w.hook = Some(Arc::new(RecordingHook::new(w.out().join("ci.json"))));
        // The engine again, with the recording hook in place.
        w.engine = None;
        w.open();
        w
    }

    /// The recording hook of a [`World::hooked_on`] world.
    pub fn hook(&self) -> &Arc<RecordingHook> {
        self.hook.as_ref().expect("a hooked world")
    }

    fn with(backend: Backend, fake: Option<Arc<Fake>>, tweak: Option<Tweak>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let database = match backend {
            Backend::Redb => None,
            Backend::Postgres => Some(PgServer::shared().fresh_database().unwrap()),
        };
        let master = [7u8; 32];
        let clock = Arc::new(ManualClock::new(ts("2026-11-23T10:00:00Z")));
        let mut w = World {
            dir,
            database,
            master,
            clock,
            engine: None,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            fake,
            tweak,
            hook: None,
        };
        w.open();
        let slot = KeyRecord {
            slot: SLOT.into(),
            provider: "local".into(),
            name: "ci".into(),
            current: None,
            policy: "p".into(),
            next_due: None,
            due_reason: None,
            active_rotation: None,
            last_rotated_at: None,
            last_started_at: None,
            synced_at: None,
            sinks: vec!["out".into()],
            hooks: Vec::new(),
            scopes: vec!["read:all".into()],
            contacts: vec!["owner@example.com".into()],
            group: None,
            ended: None,
            kept_secret: None,
        };
        w.engine().store().write(|tx| tx.put_key(&slot)).unwrap();
        w
    }

    /// The engine in force.
    pub fn engine(&self) -> &Arc<Engine> {
        self.engine.as_ref().expect("the engine is down")
    }

    /// The store under the engine in force.
    pub fn store(&self) -> Arc<Store> {
        self.engine().store()
    }

    /// Where this world keeps its store.
    pub fn backend(&self) -> Backend {
        match self.database {
            None => Backend::Redb,
            Some(_) => Backend::Postgres,
        }
    }

    /// Opens the store with the world's master key: the redb file, or the
    /// database with its leader lease taken (an hour, trusted for 50
    /// minutes of this process's clock) as [`HOLDER`]. After a crash the
    /// lease is still the world's, and taken again under a new epoch.
    fn open_store(&self) -> Store {
        let master = MasterKey::from_bytes(self.master);
        let Some(url) = &self.database else {
            return Store::open(&self.out().join("state.redb"), master).unwrap();
        };
        let store = Store::open_postgres(
            &secrecy::SecretString::from(url.clone()),
            &PgOptions::default(),
            Some(master),
        )
        .unwrap();
        let hour = Duration::from_secs(3600);
        store
            .acquire_lease(HOLDER, hour, hour * 5 / 6)
            .unwrap()
            .expect("the world's lease is its own");
        store
    }

    fn out(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn open(&mut self) {
        let out = self.out();
        let sink = out.join("{name}.json").display().to_string();
        let mut cfg = keyrot_config::testkit::local(&out, &sink);
        // The slot, declared as the operator would (an inventory sync
        // keeps what the config claims).
        cfg.keys.push(keyrot_config::KeySpec {
            matches: keyrot_config::KeyMatch::Named {
                name: "ci".into(),
                id: None,
            },
            provider: "local".into(),
            policy: "p".into(),
            sinks: vec!["out".into()],
            scopes: vec!["read:all".into()],
            contacts: vec!["owner@example.com".into()],
            group: None,
            hooks: Vec::new(),
        });
        if let Some(tweak) = &self.tweak {
            tweak(&mut cfg);
        }
        let cfg = Arc::new(cfg);
        let store = Arc::new(self.open_store());
        let mut rt = Runtime::build(cfg, &store).unwrap();
        if let Some(fake) = &self.fake {
            rt.providers
                .insert("local".into(), Arc::clone(fake) as Arc<dyn Provider>);
        }
        if let Some(hook) = &self.hook {
            rt.hooks.insert(
                "reload".into(),
                Arc::clone(hook) as Arc<dyn keyrot_peers::hook::Hook>,
            );
        }
        self.stop = CancellationToken::new();
        self.tasks = TaskTracker::new();
        self.engine = Some(Engine::new(
            store,
            rt,
            self.clock.clone(),
            Wake::new(),
            self.stop.clone(),
            self.tasks.clone(),
        ));
    }

    /// Starts a manual rotation of the slot (its record, or why not).
    pub async fn rotate(&self) -> Result<RotationRecord, String> {
        self.engine()
            .start(SLOT, manual())
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits (in tokio time) until no runner is left.
    pub async fn settle(&self) {
        for _ in 0..10_000 {
            if self.engine().running().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("runners still going: {:?}", self.engine().running());
    }

    /// The crash: the engine stops, its runners are waited for and
    /// dropped, and the store is closed. Nothing of this engine survives.
    pub async fn crash(&mut self) {
        self.settle().await;
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.engine = None;
    }

    /// After a crash: the same store, a new engine, unfinished
    /// rotations resumed (what `keyrot run` does at start).
    pub async fn restart(&mut self) {
        self.open();
        self.engine().resume_all().await.unwrap();
        self.settle().await;
    }

    /// Drives every rotation to its end: resumes Failed ones (an operator's
    /// `keyrot rotation resume`) and moves the clock past each overlap and
    /// retry backoff,
    /// until none is left unfinished. The rotations, newest first.
    pub async fn finish(&self) -> Vec<RotationRecord> {
        for _ in 0..20 {
            self.settle().await;
            self.enroll_by_hand().await;
            self.settle().await;
            let rots = self.store().rotations(Some(SLOT), 100).unwrap();
            let open: Vec<&RotationRecord> =
                rots.iter().filter(|r| !r.state.is_terminal()).collect();
            let failed: Vec<&RotationRecord> = rots
                .iter()
                .filter(|r| r.state == RotationState::Failed)
                .collect();
            if open.is_empty() && failed.is_empty() {
                return rots;
            }
            for r in failed {
                self.engine().resume(&r.id).await.unwrap();
            }
            for r in open {
                if r.state == RotationState::Overlap {
                    self.clock
                        .advance(dur(OVERLAP) + SignedDuration::from_secs(1));
                }
                // A retry waits out its backoff on the clock.
                if let Some(at) = r.retry_at.filter(|at| *at > self.now()) {
                    self.clock.advance(at.duration_since(self.now()));
                }
                self.engine().spawn(&r.id);
            }
        }
        panic!(
            "rotations did not end: {:#?}",
            self.store().rotations(Some(SLOT), 100).unwrap()
        );
    }

    /// People at work for an assisted provider: every rotation awaiting a
    /// secret gets the key they made by hand for it (made once; after a
    /// crash they enroll the same one again). Refusals are left to the
    /// caller's checks.
    pub async fn enroll_by_hand(&self) {
        let Some(fake) = &self.fake else { return };
        let rots = self.store().rotations(Some(SLOT), 100).unwrap();
        for r in rots
            .iter()
            .filter(|r| r.state == RotationState::AwaitingSecret)
        {
            let (id, secret) = fake.made_by_hand(&r.id);
            let _ = self.engine().enroll(&r.id, Some(id), secret, true).await;
        }
    }

    /// What must hold once every rotation has ended; the problems found.
    /// - the slot's current key is the newest completed rotation's new
    ///   key, live at the provider, and the sink holds its secret;
    /// - every other key keyrot issued for the slot is revoked (no orphan);
    /// - no sealed secret is left in the store.
    pub async fn check(&self) -> Vec<String> {
        let mut v = Vec::new();
        let store = self.store();
        let rots = store.rotations(Some(SLOT), 100).unwrap();
        let Some(last) = rots.iter().find(|r| r.state == RotationState::Completed) else {
            return vec![format!("no rotation completed: {rots:#?}")];
        };
        let new = last.new_key.clone().unwrap();
        let key = store.key(SLOT).unwrap().unwrap();
        match &key.current {
            Some(c) if c.id == new.id => {}
            other => v.push(format!(
                "the slot points at {:?}, not at {}",
                other.as_ref().map(|c| &c.id),
                new.id
            )),
        }
        let keys: Vec<(String, bool, bool)> = match &self.fake {
            Some(fake) => fake
                .keys()
                .into_iter()
                .map(|k| (k.id, !k.revoked, k.inactive))
                .collect(),
            None => store
                .local_keys()
                .unwrap()
                .into_iter()
                .map(|k| (k.id, k.revoked_at.is_none(), false))
                .collect(),
        };
        for (id, live, inactive) in keys {
            if id == new.id && !live {
                v.push(format!("the current key {id} is revoked"));
            }
            if id == new.id && inactive {
                v.push(format!("the current key {id} is inactive"));
            }
            if id != new.id && live {
                v.push(format!("key {id} is live but not current: an orphan"));
            }
        }
        let sink = self.engine().runtime().sinks["out"].clone();
        let target = SinkTarget {
            slot: SLOT.into(),
            provider: "local".into(),
            key_name: "ci".into(),
            key_id: new.id.clone(),
            rotation_id: last.id.clone(),
            expires_at: None,
            probe: false,
        };
        match sink.read_back(&target).await {
            Ok(Some(h)) if h == new.secret_sha256 => {}
            other => v.push(format!(
                "the sink holds {other:?}, not the secret of {}",
                new.id
            )),
        }
        let left = store.secret_keys_ending("").unwrap();
        if !left.is_empty() {
            v.push(format!("sealed secrets left in the store: {left:?}"));
        }
        v
    }

    /// The clock's reading.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// The configuration of [`World::hooked_on`]: hook `reload` (debounce
/// 1 s) on sink `out`. Its action is replaced by a [`RecordingHook`].
fn hook_tweak(cfg: &mut keyrot_config::Config) {
    cfg.hooks.push(keyrot_config::hooks::HookConfig {
        name: "reload".into(),
        action: keyrot_config::hooks::HookAction::Exec {
            command: vec!["/bin/false".into()],
            env: Default::default(),
        },
        debounce: SignedDuration::from_secs(1),
        timeout: SignedDuration::from_secs(30),
    });
    for s in &mut cfg.sinks {
        s.hooks = vec!["reload".into()];
    }
}

/// A rotation an operator asks for.
pub fn manual() -> StartRequest {
    StartRequest {
        trigger: Trigger::Manual,
        reason: "test".into(),
        initiator: Initiator::default(),
        new_expires_at: None,
        old_expires_at: None,
        notify_contacts: false,
        reveal_psk: None,
    }
}
