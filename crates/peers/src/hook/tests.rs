#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

fn event() -> HookEvent {
    HookEvent {
        event: "keyrot.reload",
        hook: "app".into(),
        run_id: "r1:app".into(),
        rotation_id: "r1".into(),
        key: "local/ci".into(),
        key_id: "k2".into(),
        at: "2026-12-07T12:00:00Z".parse().unwrap(),
    }
}

fn cfg(action: HookAction) -> HookConfig {
    HookConfig {
        name: "app".into(),
        action,
        debounce: SignedDuration::ZERO,
        timeout: SignedDuration::from_secs(10),
    }
}

fn pid_hook(path: &Path, signal: i32) -> Arc<dyn Hook> {
    build(&cfg(HookAction::Signal {
        signal,
        signal_name: "TERM".into(),
        target: SignalTarget::PidFile(path.to_path_buf()),
    }))
}

#[tokio::test]
async fn a_signal_hook_signals_the_process_its_pid_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("app.pid");
    std::fs::write(&pid_file, format!("{}\n", child.id().unwrap())).unwrap();
    std::fs::set_permissions(&pid_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let said = pid_hook(&pid_file, libc::SIGTERM)
        .run(&event())
        .await
        .unwrap();
    assert!(said.contains("SIGTERM"), "{said}");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

#[tokio::test]
async fn a_pid_file_others_can_write_or_without_a_pid_is_refused_and_a_missing_one_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.pid");
    let err = pid_hook(&path, 0).run(&event()).await.unwrap_err();
    assert!(err.transient, "a missing PID file is retried: {err:?}");
    std::fs::write(&path, "12345\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = pid_hook(&path, 0).run(&event()).await.unwrap_err();
    assert!(
        !err.transient && err.message.contains("writable by group or others"),
        "{err:?}"
    );
    for text in ["1\n", "-5", "init", ""] {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = pid_hook(&path, 0).run(&event()).await.unwrap_err();
        assert!(
            err.message.contains("process id above 1"),
            "{text:?}: {err:?}"
        );
    }
    let link = dir.path().join("link.pid");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let err = pid_hook(&link, 0).run(&event()).await.unwrap_err();
    assert!(err.message.contains("not a regular file"), "{err:?}");
}

#[tokio::test]
async fn an_exec_hook_gets_the_event_on_stdin_and_its_failure_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("event.json");
    let script = format!(
        "cat > {}; echo \"$KEYROT_RUN_ID\" >> {}",
        out.display(),
        out.display()
    );
    let hook = build(&cfg(HookAction::Exec {
        command: vec!["/bin/sh".into(), "-c".into(), script],
        env: BTreeMap::new(),
    }));
    hook.run(&event()).await.unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("\"run_id\":\"r1:app\"") && text.contains("\"key\":\"local/ci\""),
        "{text}"
    );
    assert!(text.ends_with("r1:app\n"), "{text}");
    let failing = build(&cfg(HookAction::Exec {
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo nope >&2; exit 3".into(),
        ],
        env: BTreeMap::new(),
    }));
    let err = failing.run(&event()).await.unwrap_err();
    assert!(err.transient && err.message.contains("nope"), "{err:?}");
}

#[tokio::test]
async fn an_http_hook_posts_the_event_signed_with_the_run_id_as_idempotency_key() {
    use axum::http::{HeaderMap, StatusCode};
    let seen: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let status = Arc::new(Mutex::new(StatusCode::NO_CONTENT));
    let app = {
        let seen = Arc::clone(&seen);
        let status = Arc::clone(&status);
        axum::Router::new().route(
            "/reload",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = Arc::clone(&seen);
                let status = Arc::clone(&status);
                async move {
                    seen.lock().unwrap().push((headers, body));
                    *status.lock().unwrap()
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hook-key");
    std::fs::write(&key_file, "s3cret").unwrap();
    let hook = build(&cfg(HookAction::Http {
        url: format!("http://{addr}/reload"),
        secret: Some(SecretRef::File(key_file)),
    }));
    hook.run(&event()).await.unwrap();
    {
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(headers["idempotency-key"], "r1:app");
        let want = http::signature(b"s3cret", event().at, body);
        assert_eq!(headers["x-keyrot-signature"].to_str().unwrap(), want);
        assert!(body.contains("\"event\":\"keyrot.reload\""), "{body}");
    }
    *status.lock().unwrap() = StatusCode::SERVICE_UNAVAILABLE;
    assert!(hook.run(&event()).await.unwrap_err().transient);
    *status.lock().unwrap() = StatusCode::FORBIDDEN;
    assert!(!hook.run(&event()).await.unwrap_err().transient);
}
