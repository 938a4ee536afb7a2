//! From [`RawConfig`] to [`Config`]: every check of meaning, collecting all
//! problems with the key and origin of each.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderName;
use sha2::{Digest, Sha256};

use super::error::{ConfigError, ConfigErrors, Locator};
use super::raw::*;
use super::*;
use crate::policy::Prefer;

/// Collects problems while validation goes on, so one run reports them all.
struct Ctx<'a> {
    locator: &'a Locator<'a>,
    resolver: &'a SecretResolver,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err<T>(&mut self, key: &str, message: impl Into<String>) -> Option<T> {
        let origin = Some(self.locator.origin(key));
        self.errors.push(ConfigError {
            key: Some(key.to_string()),
            origin,
            message: message.into(),
        });
        None
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => d,
                Err(e) => self
                    .err(
                        key,
                        format!("`{text}` is not a duration like \"90s\" or \"2h30m\": {e}"),
                    )
                    .unwrap_or(default),
            },
        }
    }

    fn range(&mut self, key: &str, value: Option<i64>, default: u32, min: u32, max: u32) -> u32 {
        match value {
            None => default,
            Some(v) if v >= min as i64 && v <= max as i64 => v as u32,
            Some(v) => self
                .err(key, format!("must be between {min} and {max}, got {v}"))
                .unwrap_or(default),
        }
    }

    /// The inline value or the `*_file` one; both set is an error.
    fn secret(
        &mut self,
        key: &str,
        inline: Option<Secret>,
        file: Option<&PathBuf>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(key, format!("set either `{key}` or `{key}_file`, not both"))
            }
            (Some(s), None) if s.is_empty() => self.err(key, "is empty"),
            (Some(s), None) => Some(s),
            (None, Some(path)) => match self.resolver.read(path) {
                Ok(s) => Some(s),
                Err(e) => self.err(&format!("{key}_file"), e),
            },
            (None, None) => None,
        }
    }

    fn required<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        match value {
            Some(v) => Some(v),
            None => self.err(key, "is required"),
        }
    }
}

pub(super) fn validate(
    raw: RawConfig,
    locator: &Locator<'_>,
    resolver: &SecretResolver,
) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx {
        locator,
        resolver,
        errors: Vec::new(),
    };
    let daemon = daemon(&mut ctx, raw.daemon);
    let wechat = wechat(&mut ctx, raw.wechat);
    let defaults = policy(&mut ctx, "policy", &raw.policy, &PolicySettings::default());
    let notifiers = notifiers(&mut ctx, raw.notifiers);
    let accounts = accounts(&mut ctx, raw.accounts, &defaults, &notifiers);
    let sources = sources(&mut ctx, raw.sources, &accounts);
    if !ctx.errors.is_empty() {
        return Err(ConfigErrors(ctx.errors));
    }
    let by_appid = accounts
        .values()
        .map(|a| (a.appid.clone(), a.name.clone()))
        .collect();
    Ok(Config {
        path: locator.path().unwrap_or_default(),
        daemon,
        wechat,
        policy: defaults,
        accounts,
        by_appid,
        sources,
        notifiers,
    })
}

