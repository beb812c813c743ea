//! KV v2 wire shapes: the answer of `GET {mount}/data/{path}` (the current
//! version's fields and metadata), the answer of a write (its version), the
//! write body with its check-and-set version, and the detection of a
//! check-and-set mismatch. Field values may be secrets (the one keyrot
//! writes, and others the operator keeps beside it): they are held in
//! [`Fields`], whose strings are wiped on drop, and a write body borrows
//! them (and the new secret) rather than copying them.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use zeroize::Zeroize;

/// The error text of a check-and-set mismatch.
pub const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// The fields of a KV v2 version; every string in them is wiped on drop.
#[derive(Default)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Field names, for messages (never values).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl Drop for Fields {
    fn drop(&mut self) {
        self.0.values_mut().for_each(wipe);
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        Map::deserialize(d).map(Fields)
    }
}

/// Wipes every string inside `v`.
fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(o) => o.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `GET {mount}/data/{path}`.
#[derive(Debug, Deserialize)]
pub struct ReadAnswer {
    /// Absent in an empty 404.
    #[serde(default)]
    pub data: Option<ReadData>,
}

/// The current version.
#[derive(Debug, Deserialize)]
pub struct ReadData {
    /// Its fields; null when the version is deleted or destroyed.
    #[serde(default)]
    pub data: Option<Fields>,
    /// Its metadata.
    #[serde(default)]
    pub metadata: Option<VersionMetadata>,
}

/// Metadata of a version, with the key's custom metadata.
#[derive(Debug, Deserialize)]
pub struct VersionMetadata {
    /// Version number (1, 2, ...).
    pub version: u64,
    /// The key's custom metadata (null when none).
    #[serde(default)]
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// `GET {mount}/metadata/{path}`: what keyrot reads of a key's metadata.
#[derive(Debug, Deserialize)]
pub struct MetadataAnswer {
    /// The key's metadata.
    #[serde(default)]
    pub data: Option<KeyMetadata>,
}

/// A key's metadata (its settings are left alone: only custom metadata is
/// read).
#[derive(Debug, Deserialize)]
pub struct KeyMetadata {
    /// The key's custom metadata (null when none).
    #[serde(default)]
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// The answer of a write: the version it created.
#[derive(Debug, Deserialize)]
pub struct WriteAnswer {
    /// Absent when the mount is not KV v2.
    #[serde(default)]
    pub data: Option<WriteData>,
}

/// The version a write created.
#[derive(Debug, Deserialize)]
pub struct WriteData {
    /// Version number.
    pub version: u64,
}

/// `POST {mount}/data/{path}`: `{"options":{"cas":V},"data":{...}}` with
/// the existing fields kept and `field` set to `value`.
pub struct WriteBody<'a> {
    /// Version the write expects to replace (0: none yet).
    pub cas: u64,
    /// Fields to keep.
    pub keep: &'a Fields,
    /// The field written.
    pub field: &'a str,
    /// Its value.
    pub value: &'a str,
}

impl Serialize for WriteBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("options", &Cas { cas: self.cas })?;
        map.serialize_entry("data", &DataWith(self))?;
        map.end()
    }
}

/// `options` of a write.
#[derive(Serialize)]
struct Cas {
    /// Check-and-set version.
    cas: u64,
}

/// `data` of a write: the kept fields, then the written one.
struct DataWith<'a>(&'a WriteBody<'a>);

impl Serialize for DataWith<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let body = self.0;
        let mut map = s.serialize_map(None)?;
        for (k, v) in body.keep.0.iter().filter(|(k, _)| *k != body.field) {
            map.serialize_entry(k, v)?;
        }
        map.serialize_entry(body.field, body.value)?;
        map.end()
    }
}

/// True for the error text of a write refused by check-and-set.
pub fn is_cas_mismatch(body: &[u8]) -> bool {
    crate::http::error_detail(body).is_some_and(|d| d.contains(CAS_MISMATCH))
}

/// True for a 404 that says the route does not exist (no such mount, or
/// not a KV v2 mount), as opposed to "no secret here" (`{"errors":[]}`).
pub fn is_no_route(body: &[u8]) -> bool {
    crate::http::error_detail(body).is_some_and(|d| d.contains("no handler for route"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_keeps_other_fields_and_replaces_its_own() {
        let current: ReadAnswer = serde_json::from_str(
            r#"{"data":{"data":{"secret":"old","user":"svc","n":3},"metadata":{"version":4,"custom_metadata":{"owner":"ops"}}}}"#,
        )
        .unwrap();
        let data = current.data.unwrap();
        let meta = data.metadata.unwrap();
        assert_eq!(meta.version, 4);
        assert_eq!(meta.custom_metadata.unwrap()["owner"], "ops");
        let fields = data.data.unwrap();
        let body = WriteBody {
            cas: 4,
            keep: &fields,
            field: "secret",
            value: "new",
        };
        let v: Value = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"options":{"cas":4},"data":{"n":3,"user":"svc","secret":"new"}})
        );
        assert_eq!(format!("{fields:?}"), r#"{"n", "secret", "user"}"#);
    }

    #[test]
    fn deleted_versions_and_empty_404s_parse() {
        let deleted: ReadAnswer = serde_json::from_str(
            r#"{"data":{"data":null,"metadata":{"version":2,"custom_metadata":null,"deletion_time":"x"}}}"#,
        )
        .unwrap();
        let d = deleted.data.unwrap();
        assert!(d.data.is_none());
        assert_eq!(d.metadata.unwrap().version, 2);
        let empty: ReadAnswer = serde_json::from_str(r#"{"errors":[]}"#).unwrap();
        assert!(empty.data.is_none());
    }

    #[test]
    fn error_texts_are_recognised() {
        assert!(is_cas_mismatch(
            br#"{"errors":["check-and-set parameter did not match the current version"]}"#
        ));
        assert!(!is_cas_mismatch(br#"{"errors":["permission denied"]}"#));
        assert!(is_no_route(
            br#"{"errors":["no handler for route \"nope/data/x\". route entry not found."]}"#
        ));
        assert!(!is_no_route(br#"{"errors":[]}"#));
    }

    #[test]
    fn strings_are_wiped_on_drop() {
        let mut v = serde_json::json!({"a": ["x", {"b": "yy"}], "c": 1});
        wipe(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["", {"b": ""}], "c": 1}));
    }
}
