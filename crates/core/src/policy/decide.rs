//! The full start decision for one key slot: due time, window placement
//! with jitter, the emergency rule, group stagger and `auto_rotate`, plus
//! the one-line explanation shown in logs and `keyrot plan`.

use jiff::{SignedDuration, Timestamp};

use super::duration::{add_sat, format_duration, format_ts};
use super::{DueReason, KeyTimes, Policy, due_at, jitter_offset};

/// The full decision for one key slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// When the policy makes it due (None: never).
    pub due_at: Option<Timestamp>,
    /// Why.
    pub reason: Option<DueReason>,
    /// When the rotation will start (None: never / auto_rotate off).
    pub start_at: Option<Timestamp>,
    /// The window occurrence it starts in, if the policy has windows and it's not an emergency.
    pub window: Option<(Timestamp, Timestamp)>,
    /// Started outside a window because the key would expire before the next window opens.
    pub emergency: bool,
    /// Pushed back by the group stagger.
    pub staggered: bool,
    /// One line for logs and `keyrot plan`, e.g. "due 2026-11-20T02:00Z (lead time 30d before expiry); starts in window 2026-11-21 02:00–06:00 Europe/London at +37m jitter" or "EMERGENCY: expires 2026-11-22T10:00Z before next window 2026-11-23T02:00Z; starting now".
    pub explain: String,
}

/// Where a candidate start lands once the policy's windows are applied.
struct Placement {
    /// The start instant.
    start: Timestamp,
    /// Index of the window and its occurrence `[start, end)`.
    window: Option<(usize, Timestamp, Timestamp)>,
    /// The jitter, when the start sits exactly at window start + jitter.
    jitter: Option<SignedDuration>,
}

/// Decides when a slot's next rotation starts.
/// - start candidate = max(due_at, now)  (never in the past);
/// - with windows: if the candidate lies inside an open window occurrence, start = max(candidate, window_start + jitter) if that is still inside the window, else candidate; otherwise start = next window start after candidate (+ jitter if enabled), taking the earliest over all windows;
/// - emergency: if the key has an expiry and the start so found is at or after expires_at, start = candidate, emergency = true;
/// - stagger: if policy.stagger is Some(s) and group_last_start is Some(t), start = max(start, t + s) (staggered = true when it moved it; an emergency is not delayed by stagger beyond expiry: if the staggered start would be at/after expires_at, keep the unstaggered start);
/// - auto_rotate false: start_at None (due_at still reported).
///
/// The emergency rule only applies when the policy has windows (without
/// windows the start is already the candidate). When no window opens within
/// the ~5 year search, a key with an expiry starts as an emergency and a key
/// without one gets no start.
pub fn decide(
    policy: &Policy,
    slot: &str,
    key: Option<KeyTimes>,
    group_last_start: Option<Timestamp>,
    now: Timestamp,
) -> Decision {
    let Some((due, reason)) = due_at(policy, key, now) else {
        return Decision {
            due_at: None,
            reason: None,
            start_at: None,
            window: None,
            emergency: false,
            staggered: false,
            explain: never_due(policy, key),
        };
    };
    let mut d = Decision {
        due_at: Some(due),
        reason: Some(reason),
        start_at: None,
        window: None,
        emergency: false,
        staggered: false,
        explain: format!(
            "due {} ({})",
            format_ts(due),
            reason_detail(policy, key, reason)
        ),
    };
    if !policy.auto_rotate {
        d.explain
            .push_str("; auto_rotate is off: notices only, no automatic start");
        return d;
    }
    let candidate = due.max(now);
    let expires = key.and_then(|k| k.expires_at);
    let placed = place(policy, slot, candidate);
    let needs_emergency = !policy.windows.is_empty()
        && expires.is_some_and(|e| placed.as_ref().is_none_or(|p| p.start >= e));
    if let (true, Some(exp)) = (needs_emergency, expires) {
        d.start_at = Some(candidate);
        d.emergency = true;
        d.explain = emergency_text(exp, placed.as_ref(), candidate, now, &d.explain);
    } else if let Some(p) = placed {
        d.start_at = Some(p.start);
        d.window = p.window.map(|(_, s, e)| (s, e));
        d.explain
            .push_str(&placement_text(policy, &p, candidate, now));
    } else {
        d.explain
            .push_str("; no window opens within 5 years: not started");
        return d;
    }
    apply_stagger(policy, group_last_start, expires, &mut d);
    d
}

/// Applies the policy's group stagger to a decision that has a start.
fn apply_stagger(
    policy: &Policy,
    group_last_start: Option<Timestamp>,
    expires: Option<Timestamp>,
    d: &mut Decision,
) {
    let (Some(gap), Some(last), Some(start)) = (policy.stagger, group_last_start, d.start_at)
    else {
        return;
    };
    let later = add_sat(last, gap);
    if later <= start {
        return;
    }
    let stagger = format!(
        "{} after the group's last start {}",
        format_duration(gap),
        format_ts(last)
    );
    if expires.is_some_and(|e| later >= e) {
        d.explain.push_str(&format!(
            "; not staggered to {} ({stagger}): the key would expire first",
            format_ts(later)
        ));
    } else {
        d.start_at = Some(later);
        d.staggered = true;
        d.explain
            .push_str(&format!("; staggered to {} ({stagger})", format_ts(later)));
    }
}

