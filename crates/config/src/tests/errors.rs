//! One test per class of configuration error, each asserting the exact
//! `file:line:column` the error points at.

use super::{BASE, NAME, assert_one, errors, ok};
use crate::load;

/// A `[[key]]` entry (5 lines) with the given provider, policy and sinks.
fn key(name: &str, provider: &str, policy: &str, sinks: &str) -> String {
    format!(
        "[[key]]\nname = \"{name}\"\nprovider = \"{provider}\"\npolicy = \"{policy}\"\nsinks = {sinks}\n"
    )
}

#[test]
fn syntax_error_points_at_the_first_bad_token() {
    assert_one("[daemon]\nshutdown_timeout = 30s\n", "2:20: ");
}

#[test]
fn unknown_field_in_a_file_sink() {
    let text = "[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/tmp/x\"\ncolour = \"red\"\n";
    assert_one(
        text,
        "5:1: unknown field `colour` for sink type \"file\", expected one of `path`",
    );
}

#[test]
fn field_of_another_type_is_unknown_for_a_local_provider() {
    let text = "[[provider]]\nname = \"p\"\ntype = \"local\"\npath = \"/x\"\n";
    assert_one(
        text,
        "4:1: unknown field `path` for provider type \"local\"",
    );
}

#[test]
fn unknown_field_and_section_elsewhere() {
    assert_one("[daemon]\nsocket = \"/x\"\n", "2:1: unknown field `socket`");
    assert_one(
        "[deamon]\n",
        "1:2: unknown section `deamon` (did you mean \"daemon\"?)",
    );
    assert_one(
        "[provider]\nname = \"x\"\n",
        "1:1: `provider` must be an array of tables: write [[provider]]",
    );
}

#[test]
fn unknown_type_suggests_a_near_match() {
    let text = "[[provider]]\nname = \"p\"\ntype = \"locl\"\n";
    assert_one(
        text,
        "3:8: unknown provider type \"locl\" (did you mean \"local\"?)",
    );
    let text = "[[sink]]\nname = \"s\"\ntype = \"vaultt\"\n";
    assert_one(
        text,
        "3:8: unknown sink type \"vaultt\" (did you mean \"vault\"?)",
    );
}

#[test]
fn missing_required_field_points_at_the_entry() {
    assert_one(
        "[[sink]]\nname = \"s\"\ntype = \"file\"\n",
        "1:1: missing field `path`",
    );
}

#[test]
fn duplicate_names_point_at_the_second() {
    let text = format!("{BASE}\n[[policy]]\nname = \"standard\"\n");
    assert_one(
        &text,
        "14:8: duplicate policy name \"standard\" (first defined at /etc/keyrot/keyrot.toml:11:8)",
    );
    let text =
        format!("{BASE}\n[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/y/{{name}}\"\n");
    assert_one(&text, "14:8: duplicate sink name \"out\"");
    let text = format!("{BASE}\n[[provider]]\nname = \"local\"\ntype = \"local\"\n");
    assert_one(&text, "14:8: duplicate provider name \"local\"");
}

#[test]
fn unknown_references_suggest_a_near_match() {
    let text = format!("{BASE}{}", key("a", "local", "standrd", "[\"out\"]"));
    assert_one(
        &text,
        "15:10: unknown policy \"standrd\" (did you mean \"standard\"?); defined: \"standard\"",
    );
    let text = format!("{BASE}{}", key("a", "nope", "standard", "[\"out\"]"));
    assert_one(
        &text,
        "14:12: unknown provider \"nope\"; defined: \"local\"",
    );
    let text = format!(
        "{BASE}{}",
        key("a", "local", "standard", "[\"out\", \"ot\"]")
    );
    assert_one(&text, "16:17: unknown sink \"ot\" (did you mean \"out\"?)");
}

