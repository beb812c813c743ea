//! `[[psk]]` and `[[api_token]]`: every field read, each refusal at its
//! `line:column`, the secret references `keyrot check` resolves, and the
//! summary line.

use std::path::PathBuf;

use super::{BASE, NAME, assert_one, errors, ok};
use crate::secret_ref::SecretRef;
use crate::{ApiScope, PskGrant, check_secrets_in, secret_refs, summary};

#[test]
fn psks_and_tokens_are_read() {
    let cfg = ok(&format!(
        "{BASE}[[psk]]\nid = \"kms-default\"\nkey = {{ file = \"psk.hex\" }}\n\
         [[psk]]\nid = \"other\"\nkey = {{ credential = \"psk2\" }}\n\
         [[api_token]]\nname = \"ci\"\ntoken = {{ env = \"CI_TOKEN\" }}\n\
         keys = [\"local/ci-*\", \"local/deploy\", \"*/shared\"]\n"
    ));
    assert_eq!(cfg.psks.len(), 2);
    assert_eq!(cfg.psks[0].id, "kms-default");
    assert_eq!(
        cfg.psks[0].key,
        SecretRef::File(PathBuf::from("/etc/keyrot/psk.hex"))
    );
    assert_eq!(cfg.psks[1].key, SecretRef::Credential("psk2".into()));
    assert_eq!(cfg.api_tokens.len(), 1);
    let t = &cfg.api_tokens[0];
    assert_eq!(t.name, "ci");
    assert_eq!(t.token, SecretRef::Env("CI_TOKEN".into()));
    assert_eq!(t.keys, ["local/ci-*", "local/deploy", "*/shared"]);
    // Defaults: the rotate API alone, sealing under the first PSK alone.
    assert_eq!(t.scopes, [ApiScope::Rotate]);
    assert_eq!(t.psk_ids, PskGrant::Only(vec!["kms-default".into()]));

    let refs: Vec<String> = secret_refs(&cfg)
        .iter()
        .map(|u| format!("{} {} {}", u.owner, u.field, u.secret))
        .collect();
    assert_eq!(
        refs,
        [
            "psk \"kms-default\" key file /etc/keyrot/psk.hex",
            "psk \"other\" key credential \"psk2\"",
            "api_token \"ci\" token env CI_TOKEN",
        ]
    );
    let text = summary(&cfg, jiff::Timestamp::UNIX_EPOCH);
    assert!(
        text.contains(
            "rotate API: psks kms-default, other (default kms-default); \
             api tokens ci (local/ci-*, local/deploy, */shared; scopes rotate; psks kms-default)"
        ),
        "{text}"
    );
}

#[test]
fn without_either_section_nothing_changes() {
    let cfg = ok(BASE);
    assert!(cfg.psks.is_empty() && cfg.api_tokens.is_empty());
    assert!(!summary(&cfg, jiff::Timestamp::UNIX_EPOCH).contains("rotate API"));
}

#[test]
fn psk_refusals() {
    assert_one(
        &format!("{BASE}[[psk]]\nid = \"a b\"\nkey = {{ env = \"K\" }}\n"),
        "13:6: psk `id` \"a b\" may hold only letters",
    );
    assert_one(
        &format!("{BASE}[[psk]]\nid = \"a\"\nkey = \"0011\"\n"),
        "14:7: inline secrets are not allowed",
    );
    assert_one(
        &format!("{BASE}[[psk]]\nid = \"a\"\nkey = {{ env = \"K\" }}\nalgo = 1\n"),
        "15:1: unknown field `algo` in [[psk]]",
    );
    assert_one(
        &format!("{BASE}[[psk]]\nid = \"a\"\n"),
        "12:1: missing field `key`",
    );
    let dup = format!(
        "{BASE}[[psk]]\nid = \"a\"\nkey = {{ env = \"K\" }}\n[[psk]]\nid = \"a\"\nkey = {{ env = \"L\" }}\n"
    );
    assert_one(
        &dup,
        &format!("16:6: duplicate psk id \"a\" (first defined at {NAME}:13:6)"),
    );
}

#[test]
fn api_token_refusals() {
    let token = |keys: &str| {
        format!("{BASE}[[api_token]]\nname = \"ci\"\ntoken = {{ env = \"T\" }}\nkeys = {keys}\n")
    };
    assert_one(
        &token("[]"),
        "12:1: an [[api_token]] needs at least one entry in `keys`",
    );
    assert_one(
        &token("[\"ci-bot\"]"),
        "15:9: `keys` entry \"ci-bot\" never matches: entries match slot ids `provider/name`",
    );
    assert_one(
        &token("[\"locl/*\"]"),
        "15:9: `keys` entry \"locl/*\" names provider \"locl\", which is not defined (did you mean \"local\"?)",
    );
    assert_one(&token("[\"\"]"), "15:9: `keys` must not be empty");
    assert_one(
        &format!(
            "{BASE}[[api_token]]\nname = \"ci\"\ntoken = \"hunter2hunter2hunter2\"\nkeys = [\"*\"]\n"
        ),
        "14:9: inline secrets are not allowed",
    );
    let errs = errors(&format!(
        "{BASE}[[api_token]]\nname = \"ci\"\ntoken = \"hunter2hunter2\"\n"
    ));
    assert!(errs.iter().all(|e| !e.contains("hunter2")), "{errs:?}");
    let dup = format!(
        "{BASE}[[api_token]]\nname = \"ci\"\ntoken = {{ env = \"T\" }}\nkeys = [\"*\"]\n\
         [[api_token]]\nname = \"ci\"\ntoken = {{ env = \"U\" }}\nkeys = [\"*\"]\n"
    );
    assert_one(
        &dup,
        &format!("17:8: duplicate api_token name \"ci\" (first defined at {NAME}:13:8)"),
    );
    assert_one(
        &format!("{BASE}[[api_tokens]]\nname = \"x\"\n"),
        "12:3: unknown section `api_tokens` (did you mean \"api_token\"?)",
    );
}