fn daemon(ctx: &mut Ctx<'_>, raw: RawDaemon) -> DaemonSettings {
    let listen_text = raw.listen.as_deref().unwrap_or("127.0.0.1:9466");
    let listen = listen_text.parse().unwrap_or_else(|_| {
        ctx.err::<()>(
            "daemon.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:9466"),
        );
        SocketAddr::from(([127, 0, 0, 1], 9466))
    });
    let state = match raw.state.as_deref() {
        Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
            let url = Secret::new(s);
            postgres_target(ctx, &url);
            StateLocation::Postgres(url)
        }
        Some("") => ctx
            .err("daemon.state", "is empty")
            .unwrap_or(StateLocation::Sqlite("quotawatch.db".into())),
        Some(s) => StateLocation::Sqlite(PathBuf::from(s)),
        None => StateLocation::Sqlite(default_state_path()),
    };
    let tz_name = raw.timezone.as_deref().unwrap_or("Asia/Shanghai");
    let timezone = tz_name.parse::<Tz>().unwrap_or_else(|_| {
        ctx.err::<()>(
            "daemon.timezone",
            format!("`{tz_name}` is not an IANA time zone like Asia/Shanghai"),
        );
        chrono_tz::Asia::Shanghai
    });
    let log_format = match raw.log_format.as_deref().unwrap_or("auto") {
        "auto" => LogFormat::Auto,
        "json" => LogFormat::Json,
        "pretty" => LogFormat::Pretty,
        "journald" => LogFormat::Journald,
        other => ctx
            .err(
                "daemon.log_format",
                format!("`{other}` is not one of auto, json, pretty, journald"),
            )
            .unwrap_or(LogFormat::Auto),
    };
    let tokens = daemon_tokens(ctx, raw.tokens, raw.tokens_file.as_ref());
    if tokens.is_empty() && !listen.ip().is_loopback() {
        ctx.err::<()>("daemon.tokens", format!("is required when daemon.listen ({listen}) is not a loopback address: anyone who can reach it could spend the clear budget"));
    }
    let shutdown_timeout = ctx.duration(
        "daemon.shutdown_timeout",
        raw.shutdown_timeout.as_deref(),
        Duration::from_secs(30),
    );
    let queue_capacity = count(
        ctx,
        "daemon.queue_capacity",
        raw.queue_capacity,
        10_000_000,
        10_000,
    );
    let max_connections = count(
        ctx,
        "daemon.max_connections",
        raw.max_connections,
        1_000_000,
        1024,
    );
    DaemonSettings {
        listen,
        state,
        timezone,
        log_format,
        tokens,
        shutdown_timeout,
        queue_capacity,
        max_connections,
    }
}

/// Refuses here what the PostgreSQL store would refuse at start (the URL, the
/// `sslrootcert` file), so that `check` fails where `run` would. The message
/// never quotes the URL: it may hold a password.
/// A count between 1 and `max`, `default` when unset.
fn count(ctx: &mut Ctx<'_>, key: &str, value: Option<i64>, max: i64, default: usize) -> usize {
    match value {
        None => default,
        Some(n) if (1..=max).contains(&n) => n as usize,
        Some(n) => ctx
            .err(key, format!("must be between 1 and {max}, got {n}"))
            .unwrap_or(default),
    }
}

fn postgres_target(ctx: &mut Ctx<'_>, url: &Secret) {
    use crate::store::postgres::{check_target, PgError, URL_SHAPE};
    match check_target(url) {
        Ok(()) => {}
        Err(PgError::Url) => {
            ctx.err::<()>(
                "daemon.state",
                format!("is not a valid PostgreSQL URL; expected {URL_SHAPE}"),
            );
        }
        Err(e) => {
            ctx.err::<()>("daemon.state", e.to_string());
        }
    }
}

/// `$STATE_DIRECTORY/quotawatch.db` under systemd, else `./quotawatch.db`.
fn default_state_path() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        // systemd may list several directories separated by colons.
        Some(dirs) if !dirs.is_empty() => {
            let first = dirs
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            PathBuf::from(first).join("quotawatch.db")
        }
        _ => PathBuf::from("quotawatch.db"),
    }
}

/// `tokens` and `tokens_file` (one token a line, `#` comments) together.
fn daemon_tokens(
    ctx: &mut Ctx<'_>,
    inline: Option<Vec<Secret>>,
    file: Option<&PathBuf>,
) -> Vec<Secret> {
    let mut tokens = inline.unwrap_or_default();
    if tokens.iter().any(Secret::is_empty) {
        ctx.err::<()>("daemon.tokens", "holds an empty token");
    }
    if let Some(path) = file {
        match ctx.resolver.read(path) {
            Ok(text) => tokens.extend(
                text.expose()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new),
            ),
            Err(e) => {
                ctx.err::<()>("daemon.tokens_file", e);
            }
        }
    }
    tokens
}

