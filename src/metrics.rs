//! The Prometheus metrics of SPEC section 5, in one registry that components
//! share through an `Arc<Metrics>` (no global recorder, so tests get their own).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    /// `quotawatch_signals_total{source}`.
    pub signals: Family<Labels, Counter>,
    /// `quotawatch_decisions_total{decision,reason}`.
    pub decisions: Family<Labels, Counter>,
    /// `quotawatch_clears_total{account,outcome}`.
    pub clears: Family<Labels, Counter>,
    /// `quotawatch_budget_remaining{account}`.
    pub budget_remaining: Family<Labels, Gauge>,
    /// `quotawatch_notifications_total{notifier,outcome}`.
    pub notifications: Family<Labels, Counter>,
    /// `quotawatch_source_errors_total{source}`: failed polls and reads.
    pub source_errors: Family<Labels, Counter>,
    /// `quotawatch_source_healthy{source}`: 1 when the last poll worked.
    pub source_healthy: Family<Labels, Gauge>,
    /// `quotawatch_locked{account}`: 1 while a lockout episode is open.
    pub locked: Family<Labels, Gauge>,
    /// `quotawatch_lockout_seconds_total{account}`: the ledger's locked time.
    pub lockout_seconds: Family<Labels, Counter>,
    /// The latest `openapi/quota/get` reading of every polled (account, API):
    /// quotawatch is also the exporter of WeChat quotas (SPEC 4a).
    pub api_quota: ApiQuota,
    /// Each account set's list: members, failed refreshes, last good refresh.
    pub account_sets: AccountSetMetrics,
}

/// `quotawatch_account_set_members{set}`,
/// `quotawatch_account_set_refresh_errors_total{set}` and
/// `quotawatch_account_set_last_refresh_timestamp_seconds{set}`.
#[derive(Default)]
pub struct AccountSetMetrics {
    pub members: Family<Labels, Gauge>,
    pub refresh_errors: Family<Labels, Counter>,
    pub last_refresh: Family<Labels, Gauge>,
}

