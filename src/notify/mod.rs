//! Chat notifiers: WeCom, DingTalk, Feishu, Slack, Discord and plain webhooks.
//!
//! [`Notifiers::start`] builds one delivery task per `[notifiers.NAME]`;
//! [`Notifiers::publish`] routes an [`Event`] to the notifiers that list its kind
//! and that the account routes to, without ever blocking the caller (a slow chat
//! platform must not delay a clear). Each task renders the message in its
//! notifier's language ([`render`]), respects the platform's rate limit by
//! folding the overflow into one digest message, and retries within bounds
//! ([`delivery`]). This module does not decide which events happen (the clearer
//! does) nor when `budget_low` fires.
//!
//! # Layout
//!
//! - this file: the two traits every chat platform implements, [`Platform`]
//!   (requests and answers) and [`PlatformConfig`] (its own keys, their
//!   checks, its build); the registration list; the hub ([`Notifiers`]) with
//!   routing and the `skipped` rate limit; [`send_test`].
//! - [`config`]: the keys every notifier shares, checked once into a
//!   [`NotifierSpec`], and the macro behind the registration list.
//! - [`render`]: message text in Chinese and English, truncation.
//! - [`delivery`]: the per-notifier queue, rate limiter, digest, retries.
//! - [`sign`]: DingTalk, Feishu and Standard Webhooks signatures.
//! - one file per platform, all of the same shape (its config struct, their
//!   checks, its build, its requests and answers): [`wecom`], [`dingtalk`],
//!   [`feishu`], [`slack`], [`discord`], [`webhook`].
//!
//! To add a platform, copy a sibling's file to `NAME.rs` (`NAME` becomes its
//! `type`) and add one line, `Name(NAME::NameConfig),`, to the list below;
//! the list declares the module too. `throwaway.rs`, a platform of the tests
//! only, is added that way.
//!
//! # Metrics
//!
//! `quotawatch_notifications_total{notifier,outcome}` counts, per notifier:
//!
//! | outcome | counts | when |
//! |---|---|---|
//! | `sent` | messages | the platform accepted a message (one event, a digest or a test) |
//! | `failed` | messages | given up: retries exhausted, or a non-retryable refusal |
//! | `retried` | attempts | a 5xx, 429, timeout or connection error is retried |
//! | `config_error` | messages | the platform rejected the notifier's URL, signature or keyword; not retried |
//! | `digested` | events | held back by the rate limit or a full queue and folded into the next digest |
//! | `dropped` | events | lost: published after shutdown, or still queued when the shutdown timeout ran out |
//! | `rate_limited_skip` | events | a `skipped` event suppressed by `skipped_interval` for its account and reason |

pub mod config;
pub mod delivery;
pub mod render;
pub mod sign;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::event::{Event, EventKind};
use crate::metrics::Metrics;
use crate::policy::SkipReason;
use crate::settings::Checker;

pub use config::{validate, NotifierConfig, NotifierSpec};
pub use delivery::{HttpTransport, Reply, Transport, TransportError, Tuning};
pub use render::{Language, Message, Renderer};

/// What every notifier needs from the daemon.
#[derive(Clone)]
pub struct NotifyContext {
    pub metrics: Arc<Metrics>,
    /// Shown in every message, so people know which replica spoke.
    pub hostname: String,
    /// `daemon.timezone`, for the times in messages.
    pub timezone: chrono_tz::Tz,
    pub http: reqwest::Client,
}

/// Why a message did not get through, for `notify-test` and logs.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The platform rejected the notifier's configuration (URL key, signature,
    /// keyword, IP allow-list): retrying cannot help, the config must change.
    #[error("the chat platform rejected the notifier's configuration: {0}")]
    Config(String),
    /// The platform refused this message.
    #[error("the chat platform refused the message: {0}")]
    Rejected(String),
    /// The platform is overloaded or rate limiting (5xx, 429); worth retrying.
    #[error("the chat platform is unavailable: {0}")]
    Unavailable(String),
    /// No answer: timeout or connection error. Never contains the URL.
    #[error("could not reach the chat platform: {0}")]
    Transport(String),
}

