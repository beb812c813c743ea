//! Command-line interface: one file per subcommand. Commands other than
//! `run`, `check` and `init` talk to the daemon over the control socket, or
//! read the store directly when no daemon runs.

pub mod assets;
pub mod check;
pub mod decrypt;
pub mod demo;
pub mod enroll;
pub mod history;
pub mod init;
pub mod keys;
pub mod migrate;
pub mod notify;
pub mod orphans;
pub mod output;
pub mod plan;
pub mod rotate;
pub mod rotation;
pub mod sink;
pub mod status;
pub mod store;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;
use keyrot_config::{self as config, Config};

/// keyrot keeps API keys from expiring: it rotates them inside policy
/// windows, writes new secrets to vaults, and survives crashes.
#[derive(Debug, Parser)]
#[command(name = "keyrot", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (drop-ins are read from conf.d/ beside it).
    #[arg(long, short = 'c', global = true, env = "KEYROT_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Control socket (default: daemon.control_socket from the config).
    #[arg(long, global = true, env = "KEYROT_SOCKET")]
    pub socket: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        /// Where and how to log.
        #[arg(long, value_enum, default_value = "auto")]
        log_format: LogFormat,
    },
    /// Validate the configuration (like `nginx -t`).
    Check,
    /// Create the store's master key file (0600; never overwrites).
    Init {
        /// Key file to create (default: store.master_key_file).
        #[arg(long)]
        master_key_file: Option<PathBuf>,
    },
    /// Every key, like an admin console's key list.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The key inventory, short.
    Keys {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rotate a key now.
    Rotate {
        /// Key: `provider/name`, or a name unique across providers.
        key: String,
        /// Reason, recorded in the audit log.
        #[arg(long)]
        reason: Option<String>,
        /// Expiry for the new key (RFC 3339).
        #[arg(long)]
        new_expires: Option<jiff::Timestamp>,
        /// When to revoke the old key (RFC 3339; default: the policy's overlap).
        #[arg(long)]
        old_expires: Option<jiff::Timestamp>,
        /// Wait and print each state until the new key is live.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Past and current rotations, newest first.
    History {
        /// Only this key.
        key: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hand keyrot the secret of a key created by hand (reads it from stdin).
    Enroll {
        /// The rotation waiting for the secret.
        rotation_id: String,
        /// The new key's id at the provider (found by name when omitted).
        #[arg(long)]
        key_id: Option<String>,
        /// Enroll even where the provider cannot prove that the secret
        /// belongs to that key (it can only check that it authenticates).
        #[arg(long)]
        accept_unverified: bool,
    },
    /// Run the sandbox of the proposed Admin API and the daemon together, to watch rotations.
    Demo {
        /// Directory for everything the demo writes.
        #[arg(long, default_value = "target/keyrot-demo-api")]
        dir: PathBuf,
    },
    /// Run a local server of the proposed Admin API (for trying keyrot and tests).
    Sandbox {
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: std::net::SocketAddr,
        /// State file (kept across restarts).
        #[arg(long, default_value = "sandbox-state.json")]
        state: PathBuf,
        /// Pre-shared key for sealed secrets, as ID=FILE (FILE: 64 hex chars). Repeatable.
        #[arg(long = "psk", value_name = "ID=FILE")]
        psks: Vec<String>,
        /// Create a demo organisation with keys like an admin console's list, if the state is empty.
        #[arg(long)]
        seed: bool,
        /// Where to write the seeded keys' secrets (mode 0600).
        #[arg(long)]
        seed_secrets: Option<PathBuf>,
        /// Answer 429 beyond this many requests per second.
        #[arg(long)]
        rate_limit: Option<u32>,
        /// Ignore the Idempotency-Key header: every rotate call makes a new key.
        #[arg(long)]
        no_idempotency: bool,
        /// What a rotate without oldKeyExpiresAt does to the old key: keep its expiry, or revoke it at once.
        #[arg(long, value_name = "WHAT", default_value = "keep", value_parser = ["keep", "revoke"])]
        absent_old_expiry: String,
        /// Seal every new secret under this PSK (one of --psk), ignoring ?pskId=.
        #[arg(long, value_name = "ID")]
        seal_psk: Option<String>,
        /// The strictest server: --no-idempotency, --absent-old-expiry revoke, and sealing under --seal-psk (else the first --psk) whatever ?pskId= says.
        #[arg(long)]
        strict: bool,
    },
    /// Print the secret sealed in a rotate API response (read from stdin).
    ///
    /// Reads the JSON answer of `PATCH /orgs/{orgId}/api-keys/rotate/{apiKeyId}`
    /// on stdin, opens `data.encryptedSecret` (AES-256-GCM, AAD = `data.id`)
    /// with the pre-shared key in --psk-file, and prints the plain secret and a
    /// newline on stdout. This prints a secret on purpose, for pipelines: send
    /// stdout to the program that stores it, not to a terminal or a log.
    Decrypt {
        /// File holding the PSK as 64 hex characters (mode 0600 or stricter).
        #[arg(long)]
        psk_file: PathBuf,
    },
    /// Show, resume, abort or restart one rotation.
    Rotation {
        /// What to do.
        #[command(subcommand)]
        action: RotationAction,
    },
    /// Work with sinks.
    Sink {
        /// What to do.
        #[command(subcommand)]
        action: SinkAction,
    },
    /// Email notifications.
    Notify {
        /// What to do.
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// Back up, verify or migrate the store.
    Store {
        /// What to do.
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Keys a provider lists with keyrot's tag that no rotation keyrot
    /// knows owns (orphans), as each provider's last inventory sync found
    /// them; --revoke revokes them (through the daemon, audited).
    Orphans {
        /// Only this provider's.
        #[arg(long)]
        provider: Option<String>,
        /// Revoke each listed orphan at its provider (no prompt; needs the
        /// daemon and the operate scope).
        #[arg(long)]
        revoke: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Dry run: when each key's next rotation would start, and why.
    Plan {
        /// Horizon in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Directory to write into (created if missing).
        dir: PathBuf,
    },
}

/// `keyrot sink ...`.
#[derive(Debug, Subcommand)]
pub enum SinkAction {
    /// Prove access: write a probe value to `keyrot-probe` beside the
    /// sink's configured location, read it back and compare. Runs in the
    /// daemon (with its credentials) when it runs, else here.
    Test {
        /// Sink name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write KEY's current secret again to its sinks (or to --sink), read
    /// back like a rotation's; needs the daemon and policy
    /// `keep_current_secret = true` when the key was last rotated.
    Push {
        /// Slot id (`provider/name`) or a unique key name.
        key: String,
        /// Only this sink (one of the key's sinks).
        #[arg(long)]
        sink: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `keyrot notify ...`.
#[derive(Debug, Subcommand)]
pub enum NotifyAction {
    /// Send a test message through the configured transport and a test
    /// event to webhooks, from here (not through the daemon); prints its
    /// Message-ID and where it went. Without --to or --webhook, every
    /// webhook gets one.
    Test {
        /// Recipient address (repeatable).
        #[arg(long)]
        to: Vec<String>,
        /// A `[[notify.webhook]]` by name (repeatable).
        #[arg(long)]
        webhook: Vec<String>,
    },
}

/// `keyrot store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Write a consistent copy of the store to FILE (mode 0600), taken by
    /// the daemon while it runs. Secrets stay sealed; the master key is
    /// not in the backup.
    Backup {
        /// The backup file to create.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check the store: database integrity, schema, every record, the
    /// audit hash chain, sealed secrets and cross-references. Exits 1 on
    /// any problem; never modifies the store.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the store to the other backend (redb to PostgreSQL, or back)
    /// and verify the copy.
    ///
    /// Runs with the daemon stopped. Every row goes, secrets still sealed
    /// (the master key must be the same), the audit chain too; the copy
    /// is checked as `keyrot store verify` checks a store. Both ends are
    /// in the config's [store], which says backend = "postgres": url for
    /// the database, path (or --path) for the redb file. The destination
    /// must be empty (a new file, or a database holding no keyrot data);
    /// the source is not changed.
    Migrate {
        /// The backend the store is on now.
        #[arg(long, value_enum)]
        from: migrate::Backend,
        /// The backend to copy it to.
        #[arg(long, value_enum)]
        to: migrate::Backend,
        /// The redb file, instead of [store] path.
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
    },
}

/// `keyrot rotation ...`.
#[derive(Debug, Subcommand)]
pub enum RotationAction {
    /// Every detail of a rotation.
    Show {
        /// Rotation id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a failed rotation from the step it failed in.
    Resume {
        /// Rotation id.
        id: String,
    },
    /// Abort a rotation, revoking a new key not yet distributed.
    Abort {
        /// Rotation id.
        id: String,
    },
    /// Restart a failed rotation afresh: revokes its new key (even one
    /// that sinks already hold: consumers reading them fail until the
    /// fresh rotation writes its key), ends it aborted and starts a new
    /// rotation of the same key with the same reason.
    Restart {
        /// Rotation id.
        id: String,
    },
}

/// Parses arguments and runs the command.
pub fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Run { log_format } => {
            init_logging(*log_format);
            crate::daemon::run(&cli.config)
        }
        Command::Check => check::run(&cli.config),
        Command::Notify {
            action: NotifyAction::Test { to, webhook },
        } => notify::test(&cli.config, to, webhook),
        Command::Decrypt { psk_file } => decrypt::run(psk_file),
        Command::GenerateAssets { dir } => assets::run(dir),
        Command::Init { master_key_file } => init::run(&cli.config, master_key_file.as_deref()),
        Command::Demo { dir } => {
            init_logging(LogFormat::Text);
            demo::run(dir)
        }
        Command::Sandbox { .. } => {
            init_logging(LogFormat::Text);
            sandbox(&cli.command)
        }
        _ => client_command(cli),
    }
}

/// Sets up logging (see [`crate::logging`]). `RUST_LOG` overrides the
/// default filter.
pub fn init_logging(format: LogFormat) {
    crate::logging::init(format);
}

/// The socket to use: `--socket`, else the config's.
fn socket_of(cli: &Cli, cfg: Option<&Config>) -> PathBuf {
    cli.socket
        .clone()
        .or_else(|| cfg.map(|c| c.daemon.control_socket.clone()))
        .unwrap_or_else(|| PathBuf::from("/run/keyrot/control.sock"))
}

/// Loads the config for a client command. A config with errors (being
/// edited, say) must not stop `keyrot status`: the daemon still runs the
/// last good one, so the socket is taken from the file as far as it reads.
fn client_config(path: &Path) -> (Option<Config>, Option<PathBuf>) {
    match config::load(path) {
        Ok(c) => (Some(c), None),
        Err(e) => {
            let hint = config::socket_hint(path);
            if hint.is_none() {
                eprintln!("keyrot: {e}");
            } else {
                eprintln!(
                    "keyrot: warning: {} has errors (run `keyrot check`); asking the daemon anyway",
                    path.display()
                );
            }
            (None, hint)
        }
    }
}

fn client_command(cli: Cli) -> anyhow::Result<ExitCode> {
    let (cfg, hint) = client_config(&cli.config);
    let socket = match (&cli.socket, &cfg, hint) {
        (None, None, Some(h)) => h,
        _ => socket_of(&cli, cfg.as_ref()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(dispatch(cli.command, &socket, cfg.as_ref()))
}

async fn dispatch(
    command: Command,
    socket: &Path,
    cfg: Option<&Config>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status { json } => status::run(socket, cfg, json).await,
        Command::Keys { json } => keys::run(socket, cfg, json).await,
        Command::History { key, limit, json } => {
            history::run(key.as_deref(), limit, socket, cfg, json).await
        }
        Command::Plan { days, json } => plan::run(days, socket, cfg, json).await,
        Command::Orphans {
            provider,
            revoke,
            json,
        } => orphans::run(provider.as_deref(), revoke, socket, cfg, json).await,
        Command::Store { action } => match action {
            StoreAction::Backup { file, force } => store::backup(&file, force, socket, cfg).await,
            StoreAction::Verify { json } => store::verify(socket, cfg, json).await,
            StoreAction::Migrate { from, to, path } => {
                migrate::run(migrate::MigrateArgs { from, to, path }, cfg).await
            }
        },
        Command::Rotate {
            key,
            reason,
            new_expires,
            old_expires,
            wait,
            json,
        } => {
            let args = rotate::RotateArgs {
                key,
                reason,
                new_expires,
                old_expires,
                wait,
                json,
            };
            rotate::run(&args, socket).await
        }
        Command::Rotation { action } => match action {
            RotationAction::Show { id, json } => rotation::show(&id, socket, cfg, json).await,
            RotationAction::Resume { id } => rotation::resume(&id, socket).await,
            RotationAction::Abort { id } => rotation::abort(&id, socket).await,
            RotationAction::Restart { id } => rotation::restart(&id, socket).await,
        },
        Command::Sink {
            action: SinkAction::Test { name, json },
        } => sink::test(&name, socket, cfg, json).await,
        Command::Sink {
            action: SinkAction::Push { key, sink, json },
        } => sink::push(&key, sink.as_deref(), socket, json).await,
        Command::Enroll {
            rotation_id,
            key_id,
            accept_unverified,
        } => enroll::run(&rotation_id, key_id.as_deref(), accept_unverified, socket).await,
        Command::Run { .. }
        | Command::Check
        | Command::Decrypt { .. }
        | Command::GenerateAssets { .. }
        | Command::Init { .. }
        | Command::Notify { .. }
        | Command::Sandbox { .. }
        | Command::Demo { .. } => {
            anyhow::bail!("internal: {command:?} is not a client command")
        }
    }
}

/// `keyrot sandbox`: serves until SIGINT/SIGTERM.
fn sandbox(command: &Command) -> anyhow::Result<ExitCode> {
    let Command::Sandbox {
        listen,
        state,
        psks,
        seed,
        seed_secrets,
        rate_limit,
        no_idempotency,
        absent_old_expiry,
        seal_psk,
        strict,
    } = command
    else {
        anyhow::bail!("internal: {command:?} is not the sandbox command");
    };
    let psks = psks
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(id, f)| (id.to_string(), PathBuf::from(f)))
                .ok_or_else(|| anyhow::anyhow!("--psk {p:?}: expected ID=FILE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = keyrot_sandbox::SandboxOptions {
        listen: *listen,
        state: state.clone(),
        psks,
        seed: *seed,
        seed_secrets: seed_secrets.clone(),
        rate_limit: *rate_limit,
        no_idempotency: *no_idempotency,
        absent_old_expiry: absent_old_expiry
            .parse()
            .map_err(|e| anyhow::anyhow!("--absent-old-expiry {e}"))?,
        seal_psk: seal_psk.clone(),
        strict: *strict,
        last_active_granularity: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        keyrot_sandbox::serve(opts, stop).await
    })?;
    Ok(ExitCode::SUCCESS)
}
