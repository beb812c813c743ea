//! journald through `tracing-journald`, set up for keyrot: entries tagged
//! `SYSLOG_IDENTIFIER=keyrot`, event and span fields named `KEYROT_NAME`,
//! syslog priorities per level (info is 6, not the crate's 5), and every
//! `MESSAGE` with its control characters escaped ([`EscapedMessage`]).
//!
//! The crate owns the wire format: one datagram per event to
//! `/run/systemd/journal/socket`, a sealed memfd for an entry too large for
//! one. It does not own the choice of sink, nor what happens when journald
//! cannot be reached at start ([`super::init`] logs text to stderr then).

use std::fmt;
use std::io;

use tracing::field::{DisplayValue, Field, Value, Visit, display};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::{FIELD_PREFIX, SYSLOG_IDENTIFIER};

/// journald's `PRIORITY` per level: error 3, warning 4, info 6, debug and
/// trace 7 (so `journalctl -p info` hides debug lines and `-p warning`
/// shows warnings and errors).
pub fn priorities() -> PriorityMappings {
    PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// The journald layer, or why journald cannot be reached (the crate sends
/// an empty datagram, which journald discards, to find out).
pub fn layer() -> io::Result<EscapedMessage<tracing_journald::Layer>> {
    let layer = tracing_journald::layer()?
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string())
        .with_field_prefix(Some(FIELD_PREFIX.to_string()))
        .with_priority_mappings(priorities());
    Ok(EscapedMessage { inner: layer })
}

/// Hands `inner` every event with the control characters of its `message`
/// escaped (`\n`, `\x1b`, ...: see [`keyrot_core::escape`]), so the line
/// `journalctl` shows is one line without terminal sequences. Other fields
/// keep their bytes: journald stores them length-prefixed, and they are
/// what operators filter and parse. Everything else passes through.
#[derive(Debug)]
pub struct EscapedMessage<L> {
    /// The layer that writes entries.
    inner: L,
}

impl<S, L> Layer<S> for EscapedMessage<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(id, follows, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut message = MessageText(None);
        event.record(&mut message);
        let needs_escaping = message
            .0
            .is_some_and(|m| m.chars().any(keyrot_core::escape::is_control));
        if !needs_escaping {
            self.inner.on_event(event, ctx);
            return;
        }
        // The same event (metadata, parent) with the message escaped.
        let meta = event.metadata();
        let mut kept = Kept(
            std::iter::repeat_with(|| None)
                .take(meta.fields().len())
                .collect(),
        );
        event.record(&mut kept);
        let values: Vec<Option<&dyn Value>> = kept
            .0
            .iter()
            .map(|v| v.as_ref().map(Captured::value))
            .collect();
        // `value_set_all` is hidden from tracing's docs but public: its
        // macros build every event with it. One value per field, in order.
        let set = meta.fields().value_set_all(&values);
        let copy = if event.is_contextual() {
            Event::new(meta, &set)
        } else {
            Event::new_child_of(event.parent().cloned(), meta, &set)
        };
        self.inner.on_event(&copy, ctx);
    }
}

/// The text of an event's `message` field, if it has one.
struct MessageText(Option<String>);

impl Visit for MessageText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// One field's value, as the visitor received it.
enum Captured {
    /// Given as a string (`record_str`).
    Str(String),
    /// Given as anything else, rendered as `{:?}` (`record_debug`; numbers,
    /// booleans and errors arrive here too unless a visitor asks for them).
    Debug(DisplayValue<String>),
}

impl Captured {
    /// The value to record again: a string stays a string.
    fn value(&self) -> &dyn Value {
        match self {
            Captured::Str(s) => s,
            Captured::Debug(d) => d,
        }
    }
}

/// Every field of an event by its index, the message escaped.
struct Kept(Vec<Option<Captured>>);

impl Kept {
    /// Stores `value` for `field`; the message with its controls escaped.
    fn put(&mut self, field: &Field, value: String, as_str: bool) {
        let value = if field.name() == "message" {
            keyrot_core::escape::controls(&value).into_owned()
        } else {
            value
        };
        if let Some(slot) = self.0.get_mut(field.index()) {
            *slot = Some(if as_str {
                Captured::Str(value)
            } else {
                Captured::Debug(display(value))
            });
        }
    }
}

impl Visit for Kept {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string(), true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"), false);
    }
}

#[cfg(test)]
mod tests;
