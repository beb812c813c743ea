//! The outbox in process: the mail two rotations queued, and the events
//! they posted to a webhook, each pass crashed at every hit of sending and
//! sent again after the restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use keyrot_core::failpoint;
use keyrot_testkit::{Backend, World};

use super::{SERIAL, covered, done, numbered, with_a_key};

/// One pass of the outbox through the mail transport of the world's config
/// (`.eml` files in `mail/`) and its webhooks.
async fn send_mail(w: &World) -> Result<(), String> {
    let cfg = w.engine().runtime().config.clone();
    let mailer = keyrot_engine::notify::transport::Mailer::build(&cfg.notify, None)
        .await
        .map_err(|e| e.message)?;
    let out = keyrot_engine::notify::sender::Outlets {
        mail: Ok(&mailer),
        hooks: &cfg.notify.webhooks,
        installation: "test",
        dry_run: false,
    };
    keyrot_engine::notify::sender::send_due(&w.store(), &out, w.now(), true)
        .await
        .map(|_| ())
}

/// A pass over `w`'s outbox crashed at `hit`, then, after the restart and
/// past any backoff of an attempt that failed, a second pass; the world
/// to check, or what went wrong.
async fn crash_sending(mut w: World, hit: &(String, u64)) -> Result<World, String> {
    failpoint::arm_in_process(&format!("{}=crash@{}", hit.0, hit.1));
    let _ = send_mail(&w).await;
    if !failpoint::crashed() {
        failpoint::revive();
        return Err(format!("{hit:?}: the crash was not reached"));
    }
    w.crash().await;
    failpoint::revive();
    w.restart().await;
    w.clock.advance(jiff::SignedDuration::from_hours(1));
    send_mail(&w)
        .await
        .map_err(|e| format!("{hit:?}: the pass after the restart: {e}"))?;
    Ok(w)
}

