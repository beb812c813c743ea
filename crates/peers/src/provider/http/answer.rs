//! Reading the `http` provider's JSON answers: a key's metadata through the
//! configured pointers, times in the shapes APIs use (RFC 3339, a bare
//! date, Unix seconds), equality conditions, the `Link` header's next page,
//! and the new secret taken out of the answer without copying it.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::Value;

use keyrot_config::http_provider::spec::{Conditions, Fields, Pointer, TagPlace, TagSpec};
use keyrot_core::model::KeyInfo;

/// The `KeyInfo.tags` entry that holds a rotation id found in a tag.
pub const TAG_KEY: &str = "keyrot-rotation";

/// A string, or a number as text.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A time: an RFC 3339 timestamp, a `YYYY-MM-DD` date (midnight UTC, the
/// start of that day), or Unix seconds (a number or a string of digits).
/// Times before 1971 are placeholders for "none" (Go's zero time
/// `0001-01-01T00:00:00Z`, Unix 0), not real dates: they count as absent.
pub fn time(v: &Value) -> Option<Timestamp> {
    parse_time(v).filter(|t| t.as_second() >= 365 * 86_400)
}

fn parse_time(v: &Value) -> Option<Timestamp> {
    match v {
        Value::Number(n) => n.as_i64().and_then(|s| Timestamp::from_second(s).ok()),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = s.parse::<Timestamp>() {
                return Some(t);
            }
            if let Ok(d) = s.parse::<jiff::civil::Date>() {
                return d
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .ok()
                    .map(|z| z.timestamp());
            }
            s.parse::<i64>()
                .ok()
                .and_then(|n| Timestamp::from_second(n).ok())
        }
        _ => None,
    }
}

/// True if every condition holds (numbers compare by value).
pub fn all_hold(v: &Value, conds: &Conditions) -> bool {
    conds.iter().all(|(p, want)| holds(v, p, want))
}

/// True if any condition holds.
pub fn any_holds(v: &Value, conds: &Conditions) -> bool {
    conds.iter().any(|(p, want)| holds(v, p, want))
}

fn holds(v: &Value, p: &Pointer, want: &Value) -> bool {
    match (v.pointer(&p.0), want) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(got), want) => got == want,
        (None, Value::Null) => true,
        (None, _) => false,
    }
}

/// Scopes: an array of strings (other elements as text), or one string.
fn scopes(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        other => text(other).into_iter().collect(),
    }
}

/// The metadata of one key's JSON. `id` is required; the name is read and
/// a tag in it (or in its own field) is split off into [`TAG_KEY`].
/// The error names the missing pointer.
pub fn key_info(
    item: &Value,
    f: &Fields,
    tag: Option<&TagSpec>,
    now: Timestamp,
) -> Result<KeyInfo, String> {
    let get = |p: &Option<Pointer>| p.as_ref().and_then(|p| p.get(item));
    let id = match &f.id {
        Some(p) => p
            .get(item)
            .and_then(text)
            .ok_or_else(|| format!("no key id at {p}"))?,
        None => String::new(),
    };
    let mut name = match &f.name {
        Some(p) => match p.get(item) {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => v.to_string(),
            _ => return Err(format!("no key name at {p}")),
        },
        None => String::new(),
    };
    let mut tags = BTreeMap::new();
    if let Some(t) = tag {
        let found = match &t.place {
            TagPlace::Name => t
                .find(&name)
                .map(|(base, rot)| (base.len(), rot.to_string())),
            TagPlace::Field(p) => p
                .get(item)
                .and_then(Value::as_str)
                .and_then(|s| t.find(s))
                .map(|(_, rot)| (name.len(), rot.to_string())),
        };
        if let Some((keep, rot)) = found {
            name.truncate(keep);
            tags.insert(TAG_KEY.to_string(), rot);
        }
    }
    let expires_at = get(&f.expires_at).and_then(time).or_else(|| {
        get(&f.seconds_to_live)
            .and_then(Value::as_i64)
            .filter(|s| *s > 0)
            .map(|s| now + SignedDuration::from_secs(s))
    });
    Ok(KeyInfo {
        id,
        name,
        scopes: get(&f.scopes).map(scopes).unwrap_or_default(),
        created_by: get(&f.created_by).and_then(text),
        created_at: get(&f.created_at).and_then(time),
        expires_at,
        last_used_at: get(&f.last_used_at).and_then(time),
        tags,
    })
}

