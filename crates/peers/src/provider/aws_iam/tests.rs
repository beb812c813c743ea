//! IAM answers read as keys, the unescaped secret, tags and orphans, the ARN check, full slots.

use std::collections::HashSet;

use secrecy::ExposeSecret;

use super::keys::{orphans, parse_issuing, parse_keys, parse_tags};
use super::*;
use crate::aws::xml::text;

fn key(id: &str, status: &str, created: &str) -> AccessKey {
    AccessKey {
        id: id.into(),
        user: "alice".into(),
        status: status.into(),
        created_at: Some(created.parse().unwrap()),
    }
}

#[test]
fn reads_iam_answers() {
    let xml = r#"<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListAccessKeysResult><AccessKeyMetadata><member><UserName>alice</UserName><AccessKeyId>AKIA1</AccessKeyId><Status>Inactive</Status><CreateDate>2026-11-23T18:26:27.814812Z</CreateDate></member><member><UserName>alice</UserName><AccessKeyId>AKIA2</AccessKeyId><Status>Active</Status><CreateDate>2026-11-23T18:26:32Z</CreateDate></member></AccessKeyMetadata><IsTruncated>false</IsTruncated></ListAccessKeysResult></ListAccessKeysResponse>"#;
    let keys = parse_keys(xml, "alice");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].id, "AKIA1");
    assert!(!keys[0].active() && keys[1].active());
    assert_eq!(
        keys[1].created_at,
        Some("2026-11-23T18:26:32Z".parse().unwrap())
    );
    let tags = parse_tags(
        "<ListUserTagsResult><Tags><member><Key>keyrot-issuing</Key><Value>r-1@1700000000</Value></member><member><Key>keyrot-issuing-before</Key><Value/></member><member><Key>team</Key><Value>a &amp; b</Value></member></Tags></ListUserTagsResult>",
    );
    assert_eq!(tags["keyrot-issuing"], "r-1@1700000000");
    assert_eq!(tags["keyrot-issuing-before"], "");
    assert_eq!(tags["team"], "a & b");
    // Nested elements of the same name stay inside their parent.
    let users = "<Users><member><UserName>a</UserName><Tags><member><Key>k</Key></member></Tags></member><member><UserName>b</UserName></member></Users>";
    let names: Vec<String> = elements(users, "member")
        .into_iter()
        .filter_map(|m| element(m, "UserName"))
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(elements("<a>unclosed", "a"), Vec::<&str>::new());
}

#[test]
fn the_secret_is_unescaped_into_a_secret_string() {
    let block = "<UserName>alice</UserName><AccessKeyId>AKIA3</AccessKeyId><SecretAccessKey>wJal/K7+&amp;x&#x41;&#66;</SecretAccessKey>";
    assert_eq!(secret_of(block).unwrap().expose_secret(), "wJal/K7+&xAB");
    assert!(secret_of("<SecretAccessKey/>").is_none());
    // Text that is not well-formed XML is kept as written.
    assert_eq!(text("a &bogus; &lt;b&gt; &"), "a &bogus; &lt;b&gt; &");
    assert_eq!(text("&lt;b&gt;"), "<b>");
}

#[test]
fn issuing_tags_and_orphans() {
    assert_eq!(
        parse_issuing("0190f3a2-7c1e-7000-8000-000000000001@1700000000"),
        Some((
            "0190f3a2-7c1e-7000-8000-000000000001",
            Timestamp::from_second(1_700_000_000).unwrap()
        ))
    );
    assert_eq!(parse_issuing("no-time"), None);
    assert_eq!(parse_issuing("@1700000000"), None);
    let since: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
    let keys = [
        key("OLD", "Active", "2026-11-23T11:59:59Z"),
        key("NEW", "Active", "2026-11-23T11:58:00Z"),
        key("ANCIENT", "Inactive", "2026-01-01T00:00:00Z"),
    ];
    // OLD was there when the tag was written; NEW is within the skew;
    // ANCIENT was created long before the tag.
    let before: HashSet<&str> = ["OLD"].into();
    let found: Vec<&str> = orphans(&keys, since, &before)
        .iter()
        .map(|k| k.id.as_str())
        .collect();
    assert_eq!(found, ["NEW"]);
}

