//! `type = "http"` config: every shipped preset loads and declares the
//! capabilities its docs promise; mistakes are reported at their field.

use std::path::{Path, PathBuf};

use super::super::ProviderKind;
use super::super::tests::{NAME, errors, ok};
use super::*;
use keyrot_core::model::{Capabilities, IssueMode};

/// The preset files in `config/providers/`.
fn presets() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/providers");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn http(cfg: &crate::Config) -> &HttpProviderConfig {
    match &cfg.providers[0].kind {
        ProviderKind::Http(h) => h,
        other => panic!("not http: {other:?}"),
    }
}

#[test]
fn every_preset_loads_with_the_config_loader() {
    let files = presets();
    assert!(files.len() >= 7, "{files:?}");
    for file in files {
        let cfg = match crate::load(&file) {
            Ok(c) => c,
            Err(e) => panic!("{} does not load:\n{e}", file.display()),
        };
        assert_eq!(cfg.providers.len(), 1, "{}", file.display());
        let h = http(&cfg);
        let caps = h.capabilities();
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let native = Capabilities {
            issue: IssueMode::Rotate {
                keeps_scopes: false,
                old_ends: true,
            },
            list: true,
            revoke: true,
            verify: true,
            tag: false,
            set_expiry: false,
            idempotent_issue: true,
            deactivate: false,
            prove_identity: false,
            last_used: None,
        };
        let created = Capabilities {
            issue: IssueMode::Create,
            tag: true,
            idempotent_issue: false,
            ..native
        };
        let want = match stem {
            // GitLab updates `last_used_at` lazily: at worst once a day.
            "gitlab-personal-access-tokens" | "gitlab-project-access-tokens" => Capabilities {
                last_used: Some(jiff::SignedDuration::from_hours(24)),
                ..native
            },
            "cloudflare-api-tokens" => native,
            "grafana-service-account-tokens"
            | "datadog-api-keys"
            | "datadog-application-keys"
            | "keyrot-sandbox" => created,
            other => panic!("preset {other} has no expectations here: add them"),
        };
        assert_eq!(caps, want, "{stem}");
        // Every preset's secret references resolve from where docs say.
        assert!(!secret_uses("p", h).is_empty(), "{stem}");
        let line = summary_line(&cfg.providers[0], h);
        assert!(line.contains("(http, 4 at once"), "{line}");
        if caps.issue.no_overlap() {
            assert!(line.contains("no overlap"), "{line}");
        }
    }
}

#[test]
fn the_gitlab_preset_reads_what_gitlab_sends() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/providers/gitlab-personal-access-tokens.toml");
    let cfg = crate::load(&file).unwrap();
    let h = http(&cfg);
    let rotate = h.rotate.as_ref().unwrap();
    assert_eq!(rotate.gone_status, vec![400, 404]);
    assert!(rotate.no_overlap && rotate.call.sends_expiry());
    assert_eq!(
        h.list.as_ref().unwrap().paging,
        super::spec::Paging::LinkHeader
    );
    assert_eq!(h.auth.len(), 1);
    assert_eq!(
        h.auth[0].secret().1,
        &crate::secret_ref::SecretRef::Credential("gitlab-token".into())
    );
}

/// A minimal http provider with `extra` appended (starts on line 6).
fn with(extra: &str) -> String {
    format!(
        "[[provider]]\nname = \"h\"\ntype = \"http\"\nbase_url = \"https://api.example.com/v1\"\nauth = {{ type = \"bearer\", token = {{ env = \"T\" }} }}\n{extra}"
    )
}

const LIST: &str = "[provider.list]\npath = \"/keys\"\nid = \"/id\"\nname = \"/name\"\n";

fn one_error(text: &str, line_col: &str, contains: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(&format!("{NAME}:{line_col}")) && errs[0].contains(contains),
        "want {line_col} {contains:?}, got {:?}",
        errs[0]
    );
}

#[test]
fn a_minimal_list_only_provider_loads() {
    let cfg = ok(&with(LIST));
    let caps = http(&cfg).capabilities();
    assert!(caps.list && !caps.issue.can_issue() && !caps.revoke && !caps.tag);
}

