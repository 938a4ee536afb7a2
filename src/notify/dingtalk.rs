//! DingTalk (钉钉) custom robot: a markdown message POSTed to the robot's
//! webhook URL (`access_token` is the credential), signed when a secret is set.
//!
//! The signature goes in the query string as `timestamp` (milliseconds) and
//! `sign` ([`super::sign::dingtalk`], URL-encoded). DingTalk allows 20 messages
//! a minute per robot, so one every 3 s. Answers are HTTP 200 with `errcode`;
//! 310000 means a security setting (signature, keyword, IP range) refused the
//! message, which only a configuration change fixes.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::render::{truncate, Limit, Message};
use super::{
    classify_coded, sign, CodeClass, NotifierSpec, Outbound, Outgoing, Platform, PlatformConfig,
    Reply, Verdict, Window,
};
use crate::secret::Secret;
use crate::settings::Checker;

/// DingTalk caps message content at 20000 bytes.
pub const MARKDOWN_LIMIT: Limit = Limit::Bytes(20_000);

const RATE: &[Window] = &[Window {
    max: 1,
    per: Duration::from_secs(3),
}];

/// `type = "dingtalk"`: besides the shared keys, the robot's signing secret
/// (its 加签 setting), inline or from a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DingTalkConfig {
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DingTalkSettings {
    /// Messages are signed when set.
    pub secret: Option<Secret>,
}

impl PlatformConfig for DingTalkConfig {
    type Settings = DingTalkSettings;

    fn validate(self, ck: &mut Checker<'_>, key: &str) -> DingTalkSettings {
        let secret = ck.secret(&format!("{key}.secret"), self.secret, self.secret_file.as_ref());
        DingTalkSettings { secret }
    }

    fn build(settings: &DingTalkSettings, spec: &NotifierSpec) -> Box<dyn Platform> {
        Box::new(DingTalk {
            url: spec.url.clone(),
            secret: settings.secret.clone(),
        })
    }
}

pub struct DingTalk {
    url: Secret,
    secret: Option<Secret>,
}

impl DingTalk {
    fn signed_url(&self, now: DateTime<Utc>) -> String {
        let url = self.url.expose();
        let Some(secret) = &self.secret else {
            return url.to_string();
        };
        let ts = now.timestamp_millis();
        let sign = urlencoding::encode(&sign::dingtalk(secret.expose(), ts)).into_owned();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}timestamp={ts}&sign={sign}")
    }
}

impl Platform for DingTalk {
    fn rate_limit(&self) -> &'static [Window] {
        RATE
    }

    fn request(&self, out: &Outbound, now: DateTime<Utc>) -> Outgoing {
        let body = json!({
            "msgtype": "markdown",
            "markdown": {
                // The title is what the conversation list and the push show.
                "title": out.message.title,
                "text": truncate(&markdown(&out.message), MARKDOWN_LIMIT),
            },
        });
        Outgoing::json(self.signed_url(now), &body)
    }

    fn classify(&self, reply: &Reply) -> Verdict {
        classify_coded(reply, &["errcode"], "errmsg", judge)
    }
}

fn markdown(message: &Message) -> String {
    // DingTalk markdown needs a blank line to break lines.
    format!("### {}\n\n{}", message.title, message.lines.join("\n\n"))
}

fn judge(code: i64) -> CodeClass {
    match code {
        // -1: system busy; 130101: sending too fast.
        -1 | 130101 => CodeClass::Retry,
        // 310000: signature, keyword or IP check failed; 300001: unknown token.
        310000 | 300001 => CodeClass::Config,
        _ => CodeClass::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::event::EventKind;
    use crate::notify::{Language, PlatformSettings};

    const URL: &str = "https://oapi.dingtalk.com/robot/send?access_token=T";

    fn dingtalk(secret: Option<&str>) -> Box<dyn Platform> {
        let secret = secret.map(Secret::new);
        spec(PlatformSettings::Dingtalk(DingTalkSettings { secret }), URL).build()
    }

    #[test]
    fn signs_in_the_query_string() {
        let d = dingtalk(Some("SECexample-dingtalk-secret"));
        let at = chrono::TimeZone::timestamp_millis_opt(&Utc, 1_700_000_000_000).unwrap();
        let request = d.request(&outbound(EventKind::Cleared, Language::En), at);
        // The vector of sign.rs, URL-encoded.
        assert_eq!(
            request.url,
            format!("{URL}&timestamp=1700000000000&sign=kPGAgZp4Hv0Jb%2FBGhd%2BAHR5FDlzBdajrYiPGCvJLpVg%3D")
        );
    }

    #[test]
    fn unsigned_without_a_secret_and_markdown_shaped() {
        let d = dingtalk(None);
        let request = d.request(&outbound(EventKind::BudgetLow, Language::En), now());
        assert_eq!(request.url, URL);
        let body = body(&request);
        assert_eq!(body["msgtype"], "markdown");
        assert_eq!(
            body["markdown"]["title"],
            "[quotawatch] Clear budget low: shop"
        );
        let text = body["markdown"]["text"].as_str().unwrap();
        assert!(
            text.starts_with("### [quotawatch] Clear budget low: shop\n\nAccount: shop"),
            "{text}"
        );
        assert!(
            text.contains("\n\nBudget: 2 of 8 clears left in 2026-11"),
            "{text}"
        );
    }

    #[test]
    fn truncates_to_its_byte_limit() {
        let d = dingtalk(None);
        let text = body(&d.request(&oversized(Language::Zh), now()))["markdown"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.len() <= 20_000 && text.len() > 19_990,
            "{}",
            text.len()
        );
        assert!(text.ends_with('…'));
    }

    #[test]
    fn security_errors_are_configuration_errors() {
        let d = dingtalk(None);
        assert_eq!(
            d.classify(&reply(200, r#"{"errcode":0,"errmsg":"ok"}"#)),
            Verdict::Sent
        );
        let v = d.classify(&reply(
            200,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
        ));
        assert_eq!(
            v,
            Verdict::ConfigError("code 310000: sign not match".into())
        );
        assert!(matches!(
            d.classify(&reply(
                200,
                r#"{"errcode":130101,"errmsg":"send too fast"}"#
            )),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            d.classify(&reply(200, r#"{"errcode":40035,"errmsg":"bad"}"#)),
            Verdict::Rejected(_)
        ));
    }
}
