//! `[[provider]] type = "atlassian"`: validation of an Atlassian Admin API
//! provider (org id, base URL, admin key, the optional proposed rotate API
//! with its pre-shared key, page size, timeout) and the secret references
//! it holds, for `keyrot check`. The provider itself is in
//! `provider/atlassian.rs`.

use jiff::SignedDuration;
use toml::Spanned;

use super::ctx::{Ctx, did_you_mean};
use super::raw::RawAtlassianProvider;
use super::secret::SecretUse;
use super::secret::secret_ref;
use super::types::{AtlassianProviderConfig, AtlassianRotateApi, ProviderConfig};

/// Default `base_url`: Atlassian's Admin API for API access.
pub const DEFAULT_BASE_URL: &str = "https://api.atlassian.com/admin/api-access/v1";
/// Default `page_size`.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Default `timeout`.
pub const DEFAULT_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);
/// The longest life the proposed rotate endpoint gives a new key.
pub const MAX_NEW_KEY_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 365);
/// `rotate_api` values.
const ROTATE_APIS: [&str; 2] = ["none", "proposed"];

/// `type = "atlassian"`: every field checked, every problem recorded.
pub(crate) fn atlassian_provider(
    ctx: &mut Ctx<'_>,
    raw: &RawAtlassianProvider,
) -> Option<AtlassianProviderConfig> {
    let org_id = org_id(ctx, &raw.org_id);
    let base_url = match &raw.base_url {
        None => Some(DEFAULT_BASE_URL.to_string()),
        Some(u) => base_url(ctx, u),
    };
    let admin_key = secret_ref(ctx, &raw.admin_key);
    let rotate_api = rotate_api(ctx, raw);
    let page_size = match &raw.page_size {
        None => Some(DEFAULT_PAGE_SIZE),
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=100).contains(&v) => Some(v),
            _ => {
                ctx.error(n.span(), "`page_size` must be between 1 and 100");
                None
            }
        },
    };
    let timeout = match &raw.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(t) => ctx.positive(t, "timeout"),
    };
    let last_active_precision = match &raw.last_active_precision {
        None => Some(super::quiet::ATLASSIAN_LAST_ACTIVE_PRECISION),
        Some(t) => ctx.duration(t),
    };
    Some(AtlassianProviderConfig {
        org_id: org_id?,
        base_url: base_url?,
        admin_key: admin_key?,
        rotate_api: rotate_api?,
        page_size: page_size?,
        timeout: timeout?,
        last_active_precision: last_active_precision?,
    })
}

/// `org_id`: one non-empty URL path segment.
fn org_id(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let v = ctx.text(raw, "org_id")?;
    if v.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '%'))
    {
        ctx.error(
            raw.span(),
            format!("`org_id` {v:?} is not an organisation id (no spaces, `/`, `?`, `#` or `%`)"),
        );
        return None;
    }
    Some(v)
}

/// `base_url`: see [`Ctx::http_url`].
fn base_url(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    ctx.http_url(raw, "base_url", "the admin key")
}

/// `rotate_api` with the `psk_id`/`psk` pair it needs (`proposed`) or
/// refuses (`none`).
fn rotate_api(ctx: &mut Ctx<'_>, raw: &RawAtlassianProvider) -> Option<AtlassianRotateApi> {
    let proposed = match &raw.rotate_api {
        None => false,
        Some(r) => match r.get_ref().as_str() {
            "none" => false,
            "proposed" => true,
            other => {
                let hint = did_you_mean(other, ROTATE_APIS);
                ctx.error(
                    r.span(),
                    format!("unknown rotate_api {other:?}{hint}: use \"none\" or \"proposed\""),
                );
                return None;
            }
        },
    };
    if !proposed {
        let mut ok = true;
        let more = raw
            .psks
            .as_ref()
            .and_then(|p| p.first())
            .map(|p| p.id.span());
        for (span, field) in [
            (raw.psk_id.as_ref().map(Spanned::span), "psk_id"),
            (raw.psk.as_ref().map(Spanned::span), "psk"),
            (more, "psks"),
        ] {
            if let Some(span) = span {
                ctx.error(
                    span,
                    format!("`{field}` is only used with rotate_api = \"proposed\""),
                );
                ok = false;
            }
        }
        return ok.then_some(AtlassianRotateApi::None);
    }
    let missing: Vec<&str> = [("psk_id", raw.psk_id.is_none()), ("psk", raw.psk.is_none())]
        .into_iter()
        .filter_map(|(f, absent)| absent.then_some(f))
        .collect();
    if !missing.is_empty() {
        let at = raw
            .rotate_api
            .as_ref()
            .map(Spanned::span)
            .unwrap_or_default();
        ctx.error(
            at,
            format!(
                "rotate_api = \"proposed\" needs `psk_id` and `psk` (the pre-shared key the new secret is sealed under); missing: {}",
                missing.join(", ")
            ),
        );
        return None;
    }
    let mut psks = Vec::new();
    let mut ok = true;
    let entries = raw
        .psk_id
        .iter()
        .zip(raw.psk.iter())
        .chain(raw.psks.iter().flatten().map(|p| (&p.id, &p.key)));
    for (id, key) in entries {
        let id_ok = psk_id(ctx, id);
        let key_ok = secret_ref(ctx, key);
        match (id_ok, key_ok) {
            (Some(i), Some(k)) => {
                if psks.iter().any(|(seen, _)| seen == &i) {
                    ctx.error(id.span(), format!("PSK id {i:?} is given more than once"));
                    ok = false;
                } else {
                    psks.push((i, k));
                }
            }
            _ => ok = false,
        }
    }
    ok.then_some(AtlassianRotateApi::Proposed {
        psks,
        send_psk_id: raw.send_psk_id.unwrap_or(false),
    })
}

