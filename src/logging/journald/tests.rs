//! Tests of keyrot's journald set-up: the priorities, and the message
//! escaping in front of the layer that writes entries (here a recorder, as
//! `tracing-journald` always sends to the system's journal socket; the
//! datagrams themselves are tested in `tests/suite/journald.rs`).

use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

#[test]
fn priorities_follow_syslog() {
    let p = priorities();
    assert_eq!(p.error as u8, b'3');
    assert_eq!(p.warn as u8, b'4');
    assert_eq!(p.info as u8, b'6');
    assert_eq!(p.debug as u8, b'7');
    assert_eq!(p.trace as u8, b'7');
}

/// What the inner layer saw of one event.
#[derive(Debug)]
struct Seen {
    level: Level,
    target: String,
    file: Option<String>,
    line: Option<u32>,
    /// (name, "str" or "debug", value), in order.
    fields: Vec<(String, &'static str, String)>,
    /// The span the event is in, by the layer's context.
    span: Option<String>,
    /// Whether the event asked for no parent at all.
    root: bool,
}

/// A layer that records every event it is handed.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Visit for Seen {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .push((field.name().to_string(), "str", value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields
            .push((field.name().to_string(), "debug", format!("{value:?}")));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut seen = Seen {
            level: *meta.level(),
            target: meta.target().to_string(),
            file: meta.file().map(str::to_string),
            line: meta.line(),
            fields: Vec::new(),
            span: ctx.event_span(event).map(|s| s.name().to_string()),
            root: event.is_root(),
        };
        event.record(&mut seen);
        self.0.lock().unwrap().push(seen);
    }
}

fn record(events: impl FnOnce()) -> Vec<Seen> {
    let rec = Recorder::default();
    let layer = EscapedMessage { inner: rec.clone() };
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), events);
    std::mem::take(&mut *rec.0.lock().unwrap())
}

fn value<'a>(seen: &'a Seen, name: &str) -> (&'static str, &'a str) {
    let (_, kind, v) = seen
        .fields
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}: {seen:?}"));
    (kind, v.as_str())
}

#[test]
fn a_message_with_controls_is_escaped_and_the_rest_kept() {
    let seen = record(|| {
        let span = tracing::info_span!("step", key = "atl/ci-bot");
        let _g = span.enter();
        tracing::error!(
            error = "first\nsecond",
            attempts = 3u32,
            scopes = ?["read", "write"],
            "step failed: {}",
            "a\nERROR forged\x1b[2J\u{9b}31m"
        );
        tracing::warn!(parent: None, reason = "x", "root\revent");
    });
    assert_eq!(seen.len(), 2, "{seen:?}");
    let e = &seen[0];
    assert_eq!(
        value(e, "message"),
        ("debug", r"step failed: a\nERROR forged\x1b[2J\u{9b}31m")
    );
    assert_eq!(value(e, "error"), ("str", "first\nsecond"));
    assert_eq!(value(e, "attempts"), ("debug", "3"));
    assert_eq!(value(e, "scopes"), ("debug", r#"["read", "write"]"#));
    assert_eq!(e.fields.len(), 4, "{e:?}");
    assert_eq!(e.level, Level::ERROR);
    assert_eq!(e.target, module_path!());
    assert!(
        e.file
            .as_deref()
            .is_some_and(|f| f.ends_with("journald/tests.rs"))
    );
    assert!(e.line.is_some());
    assert_eq!(e.span.as_deref(), Some("step"));
    assert!(!e.root);

    let e = &seen[1];
    assert_eq!(value(e, "message"), ("debug", r"root\revent"));
    assert_eq!(value(e, "reason"), ("str", "x"));
    assert!(e.root, "an explicit root event stays one: {e:?}");
    assert_eq!(e.level, Level::WARN);
}

#[test]
fn events_without_controls_pass_as_they_are() {
    let seen = record(|| {
        tracing::info!(key = "a/b", n = 1, "plain message");
        tracing::info!(detail = "x\ny");
        tracing::info!(message = "given as a string");
    });
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(value(&seen[0], "message"), ("debug", "plain message"));
    assert_eq!(value(&seen[0], "key"), ("str", "a/b"));
    assert_eq!(value(&seen[0], "n"), ("debug", "1"));
    assert_eq!(
        seen[1].fields,
        [("detail".to_string(), "str", "x\ny".to_string())]
    );
    assert_eq!(value(&seen[2], "message"), ("str", "given as a string"));
}

#[test]
fn a_string_message_with_controls_stays_a_string() {
    let seen = record(|| tracing::info!(message = "two\nlines", key = "k"));
    assert_eq!(value(&seen[0], "message"), ("str", r"two\nlines"));
    assert_eq!(value(&seen[0], "key"), ("str", "k"));
}
