//! Plain webhook: a JSON document POSTed to any URL, signed as Standard
//! Webhooks when a secret is set, for systems that are not a chat (incident
//! tools, a script, another bot).
//!
//! # The document
//!
//! Every message is one JSON object with these fields:
//!
//! - `type`: `"event"`, `"digest"` (events folded by the rate limit) or `"test"`.
//! - `id`: the message id, the same as the `webhook-id` header; a retry keeps it,
//!   so receivers can drop duplicates.
//! - `host`: the host name of the quotawatch that sent it.
//! - `title`, `text`: the rendered message in the notifier's language (`text`
//!   is the title and the details, one per line).
//!
//! A `"event"` also has the fields of the event itself:
//!
//! - `kind`: `cleared`, `failed`, `skipped`, `dry_run`, `budget_low`,
//!   `exhausted` or `config_error`.
//! - `account`, `appid`: the account's config name and appid.
//! - `at`: when it happened, RFC 3339 in UTC.
//! - `source`, `trigger`, `evidence`: what asked for the clear and how many
//!   evidence events supported it.
//! - `target`: `{"scope": "full"}` or `{"scope": "api", "cgi_path": "/…"}`.
//! - `skip_reason`: for `skipped` and `dry_run`, the policy's reason
//!   (`cooldown`, `monthly_cap`, …), else null.
//! - `outcome`: for attempts, `{"outcome": "ok"}`,
//!   `{"outcome": "failed", "errcode": N, "errmsg": "…"}` or
//!   `{"outcome": "ambiguous", "detail": "…"}`, else null.
//! - `errcode`, `errmsg`: WeChat's answer, when there was one.
//! - `budget`: `{"used", "cap", "left", "month": "YYYY-MM"}` after the event.
//! - `next_clear_at`: the earliest next clear (RFC 3339) for timing skips, else null.
//!
//! A `"digest"` has `total` (events folded) and `events`, the first 100 of them
//! in the shape above (without `type`, `id`, `host`, `title`, `text`).
//!
//! # Signature
//!
//! With a secret, the headers `webhook-id`, `webhook-timestamp` (Unix seconds)
//! and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//! follow the Standard Webhooks specification, so its libraries verify them. A
//! `whsec_…` secret is Base64 key material; any other string is used as bytes.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    classify_status_config, sign, Content, NotifierSpec, Outbound, Outgoing, Platform,
    PlatformConfig, Reply, Verdict, Window,
};
use crate::secret::Secret;
use crate::settings::Checker;

/// No platform limit; this keeps a storm from flooding the receiver.
const RATE: &[Window] = &[Window {
    max: 10,
    per: Duration::from_secs(1),
}];

/// `type = "webhook"`: besides the shared keys, the Standard Webhooks
/// signing secret, inline or from a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct WebhookSettings {
    /// Messages carry the `webhook-signature` headers when set.
    pub secret: Option<Secret>,
}

impl PlatformConfig for WebhookConfig {
    type Settings = WebhookSettings;

    fn validate(self, ck: &mut Checker<'_>, key: &str) -> WebhookSettings {
        let secret = ck.secret(&format!("{key}.secret"), self.secret, self.secret_file.as_ref());
        WebhookSettings { secret }
    }

    fn build(settings: &WebhookSettings, spec: &NotifierSpec) -> Box<dyn Platform> {
        Box::new(Webhook {
            url: spec.url.clone(),
            secret: settings.secret.clone(),
        })
    }
}

pub struct Webhook {
    url: Secret,
    secret: Option<Secret>,
}

impl Platform for Webhook {
    fn rate_limit(&self) -> &'static [Window] {
        RATE
    }

    fn request(&self, out: &Outbound, now: DateTime<Utc>) -> Outgoing {
        let mut request = Outgoing::json(self.url.expose().to_string(), &document(out));
        if let Some(secret) = &self.secret {
            let ts = now.timestamp();
            let signature = sign::standard_webhooks(secret.expose(), &out.id, ts, &request.body);
            request.headers = vec![
                ("webhook-id", out.id.clone()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", signature),
            ];
        }
        request
    }

    fn classify(&self, reply: &Reply) -> Verdict {
        classify_status_config(reply).unwrap_or(Verdict::Sent)
    }
}

