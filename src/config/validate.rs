//! From [`RawConfig`] to [`Config`]: every check of meaning, collecting all
//! problems with the key and origin of each.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderName;

use super::raw::*;
use super::*;
use crate::settings::{is_name, Checker, Locator};

pub(super) fn validate(
    raw: RawConfig,
    locator: &Locator<'_>,
    resolver: &SecretResolver,
) -> Result<Config, ConfigErrors> {
    let mut ctx = Checker::new(locator, resolver);
    let daemon = raw.daemon.validate(&mut ctx);
    let wechat = raw.wechat.validate(&mut ctx);
    let defaults = raw
        .policy
        .validate(&mut ctx, "policy", &PolicySettings::default());
    let notifiers = crate::notify::validate(&mut ctx, raw.notifiers);
    let names = notifiers.keys().cloned().collect();
    let accounts = crate::settings::validate_accounts(&mut ctx, raw.accounts, &defaults, &names);
    let sources = sources(&mut ctx, raw.sources, &accounts);
    let errors = ctx.into_errors();
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        path: locator.path().unwrap_or_default(),
        daemon,
        wechat,
        policy: defaults,
        accounts,
        sources,
        notifiers,
    })
}

/// A source's reference to an account, by name or appid, before the
/// [`Config`] (and its appid index) exists.
fn find_account<'a>(accounts: &'a Accounts, name_or_appid: &str) -> Option<&'a Arc<Account>> {
    accounts.find(name_or_appid)
}

fn sources(
    ctx: &mut Checker<'_>,
    raw: BTreeMap<String, RawSource>,
    accounts: &Accounts,
) -> BTreeMap<String, SourceSpec> {
    let mut out = BTreeMap::new();
    for (name, s) in raw {
        let p = format!("sources.{name}");
        if !is_name(&name) {
            ctx.err::<()>(
                &p,
                "source names use letters, digits, '-' and '_' (they appear in /hooks/NAME)",
            );
        }
        let spec = match s {
            RawSource::Alertmanager(w) => webhook(ctx, &p, &name, WebhookFormat::Alertmanager, w),
            RawSource::Grafana(w) => webhook(ctx, &p, &name, WebhookFormat::Grafana, w),
            RawSource::Generic(w) => webhook(ctx, &p, &name, WebhookFormat::Generic, w),
            RawSource::LogFile(l) => log_file(ctx, &p, &name, l, accounts),
            RawSource::Prometheus(q) => prometheus(ctx, &p, &name, q),
            RawSource::WechatQuota(q) => wechat_quota(ctx, &p, &name, q, accounts),
        };
        if let Some(spec) = spec {
            out.insert(name, spec);
        }
    }
    out
}

fn webhook(
    ctx: &mut Checker<'_>,
    p: &str,
    name: &str,
    format: WebhookFormat,
    raw: RawWebhookSource,
) -> Option<SourceSpec> {
    let default_label = if format == WebhookFormat::Generic {
        "account"
    } else {
        "appid"
    };
    let hmac_secret = ctx.secret(
        &format!("{p}.hmac_secret"),
        raw.hmac_secret,
        raw.hmac_secret_file.as_ref(),
    );
    let signature = match raw.signature.as_deref() {
        None => SignatureScheme::Any,
        Some("grafana") => SignatureScheme::Grafana,
        Some("github") => SignatureScheme::Github,
        Some(other) => ctx
            .err(
                &format!("{p}.signature"),
                format!("`{other}` is not one of grafana, github"),
            )
            .unwrap_or(SignatureScheme::Any),
    };
    let (signature_header, timestamp_headers) = grafana_headers(
        ctx,
        p,
        [raw.signature_header, raw.timestamp_header],
        hmac_secret.is_some(),
        signature,
    );
    Some(SourceSpec::Webhook(WebhookSpec {
        name: name.to_string(),
        format,
        account_label: raw
            .account_label
            .unwrap_or_else(|| default_label.to_string()),
        hmac_secret,
        signature,
        signature_header,
        timestamp_headers,
    }))
}