fn wechat(ctx: &mut Ctx<'_>, raw: RawWeChat) -> WeChatSettings {
    let base = raw
        .api_base
        .unwrap_or_else(|| "https://api.weixin.qq.com".to_string());
    http_url(ctx, "wechat.api_base", &base);
    let timeout = ctx.duration(
        "wechat.timeout",
        raw.timeout.as_deref(),
        Duration::from_secs(10),
    );
    if timeout.is_zero() {
        ctx.err::<()>("wechat.timeout", "must be more than zero");
    }
    WeChatSettings {
        api_base: base.trim_end_matches('/').to_string(),
        timeout,
    }
}

/// Checks that `url` parses as an http(s) URL, so that
/// [`super::secret::mask_userinfo`] finds its userinfo where the HTTP client
/// does. The error does not quote the value: a URL that does not parse may
/// hide a password where the mask cannot find it.
fn http_url(ctx: &mut Ctx<'_>, key: &str, url: &str) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
        _ => {
            ctx.err::<()>(key, "is not an http(s) URL like https://host:port/path");
        }
    }
}

/// Applies `raw` on top of `base` (the defaults, or `[policy]` for an account).
fn policy(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: &RawPolicy,
    base: &PolicySettings,
) -> PolicySettings {
    let k = |name: &str| format!("{prefix}.{name}");
    let prefer = match raw.prefer.as_deref() {
        None => base.prefer,
        Some("full") => Prefer::Full,
        Some("api") => Prefer::Api,
        Some(other) => ctx
            .err(&k("prefer"), format!("`{other}` is not one of full, api"))
            .unwrap_or(base.prefer),
    };
    let settings = PolicySettings {
        monthly_cap: ctx.range(&k("monthly_cap"), raw.monthly_cap, base.monthly_cap, 1, 10),
        cooldown: ctx.duration(&k("cooldown"), raw.cooldown.as_deref(), base.cooldown),
        daily_max: ctx.range(&k("daily_max"), raw.daily_max, base.daily_max, 1, 10),
        reset_guard: ctx.duration(
            &k("reset_guard"),
            raw.reset_guard.as_deref(),
            base.reset_guard,
        ),
        min_events: ctx.range(
            &k("min_events"),
            raw.min_events,
            base.min_events,
            1,
            1_000_000,
        ),
        window: ctx.duration(&k("window"), raw.window.as_deref(), base.window),
        budget_low: ctx.range(&k("budget_low"), raw.budget_low, base.budget_low, 0, 10),
        prefer,
        api_monthly_cap: ctx.range(
            &k("api_monthly_cap"),
            raw.api_monthly_cap,
            base.api_monthly_cap,
            1,
            50,
        ),
        dry_run: raw.dry_run.unwrap_or(base.dry_run),
        pacing: raw.pacing.unwrap_or(base.pacing),
    };
    if settings.reset_guard >= Duration::from_secs(24 * 3600) {
        ctx.err::<()>(&k("reset_guard"), "must be shorter than a day");
    }
    for (key, d) in [("cooldown", settings.cooldown), ("window", settings.window)] {
        if d > Duration::from_secs(366 * 24 * 3600) {
            ctx.err::<()>(&k(key), "must be at most a year");
        }
    }
    if settings.window.is_zero() {
        ctx.err::<()>(&k("window"), "must be more than zero");
    }
    settings
}

