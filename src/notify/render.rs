//! The words of every notification, in Chinese and English.
//!
//! [`Renderer`] turns an [`Event`] (or a digest of several, or a test) into a
//! [`Message`]: a title and plain-text lines that say which account, what
//! happened, why, how to fix a WeChat configuration error, and the month's
//! budget. Platforms decide the markup around those lines and cut them to their
//! size limits with [`truncate`]; this module knows nothing about HTTP.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use serde::{Deserialize, Serialize};

use crate::event::{Budget, ClearTarget, Event, EventKind, Outcome};
use crate::policy::SkipReason;

/// The language messages are written in (`notifiers.NAME.language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Zh,
    En,
}

/// How loud a message is; platforms with colours map it to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Notice,
    Warning,
    Critical,
}

/// A rendered notification, before any platform markup.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub severity: Severity,
    /// One line; starts with `[quotawatch]` so a DingTalk keyword filter set to
    /// "quotawatch" lets every message through.
    pub title: String,
    /// Plain text, one fact per line.
    pub lines: Vec<String>,
}

impl Message {
    pub fn body(&self) -> String {
        self.lines.join("\n")
    }

    /// Title and body, for platforms without markup and the webhook's `text`.
    pub fn plain(&self) -> String {
        format!("{}\n{}", self.title, self.body())
    }
}

/// A size limit of a platform field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// UTF-8 bytes (WeCom, DingTalk, Feishu count bytes).
    Bytes(usize),
    /// Unicode scalar values (Slack and Discord count characters).
    Chars(usize),
}

const ELLIPSIS: char = '…';

/// Cuts `text` to fit `limit`, at a char boundary, ending with an ellipsis.
pub fn truncate(text: &str, limit: Limit) -> Cow<'_, str> {
    let end = match limit {
        Limit::Bytes(max) if text.len() > max => {
            let mut end = max.saturating_sub(ELLIPSIS.len_utf8());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            end
        }
        Limit::Chars(max) => match text.char_indices().nth(max) {
            Some(_) => text
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(0, |(i, _)| i),
            None => return Cow::Borrowed(text),
        },
        Limit::Bytes(_) => return Cow::Borrowed(text),
    };
    Cow::Owned(format!("{}{ELLIPSIS}", text[..end].trim_end()))
}

/// Most events a digest lists one by one; the rest are counted.
pub const DIGEST_LINES: usize = 20;

/// Renders in one language for one host and time zone.
#[derive(Debug, Clone)]
pub struct Renderer {
    pub language: Language,
    pub hostname: String,
    /// `daemon.timezone`: times in messages are local to the operators.
    pub timezone: Tz,
}

impl Renderer {
    fn en(&self) -> bool {
        self.language == Language::En
    }

    /// Picks the English or Chinese variant.
    fn t<T>(&self, en: T, zh: T) -> T {
        if self.en() {
            en
        } else {
            zh
        }
    }

    pub fn event(&self, ev: &Event) -> Message {
        let mut lines = vec![self.account_line(ev), self.what_line(ev)];
        lines.extend(self.next_clear_line(ev));
        lines.extend(self.error_lines(ev));
        lines.extend(self.signal_line(ev));
        lines.push(self.budget_line(&ev.budget));
        lines.push(self.host_line(ev.at));
        Message {
            severity: severity(ev.kind),
            title: self.title(ev.kind, &ev.account),
            lines,
        }
    }

    /// One message for `total` events held back by a rate limit or a full
    /// queue; `events` are the first of them, in order.
    pub fn digest(&self, events: &[Event], total: usize, now: DateTime<Utc>) -> Message {
        let mut lines: Vec<String> = events
            .iter()
            .take(DIGEST_LINES)
            .map(|ev| self.summary_line(ev))
            .collect();
        let more = total.saturating_sub(lines.len());
        if more > 0 {
            lines.push(self.t(format!("… and {more} more"), format!("……另有 {more} 条")));
        }
        lines.push(self.host_line(now));
        let title = self.t(
            format!("[quotawatch] {total} events held back by the chat rate limit"),
            format!("[quotawatch] 受聊天频率限制合并发送的 {total} 条事件"),
        );
        let severity = events
            .iter()
            .map(|e| severity(e.kind))
            .max()
            .unwrap_or(Severity::Info);
        Message {
            severity,
            title,
            lines,
        }
    }

