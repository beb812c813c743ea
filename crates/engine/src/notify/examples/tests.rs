//! Operator templates override the built-in ones by file name; a broken one falls back.

use super::*;
use crate::notify::templates::check_dir;

#[test]
fn overrides_replace_builtins_by_file_name_and_broken_ones_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("completed.txt"),
        "Subject: [ACME] {{ slot }} rotated\n\nNew key {{ new_key_id }}.\n",
    )
    .unwrap();
    // Unknown variable: parses, but does not render.
    std::fs::write(
        dir.path().join("completed.html"),
        "<p>{{ new_key_idd }}</p>",
    )
    .unwrap();
    // Syntax error.
    std::fs::write(dir.path().join("failed.txt"), "Subject: x\n{% if a %}\n").unwrap();
    // The former syntax.
    std::fs::write(
        dir.path().join("live.txt"),
        "Subject: x\n{{#if a}}{{/if}}\n",
    )
    .unwrap();
    // No subject line.
    std::fs::write(dir.path().join("revoked.txt"), "Revoked {{slot}}\n").unwrap();
    std::fs::write(dir.path().join("complted.txt"), "Subject: x\n").unwrap();
    std::fs::write(dir.path().join(".completed.txt.swp"), "junk").unwrap();

    let (t, problems) = Templates::read_dir(dir.path());
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].contains("complted.txt: not a template keyrot uses"));
    assert!(
        problems[1].contains("failed.txt: line 2: syntax error: unexpected end of input"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].contains(
            "live.txt: line 2: {{#if a}} is keyrot's former template syntax; templates \
             are Jinja now: write {% if a %}"
        ),
        "{}",
        problems[2]
    );
    assert!(
        problems[3]
            .contains("revoked.txt: the first line of a text template must be `Subject: ...`")
    );

    let vars = vars("completed");
    let r = t.render("completed", &vars);
    assert_eq!(r.subject, "[ACME] atlassian/ci-bot rotated");
    assert_eq!(r.text, format!("New key {}.\n", vars.text("new_key_id")));
    // The broken HTML override fell back to the built-in.
    assert_eq!(r.html, Templates::builtin().render("completed", &vars).html);

    let all = check_dir(dir.path(), super::vars);
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(
        all[4].contains("completed.html: line 1: unknown variable \"new_key_idd\""),
        "{}",
        all[4]
    );
    // A row's field is checked even where the example has no row.
    let digest = tempfile::tempdir().unwrap();
    let src = "Subject: x\n{% for key in keys %}{{ key.slto }}{% endfor %}\n";
    std::fs::write(digest.path().join("digest.txt"), src).unwrap();
    let found = check_dir(digest.path(), super::vars);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("digest.txt: line 2: undefined value"),
        "{}",
        found[0]
    );
    // A missing directory is one problem, and only the built-ins are used.
    let gone = dir.path().join("nope");
    assert_eq!(check_dir(&gone, super::vars).len(), 1);
    assert_eq!(
        Templates::load(Some(&gone)).render("completed", &vars),
        Templates::builtin().render("completed", &vars)
    );
}