#[test]
fn bad_durations_point_at_the_value() {
    let text = format!("{BASE}max_age = \"90x\"\n");
    assert_one(&text, "12:11: duration \"90x\"");
    let text = format!("{BASE}overlap = 3600\n");
    assert_one(
        &text,
        "12:11: invalid type: integer `3600`, expected a duration string",
    );
    let text = format!("{BASE}stagger = \"0s\"\n");
    assert_one(&text, "12:11: `stagger` must be greater than 0s");
    assert_one("[daemon.retry]\ninitial = \"\"\n", "2:11: empty duration");
}

#[test]
fn bad_windows_point_at_cron_or_timezone() {
    let window = "[[policy.window]]\ncron = \"0 25 * * *\"\nduration = \"4h\"\n";
    assert_one(&format!("{BASE}{window}"), "13:8: ");
    let window = "[[policy.window]]\ncron = \"0 2 * * *\"\nduration = \"4h\"\ntimezone = \"Europe/Lodnon\"\n";
    assert_one(
        &format!("{BASE}{window}"),
        "15:12: unknown time zone \"Europe/Lodnon\"",
    );
    let window = "[[policy.window]]\ncron = \"0 2 * * *\"\nduration = \"0s\"\n";
    assert_one(
        &format!("{BASE}{window}"),
        "14:12: `duration` must be greater than 0s",
    );
}

#[test]
fn lead_time_must_be_shorter_than_the_new_lifetime() {
    let text = format!("{BASE}rotate_before_expiry = \"30d\"\nnew_key_lifetime = \"20d\"\n");
    assert_one(
        &text,
        "12:24: `rotate_before_expiry` (30d) must be shorter than `new_key_lifetime` (20d)",
    );
}

#[test]
fn duplicate_keys_for_one_provider() {
    let one = key("a", "local", "standard", "[\"out\"]");
    assert_one(
        &format!("{BASE}{one}{one}"),
        "18:8: duplicate [[key]] name \"a\" for provider \"local\" (first at /etc/keyrot/keyrot.toml:13:8)",
    );
    // The same name at another provider is a different key.
    let other = "[[provider]]\nname = \"other\"\ntype = \"local\"\n";
    let two = key("a", "other", "standard", "[\"out\"]");
    assert!(
        load::load_str(
            std::path::Path::new(NAME),
            &format!("{BASE}{other}{one}{two}")
        )
        .is_ok()
    );
}

#[test]
fn key_needs_name_or_select_but_not_both() {
    let both = "[[key]]\nname = \"a\"\nselect = { name = \"a*\" }\nprovider = \"local\"\npolicy = \"standard\"\nsinks = [\"out\"]\n";
    assert_one(
        &format!("{BASE}{both}"),
        "14:10: a [[key]] takes `name` (one key) or `select` (a selector), not both",
    );
    let neither = "[[key]]\nprovider = \"local\"\npolicy = \"standard\"\nsinks = [\"out\"]\n";
    assert_one(
        &format!("{BASE}{neither}"),
        "12:1: a [[key]] needs `name` (one key) or `select`",
    );
    let bad_tag = "[[key]]\nselect = { tag = \"team\" }\nprovider = \"local\"\npolicy = \"standard\"\nsinks = [\"out\"]\n";
    assert_one(
        &format!("{BASE}{bad_tag}"),
        "13:18: `tag` must be written key=value",
    );
    let no_sinks = "[[key]]\nname = \"a\"\nprovider = \"local\"\npolicy = \"standard\"\n";
    assert_one(
        &format!("{BASE}{no_sinks}"),
        "12:1: a [[key]] needs at least one sink",
    );
}

