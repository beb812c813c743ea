//! Which key names and ids keyrot takes from a provider's listing. A name
//! fills `{name}` in sink locations (a file path, a vault path, a secret
//! name) and reaches operators' programs as `KEYROT_KEY_NAME`, so it is
//! untrusted input and checked once, here, where listings enter the
//! inventory. A listed key whose name or id fails is left out of the
//! inventory; the sync reports it (`crate::scheduler::refusals`).
//!
//! A **name** is 1 to [`MAX_NAME`] characters, each a letter or digit (any
//! script) or one of [`NAME_PUNCTUATION`]; it does not start with `.`, `-`
//! or a space, nor end with a space. So it holds no `/`, `\`, no control
//! character, no shell or glob character, and is never `.` or `..`.
//!
//! An **id** is 1 to [`MAX_ID`] characters with no control character and
//! no space (ids are opaque and some hold `/`, such as AppRole's
//! `ROLE/ACCESSOR`; keyrot never builds a path from an id).
//!
//! docs/providers.md ("Names and ids from providers") says the same.

use keyrot_core::model::KeyInfo;

/// Most characters in a key name.
pub const MAX_NAME: usize = 128;
/// Most characters in a key id.
pub const MAX_ID: usize = 256;
/// The characters a name may hold besides letters and digits.
pub const NAME_PUNCTUATION: &str = " ._-@:+=,()";
/// Most characters of a refused value that a log line or mail shows.
const SHOWN: usize = 200;

/// Why `name` is not an acceptable key name, or None when it is.
pub fn name_problem(name: &str) -> Option<String> {
    let count = name.chars().count();
    if count == 0 {
        return Some("the name is empty".into());
    }
    if count > MAX_NAME {
        return Some(format!(
            "the name has {count} characters (at most {MAX_NAME})"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_alphanumeric() && !NAME_PUNCTUATION.contains(*c))
    {
        return Some(format!(
            "the name holds {}, which a name may not (letters, digits and `{NAME_PUNCTUATION}` only)",
            describe(c)
        ));
    }
    if name.starts_with(['.', '-', ' ']) {
        return Some("the name starts with `.`, `-` or a space".into());
    }
    if name.ends_with(' ') {
        return Some("the name ends with a space".into());
    }
    None
}

/// Why `id` is not an acceptable key id, or None when it is.
pub fn id_problem(id: &str) -> Option<String> {
    let count = id.chars().count();
    if count == 0 {
        return Some("the id is empty".into());
    }
    if count > MAX_ID {
        return Some(format!("the id has {count} characters (at most {MAX_ID})"));
    }
    id.chars()
        .find(|c| c.is_control() || c.is_whitespace())
        .map(|c| format!("the id holds {}", describe(c)))
}

/// Why `key` is refused, or None when its name and id are acceptable.
pub fn problem(key: &KeyInfo) -> Option<String> {
    name_problem(&key.name).or_else(|| id_problem(&key.id))
}

/// `value` as a log line or a mail shows it: control and invisible
/// characters escaped (`\n`, `\u{202e}`), at most [`SHOWN`] characters,
/// so a refused name can neither forge a log line nor hide what it is.
pub fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(SHOWN)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > SHOWN {
        out.push_str("...");
    }
    out
}

/// A character as an error names it: `'/'`, `'\n'`, `U+202E`.
fn describe(c: char) -> String {
    if c.is_control() || c.is_whitespace() || !c.is_ascii() {
        format!("{:?} (U+{:04X})", c, u32::from(c))
    } else {
        format!("{c:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_every_day_pass() {
        for name in [
            "ci-bot",
            "read only demo",
            "deploy@prod",
            "svc:payments.v2",
            "user+tag=x,y",
            "Jira bot (prod)",
            "Schlüssel_1",
            "k",
        ] {
            assert_eq!(name_problem(name), None, "{name}");
        }
        assert_eq!(name_problem(&"a".repeat(MAX_NAME)), None);
    }

    #[test]
    fn names_that_could_move_a_path_or_fool_a_reader_are_refused() {
        for (name, why) in [
            ("ci-x/../../escaped/pwned", "'/'"),
            ("..", "starts with"),
            (".hidden", "starts with"),
            ("-rf", "starts with"),
            (" x", "starts with"),
            ("x ", "ends with"),
            ("a\\b", "'\\\\'"),
            ("line\nbreak", "U+000A"),
            ("tab\there", "U+0009"),
            ("rtl\u{202e}gpj.exe", "U+202E"),
            ("$(id)", "'$'"),
            ("glob*", "'*'"),
            ("", "empty"),
        ] {
            let got = name_problem(name).unwrap_or_else(|| panic!("{name:?} passed"));
            assert!(got.contains(why), "{name:?}: {got}");
        }
        assert!(name_problem(&"a".repeat(MAX_NAME + 1)).is_some());
    }

    #[test]
    fn ids_are_opaque_but_hold_no_control_character_or_space() {
        assert_eq!(id_problem("role/0a1b-2c3d"), None);
        assert_eq!(id_problem("AKIAEXAMPLE"), None);
        assert!(id_problem("a\nb").unwrap().contains("U+000A"));
        assert!(id_problem("a b").is_some());
        assert!(id_problem("").is_some());
        assert!(id_problem(&"i".repeat(MAX_ID + 1)).is_some());
    }

    #[test]
    fn shown_values_escape_controls_and_are_bounded() {
        assert_eq!(shown("a/../b\nc"), "a/../b\\nc");
        assert_eq!(shown("x\u{202e}y"), "x\\u{202e}y");
        let long = shown(&"z".repeat(500));
        assert_eq!(long.len(), SHOWN + 3);
    }
}
