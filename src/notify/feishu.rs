//! Feishu / Lark (飞书) custom bot: a rich-text `post` or an `interactive`
//! card (`format = "card"`) POSTed to the bot's webhook URL, signed when a
//! secret is set.
//!
//! The signature goes in the JSON body as `timestamp` (seconds, a string) and
//! `sign` ([`super::sign::feishu`]). Feishu allows 5 messages a second and 100 a
//! minute per bot. Answers carry `code` (older ones also `StatusCode`); 19021
//! (signature), 19022 (IP) and 19024 (keyword) are configuration errors.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::render::{truncate, Language, Limit, Message, Severity};
use super::{
    classify_coded, sign, CodeClass, NotifierSpec, Outbound, Outgoing, Platform, PlatformConfig,
    Reply, Verdict, Window,
};
use crate::secret::Secret;
use crate::settings::{Checker, Choice};

/// A request body may be at most 20 KB; this leaves room for the JSON around
/// the text.
pub const TEXT_LIMIT: Limit = Limit::Bytes(18_000);

const RATE: &[Window] = &[
    Window {
        max: 5,
        per: Duration::from_secs(1),
    },
    Window {
        max: 100,
        per: Duration::from_secs(60),
    },
];

/// `type = "feishu"`: besides the shared keys, the bot's signing secret
/// (inline or from a file) and the message format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeishuConfig {
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    pub format: Option<Choice<FeishuFormat>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeishuFormat {
    /// Rich text.
    #[default]
    Post,
    /// An interactive card with a header coloured by severity.
    Card,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct FeishuSettings {
    /// Messages are signed when set.
    pub secret: Option<Secret>,
    pub format: FeishuFormat,
}

impl PlatformConfig for FeishuConfig {
    type Settings = FeishuSettings;

    fn validate(self, ck: &mut Checker<'_>, key: &str) -> FeishuSettings {
        FeishuSettings {
            secret: ck.secret(&format!("{key}.secret"), self.secret, self.secret_file.as_ref()),
            format: ck.choice(&format!("{key}.format"), self.format.as_ref(), FeishuFormat::default()),
        }
    }

    fn build(settings: &FeishuSettings, spec: &NotifierSpec) -> Box<dyn Platform> {
        Box::new(Feishu {
            url: spec.url.clone(),
            secret: settings.secret.clone(),
            format: settings.format,
            language: spec.language,
        })
    }
}

pub struct Feishu {
    url: Secret,
    secret: Option<Secret>,
    format: FeishuFormat,
    language: Language,
}

impl Feishu {
    fn post(&self, message: &Message) -> Value {
        let text = message.body();
        let body = truncate(&text, TEXT_LIMIT);
        let paragraphs: Vec<Value> = body
            .lines()
            .map(|line| json!([{ "tag": "text", "text": line }]))
            .collect();
        let locale = match self.language {
            Language::Zh => "zh_cn",
            Language::En => "en_us",
        };
        json!({
            "msg_type": "post",
            "content": { "post": { locale: { "title": message.title, "content": paragraphs } } },
        })
    }

    fn card(&self, message: &Message) -> Value {
        let template = match message.severity {
            Severity::Info => "green",
            Severity::Notice => "grey",
            Severity::Warning => "orange",
            Severity::Critical => "red",
        };
        json!({
            "msg_type": "interactive",
            "card": {
                "config": { "wide_screen_mode": true },
                "header": { "title": { "tag": "plain_text", "content": message.title }, "template": template },
                "elements": [{ "tag": "div", "text": { "tag": "lark_md", "content": truncate(&message.body(), TEXT_LIMIT) } }],
            },
        })
    }
}

impl Platform for Feishu {
    fn rate_limit(&self) -> &'static [Window] {
        RATE
    }

    fn request(&self, out: &Outbound, now: DateTime<Utc>) -> Outgoing {
        let mut body = match self.format {
            FeishuFormat::Post => self.post(&out.message),
            FeishuFormat::Card => self.card(&out.message),
        };
        if let Some(secret) = &self.secret {
            let ts = now.timestamp();
            body["timestamp"] = json!(ts.to_string());
            body["sign"] = json!(sign::feishu(secret.expose(), ts));
        }
        Outgoing::json(self.url.expose().to_string(), &body)
    }

    fn classify(&self, reply: &Reply) -> Verdict {
        classify_coded(reply, &["code", "StatusCode"], "msg", judge)
    }
}