#[test]
fn mistakes_are_reported_at_their_field() {
    // An unknown variable, at the path.
    one_error(
        &with("[provider.list]\npath = \"/keys/{{key.name}}\"\nid = \"/id\"\nname = \"/name\"\n"),
        "7:8:",
        "`{{key.name}}` cannot be used here",
    );
    // An undefined var.
    one_error(
        &with(
            "[provider.list]\npath = \"/u/{{vars.user}}/keys\"\nid = \"/id\"\nname = \"/name\"\n",
        ),
        "7:8:",
        "`{{vars.user}}` is not defined",
    );
    // A pointer written as a dotted path.
    one_error(
        &with("[provider.list]\npath = \"/keys\"\nid = \"data.id\"\nname = \"/name\"\n"),
        "8:6:",
        "such as \"/data/id\"",
    );
    // A field of another operation.
    one_error(
        &with(&format!("{LIST}no_overlap = true\n")),
        "10:14:",
        "`no_overlap` is not used in [provider.list] (it belongs in [provider.rotate])",
    );
    // Rotate without the key's id; without list.
    one_error(
        &with(&format!(
            "{LIST}[provider.rotate]\npath = \"/rotate\"\nsecret = \"/token\"\n"
        )),
        "11:8:",
        "use {{key.id}}",
    );
    let errs = errors(&with(
        "[provider.rotate]\npath = \"/k/{{key.id}}/rotate\"\nsecret = \"/token\"\n",
    ));
    assert!(
        errs.len() == 1 && errs[0].contains("needs [provider.list]"),
        "{errs:#?}"
    );
    // Verify that does not send the new secret.
    let errs = errors(&with(&format!("{LIST}[provider.verify]\npath = \"/me\"\n")));
    assert!(
        errs.len() == 1 && errs[0].contains("{{secret}}"),
        "{errs:#?}"
    );
    // The secret may not travel in a path.
    one_error(
        &with(&format!(
            "{LIST}[provider.verify]\npath = \"/check/{{{{secret}}}}\"\nheaders = {{ A = \"{{{{secret}}}}\" }}\n"
        )),
        "11:8:",
        "`{{secret}}` cannot be used here",
    );
    // A tag the issue call never writes.
    let errs = errors(&with(&format!(
        "tag = {{ in = \"name\" }}\n{LIST}[provider.issue]\npath = \"/keys\"\nbody = {{ name = \"{{{{key.name}}}}\" }}\nid = \"/id\"\nsecret = \"/key\"\n"
    )));
    assert!(
        errs.len() == 1 && errs[0].contains("{{key.tagged_name}}"),
        "{errs:#?}"
    );
    // Auth: a plain string is an inline secret; a wrong type is named.
    let errs = errors(
        "[[provider]]\nname = \"h\"\ntype = \"http\"\nbase_url = \"https://a.example\"\nauth = { type = \"bearr\", token = { env = \"T\" } }\n[provider.list]\npath = \"/k\"\nid = \"/id\"\nname = \"/n\"\n",
    );
    assert!(
        errs.len() == 1 && errs[0].contains("did you mean \"bearer\""),
        "{errs:#?}"
    );
    let errs = errors(
        "[[provider]]\nname = \"h\"\ntype = \"http\"\nbase_url = \"https://a.example\"\nauth = { type = \"bearer\", token = \"glpat-123\" }\n[provider.list]\npath = \"/k\"\nid = \"/id\"\nname = \"/n\"\n",
    );
    assert!(
        errs.len() == 1 && errs[0].contains("inline secrets") && !errs[0].contains("glpat-123"),
        "{errs:#?}"
    );
    // Plain http only to loopback.
    let errs = errors(&with(LIST).replace("https://api.example.com", "http://api.example.com"));
    assert!(
        errs.len() == 1 && errs[0].contains("plain http"),
        "{errs:#?}"
    );
    // A body that is not JSON.
    let errs = errors(&with(&format!(
        "{LIST}[provider.issue]\npath = \"/keys\"\nbody = '{{\"ttl\": {{{{seconds_to_live}}}}}}'\nid = \"/id\"\nsecret = \"/key\"\n"
    )));
    assert!(
        errs.len() == 1 && errs[0].contains("`body` is not JSON"),
        "{errs:#?}"
    );
    // Two ways of paging.
    let errs = errors(&with(&format!(
        "{LIST}next = \"/next\"\nnext_link = true\n"
    )));
    assert!(
        errs.len() == 1 && errs[0].contains("choose one way of paging"),
        "{errs:#?}"
    );
    // Nothing to do.
    let errs = errors(&with(""));
    assert!(
        errs.len() == 1 && errs[0].contains("needs at least one of"),
        "{errs:#?}"
    );
}

#[test]
fn json_text_bodies_and_multiple_auth_headers_load() {
    let cfg = ok(&format!(
        "[[provider]]\nname = \"h\"\ntype = \"http\"\nbase_url = \"http://127.0.0.1:9\"\nauth = [{{ type = \"header\", name = \"X-A\", value = {{ env = \"A\" }} }}, {{ type = \"basic\", user = \"me\", password = {{ env = \"B\" }} }}]\nheaders = {{ Accept = \"application/vnd.api+json\" }}\n{LIST}[provider.issue]\npath = \"/keys\"\nbody = '{{\"name\": \"{{{{key.name}}}}\", \"ttl\": \"{{{{seconds_to_live}}}}\"}}'\nid = \"/id\"\nsecret = \"/key\"\n"
    ));
    let h = http(&cfg);
    assert_eq!(h.auth.len(), 2);
    assert!(h.issue.as_ref().unwrap().call.sends_expiry());
    assert_eq!(h.headers.len(), 1);
    let uses = secret_uses("h", h);
    assert_eq!(
        uses.iter().map(|u| u.field).collect::<Vec<_>>(),
        vec!["auth.value", "auth.password"]
    );
}