/// `signature_header` and `timestamp_header`: legal header names (matched
/// case-insensitively, as HTTP does), and only where a Grafana signature is
/// checked.
fn grafana_headers(
    ctx: &mut Checker<'_>,
    p: &str,
    [signature_header, timestamp_header]: [Option<String>; 2],
    signed: bool,
    scheme: SignatureScheme,
) -> (HeaderName, Vec<HeaderName>) {
    use crate::sources::webhook::{
        GRAFANA_SIGNATURE_HEADER, GRAFANA_TIMESTAMP_HEADER, GRAFANA_TIMESTAMP_HEADER_ALT,
    };
    let mut name = |key: &str, value: Option<String>| -> Option<HeaderName> {
        let key = format!("{p}.{key}");
        let value = value?;
        if !signed {
            return ctx.err(&key, "has no effect without hmac_secret");
        }
        if scheme == SignatureScheme::Github {
            return ctx.err(
                &key,
                "renames a Grafana header; signature = \"github\" reads X-Hub-Signature-256",
            );
        }
        match HeaderName::from_bytes(value.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => ctx.err(&key, format!("`{value}` is not a valid HTTP header name")),
        }
    };
    let signature = name("signature_header", signature_header)
        .unwrap_or(HeaderName::from_static(GRAFANA_SIGNATURE_HEADER));
    let timestamp = match name("timestamp_header", timestamp_header) {
        Some(h) => vec![h],
        None => vec![
            HeaderName::from_static(GRAFANA_TIMESTAMP_HEADER),
            HeaderName::from_static(GRAFANA_TIMESTAMP_HEADER_ALT),
        ],
    };
    (signature, timestamp)
}

fn schedule(ctx: &mut Checker<'_>, key: &str, value: Option<String>, default: &str) -> String {
    let text = value.unwrap_or_else(|| default.to_string());
    if let Err(e) = crate::sources::validate_schedule(&text) {
        ctx.err::<()>(
            key,
            format!("`{text}` is not a cron expression with seconds (\"0 */5 * * * *\"): {e}"),
        );
    }
    text
}

fn log_file(
    ctx: &mut Checker<'_>,
    p: &str,
    name: &str,
    raw: RawLogFile,
    accounts: &Accounts,
) -> Option<SourceSpec> {
    let path = ctx.required(&format!("{p}.path"), raw.path);
    let pattern = ctx
        .required(&format!("{p}.pattern"), raw.pattern)
        .and_then(|t| ctx.regex(&format!("{p}.pattern"), &t));
    let account = match (raw.account_pattern, raw.account) {
        (Some(_), Some(_)) => ctx.err(p, "set either account_pattern or account, not both"),
        (None, None) => ctx.err(
            p,
            "needs account_pattern (a regex whose first group is an appid or name) or account",
        ),
        (Some(t), None) => {
            let key = format!("{p}.account_pattern");
            match ctx.regex(&key, &t) {
                Some(r) if r.captures_len() < 2 => {
                    ctx.err(&key, "needs a capture group around the appid or name")
                }
                r => r.map(LogAccount::Pattern),
            }
        }
        (None, Some(a)) => match find_account(accounts, &a) {
            Some(acc) => Some(LogAccount::Fixed(acc.name.clone())),
            None => ctx.err(
                &format!("{p}.account"),
                format!("names `{a}`, which is not a configured account"),
            ),
        },
    };
    let schedule = schedule(ctx, &format!("{p}.schedule"), raw.schedule, "*/5 * * * * *");
    Some(SourceSpec::LogFile(LogFileSpec {
        name: name.to_string(),
        path: path?,
        pattern: pattern?,
        account: account?,
        schedule,
    }))
}