/// `quotawatch_api_quota_{limit,used,remaining}` and
/// `quotawatch_api_rate_limit_{calls,period_seconds}`, by `{account, cgi_path}`.
#[derive(Default)]
pub struct ApiQuota {
    pub limit: Family<Labels, Gauge>,
    pub used: Family<Labels, Gauge>,
    pub remaining: Family<Labels, Gauge>,
    pub rate_limit_calls: Family<Labels, Gauge>,
    pub rate_limit_period: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let signals = Family::default();
        let decisions = Family::default();
        let clears = Family::default();
        let budget_remaining = Family::default();
        let notifications = Family::default();
        let source_errors = Family::default();
        let source_healthy = Family::default();
        let locked = Family::default();
        let lockout_seconds = Family::default();
        registry.register(
            "quotawatch_signals",
            "Signals received, by source",
            signals.clone(),
        );
        registry.register(
            "quotawatch_decisions",
            "Policy decisions, by decision and reason",
            decisions.clone(),
        );
        registry.register(
            "quotawatch_clears",
            "Clear attempts, by account and outcome",
            clears.clone(),
        );
        registry.register(
            "quotawatch_budget_remaining",
            "Clears quotawatch may still spend this month",
            budget_remaining.clone(),
        );
        registry.register(
            "quotawatch_notifications",
            "Notifications, by notifier and outcome",
            notifications.clone(),
        );
        registry.register(
            "quotawatch_source_errors",
            "Source polls or reads that failed",
            source_errors.clone(),
        );
        registry.register(
            "quotawatch_source_healthy",
            "1 when the source's last poll worked",
            source_healthy.clone(),
        );
        registry.register(
            "quotawatch_locked",
            "1 while the account is locked out (a lockout episode is open)",
            locked.clone(),
        );
        registry.register(
            "quotawatch_lockout_seconds",
            "Seconds the account was locked out, over every episode in the ledger",
            lockout_seconds.clone(),
        );
        let api_quota = ApiQuota::default();
        for (name, help, family) in [
            ("quotawatch_api_quota_limit", "The API's daily limit (openapi/quota/get's quota.daily_limit)", &api_quota.limit),
            ("quotawatch_api_quota_used", "Calls of the API counted today (quota.used; WeChat's count may be off by about 1%)", &api_quota.used),
            ("quotawatch_api_quota_remaining", "Calls of the API left today (quota.remain)", &api_quota.remaining),
            ("quotawatch_api_rate_limit_calls", "Calls the API allows per period (rate_limit.call_count)", &api_quota.rate_limit_calls),
            ("quotawatch_api_rate_limit_period_seconds", "The rate limit's period in seconds (rate_limit.refresh_second)", &api_quota.rate_limit_period),
        ] {
            registry.register(name, help, family.clone());
        }
        let account_sets = AccountSetMetrics::default();
        registry.register(
            "quotawatch_account_set_members",
            "Members of the account set's last good list",
            account_sets.members.clone(),
        );
        registry.register(
            "quotawatch_account_set_refresh_errors",
            "Reads of the account set's list that failed (the last good list stayed)",
            account_sets.refresh_errors.clone(),
        );
        registry.register(
            "quotawatch_account_set_last_refresh_timestamp_seconds",
            "When the account set's list was last read whole (Unix seconds)",
            account_sets.last_refresh.clone(),
        );
        Self {
            registry,
            signals,
            decisions,
            clears,
            budget_remaining,
            notifications,
            source_errors,
            source_healthy,
            locked,
            lockout_seconds,
            api_quota,
            account_sets,
        }
    }

    /// The latest quota reading of `account`'s `cgi_path`.
    pub fn api_quota(&self, account: &str, cgi_path: &str, reading: &crate::wechat::QuotaReading) {
        let labels = vec![
            ("account", account.to_string()),
            ("cgi_path", cgi_path.to_string()),
        ];
        let gauge = |family: &Family<Labels, Gauge>, value: u64| {
            family
                .get_or_create(&labels)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        let q = &reading.quota;
        gauge(&self.api_quota.limit, q.daily_limit);
        gauge(&self.api_quota.used, q.used);
        gauge(&self.api_quota.remaining, q.remain);
        if let Some(r) = &reading.rate_limit {
            gauge(&self.api_quota.rate_limit_calls, r.call_count);
            gauge(&self.api_quota.rate_limit_period, r.refresh_second);
        }
    }

    /// The ledger's lockout figures for `account`: the counter moves up to
    /// `seconds` (the ledger's total only grows; a smaller figure is a read
    /// of a ledger that lost rows, and the counter keeps its value).
    pub fn lockout(&self, account: &str, locked: bool, seconds: u64) {
        let labels = vec![("account", account.to_string())];
        self.locked.get_or_create(&labels).set(i64::from(locked));
        let counter = self.lockout_seconds.get_or_create(&labels);
        let seen = counter.get();
        if seconds > seen {
            counter.inc_by(seconds - seen);
        }
    }

    pub fn signal(&self, source: &str, n: u64) {
        self.signals
            .get_or_create(&vec![("source", source.to_string())])
            .inc_by(n);
    }

    pub fn decision(&self, decision: &str, reason: &str) {
        self.decisions
            .get_or_create(&vec![
                ("decision", decision.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    pub fn clear(&self, account: &str, outcome: &str) {
        self.clears
            .get_or_create(&vec![
                ("account", account.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    pub fn budget(&self, account: &str, left: u32) {
        self.budget_remaining
            .get_or_create(&vec![("account", account.to_string())])
            .set(left as i64);
    }

    /// An account no longer watched (a member gone from its set's list):
    /// its budget stops being exported. Its ledger rows stay.
    pub fn forget_budget(&self, account: &str) {
        self.budget_remaining
            .remove(&vec![("account", account.to_string())]);
    }

    pub fn notification(&self, notifier: &str, outcome: &str) {
        self.notifications
            .get_or_create(&vec![
                ("notifier", notifier.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    pub fn source_state(&self, source: &str, healthy: bool) {
        let labels = vec![("source", source.to_string())];
        if !healthy {
            self.source_errors.get_or_create(&labels).inc();
        }
        self.source_healthy
            .get_or_create(&labels)
            .set(healthy as i64);
    }

    /// A good read of `set`'s list at `at` (Unix seconds).
    pub fn set_refreshed(&self, set: &str, members: usize, at: i64) {
        let labels = vec![("set", set.to_string())];
        self.account_sets
            .members
            .get_or_create(&labels)
            .set(members as i64);
        self.account_sets
            .last_refresh
            .get_or_create(&labels)
            .set(at);
        // The counter shows 0 from the first good read, not only after a failure.
        let _ = self.account_sets.refresh_errors.get_or_create(&labels);
    }

    /// A failed read of `set`'s list; its members stay as they were.
    pub fn set_refresh_failed(&self, set: &str, members: usize) {
        let labels = vec![("set", set.to_string())];
        self.account_sets
            .refresh_errors
            .get_or_create(&labels)
            .inc();
        self.account_sets
            .members
            .get_or_create(&labels)
            .set(members as i64);
    }

    /// The text exposition format for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_spec_names() {
        let m = Metrics::new();
        m.signal("alerts", 3);
        m.decision("skip", "cooldown");
        m.clear("shop", "ok");
        m.budget("shop", 7);
        m.notification("ops", "sent");
        let text = m.render();
        assert!(
            text.contains("quotawatch_signals_total{source=\"alerts\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("quotawatch_decisions_total{decision=\"skip\",reason=\"cooldown\"} 1")
        );
        assert!(text.contains("quotawatch_clears_total{account=\"shop\",outcome=\"ok\"} 1"));
        assert!(text.contains("quotawatch_budget_remaining{account=\"shop\"} 7"));
        assert!(
            text.contains("quotawatch_notifications_total{notifier=\"ops\",outcome=\"sent\"} 1")
        );
    }
}
