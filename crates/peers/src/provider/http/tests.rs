//! Unit tests of the `http` provider's plumbing that needs no server: query
//! rewriting for paging, credential headers and their redaction.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use reqwest::header::HeaderName;
use secrecy::ExposeSecret;

use super::client::set_query;
use super::*;
use keyrot_config::SecretRef;

fn spec(auth: Vec<Auth>) -> HttpProviderConfig {
    HttpProviderConfig {
        base_url: "https://api.example.com/v1".into(),
        auth,
        headers: Vec::new(),
        timeout: jiff::SignedDuration::from_secs(5),
        ca_file: None,
        tag: None,
        list: None,
        issue: None,
        rotate: None,
        verify: None,
        revoke: None,
    }
}

#[test]
fn set_query_replaces_one_parameter_and_keeps_the_rest() {
    let u = Url::parse("https://a.example/x?user_id=4&page=1&q=a%20b").unwrap();
    let v = set_query(&u, "page", "2");
    let pairs: Vec<(String, String)> = v.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
    assert_eq!(
        pairs,
        vec![
            ("user_id".into(), "4".into()),
            ("q".into(), "a b".into()),
            ("page".into(), "2".into())
        ]
    );
    let v = set_query(
        &Url::parse("https://a.example/x").unwrap(),
        "page[number]",
        "0",
    );
    assert_eq!(v.query(), Some("page%5Bnumber%5D=0"));
}

#[test]
fn credentials_become_headers_and_never_show() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "s3cr3t-token\n").unwrap();
    std::fs::write(dir.path().join("pw"), "pa55").unwrap();
    let auth = vec![
        Auth::Bearer {
            token: SecretRef::Credential("tok".into()),
        },
        Auth::Basic {
            user: "me".into(),
            password: SecretRef::Credential("pw".into()),
        },
        Auth::Header {
            name: HeaderName::from_static("dd-api-key"),
            prefix: "Key ".into(),
            value: SecretRef::Credential("tok".into()),
        },
    ];
    let p = HttpProvider::new("p", &spec(auth), Some(dir.path())).unwrap();
    let a = p.auth();
    assert_eq!(a[0].value.expose_secret(), "Bearer s3cr3t-token");
    assert_eq!(
        a[1].value.expose_secret(),
        format!("Basic {}", STANDARD.encode("me:pa55"))
    );
    assert_eq!(a[2].name.as_str(), "dd-api-key");
    assert_eq!(a[2].value.expose_secret(), "Key s3cr3t-token");
    let debug = format!("{p:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("pa55"),
        "{debug}"
    );
    assert!(debug.contains("basic me"), "{debug}");
    let e = p.scrub(
        CallError::permanent("echo s3cr3t-token and Basic bWU6cGE1NQ== and pa55"),
        None,
    );
    assert_eq!(e.message, "echo [redacted] and [redacted] and [redacted]");
    // A secret that cannot be a header value is refused at build, unnamed.
    std::fs::write(dir.path().join("tok"), "bad\u{7f}value").unwrap();
    let e = HttpProvider::new(
        "p",
        &spec(vec![Auth::Bearer {
            token: SecretRef::Credential("tok".into()),
        }]),
        Some(dir.path()),
    )
    .unwrap_err();
    assert!(
        e.message.contains("cannot be sent in an HTTP header"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("bad"), "{}", e.message);
}

#[test]
fn provider_without_operations_says_what_is_missing() {
    let p = HttpProvider::new("p", &spec(Vec::new()), None).unwrap();
    assert_eq!(p.capabilities(), Capabilities::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt.block_on(p.list(Timestamp::UNIX_EPOCH)).unwrap_err();
    assert!(e.message.contains("no [provider.list]"), "{}", e.message);
    assert!(
        rt.block_on(p.find_tagged("x", Timestamp::UNIX_EPOCH))
            .unwrap()
            .is_empty()
    );
}
