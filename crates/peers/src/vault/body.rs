//! Request bodies that may carry a secret (a KV value, an AppRole secret
//! id): serialised once into a buffer of exactly the right size (no
//! reallocation leaves a copy behind), handed to the HTTP client without a
//! copy, and wiped when the last reference to it is dropped, after the
//! request (and its retry) has gone out.

use std::fmt;
use std::io;

use bytes::Bytes;
use serde::Serialize;
use zeroize::Zeroizing;

/// `Content-Type` of a JSON body.
const JSON: &str = "application/json";
/// `Content-Type` of a JSON merge patch (RFC 7386), as KV v2's PATCH wants.
const MERGE_PATCH: &str = "application/merge-patch+json";

/// A JSON request body in a buffer that is wiped when dropped. Cloning
/// shares the buffer (for a retry).
#[derive(Clone)]
pub struct JsonBody {
    /// The bytes, owned by a [`Wiped`] buffer.
    bytes: Bytes,
    /// Its `Content-Type`.
    content_type: &'static str,
}

impl JsonBody {
    /// `value` as `application/json`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<JsonBody> {
        Ok(JsonBody::from_zeroizing(to_zeroizing_json(value)?, JSON))
    }

    /// `value` as a JSON merge patch (`application/merge-patch+json`).
    pub fn merge_patch<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<JsonBody> {
        Ok(JsonBody::from_zeroizing(
            to_zeroizing_json(value)?,
            MERGE_PATCH,
        ))
    }

    /// A body from bytes already in a wiped buffer.
    pub fn from_zeroizing(buf: Zeroizing<Vec<u8>>, content_type: &'static str) -> JsonBody {
        JsonBody {
            bytes: Bytes::from_owner(Wiped(buf)),
            content_type,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A request body sharing the buffer (no copy).
    pub(crate) fn to_body(&self) -> reqwest::Body {
        reqwest::Body::from(self.bytes.clone())
    }
}

impl fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonBody({}, {} bytes)", self.content_type, self.len())
    }
}

/// Serialises `value` as JSON into a wiped buffer allocated once at its
/// exact size.
pub fn to_zeroizing_json<T: Serialize + ?Sized>(
    value: &T,
) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *buf, value)?;
    Ok(buf)
}

/// The owner of a body's bytes: wipes them when the HTTP client (and
/// every clone of the body) is done with them.
struct Wiped(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// Counts bytes written, to size the buffer before serialising for real.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_exactly_the_json_and_never_grows() {
        let value = serde_json::json!({"data": {"secret": "s3cr3t \"quoted\" ünïcode"}});
        let buf = to_zeroizing_json(&value).unwrap();
        assert_eq!(buf.len(), buf.capacity());
        assert_eq!(&buf[..], serde_json::to_vec(&value).unwrap().as_slice());
    }

    #[test]
    fn debug_shows_the_length_only() {
        let body = JsonBody::json(&serde_json::json!({"secret_id": "sid-value"})).unwrap();
        let shown = format!("{body:?}");
        assert!(!shown.contains("sid-value"), "{shown}");
        assert!(shown.contains("application/json"), "{shown}");
        let patch = JsonBody::merge_patch(&serde_json::json!({})).unwrap();
        assert_eq!(patch.content_type(), MERGE_PATCH);
        assert_eq!(patch.len(), 2);
    }
}
