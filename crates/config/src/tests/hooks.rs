//! `[[hook]]`: each action with its fields, defaults, references from keys
//! and sinks, and every error at its `line:column`.

use super::{assert_one, errors, ok};
use crate::hooks::{HookAction, ReloadMode, SignalTarget};

/// A sink `out` (lines 1-5, `sink_extra` on line 5), `hook` from line 6,
/// and a key `k` after it with `key_extra`.
fn with(sink_extra: &str, hook: &str, key_extra: &str) -> String {
    format!(
        "[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/tmp/keyrot/{{name}}\"\n{sink_extra}\n\
         {hook}\
         [[key]]\nname = \"k\"\nprovider = \"p\"\npolicy = \"q\"\nsinks = [\"out\"]\n{key_extra}\n\
         [[provider]]\nname = \"p\"\ntype = \"local\"\n[[policy]]\nname = \"q\"\n"
    )
}

const SIGNAL: &str = "[[hook]]\nname = \"app\"\naction = \"signal\"\npid_file = \"/run/app.pid\"\n";

#[test]
fn each_action_is_read_with_its_defaults() {
    let text = with(
        "hooks = [\"app\"]",
        &format!(
            "{SIGNAL}\
             [[hook]]\nname = \"web\"\naction = \"systemd\"\nunits = [\"nginx.service\", \"app@1.service\"]\nmode = \"try-reload-or-restart\"\ndebounce = \"0s\"\n\
             [[hook]]\nname = \"run\"\naction = \"exec\"\ncommand = [\"/usr/bin/true\"]\ntimeout = \"5s\"\n\
             [[hook]]\nname = \"post\"\naction = \"http\"\nurl = \"https://deploy.example.com/hook\"\nsecret = {{ env = \"HOOK_KEY\" }}\n"
        ),
        "hooks = [\"web\", \"app\"]",
    );
    let cfg = ok(&text);
    assert_eq!(cfg.hooks.len(), 4);
    let app = cfg.hook("app").unwrap();
    assert_eq!(app.debounce, super::dur("5s"));
    assert_eq!(app.timeout, super::dur("60s"));
    match &app.action {
        HookAction::Signal {
            signal,
            signal_name,
            target: SignalTarget::PidFile(p),
        } => {
            assert_eq!((*signal, signal_name.as_str()), (libc::SIGHUP, "HUP"));
            assert_eq!(p.to_str(), Some("/run/app.pid"));
        }
        other => panic!("{other:?}"),
    }
    let web = cfg.hook("web").unwrap();
    assert_eq!(web.debounce, super::dur("0s"));
    assert!(matches!(
        &web.action,
        HookAction::Systemd { units, mode: ReloadMode::TryReloadOrRestart, bus: None } if units.len() == 2
    ));
    assert!(matches!(
        cfg.hook("run").unwrap().action,
        HookAction::Exec { .. }
    ));
    assert!(matches!(
        &cfg.hook("post").unwrap().action,
        HookAction::Http {
            secret: Some(_),
            ..
        }
    ));
    // The key's hooks, then the sink's, each once.
    assert_eq!(cfg.keys[0].hooks, ["web", "app"]);
    assert_eq!(
        cfg.hooks_for(&cfg.keys[0].hooks, &cfg.keys[0].sinks),
        ["web", "app"]
    );
    assert_eq!(cfg.hooks_for(&[], &cfg.keys[0].sinks), ["app"]);
    let summary = crate::summary::summary(&cfg, "2026-12-07T00:00:00Z".parse().unwrap());
    for line in [
        "4 reload hooks:\n  app (signal, SIGHUP to the process in /run/app.pid, debounce 5s, timeout 1m)\n",
        "  web (systemd, try-reload-or-restart nginx.service, app@1.service, debounce 0s, timeout 1m)\n",
        "  run (exec, /usr/bin/true, debounce 5s, timeout 5s)\n",
        "  post (http, POST https://deploy.example.com/hook, signed, debounce 5s, timeout 1m)\n",
        "  k -> provider p, policy q, sinks out, hooks web, app\n",
    ] {
        assert!(summary.contains(line), "{line:?} not in:\n{summary}");
    }
}

#[test]
fn hook_errors_name_the_line_and_column() {
    assert_one(
        &with("", "[[hook]]\nname = \"x\"\naction = \"restart\"\n", ""),
        "8:10: unknown hook action \"restart\"",
    );
    assert_one(
        &with(
            "",
            "[[hook]]\nname = \"x\"\naction = \"signal\"\npid_file = \"/p\"\nunits = [\"a.service\"]\n",
            "",
        ),
        "10:9: `units` does not apply to a hook with action = \"signal\"",
    );
    assert_one(
        &with("", "[[hook]]\nname = \"x\"\naction = \"signal\"\n", ""),
        "8:10: a signal hook needs `pid_file",
    );
    assert_one(
        &with(
            "",
            "[[hook]]\nname = \"x\"\naction = \"signal\"\nsignal = \"KILL\"\npid_file = \"/p\"\n",
            "",
        ),
        "9:10: unknown signal \"KILL\"",
    );
    assert_one(
        &with(
            "",
            "[[hook]]\nname = \"x\"\naction = \"systemd\"\nunits = [\"nginx\"]\n",
            "",
        ),
        "9:9: \"nginx\" is not a systemd unit name",
    );
    assert_one(
        &with(
            "",
            "[[hook]]\nname = \"x\"\naction = \"systemd\"\nunits = [\"a.service\"]\nmode = \"restart\"\n",
            "",
        ),
        "10:8: unknown mode \"restart\"",
    );
    assert_one(
        &with(
            "",
            "[[hook]]\nname = \"x\"\naction = \"exec\"\ncommand = [\"reload.sh\"]\n",
            "",
        ),
        "9:11: `command`: the program \"reload.sh\" must be an absolute path",
    );
    assert_one(
        &with(
            "",
            "[[hook]]\nname = \"x\"\naction = \"http\"\nurl = \"http://deploy.example.com/h\"\n",
            "",
        ),
        "9:7: `url` \"http://deploy.example.com/h\": plain http would send the reload event unencrypted",
    );
    assert_one(
        &with(
            "",
            "[[hook]]\nname = \"x\"\naction = \"http\"\nurl = \"https://h.example.com\"\nsecret = \"inline\"\n",
            "",
        ),
        "10:10: `secret` must be a secret reference",
    );
    assert_one(
        &with(
            "",
            "[[hook]]\nname = \"x\"\naction = \"exec\"\ncommand = [\"/bin/true\"]\nwhen = \"now\"\n",
            "",
        ),
        "10:1: unknown field `when`",
    );
}

#[test]
fn references_to_hooks_are_checked_where_they_are_written() {
    assert_one(
        &with("hooks = [\"ap\"]", SIGNAL, ""),
        "5:10: unknown hook \"ap\" (did you mean \"app\"?); defined: \"app\"",
    );
    let text = with("", SIGNAL, "hooks = [\"app\", \"app\"]");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("hook \"app\" is listed twice"),
        "{errs:#?}"
    );
    assert_one(
        &with("", &format!("{SIGNAL}{SIGNAL}"), ""),
        "11:8: hook \"app\" is defined twice",
    );
}
