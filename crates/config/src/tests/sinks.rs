//! The vault sink types: every option read, defaults, secret references
//! listed for `keyrot check`, and the errors that point at the field.

use super::*;
use crate::secret_ref::SecretRef;
use crate::sinks::{AwsCredentialsConfig, SecretFormat, VaultAuth};
use crate::summary::{secret_refs, summary};

const ALL: &str = r#"
[[sink]]
name = "bao"
type = "openbao"
address = "https://bao.example.com:8200/"
path = "/keyrot/{provider}/{name}/"
namespace = "team-a"
token = { credential = "bao-token" }
ca_file = "certs/bao-ca.pem"

[[sink]]
name = "vault-approle"
type = "vault"
address = "http://127.0.0.1:8200"
mount = "kv"
path = "apps/{slot}"
field = "api_key"
role_id = "3f1c-role"
secret_id = { file = "/etc/keyrot/vault-secret-id" }
timeout = "5s"

[[sink]]
name = "aws"
type = "aws-secretsmanager"
region = "eu-west-1"
secret_name = "keyrot/{provider}/{name}"
create = true
format = "json"
field = "api_key"

[[sink]]
name = "aws-refs"
type = "aws-secretsmanager"
region = "us-east-1"
endpoint = "http://127.0.0.1:5000"
secret_name = "ci/{name}"
access_key_id = { credential = "aws-id" }
secret_access_key = { credential = "aws-secret" }

[[sink]]
name = "akv"
type = "azure-keyvault"
vault_url = "https://myvault.vault.azure.net"
secret_name = "{provider}-{name}"
tenant_id = "72f988bf-0000-0000-0000-2d7cd011db47"
client_id = "5e0c-client"
client_secret = { env = "AKV_SECRET" }

[[sink]]
name = "hook"
type = "exec"
command = ["/usr/local/bin/push-secret", "--env", "prod"]
read_command = ["/usr/local/bin/read-secret"]
env = { TARGET = "prod" }
timeout = "10s"
"#;

