//! Key Vault: token scope per cloud, vault names, versions, form encoding, error codes.

use super::keyvault::{error_code, inner_error_code, vault_name, version_of};
use super::token::form_encode;
use super::*;

#[test]
fn scope_follows_the_vault_cloud() {
    let s = |u: &str| vault_scope(u);
    assert_eq!(
        s("https://kv1.vault.azure.net"),
        "https://vault.azure.net/.default"
    );
    assert_eq!(
        s("https://KV1.Vault.Azure.CN"),
        "https://vault.azure.cn/.default"
    );
    assert_eq!(
        s("https://kv1.vault.usgovcloudapi.net"),
        "https://vault.usgovcloudapi.net/.default"
    );
    assert_eq!(
        s("http://127.0.0.1:8443"),
        "https://vault.azure.net/.default"
    );
    // Only a whole DNS suffix counts.
    assert_eq!(
        s("https://kv1.evilvault.azure.cn.example"),
        "https://vault.azure.net/.default"
    );
}

#[test]
fn vault_name_is_the_first_label_of_a_known_host() {
    assert_eq!(vault_name("https://kv-prod.vault.azure.net"), "kv-prod");
    assert_eq!(vault_name("https://kv-cn.vault.azure.cn"), "kv-cn");
    assert_eq!(vault_name("http://127.0.0.1:8200"), "VAULT");
}

#[test]
fn version_is_the_last_segment_of_the_id() {
    assert_eq!(
        version_of(Some("https://v.vault.azure.net/secrets/a/4387e9f3d6e14c45")).as_deref(),
        Some("4387e9f3d6e14c45")
    );
    assert_eq!(version_of(Some("no-slash")), None);
    assert_eq!(version_of(None), None);
}

#[test]
fn form_encoding_escapes_reserved_characters() {
    let f = form_encode(&[
        ("a", "x y&z=1/+"),
        ("scope", "https://vault.azure.net/.default"),
    ]);
    assert_eq!(
        std::str::from_utf8(&f).unwrap(),
        "a=x+y%26z%3D1%2F%2B&scope=https%3A%2F%2Fvault.azure.net%2F.default"
    );
}

#[test]
fn error_codes_are_read_from_key_vault_errors() {
    let body = br#"{"error":{"code":"Conflict","message":"m","innererror":{"code":"ObjectIsDeletedButRecoverable"}}}"#;
    assert_eq!(error_code(body).as_deref(), Some("Conflict"));
    assert_eq!(
        inner_error_code(body).as_deref(),
        Some("ObjectIsDeletedButRecoverable")
    );
    assert_eq!(error_code(b"<html>"), None);
}