#[test]
fn modes_are_octal_strings() {
    assert_one(
        "[daemon]\ncontrol_socket_mode = \"0980\"\n",
        "2:23: invalid mode \"0980\"",
    );
    assert_one(
        "[daemon]\ncontrol_socket_mode = 660\n",
        "2:23: invalid type: integer `660`, expected an octal mode string",
    );
    assert_one(
        "[daemon]\ncontrol_socket_mode = \"0666\"\n",
        "2:23: control_socket_mode must let the owner read and write and must not let others write",
    );
    let sink = "[[sink]]\nname = \"s\"\ntype = \"file\"\npath = \"/x/{name}\"\nmode = \"0644\"\n";
    assert_one(
        sink,
        "5:8: a file sink holds a secret: its mode must give others no access",
    );
}

#[test]
fn retry_budget_is_checked() {
    assert_one(
        "[daemon.retry]\nattempts = 0\n",
        "2:12: retry `attempts` must be at least 1",
    );
    assert_one(
        "[daemon.retry]\ninitial = \"1h\"\nmax = \"1m\"\n",
        "3:7: retry `initial` must not be larger than `max`",
    );
}

#[test]
fn sync_schedule_needs_six_or_seven_fields() {
    assert_one(
        "[daemon]\nsync_schedule = \"*/15 * * * *\"\n",
        "2:17: sync_schedule: cron expression must have 6 or 7 fields (second minute hour \
         day-of-month month day-of-week [year]), found 5 in \"*/15 * * * *\"",
    );
    assert_one(
        "[daemon]\nsync_schedule = \"0 61 * * * *\"\n",
        "2:17: sync_schedule: cron field 2 (minute) value 61 is out of range 0-59",
    );
    assert_one(
        "[daemon]\nsync_schedule = \"0 0 x * * *\"\n",
        "2:17: sync_schedule: cron field 3 (hour) value \"x\" is not a number",
    );
    // Checked in full at load, not only the time fields.
    assert_one(
        "[daemon]\nsync_schedule = \"0 0 0 31 FEB *\"\n",
        "2:17: sync_schedule: cron expression \"0 0 0 31 FEB *\" never matches",
    );
    assert_one(
        "[notify]\ndigest_schedule = \"0 0 8 * * FUN\"\n",
        "2:19: digest_schedule: cron field 6 (day-of-week) value \"FUN\" is neither a number",
    );
}

#[test]
fn notify_transport_is_checked() {
    assert_one(
        "[notify]\ntransport = \"smtp\"\n",
        "2:13: transport = \"smtp\" needs `host`",
    );
    assert_one(
        "[notify]\ntransport = \"fiel\"\n",
        "2:13: unknown transport \"fiel\" (did you mean \"file\"?)",
    );
    assert_one(
        "[notify]\ntransport = \"file\"\n",
        "2:13: transport = \"file\" needs `dir`",
    );
    assert_one(
        "[notify]\nfrom = \"keyrot\"\n",
        "2:8: `from`: \"keyrot\" is not an email address",
    );
}

#[test]
fn sink_paths_and_env_names_are_checked() {
    let sink = |extra: &str| format!("[[sink]]\nname = \"s\"\ntype = \"file\"\n{extra}");
    assert_one(
        &sink("path = \"/x/{nmae}\"\n"),
        "4:8: unknown placeholder {nmae} (did you mean \"name\"?)",
    );
    assert_one(
        &sink("path = \"/x/{name\"\n"),
        "4:8: unbalanced `{` or `}` in `path`",
    );
    assert_one(
        &sink("path = \"/x/{name}\"\nformat = \"jsn\"\n"),
        "5:10: unknown format \"jsn\" (did you mean \"json\"?)",
    );
    assert_one(
        &sink("path = \"/x/{name}\"\nenv_name = \"A\"\n"),
        "5:12: `env_name` is only used with format = \"env\"",
    );
    assert_one(
        &sink("path = \"/x/{name}\"\nformat = \"env\"\nenv_name = \"1A\"\n"),
        "6:12: `env_name` \"1A\" is not a variable name",
    );
}