/// What a message stands for.
#[derive(Debug, Clone)]
pub enum Content {
    Event(Box<Event>),
    /// Events folded by a rate limit: the first few, and how many in all.
    Digest {
        events: Vec<Event>,
        total: usize,
    },
    /// `quotawatch notify-test`.
    Test,
}

/// One message on its way out, the input of [`Platform::request`].
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Stays the same across retries (the Standard Webhooks `webhook-id`, so a
    /// receiver can drop duplicates).
    pub id: String,
    pub message: Message,
    pub content: Content,
    pub hostname: String,
}

/// One HTTP POST, ready to send. No `Debug`: the URL holds the platform key.
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// JSON; the exact bytes a signature covers.
    pub body: Vec<u8>,
}

impl Outgoing {
    pub fn json(url: String, body: &serde_json::Value) -> Self {
        let body = serde_json::to_vec(body).expect("a JSON value serialises");
        Self {
            url,
            headers: Vec::new(),
            body,
        }
    }
}

/// What a platform's answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Sent,
    /// Worth another attempt, after the platform's requested delay if it gave one.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    Rejected(String),
    ConfigError(String),
}

/// A window of a platform's rate limit: at most `max` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub max: usize,
    pub per: Duration,
}

/// A chat platform: how to build its request and read its answer. One file per
/// platform implements it; adding a platform is copying one of them.
pub trait Platform: Send + Sync {
    /// The published send rate for one webhook URL.
    fn rate_limit(&self) -> &'static [Window];
    /// The signed request for one message at `now` (signatures carry a
    /// timestamp, so a retry builds a fresh one).
    fn request(&self, out: &Outbound, now: DateTime<Utc>) -> Outgoing;
    fn classify(&self, reply: &Reply) -> Verdict;
}

/// A platform's own keys in `[notifiers.NAME]`, beside the shared ones of
/// [`config`]: a serde struct that denies unknown keys, its checks, and how
/// the [`Platform`] is built from them.
pub trait PlatformConfig: serde::de::DeserializeOwned {
    /// The keys once checked, as `quotawatch check` prints them; the default
    /// is a notifier that sets none of them.
    type Settings: std::fmt::Debug + Clone + Default + serde::Serialize;
    /// `key` is the notifier's table, `notifiers.NAME`.
    fn validate(self, ck: &mut Checker<'_>, key: &str) -> Self::Settings;
    fn build(settings: &Self::Settings, spec: &NotifierSpec) -> Box<dyn Platform>;
}

// The registration list: one line per platform (see the module docs).
config::platforms! {
    Wecom(wecom::WeComConfig),
    Dingtalk(dingtalk::DingTalkConfig),
    Feishu(feishu::FeishuConfig),
    Slack(slack::SlackConfig),
    Discord(discord::DiscordConfig),
    Webhook(webhook::WebhookConfig),
    #[cfg(test)]
    Throwaway(throwaway::ThrowawayConfig),
}

/// The HTTP-level reading shared by all platforms: `None` for a 2xx, whose body
/// the platform still has to check.
pub fn classify_status(reply: &Reply) -> Option<Verdict> {
    let why = || format!("HTTP {}: {}", reply.status, reply.snippet());
    match reply.status {
        200..=299 => None,
        429 | 500..=599 => Some(Verdict::Retry {
            after: reply.retry_after,
            why: why(),
        }),
        _ => Some(Verdict::Rejected(why())),
    }
}

/// For Slack, Discord and plain webhooks a wrong, revoked or unauthorised URL
/// shows as one of these statuses rather than as an error code in a body.
pub fn classify_status_config(reply: &Reply) -> Option<Verdict> {
    match reply.status {
        401 | 403 | 404 | 410 => Some(Verdict::ConfigError(format!(
            "HTTP {}: {}",
            reply.status,
            reply.snippet()
        ))),
        _ => classify_status(reply),
    }
}

/// How a platform judges a non-zero code in its JSON answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeClass {
    Retry,
    Config,
    Reject,
}