pub fn is_appid(s: &str) -> bool {
    s.len() == 18 && s.starts_with("wx") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn accounts(
    ctx: &mut Ctx<'_>,
    raw: BTreeMap<String, RawAccount>,
    defaults: &PolicySettings,
    notifiers: &BTreeMap<String, NotifierSpec>,
) -> BTreeMap<String, Arc<Account>> {
    // Components first: authorizers borrow their platform's appid and secret.
    let mut order: Vec<_> = raw.into_iter().collect();
    order.sort_by_key(|(_, a)| a.kind.as_deref() != Some("component"));
    let mut out: BTreeMap<String, Arc<Account>> = BTreeMap::new();
    let mut appids: BTreeMap<String, String> = BTreeMap::new();
    for (name, acc) in order {
        let p = format!("accounts.{name}");
        if !is_name(&name) {
            ctx.err::<()>(&p, "account names use letters, digits, '-' and '_'");
        }
        if let Some(account) = account(ctx, &p, &name, acc, defaults, notifiers, &out) {
            if let Some(other) = appids.insert(account.appid.clone(), name.clone()) {
                ctx.err::<()>(
                    &format!("{p}.appid"),
                    format!("is also the appid of account `{other}`"),
                );
            }
            out.insert(name, Arc::new(account));
        }
    }
    out
}

/// A source's reference to an account, by name or appid, before the
/// [`Config`] (and its appid index) exists.
fn find_account<'a>(
    accounts: &'a BTreeMap<String, Arc<Account>>,
    name_or_appid: &str,
) -> Option<&'a Arc<Account>> {
    accounts
        .get(name_or_appid)
        .or_else(|| accounts.values().find(|x| x.appid == name_or_appid))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn account(
    ctx: &mut Ctx<'_>,
    p: &str,
    name: &str,
    raw: RawAccount,
    defaults: &PolicySettings,
    notifiers: &BTreeMap<String, NotifierSpec>,
    known: &BTreeMap<String, Arc<Account>>,
) -> Option<Account> {
    let appid = ctx.required(&format!("{p}.appid"), raw.appid.clone())?;
    if !is_appid(&appid) {
        ctx.err::<()>(
            &format!("{p}.appid"),
            format!("`{appid}` is not an appid (wx followed by 16 hex digits)"),
        );
    }
    let kind = match raw.kind.as_deref() {
        Some("official_account") => AccountKind::OfficialAccount,
        Some("mini_program") => AccountKind::MiniProgram,
        Some("component") => AccountKind::Component,
        Some("authorizer") => AccountKind::Authorizer,
        Some(other) => {
            return ctx.err(
                &format!("{p}.kind"),
                format!(
                    "`{other}` is not one of official_account, mini_program, component, authorizer"
                ),
            )
        }
        None => {
            return ctx.err(
                &format!("{p}.kind"),
                "is required (official_account, mini_program, component or authorizer)",
            )
        }
    };
    for n in raw.notify.iter().flatten() {
        if !notifiers.contains_key(n) {
            ctx.err::<()>(
                &format!("{p}.notify"),
                format!("names notifier `{n}`, which is not in [notifiers]"),
            );
        }
    }
    let policy = policy(ctx, &format!("{p}.policy"), &raw.policy, defaults);
    let credential = credential(ctx, p, kind, &raw, known)?;
    let fingerprint = fingerprint(&appid, kind, &credential);
    Some(Account {
        name: name.to_string(),
        appid,
        kind,
        credential,
        notify: raw.notify.unwrap_or_default(),
        policy,
        fingerprint,
    })
}

/// Exactly one credential source per account; `component` only for authorizers.
fn credential(
    ctx: &mut Ctx<'_>,
    p: &str,
    kind: AccountKind,
    raw: &RawAccount,
    known: &BTreeMap<String, Arc<Account>>,
) -> Option<Credential> {
    let secret = ctx.secret(
        &format!("{p}.secret"),
        raw.secret.clone(),
        raw.secret_file.as_ref(),
    );
    let mut sources = Vec::new();
    if raw.secret.is_some() || raw.secret_file.is_some() {
        sources.push("secret");
    }
    if raw.token_file.is_some() {
        sources.push("token_file");
    }
    if raw.token_command.is_some() {
        sources.push("token_command");
    }
    if raw.component.is_some() {
        if kind != AccountKind::Authorizer {
            return ctx.err(
                &format!("{p}.component"),
                "only an account of kind = \"authorizer\" has a managing component",
            );
        }
        sources.push("component");
    }
    if sources.len() != 1 {
        let found = if sources.is_empty() {
            "none".to_string()
        } else {
            sources.join(", ")
        };
        return ctx.err(p, format!("needs exactly one credential: secret (or secret_file), token_file, token_command{}; found {found}", if kind == AccountKind::Authorizer { " or component" } else { "" }));
    }
    match sources[0] {
        "secret" => secret.map(Credential::Secret),
        "token_file" => raw
            .token_file
            .clone()
            .map(|f| Credential::TokenFile(ctx.resolver.path(&f))),
        "token_command" => match raw.token_command.clone() {
            Some(cmd) if !cmd.is_empty() && !cmd[0].is_empty() => {
                Some(Credential::TokenCommand(cmd))
            }
            _ => ctx.err(
                &format!("{p}.token_command"),
                "must name a program: [\"/path/to/program\", \"arg\", ...]",
            ),
        },
        _ => component_credential(ctx, p, raw.component.as_deref().unwrap_or_default(), known),
    }
}

