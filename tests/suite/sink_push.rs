//! `keyrot sink push` with the real binary, the `local` provider and file
//! sinks: under `keep_current_secret = true` a push repairs an
//! overwritten sink and fills a sink added to the key after its rotation;
//! the kept secret is sealed (no byte of it in the store file) and never
//! in the log or the command's output; the next rotation wipes the
//! previous kept secret; turning the setting off wipes it at the next
//! sync; without a kept secret the push explains that a rotation is
//! needed.

use crate::common;

use std::fs;
use std::time::Duration;

use common::{Daemon, SLOW_POLICY, wait_until};

fn config(keep: bool, extra_sink: bool) -> String {
    let policy = SLOW_POLICY.replacen(
        "name = \"slow\"\n",
        &format!("name = \"slow\"\nkeep_current_secret = {keep}\n"),
        1,
    );
    let sinks = if extra_sink {
        "[\"out\", \"extra\"]"
    } else {
        "[\"out\"]"
    };
    format!(
        r#"{base}
[[sink]]
name = "extra"
type = "file"
path = "extra/{{name}}.txt"
format = "raw"

[[provider]]
name = "local"
type = "local"
default_lifetime = "1h"
{policy}
[[key]]
name = "ci"
provider = "local"
policy = "slow"
sinks = {sinks}
"#,
        base = common::base_config(3)
    )
}

fn secret(d: &Daemon) -> String {
    d.sink("ci").unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Sealed secrets the store holds, by `keyrot store verify --json`.
fn sealed(d: &Daemon) -> u64 {
    d.json(&["store", "verify", "--json"])["secrets_opened"]
        .as_u64()
        .unwrap()
}

fn push(d: &Daemon, args: &[&str]) -> std::process::Output {
    let mut all = vec!["sink", "push"];
    all.extend_from_slice(args);
    d.cli(&all)
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_kept_secret_repairs_a_sink_fills_a_new_one_and_is_wiped_by_the_next_rotation() {
    let mut d = Daemon::new(&config(true, false));
    d.start();
    d.wait_first_key();
    assert!(wait_until(Duration::from_secs(20), || d
        .sink("ci")
        .is_some()));
    let first = secret(&d);
    assert_eq!(sealed(&d), 1, "the first key's secret is kept");

    // Someone overwrites the sink; the push writes the secret back.
    fs::write(d.dir.join("out/ci.json"), "{\"secret\": \"overwritten\"}").unwrap();
    let out = push(&d, &["local/ci"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("read back: matched"), "{}", text(&out));
    assert_eq!(secret(&d), first);

    // A sink added to the key after its rotation.
    fs::write(d.config_path(), config(true, true)).unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || d
            .log()
            .contains("configuration reloaded")
            && d.log().matches("inventory synced").count() >= 2),
        "{}",
        d.log()
    );
    let out = push(&d, &["ci", "--sink", "extra", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sinks"][0]["sink"], "extra", "{report}");
    assert_eq!(
        fs::read_to_string(d.dir.join("extra/ci.txt"))
            .unwrap()
            .trim(),
        first
    );
    // A sink that is not the key's is refused, naming the field.
    let out = push(&d, &["ci", "--sink", "nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not one of local/ci's sinks"),
        "{}",
        text(&out)
    );

    // Audited (who, key, sinks; no secret); the store still verifies; the
    // secret is nowhere but the sinks: not in the log, not in any output,
    // not in the store file (sealed).
    let audit = d.control_get("/v1/audit?limit=1000");
    let pushes: Vec<&str> = audit
        .split("},{")
        .filter(|e| e.contains("sink.push"))
        .collect();
    assert_eq!(pushes.len(), 2, "{audit}");
    assert!(
        pushes[1].contains("extra") && pushes[1].contains("uid:"),
        "{}",
        pushes[1]
    );
    assert!(pushes[1].contains("local/ci"), "{}", pushes[1]);
    assert!(!audit.contains(&first));
    let out = d.cli(&["store", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!d.log().contains(&first));

    // The next rotation keeps its own secret and wipes the previous one.
    let id = d.rotate("local/ci", "next");
    d.wait_state(&id, "Completed", 60);
    let second = secret(&d);
    assert_ne!(second, first);
    assert_eq!(sealed(&d), 1, "only the current secret is kept");
    fs::write(d.dir.join("out/ci.json"), "{}").unwrap();
    let out = push(&d, &["local/ci", "--sink", "out"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(secret(&d), second);
    assert!(!text(&out).contains(&second));

    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).is_some());
    if !d.dir.join("pg.url").exists() {
        let bytes = fs::read(d.dir.join("state/state.redb")).unwrap();
        assert!(
            !contains(&bytes, first.as_bytes()),
            "plaintext in the store"
        );
        assert!(
            !contains(&bytes, second.as_bytes()),
            "plaintext in the store"
        );
    }
    assert!(!d.log().contains(&second));

    // Turning the setting off: the next sync (the start's) wipes it.
    fs::write(d.config_path(), config(false, true)).unwrap();
    d.start();
    assert!(
        wait_until(Duration::from_secs(20), || sealed(&d) == 0),
        "the kept secret was not wiped:\n{}",
        d.log()
    );
    let out = push(&d, &["local/ci"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("`keep_current_secret` is off"),
        "{}",
        text(&out)
    );
}

#[test]
fn without_a_kept_secret_the_push_says_a_rotation_is_needed() {
    let mut d = Daemon::new(&config(false, false));
    d.start();
    d.wait_first_key();
    assert_eq!(sealed(&d), 0, "nothing kept by default");
    let out = push(&d, &["local/ci"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("is not kept"), "{t}");
    assert!(t.contains("keyrot rotate local/ci"), "{t}");
    // Without the daemon it says the daemon is needed.
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).is_some());
    let t = text(&push(&d, &["local/ci"]));
    assert!(t.contains("needs it"), "{t}");
}