fn prometheus(
    ctx: &mut Checker<'_>,
    p: &str,
    name: &str,
    raw: RawPrometheus,
) -> Option<SourceSpec> {
    let url = ctx.required(&format!("{p}.url"), raw.url);
    if let Some(u) = &url {
        ctx.http_url(&format!("{p}.url"), u);
    }
    let query = ctx.required(&format!("{p}.query"), raw.query);
    let threshold = raw.threshold.unwrap_or(1.0);
    if !threshold.is_finite() {
        ctx.err::<()>(&format!("{p}.threshold"), "must be a finite number");
    }
    let schedule = schedule(ctx, &format!("{p}.schedule"), raw.schedule, "0 * * * * *");
    Some(SourceSpec::Prometheus(PrometheusSpec {
        name: name.to_string(),
        url: url?.trim_end_matches('/').to_string(),
        query: query?,
        account_label: raw.account_label.unwrap_or_else(|| "appid".to_string()),
        threshold,
        schedule,
    }))
}

fn wechat_quota(
    ctx: &mut Checker<'_>,
    p: &str,
    name: &str,
    raw: RawWeChatQuota,
    accounts: &Accounts,
) -> Option<SourceSpec> {
    let names = ctx
        .required(&format!("{p}.accounts"), raw.accounts)
        .unwrap_or_default();
    let mut resolved = Vec::new();
    for a in names {
        match find_account(accounts, &a) {
            Some(acc) => resolved.push(acc.name.clone()),
            None => {
                ctx.err::<()>(
                    &format!("{p}.accounts"),
                    format!("names `{a}`, which is not a configured account"),
                );
            }
        }
    }
    let cgi_paths = ctx
        .required(&format!("{p}.cgi_paths"), raw.cgi_paths)
        .unwrap_or_default();
    for c in &cgi_paths {
        if !c.starts_with('/') {
            ctx.err::<()>(
                &format!("{p}.cgi_paths"),
                format!("`{c}` is not a path like /cgi-bin/message/custom/send"),
            );
        }
    }
    let key = format!("{p}.remain_below");
    let remain_below = match raw.remain_below {
        None => RemainBelow::Percent(1.0),
        Some(RawThreshold::Count(n)) if n >= 0 => RemainBelow::Count(n as u64),
        Some(RawThreshold::Text(t)) => match parse_remain(&t) {
            Some(RemainBelow::Count(n)) if n > MAX_REMAIN_COUNT => ctx
                .err(
                    &key,
                    format!("`{t}` is more than {MAX_REMAIN_COUNT}, the largest count it takes"),
                )
                .unwrap_or(RemainBelow::Percent(1.0)),
            Some(r) => r,
            None => ctx
                .err(
                    &key,
                    format!("`{t}` is not a percentage (\"1%\") or a count"),
                )
                .unwrap_or(RemainBelow::Percent(1.0)),
        },
        Some(RawThreshold::Count(n)) => ctx
            .err(&key, format!("must not be negative, got {n}"))
            .unwrap_or(RemainBelow::Percent(1.0)),
    };
    let schedule = schedule(ctx, &format!("{p}.schedule"), raw.schedule, "0 */5 * * * *");
    let concurrency = match raw.concurrency {
        None => 8,
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => ctx
            .err(
                &format!("{p}.concurrency"),
                format!("must be between 1 and 256, got {n}"),
            )
            .unwrap_or(8),
    };
    Some(SourceSpec::WechatQuota(WeChatQuotaSpec {
        name: name.to_string(),
        accounts: resolved,
        cgi_paths,
        remain_below,
        schedule,
        concurrency,
    }))
}

/// The largest count `remain_below` takes: TOML's largest integer, so that the
/// string form takes what the integer form does and `check` can print it.
const MAX_REMAIN_COUNT: u64 = i64::MAX as u64;

fn parse_remain(text: &str) -> Option<RemainBelow> {
    let t = text.trim();
    match t.strip_suffix('%') {
        Some(pct) => pct
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| (0.0..=100.0).contains(v))
            .map(RemainBelow::Percent),
        None => t.parse::<u64>().ok().map(RemainBelow::Count),
    }
}
