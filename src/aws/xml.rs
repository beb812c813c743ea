//! Just enough XML for AWS's query-protocol answers (IAM, STS) and error
//! bodies: elements without attributes, text, nesting, and entity decoding
//! into a caller's buffer (so a secret is decoded straight into a wiped one).

/// The contents of each outermost `<tag>...</tag>` (or `<tag/>`, empty) of
/// `xml`, in order. Enough XML for IAM's and STS's answers: elements
/// without attributes, text and nested elements.
pub(crate) fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let empty = format!("<{tag}/>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    loop {
        let o = rest.find(&open);
        let e = rest.find(&empty);
        let start = match (o, e) {
            (None, None) => return out,
            (o, Some(e)) if o.is_none_or(|o| e < o) => {
                out.push("");
                rest = &rest[e + empty.len()..];
                continue;
            }
            (Some(o), _) => o + open.len(),
            (None, Some(_)) => return out,
        };
        // Find the matching close, counting nested elements of the same name.
        let mut depth = 1;
        let mut pos = start;
        let end = loop {
            let Some(c) = rest[pos..].find(&close).map(|i| i + pos) else {
                return out;
            };
            match rest[pos..].find(&open).map(|i| i + pos) {
                Some(n) if n < c => {
                    depth += 1;
                    pos = n + open.len();
                }
                _ => {
                    depth -= 1;
                    pos = c + close.len();
                    if depth == 0 {
                        break c;
                    }
                }
            }
        };
        out.push(&rest[start..end]);
        rest = &rest[pos..];
    }
}

/// The text of the first `<tag>` of `xml`, unescaped and trimmed.
pub(crate) fn element(xml: &str, tag: &str) -> Option<String> {
    let raw = elements(xml, tag).into_iter().next()?;
    let mut out = String::with_capacity(raw.len());
    unescape_into(raw.trim(), &mut out);
    Some(out)
}

/// Appends `text` with XML's predefined and numeric entities decoded
/// (never longer than `text`, so a buffer sized for it does not grow).
pub(crate) fn unescape_into(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after.find(';').and_then(|semi| {
            let name = &after[..semi];
            let c = match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| name.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            }?;
            Some((c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}
