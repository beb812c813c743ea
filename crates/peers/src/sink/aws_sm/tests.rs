//! The Secrets Manager sink's JSON rendering, refused field names and request member names.

use jiff::SignedDuration;

use super::*;
use keyrot_config::AwsCredentialsConfig;

fn cfg(format: SecretFormat) -> AwsSecretsManagerSinkConfig {
    AwsSecretsManagerSinkConfig {
        region: "eu-west-1".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        secret_name: "keyrot/{provider}/{name}".into(),
        create: false,
        kms_key_id: None,
        format,
        credentials: AwsCredentialsConfig::Environment,
        timeout: SignedDuration::from_secs(5),
    }
}

fn target() -> SinkTarget {
    SinkTarget {
        slot: "local/ci".into(),
        provider: "local".into(),
        key_name: "ci".into(),
        key_id: "lk_1".into(),
        rotation_id: "0190f3a2-7c1e-7000-8000-000000000001".into(),
        expires_at: Some("2027-01-01T00:00:00Z".parse().unwrap()),
        probe: false,
    }
}

#[test]
fn json_render_is_stable_and_extracts_the_field() {
    let s = AwsSecretsManagerSink::new(
        "aws",
        &cfg(SecretFormat::Json {
            field: "api_key".into(),
        }),
        None,
    )
    .unwrap();
    let secret = SecretString::from("s3cr3t \"quoted\"");
    let a = s.render(&target(), &secret).unwrap();
    let b = s.render(&target(), &secret).unwrap();
    assert_eq!(*a, *b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["api_key"], "s3cr3t \"quoted\"");
    assert_eq!(v["key_id"], "lk_1");
    assert_eq!(v["rotation_id"], target().rotation_id);
    assert_eq!(v["expires_at"], "2027-01-01T00:00:00Z");
    assert_eq!(v["provider"], "local");
    assert_eq!(v["slot"], "local/ci");
    let got = s
        .extract("n", &SecretString::from(a.to_string()), "v1")
        .unwrap();
    assert_eq!(*got, "s3cr3t \"quoted\"");
    let err = s
        .extract("n", &SecretString::from("plain".to_string()), "v1")
        .unwrap_err();
    assert!(err.message.contains("\"api_key\""), "{err}");
    assert!(!err.message.contains("plain"), "{err}");
}

#[test]
fn a_field_named_like_metadata_is_refused() {
    let err = AwsSecretsManagerSink::new(
        "aws",
        &cfg(SecretFormat::Json {
            field: "key_id".into(),
        }),
        None,
    )
    .unwrap_err();
    assert!(!err.transient);
    assert!(
        err.message.starts_with("sink \"aws\": `field` \"key_id\""),
        "{err}"
    );
}

#[test]
fn requests_have_aws_member_names() {
    let body = json_body(
        &UpdateStage {
            secret_id: "n",
            version_stage: AWSCURRENT,
            move_to_version_id: "new",
            remove_from_version_id: None,
        },
        0,
    )
    .unwrap();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"SecretId":"n","VersionStage":"AWSCURRENT","MoveToVersionId":"new"}"#
    );
}