fn component_credential(
    ctx: &mut Ctx<'_>,
    p: &str,
    component: &str,
    known: &BTreeMap<String, Arc<Account>>,
) -> Option<Credential> {
    let key = format!("{p}.component");
    let Some(platform) = known.get(component) else {
        return ctx.err(&key, format!("names account `{component}`, which is not a configured account of kind = \"component\""));
    };
    match (&platform.kind, &platform.credential) {
        (AccountKind::Component, Credential::Secret(secret)) => Some(Credential::Component {
            name: component.to_string(),
            component_appid: platform.appid.clone(),
            secret: secret.clone(),
        }),
        (AccountKind::Component, _) => ctx.err(&key, format!("component `{component}` needs a secret to clear for its authorizers; give this account its own token_file or token_command instead")),
        _ => ctx.err(&key, format!("account `{component}` is not of kind = \"component\"")),
    }
}

fn fingerprint(appid: &str, kind: AccountKind, credential: &Credential) -> String {
    let mut h = Sha256::new();
    h.update(appid.as_bytes());
    h.update(format!("{kind:?}").as_bytes());
    match credential {
        Credential::Secret(s) => h.update(s.expose().as_bytes()),
        Credential::TokenFile(p) => h.update(p.to_string_lossy().as_bytes()),
        Credential::TokenCommand(c) => h.update(c.join("\0").as_bytes()),
        Credential::Component {
            component_appid,
            secret,
            ..
        } => {
            h.update(component_appid.as_bytes());
            h.update(secret.expose().as_bytes());
        }
    }
    hex::encode(&h.finalize()[..8])
}

fn notifiers(
    ctx: &mut Ctx<'_>,
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

fn notifier(ctx: &mut Ctx<'_>, p: &str, name: &str, raw: RawNotifier) -> Option<NotifierSpec> {
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

fn sources(
    ctx: &mut Ctx<'_>,
    raw: BTreeMap<String, RawSource>,
    accounts: &BTreeMap<String, Arc<Account>>,
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
    ctx: &mut Ctx<'_>,
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
    ctx: &mut Ctx<'_>,
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

fn regex(ctx: &mut Ctx<'_>, key: &str, text: &str) -> Option<regex::Regex> {
    match regex::Regex::new(text) {
        Ok(r) => Some(r),
        Err(e) => ctx.err(key, format!("is not a valid regular expression: {e}")),
    }
}

fn schedule(ctx: &mut Ctx<'_>, key: &str, value: Option<String>, default: &str) -> String {
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
    ctx: &mut Ctx<'_>,
    p: &str,
    name: &str,
    raw: RawLogFile,
    accounts: &BTreeMap<String, Arc<Account>>,
) -> Option<SourceSpec> {
    let path = ctx.required(&format!("{p}.path"), raw.path);
    let pattern = ctx
        .required(&format!("{p}.pattern"), raw.pattern)
        .and_then(|t| regex(ctx, &format!("{p}.pattern"), &t));
    let account = match (raw.account_pattern, raw.account) {
        (Some(_), Some(_)) => ctx.err(p, "set either account_pattern or account, not both"),
        (None, None) => ctx.err(
            p,
            "needs account_pattern (a regex whose first group is an appid or name) or account",
        ),
        (Some(t), None) => {
            let key = format!("{p}.account_pattern");
            match regex(ctx, &key, &t) {
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

fn prometheus(ctx: &mut Ctx<'_>, p: &str, name: &str, raw: RawPrometheus) -> Option<SourceSpec> {
    let url = ctx.required(&format!("{p}.url"), raw.url);
    if let Some(u) = &url {
        http_url(ctx, &format!("{p}.url"), u);
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
    ctx: &mut Ctx<'_>,
    p: &str,
    name: &str,
    raw: RawWeChatQuota,
    accounts: &BTreeMap<String, Arc<Account>>,
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