#[test]
fn check_resolves_psk_and_token_references() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("psk"), "00".repeat(32)).unwrap();
    let cfg = ok(&format!(
        "{BASE}[[psk]]\nid = \"a\"\nkey = {{ credential = \"psk\" }}\n\
         [[api_token]]\nname = \"ci\"\ntoken = {{ credential = \"missing\" }}\nkeys = [\"*\"]\n"
    ));
    let diags = check_secrets_in(&cfg, Some(dir.path()));
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0]
            .message
            .starts_with("api_token \"ci\" `token` (credential \"missing\"): "),
        "{}",
        diags[0].message
    );
}

#[test]
fn token_scopes_and_psk_ids_are_read() {
    let psks =
        "[[psk]]\nid = \"a\"\nkey = { env = \"A\" }\n[[psk]]\nid = \"b\"\nkey = { env = \"B\" }\n";
    let token = |more: &str| {
        format!(
            "{BASE}{psks}[[api_token]]\nname = \"ci\"\ntoken = {{ env = \"T\" }}\nkeys = [\"*\"]\n{more}"
        )
    };
    let cfg = ok(&token(
        "scopes = [\"admin\", \"read\", \"read\"]\npsk_ids = [\"b\"]\n",
    ));
    let t = &cfg.api_tokens[0];
    assert_eq!(t.scopes, [ApiScope::Read, ApiScope::Admin]);
    assert_eq!(t.psk_ids, PskGrant::Only(vec!["b".into()]));
    assert!(!t.psk_ids.allows("a") && t.psk_ids.allows("b"));
    let cfg = ok(&token("psk_ids = [\"*\"]\n"));
    assert_eq!(cfg.api_tokens[0].psk_ids, PskGrant::All);
    let cfg = ok(&token("psk_ids = []\n"));
    assert_eq!(cfg.api_tokens[0].psk_ids, PskGrant::Only(vec![]));

    // Lines: psks take 12-17, the token 18-21, `more` starts at 22.
    assert_one(
        &token("scopes = [\"raed\"]\n"),
        "22:11: unknown scope \"raed\" (did you mean \"read\"?)",
    );
    assert_one(
        &token("scopes = []\n"),
        "18:1: an [[api_token]] with `scopes = []` could do nothing",
    );
    assert_one(
        &token("psk_ids = [\"c\"]\n"),
        "22:12: `psk_ids` entry \"c\" names no [[psk]]",
    );
}

#[test]
fn control_peers_cap_and_timeouts_are_read() {
    let cfg = ok(&format!(
        "[daemon]\ncontrol_allow_uids = [0, 990]\ncontrol_allow_gids = [990]\n\
         control_max_connections = 32\ncontrol_header_timeout = \"5s\"\n\
         control_body_timeout = \"20s\"\ncontrol_idle_timeout = \"2m\"\n{BASE}"
    ));
    let d = &cfg.daemon;
    assert_eq!(d.control_allow_uids, Some(vec![0, 990]));
    assert_eq!(d.control_allow_gids, Some(vec![990]));
    assert_eq!(d.control_max_connections, 32);
    assert_eq!(d.control_header_timeout, super::dur("5s"));
    assert_eq!(d.control_body_timeout, super::dur("20s"));
    assert_eq!(d.control_idle_timeout, super::dur("2m"));
    let d = ok(BASE).daemon;
    assert_eq!((d.control_allow_uids, d.control_allow_gids), (None, None));
    assert_eq!(d.control_max_connections, 128);
    assert_eq!(d.control_header_timeout, super::dur("10s"));
    assert_eq!(d.control_body_timeout, super::dur("30s"));
    assert_eq!(d.control_idle_timeout, super::dur("60s"));

    assert_one(
        "[daemon]\ncontrol_allow_uids = [-1]\n",
        "2:23: `control_allow_uids` entries are numeric ids",
    );
    assert_one(
        "[daemon]\ncontrol_allow_gids = [4294967295]\n",
        "2:23: `control_allow_gids` entries are numeric ids",
    );
    assert_one(
        "[daemon]\ncontrol_max_connections = 0\n",
        "2:27: `control_max_connections` must be between 1 and 65536",
    );
    assert_one(
        "[daemon]\ncontrol_idle_timeout = \"0s\"\n",
        "2:24: `control_idle_timeout` must be greater than 0s",
    );
}