    /// The `quotawatch notify-test` message.
    pub fn test(&self, notifier: &str, now: DateTime<Utc>) -> Message {
        let title = self.t(
            format!("[quotawatch] Test message from notifier {notifier}"),
            format!("[quotawatch] 通知渠道 {notifier} 的测试消息"),
        );
        let line = self.t(
            "If you can read this, quotawatch can reach this chat.",
            "收到此消息说明 quotawatch 可以向这个群发送通知。",
        );
        Message {
            severity: Severity::Info,
            title,
            lines: vec![line.to_string(), self.host_line(now)],
        }
    }

    fn title(&self, kind: EventKind, account: &str) -> String {
        format!(
            "[quotawatch] {}{}{account}",
            self.kind_label(kind),
            self.t(": ", "：")
        )
    }

    fn kind_label(&self, kind: EventKind) -> &'static str {
        match kind {
            EventKind::Cleared => self.t("Quota cleared", "已清零"),
            EventKind::Failed => self.t("Clear failed", "清零失败"),
            EventKind::Skipped => self.t("Clear skipped", "未清零"),
            EventKind::DryRun => self.t("Dry run", "演练"),
            EventKind::BudgetLow => self.t("Clear budget low", "清零额度不足"),
            EventKind::Exhausted => self.t("Monthly clears exhausted", "本月清零次数已用尽"),
            EventKind::ConfigError => self.t("Configuration error", "配置错误"),
            EventKind::MonthlyReport => self.t("Monthly report", "月度报告"),
        }
    }

    fn account_line(&self, ev: &Event) -> String {
        self.t(
            format!("Account: {} ({})", ev.account, ev.appid),
            format!("账号：{}（{}）", ev.account, ev.appid),
        )
    }

    fn target(&self, target: &ClearTarget) -> String {
        match target {
            ClearTarget::Full => self
                .t("all daily API counters", "全部接口的每日调用次数")
                .to_string(),
            ClearTarget::Api { cgi_path } => self.t(
                format!("the daily counter of {cgi_path}"),
                format!("接口 {cgi_path} 的每日调用次数"),
            ),
        }
    }

    fn what_line(&self, ev: &Event) -> String {
        let target = self.target(&ev.target);
        match ev.kind {
            EventKind::Cleared => self.t(format!("Cleared {target}."), format!("已清零{target}。")),
            EventKind::DryRun => self.t(
                format!("Would clear {target}, but dry run is on: WeChat was not called."),
                format!("演练模式：本应清零{target}，未调用微信接口。"),
            ),
            EventKind::Failed => self.failed_line(ev, &target),
            EventKind::Skipped => {
                let reason = ev.skip_reason.map_or_else(String::new, |r| self.reason(r).to_string());
                self.t(format!("Not cleared: {reason}."), format!("未清零：{reason}。"))
            }
            EventKind::BudgetLow => {
                let left = ev.budget.left;
                self.t(
                    format!("Only {left} clears left this month: once they are spent, a locked account waits for the daily reset."),
                    format!("本月仅剩 {left} 次清零：用完后，被限制的账号只能等待每日重置。"),
                )
            }
            EventKind::Exhausted => self.t(
                "WeChat says this month's clears are used up: quotawatch stops trying until next month.".to_string(),
                "微信表示本月清零次数已用完：下月之前 quotawatch 不再尝试。".to_string(),
            ),
            EventKind::ConfigError => self.t(
                "WeChat rejected the account's configuration: quotawatch stops acting for this account until its configuration changes.".to_string(),
                "微信拒绝了该账号的配置：配置修改之前，quotawatch 不再处理该账号。".to_string(),
            ),
            EventKind::MonthlyReport => match &ev.report {
                Some(r) => self.t(
                    format!(
                        "In {}: {} clears used, {} lockout episodes, {} minutes locked out.",
                        r.month, r.clears, r.episodes, r.locked_minutes
                    ),
                    format!(
                        "{}：使用清零 {} 次，限流 {} 次，共 {} 分钟不可用。",
                        r.month, r.clears, r.episodes, r.locked_minutes
                    ),
                ),
                None => String::new(),
            },
        }
    }

    fn failed_line(&self, ev: &Event, target: &str) -> String {
        match &ev.outcome {
            Some(Outcome::Ambiguous { detail }) => self.t(
                format!("No answer from WeChat ({detail}): the clear may have taken effect, so it counts against the budget."),
                format!("微信未应答（{detail}）：清零可能已生效，因此计入额度。"),
            ),
            _ => self.t(format!("WeChat did not clear {target}."), format!("微信未能清零{target}。")),
        }
    }

    fn reason(&self, reason: SkipReason) -> &'static str {
        match reason {
            SkipReason::Cooldown => self.t(
                "cooldown, the last clear was too recent",
                "冷却中，距上次清零时间太短",
            ),
            SkipReason::MonthlyCap => self.t(
                "the monthly cap is reached, quotawatch spends no more clears this month",
                "已达到本月上限，quotawatch 本月不再使用清零次数",
            ),
            SkipReason::DailyMax => self.t(
                "today's maximum of clears is reached",
                "已达到今日清零次数上限",
            ),
            SkipReason::ResetGuard => self.t(
                "too close to the daily reset at 00:00, the quota resets anyway",
                "临近每日 00:00 重置，额度即将自动恢复",
            ),
            SkipReason::InsufficientEvidence => self.t(
                "not enough evidence within the window",
                "时间窗口内证据不足",
            ),
            SkipReason::DryRun => self.t("dry run is on", "演练模式已开启"),
            SkipReason::ExhaustedUpstream => self.t(
                "WeChat reported this month's clears used up (48006)",
                "微信已报告本月清零次数用尽（48006）",
            ),
            SkipReason::AccountDisabled => self.t(
                "the account is disabled after a configuration error",
                "账号因配置错误已停用",
            ),
            SkipReason::UnknownAccount => self.t(
                "the account is not in the configuration",
                "配置中没有该账号",
            ),
            SkipReason::Duplicate => self.t(
                "a duplicate of a signal already handled",
                "与已处理的信号重复",
            ),
            SkipReason::Pacing => self.t(
                "pacing: the budget is kept for a clear that buys more time back",
                "配额节奏：保留额度给能挽回更多时间的清零",
            ),
        }
    }

    fn next_clear_line(&self, ev: &Event) -> Option<String> {
        let at = self.local(ev.next_clear_at?);
        Some(self.t(
            format!("Next possible clear: {at}"),
            format!("最早可再次清零：{at}"),
        ))
    }

    /// The WeChat error and, for the codes an operator must act on, what to do.
    fn error_lines(&self, ev: &Event) -> Vec<String> {
        let (code, msg) = wechat_error(ev);
        let mut lines = Vec::new();
        match (code, msg) {
            (Some(code), msg) => lines.push(self.t(
                format!("WeChat error {code}: {msg}"),
                format!("微信错误码 {code}：{msg}"),
            )),
            (None, msg) if !msg.is_empty() => {
                lines.push(self.t(format!("Error: {msg}"), format!("错误：{msg}")))
            }
            _ => {}
        }
        lines.extend(code.and_then(|c| self.fix(c, ev, msg)));
        lines
    }

    fn fix(&self, code: i64, ev: &Event, errmsg: &str) -> Option<String> {
        let single_api = matches!(ev.target, ClearTarget::Api { .. });
        let a = crate::wechat::advice(code, errmsg, &ev.account, single_api)?;
        Some(self.t(format!("Fix: {}", a.en), format!("处理：{}", a.zh)))
    }

    fn signal_line(&self, ev: &Event) -> Option<String> {
        if ev.source.is_empty() {
            return None;
        }
        let (source, trigger, n) = (&ev.source, &ev.trigger, ev.evidence);
        Some(match (self.en(), trigger.is_empty()) {
            (true, false) => {
                format!("Signal: {trigger} from source {source}, {n} evidence event(s)")
            }
            (true, true) => format!("Signal: from source {source}, {n} evidence event(s)"),
            (false, false) => format!("信号：来源 {source}，{trigger}，证据 {n} 条"),
            (false, true) => format!("信号：来源 {source}，证据 {n} 条"),
        })
    }

    /// "3 of 8 clears left in 2026-11", the SPEC's wording.
    pub fn budget_text(&self, b: &Budget) -> String {
        self.t(
            format!("{} of {} clears left in {}", b.left, b.cap, b.month),
            format!("{} 还剩 {} 次清零（共 {} 次）", b.month, b.left, b.cap),
        )
    }

    fn budget_line(&self, b: &Budget) -> String {
        let text = self.budget_text(b);
        self.t(format!("Budget: {text}"), format!("额度：{text}"))
    }

    fn host_line(&self, at: DateTime<Utc>) -> String {
        let (host, at) = (&self.hostname, self.local(at));
        self.t(format!("Host: {host}, {at}"), format!("主机：{host}，{at}"))
    }

    fn local(&self, at: DateTime<Utc>) -> String {
        let local = at.with_timezone(&self.timezone);
        format!(
            "{} {}",
            local.format("%Y-%m-%d %H:%M:%S"),
            self.timezone.name()
        )
    }

    fn summary_line(&self, ev: &Event) -> String {
        let time = ev.at.with_timezone(&self.timezone).format("%H:%M:%S");
        let mut line = format!(
            "{time} {}{}{} ({}), {}",
            self.kind_label(ev.kind),
            self.t(": ", "："),
            ev.account,
            ev.appid,
            self.budget_text(&ev.budget)
        );
        if let Some(reason) = ev.skip_reason.filter(|_| ev.kind == EventKind::Skipped) {
            line.push_str(&format!(", {}", self.reason(reason)));
        }
        if let (Some(code), _) = wechat_error(ev) {
            line.push_str(&format!(", errcode {code}"));
        }
        line
    }
}