/// For platforms that answer JSON with a code (WeCom, DingTalk, Feishu): 0 in
/// a 2xx is success, even a 200 with another code is not, and `judge` says what
/// that code means. The first of `code_keys` present is the code.
pub fn classify_coded(
    reply: &Reply,
    code_keys: &[&str],
    msg_key: &str,
    judge: fn(i64) -> CodeClass,
) -> Verdict {
    if let Some(retry @ Verdict::Retry { .. }) = classify_status(reply) {
        return retry;
    }
    let json = reply.json();
    let code = json
        .as_ref()
        .and_then(|j| code_keys.iter().find_map(|k| j.get(*k)?.as_i64()));
    let Some(code) = code else {
        return classify_status(reply).unwrap_or_else(|| {
            Verdict::Rejected(format!("unreadable answer: {}", reply.snippet()))
        });
    };
    if code == 0 && (200..300).contains(&reply.status) {
        return Verdict::Sent;
    }
    let msg = json
        .as_ref()
        .and_then(|j| j.get(msg_key)?.as_str())
        .unwrap_or_default();
    let why = format!("code {code}: {msg}");
    match judge(code) {
        CodeClass::Retry => Verdict::Retry {
            after: reply.retry_after,
            why,
        },
        CodeClass::Config => Verdict::ConfigError(why),
        CodeClass::Reject => Verdict::Rejected(why),
    }
}

