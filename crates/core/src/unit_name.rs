//! systemd unit names, checked before keyrot says them to systemd: they
//! come from the configuration, so a name systemd itself would refuse is
//! refused at `keyrot check` (with its position) and again before any call.
//!
//! The rules are systemd's own (`unit_name_is_valid()` in its
//! `src/basic/unit-name.c`, and systemd.unit(5)): at most 255 bytes; a
//! prefix of `[A-Za-z0-9:_.\-]` (`\` is systemd's escape character, as in
//! `dev-sda\x2d1.device`), optionally followed by `@` and an instance of
//! the same characters; then a `.` and one of the unit types. A template
//! (`name@.service`, empty instance) names no unit that runs, so it is
//! refused too.

/// Longest unit name systemd accepts, in bytes (`UNIT_NAME_MAX` - 1).
pub const MAX_LEN: usize = 255;

/// The unit types systemd knows (the suffix after the last `.`).
pub const TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// Whether `c` may appear in a unit name's prefix or instance.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '\\' | '-')
}

/// Ok if systemd would take `unit` as the name of one unit (plain or
/// instance), else why not (without the name: callers say it their way).
pub fn check(unit: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(why.to_string());
    if unit.is_empty() {
        return refuse("it is empty");
    }
    if unit.len() > MAX_LEN {
        return refuse(&format!("longer than {MAX_LEN} bytes"));
    }
    let Some((stem, suffix)) = unit.rsplit_once('.') else {
        return refuse("no type suffix such as .service");
    };
    if !TYPES.contains(&suffix) {
        return refuse(&format!("the suffix must be one of .{}", TYPES.join(", .")));
    }
    let (prefix, instance) = match stem.split_once('@') {
        Some((prefix, instance)) => (prefix, Some(instance)),
        None => (stem, None),
    };
    if prefix.is_empty() {
        return refuse("nothing before the suffix or the @");
    }
    if let Some(instance) = instance {
        if instance.is_empty() {
            return refuse("a template (name@.type) is no unit; name an instance");
        }
        if instance.contains('@') {
            return refuse("more than one @");
        }
    }
    let chars = prefix.chars().chain(instance.unwrap_or("").chars());
    if let Some(bad) = chars.into_iter().find(|&c| !allowed(c)) {
        return refuse(&format!(
            "{:?} is not allowed (only A-Z a-z 0-9 : _ . \\ - and one @)",
            bad
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_names_pass() {
        for ok in [
            "nginx.service",
            "getty@tty1.service",
            "dev-sda\\x2d1.device",
            "app:web_1.socket",
            "a.b.c.timer",
            "user-1000.slice",
            &format!("{}.service", "a".repeat(MAX_LEN - ".service".len())),
        ] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn other_names_are_refused_saying_why() {
        for (bad, why) in [
            ("", "empty"),
            ("nginx", "suffix"),
            ("nginx.conf", "suffix must be"),
            (".service", "nothing before"),
            ("@x.service", "nothing before"),
            ("getty@.service", "template"),
            ("a@b@c.service", "more than one @"),
            ("ng inx.service", "' '"),
            ("../etc.service", "'/'"),
            ("x;rm.service", "';'"),
            ("x\n.service", "'\\n'"),
            ("é.service", "'é'"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let long = format!("{}.service", "a".repeat(MAX_LEN));
        assert!(check(&long).unwrap_err().contains("255 bytes"));
    }
}
