//! The HTTP provider's templates: variables, percent-encoded paths, JSON bodies and tag formats.

use super::*;
use serde_json::json;

fn vars() -> Vec<(String, String)> {
    vec![("user".into(), "a/b c".into())]
}

#[test]
fn parses_variables_and_refuses_unknown_ones() {
    let t = parse(
        "/users/{{ vars.user }}/tokens/{{key.id}}",
        Scope::Revoke,
        &vars(),
    )
    .unwrap();
    assert!(t.uses(&Var::KeyId));
    assert_eq!(t.literal_text(), "/users//tokens/");
    let e = parse("/x/{{key.name}}", Scope::Revoke, &vars()).unwrap_err();
    assert!(
        e.contains("cannot be used here") && e.contains("{{key.id}}"),
        "{e}"
    );
    let e = parse("/x/{{vars.nope}}", Scope::List, &vars()).unwrap_err();
    assert!(e.contains("not defined") && e.contains("user"), "{e}");
    let e = parse("/x/{{key.id", Scope::Revoke, &vars()).unwrap_err();
    assert!(e.contains("unclosed"), "{e}");
    assert!(parse("{{secret}}", Scope::Verify, &vars()).is_err());
    assert!(parse("Bearer {{secret}}", Scope::VerifyHeader, &vars()).is_ok());
}

#[test]
fn paths_percent_encode_values() {
    let t = parse(
        "/p/{{vars.user}}/t/{{key.id}}?q={{key.id}}",
        Scope::Revoke,
        &vars(),
    )
    .unwrap();
    let v = Values {
        key_id: Some("x?y#z/é"),
        ..Values::default()
    };
    assert_eq!(
        t.path(&v).unwrap(),
        "/p/a%2Fb%20c/t/x%3Fy%23z%2F%C3%A9?q=x%3Fy%23z%2F%C3%A9"
    );
    assert_eq!(
        t.path(&Values::default()).unwrap_err(),
        Missing("{{key.id}}".into())
    );
}

#[test]
fn json_bodies_escape_and_type_values() {
    let body = json!({
        "name": "{{key.name}}",
        "label": "key {{key.name}} for {{rotation.id}}",
        "ttl": "{{seconds_to_live}}",
        "scopes": "{{scopes}}",
        "expires_at": "{{new_expires_date}}",
        "level": 30,
        "nested": [{"on": true}]
    });
    let t = JsonTemplate::parse(&body, Scope::Issue, &[]).unwrap();
    assert!(t.uses_any(&Var::is_expiry));
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let scopes = vec!["api".to_string(), "read_repo".to_string()];
    let name = "ci \"prod\"/eu\\x";
    let v = Values {
        key_name: Some(name),
        rotation_id: Some("r1"),
        expires_at: Some("2026-01-31T12:00:00Z".parse().unwrap()),
        now: Some(now),
        scopes: Some(&scopes),
        ..Values::default()
    };
    let out = t.render(&v).unwrap();
    assert_eq!(
        out,
        json!({
            "name": name,
            "label": format!("key {name} for r1"),
            "ttl": 30 * 86_400 + 12 * 3600,
            "scopes": ["api", "read_repo"],
            "expires_at": "2026-01-31",
            "level": 30,
            "nested": [{"on": true}]
        })
    );
    // Serialised, the quotes and backslash are escaped JSON.
    let text = serde_json::to_string(&out).unwrap();
    assert!(text.contains(r#""name":"ci \"prod\"/eu\\x""#), "{text}");
    // Without an expiry the expiry members are left out, not sent empty.
    let v = Values {
        key_name: Some("n"),
        rotation_id: Some("r1"),
        scopes: Some(&scopes),
        ..Values::default()
    };
    let out = t.render(&v).unwrap();
    assert!(out.get("ttl").is_none() && out.get("expires_at").is_none());
    // No scopes: left out, not `[]`.
    let v = Values {
        key_name: Some("n"),
        rotation_id: Some("r1"),
        scopes: Some(&[]),
        ..Values::default()
    };
    assert!(t.render(&v).unwrap().get("scopes").is_none());
    // A bad variable names where it is.
    let e =
        JsonTemplate::parse(&json!({"a": [{"b": "{{secret}}"}]}), Scope::Issue, &[]).unwrap_err();
    assert!(e.starts_with("body.a[0].b:"), "{e}");
}

#[test]
fn tag_format_splits_around_its_variable() {
    let t = parse("-keyrot-{{rotation.id}}]", Scope::TagFormat, &[]).unwrap();
    assert_eq!(
        t.around_one_var().unwrap(),
        ("-keyrot-".to_string(), "]".to_string())
    );
    let v = Values {
        secret: None,
        ..Values::default()
    };
    assert!(t.text(&v).is_err());
}
