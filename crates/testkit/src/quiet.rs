//! What the tests of `revoke_when = "unused"` share, in process and
//! against peers: moving the clock and driving a rotation, and reading the
//! in-use alert back (the mails queued, the metric's line).

use jiff::SignedDuration;

use keyrot_core::model::MessageKind;

use crate::World;

/// Moves the clock by `d`, then runs the rotation's step if it is due.
pub async fn tick(w: &World, id: &str, d: SignedDuration) {
    w.clock.advance(d);
    w.engine().spawn(id);
    w.settle().await;
}

/// The in-use alerts queued so far.
pub fn in_use_mails(w: &World) -> usize {
    w.store()
        .outbox()
        .unwrap()
        .iter()
        .filter(|m| m.kind == MessageKind::OldKeyInUse)
        .count()
}

/// The exposition's `keyrot_old_keys_in_use_total` line ("" without one).
pub fn alerts(w: &World) -> String {
    let text = w.engine().metrics().render(&Default::default()).unwrap();
    text.lines()
        .find(|l| l.starts_with("keyrot_old_keys_in_use_total{"))
        .unwrap_or("")
        .to_string()
}