/// Takes the secret out of `answer` (the parsed string moves into the
/// `SecretString`; no copy is left behind in the JSON value).
pub fn take_secret(answer: &mut Value, p: &Pointer) -> Option<SecretString> {
    match p.get_mut(answer).map(Value::take) {
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(s)),
        Some(Value::String(mut s)) => {
            zeroize::Zeroize::zeroize(&mut s);
            None
        }
        _ => None,
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let Some(url) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            let next = parts.any(|param| {
                let param = param.trim();
                param.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_ascii_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if next {
                return Some(url.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Option<Pointer> {
        Some(Pointer(s.into()))
    }

    #[test]
    fn times_in_every_shape() {
        let t = |v: Value| time(&v).map(|t| t.to_string());
        assert_eq!(
            t(json!("2026-01-02T03:04:05.123Z")).unwrap(),
            "2026-01-02T03:04:05.123Z"
        );
        assert_eq!(
            t(json!("2020-11-23T10:00:00.000000+00:00")).unwrap(),
            "2020-11-23T10:00:00Z"
        );
        assert_eq!(t(json!("2026-03-01")).unwrap(), "2026-03-01T00:00:00Z");
        assert_eq!(t(json!(1_767_225_600)).unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(t(json!("1767225600")).unwrap(), "2026-01-01T00:00:00Z");
        assert!(t(json!("soon")).is_none() && t(json!(null)).is_none());
        assert!(t(json!("0001-01-01T00:00:00Z")).is_none() && t(json!(0)).is_none());
    }

    #[test]
    fn key_info_reads_pointers_and_splits_tags() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let f = Fields {
            id: p("/id"),
            name: p("/attributes/name"),
            scopes: p("/scopes"),
            created_by: p("/owner"),
            created_at: p("/created"),
            expires_at: p("/expires"),
            seconds_to_live: p("/ttl"),
            last_used_at: p("/used"),
        };
        let tag = TagSpec {
            place: TagPlace::Name,
            prefix: "-keyrot-".into(),
            suffix: String::new(),
        };
        let rot = "0195b7d2-0000-7000-8000-000000000001";
        let item = json!({"id": 42, "attributes": {"name": format!("ci-keyrot-{rot}")},
            "scopes": "api", "owner": 7, "created": "2025-12-01", "expires": null, "ttl": 60, "used": null});
        let k = key_info(&item, &f, Some(&tag), now).unwrap();
        assert_eq!((k.id.as_str(), k.name.as_str()), ("42", "ci"));
        assert_eq!(k.tags[TAG_KEY], rot);
        assert_eq!(k.scopes, vec!["api"]);
        assert_eq!(k.created_by.as_deref(), Some("7"));
        assert_eq!(k.expires_at, Some(now + SignedDuration::from_secs(60)));
        assert!(k.last_used_at.is_none());
        let e = key_info(&json!({"name": "x"}), &f, None, now).unwrap_err();
        assert_eq!(e, "no key id at /id");
        let e = key_info(&json!({"id": 1, "attributes": {}}), &f, None, now).unwrap_err();
        assert_eq!(e, "no key name at /attributes/name");
        let k = key_info(&json!({"id": 1, "attributes": {"name": ""}}), &f, None, now).unwrap();
        assert_eq!(k.name, "");
    }

    #[test]
    fn conditions_and_secrets() {
        let v = json!({"active": true, "n": 1, "status": "active"});
        let c = |p: &str, w: Value| vec![(Pointer(p.into()), w)];
        assert!(all_hold(&v, &c("/active", json!(true))));
        assert!(all_hold(&v, &c("/n", json!(1.0))));
        assert!(!all_hold(&v, &c("/status", json!("revoked"))));
        assert!(all_hold(&v, &c("/missing", json!(null))));
        assert!(!any_holds(&v, &c("/missing", json!(true))));
        let mut a = json!({"result": "s3cr3t", "id": 1});
        let s = take_secret(&mut a, &Pointer("/result".into())).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&s), "s3cr3t");
        assert!(!a.to_string().contains("s3cr3t"));
        assert!(take_secret(&mut json!({"k": ""}), &Pointer("/k".into())).is_none());
        assert!(take_secret(&mut json!({"k": 5}), &Pointer("/k".into())).is_none());
    }

    #[test]
    fn link_header_next() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            r#"<https://g.example/api/v4/x?page=1>; rel="prev", <https://g.example/api/v4/x?page=3>; rel="next", <https://g.example/api/v4/x?page=9>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            link_next(&h).as_deref(),
            Some("https://g.example/api/v4/x?page=3")
        );
        h.insert(
            reqwest::header::LINK,
            r#"<https://g.example/x?page=1>; rel="first""#.parse().unwrap(),
        );
        assert_eq!(link_next(&h), None);
    }
}