fn judge(code: i64) -> CodeClass {
    match code {
        // 9499 and 11232: too many requests.
        9499 | 11232 => CodeClass::Retry,
        // 19001: the webhook token is invalid; 19021: signature; 19022: IP
        // not allowed; 19024: keyword missing.
        19001 | 19021 | 19022 | 19024 => CodeClass::Config,
        _ => CodeClass::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::event::EventKind;
    use crate::notify::PlatformSettings;

    const URL: &str = "https://open.feishu.cn/open-apis/bot/v2/hook/H";

    fn feishu(format: FeishuFormat, language: Language, secret: Option<&str>) -> Box<dyn Platform> {
        let secret = secret.map(Secret::new);
        let mut s = spec(PlatformSettings::Feishu(FeishuSettings { secret, format }), URL);
        s.language = language;
        s.build()
    }

    #[test]
    fn post_is_signed_in_the_body() {
        let f = feishu(FeishuFormat::Post, Language::Zh, Some("demo"));
        let at = chrono::TimeZone::timestamp_opt(&Utc, 1599360473, 0).unwrap();
        let request = f.request(&outbound(EventKind::Skipped, Language::Zh), at);
        assert_eq!(request.url, URL);
        let body = body(&request);
        assert_eq!(body["timestamp"], "1599360473");
        assert_eq!(body["sign"], "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=");
        assert_eq!(body["msg_type"], "post");
        let post = &body["content"]["post"]["zh_cn"];
        assert_eq!(post["title"], "[quotawatch] 未清零：shop");
        assert_eq!(post["content"][0][0]["tag"], "text");
        assert_eq!(
            post["content"][0][0]["text"],
            "账号：shop（wx448f04719cd48f69）"
        );
    }

    #[test]
    fn card_has_a_coloured_header_and_no_signature_without_secret() {
        let f = feishu(FeishuFormat::Card, Language::En, None);
        let body = body(&f.request(&outbound(EventKind::Failed, Language::En), now()));
        assert_eq!(body["msg_type"], "interactive");
        assert_eq!(body["card"]["header"]["template"], "red");
        assert_eq!(
            body["card"]["header"]["title"]["content"],
            "[quotawatch] Clear failed: shop"
        );
        let md = body["card"]["elements"][0]["text"]["content"]
            .as_str()
            .unwrap();
        assert!(md.contains("WeChat error 40164"), "{md}");
        assert!(body.get("sign").is_none() && body.get("timestamp").is_none());
    }

    #[test]
    fn long_messages_are_truncated() {
        let f = feishu(FeishuFormat::Card, Language::Zh, None);
        let body = body(&f.request(&oversized(Language::Zh), now()));
        let md = body["card"]["elements"][0]["text"]["content"]
            .as_str()
            .unwrap();
        assert!(md.len() <= 18_000 && md.ends_with('…'), "{}", md.len());
    }

    #[test]
    fn codes_are_judged() {
        let f = feishu(FeishuFormat::Post, Language::En, None);
        let ok = r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#;
        assert_eq!(f.classify(&reply(200, ok)), Verdict::Sent);
        for code in [19021, 19024] {
            let body = format!(r#"{{"code":{code},"data":{{}},"msg":"sign match fail"}}"#);
            assert!(
                matches!(f.classify(&reply(200, &body)), Verdict::ConfigError(_)),
                "{code}"
            );
        }
        assert!(matches!(
            f.classify(&reply(200, r#"{"code":9499,"msg":"Too Many Request"}"#)),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            f.classify(&reply(200, r#"{"code":19002,"msg":"params error"}"#)),
            Verdict::Rejected(_)
        ));
    }
}
