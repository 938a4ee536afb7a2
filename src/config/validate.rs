//! From [`RawConfig`] to [`Config`]: every check of meaning, collecting all
//! problems with the key and origin of each.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::*;
use super::*;
use crate::settings::{Checker, Locator};

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
    let notifiers = notifiers(&mut ctx, raw.notifiers);
    let names = notifiers.keys().cloned().collect();
    let accounts = crate::settings::validate_accounts(&mut ctx, raw.accounts, &defaults, &names);
    let sources = crate::sources::validate(&mut ctx, raw.sources, &accounts);
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

fn notifiers(
    ctx: &mut Checker<'_>,
    raw: BTreeMap<String, RawNotifier>,
) -> BTreeMap<String, NotifierSpec> {
    let mut out = BTreeMap::new();
    for (name, n) in raw {
        if let Some(spec) = notifier(ctx, &format!("notifiers.{name}"), &name, n) {
            out.insert(name, spec);
        }
    }
    out
}

fn notifier(ctx: &mut Checker<'_>, p: &str, name: &str, raw: RawNotifier) -> Option<NotifierSpec> {
    let kind = match raw.kind.as_deref() {
        Some("wecom") => NotifierKind::Wecom,
        Some("dingtalk") => NotifierKind::Dingtalk,
        Some("feishu") => NotifierKind::Feishu,
        Some("slack") => NotifierKind::Slack,
        Some("discord") => NotifierKind::Discord,
        Some("webhook") => NotifierKind::Webhook,
        Some(other) => {
            return ctx.err(
                &format!("{p}.type"),
                format!("`{other}` is not one of wecom, dingtalk, feishu, slack, discord, webhook"),
            )
        }
        None => return ctx.err(&format!("{p}.type"), "is required"),
    };
    let url = ctx.secret(&format!("{p}.url"), raw.url, raw.url_file.as_ref());
    let url = ctx.required(&format!("{p}.url"), url)?;
    if !(url.expose().starts_with("https://") || url.expose().starts_with("http://")) {
        ctx.err::<()>(&format!("{p}.url"), "is not an http(s) URL");
    }
    let secret = ctx.secret(&format!("{p}.secret"), raw.secret, raw.secret_file.as_ref());
    if secret.is_some()
        && matches!(
            kind,
            NotifierKind::Wecom | NotifierKind::Slack | NotifierKind::Discord
        )
    {
        ctx.err::<()>(
            &format!("{p}.secret"),
            "this platform does not sign messages; only dingtalk, feishu and webhook take a secret",
        );
    }
    let events = match raw.events {
        None => EventKind::ALL.to_vec(),
        Some(list) => list.iter().filter_map(|e| match EventKind::ALL.iter().find(|k| k.as_str() == e) {
            Some(k) => Some(*k),
            None => ctx.err(&format!("{p}.events"), format!("`{e}` is not one of cleared, failed, skipped, dry_run, budget_low, exhausted, config_error, monthly_report")),
        }).collect(),
    };
    let language = match raw.language.as_deref().unwrap_or("zh") {
        "zh" => Language::Zh,
        "en" => Language::En,
        other => ctx
            .err(
                &format!("{p}.language"),
                format!("`{other}` is not one of zh, en"),
            )
            .unwrap_or(Language::Zh),
    };
    let feishu_format = match raw.format.as_deref() {
        None | Some("post") => FeishuFormat::Post,
        Some("card") if kind == NotifierKind::Feishu => FeishuFormat::Card,
        Some(other) => ctx.err(&format!("{p}.format"), format!("`{other}` is not valid here: only feishu notifiers take format = \"post\" or \"card\"")).unwrap_or(FeishuFormat::Post),
    };
    let skipped_interval = ctx.duration(
        &format!("{p}.skipped_interval"),
        raw.skipped_interval.as_deref(),
        Duration::from_secs(3600),
    );
    Some(NotifierSpec {
        name: name.to_string(),
        kind,
        url,
        secret,
        events,
        language,
        skipped_interval,
        feishu_format,
    })
}