/// The earliest placement of `candidate` over the policy's windows (the
/// candidate itself when there are none; None when no window ever opens).
fn place(policy: &Policy, slot: &str, candidate: Timestamp) -> Option<Placement> {
    if policy.windows.is_empty() {
        return Some(Placement {
            start: candidate,
            window: None,
            jitter: None,
        });
    }
    let jitter = |ws: Timestamp, len: SignedDuration| {
        if policy.jitter {
            jitter_offset(slot, ws, len)
        } else {
            SignedDuration::ZERO
        }
    };
    let on = policy.jitter;
    policy
        .windows
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            if let Some((ws, we)) = w.containing(candidate) {
                let j = jitter(ws, w.duration);
                let jittered = add_sat(ws, j);
                let start = if candidate.max(jittered) < we {
                    candidate.max(jittered)
                } else {
                    candidate
                };
                let at_jitter = on && start == jittered && start > candidate;
                Some(Placement {
                    start,
                    window: Some((i, ws, we)),
                    jitter: at_jitter.then_some(j),
                })
            } else {
                let ws = w.next_start_after(candidate)?;
                let j = jitter(ws, w.duration);
                Some(Placement {
                    start: add_sat(ws, j),
                    window: Some((i, ws, add_sat(ws, w.duration))),
                    jitter: on.then_some(j),
                })
            }
        })
        .min_by_key(|p| p.start)
}

/// "; starts …" for a normal (non-emergency) placement.
fn placement_text(policy: &Policy, p: &Placement, candidate: Timestamp, now: Timestamp) -> String {
    let when = |at: Timestamp| {
        if at == now {
            "now".to_string()
        } else {
            format_ts(at)
        }
    };
    let Some((i, ws, we)) = p.window else {
        return format!("; starts {}", when(p.start));
    };
    let Some(w) = policy.windows.get(i) else {
        return format!("; starts {}", when(p.start));
    };
    let desc = w.describe(ws, we);
    let open = if ws <= candidate { "open " } else { "" };
    match p.jitter {
        Some(j) => format!(
            "; starts in {open}window {desc} at +{} jitter",
            format_duration(j)
        ),
        None if p.start == ws => format!("; starts when window {desc} opens"),
        None => format!("; starts {} in {open}window {desc}", when(p.start)),
    }
}

/// The emergency line; `due` is the "due … (…)" text.
fn emergency_text(
    expires: Timestamp,
    placed: Option<&Placement>,
    candidate: Timestamp,
    now: Timestamp,
    due: &str,
) -> String {
    let starting = if candidate == now {
        "starting now".to_string()
    } else {
        format!("starting at {}", format_ts(candidate))
    };
    let exp = format_ts(expires);
    if expires <= candidate {
        return format!("EMERGENCY: expired {exp}; {starting}; {due}");
    }
    let before = match placed.and_then(|p| p.window.map(|w| (p.start, w.1))) {
        Some((_, ws)) if ws > candidate => format!("before next window {}", format_ts(ws)),
        Some((start, _)) => format!(
            "before its start in the open window at {}",
            format_ts(start)
        ),
        None => "before any window opens (none within 5 years)".to_string(),
    };
    format!("EMERGENCY: expires {exp} {before}; {starting}; {due}")
}

/// The reason in words, with the policy numbers behind it.
fn reason_detail(policy: &Policy, key: Option<KeyTimes>, reason: DueReason) -> String {
    let num = |d: Option<SignedDuration>| d.map(format_duration).unwrap_or_default();
    match reason {
        DueReason::LeadTime => {
            format!(
                "lead time {} before expiry",
                num(policy.rotate_before_expiry)
            )
        }
        DueReason::MaxAge => format!("max age {}", num(policy.max_age)),
        DueReason::TwoThirdsLifetime => {
            let life = key
                .and_then(|k| k.created_at.zip(k.expires_at))
                .map(|(c, e)| e.duration_since(c));
            format!("2/3 of lifetime {}", num(life))
        }
        DueReason::NoKey => reason.as_str().to_string(),
    }
}

/// Why nothing makes this key due.
fn never_due(policy: &Policy, key: Option<KeyTimes>) -> String {
    let k = key.unwrap_or_default();
    let mut why = Vec::new();
    match (policy.rotate_before_expiry, k.expires_at) {
        (None, _) => why.push("the policy sets no rotate_before_expiry"),
        (Some(_), None) => why.push("the key has no expiry"),
        (Some(_), Some(_)) => {}
    }
    match (policy.max_age, k.created_at) {
        (None, _) => why.push("the policy sets no max_age"),
        (Some(_), None) => why.push("the key has no creation time"),
        (Some(_), Some(_)) => {}
    }
    if policy.rotate_before_expiry.is_none() && policy.max_age.is_none() {
        why.push("2/3 of lifetime needs both a creation and an expiry time");
    }
    format!("never due: {}", why.join("; "))
}

#[cfg(test)]
mod tests;
