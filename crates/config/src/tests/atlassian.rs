//! `type = "atlassian"` providers: every field read, the defaults, the
//! `rotate_api`/`psk` pairing, each refusal at its `line:column`, the
//! secret references `keyrot check` resolves, and the summary line.

use std::path::PathBuf;

use super::{NAME, assert_one, dur, errors, ok};
use crate::secret_ref::SecretRef;
use crate::types::{AtlassianProviderConfig, AtlassianRotateApi, ProviderKind};
use crate::{check_secrets_in, secret_refs, summary};

/// A provider entry; `extra` lines are appended (line 5 onwards).
fn provider(extra: &str) -> String {
    format!("[[provider]]\nname = \"atl\"\ntype = \"atlassian\"\norg_id = \"org-1\"\n{extra}")
}

/// The Atlassian settings of the only provider of `text`.
fn atlassian(text: &str) -> AtlassianProviderConfig {
    let cfg = ok(text);
    let ProviderKind::Atlassian(a) = &cfg.providers[0].kind else {
        panic!("expected an atlassian provider");
    };
    a.clone()
}

#[test]
fn every_field_is_read() {
    let a = atlassian(&provider(
        "base_url = \"http://127.0.0.1:8089/admin/api-access/v1/\"\n\
         admin_key = { credential = \"atlassian-admin\" }\n\
         rotate_api = \"proposed\"\npsk_id = \"demo-psk\"\npsk = { file = \"psk.hex\" }\n\
         page_size = 100\ntimeout = \"10s\"\n",
    ));
    assert_eq!(a.org_id, "org-1");
    // The trailing slash is dropped, so paths can be appended.
    assert_eq!(a.base_url, "http://127.0.0.1:8089/admin/api-access/v1");
    assert_eq!(a.admin_key, SecretRef::Credential("atlassian-admin".into()));
    assert_eq!(
        a.rotate_api,
        AtlassianRotateApi::Proposed {
            // Relative to the config file's directory.
            psks: vec![(
                "demo-psk".into(),
                SecretRef::File(PathBuf::from("/etc/keyrot/psk.hex"))
            )],
            send_psk_id: false,
        }
    );
    assert_eq!((a.page_size, a.timeout), (100, dur("10s")));
}

#[test]
fn defaults() {
    let a = atlassian(&provider("admin_key = { env = \"ATL_KEY\" }\n"));
    assert_eq!(a.base_url, "https://api.atlassian.com/admin/api-access/v1");
    assert_eq!(a.rotate_api, AtlassianRotateApi::None);
    assert_eq!((a.page_size, a.timeout), (50, dur("30s")));
    assert_eq!(a.admin_key, SecretRef::Env("ATL_KEY".into()));
}

#[test]
fn required_fields_and_inline_secrets() {
    assert_one(
        "[[provider]]\nname = \"atl\"\ntype = \"atlassian\"\nadmin_key = { env = \"K\" }\n",
        "1:1: missing field `org_id`",
    );
    assert_one(&provider(""), "1:1: missing field `admin_key`");
    assert_one(
        &provider("admin_key = \"ATATT-pasted-secret\"\n"),
        "5:13: inline secrets are not allowed",
    );
    let errs = errors(&provider("admin_key = \"ATATT-pasted-secret\"\n"));
    assert!(!errs[0].contains("ATATT"), "{errs:?}");
    assert_one(
        &provider("admin_key = { env = \"K\" }\nurl = \"x\"\n"),
        "6:1: unknown field `url` for provider type \"atlassian\"",
    );
}

#[test]
fn proposed_needs_a_psk_and_none_refuses_one() {
    assert_one(
        &provider("admin_key = { env = \"K\" }\nrotate_api = \"proposed\"\npsk_id = \"p\"\n"),
        "6:14: rotate_api = \"proposed\" needs `psk_id` and `psk` (the pre-shared key the new secret is sealed under); missing: psk",
    );
    let errs = errors(&provider(
        "admin_key = { env = \"K\" }\npsk_id = \"p\"\npsk = { env = \"PSK\" }\n",
    ));
    assert_eq!(
        errs,
        vec![
            format!("{NAME}:6:10: `psk_id` is only used with rotate_api = \"proposed\""),
            format!("{NAME}:7:7: `psk` is only used with rotate_api = \"proposed\""),
        ]
    );
    assert_one(
        &provider("admin_key = { env = \"K\" }\nrotate_api = \"none\"\npsk = { env = \"PSK\" }\n"),
        "7:7: `psk` is only used with rotate_api = \"proposed\"",
    );
    assert_one(
        &provider("admin_key = { env = \"K\" }\nrotate_api = \"propsed\"\n"),
        "6:14: unknown rotate_api \"propsed\" (did you mean \"proposed\"?): use \"none\" or \"proposed\"",
    );
    assert_one(
        &provider(
            "admin_key = { env = \"K\" }\nrotate_api = \"proposed\"\npsk_id = \"a b\"\npsk = { env = \"P\" }\n",
        ),
        "7:10: `psk_id` \"a b\" may hold only letters, digits",
    );
}

