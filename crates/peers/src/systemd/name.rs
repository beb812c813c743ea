//! Unit names, checked before keyrot says them to systemd, by systemd's
//! own rules ([`keyrot_core::unit_name`]): a refused name is a permanent
//! error naming it (control characters escaped).

use keyrot_core::error::CallError;
use keyrot_core::escape;

pub use keyrot_core::unit_name::{MAX_LEN, TYPES};

/// `unit` if systemd would take it as the name of one unit (plain or
/// instance), else a permanent error that names it and says why.
pub fn check(unit: &str) -> Result<&str, CallError> {
    keyrot_core::unit_name::check(unit).map_err(|why| {
        CallError::permanent(format!(
            "systemd unit name \"{}\" is invalid: {why}",
            escape::controls(unit)
        ))
    })?;
    Ok(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_name_is_a_permanent_error_that_names_it() {
        assert_eq!(check("getty@tty1.service").unwrap(), "getty@tty1.service");
        let e = check("x\n.service").unwrap_err();
        assert!(!e.transient);
        assert!(
            e.message
                .starts_with("systemd unit name \"x\\n.service\" is invalid: "),
            "{}",
            e.message
        );
        assert!(!e.message.contains('\n'), "{}", e.message);
    }
}