/// The errcode and errmsg of an event, from its own fields or its outcome.
fn wechat_error(ev: &Event) -> (Option<i64>, &str) {
    let (out_code, out_msg) = match &ev.outcome {
        Some(Outcome::Failed { errcode, errmsg }) => (*errcode, errmsg.as_str()),
        _ => (None, ""),
    };
    (
        ev.errcode.or(out_code),
        ev.errmsg.as_deref().unwrap_or(out_msg),
    )
}

fn severity(kind: EventKind) -> Severity {
    match kind {
        EventKind::Cleared | EventKind::DryRun | EventKind::MonthlyReport => Severity::Info,
        EventKind::Skipped => Severity::Notice,
        EventKind::BudgetLow => Severity::Warning,
        EventKind::Failed | EventKind::Exhausted | EventKind::ConfigError => Severity::Critical,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn renderer(language: Language) -> Renderer {
        Renderer {
            language,
            hostname: "qw-host-1".into(),
            timezone: chrono_tz::Asia::Shanghai,
        }
    }

    /// A representative event of each kind, as the clearer would produce it.
    pub(crate) fn sample(kind: EventKind) -> Event {
        let mut ev = Event {
            kind,
            account: "shop".into(),
            appid: "wx448f04719cd48f69".into(),
            at: Utc.with_ymd_and_hms(2026, 11, 3, 6, 5, 0).unwrap(),
            source: "alerts".into(),
            trigger: "WeChatQuotaExhausted".into(),
            evidence: 4,
            target: ClearTarget::Full,
            attempt: None,
            skip_reason: None,
            outcome: None,
            errcode: None,
            errmsg: None,
            budget: Budget {
                used: 5,
                cap: 8,
                left: 3,
                month: "2026-11".into(),
            },
            next_clear_at: None,
            report: None,
            route: vec![],
        };
        match kind {
            EventKind::Cleared => ev.outcome = Some(Outcome::Ok),
            EventKind::Skipped => {
                ev.skip_reason = Some(SkipReason::Cooldown);
                ev.next_clear_at = Some(Utc.with_ymd_and_hms(2026, 11, 3, 7, 5, 0).unwrap());
            }
            EventKind::DryRun => ev.skip_reason = Some(SkipReason::DryRun),
            EventKind::Failed => failed(
                &mut ev,
                40164,
                "invalid ip 203.0.113.5 ipv6 ::ffff:203.0.113.5, not in whitelist rid: 1",
            ),
            EventKind::Exhausted => failed(
                &mut ev,
                48006,
                "forbid to clear quota because of reaching the limit",
            ),
            EventKind::ConfigError => failed(&mut ev, 40125, "invalid appsecret"),
            EventKind::BudgetLow => {
                ev.budget = Budget {
                    used: 6,
                    cap: 8,
                    left: 2,
                    month: "2026-11".into(),
                }
            }
            EventKind::MonthlyReport => {
                ev.source = String::new();
                ev.trigger = String::new();
                ev.evidence = 0;
                ev.report = Some(crate::event::MonthReport {
                    month: "2026-11".into(),
                    clears: 5,
                    episodes: 7,
                    locked_minutes: 213,
                });
            }
        }
        ev
    }

    fn failed(ev: &mut Event, code: i64, msg: &str) {
        ev.outcome = Some(Outcome::Failed {
            errcode: Some(code),
            errmsg: msg.into(),
        });
        ev.errcode = Some(code);
        ev.errmsg = Some(msg.into());
    }

    #[test]
    fn every_kind_names_account_appid_budget_and_host_in_both_languages() {
        for lang in [Language::En, Language::Zh] {
            let r = renderer(lang);
            let mut titles = std::collections::HashSet::new();
            for kind in EventKind::ALL {
                let ev = sample(kind);
                let text = r.event(&ev).plain();
                assert!(text.starts_with("[quotawatch] "), "{text}");
                assert!(
                    text.contains("shop") && text.contains("wx448f04719cd48f69"),
                    "{text}"
                );
                assert!(text.contains("qw-host-1"), "{text}");
                assert!(text.contains("2026-11-03 14:05:00 Asia/Shanghai"), "{text}");
                assert!(text.contains(&r.budget_text(&ev.budget)), "{text}");
                if kind == EventKind::MonthlyReport {
                    // Not about a signal: the month's figures instead.
                    assert!(text.contains("213") && text.contains("7"), "{text}");
                    assert!(!text.contains("alerts"), "{text}");
                } else {
                    assert!(
                        text.contains("alerts") && text.contains("WeChatQuotaExhausted"),
                        "{text}"
                    );
                }
                assert!(titles.insert(r.event(&ev).title), "titles differ per kind");
            }
        }
    }

    #[test]
    fn budget_line_uses_the_spec_wording() {
        let b = Budget {
            used: 5,
            cap: 8,
            left: 3,
            month: "2026-11".into(),
        };
        assert_eq!(
            renderer(Language::En).budget_text(&b),
            "3 of 8 clears left in 2026-11"
        );
        assert_eq!(
            renderer(Language::Zh).budget_text(&b),
            "2026-11 还剩 3 次清零（共 8 次）"
        );
        let text = renderer(Language::En)
            .event(&sample(EventKind::Cleared))
            .plain();
        assert!(
            text.contains("Budget: 3 of 8 clears left in 2026-11"),
            "{text}"
        );
    }

    #[test]
    fn english_and_chinese_say_what_happened() {
        let cases = [
            (
                EventKind::Cleared,
                "Cleared all daily API counters.",
                "已清零全部接口的每日调用次数。",
            ),
            (
                EventKind::DryRun,
                "dry run is on: WeChat was not called",
                "演练模式",
            ),
            (
                EventKind::Skipped,
                "Not cleared: cooldown",
                "未清零：冷却中",
            ),
            (
                EventKind::BudgetLow,
                "Only 2 clears left this month",
                "本月仅剩 2 次清零",
            ),
            (
                EventKind::Exhausted,
                "stops trying until next month",
                "下月之前",
            ),
            (
                EventKind::ConfigError,
                "stops acting for this account",
                "不再处理该账号",
            ),
            (EventKind::Failed, "WeChat did not clear", "微信未能清零"),
        ];
        for (kind, en, zh) in cases {
            let ev = sample(kind);
            assert!(
                renderer(Language::En).event(&ev).plain().contains(en),
                "{kind:?} en"
            );
            let zh_text = renderer(Language::Zh).event(&ev).plain();
            assert!(zh_text.contains(zh), "{kind:?} zh: {zh_text}");
        }
    }

    #[test]
    fn single_api_clears_name_the_api() {
        let mut ev = sample(EventKind::Cleared);
        ev.target = ClearTarget::Api {
            cgi_path: "/cgi-bin/message/custom/send".into(),
        };
        let text = renderer(Language::En).event(&ev).plain();
        assert!(
            text.contains("the daily counter of /cgi-bin/message/custom/send"),
            "{text}"
        );
    }

    #[test]
    fn cooldown_skips_show_the_next_clear_in_the_configured_zone() {
        let ev = sample(EventKind::Skipped);
        let en = renderer(Language::En).event(&ev).plain();
        assert!(
            en.contains("Next possible clear: 2026-11-03 15:05:00 Asia/Shanghai"),
            "{en}"
        );
        let zh = renderer(Language::Zh).event(&ev).plain();
        assert!(
            zh.contains("最早可再次清零：2026-11-03 15:05:00 Asia/Shanghai"),
            "{zh}"
        );
        let utc = Renderer {
            timezone: chrono_tz::UTC,
            ..renderer(Language::En)
        };
        assert!(utc
            .event(&ev)
            .plain()
            .contains("Next possible clear: 2026-11-03 07:05:00 UTC"));
    }

    #[test]
    fn wechat_errors_come_with_a_fix() {
        let cases = [
            (
                40013,
                "invalid appid",
                "accounts.shop.appid",
                "accounts.shop.appid",
            ),
            (
                40125,
                "invalid appsecret",
                "Update accounts.shop.secret",
                "请更新 accounts.shop.secret",
            ),
            (
                40164,
                "invalid ip 198.51.100.7 ipv6 ::ffff:198.51.100.7, not in whitelist rid: x",
                "IP 198.51.100.7 is not in the account's IP whitelist",
                "本机 IP 198.51.100.7 不在",
            ),
            (
                48006,
                "forbid to clear quota because of reaching the limit",
                "all 10 clears of this month are used",
                "本月 10 次清零已全部用完",
            ),
        ];
        for (code, msg, en, zh) in cases {
            let mut ev = sample(EventKind::ConfigError);
            failed(&mut ev, code, msg);
            let en_text = renderer(Language::En).event(&ev).plain();
            assert!(
                en_text.contains(&format!("WeChat error {code}: {msg}")),
                "{en_text}"
            );
            assert!(en_text.contains(en), "{code}: {en_text}");
            let zh_text = renderer(Language::Zh).event(&ev).plain();
            assert!(
                zh_text.contains(&format!("微信错误码 {code}：")),
                "{zh_text}"
            );
            assert!(zh_text.contains(zh), "{code}: {zh_text}");
        }
    }

    #[test]
    fn ambiguous_failures_warn_that_the_clear_may_have_happened() {
        let mut ev = sample(EventKind::Failed);
        ev.outcome = Some(Outcome::Ambiguous {
            detail: "timed out after 10s".into(),
        });
        ev.errcode = None;
        ev.errmsg = None;
        let text = renderer(Language::En).event(&ev).plain();
        assert!(
            text.contains(
                "No answer from WeChat (timed out after 10s): the clear may have taken effect"
            ),
            "{text}"
        );
        assert!(!text.contains("WeChat error"), "{text}");
    }

    #[test]
    fn digest_lists_events_and_counts_the_rest() {
        let events: Vec<Event> = (0..25).map(|_| sample(EventKind::Skipped)).collect();
        let now = Utc.with_ymd_and_hms(2026, 11, 3, 6, 6, 0).unwrap();
        let en = renderer(Language::En).digest(&events, 30, now);
        assert_eq!(
            en.title,
            "[quotawatch] 30 events held back by the chat rate limit"
        );
        assert_eq!(en.lines.len(), DIGEST_LINES + 2);
        assert!(en.lines[0].contains("14:05:00 Clear skipped: shop (wx448f04719cd48f69), 3 of 8 clears left in 2026-11, cooldown"), "{:?}", en.lines[0]);
        assert!(en.lines[DIGEST_LINES].contains("and 10 more"));
        let zh = renderer(Language::Zh).digest(&events[..2], 2, now);
        assert!(zh.title.contains("2 条事件"), "{}", zh.title);
        assert_eq!(zh.lines.len(), 3);
    }

    #[test]
    fn test_message_names_the_notifier() {
        let now = Utc.with_ymd_and_hms(2026, 11, 3, 6, 6, 0).unwrap();
        assert!(renderer(Language::En)
            .test("ops", now)
            .title
            .contains("notifier ops"));
        assert!(renderer(Language::Zh)
            .test("ops", now)
            .title
            .contains("通知渠道 ops"));
    }

    #[test]
    fn truncation_respects_bytes_at_char_boundaries() {
        let text = "清零".repeat(2000); // 3 bytes per char
        for max in [4096, 4095, 4094, 10] {
            let cut = truncate(&text, Limit::Bytes(max));
            assert!(cut.len() <= max, "{max}: {}", cut.len());
            assert!(cut.len() > max - 6, "cut no more than needed");
            assert!(cut.ends_with('…'));
        }
        assert_eq!(truncate("short", Limit::Bytes(5)), "short");
        assert_eq!(truncate("toolong", Limit::Bytes(6)), "too…");
    }

    #[test]
    fn truncation_respects_chars() {
        let text = "é".repeat(2500);
        let cut = truncate(&text, Limit::Chars(2000));
        assert_eq!(cut.chars().count(), 2000);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate(&"a".repeat(2000), Limit::Chars(2000)).len(), 2000);
        assert_eq!(truncate("abc def", Limit::Chars(5)), "abc…");
    }
}
