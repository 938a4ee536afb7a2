//! Delivery: one bounded queue and one task per notifier.
//!
//! The task renders each event, waits for the platform's rate limit, sends, and
//! retries 5xx, 429 and timeouts with bounded exponential backoff (the one
//! place retries live). An event that arrives while the limit holds is folded
//! into a digest, sent as one message at the next free slot, so a storm never
//! turns into silence nor into a ban. This module does not know what any
//! platform's request looks like; that is [`super::Platform`]'s job.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::render::Renderer;
use super::{
    message_id, Content, NotifierSpec, NotifyContext, Outbound, Outgoing, Platform, Verdict, Window,
};
use crate::event::Event;
use crate::metrics::Metrics;

/// Timings and sizes of delivery; the defaults are the daemon's.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Events a notifier queues before further ones go straight to the digest.
    pub queue_capacity: usize,
    /// One HTTP attempt, connection to last byte.
    pub request_timeout: Duration,
    /// Attempts per message, the first included.
    pub max_attempts: u32,
    /// The first retry's delay; each further retry doubles it.
    pub backoff_base: Duration,
    /// Cap on our own backoff, when the platform named no delay.
    pub max_delay: Duration,
    /// Cap on a delay the platform asked for (`Retry-After`, Discord's
    /// `retry_after`). Retrying sooner only collects more 429s, and Discord
    /// asks for minutes at times; the bound keeps one message from holding
    /// the queue for hours. Events that arrive meanwhile wait in the queue and
    /// leave as one digest, so the wait adds no messages.
    pub max_platform_delay: Duration,
}

impl Tuning {
    /// The wait before the retry that follows `attempt` (1-based).
    pub fn retry_delay(&self, platform: Option<Duration>, attempt: u32) -> Duration {
        match platform {
            Some(asked) => asked.min(self.max_platform_delay),
            None => self
                .backoff_base
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(self.max_delay),
        }
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            request_timeout: Duration::from_secs(10),
            max_attempts: 4,
            backoff_base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_platform_delay: Duration::from_secs(15 * 60),
        }
    }
}

/// A platform's HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// The `Retry-After` header, when there was a readable one.
    pub retry_after: Option<Duration>,
    pub body: String,
}

impl Reply {
    /// The start of the body, for logs and errors.
    pub fn snippet(&self) -> String {
        super::render::truncate(self.body.trim(), super::render::Limit::Chars(300)).into_owned()
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// No answer: the request timed out or the connection failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's message includes the URL, and the URL holds the platform key.
        Self(crate::error_chain::display(&e.without_url()))
    }
}

/// Sends one request. The real one is [`HttpTransport`]; tests use fakes.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn post(&self, request: Outgoing) -> Result<Reply, TransportError>;
}

