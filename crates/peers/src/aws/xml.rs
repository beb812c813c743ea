//! Reading AWS's query-protocol answers (IAM, STS) and XML error bodies
//! with quick-xml's reader: the raw contents of elements found by name at
//! any depth, and their text with entities decoded. Bodies arrive already
//! capped in size ([`crate::http::cap`]); nothing here allocates more than
//! the body it reads.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::Event;

/// The raw (still escaped) contents of each outermost element named `tag`
/// in `xml`, in document order; `""` for `<tag/>`. An element nested in
/// another of the same name stays inside its parent's contents. Reading
/// stops at the first malformed markup, keeping what was found before it.
pub fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Empty(e)) if e.local_name().into_inner() == tag => out.push(""),
            Ok(Event::Start(e)) if e.local_name().into_inner() == tag => {
                match reader.read_to_end(e.name()) {
                    Ok(span) => out.push(slice(xml, span.start, span.end)),
                    Err(_) => return out,
                }
            }
            Ok(Event::Eof) | Err(_) => return out,
            Ok(_) => {}
        }
    }
}

/// The text of the first element named `tag` in `xml`, entities decoded
/// and trimmed.
pub fn element(xml: &str, tag: &str) -> Option<String> {
    let raw = elements(xml, tag).into_iter().next()?;
    Some(text(raw.trim()).into_owned())
}

/// `raw` with XML's predefined and numeric entities decoded; borrowed when
/// there is none. Text that is not well-formed (an unknown entity, a bare
/// `&`) is returned as written, as AWS never sends it.
pub fn text(raw: &str) -> Cow<'_, str> {
    quick_xml::escape::unescape(raw).unwrap_or(Cow::Borrowed(raw))
}

/// `xml[start..end]` for a span the reader reported (empty if it were not
/// on character boundaries, which a span between tags always is).
fn slice(xml: &str, start: u64, end: u64) -> &str {
    let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
        return "";
    };
    xml.get(start..end).unwrap_or_default()
}
