//! AppRole secret-id lookups read as keys, and key ids split into role and accessor.

use super::wire::{SecretIdEntry, key_info};
use super::*;

fn entry(json: &str) -> SecretIdEntry {
    serde_json::from_str(json).unwrap()
}

#[test]
fn lookups_become_keys_with_expiry_tags_and_creator() {
    let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
    let e = entry(
        r#"{"cidr_list":[],"creation_time":"2026-03-01T11:00:00.595649658Z","expiration_time":"2026-03-01T13:00:00.595649658+00:00","metadata":{"keyrot_rotation":"r1","keyrot_created_by":"keyrot"},"secret_id_accessor":"acc-1","secret_id_num_uses":0,"secret_id_ttl":7200}"#,
    );
    let k = key_info("ci", e, now).unwrap();
    assert_eq!(k.id, "ci/acc-1");
    assert_eq!(k.name, "ci");
    assert_eq!(k.created_by.as_deref(), Some("keyrot"));
    assert_eq!(k.tags.get(TAG_KEY).map(String::as_str), Some("r1"));
    assert_eq!(
        k.expires_at.unwrap().as_second(),
        "2026-03-01T13:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_second()
    );
    assert!(k.created_at.is_some());
    // No expiry: year 1 and ttl 0; metadata may be null.
    let e = entry(
        r#"{"creation_time":"2026-03-01T11:00:00Z","expiration_time":"0001-01-01T00:00:00Z","metadata":null,"secret_id_accessor":"acc-2","secret_id_num_uses":0,"secret_id_ttl":0}"#,
    );
    let k = key_info("ci", e, now).unwrap();
    assert_eq!(k.expires_at, None);
    assert!(k.tags.is_empty());
    // Expired but not tidied: left out.
    let e = entry(
        r#"{"creation_time":"2026-03-01T10:00:00Z","expiration_time":"2026-03-01T11:00:00Z","secret_id_accessor":"acc-3","secret_id_ttl":3600}"#,
    );
    assert!(key_info("ci", e, now).is_none());
}

#[test]
fn ids_split_into_role_and_accessor() {
    let cfg = OpenBaoAppRoleProviderConfig {
        address: "http://127.0.0.1:1".into(),
        mount: "approle".into(),
        roles: Some(vec!["ci".into()]),
        namespace: None,
        auth: keyrot_config::VaultAuth::Token(keyrot_config::SecretRef::Env(
            "KEYROT_TEST_UNSET_TOKEN_FOR_IDS".into(),
        )),
        ca_file: None,
        timeout: SignedDuration::from_secs(5),
    };
    let err = OpenBaoAppRoleProvider::new("bao", &cfg, None).unwrap_err();
    assert!(
        err.message.starts_with("provider \"bao\": `token`:"),
        "{}",
        err.message
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s.secret-token-value\n").unwrap();
    let cfg = OpenBaoAppRoleProviderConfig {
        auth: keyrot_config::VaultAuth::Token(keyrot_config::SecretRef::File(token)),
        ..cfg
    };
    let p = OpenBaoAppRoleProvider::new("bao", &cfg, None).unwrap();
    assert_eq!(p.split_id("ci/abc-123").unwrap(), ("ci", "abc-123"));
    for bad in ["ci", "/abc", "ci/", "c i/abc", "ci/a/b"] {
        assert!(p.split_id(bad).is_err(), "{bad}");
    }
    assert!(p.check_role("ci").is_ok());
    let e = p.check_role("deploy").unwrap_err();
    assert!(
        e.message.contains("not in this provider's `roles` (ci)"),
        "{}",
        e.message
    );
    assert!(p.check_role("a/b").is_err());
    let shown = format!("{p:?}");
    assert!(!shown.contains("secret-token-value"), "{shown}");
    assert_eq!(
        p.capabilities(),
        Capabilities {
            list: true,
            issue: IssueMode::Create,
            verify: true,
            revoke: true,
            tag: true,
            ..Capabilities::default()
        }
    );
}
