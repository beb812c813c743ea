//! The client's error mapping, and a bus that is not there. The calls
//! themselves are tested against the systemd double on a private bus, in
//! keyrot-testkit's `tests/systemd.rs` (the double lives there).

use super::*;

const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn no_bus_at_the_address_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("no-bus").display());
    let e = Systemd::connect(Some(&address), WITHIN).await.unwrap_err();
    assert!(e.transient, "{}", e.message);
    assert!(
        e.message.contains("connect to the bus at unix:path="),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_malformed_address_is_permanent() {
    let e = Systemd::connect(Some("nonsense"), WITHIN)
        .await
        .unwrap_err();
    assert!(!e.transient, "{}", e.message);
    assert!(e.message.contains("nonsense"), "{}", e.message);
}

#[tokio::test]
async fn a_socket_that_never_answers_times_out_transiently() {
    // A listener nobody accepts on: the connection is queued, the
    // handshake never answered.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mute");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let address = format!("unix:path={}", path.display());
    let e = Systemd::connect(Some(&address), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.transient, "{}", e.message);
    assert!(
        e.message.contains("no answer within 300ms"),
        "{}",
        e.message
    );
}

#[test]
fn refusals_are_permanent_and_point_at_the_polkit_rule() {
    let hint = Hint {
        unit: "app.service",
        verb: "reload",
    };
    for name in [
        "org.freedesktop.DBus.Error.AccessDenied",
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
    ] {
        let e = method_error(
            name,
            Some("Access denied"),
            "systemd: reload of unit app.service",
            Some(&hint),
        );
        assert!(!e.transient, "{}", e.message);
        for part in [
            name,
            "org.freedesktop.systemd1.manage-units",
            "unit app.service with verb reload",
            "/etc/polkit-1/rules.d/",
            "docs/systemd-hooks.md",
        ] {
            assert!(e.message.contains(part), "{part}: {}", e.message);
        }
    }
}

#[test]
fn error_names_map_to_transient_or_permanent() {
    for (name, transient) in [
        ("org.freedesktop.systemd1.NoSuchUnit", false),
        ("org.freedesktop.systemd1.LoadFailed", false),
        ("org.freedesktop.systemd1.JobTypeNotApplicable", false),
        ("org.freedesktop.systemd1.NoSuchProcess", false),
        ("org.freedesktop.DBus.Error.InvalidArgs", false),
        ("org.example.Unheard", false),
        ("org.freedesktop.DBus.Error.ServiceUnknown", true),
        ("org.freedesktop.DBus.Error.NoReply", true),
        ("org.freedesktop.DBus.Error.Disconnected", true),
        ("org.freedesktop.systemd1.ShuttingDown", true),
        ("org.freedesktop.systemd1.TransactionIsDestructive", true),
    ] {
        let e = method_error(name, None, "systemd: reload of unit a.service", None);
        assert_eq!(e.transient, transient, "{name}");
        assert!(e.message.contains(name), "{}", e.message);
        assert!(
            e.message.starts_with("systemd: reload of unit a.service: "),
            "{}",
            e.message
        );
    }
}

#[test]
fn a_description_from_the_bus_is_shortened_and_escaped() {
    let long = format!("line\n\u{1b}[31m{}", "x".repeat(1000));
    let e = method_error("org.example.E", Some(&long), "w", None);
    assert!(
        !e.message.contains('\n') && !e.message.contains('\u{1b}'),
        "{}",
        e.message
    );
    assert!(e.message.contains("line\\n\\x1b[31m"), "{}", e.message);
    assert!(e.message.len() < 400, "{}", e.message.len());
    assert!(e.message.ends_with('…'));
}

#[test]
fn job_results_other_than_done_are_errors_naming_the_result() {
    assert!(job_result("systemd: reload of unit a.service", "done").is_ok());
    for (result, transient) in [
        ("failed", false),
        ("dependency", false),
        ("skipped", false),
        ("invalid", false),
        ("canceled", true),
        ("timeout", true),
    ] {
        let e = job_result("systemd: reload of unit a.service", result).unwrap_err();
        assert_eq!(e.transient, transient, "{result}");
        assert!(e.message.contains("unit a.service"), "{}", e.message);
        assert!(
            e.message.contains(&format!("\"{result}\"")),
            "{}",
            e.message
        );
    }
}

#[test]
fn modes_name_systemds_methods_and_polkit_verbs() {
    assert_eq!(ReloadMode::Reload.method(), "ReloadUnit");
    assert_eq!(ReloadMode::Reload.polkit_verb(), "reload");
    assert_eq!(
        ReloadMode::TryReloadOrRestart.method(),
        "ReloadOrTryRestartUnit"
    );
    assert_eq!(
        ReloadMode::TryReloadOrRestart.polkit_verb(),
        "reload-or-try-restart"
    );
    assert_eq!(
        ReloadMode::TryReloadOrRestart.systemctl_verb(),
        "try-reload-or-restart"
    );
}
