//! Discord webhook: `content` (the push notification) plus one embed with the
//! details, coloured by severity.
//!
//! Discord rate limits webhooks per channel, about 5 requests per 2 s and 30
//! messages a minute. A 429 carries `retry_after` in seconds in its JSON body
//! (more precise than the `Retry-After` header), from API v8 on: the URLs
//! Discord hands out name no version, and its default version (v6), like v7,
//! counts in milliseconds, so messages are posted to [`API_VERSION`]. A
//! deleted webhook answers 404.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use serde::{Deserialize, Serialize};

use super::render::{truncate, Limit, Severity};
use super::{
    classify_status_config, NotifierSpec, Outbound, Outgoing, Platform, PlatformConfig, Reply,
    Verdict, Window,
};
use crate::secret::Secret;
use crate::settings::Checker;

/// A message's `content` may be at most 2000 characters; the embed
/// description is held to the same so a message reads the same everywhere.
pub const TEXT_LIMIT: Limit = Limit::Chars(2000);
/// An embed title may be at most 256 characters.
pub const TITLE_LIMIT: Limit = Limit::Chars(256);

const RATE: &[Window] = &[
    Window {
        max: 5,
        per: Duration::from_secs(2),
    },
    Window {
        max: 30,
        per: Duration::from_secs(60),
    },
];

/// The API version messages are posted to; its `retry_after` is seconds.
pub const API_VERSION: &str = "v10";

/// `type = "discord"`: the webhook's URL is all it needs, so no keys besides
/// the shared ones.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {}

impl PlatformConfig for DiscordConfig {
    type Settings = DiscordConfig;

    fn validate(self, _: &mut Checker<'_>, _: &str) -> Self {
        self
    }

    fn build(_: &Self, spec: &NotifierSpec) -> Box<dyn Platform> {
        Box::new(Discord {
            url: Secret::new(versioned(spec.url.expose())),
        })
    }
}

pub struct Discord {
    url: Secret,
}

/// `url` with an unversioned, v6 or v7 webhook path pinned to
/// [`API_VERSION`]; any other URL (v8 and later, a relay) as it is.
fn versioned(url: &str) -> String {
    for old in ["/api/webhooks/", "/api/v6/webhooks/", "/api/v7/webhooks/"] {
        if let Some(i) = url.find(old) {
            let rest = &url[i + old.len()..];
            return format!("{}/api/{API_VERSION}/webhooks/{rest}", &url[..i]);
        }
    }
    url.to_string()
}

impl Platform for Discord {
    fn rate_limit(&self) -> &'static [Window] {
        RATE
    }

    fn request(&self, out: &Outbound, now: DateTime<Utc>) -> Outgoing {
        let m = &out.message;
        let body = json!({
            "content": truncate(&m.title, TEXT_LIMIT),
            "embeds": [{
                "title": truncate(&m.title, TITLE_LIMIT),
                "description": truncate(&m.body(), TEXT_LIMIT),
                "color": colour(m.severity),
                "timestamp": now.to_rfc3339(),
            }],
            // An errmsg or account name containing @everyone must not ping anyone.
            "allowed_mentions": { "parse": [] },
        });
        Outgoing::json(self.url.expose().to_string(), &body)
    }

    fn classify(&self, reply: &Reply) -> Verdict {
        if reply.status == 429 {
            let after = reply
                .json()
                .and_then(|j| j.get("retry_after")?.as_f64())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .or(reply.retry_after);
            return Verdict::Retry {
                after,
                why: format!("HTTP 429: {}", reply.snippet()),
            };
        }
        classify_status_config(reply).unwrap_or(Verdict::Sent)
    }
}

fn colour(severity: Severity) -> u32 {
    match severity {
        Severity::Info => 0x2ECC71,
        Severity::Notice => 0x95A5A6,
        Severity::Warning => 0xE67E22,
        Severity::Critical => 0xE74C3C,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::event::EventKind;
    use crate::notify::{Language, PlatformSettings};

    fn discord_at(url: &str) -> Box<dyn Platform> {
        spec(PlatformSettings::Discord(DiscordConfig {}), url).build()
    }

    fn discord() -> Box<dyn Platform> {
        discord_at("https://discord.com/api/webhooks/1/T")
    }

    #[test]
    fn content_plus_embed() {
        let body = body(&discord().request(&outbound(EventKind::Exhausted, Language::En), now()));
        assert_eq!(
            body["content"],
            "[quotawatch] Monthly clears exhausted: shop"
        );
        let embed = &body["embeds"][0];
        assert_eq!(
            embed["title"],
            "[quotawatch] Monthly clears exhausted: shop"
        );
        assert_eq!(embed["color"], 0xE74C3C);
        assert!(embed["description"]
            .as_str()
            .unwrap()
            .contains("WeChat error 48006"));
        assert_eq!(body["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn description_is_cut_at_2000_characters() {
        let body = body(&discord().request(&oversized(Language::Zh), now()));
        let description = body["embeds"][0]["description"].as_str().unwrap();
        assert_eq!(description.chars().count(), 2000);
        assert!(description.ends_with('…'));
        let mut out = outbound(EventKind::Cleared, Language::En);
        out.message.title = "t".repeat(3000);
        let body = super::super::test_support::body(&discord().request(&out, now()));
        assert_eq!(body["content"].as_str().unwrap().chars().count(), 2000);
        assert_eq!(
            body["embeds"][0]["title"].as_str().unwrap().chars().count(),
            256
        );
    }

    /// The URL Discord hands out has no API version, and the default version
    /// counts `retry_after` in milliseconds: read as seconds, 1500 ms would be
    /// a 25-minute wait.
    #[test]
    fn messages_go_to_an_api_version_that_counts_in_seconds() {
        let out = outbound(EventKind::Cleared, Language::En);
        for (configured, sent) in [
            (
                "https://discord.com/api/webhooks/1/T",
                "https://discord.com/api/v10/webhooks/1/T",
            ),
            (
                "https://discordapp.com/api/v6/webhooks/1/T?thread_id=9",
                "https://discordapp.com/api/v10/webhooks/1/T?thread_id=9",
            ),
            (
                "https://discord.com/api/v9/webhooks/1/T",
                "https://discord.com/api/v9/webhooks/1/T",
            ),
            (
                "http://127.0.0.1:8080/relay/discord",
                "http://127.0.0.1:8080/relay/discord",
            ),
        ] {
            let d = discord_at(configured);
            assert_eq!(d.request(&out, now()).url, sent);
        }
    }

    #[test]
    fn retry_after_comes_from_the_json_body() {
        let d = discord();
        let mut r = reply(
            429,
            r#"{"message":"You are being rate limited.","retry_after":1.25,"global":false}"#,
        );
        r.retry_after = Some(Duration::from_secs(2));
        assert!(
            matches!(d.classify(&r), Verdict::Retry { after: Some(a), .. } if a == Duration::from_millis(1250))
        );
        r.body = "slow down".into();
        assert!(
            matches!(d.classify(&r), Verdict::Retry { after: Some(a), .. } if a == Duration::from_secs(2))
        );
        assert_eq!(d.classify(&reply(204, "")), Verdict::Sent);
        assert!(matches!(
            d.classify(&reply(404, r#"{"message":"Unknown Webhook","code":10015}"#)),
            Verdict::ConfigError(_)
        ));
    }
}
