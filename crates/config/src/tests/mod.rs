//! Config loading tests: a full valid config, defaults, and (in the
//! submodules) every class of error, drop-ins, relative paths, the
//! shipped example configs and the `keyrot check` summary.

mod access;
mod atlassian;
mod dropins;
mod errors;
mod hooks;
mod quiet;
mod sinks;
mod summary;

use std::path::{Path, PathBuf};

use jiff::SignedDuration;

use crate::load::load_str;
use crate::sinks::{FileFormat, SinkKind};
use crate::types::{Config, KeyMatch, ProviderKind};

// Through the crate root: the tests of `notify` import this module.
use crate::NotifyTransport;

/// The name every in-memory test file gets.
pub(super) const NAME: &str = "/etc/keyrot/keyrot.toml";

/// Loads `text` as `/etc/keyrot/keyrot.toml`, expecting success.
pub(super) fn ok(text: &str) -> Config {
    match load_str(Path::new(NAME), text) {
        Ok(cfg) => cfg,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// Loads `text`, expecting errors; returns them as printed.
pub(super) fn errors(text: &str) -> Vec<String> {
    match load_str(Path::new(NAME), text) {
        Ok(_) => panic!("expected errors, the config was accepted"),
        Err(e) => e.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts that exactly one error was reported and that it starts with
/// `prefix` (`line:column: message start`, after the file name).
pub(super) fn assert_one(text: &str, prefix: &str) {
    let errs = errors(text);
    let want = format!("{NAME}:{prefix}");
    assert_eq!(
        errs.len(),
        1,
        "expected one error starting {want:?}, got {errs:#?}"
    );
    assert!(
        errs[0].starts_with(&want),
        "expected {want:?}, got {:?}",
        errs[0]
    );
}

/// Parses a duration for assertions.
pub(super) fn dur(s: &str) -> SignedDuration {
    keyrot_core::policy::parse_duration(s).unwrap()
}

/// 11 lines defining provider `local`, sink `out` and policy `standard`;
/// text appended to it starts on line 12.
pub(super) const BASE: &str = r#"[[provider]]
name = "local"
type = "local"

[[sink]]
name = "out"
type = "file"
path = "/tmp/keyrot/{name}"

[[policy]]
name = "standard"
"#;

/// The example from the configuration reference, every field set.
const FULL: &str = r#"
[daemon]
control_socket = "/run/keyrot/control.sock"
control_socket_mode = "0660"
shutdown_timeout = "30s"
sync_schedule = "0 */15 * * * *"
[daemon.retry]
attempts = 5
initial = "10s"
max = "15m"

[store]
path = "/var/lib/keyrot/state.redb"
master_key_file = "/var/lib/keyrot/master.key"
create_master_key = false

[[provider]]
name = "local"
type = "local"
max_concurrent = 4
default_lifetime = "90d"
secret_bytes = 48

[[sink]]
name = "ci-file"
type = "file"
path = "/var/lib/keyrot/out/{name}.json"
format = "json"
mode = "0640"
owner = "svc"
group = "svc"

[[sink]]
name = "ci-env"
type = "file"
path = "/var/lib/keyrot/out/{provider}-{slot}.env"
format = "env"
env_name = "CI_TOKEN"

[[policy]]
name = "standard"
rotate_before_expiry = "30d"
max_age = "90d"
new_key_lifetime = "365d"
overlap = "7d"
jitter = true
auto_rotate = true
notify_before_expiry = ["7d", "30d", "1d"]
stagger = "6h"
notify = ["secops@example.com"]
security_contacts = ["security@example.com"]
scopes = ["read:org"]
require_scopes = false
[[policy.window]]
cron = "0 2 * * 1-5"
duration = "4h"
timezone = "Europe/London"

[[key]]
name = "ci-bot"
id = "key-123"
provider = "local"
policy = "standard"
sinks = ["ci-file", "ci-env"]
scopes = ["read:org"]
contacts = ["owner@example.com"]
group = "ci-pair"

[[key]]
select = { name = "ci-*", scope = "read:*", tag = "team=platform" }
provider = "local"
policy = "standard"
sinks = ["ci-env"]

[notify]
from = "keyrot@example.com"
transport = "file"
dir = "/var/spool/keyrot/mail"
dry_run = true
"#;

#[test]
fn full_config_is_read_field_by_field() {
    let cfg = ok(FULL);
    assert_eq!(cfg.files, vec![PathBuf::from(NAME)]);
    let d = &cfg.daemon;
    assert_eq!(d.control_socket, PathBuf::from("/run/keyrot/control.sock"));
    assert_eq!(d.control_socket_mode, 0o660);
    assert_eq!(d.shutdown_timeout, dur("30s"));
    assert_eq!(d.sync_schedule.as_str(), "0 */15 * * * *");
    assert_eq!(
        (d.retry.attempts, d.retry.initial, d.retry.max),
        (5, dur("10s"), dur("15m"))
    );
    assert_eq!(cfg.store.path, PathBuf::from("/var/lib/keyrot/state.redb"));
    assert!(!cfg.store.create_master_key);

    let p = cfg.provider("local").unwrap();
    assert_eq!(p.max_concurrent, 4);
    let ProviderKind::Local(l) = &p.kind else {
        panic!("expected a local provider");
    };
    assert_eq!((l.default_lifetime, l.secret_bytes), (dur("90d"), 48));

    let SinkKind::File(f) = &cfg.sink("ci-file").unwrap().kind else {
        panic!("not a file sink")
    };
    assert_eq!(f.path, "/var/lib/keyrot/out/{name}.json");
    assert_eq!(
        (f.format, f.mode, f.env_name.as_str()),
        (FileFormat::Json, 0o640, "API_KEY")
    );
    assert_eq!(
        (f.owner.as_deref(), f.group.as_deref()),
        (Some("svc"), Some("svc"))
    );
    let SinkKind::File(e) = &cfg.sink("ci-env").unwrap().kind else {
        panic!("not a file sink")
    };
    assert_eq!(
        (e.format, e.env_name.as_str(), e.mode),
        (FileFormat::Env, "CI_TOKEN", 0o600)
    );

    let pol = cfg.policy("standard").unwrap();
    assert_eq!(pol.rotate_before_expiry, Some(dur("30d")));
    assert_eq!(pol.max_age, Some(dur("90d")));
    assert_eq!(pol.new_key_lifetime, Some(dur("365d")));
    assert_eq!((pol.overlap, pol.stagger), (dur("7d"), Some(dur("6h"))));
    // The notice ladder is sorted largest first.
    assert_eq!(
        pol.notify_before_expiry,
        vec![dur("30d"), dur("7d"), dur("1d")]
    );
    assert!(pol.jitter && pol.auto_rotate && !pol.require_scopes);
    assert_eq!(pol.notify, vec!["secops@example.com"]);
    assert_eq!(pol.security_contacts, vec!["security@example.com"]);
    assert_eq!(pol.scopes, vec!["read:org"]);
    assert_eq!(pol.windows.len(), 1);
    assert_eq!(pol.windows[0].cron, "0 2 * * 1-5");
    assert_eq!(pol.windows[0].timezone, "Europe/London");
    assert_eq!(pol.windows[0].duration, dur("4h"));

    assert_eq!(cfg.keys.len(), 2);
    let k = &cfg.keys[0];
    let named = KeyMatch::Named {
        name: "ci-bot".into(),
        id: Some("key-123".into()),
    };
    assert_eq!(k.matches, named);
    assert_eq!(
        (k.provider.as_str(), k.policy.as_str()),
        ("local", "standard")
    );
    assert_eq!(k.sinks, vec!["ci-file", "ci-env"]);
    assert_eq!(k.contacts, vec!["owner@example.com"]);
    assert_eq!(k.group.as_deref(), Some("ci-pair"));
    let select = KeyMatch::Select {
        name: Some("ci-*".into()),
        scope: Some("read:*".into()),
        tag: Some(("team".into(), "platform".into())),
    };
    assert_eq!(cfg.keys[1].matches, select);

    assert_eq!(cfg.notify.from, "keyrot@example.com");
    assert!(cfg.notify.dry_run);
    let NotifyTransport::File { dir } = &cfg.notify.transport else {
        panic!("expected the file transport");
    };
    assert_eq!(dir, &PathBuf::from("/var/spool/keyrot/mail"));
}

#[test]
fn an_empty_file_gives_every_default() {
    let cfg = ok("");
    assert_eq!(
        cfg.daemon.control_socket,
        PathBuf::from("/run/keyrot/control.sock")
    );
    assert_eq!(cfg.daemon.control_socket_mode, 0o660);
    assert_eq!(cfg.daemon.shutdown_timeout, dur("30s"));
    assert_eq!(cfg.daemon.sync_schedule.as_str(), "0 */15 * * * *");
    assert_eq!(cfg.daemon.retry.attempts, 5);
    assert_eq!(cfg.daemon.retry.initial, dur("10s"));
    assert_eq!(cfg.daemon.retry.max, dur("15m"));
    assert_eq!(cfg.store.path, PathBuf::from("/var/lib/keyrot/state.redb"));
    assert_eq!(
        cfg.store.master_key_file,
        PathBuf::from("/var/lib/keyrot/master.key")
    );
    assert_eq!(cfg.notify.from, "keyrot@localhost");
    assert!(matches!(cfg.notify.transport, NotifyTransport::None));
    assert!(cfg.providers.is_empty() && cfg.keys.is_empty());
}

#[test]
fn entries_get_their_documented_defaults() {
    let cfg = ok(&format!(
        "{BASE}\n[[key]]\nname = \"a\"\nprovider = \"local\"\npolicy = \"standard\"\nsinks = [\"out\"]\n"
    ));
    let p = &cfg.providers[0];
    let ProviderKind::Local(l) = &p.kind else {
        panic!("expected a local provider");
    };
    assert_eq!(
        (p.max_concurrent, l.default_lifetime, l.secret_bytes),
        (4, dur("90d"), 32)
    );
    let SinkKind::File(f) = &cfg.sinks[0].kind else {
        panic!("not a file sink")
    };
    assert_eq!(
        (f.format, f.env_name.as_str(), f.mode),
        (FileFormat::Raw, "API_KEY", 0o600)
    );
    assert_eq!((f.owner.clone(), f.group.clone()), (None, None));
    let pol = &cfg.policies[0];
    assert_eq!(pol.overlap, dur("1h"));
    assert!(pol.jitter && pol.auto_rotate && !pol.require_scopes);
    assert!(pol.windows.is_empty() && pol.notify_before_expiry.is_empty());
    assert_eq!(
        (pol.rotate_before_expiry, pol.max_age, pol.new_key_lifetime),
        (None, None, None)
    );
    let k = &cfg.keys[0];
    assert_eq!(
        k.matches,
        KeyMatch::Named {
            name: "a".into(),
            id: None
        }
    );
    assert!(k.scopes.is_empty() && k.contacts.is_empty() && k.group.is_none());
}

#[test]
fn a_window_without_timezone_is_utc() {
    let cfg = ok(&format!(
        "{BASE}[[policy.window]]\ncron = \"0 2 * * *\"\nduration = \"1h\"\n"
    ));
    assert_eq!(cfg.policies[0].windows[0].timezone, "UTC");
}
