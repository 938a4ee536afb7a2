//! A platform that exists only in tests, to show what adding one takes: this
//! file (its keys, their checks, its build, its requests and answers) and
//! one line of the registration list in [`super`]. Nothing else in the crate
//! names it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    classify_status, NotifierSpec, Outbound, Outgoing, Platform, PlatformConfig, Reply, Verdict,
    Window,
};
use crate::secret::Secret;
use crate::settings::Checker;

const RATE: &[Window] = &[Window {
    max: 100,
    per: Duration::from_secs(1),
}];

/// `type = "throwaway"`: besides the shared keys, what each message opens with.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrowawayConfig {
    pub greeting: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ThrowawaySettings {
    pub greeting: String,
}

impl PlatformConfig for ThrowawayConfig {
    type Settings = ThrowawaySettings;

    fn validate(self, ck: &mut Checker<'_>, key: &str) -> ThrowawaySettings {
        let greeting = self.greeting.unwrap_or_else(|| "hello".to_string());
        if greeting.is_empty() {
            ck.err::<()>(&format!("{key}.greeting"), "is empty");
        }
        ThrowawaySettings { greeting }
    }

    fn build(settings: &ThrowawaySettings, spec: &NotifierSpec) -> Box<dyn Platform> {
        Box::new(Throwaway {
            url: spec.url.clone(),
            greeting: settings.greeting.clone(),
        })
    }
}

struct Throwaway {
    url: Secret,
    greeting: String,
}

impl Platform for Throwaway {
    fn rate_limit(&self) -> &'static [Window] {
        RATE
    }

    fn request(&self, out: &Outbound, _now: DateTime<Utc>) -> Outgoing {
        let body = json!({ "greeting": self.greeting, "title": out.message.title });
        Outgoing::json(self.url.expose().to_string(), &body)
    }

    fn classify(&self, reply: &Reply) -> Verdict {
        classify_status(reply).unwrap_or(Verdict::Sent)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::super::render::tests::sample;
    use super::super::test_support::{context, FakeTransport};
    use super::super::{validate, NotifierConfig, Notifiers, Tuning};
    use super::*;
    use crate::event::EventKind;
    use crate::metrics::Metrics;
    use crate::settings::{ConfigError, Locator, SecretResolver};

    /// `[notifiers.x]` with `body`, read and checked as the config loader does.
    fn load(body: &str) -> Result<BTreeMap<String, NotifierSpec>, Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        let text = format!("[notifiers.x]\ntype = \"throwaway\"\nurl = \"http://127.0.0.1:9/\"\n{body}");
        std::fs::write(&path, &text).unwrap();
        let figment = Figment::from(Toml::file_exact(&path));
        let raw: BTreeMap<String, NotifierConfig> = figment.extract_inner("notifiers").unwrap();
        let locator = Locator::new(&figment, Some((&path, &text)));
        let resolver = SecretResolver::default();
        let mut ck = Checker::new(&locator, &resolver);
        let specs = validate(&mut ck, raw);
        let errors = ck.into_errors();
        errors.is_empty().then_some(specs).ok_or(errors)
    }

    #[test]
    fn each_bad_key_is_reported_at_its_key_and_line() {
        // (the line after `url`, the key reported, the message)
        let table: &[(&str, &str, &str)] = &[
            ("greting = \"hi\"", "notifiers.x.greting", "unknown key `greting`"),
            (
                "greeting = 5",
                "notifiers.x.greeting",
                "wrong type: found integer, expected a string",
            ),
            ("greeting = \"\"", "notifiers.x.greeting", "is empty"),
            (
                "secret = \"k\"",
                "notifiers.x.secret",
                "is not a throwaway key; only dingtalk, feishu and webhook notifiers take it",
            ),
        ];
        for (line, key, message) in table {
            let errors = load(line).unwrap_err();
            assert_eq!(errors.len(), 1, "{line}: {errors:?}");
            assert_eq!(errors[0].key.as_deref(), Some(*key), "{line}");
            assert_eq!(errors[0].message, *message, "{line}");
            let origin = errors[0].origin.as_deref().unwrap();
            assert!(origin.ends_with("q.toml:4"), "{line}: {origin}");
        }
    }

    #[tokio::test]
    async fn an_event_goes_out_through_it() {
        let specs = load("greeting = \"hi\"\nlanguage = \"en\"\n").unwrap();
        let metrics = Arc::new(Metrics::new());
        let transport = FakeTransport::new(vec![]);
        let notifiers =
            Notifiers::start_with(&specs, context(metrics), transport.clone(), Tuning::default());
        notifiers.publish(&sample(EventKind::Cleared));
        notifiers.shutdown(Duration::from_secs(2)).await;
        let posts = transport.posts();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].1["greeting"], "hi");
        assert_eq!(posts[0].1["title"], "[quotawatch] Quota cleared: shop");
    }
}