/// What must hold once the outbox was sent: every message sent, none given
/// up; each delivered at least once and at most twice (a crash after the
/// transport took it and before the commit sends it again, under the same
/// Message-ID).
fn check_mail(w: &World, dir: &std::path::Path) -> Vec<String> {
    let mut v = Vec::new();
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("Message-ID: <") {
                *delivered.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    for m in w.store().outbox().unwrap() {
        if m.channel != keyrot_core::model::Channel::Mail {
            continue;
        }
        if m.state != keyrot_core::model::DeliveryState::Sent {
            v.push(format!("message {} is {:?}", m.id, m.state));
        }
        let n = delivered
            .iter()
            .filter(|(id, _)| id.starts_with(&m.id))
            .map(|(_, n)| n)
            .sum::<usize>();
        if !(1..=2).contains(&n) {
            v.push(format!("message {} delivered {n} times", m.id));
        }
    }
    v
}

/// A world after two rotations, their mail queued and not sent.
async fn with_mail(backend: Backend) -> World {
    let w = with_a_key(backend).await;
    w.rotate().await.unwrap();
    w.finish().await;
    w
}

on_both!(
    #[tokio::test(start_paused = true)]
    a_crash_at_every_failpoint_of_sending_mail_loses_no_message,
);

async fn a_crash_at_every_failpoint_of_sending_mail_loses_no_message(backend: Backend) {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = Instant::now();
    let w = with_mail(backend).await;
    let queued = w.store().outbox().unwrap().len();
    assert!(queued > 0, "the first rotation queued no mail");
    failpoint::trace_in_process();
    send_mail(&w).await.unwrap();
    let path = numbered(failpoint::take_trace());
    covered(backend, &path);
    let dir = w
        .engine()
        .runtime()
        .config
        .store
        .path
        .with_file_name("mail");
    assert!(
        check_mail(&w, &dir).is_empty(),
        "{:#?}",
        check_mail(&w, &dir)
    );
    let mut failures = Vec::new();
    for hit in &path {
        let w = match crash_sending(with_mail(backend).await, hit).await {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!("mail {e}"));
                continue;
            }
        };
        let dir = w
            .engine()
            .runtime()
            .config
            .store
            .path
            .with_file_name("mail");
        let problems = check_mail(&w, &dir);
        if !problems.is_empty() {
            failures.push(format!("mail {hit:?}: {problems:#?}"));
        }
    }
    eprintln!(
        "every_failpoint on {}: {queued} queued messages, {} hits in sending them; failures: {}",
        backend.name(),
        path.len(),
        failures.len()
    );
    done(backend, path.len(), started);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A webhook receiver on a loopback port, outside keyrot (it outlives
/// every crash): the event ids it was sent, in order.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = Arc::clone(&seen);
            async move {
                let id = headers
                    .get("x-keyrot-event-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(id);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// A world on `backend` whose config posts every event to `url`, after
/// two rotations.
async fn with_a_webhook(backend: Backend, url: &str) -> World {
    let url: reqwest::Url = url.parse().unwrap();
    let w = World::tweaked_on(backend, move |cfg| {
        cfg.notify.webhooks = vec![keyrot_config::WebhookConfig {
            name: "hook".into(),
            url: keyrot_config::WebhookUrl::Plain(url.clone()),
            secret: None,
            format: keyrot_config::WebhookFormat::Slack,
            events: vec![],
            timeout: jiff::SignedDuration::from_secs(5),
            ca_file: None,
            retry_initial: jiff::SignedDuration::from_secs(1),
            retry_max: jiff::SignedDuration::from_secs(2),
            attempts: 5,
        }]
    });
    w.rotate().await.unwrap();
    w.finish().await;
    w.rotate().await.unwrap();
    w.finish().await;
    w
}

/// Every webhook delivery Sent, and received once or twice (twice when a
/// crash fell between the receiver's answer and the commit, under the same
/// event id).
fn check_webhook(w: &World, got: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    for m in w.store().outbox().unwrap() {
        if m.channel == keyrot_core::model::Channel::Mail {
            continue;
        }
        if m.state != keyrot_core::model::DeliveryState::Sent {
            v.push(format!("delivery {} is {:?}", m.id, m.state));
        }
        let n = got.iter().filter(|id| id.contains(m.event_id())).count();
        if !(1..=2).contains(&n) {
            v.push(format!("delivery {} received {n} times", m.id));
        }
    }
    v
}

// Real time here (the receiver answers over a socket); keyrot's own time
// is still the manual clock.
on_both!(
    #[tokio::test]
    a_crash_at_every_failpoint_of_posting_webhooks_loses_no_event,
);

async fn a_crash_at_every_failpoint_of_posting_webhooks_loses_no_event(backend: Backend) {
    let _one = SERIAL.lock().await;
    failpoint::revive();
    let started = Instant::now();
    let (url, got) = receiver().await;
    let w = with_a_webhook(backend, &url).await;
    let queued = w
        .store()
        .outbox()
        .unwrap()
        .iter()
        .filter(|m| m.channel != keyrot_core::model::Channel::Mail)
        .count();
    assert!(queued > 0, "no webhook delivery was queued");
    failpoint::trace_in_process();
    send_mail(&w).await.unwrap();
    let path = numbered(failpoint::take_trace());
    covered(backend, &path);
    let received = got.lock().unwrap().clone();
    assert!(
        check_webhook(&w, &received).is_empty(),
        "{:#?}",
        check_webhook(&w, &received)
    );
    let names: BTreeSet<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains("before:webhook-send") && names.contains("after:webhook-send"));
    let mut failures = Vec::new();
    for hit in &path {
        let (url, got) = receiver().await;
        let w = match crash_sending(with_a_webhook(backend, &url).await, hit).await {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!("webhook {e}"));
                continue;
            }
        };
        let received = got.lock().unwrap().clone();
        let problems = check_webhook(&w, &received);
        if !problems.is_empty() {
            failures.push(format!("webhook {hit:?}: {problems:#?}"));
        }
    }
    eprintln!(
        "every_failpoint on {}: {queued} webhook deliveries (and their mail), {} hits in sending them; failures: {}",
        backend.name(),
        path.len(),
        failures.len()
    );
    done(backend, path.len(), started);
    assert!(failures.is_empty(), "{failures:#?}");
}
