//! WeCom (企业微信) group robot: a markdown message POSTed to the robot's
//! webhook URL, whose `key` parameter is the credential.
//!
//! WeCom allows 20 messages a minute per robot; sending one every 3 s keeps
//! under it without ever bursting. The robot answers HTTP 200 with `errcode`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use serde::{Deserialize, Serialize};

use super::render::{truncate, Limit, Message, Severity};
use super::{
    classify_coded, CodeClass, NotifierSpec, Outbound, Outgoing, Platform, PlatformConfig, Reply,
    Verdict, Window,
};
use crate::secret::Secret;
use crate::settings::Checker;

/// `markdown.content` may be at most 4096 bytes of UTF-8.
pub const MARKDOWN_LIMIT: Limit = Limit::Bytes(4096);

const RATE: &[Window] = &[Window {
    max: 1,
    per: Duration::from_secs(3),
}];

/// `type = "wecom"`: the robot's URL is all it needs, so no keys besides the
/// shared ones.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {}

impl PlatformConfig for WeComConfig {
    type Settings = WeComConfig;

    fn validate(self, _: &mut Checker<'_>, _: &str) -> Self {
        self
    }

    fn build(_: &Self, spec: &NotifierSpec) -> Box<dyn Platform> {
        Box::new(WeCom {
            url: spec.url.clone(),
        })
    }
}

pub struct WeCom {
    url: Secret,
}

impl Platform for WeCom {
    fn rate_limit(&self) -> &'static [Window] {
        RATE
    }

    fn request(&self, out: &Outbound, _now: DateTime<Utc>) -> Outgoing {
        let content = markdown(&out.message);
        let body = json!({
            "msgtype": "markdown",
            "markdown": { "content": truncate(&content, MARKDOWN_LIMIT) },
        });
        Outgoing::json(self.url.expose().to_string(), &body)
    }

    fn classify(&self, reply: &Reply) -> Verdict {
        classify_coded(reply, &["errcode"], "errmsg", judge)
    }
}

fn markdown(message: &Message) -> String {
    // WeCom markdown knows three font colours: info (green), comment (grey)
    // and warning (orange).
    let colour = match message.severity {
        Severity::Info => "info",
        Severity::Notice => "comment",
        Severity::Warning | Severity::Critical => "warning",
    };
    format!(
        "### <font color=\"{colour}\">{}</font>\n{}",
        message.title,
        message.body()
    )
}

fn judge(code: i64) -> CodeClass {
    match code {
        // System busy; 45009 here is the robot's own 20-per-minute limit.
        -1 | 45009 => CodeClass::Retry,
        // 93000: the webhook key is invalid or the robot was removed.
        93000 => CodeClass::Config,
        _ => CodeClass::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::event::EventKind;
    use crate::notify::{Language, PlatformSettings};

    fn wecom() -> Box<dyn Platform> {
        spec(
            PlatformSettings::Wecom(WeComConfig {}),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K",
        )
        .build()
    }

    #[test]
    fn sends_markdown_to_the_configured_url() {
        let request = wecom().request(&outbound(EventKind::Cleared, Language::Zh), now());
        assert_eq!(
            request.url,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K"
        );
        let body = body(&request);
        assert_eq!(body["msgtype"], "markdown");
        let content = body["markdown"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("### <font color=\"info\">[quotawatch] 已清零：shop</font>\n"),
            "{content}"
        );
        assert!(
            content.contains("额度：2026-11 还剩 3 次清零（共 8 次）"),
            "{content}"
        );
    }

    #[test]
    fn truncates_to_4096_bytes() {
        let request = wecom().request(&oversized(Language::Zh), now());
        let content = body(&request)["markdown"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            content.len() <= 4096 && content.len() > 4090,
            "{}",
            content.len()
        );
        assert!(content.ends_with('…'));
    }

    #[test]
    fn errcode_in_a_200_is_a_failure() {
        let w = wecom();
        assert_eq!(
            w.classify(&reply(200, r#"{"errcode":0,"errmsg":"ok"}"#)),
            Verdict::Sent
        );
        assert!(matches!(
            w.classify(&reply(
                200,
                r#"{"errcode":40008,"errmsg":"invalid message type"}"#
            )),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            w.classify(&reply(
                200,
                r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#
            )),
            Verdict::ConfigError(_)
        ));
        assert!(matches!(
            w.classify(&reply(
                200,
                r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#
            )),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            w.classify(&reply(502, "bad gateway")),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            w.classify(&reply(200, "<html>")),
            Verdict::Rejected(_)
        ));
    }
}