#[test]
fn a_fixed_file_sink_cannot_serve_two_keys() {
    let fixed = "[[sink]]\nname = \"one\"\ntype = \"file\"\npath = \"/x/token\"\n";
    let a = key("a", "local", "standard", "[\"one\"]");
    let b = key("b", "local", "standard", "[\"one\"]");
    let text = format!("{BASE}{fixed}{a}{b}");
    assert_one(
        &text,
        "25:10: sink \"one\" writes one fixed location (no {name} or {slot} in its path or secret name) and another [[key]] already writes to it (at /etc/keyrot/keyrot.toml:20:10)",
    );
}

#[test]
fn local_provider_limits() {
    let p = |extra: &str| format!("[[provider]]\nname = \"p\"\ntype = \"local\"\n{extra}");
    assert_one(
        &p("secret_bytes = 8\n"),
        "4:16: `secret_bytes` must be between 16 and 128",
    );
    assert_one(
        &p("max_concurrent = 0\n"),
        "4:18: `max_concurrent` must be between 1 and 1024",
    );
}

#[test]
fn provider_request_rates() {
    let p = |extra: &str| format!("[[provider]]\nname = \"p\"\ntype = \"local\"\n{extra}");
    // Unset: unlimited; an integer or a fraction is taken as it is.
    assert_eq!(ok(&p("")).providers[0].requests_per_second, None);
    let rate =
        |v: &str| ok(&p(&format!("requests_per_second = {v}\n"))).providers[0].requests_per_second;
    assert_eq!(rate("200"), Some(200.0));
    assert_eq!(rate("0.5"), Some(0.5));
    // `keyrot check` shows it after the provider's line.
    let summary = crate::summary::summary(
        &ok(&p("requests_per_second = 2.5\n")),
        jiff::Timestamp::UNIX_EPOCH,
    );
    assert!(
        summary.contains(
            "  p (local, 4 at once, new keys live 90d, 32 bytes), at most 2.5 requests/s\n"
        ),
        "{summary}"
    );
    let msg = "`requests_per_second` must be a number greater than 0 (at least one request a day) and at most 1000000";
    for bad in ["0", "-1", "0.000001", "2e6", "inf", "nan"] {
        assert_one(
            &p(&format!("requests_per_second = {bad}\n")),
            &format!("4:23: {msg}"),
        );
    }
    assert_one(
        &p("requests_per_second = \"fast\"\n"),
        "4:23: invalid type: string \"fast\", expected f64",
    );
}

#[test]
fn every_problem_is_reported_in_position_order() {
    let text = "[daemon]\nshutdown_timeout = \"soon\"\n[daemon.retry]\nattempts = 0\n\n[[policy]]\nname = \"p\"\nmax_age = \"1y\"\n";
    let errs = errors(text);
    let lines: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            format!("{NAME}:2:20"),
            format!("{NAME}:4:12"),
            format!("{NAME}:8:11")
        ]
    );
}

#[test]
fn every_bad_field_of_one_table_is_reported() {
    let text = "[daemon]\ncontrol_socket_mode = 660\nshutdown_timeout = \"30 x\"\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with(&format!("{NAME}:2:23: invalid type: integer `660`")));
    assert!(errs[1].starts_with(&format!("{NAME}:3:20: duration \"30 x\"")));
    let p = "[[provider]]\nname = \"p\"\ntype = \"local\"\nsecret_bytes = 8\nurl = \"http://x\"\n";
    let errs = errors(p);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with(&format!(
        "{NAME}:4:16: `secret_bytes` must be between 16 and 128"
    )));
    assert!(errs[1].starts_with(&format!(
        "{NAME}:5:1: unknown field `url` for provider type \"local\""
    )));
    assert_one(
        "[[daemon]]\n",
        "1:1: `daemon` must be a single table: write [daemon]",
    );
}

#[test]
fn a_missing_file_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let err = load::load(&path).unwrap_err();
    assert_eq!(err.diagnostics.len(), 1);
    let want = format!("{}:1:1: cannot read: ", path.display());
    assert!(err.to_string().starts_with(&want), "{err}");
}