#[test]
fn every_vault_sink_type_reads_with_its_defaults() {
    let cfg = ok(ALL);
    assert_eq!(cfg.sinks.len(), 6);
    let SinkKind::OpenBao(b) = &cfg.sink("bao").unwrap().kind else {
        panic!("not openbao")
    };
    assert_eq!(b.flavor, "openbao");
    assert_eq!(b.address, "https://bao.example.com:8200");
    assert_eq!(
        (b.mount.as_str(), b.path.as_str(), b.field.as_str()),
        ("secret", "keyrot/{provider}/{name}", "secret")
    );
    assert_eq!(b.namespace.as_deref(), Some("team-a"));
    assert!(matches!(&b.auth, VaultAuth::Token(SecretRef::Credential(c)) if c == "bao-token"));
    assert_eq!(
        b.ca_file.as_deref(),
        Some(Path::new("/etc/keyrot/certs/bao-ca.pem"))
    );
    assert_eq!(b.timeout, dur("30s"));
    let SinkKind::OpenBao(v) = &cfg.sink("vault-approle").unwrap().kind else {
        panic!("not vault")
    };
    assert_eq!(v.flavor, "vault");
    assert!(
        matches!(&v.auth, VaultAuth::AppRole { mount, role_id, .. } if mount == "approle" && role_id == "3f1c-role")
    );
    assert_eq!(
        (v.mount.as_str(), v.field.as_str(), v.timeout),
        ("kv", "api_key", dur("5s"))
    );
    let SinkKind::AwsSecretsManager(a) = &cfg.sink("aws").unwrap().kind else {
        panic!("not aws")
    };
    assert!(a.create && a.endpoint.is_none());
    assert_eq!(
        a.format,
        SecretFormat::Json {
            field: "api_key".into()
        }
    );
    assert!(matches!(a.credentials, AwsCredentialsConfig::Environment));
    let SinkKind::AwsSecretsManager(r) = &cfg.sink("aws-refs").unwrap().kind else {
        panic!("not aws")
    };
    assert_eq!(r.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
    assert_eq!(r.format, SecretFormat::Raw);
    assert!(!r.create);
    let SinkKind::AzureKeyVault(z) = &cfg.sink("akv").unwrap().kind else {
        panic!("not azure")
    };
    assert_eq!(z.authority_host, "https://login.microsoftonline.com");
    assert_eq!(z.content_type, "text/plain");
    let cn = ok(&sink(
        "type = \"azure-keyvault\"\nvault_url = \"https://v.vault.azure.cn\"\nsecret_name = \"{name}\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = { env = \"S\" }",
    ));
    let SinkKind::AzureKeyVault(c) = &cn.sinks[0].kind else {
        panic!("not azure")
    };
    assert_eq!(c.authority_host, "https://login.chinacloudapi.cn");
    let SinkKind::Exec(e) = &cfg.sink("hook").unwrap().kind else {
        panic!("not exec")
    };
    assert_eq!(e.command.len(), 3);
    assert_eq!(e.env.get("TARGET").map(String::as_str), Some("prod"));
    // keyrot check lists every reference, never a value.
    let refs: Vec<String> = secret_refs(&cfg)
        .iter()
        .map(|u| format!("{} {}", u.owner, u.field))
        .collect();
    assert_eq!(
        refs,
        [
            "sink \"bao\" token",
            "sink \"vault-approle\" secret_id",
            "sink \"aws-refs\" access_key_id",
            "sink \"aws-refs\" secret_access_key",
            "sink \"akv\" client_secret",
        ]
    );
    let text = summary(&cfg, "2026-11-23T12:00:00Z".parse().unwrap());
    assert!(text.contains("bao (openbao, https://bao.example.com:8200, secret/data/keyrot/{provider}/{name} field secret, namespace team-a, token auth, timeout 30s)"), "{text}");
    assert!(
        text.contains(
            "hook (exec, /usr/local/bin/push-secret --env prod, with read-back, timeout 10s)"
        ),
        "{text}"
    );
}

fn sink(body: &str) -> String {
    format!("[[sink]]\nname = \"s\"\n{body}\n")
}

#[test]
fn vault_sink_errors_point_at_the_field() {
    assert_one(
        &sink(
            "type = \"openbao\"\naddress = \"https://b\"\npath = \"k/{name}\"\ntoken = \"hvs.inline\"",
        ),
        "6:9: inline secrets are not allowed",
    );
    assert_one(
        &sink("type = \"openbao\"\naddress = \"https://b\"\npath = \"k/{name}\""),
        "4:11: no auth: give `token",
    );
    assert_one(
        &sink(
            "type = \"vault\"\naddress = \"https://b\"\npath = \"k/{name}\"\ntoken = { env = \"T\" }\nrole_id = \"r\"",
        ),
        "6:9: give either `token` or `role_id`",
    );
    assert_one(
        &sink("type = \"vault\"\naddress = \"https://b\"\npath = \"k/{name}\"\nrole_id = \"r\""),
        "6:11: AppRole auth needs both `role_id` and `secret_id`",
    );
    assert_one(
        &sink(
            "type = \"openbao\"\naddress = \"http://bao.example.com\"\npath = \"k/{name}\"\ntoken = { env = \"T\" }",
        ),
        "4:11: `address` \"http://bao.example.com\": plain http would send the token unencrypted",
    );
    assert_one(
        &sink(
            "type = \"openbao\"\naddress = \"https://b\"\npath = \"k/../{name}\"\ntoken = { env = \"T\" }",
        ),
        "5:8: `path` \"k/../{name}\" is not a path",
    );
    assert_one(
        &sink(
            "type = \"openbao\"\naddress = \"https://b\"\npath = \"k/{nmae}\"\ntoken = { env = \"T\" }",
        ),
        "5:8: unknown placeholder {nmae} (did you mean \"name\"?) in `path`",
    );
}

#[test]
fn cloud_and_exec_sink_errors_point_at_the_field() {
    assert_one(
        &sink(
            "type = \"azure-keyvault\"\nvault_url = \"https://v.vault.azure.net\"\nsecret_name = \"ci_{name}\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = { env = \"S\" }",
        ),
        "5:15: `secret_name` \"ci_{name}\": a Key Vault secret name has 1 to 127 letters, digits and `-`",
    );
    assert_one(
        &sink(
            "type = \"aws-secretsmanager\"\nregion = \"eu-west-1\"\nsecret_name = \"ci/{name}\"\naccess_key_id = { env = \"A\" }",
        ),
        "6:17: give both `access_key_id` and `secret_access_key`, or neither",
    );
    assert_one(
        &sink("type = \"aws-secretsmanager\"\nregion = \"Europe\"\nsecret_name = \"ci/{name}\""),
        "4:10: `region` \"Europe\" is not an AWS region",
    );
    assert_one(
        &sink(
            "type = \"aws-secretsmanager\"\nregion = \"eu-west-1\"\nsecret_name = \"ci/{name}\"\nfield = \"k\"",
        ),
        "6:9: `field` is only used with format = \"json\"",
    );
    assert_one(
        &sink("type = \"exec\"\ncommand = [\"push-secret\"]"),
        "4:11: `command`: the program \"push-secret\" must be an absolute path",
    );
    assert_one(
        &sink("type = \"exec\"\ncommand = [\"/bin/true\"]\nenv = { KEYROT_KEY_ID = \"x\" }"),
        "5:7: `env` names [\"KEYROT_KEY_ID\"]",
    );
    assert_one(
        &sink("type = \"exec\"\ncommand = [\"/bin/true\"]\nurl = \"x\""),
        "5:1: unknown field `url` for sink type \"exec\"",
    );
}