/// Chat webhooks over reqwest.
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn post(&self, request: Outgoing) -> Result<Reply, TransportError> {
        let mut builder = self
            .client
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response.text().await?;
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

/// `Retry-After` is delay-seconds or an HTTP date (RFC 9110); some servers
/// send fractional seconds.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Events folded into one message: the first ones in full, the rest counted.
#[derive(Debug, Default)]
pub struct Digest {
    events: Vec<Event>,
    total: usize,
}

/// Events a digest keeps in full (the webhook sends them all; chat messages
/// list fewer).
const DIGEST_KEEP: usize = 100;

impl Digest {
    pub fn fold(&mut self, event: Event) {
        if self.events.len() < DIGEST_KEEP {
            self.events.push(event);
        }
        self.total += 1;
    }

    fn merge(&mut self, other: Digest) {
        let room = DIGEST_KEEP.saturating_sub(self.events.len());
        self.events.extend(other.events.into_iter().take(room));
        self.total += other.total;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// The sliding-window rate limit of one platform URL. A send counts whether or
/// not it succeeds: platforms count requests.
#[derive(Debug)]
pub struct Limiter {
    windows: &'static [Window],
    sent: VecDeque<Instant>,
}

impl Limiter {
    pub fn new(windows: &'static [Window]) -> Self {
        Self {
            windows,
            sent: VecDeque::new(),
        }
    }

    /// The earliest instant at or after `now` when one more send is allowed:
    /// for each window of `max` per `per`, the `max`-th most recent send must
    /// be `per` old.
    pub fn ready_at(&self, now: Instant) -> Instant {
        let n = self.sent.len();
        self.windows
            .iter()
            .filter(|w| n >= w.max)
            .map(|w| self.sent[n - w.max] + w.per)
            .fold(now, Instant::max)
    }

    pub fn is_ready(&self, now: Instant) -> bool {
        self.ready_at(now) <= now
    }

    pub fn record(&mut self, at: Instant) {
        self.sent.push_back(at);
        let keep = self.windows.iter().map(|w| w.max).max().unwrap_or(0);
        while self.sent.len() > keep {
            self.sent.pop_front();
        }
    }
}

/// The queue between [`super::Notifiers::publish`] and one notifier's task.
pub struct Inbox {
    state: Mutex<InboxState>,
    wake: Notify,
    capacity: usize,
}

#[derive(Default)]
struct InboxState {
    queue: Vec<Event>,
    /// Events that found the queue full: already folded, so nothing is lost.
    overflow: Digest,
    closed: bool,
}

impl Inbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            wake: Notify::new(),
            capacity,
        }
    }

    // A poisoned lock only means a panic elsewhere; the queue itself is intact.
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the event; returns the metric outcome when it was not simply
    /// queued ("digested" when full, "dropped" after shutdown).
    pub fn push(&self, event: Event) -> Option<&'static str> {
        let mut st = self.lock();
        let outcome = if st.closed {
            Some("dropped")
        } else if st.queue.len() < self.capacity {
            st.queue.push(event);
            None
        } else {
            st.overflow.fold(event);
            Some("digested")
        };
        drop(st);
        self.wake.notify_one();
        outcome
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    fn take(&self) -> (Vec<Event>, Digest, bool) {
        let mut st = self.lock();
        (
            std::mem::take(&mut st.queue),
            std::mem::take(&mut st.overflow),
            st.closed,
        )
    }
}

/// The shutdown timeout ran out.
struct Cancelled;