/// A random message id in the style Standard Webhooks uses.
pub fn message_id() -> String {
    format!("msg_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

/// Sends one test message through the notifier now (no queue, no retries) and
/// returns the platform's answer, or why it failed.
pub async fn send_test(spec: &NotifierSpec, ctx: &NotifyContext) -> Result<String, NotifyError> {
    let renderer = Renderer {
        language: spec.language,
        hostname: ctx.hostname.clone(),
        timezone: ctx.timezone,
    };
    let now = Utc::now();
    let out = Outbound {
        id: message_id(),
        message: renderer.test(&spec.name, now),
        content: Content::Test,
        hostname: ctx.hostname.clone(),
    };
    let platform = spec.build();
    let transport = HttpTransport::new(ctx.http.clone());
    let request = platform.request(&out, now);
    let reply = tokio::time::timeout(Tuning::default().request_timeout, transport.post(request))
        .await
        .map_err(|_| NotifyError::Transport("timed out".into()))?
        .map_err(|e| NotifyError::Transport(e.to_string()))?;
    let answer = format!("HTTP {}: {}", reply.status, reply.snippet());
    match platform.classify(&reply) {
        Verdict::Sent => Ok(answer),
        Verdict::Retry { .. } => Err(NotifyError::Unavailable(answer)),
        Verdict::Rejected(_) => Err(NotifyError::Rejected(answer)),
        Verdict::ConfigError(_) => Err(NotifyError::Config(answer)),
    }
}

/// The running notifiers. Cheap to clone; clones share the tasks.
#[derive(Clone)]
pub struct Notifiers {
    hub: Arc<Hub>,
}

struct Hub {
    routes: Vec<Route>,
    metrics: Arc<Metrics>,
    /// The delivery tasks, so shutdown can wait for them to drain.
    tracker: TaskTracker,
    /// Stops the tasks when the shutdown timeout runs out.
    cancel: CancellationToken,
}

/// One notifier as the router sees it.
struct Route {
    name: String,
    events: Vec<EventKind>,
    skipped_interval: Duration,
    /// When a `skipped` message last went out per account and reason: a storm
    /// of alerts for a cooling-down account must not become a storm of messages.
    last_skipped: Mutex<HashMap<(String, SkipReason), Instant>>,
    inbox: Arc<delivery::Inbox>,
}

impl Notifiers {
    /// Starts one delivery task per notifier. Must run inside a tokio runtime.
    pub fn start(specs: &BTreeMap<String, NotifierSpec>, ctx: NotifyContext) -> Self {
        let transport = Arc::new(HttpTransport::new(ctx.http.clone()));
        Self::start_with(specs, ctx, transport, Tuning::default())
    }

    /// [`Notifiers::start`] with another transport and timings, for tests.
    pub fn start_with(
        specs: &BTreeMap<String, NotifierSpec>,
        ctx: NotifyContext,
        transport: Arc<dyn Transport>,
        tuning: Tuning,
    ) -> Self {
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let routes = specs
            .values()
            .map(|spec| {
                let inbox = Arc::new(delivery::Inbox::new(tuning.queue_capacity));
                let task = delivery::Delivery::new(
                    spec,
                    &ctx,
                    inbox.clone(),
                    transport.clone(),
                    tuning.clone(),
                    cancel.clone(),
                );
                tracker.spawn(task.run());
                Route {
                    name: spec.name.clone(),
                    events: spec.events.clone(),
                    skipped_interval: spec.skipped_interval,
                    last_skipped: Mutex::default(),
                    inbox,
                }
            })
            .collect();
        tracker.close();
        Self {
            hub: Arc::new(Hub {
                routes,
                metrics: ctx.metrics,
                tracker,
                cancel,
            }),
        }
    }

    /// Routes the event to every notifier that lists its kind (`skipped` also
    /// selects dry runs) and is in `event.route` (empty: all). Never blocks,
    /// never fails.
    pub fn publish(&self, event: &Event) {
        for route in &self.hub.routes {
            if !route.wants(event) {
                continue;
            }
            if event.kind == EventKind::Skipped && route.skipped_recently(event) {
                self.hub
                    .metrics
                    .notification(&route.name, "rate_limited_skip");
                continue;
            }
            if let Some(outcome) = route.inbox.push(event.clone()) {
                self.hub.metrics.notification(&route.name, outcome);
            }
        }
    }

    /// Stops accepting events, gives the queues up to `timeout` to drain (at
    /// the platforms' rate limits, as one digest each), then stops the tasks.
    pub async fn shutdown(&self, timeout: Duration) {
        for route in &self.hub.routes {
            route.inbox.close();
        }
        if tokio::time::timeout(timeout, self.hub.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(timeout = %humantime::format_duration(timeout), "Notification queues did not drain in time; dropping the rest");
            self.hub.cancel.cancel();
            // Cancellation is observed at every await of the tasks; the bound is
            // only a guard against a platform call that ignores it.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.hub.tracker.wait()).await;
        }
    }
}

impl Route {
    fn wants(&self, event: &Event) -> bool {
        event.kind.is_selected_by(&self.events)
            && (event.route.is_empty() || event.route.contains(&self.name))
    }

    /// Records the send when it is allowed, so the check is also the update.
    fn skipped_recently(&self, event: &Event) -> bool {
        let Some(reason) = event.skip_reason else {
            return false;
        };
        let now = Instant::now();
        let mut last = self.last_skipped.lock().unwrap_or_else(|e| e.into_inner());
        let key = (event.account.clone(), reason);
        if matches!(last.get(&key), Some(t) if now.duration_since(*t) < self.skipped_interval) {
            return true;
        }
        // Entries older than the interval decide nothing; dropping them keeps
        // the map as small as the set of recently skipped accounts.
        last.retain(|_, t| now.duration_since(*t) < self.skipped_interval);
        last.insert(key, now);
        false
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders shared by the platform and delivery tests.

    use super::*;
    use crate::secret::Secret;

    /// A notifier "ops" of the platform `platform` that sends every event in
    /// English.
    pub fn spec(platform: PlatformSettings, url: &str) -> NotifierSpec {
        NotifierSpec {
            name: "ops".into(),
            platform,
            url: Secret::new(url),
            events: EventKind::ALL.to_vec(),
            language: Language::En,
            skipped_interval: Duration::from_secs(3600),
        }
    }

    pub fn outbound(kind: EventKind, language: Language) -> Outbound {
        let event = render::tests::sample(kind);
        Outbound {
            id: "msg_test".into(),
            message: render::tests::renderer(language).event(&event),
            content: Content::Event(Box::new(event)),
            hostname: "qw-host-1".into(),
        }
    }

    /// A failure whose errmsg is far longer than any platform allows.
    pub fn oversized(language: Language) -> Outbound {
        let mut out = outbound(EventKind::Failed, language);
        let long = "錯".repeat(5000) + &"x".repeat(5000);
        out.message.lines.push(long);
        out
    }

    pub fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    pub fn body(request: &Outgoing) -> serde_json::Value {
        serde_json::from_slice(&request.body).expect("JSON body")
    }

    pub fn now() -> DateTime<Utc> {
        chrono::TimeZone::timestamp_opt(&Utc, 1_700_000_000, 0).unwrap()
    }

    /// One scripted answer of [`FakeTransport`].
    pub enum Step {
        Reply(Reply),
        /// Never answers.
        Hang,
    }

    /// Records every request and answers from a script, then with a 200 that
    /// every platform reads as success.
    #[derive(Default)]
    pub struct FakeTransport {
        script: Mutex<std::collections::VecDeque<Step>>,
        posts: Mutex<Vec<(Instant, serde_json::Value)>>,
    }

    impl FakeTransport {
        pub fn new(script: Vec<Step>) -> Arc<Self> {
            Arc::new(Self {
                script: Mutex::new(script.into()),
                posts: Mutex::default(),
            })
        }

        pub fn posts(&self) -> Vec<(Instant, serde_json::Value)> {
            self.posts.lock().unwrap().clone()
        }

        /// Waits (real time) until `n` requests arrived, or panics.
        pub async fn wait_for(
            &self,
            n: usize,
            within: Duration,
        ) -> Vec<(Instant, serde_json::Value)> {
            let deadline = Instant::now() + within;
            while self.posts.lock().unwrap().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "expected {n} requests, got {}",
                    self.posts().len()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.posts()
        }
    }

    #[async_trait::async_trait]
    impl Transport for FakeTransport {
        async fn post(&self, request: Outgoing) -> Result<Reply, TransportError> {
            self.posts
                .lock()
                .unwrap()
                .push((Instant::now(), body(&request)));
            let step = self.script.lock().unwrap().pop_front();
            match step {
                Some(Step::Reply(reply)) => Ok(reply),
                Some(Step::Hang) => std::future::pending().await,
                None => Ok(reply(200, r#"{"errcode":0,"errmsg":"ok","code":0}"#)),
            }
        }
    }

    pub fn context(metrics: Arc<Metrics>) -> NotifyContext {
        NotifyContext {
            metrics,
            hostname: "qw-host-1".into(),
            timezone: chrono_tz::Asia::Shanghai,
            http: reqwest::Client::new(),
        }
    }

    /// Starts one notifier named "ops" on a fake transport.
    pub fn start(
        spec: NotifierSpec,
        tuning: Tuning,
        script: Vec<Step>,
    ) -> (Notifiers, Arc<FakeTransport>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let transport = FakeTransport::new(script);
        let specs = BTreeMap::from([(spec.name.clone(), spec)]);
        let notifiers =
            Notifiers::start_with(&specs, context(metrics.clone()), transport.clone(), tuning);
        (notifiers, transport, metrics)
    }

    pub fn count(metrics: &Metrics, notifier: &str, outcome: &str) -> u64 {
        metrics
            .notifications
            .get_or_create(&vec![
                ("notifier", notifier.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .get()
    }

    /// Waits (real time) until the counter reaches `n`, or panics.
    pub async fn wait_count(metrics: &Metrics, notifier: &str, outcome: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while count(metrics, notifier, outcome) < n {
            assert!(
                Instant::now() < deadline,
                "{outcome} stayed at {}",
                count(metrics, notifier, outcome)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::event::EventKind;
    use render::tests::sample;

    fn webhook() -> NotifierSpec {
        spec(
            NotifierKind::Webhook.default_settings(),
            "http://127.0.0.1:9/hook",
        )
    }

    /// The registration list names each platform's module; `type` names
    /// the platform as serde spells its variant. The two must agree.
    #[test]
    fn a_platforms_type_is_its_files_name() {
        for &kind in NotifierKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
            let printed = serde_json::to_value(kind.default_settings()).unwrap();
            assert_eq!(printed["kind"], kind.name());
            assert_eq!(kind.default_settings().kind(), kind);
        }
    }

    #[tokio::test]
    async fn only_listed_events_are_sent() {
        let mut s = webhook();
        s.events = vec![EventKind::Failed];
        let (n, t, _) = start(s, Tuning::default(), vec![]);
        n.publish(&sample(EventKind::Cleared));
        n.publish(&sample(EventKind::Failed));
        n.shutdown(Duration::from_secs(2)).await;
        let posts = t.posts();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].1["kind"], "failed");
    }

    /// A dry run is a skip with reason `dry_run` (SPEC section 5): the SPEC's
    /// example list, which names `skipped` and not `dry_run`, receives it.
    #[tokio::test]
    async fn skipped_or_dry_run_in_events_selects_dry_runs() {
        use EventKind::*;
        let spec_example = vec![Cleared, Failed, Skipped, BudgetLow, Exhausted, ConfigError];
        for (events, want) in [
            (spec_example, vec!["dry_run", "skipped"]),
            (vec![DryRun], vec!["dry_run"]),
            (vec![Cleared, Failed], vec![]),
        ] {
            let mut s = webhook();
            s.events = events.clone();
            let (n, t, _) = start(s, Tuning::default(), vec![]);
            n.publish(&sample(DryRun));
            n.publish(&sample(Skipped));
            n.shutdown(Duration::from_secs(2)).await;
            let kinds: Vec<_> = t.posts().iter().map(|(_, b)| b["kind"].clone()).collect();
            assert_eq!(kinds, want, "events = {events:?}");
        }
    }

    #[tokio::test]
    async fn the_route_picks_notifiers() {
        let metrics = Arc::new(Metrics::new());
        let transport = FakeTransport::new(vec![]);
        let mut other = webhook();
        other.name = "other".into();
        let specs = BTreeMap::from([("ops".to_string(), webhook()), ("other".to_string(), other)]);
        let n = Notifiers::start_with(
            &specs,
            context(metrics.clone()),
            transport.clone(),
            Tuning::default(),
        );
        let mut ev = sample(EventKind::Cleared);
        ev.route = vec!["other".into()];
        n.publish(&ev);
        ev.route = vec![];
        n.publish(&ev);
        n.shutdown(Duration::from_secs(2)).await;
        assert_eq!(transport.posts().len(), 3);
        assert_eq!(count(&metrics, "ops", "sent"), 1);
        assert_eq!(count(&metrics, "other", "sent"), 2);
    }

    #[tokio::test]
    async fn skipped_is_limited_per_account_and_reason() {
        let mut s = webhook();
        s.skipped_interval = Duration::from_millis(300);
        let (n, t, m) = start(s, Tuning::default(), vec![]);
        let skipped = |account: &str, reason: SkipReason| {
            let mut ev = sample(EventKind::Skipped);
            ev.account = account.into();
            ev.skip_reason = Some(reason);
            ev
        };
        for _ in 0..3 {
            n.publish(&skipped("shop", SkipReason::Cooldown));
        }
        n.publish(&skipped("shop", SkipReason::DailyMax));
        n.publish(&skipped("blog", SkipReason::Cooldown));
        assert_eq!(count(&m, "ops", "rate_limited_skip"), 2);
        tokio::time::sleep(Duration::from_millis(350)).await;
        n.publish(&skipped("shop", SkipReason::Cooldown));
        n.shutdown(Duration::from_secs(2)).await;
        assert_eq!(count(&m, "ops", "rate_limited_skip"), 2);
        let accounts: Vec<_> = t
            .posts()
            .iter()
            .map(|(_, b)| (b["account"].clone(), b["skip_reason"].clone()))
            .collect();
        assert_eq!(accounts.len(), 4, "{accounts:?}");
    }

    #[tokio::test]
    async fn publish_after_shutdown_is_counted_as_dropped() {
        let (n, t, m) = start(webhook(), Tuning::default(), vec![]);
        n.shutdown(Duration::from_secs(1)).await;
        n.publish(&sample(EventKind::Cleared));
        assert_eq!(count(&m, "ops", "dropped"), 1);
        assert!(t.posts().is_empty());
    }
}
