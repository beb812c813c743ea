//! Listing keys through `[provider.list]`: one request per page, keys read
//! with the configured pointers and filters, and the next page found by a
//! pointer (URL or cursor), the `Link` header or page numbers, with guards
//! against servers that loop or point elsewhere.

use std::collections::HashSet;

use jiff::Timestamp;
use reqwest::Url;
use serde_json::Value;

use super::HttpProvider;
use super::answer::{all_hold, any_holds, key_info, link_next, text};
use super::client::set_query;
use keyrot_config::http_provider::spec::Paging;
use keyrot_config::http_provider::template::Values;
use keyrot_core::error::CallError;
use keyrot_core::model::KeyInfo;

/// Most list pages followed in one `list` (a guard against a server that
/// never stops paging).
const MAX_PAGES: usize = 10_000;

impl HttpProvider {
    /// Every live key, across all pages.
    pub(super) async fn list_keys(&self, now: Timestamp) -> Result<Vec<KeyInfo>, CallError> {
        let Some(op) = &self.spec.list else {
            return Err(CallError::permanent(format!(
                "{}: no [provider.list] is configured",
                self.who
            )));
        };
        let what = "list keys";
        let vals = Values {
            now: Some(now),
            ..Values::default()
        };
        let mut first = self.url(what, &op.call, &vals)?;
        let mut number = 0;
        if let Paging::Numbers {
            param,
            first: start,
            size_param,
            size,
        } = &op.paging
        {
            number = *start;
            if let Some(sp) = size_param {
                first = set_query(&first, sp, &size.to_string());
            }
            first = set_query(&first, param, &number.to_string());
        }
        let mut url = first.clone();
        let mut keys = Vec::new();
        let mut seen_ids = HashSet::new();
        let mut seen_next = HashSet::new();
        for page in 1..=MAX_PAGES {
            let ans = self.call(what, &op.call, &url, &vals, true).await?;
            if !ans.status.is_success() {
                return Err(self.status_error(what, &ans, now));
            }
            let doc = self.json(what, &ans)?;
            let items = op.items.get(&doc).and_then(Value::as_array).ok_or_else(|| {
                CallError::permanent(format!(
                    "{}: {what}: page {page} has no array of keys at {} (check `items` in [provider.list])",
                    self.who, op.items
                ))
            })?;
            let mut fresh = 0;
            for (i, item) in items.iter().enumerate() {
                let id = op
                    .fields
                    .id
                    .as_ref()
                    .and_then(|p| p.get(item))
                    .and_then(text);
                if id.is_none_or(|id| seen_ids.insert(id)) {
                    fresh += 1;
                }
                if !all_hold(item, &op.keep_if) || any_holds(item, &op.skip_if) {
                    continue;
                }
                let k = key_info(item, &op.fields, self.spec.tag.as_ref(), now).map_err(|e| {
                    CallError::permanent(format!(
                        "{}: {what}: key {} of page {page}: {e} (check the pointers of [provider.list])",
                        self.who,
                        i + 1
                    ))
                })?;
                if k.expires_at.is_some_and(|t| t <= now) {
                    continue;
                }
                keys.push(k);
            }
            if !items.is_empty() && fresh == 0 {
                return Err(CallError::permanent(format!(
                    "{}: {what}: page {page} repeats keys already listed; stopping instead of looping (check the paging of [provider.list])",
                    self.who
                )));
            }
            let next = match &op.paging {
                Paging::None => None,
                Paging::Next {
                    pointer,
                    cursor_param,
                } => match pointer.get(&doc).and_then(text) {
                    Some(n) => Some(self.next_url(&first, &n, cursor_param)?),
                    None => None,
                },
                Paging::LinkHeader => match link_next(&ans.headers) {
                    Some(n) => Some(self.next_url(&url, &n, "page")?),
                    None => None,
                },
                Paging::Numbers { param, size, .. } => {
                    if items.is_empty() || (items.len() as u64) < *size {
                        None
                    } else {
                        number += 1;
                        Some(set_query(&first, param, &number.to_string()))
                    }
                }
            };
            let Some(next) = next else {
                return Ok(keys);
            };
            if !seen_next.insert(next.to_string()) {
                return Err(CallError::permanent(format!(
                    "{}: {what}: the server repeated a next-page link; stopping instead of looping",
                    self.who
                )));
            }
            url = next;
        }
        Err(CallError::permanent(format!(
            "{}: {what}: more than {MAX_PAGES} pages",
            self.who
        )))
    }

    /// The next list page's URL: a full URL or path (same origin only),
    /// or a cursor token set as `param` on the first page's URL.
    fn next_url(&self, first: &Url, next: &str, param: &str) -> Result<Url, CallError> {
        let what = "list keys";
        if next.starts_with("http://") || next.starts_with("https://") || next.starts_with('/') {
            let url = first.join(next).map_err(|e| {
                CallError::permanent(format!(
                    "{}: {what}: the next page is not a URL: {e}",
                    self.who
                ))
            })?;
            return self.same_origin(what, url);
        }
        Ok(set_query(first, param, next))
    }
}
