//! Secret references: parsing (only the three table forms, never an
//! inline value, with positions) and resolution (credential, file, env),
//! and that no error or Debug output carries the secret.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::raw::{INLINE_SECRET_MESSAGE, SecretRefRaw};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::*;
use crate::diag::Sources;

/// A stand-in for a config section with a secret field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Holder {
    /// The secret field.
    token: Spanned<SecretRefRaw>,
}

/// Parses `text` as `/etc/keyrot/keyrot.toml` and validates `token`.
fn parse(text: &str) -> Result<SecretRef, Vec<String>> {
    let mut sources = Sources::default();
    sources.push(Path::new("/etc/keyrot/keyrot.toml"), text.to_string());
    let mut ctx = Ctx::new(&sources);
    let root = DeTable::parse(&sources.files[0].text).unwrap();
    let value = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
    let parsed = ctx
        .deser::<Holder>(value)
        .and_then(|h| secret_ref(&mut ctx, &h.token));
    match parsed {
        Some(r) if !ctx.has_errors() => Ok(r),
        _ => Err(ctx
            .into_diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect()),
    }
}

#[test]
fn an_inline_secret_is_refused_without_repeating_it() {
    let errs = parse("token = \"hunter2-very-secret\"\n").unwrap_err();
    assert_eq!(
        errs,
        vec![format!(
            "/etc/keyrot/keyrot.toml:1:9: {INLINE_SECRET_MESSAGE}"
        )]
    );
    assert!(INLINE_SECRET_MESSAGE.starts_with(
        "inline secrets are not allowed: use { credential = \"NAME\" } (systemd LoadCredential), \
         { file = \"/path\" } or { env = \"VAR\" }"
    ));
    let errs = parse("token = 4242424242\n").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("inline secrets are not allowed") && !errs[0].contains("4242"));
}

#[test]
fn the_three_forms_parse_and_relative_files_resolve() {
    assert_eq!(
        parse("token = { credential = \"smtp\" }").unwrap(),
        SecretRef::Credential("smtp".into())
    );
    assert_eq!(
        parse("token = { env = \"SMTP_PW\" }").unwrap(),
        SecretRef::Env("SMTP_PW".into())
    );
    assert_eq!(
        parse("token = { file = \"/run/pw\" }").unwrap(),
        SecretRef::File("/run/pw".into())
    );
    assert_eq!(
        parse("token = { file = \"secrets/pw\" }").unwrap(),
        SecretRef::File(PathBuf::from("/etc/keyrot/secrets/pw"))
    );
}

#[test]
fn malformed_references_point_at_the_value() {
    let two = parse("token = { env = \"A\", file = \"/b\" }").unwrap_err();
    assert!(
        two[0].starts_with("/etc/keyrot/keyrot.toml:1:9: a secret reference takes exactly one"),
        "{two:?}"
    );
    let unknown = parse("token = { vault = \"x\" }").unwrap_err();
    assert!(
        unknown[0].contains("unknown secret source `vault`"),
        "{unknown:?}"
    );
    let empty = parse("token = {}").unwrap_err();
    assert!(
        empty[0].contains("needs one of `credential`, `file` or `env`"),
        "{empty:?}"
    );
    let slash = parse("token = { credential = \"../x\" }").unwrap_err();
    assert!(
        slash[0].starts_with(
            "/etc/keyrot/keyrot.toml:1:9: credential name \"../x\" must be a plain file name"
        ),
        "{slash:?}"
    );
    let list = parse("token = [\"a\"]").unwrap_err();
    assert!(list[0].contains("a secret must be a table"), "{list:?}");
}

#[test]
fn a_credential_resolves_from_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("smtp"), "s3cret\n").unwrap();
    let r = SecretRef::Credential("smtp".into());
    assert_eq!(
        r.resolve(Some(dir.path())).unwrap().expose_secret(),
        "s3cret"
    );
    assert!(r.check_resolvable(Some(dir.path())).is_ok());
    let err = r.resolve(None).unwrap_err();
    assert!(matches!(err, SecretRefError::NoCredentialsDirectory { .. }));
    assert!(
        err.to_string().contains("CREDENTIALS_DIRECTORY is not set"),
        "{err}"
    );
    let missing = SecretRef::Credential("other".into())
        .resolve(Some(dir.path()))
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("credential \"other\": cannot read "),
        "{missing}"
    );
}

#[test]
fn a_file_loses_exactly_one_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "abc\n\n").unwrap();
    let r = SecretRef::File(path.clone());
    assert_eq!(r.resolve(None).unwrap().expose_secret(), "abc\n");
    std::fs::write(&path, "abc\r\n").unwrap();
    assert_eq!(r.resolve(None).unwrap().expose_secret(), "abc");
    std::fs::write(&path, "\n").unwrap();
    assert!(matches!(r.resolve(None), Err(SecretRefError::Empty { .. })));
}

#[test]
fn errors_and_debug_never_show_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin");
    let mut bytes = b"topsecret".to_vec();
    bytes.push(0xff);
    std::fs::write(&path, &bytes).unwrap();
    let err = SecretRef::File(path.clone()).resolve(None).unwrap_err();
    assert!(matches!(err, SecretRefError::NotUtf8 { .. }));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("topsecret"), "{shown}");
    std::fs::write(&path, "topsecret").unwrap();
    let secret = SecretRef::File(path).resolve(None).unwrap();
    assert!(!format!("{secret:?}").contains("topsecret"));
}

#[test]
fn env_references_read_the_daemon_environment() {
    // PATH is set for any test process; reading it needs no set_var.
    let path = SecretRef::Env("PATH".into()).resolve(None).unwrap();
    assert_eq!(path.expose_secret(), std::env::var("PATH").unwrap());
    let err = SecretRef::Env("KEYROT_TEST_SURELY_UNSET_5B1C".into())
        .resolve(None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable KEYROT_TEST_SURELY_UNSET_5B1C is not set"
    );
    assert_eq!(SecretRef::Env("X".into()).to_string(), "env X");
    assert_eq!(
        SecretRef::Credential("c".into()).to_string(),
        "credential \"c\""
    );
}
