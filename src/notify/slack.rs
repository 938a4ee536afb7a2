//! Slack incoming webhook: `text` (the push notification and fallback) plus
//! `blocks`, a header with the title and a mrkdwn section with the details.
//!
//! Slack allows about one message a second per webhook. It answers `ok` with
//! HTTP 200; errors are 4xx with a short code (`invalid_payload`, `no_service`,
//! `channel_is_archived`), and a revoked URL (403, 404, 410) is a configuration
//! error.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use serde::{Deserialize, Serialize};

use super::render::{truncate, Limit};
use super::{
    classify_status_config, NotifierSpec, Outbound, Outgoing, Platform, PlatformConfig, Reply,
    Verdict, Window,
};
use crate::secret::Secret;
use crate::settings::Checker;

/// A section block's text may be at most 3000 characters.
pub const SECTION_LIMIT: Limit = Limit::Chars(3000);
/// A header block's text may be at most 150 characters.
pub const HEADER_LIMIT: Limit = Limit::Chars(150);

const RATE: &[Window] = &[Window {
    max: 1,
    per: Duration::from_secs(1),
}];

/// `type = "slack"`: the incoming webhook's URL is all it needs, so no keys
/// besides the shared ones.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {}

impl PlatformConfig for SlackConfig {
    type Settings = SlackConfig;

    fn validate(self, _: &mut Checker<'_>, _: &str) -> Self {
        self
    }

    fn build(_: &Self, spec: &NotifierSpec) -> Box<dyn Platform> {
        Box::new(Slack {
            url: spec.url.clone(),
        })
    }
}

pub struct Slack {
    url: Secret,
}

impl Platform for Slack {
    fn rate_limit(&self) -> &'static [Window] {
        RATE
    }

    fn request(&self, out: &Outbound, _now: DateTime<Utc>) -> Outgoing {
        let title = escape(&out.message.title);
        let section = escape(&out.message.body());
        let body = json!({
            "text": title,
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": truncate(&out.message.title, HEADER_LIMIT) } },
                { "type": "section", "text": { "type": "mrkdwn", "text": truncate(&section, SECTION_LIMIT) } },
            ],
        });
        Outgoing::json(self.url.expose().to_string(), &body)
    }

    fn classify(&self, reply: &Reply) -> Verdict {
        classify_status_config(reply).unwrap_or(Verdict::Sent)
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters (links,
/// mentions); an errmsg must not become one.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::event::EventKind;
    use crate::notify::{Language, PlatformSettings};

    fn slack() -> Box<dyn Platform> {
        spec(
            PlatformSettings::Slack(SlackConfig {}),
            "https://hooks.slack.com/services/T/B/X",
        )
        .build()
    }

    #[test]
    fn text_plus_header_and_section() {
        let mut out = outbound(EventKind::Cleared, Language::En);
        out.message.lines.push("a <@channel> & b".into());
        let body = body(&slack().request(&out, now()));
        assert_eq!(body["text"], "[quotawatch] Quota cleared: shop");
        assert_eq!(body["blocks"][0]["type"], "header");
        assert_eq!(
            body["blocks"][0]["text"]["text"],
            "[quotawatch] Quota cleared: shop"
        );
        assert_eq!(body["blocks"][1]["text"]["type"], "mrkdwn");
        let section = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("Budget: 3 of 8 clears left in 2026-11"),
            "{section}"
        );
        assert!(section.contains("a &lt;@channel&gt; &amp; b"), "{section}");
    }

    #[test]
    fn section_is_cut_at_3000_characters() {
        let body = body(&slack().request(&oversized(Language::En), now()));
        let section = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(section.chars().count(), 3000);
        assert!(section.ends_with('…'));
    }

    #[test]
    fn statuses_are_judged() {
        let s = slack();
        assert_eq!(s.classify(&reply(200, "ok")), Verdict::Sent);
        assert!(matches!(
            s.classify(&reply(404, "no_service")),
            Verdict::ConfigError(_)
        ));
        assert!(matches!(
            s.classify(&reply(400, "invalid_payload")),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            s.classify(&reply(429, "rate_limited")),
            Verdict::Retry { .. }
        ));
    }
}