#[test]
fn arns_must_name_the_user() {
    assert!(arn_names_user(
        "arn:aws:iam::123456789012:user/svc/alice",
        "alice"
    ));
    assert!(arn_names_user("arn:aws-cn:iam::1:user/alice", "alice"));
    assert!(!arn_names_user("arn:aws:iam::1:user/svc/alicea", "alice"));
    assert!(!arn_names_user(
        "arn:aws:sts::1:assumed-role/r/alice",
        "alice"
    ));
    assert!(!arn_names_user("arn:aws:iam::1:role/alice", "alice"));
    assert!(!arn_names_user("", "alice"));
}

#[test]
fn full_slots_say_which_keys_and_what_to_do() {
    let keys = [
        key("AKIAOLD", "Active", "2026-01-01T00:00:00Z"),
        key("AKIASPARE", "Inactive", "2025-01-01T00:00:00Z"),
    ];
    let e = slots_taken("provider \"iam\"", "alice", &keys, Some("AKIAOLD"), false);
    assert!(!e.transient);
    assert!(
        e.message.starts_with("provider \"iam\": issue: IAM user \"alice\" already has 2 access keys, the most IAM allows: AKIAOLD (Active, current), AKIASPARE (Inactive). Delete the one no longer needed (aws iam delete-access-key --user-name alice --access-key-id AKIASPARE), or set `delete_inactive = true`"),
        "{e}"
    );
    let both_active = [
        key("AKIAOLD", "Active", "2026-01-01T00:00:00Z"),
        key("AKIAOTHER", "Active", "2025-01-01T00:00:00Z"),
    ];
    let e = slots_taken("p", "alice", &both_active, Some("AKIAOLD"), true);
    assert!(
        e.message
            .contains("keyrot never deletes an active key to make room"),
        "{e}"
    );
}

#[test]
fn iam_is_global_per_partition() {
    assert_eq!(
        iam_partition("eu-west-1"),
        ("https://iam.amazonaws.com", "us-east-1")
    );
    assert_eq!(iam_partition("cn-northwest-1").1, "cn-north-1");
    assert_eq!(iam_partition("us-gov-east-1").1, "us-gov-west-1");
}

#[test]
fn key_info_has_no_expiry_and_carries_the_status() {
    let k = key("AKIA1", "Active", "2026-01-01T00:00:00Z");
    let i = key_info(&k, None);
    assert_eq!(i.name, "alice");
    assert_eq!(i.expires_at, None);
    assert_eq!(i.tags["status"], "Active");
}

#[test]
fn get_access_key_last_used_answers_read_the_harsh_way() {
    use keyrot_core::model::LastUse;
    let answer = |inner: &str| {
        format!(
            "<GetAccessKeyLastUsedResponse><GetAccessKeyLastUsedResult><UserName>ci</UserName>\
             <AccessKeyLastUsed>{inner}</AccessKeyLastUsed></GetAccessKeyLastUsedResult></GetAccessKeyLastUsedResponse>"
        )
    };
    let used = answer(
        "<Region>us-east-1</Region><LastUsedDate>2026-11-23T09:30:00Z</LastUsedDate><ServiceName>s3</ServiceName>",
    );
    assert_eq!(
        super::keys::last_use(&used, "AKIA1"),
        LastUse::At {
            at: "2026-11-23T09:30:00Z".parse().unwrap()
        }
    );
    // AWS documents "N/A" for a key not used since tracking began.
    let never = answer("<Region>N/A</Region><ServiceName>N/A</ServiceName>");
    assert_eq!(super::keys::last_use(&never, "AKIA1"), LastUse::Never);
    // Anything else is unknown, never "never used".
    for inner in [
        "<LastUsedDate>yesterday</LastUsedDate><ServiceName>s3</ServiceName>",
        "<ServiceName>s3</ServiceName>",
        "",
    ] {
        assert!(
            matches!(
                super::keys::last_use(&answer(inner), "AKIA1"),
                LastUse::Unknown { .. }
            ),
            "{inner}"
        );
    }
    assert!(matches!(
        super::keys::last_use("<Error/>", "AKIA1"),
        LastUse::Unknown { .. }
    ));
}