/// The JSON document of the module docs.
pub fn document(out: &Outbound) -> Value {
    let mut doc = match &out.content {
        Content::Event(event) => {
            let mut doc = serde_json::to_value(event).expect("an event serialises");
            doc["type"] = json!("event");
            doc
        }
        Content::Digest { events, total } => {
            json!({ "type": "digest", "total": total, "events": events })
        }
        Content::Test => json!({ "type": "test" }),
    };
    doc["id"] = json!(out.id);
    doc["host"] = json!(out.hostname);
    doc["title"] = json!(out.message.title);
    doc["text"] = json!(out.message.plain());
    doc
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::event::EventKind;
    use crate::notify::{Language, PlatformSettings};

    const URL: &str = "https://hooks.example.com/quota";

    fn webhook(secret: Option<&str>) -> Box<dyn Platform> {
        let secret = secret.map(Secret::new);
        spec(PlatformSettings::Webhook(WebhookSettings { secret }), URL).build()
    }

    #[test]
    fn event_document_has_the_documented_fields() {
        let w = webhook(None);
        let request = w.request(&outbound(EventKind::Skipped, Language::En), now());
        assert!(request.headers.is_empty());
        let doc = body(&request);
        assert_eq!(doc["type"], "event");
        assert_eq!(doc["id"], "msg_test");
        assert_eq!(doc["host"], "qw-host-1");
        assert_eq!(doc["kind"], "skipped");
        assert_eq!(doc["account"], "shop");
        assert_eq!(doc["appid"], "wx448f04719cd48f69");
        assert_eq!(doc["skip_reason"], "cooldown");
        assert_eq!(doc["target"], json!({ "scope": "full" }));
        assert_eq!(
            doc["budget"],
            json!({ "used": 5, "cap": 8, "left": 3, "month": "2026-11" })
        );
        assert_eq!(doc["next_clear_at"], "2026-11-03T07:05:00Z");
        assert!(doc["text"]
            .as_str()
            .unwrap()
            .contains("Budget: 3 of 8 clears left in 2026-11"));
        assert!(doc.get("route").is_none());
    }

    #[test]
    fn digest_document_lists_events() {
        let mut out = outbound(EventKind::Cleared, Language::En);
        let event = render_sample(EventKind::Failed);
        out.content = Content::Digest {
            events: vec![event.clone(), event],
            total: 7,
        };
        let doc = document(&out);
        assert_eq!(doc["type"], "digest");
        assert_eq!(doc["total"], 7);
        assert_eq!(doc["events"][1]["outcome"]["errcode"], 40164);
    }

    fn render_sample(kind: EventKind) -> crate::event::Event {
        super::super::render::tests::sample(kind)
    }

    #[test]
    fn signed_with_standard_webhooks_headers() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let w = webhook(Some(secret));
        let out = outbound(EventKind::Cleared, Language::En);
        let request = w.request(&out, now());
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("webhook-id"), "msg_test");
        assert_eq!(header("webhook-timestamp"), "1700000000");
        let expected = sign::standard_webhooks(secret, "msg_test", 1_700_000_000, &request.body);
        assert_eq!(header("webhook-signature"), expected);
    }

    #[test]
    fn receiver_statuses_are_judged() {
        let w = webhook(None);
        assert_eq!(w.classify(&reply(202, "")), Verdict::Sent);
        assert!(matches!(
            w.classify(&reply(401, "bad signature")),
            Verdict::ConfigError(_)
        ));
        assert!(matches!(
            w.classify(&reply(422, "no")),
            Verdict::Rejected(_)
        ));
        assert!(matches!(w.classify(&reply(503, "")), Verdict::Retry { .. }));
    }
}