/// One notifier's delivery task.
pub struct Delivery {
    name: String,
    platform: Box<dyn Platform>,
    renderer: Renderer,
    transport: Arc<dyn Transport>,
    inbox: Arc<Inbox>,
    limiter: Limiter,
    digest: Digest,
    tuning: Tuning,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Delivery {
    pub fn new(
        spec: &NotifierSpec,
        ctx: &NotifyContext,
        inbox: Arc<Inbox>,
        transport: Arc<dyn Transport>,
        tuning: Tuning,
        cancel: CancellationToken,
    ) -> Self {
        let platform = spec.build();
        let limiter = Limiter::new(platform.rate_limit());
        let renderer = Renderer {
            language: spec.language,
            hostname: ctx.hostname.clone(),
            timezone: ctx.timezone,
        };
        Self {
            name: spec.name.clone(),
            platform,
            renderer,
            transport,
            inbox,
            limiter,
            digest: Digest::default(),
            tuning,
            cancel,
            metrics: ctx.metrics.clone(),
        }
    }

    /// Runs until the inbox is closed and drained, or until cancelled.
    pub async fn run(mut self) {
        loop {
            let (events, overflow, closed) = self.inbox.take();
            self.digest.merge(overflow);
            if self.handle(events).await.is_err() {
                return;
            }
            let waited = if closed {
                self.flush().await
            } else {
                self.wait().await
            };
            if closed || waited.is_err() {
                return;
            }
        }
    }

    /// Sends each event at once while the limit allows, folds the rest.
    async fn handle(&mut self, events: Vec<Event>) -> Result<(), Cancelled> {
        let mut events = events.into_iter();
        while let Some(event) = events.next() {
            if !self.digest.is_empty() || !self.limiter.is_ready(Instant::now()) {
                self.fold(event);
                continue;
            }
            let out = self.single(event);
            if self.deliver(out, 1).await.is_err() {
                self.abandon(1 + events.len());
                return Err(Cancelled);
            }
        }
        Ok(())
    }

    fn fold(&mut self, event: Event) {
        self.metrics.notification(&self.name, "digested");
        self.digest.fold(event);
    }

    /// Waits for new events, or for the slot that lets a pending digest out.
    async fn wait(&mut self) -> Result<(), Cancelled> {
        let slot = (!self.digest.is_empty()).then(|| self.limiter.ready_at(Instant::now()));
        tokio::select! {
            _ = self.inbox.wake.notified() => Ok(()),
            _ = tokio::time::sleep_until(slot.unwrap_or_else(Instant::now)), if slot.is_some() => {
                self.send_digest().await
            }
            _ = self.cancel.cancelled() => {
                self.abandon(0);
                Err(Cancelled)
            }
        }
    }

    /// At shutdown: whatever is left goes out as one digest.
    async fn flush(&mut self) -> Result<(), Cancelled> {
        if self.digest.is_empty() {
            return Ok(());
        }
        self.send_digest().await
    }

    async fn send_digest(&mut self) -> Result<(), Cancelled> {
        let digest = std::mem::take(&mut self.digest);
        let total = digest.total;
        let out = match (digest.total, digest.events.len()) {
            // One held-back event reads better as its own message.
            (1, 1) => self.single(digest.events.into_iter().next().expect("one event")),
            _ => self.digest_message(digest),
        };
        self.deliver(out, total)
            .await
            .inspect_err(|_| self.abandon(total))
    }

    fn single(&self, event: Event) -> Outbound {
        Outbound {
            id: message_id(),
            message: self.renderer.event(&event),
            content: Content::Event(Box::new(event)),
            hostname: self.renderer.hostname.clone(),
        }
    }

    fn digest_message(&self, digest: Digest) -> Outbound {
        Outbound {
            id: message_id(),
            message: self
                .renderer
                .digest(&digest.events, digest.total, Utc::now()),
            content: Content::Digest {
                events: digest.events,
                total: digest.total,
            },
            hostname: self.renderer.hostname.clone(),
        }
    }

    /// Counts as dropped the `in_hand` events plus everything still waiting.
    fn abandon(&mut self, in_hand: usize) {
        let (queued, overflow, _) = self.inbox.take();
        let lost = in_hand + self.digest.total + queued.len() + overflow.total;
        self.digest = Digest::default();
        if lost > 0 {
            self.metrics
                .notifications
                .get_or_create(&vec![
                    ("notifier", self.name.clone()),
                    ("outcome", "dropped".to_string()),
                ])
                .inc_by(lost as u64);
            tracing::warn!(notifier = %self.name, dropped = lost, "Notifications dropped at shutdown");
        }
    }

    /// Sends one message with bounded retries. `Err` only when cancelled.
    async fn deliver(&mut self, out: Outbound, events: usize) -> Result<(), Cancelled> {
        for attempt in 1..=self.tuning.max_attempts {
            self.sleep_until(self.limiter.ready_at(Instant::now()))
                .await?;
            self.limiter.record(Instant::now());
            let verdict = self.attempt(&out).await?;
            let retry = match verdict {
                Verdict::Retry { after, why } if attempt < self.tuning.max_attempts => (after, why),
                verdict => {
                    self.settle(verdict, attempt, events);
                    return Ok(());
                }
            };
            let delay = self.tuning.retry_delay(retry.0, attempt);
            self.metrics.notification(&self.name, "retried");
            tracing::info!(notifier = %self.name, attempt, delay = %humantime::format_duration(delay), why = %retry.1, "Notification not accepted yet; retrying");
            self.sleep_until(Instant::now() + delay).await?;
        }
        Ok(())
    }

    async fn attempt(&self, out: &Outbound) -> Result<Verdict, Cancelled> {
        let request = self.platform.request(out, Utc::now());
        let post = tokio::time::timeout(self.tuning.request_timeout, self.transport.post(request));
        let result = tokio::select! {
            result = post => result,
            _ = self.cancel.cancelled() => return Err(Cancelled),
        };
        Ok(match result {
            Err(_) => Verdict::Retry {
                after: None,
                why: format!("no answer within {:?}", self.tuning.request_timeout),
            },
            Ok(Err(e)) => Verdict::Retry {
                after: None,
                why: e.to_string(),
            },
            Ok(Ok(reply)) => self.platform.classify(&reply),
        })
    }

    /// Counts and logs the final verdict on a message.
    fn settle(&self, verdict: Verdict, attempts: u32, events: usize) {
        let name = &self.name;
        match verdict {
            Verdict::Sent => {
                self.metrics.notification(name, "sent");
                tracing::debug!(notifier = %name, events, attempts, "Notification sent");
            }
            Verdict::Retry { why, .. } | Verdict::Rejected(why) => {
                self.metrics.notification(name, "failed");
                tracing::warn!(notifier = %name, events, attempts, why = %why, "Notification failed");
            }
            Verdict::ConfigError(why) => {
                self.metrics.notification(name, "config_error");
                tracing::error!(notifier = %name, events, why = %why, "Chat platform rejected the notifier's configuration; check its url, secret and keywords");
            }
        }
    }

    async fn sleep_until(&self, at: Instant) -> Result<(), Cancelled> {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => Ok(()),
            _ = self.cancel.cancelled() => Err(Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real time with short tunings. Lower bounds on gaps are exact (a sleep
    //! never wakes early); upper bounds are loose for a busy machine. The
    //! same rules over minutes, through the whole daemon on a paused clock,
    //! are in `tests/daemon_timing.rs`.

    use super::super::render::tests::sample;
    use super::super::test_support::*;
    use super::*;
    use crate::event::EventKind;
    use crate::notify::NotifierKind;

    fn windows(kind: NotifierKind) -> &'static [Window] {
        spec(kind.default_settings(), "http://127.0.0.1:9/")
            .build()
            .rate_limit()
    }

    fn fast() -> Tuning {
        Tuning {
            backoff_base: Duration::from_millis(100),
            ..Tuning::default()
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn wecom_and_dingtalk_allow_one_message_per_three_seconds() {
        for kind in [NotifierKind::Wecom, NotifierKind::Dingtalk] {
            let mut l = Limiter::new(windows(kind));
            let t0 = Instant::now();
            assert!(l.is_ready(t0));
            l.record(t0);
            assert_eq!(l.ready_at(t0 + secs(1.0)), t0 + secs(3.0));
            l.record(t0 + secs(3.0));
            assert_eq!(l.ready_at(t0 + secs(3.0)), t0 + secs(6.0));
            assert!(l.is_ready(t0 + secs(6.0)));
        }
    }

    #[test]
    fn feishu_allows_5_a_second_and_100_a_minute() {
        let mut l = Limiter::new(windows(NotifierKind::Feishu));
        let t0 = Instant::now();
        let mut sends = Vec::new();
        for _ in 0..205 {
            let at = l.ready_at(t0);
            let at = l.ready_at(at.max(sends.last().copied().unwrap_or(t0)));
            l.record(at);
            sends.push(at);
        }
        assert_eq!(sends[4], t0, "a burst of 5 at once");
        assert_eq!(sends[5], t0 + secs(1.0));
        assert_eq!(sends[99], t0 + secs(19.0));
        assert_eq!(
            sends[100],
            t0 + secs(60.0),
            "the 101st waits for the minute"
        );
        for (i, at) in sends.iter().enumerate() {
            let in_second = sends[..=i].iter().filter(|t| **t + secs(1.0) > *at).count();
            let in_minute = sends[..=i]
                .iter()
                .filter(|t| **t + secs(60.0) > *at)
                .count();
            assert!(in_second <= 5 && in_minute <= 100, "send {i}");
        }
    }

    #[test]
    fn slack_allows_one_a_second() {
        let mut l = Limiter::new(windows(NotifierKind::Slack));
        let t0 = Instant::now();
        l.record(t0);
        assert_eq!(l.ready_at(t0), t0 + secs(1.0));
    }

    #[test]
    fn retry_after_header_forms() {
        assert_eq!(parse_retry_after("3"), Some(secs(3.0)));
        assert_eq!(parse_retry_after(" 1.5 "), Some(secs(1.5)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    /// The events a message stands for, read from a webhook document.
    fn events_in(doc: &serde_json::Value) -> u64 {
        doc["total"].as_u64().unwrap_or(1)
    }

    #[tokio::test]
    async fn a_burst_is_sent_once_then_folded_into_one_digest() {
        let (n, t, m) = start(
            spec(
                NotifierKind::Slack.default_settings(),
                "http://127.0.0.1:9/",
            ),
            fast(),
            vec![],
        );
        for _ in 0..5 {
            n.publish(&sample(EventKind::Cleared));
        }
        let posts = t.wait_for(2, secs(3.0)).await;
        let gap = posts[1].0 - posts[0].0;
        assert!(gap >= secs(1.0) && gap < secs(2.0), "{gap:?}");
        assert_eq!(posts[0].1["text"], "[quotawatch] Quota cleared: shop");
        assert_eq!(
            posts[1].1["text"],
            "[quotawatch] 4 events held back by the chat rate limit"
        );
        wait_count(&m, "ops", "sent", 2).await;
        assert_eq!(count(&m, "ops", "digested"), 4);
        n.shutdown(secs(1.0)).await;
        assert_eq!(t.posts().len(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_folds_into_the_digest() {
        let tuning = Tuning {
            queue_capacity: 2,
            ..fast()
        };
        let (n, t, m) = start(
            spec(
                NotifierKind::Webhook.default_settings(),
                "http://127.0.0.1:9/",
            ),
            tuning,
            vec![],
        );
        // The test's runtime is single-threaded: the task cannot drain the queue
        // before this loop ends.
        for _ in 0..5 {
            n.publish(&sample(EventKind::Failed));
        }
        assert_eq!(count(&m, "ops", "digested"), 3);
        n.shutdown(secs(2.0)).await;
        let posts = t.posts();
        assert_eq!(
            posts.iter().map(|(_, d)| events_in(d)).sum::<u64>(),
            5,
            "nothing lost"
        );
        assert_eq!(posts.last().unwrap().1["type"], "digest");
        assert_eq!(count(&m, "ops", "dropped"), 0);
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_bounded_backoff() {
        let script = (0..4).map(|_| Step::Reply(reply(503, "busy"))).collect();
        let (n, t, m) = start(
            spec(
                NotifierKind::Webhook.default_settings(),
                "http://127.0.0.1:9/",
            ),
            fast(),
            script,
        );
        n.publish(&sample(EventKind::Cleared));
        wait_count(&m, "ops", "failed", 1).await;
        let times: Vec<Instant> = t.posts().iter().map(|(at, _)| *at).collect();
        assert_eq!(times.len(), 4, "four attempts, then give up");
        for (i, expected) in [0.1, 0.2, 0.4].iter().enumerate() {
            let gap = times[i + 1] - times[i];
            assert!(
                gap >= secs(*expected) && gap < secs(expected + 1.0),
                "gap {i}: {gap:?}"
            );
        }
        assert_eq!(count(&m, "ops", "retried"), 3);
        assert_eq!(count(&m, "ops", "sent"), 0);
        n.shutdown(secs(1.0)).await;
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let mut limited = reply(429, "slow down");
        limited.retry_after = Some(secs(0.5));
        let tuning = Tuning {
            backoff_base: Duration::from_millis(10),
            ..Tuning::default()
        };
        let (n, t, m) = start(
            spec(
                NotifierKind::Webhook.default_settings(),
                "http://127.0.0.1:9/",
            ),
            tuning,
            vec![Step::Reply(limited)],
        );
        n.publish(&sample(EventKind::Cleared));
        let posts = t.wait_for(2, secs(3.0)).await;
        assert!(
            posts[1].0 - posts[0].0 >= secs(0.5),
            "{:?}",
            posts[1].0 - posts[0].0
        );
        wait_count(&m, "ops", "sent", 1).await;
        assert_eq!(count(&m, "ops", "retried"), 1);
        assert_eq!(
            posts[0].1["id"], posts[1].1["id"],
            "a retry keeps the message id"
        );
        n.shutdown(secs(1.0)).await;
    }

    #[test]
    fn a_platform_delay_is_bounded_by_its_own_cap_and_backoff_by_its_own() {
        let t = Tuning::default();
        assert_eq!(t.retry_delay(Some(secs(90.0)), 1), secs(90.0));
        assert_eq!(t.retry_delay(Some(secs(7200.0)), 1), secs(900.0));
        assert_eq!(t.retry_delay(None, 1), secs(1.0));
        assert_eq!(t.retry_delay(None, 3), secs(4.0));
        assert_eq!(t.retry_delay(None, 10), secs(60.0));
        assert_eq!(t.retry_delay(None, 40), secs(60.0));
    }

    /// Discord asks for more than a minute at times: retrying before the
    /// platform's delay only collects more 429s. What arrives meanwhile waits
    /// in the queue and leaves as one digest at the rate limit.
    #[tokio::test]
    async fn a_platform_delay_is_not_cut_to_the_backoff_cap() {
        let mut limited = reply(429, "slow down");
        limited.retry_after = Some(secs(1.5));
        let tuning = Tuning {
            backoff_base: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
            ..Tuning::default()
        };
        let (n, t, m) = start(
            spec(
                NotifierKind::Slack.default_settings(),
                "http://127.0.0.1:9/",
            ),
            tuning,
            vec![Step::Reply(limited)],
        );
        n.publish(&sample(EventKind::Cleared));
        t.wait_for(1, secs(2.0)).await;
        for _ in 0..5 {
            n.publish(&sample(EventKind::Failed));
        }
        let posts = t.wait_for(3, secs(5.0)).await;
        let gap = posts[1].0 - posts[0].0;
        assert!(
            gap >= secs(1.5),
            "the platform's delay, not the backoff cap: {gap:?}"
        );
        assert_eq!(posts[0].1, posts[1].1, "the retry is the same message");
        assert_eq!(
            posts[2].1["text"],
            "[quotawatch] 5 events held back by the chat rate limit"
        );
        wait_count(&m, "ops", "sent", 2).await;
        n.shutdown(secs(1.0)).await;
        assert_eq!(t.posts().len(), 3);
    }

    #[tokio::test]
    async fn timeouts_are_retried() {
        let tuning = Tuning {
            request_timeout: Duration::from_millis(200),
            ..fast()
        };
        let (n, t, m) = start(
            spec(
                NotifierKind::Webhook.default_settings(),
                "http://127.0.0.1:9/",
            ),
            tuning,
            vec![Step::Hang],
        );
        n.publish(&sample(EventKind::Cleared));
        let posts = t.wait_for(2, secs(3.0)).await;
        assert!(posts[1].0 - posts[0].0 >= secs(0.3), "timeout plus backoff");
        wait_count(&m, "ops", "sent", 1).await;
        assert_eq!(count(&m, "ops", "retried"), 1);
        n.shutdown(secs(1.0)).await;
    }

    #[tokio::test]
    async fn configuration_errors_are_not_retried() {
        let answer = Step::Reply(reply(
            200,
            r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
        ));
        let tuning = Tuning {
            backoff_base: Duration::from_millis(10),
            ..Tuning::default()
        };
        let (n, t, m) = start(
            spec(
                NotifierKind::Dingtalk.default_settings(),
                "http://127.0.0.1:9/",
            ),
            tuning,
            vec![answer],
        );
        n.publish(&sample(EventKind::Cleared));
        wait_count(&m, "ops", "config_error", 1).await;
        tokio::time::sleep(secs(0.2)).await;
        assert_eq!(t.posts().len(), 1);
        assert_eq!(count(&m, "ops", "retried"), 0);
        n.shutdown(secs(1.0)).await;
    }

    #[tokio::test]
    async fn shutdown_flushes_the_digest_within_its_timeout() {
        let (n, t, m) = start(
            spec(
                NotifierKind::Slack.default_settings(),
                "http://127.0.0.1:9/",
            ),
            fast(),
            vec![],
        );
        for _ in 0..3 {
            n.publish(&sample(EventKind::BudgetLow));
        }
        t.wait_for(1, secs(2.0)).await;
        let started = Instant::now();
        n.shutdown(secs(5.0)).await;
        assert!(started.elapsed() < secs(2.0), "{:?}", started.elapsed());
        let posts = t.posts();
        assert_eq!(posts.len(), 2);
        assert!(posts[1].1["text"]
            .as_str()
            .unwrap()
            .starts_with("[quotawatch] 2 events"));
        assert_eq!(count(&m, "ops", "sent"), 2);
        assert_eq!(count(&m, "ops", "dropped"), 0);
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_a_hanging_platform() {
        let (n, t, m) = start(
            spec(
                NotifierKind::Webhook.default_settings(),
                "http://127.0.0.1:9/",
            ),
            fast(),
            vec![Step::Hang],
        );
        n.publish(&sample(EventKind::Cleared));
        t.wait_for(1, secs(2.0)).await;
        n.publish(&sample(EventKind::Failed));
        let started = Instant::now();
        n.shutdown(secs(0.3)).await;
        let took = started.elapsed();
        assert!(took >= secs(0.3) && took < secs(1.3), "{took:?}");
        assert_eq!(count(&m, "ops", "dropped"), 2);
        assert_eq!(count(&m, "ops", "sent"), 0);
    }
}