#[test]
fn bad_values_point_at_themselves() {
    let key = "admin_key = { env = \"K\" }\n";
    assert_one(
        &provider(&format!("{key}page_size = 0\n")),
        "6:13: `page_size` must be between 1 and 100",
    );
    assert_one(
        &provider(&format!("{key}page_size = 101\n")),
        "6:13: `page_size` must be between 1 and 100",
    );
    assert_one(
        &provider(&format!("{key}timeout = \"0s\"\n")),
        "6:11: `timeout` must be greater than 0s",
    );
    assert_one(
        &provider(&format!("{key}base_url = \"not a url\"\n")),
        "6:12: `base_url` \"not a url\" is not a URL",
    );
    assert_one(
        &provider(&format!("{key}base_url = \"http://api.example.com/v1\"\n")),
        "6:12: `base_url` \"http://api.example.com/v1\": plain http would send the admin key unencrypted",
    );
    assert_one(
        &provider(&format!("{key}base_url = \"https://x.example/v1?a=1\"\n")),
        "6:12: `base_url` \"https://x.example/v1?a=1\": it must not have a query or fragment",
    );
    assert_one(
        "[[provider]]\nname = \"atl\"\ntype = \"atlassian\"\norg_id = \"a/b\"\nadmin_key = { env = \"K\" }\n",
        "4:10: `org_id` \"a/b\" is not an organisation id",
    );
    // http to loopback (the sandbox) is fine.
    let a = atlassian(&provider(&format!(
        "{key}base_url = \"http://localhost:9/admin/api-access/v1\"\n"
    )));
    assert_eq!(a.base_url, "http://localhost:9/admin/api-access/v1");
}

#[test]
fn check_resolves_the_admin_key_and_psk() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("atl-admin"), "k\n").unwrap();
    let cfg = ok(&provider(
        "admin_key = { credential = \"atl-admin\" }\nrotate_api = \"proposed\"\n\
         psk_id = \"p\"\npsk = { credential = \"atl-psk\" }\n",
    ));
    let uses: Vec<(String, &str)> = secret_refs(&cfg)
        .iter()
        .map(|u| (u.owner.clone(), u.field))
        .collect();
    assert_eq!(
        uses,
        vec![
            ("provider \"atl\"".to_string(), "admin_key"),
            ("provider \"atl\"".to_string(), "psk"),
        ]
    );
    let diags = check_secrets_in(&cfg, Some(dir.path()));
    assert_eq!(diags.len(), 1, "{diags:?}");
    let msg = diags[0].to_string();
    assert!(
        msg.starts_with(&format!(
            "{NAME}:8:7: provider \"atl\" `psk` (credential \"atl-psk\"): "
        )),
        "{msg}"
    );
    std::fs::write(dir.path().join("atl-psk"), "ab".repeat(32)).unwrap();
    assert!(check_secrets_in(&cfg, Some(dir.path())).is_empty());
}

#[test]
fn summary_describes_the_provider() {
    let cfg = ok(&provider(
        "admin_key = { env = \"K\" }\nrotate_api = \"proposed\"\npsk_id = \"p1\"\npsk = { env = \"P\" }\n",
    ));
    let now = "2026-11-23T12:00:00Z".parse().unwrap();
    let text = summary(&cfg, now);
    assert!(
        text.contains(
            "\n1 provider:\n  atl (atlassian, 4 at once, org org-1, https://api.atlassian.com/admin/api-access/v1, rotate api proposed, psk p1, page size 50, timeout 30s)\n"
        ),
        "{text}"
    );
}

/// Provider `atl` (`rotate_api` as given; lines 1-8), sink `out` (9-12) and
/// policy `p` (13-14, `policy` lines from 15), then `keys` `[[key]]`s
/// bound to `p` at `atl` (each 5 lines, the `policy` line 4th).
fn bound(rotate_api: &str, policy: &str, keys: &[&str]) -> String {
    let psk = if rotate_api == "proposed" {
        "psk_id = \"p\"\npsk = { env = \"P\" }\n"
    } else {
        "\n\n"
    };
    let mut s = format!(
        "[[provider]]\nname = \"atl\"\ntype = \"atlassian\"\norg_id = \"org-1\"\n\
         admin_key = {{ env = \"K\" }}\nrotate_api = \"{rotate_api}\"\n{psk}\
         [[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/tmp/keyrot/{{name}}\"\n\
         [[policy]]\nname = \"p\"\n{policy}"
    );
    for k in keys {
        s.push_str(&format!(
            "[[key]]\nname = \"{k}\"\nprovider = \"atl\"\npolicy = \"p\"\nsinks = [\"out\"]\n"
        ));
    }
    s
}

#[test]
fn proposed_rotations_need_a_new_key_lifetime_of_at_most_365_days() {
    // Over the endpoint's cap: pointed at the value, once for both keys.
    let text = bound("proposed", "new_key_lifetime = \"400d\"\n", &["a", "b"]);
    assert_one(
        &text,
        "15:20: `new_key_lifetime` (400d) of policy \"p\" is longer than the 365 days \
         provider \"atl\" (atlassian, rotate_api = \"proposed\") allows a new key: \
         its rotate endpoint refuses every such rotation with a 400 \
         (used by the [[key]] at /etc/keyrot/keyrot.toml:19:10)",
    );
    // None at all: pointed at the first key's binding, naming the policy.
    let text = bound("proposed", "", &["a", "b"]);
    assert_one(
        &text,
        "18:10: policy \"p\" sets no `new_key_lifetime`, but provider \"atl\" \
         (atlassian, rotate_api = \"proposed\") needs one: its rotate endpoint gives new keys \
         at most 365 days",
    );
    let errs = errors(&text);
    assert!(
        errs[0].ends_with("(policy defined at /etc/keyrot/keyrot.toml:14:8)"),
        "{errs:?}"
    );
    // 365 days (or 52w1d) is accepted; so is anything without the rotate
    // endpoint, and a policy no proposed provider uses.
    ok(&bound("proposed", "new_key_lifetime = \"365d\"\n", &["a"]));
    ok(&bound("proposed", "new_key_lifetime = \"52w1d\"\n", &["a"]));
    ok(&bound("none", "", &["a"]));
    ok(&bound("none", "new_key_lifetime = \"400d\"\n", &["a"]));
    ok(&bound("proposed", "new_key_lifetime = \"400d\"\n", &[]));
}
