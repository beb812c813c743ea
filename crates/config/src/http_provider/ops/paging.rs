//! The paging of `[provider.list]`: a cursor pointer, the Link header, or
//! page numbers.

use toml::Spanned;

use super::DEFAULT_CURSOR_PARAM;
use super::answer::pointer;
use crate::ctx::Ctx;
use crate::http_provider::raw::{RawOp, RawPages};
use crate::http_provider::spec::Paging;

/// The paging of a list: at most one of `next`, `next_link`, `pages`.
pub(super) fn paging(ctx: &mut Ctx<'_>, r: &RawOp) -> Option<Paging> {
    let link = r.next_link.as_ref().filter(|l| *l.get_ref());
    let set: Vec<std::ops::Range<usize>> = [
        r.next.as_ref().map(Spanned::span),
        link.map(Spanned::span),
        r.pages.as_ref().map(Spanned::span),
    ]
    .into_iter()
    .flatten()
    .collect();
    if set.len() > 1 {
        ctx.error(
            set[1].clone(),
            "choose one way of paging: `next` (a pointer to the next page), `next_link = true` (the Link header) or `pages` (page numbers)",
        );
        return None;
    }
    if let (Some(c), None) = (&r.cursor_param, &r.next) {
        ctx.error(c.span(), "`cursor_param` is only used with `next`");
        return None;
    }
    if let Some(n) = &r.next {
        let p = pointer(ctx, n, "next")?;
        let param = match &r.cursor_param {
            None => DEFAULT_CURSOR_PARAM.to_string(),
            Some(c) => query_param(ctx, c, "cursor_param")?,
        };
        return Some(Paging::Next {
            pointer: p,
            cursor_param: param,
        });
    }
    if link.is_some() {
        return Some(Paging::LinkHeader);
    }
    match &r.pages {
        Some(p) => pages(ctx, p.get_ref()),
        None => Some(Paging::None),
    }
}

/// A query parameter name.
fn query_param(ctx: &mut Ctx<'_>, raw: &Spanned<String>, field: &str) -> Option<String> {
    let v = raw.get_ref();
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '&' | '=' | '#' | '?'))
    {
        ctx.error(
            raw.span(),
            format!("`{field}` {v:?} is not a query parameter name"),
        );
        return None;
    }
    Some(v.clone())
}

/// `pages = { param, first, size_param, size }`.
fn pages(ctx: &mut Ctx<'_>, p: &RawPages) -> Option<Paging> {
    let param = query_param(ctx, &p.param, "pages.param");
    let size_param = match &p.size_param {
        None => Some(None),
        Some(s) => query_param(ctx, s, "pages.size_param").map(Some),
    };
    let first = match &p.first {
        None => Some(1),
        Some(f) => match u64::try_from(*f.get_ref()) {
            Ok(v) if v <= 1 => Some(v),
            _ => {
                ctx.error(f.span(), "`pages.first` is 0 or 1");
                None
            }
        },
    };
    let size = match u64::try_from(*p.size.get_ref()) {
        Ok(v) if (1..=10_000).contains(&v) => Some(v),
        _ => {
            ctx.error(
                p.size.span(),
                "`pages.size` must be between 1 and 10000 (and at most what the API allows)",
            );
            None
        }
    };
    Some(Paging::Numbers {
        param: param?,
        first: first?,
        size_param: size_param?,
        size: size?,
    })
}