/// Why `policy` cannot drive rotations at Atlassian provider `provider`, if
/// it cannot: with `rotate_api = "proposed"` every new key's expiry is asked
/// for explicitly (never left to the endpoint's default) and the endpoint
/// refuses one more than 365 days ahead with a 400.
pub(crate) fn lifetime_problem(
    provider: &str,
    cfg: &AtlassianProviderConfig,
    policy: &str,
    lifetime: &Option<(SignedDuration, std::ops::Range<usize>)>,
) -> Option<String> {
    if cfg.rotate_api == AtlassianRotateApi::None {
        return None;
    }
    match lifetime {
        None => Some(format!(
            "policy {policy:?} sets no `new_key_lifetime`, but provider {provider:?} \
             (atlassian, rotate_api = \"proposed\") needs one: its rotate endpoint gives new keys \
             at most 365 days and keyrot does not leave a key's expiry to the \
             provider's default; set new_key_lifetime = \"365d\" or shorter in the policy"
        )),
        Some((life, _)) if *life > MAX_NEW_KEY_LIFETIME => Some(format!(
            "`new_key_lifetime` ({}) of policy {policy:?} is longer than the 365 days \
             provider {provider:?} (atlassian, rotate_api = \"proposed\") allows a new key: \
             its rotate endpoint refuses every such rotation with a 400",
            keyrot_core::policy::format_duration(*life)
        )),
        Some(_) => None,
    }
}

/// `psk_id`: letters, digits, `.`, `_`, `-`.
fn psk_id(ctx: &mut Ctx<'_>, raw: &Spanned<String>) -> Option<String> {
    let v = ctx.text(raw, "psk_id")?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        ctx.error(
            raw.span(),
            format!("`psk_id` {v:?} may hold only letters, digits, `.`, `_` and `-`"),
        );
        return None;
    }
    Some(v)
}

/// The secret references of one Atlassian provider, for `keyrot check`.
pub(crate) fn secret_uses<'a>(name: &str, cfg: &'a AtlassianProviderConfig) -> Vec<SecretUse<'a>> {
    let owner = format!("provider {name:?}");
    let mut out = vec![SecretUse {
        owner: owner.clone(),
        field: "admin_key",
        secret: &cfg.admin_key,
    }];
    if let AtlassianRotateApi::Proposed { psks, .. } = &cfg.rotate_api {
        for (i, (_, psk)) in psks.iter().enumerate() {
            out.push(SecretUse {
                owner: owner.clone(),
                field: if i == 0 { "psk" } else { "psks" },
                secret: psk,
            });
        }
    }
    out
}

/// The provider's line in the `keyrot check` summary (without indent).
pub(crate) fn summary_line(p: &ProviderConfig, cfg: &AtlassianProviderConfig) -> String {
    let rotate = match &cfg.rotate_api {
        AtlassianRotateApi::None => "rotate api none (assisted rotation)".to_string(),
        AtlassianRotateApi::Proposed { psks, send_psk_id } => {
            let ids: Vec<&str> = psks.iter().map(|(id, _)| id.as_str()).collect();
            let sent = if *send_psk_id { ", ?pskId= sent" } else { "" };
            format!("rotate api proposed, psk {}{sent}", ids.join(" "))
        }
    };
    format!(
        "{} (atlassian, {} at once, org {}, {}, {rotate}, page size {}, timeout {})",
        p.name,
        p.max_concurrent,
        cfg.org_id,
        cfg.base_url,
        cfg.page_size,
        keyrot_core::policy::format_duration(cfg.timeout)
    )
}
