//! The `prometheus` source: an instant query against the Prometheus HTTP API
//! (`GET {url}/api/v1/query`), one signal per account whose value is at or
//! above `threshold`.
//!
//! The query must return an instant vector; each sample names its account in
//! the `account_label` label (an appid or a config name). The signal's count is
//! the value rounded up (at least 1): a counter's increase is that many
//! evidence events. Samples of one account add up. A label that names no
//! configured account is still sent, so the dispatcher reports it as
//! `unknown_account`.
//!
//! A Prometheus that is down, answers an error, or returns a matrix, a scalar
//! or a string is a source error: it shows in `/readyz` details and
//! `quotawatch_source_healthy`, and is logged once per change of state, not
//! once per tick. This module does not decide anything about clears.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;

use serde::{Deserialize, Serialize};

use super::{report, Poller, RunHealth, Scheduled, Source, SourceConfig, SourceContext};
use crate::settings::{ser, Accounts, Checker};
use crate::signal::Signal;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    pub url: Option<String>,
    pub query: Option<String>,
    pub account_label: Option<String>,
    pub threshold: Option<f64>,
    pub schedule: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrometheusSpec {
    pub name: String,
    /// Shown with its userinfo masked.
    #[serde(serialize_with = "ser::url")]
    pub url: String,
    pub query: String,
    pub account_label: String,
    pub threshold: f64,
    pub schedule: String,
}

impl SourceConfig for PrometheusConfig {
    type Spec = PrometheusSpec;

    fn validate(
        self,
        name: &str,
        p: &str,
        ck: &mut Checker<'_>,
        _: &Accounts,
    ) -> Option<PrometheusSpec> {
        let url = ck.required(&format!("{p}.url"), self.url);
        if let Some(u) = &url {
            ck.http_url(&format!("{p}.url"), u);
        }
        let query = ck.required(&format!("{p}.query"), self.query);
        let threshold = self.threshold.unwrap_or(1.0);
        if !threshold.is_finite() {
            ck.err::<()>(&format!("{p}.threshold"), "must be a finite number");
        }
        let schedule = super::schedule(ck, &format!("{p}.schedule"), self.schedule, "0 * * * * *");
        Some(PrometheusSpec {
            name: name.to_string(),
            url: url?.trim_end_matches('/').to_string(),
            query: query?,
            account_label: self.account_label.unwrap_or_else(|| "appid".to_string()),
            threshold,
            schedule,
        })
    }
}

impl Source for PrometheusSpec {
    fn start(&self, ctx: &SourceContext) -> Result<Option<Scheduled>, String> {
        let source = PrometheusSource::new(self.clone(), ctx.clone()).map_err(|e| e.to_string())?;
        Ok(Some(Scheduled::new(source, &self.schedule)))
    }
}

/// An instant query should answer in well under this; a slower Prometheus is
/// reported as down rather than holding the run (and skipping the next ones).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One sample of the result vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The `account_label` value, when the sample has it.
    pub account: Option<String>,
    pub value: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("Prometheus is unreachable: {0}")]
    Unreachable(String),
    #[error("Prometheus answered HTTP {0}")]
    Status(u16),
    #[error("Prometheus answered an error: {0}")]
    Api(String),
    #[error("the query returned a {0}, not an instant vector")]
    NotVector(String),
    #[error("Prometheus's answer is not a query result: {0}")]
    Malformed(String),
}

pub struct PrometheusSource {
    spec: PrometheusSpec,
    ctx: SourceContext,
    client: reqwest::Client,
}

impl PrometheusSource {
    pub fn new(spec: PrometheusSpec, ctx: SourceContext) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            // One query a tick: an idle connection kept between ticks would
            // only hide that Prometheus went away.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("quotawatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { spec, ctx, client })
    }

    /// One run: query, report health, send the signals.
    pub async fn run_once(&self) {
        let samples = tokio::select! {
            _ = self.ctx.shutdown.cancelled() => return,
            r = self.query() => r,
        };
        match samples {
            Ok(samples) => {
                report(&self.ctx, &self.spec.name, RunHealth::Ok);
                self.send(samples).await;
            }
            Err(e) => report(&self.ctx, &self.spec.name, RunHealth::Failed(e.to_string())),
        }
    }

    /// Runs the instant query and returns the vector's samples.
    pub async fn query(&self) -> Result<Vec<Sample>, QueryError> {
        let url = format!("{}/api/v1/query", self.spec.url);
        let reply = self
            .client
            .get(url)
            .query(&[("query", self.spec.query.as_str())])
            .send()
            .await
            .map_err(|e| QueryError::Unreachable(e.without_url().to_string()))?;
        let status = reply.status();
        let body = reply
            .bytes()
            .await
            .map_err(|e| QueryError::Unreachable(e.without_url().to_string()))?;
        // Prometheus answers errors (400, 422, 503) with the same JSON envelope.
        let value: Value = serde_json::from_slice(&body).map_err(|_| {
            if status.is_success() {
                QueryError::Malformed("not JSON".into())
            } else {
                QueryError::Status(status.as_u16())
            }
        })?;
        parse(&value, &self.spec.account_label)
    }

    async fn send(&self, samples: Vec<Sample>) {
        let mut per_account: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        let mut unlabelled = 0;
        for sample in samples
            .into_iter()
            .filter(|s| s.value >= self.spec.threshold)
        {
            let Some(label) = sample.account else {
                unlabelled += 1;
                continue;
            };
            let account = match self.ctx.accounts.now().find(&label) {
                Some(a) => a.name.clone(),
                None => label,
            };
            let entry = per_account.entry(account).or_default();
            entry.0 += evidence(sample.value);
            entry.1 += sample.value;
        }
        if unlabelled > 0 {
            tracing::warn!(
                source = %self.spec.name, samples = unlabelled, label = %self.spec.account_label,
                "Samples at or above the threshold lack the account label; aggregate `by` that label"
            );
        }
        for (account, (count, value)) in per_account {
            let signal = Signal {
                account,
                source: self.spec.name.clone(),
                reason: format!("prometheus: {value} >= {}", self.spec.threshold),
                count: u32::try_from(count).unwrap_or(u32::MAX),
                cgi_path: None,
                key: None,
                received_at: Utc::now(),
            };
            if !self.ctx.send(signal).await {
                return;
            }
        }
    }
}

#[async_trait]
impl Poller for PrometheusSource {
    fn name(&self) -> &str {
        &self.spec.name
    }

    async fn poll(&self, _interval: Duration) {
        self.run_once().await;
    }
}

/// A value as evidence events: rounded up, at least one.
fn evidence(value: f64) -> u64 {
    if value.is_finite() {
        (value.ceil() as u64).max(1)
    } else {
        1
    }
}

/// Reads Prometheus's `{status, data: {resultType, result}}` envelope.
pub fn parse(value: &Value, account_label: &str) -> Result<Vec<Sample>, QueryError> {
    match value.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some(_) => {
            let kind = value
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let text = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            return Err(QueryError::Api(format!("{kind}: {text}")));
        }
        None => return Err(QueryError::Malformed("no status".into())),
    }
    let data = value
        .get("data")
        .ok_or_else(|| QueryError::Malformed("no data".into()))?;
    let kind = data
        .get("resultType")
        .and_then(Value::as_str)
        .unwrap_or("missing resultType");
    if kind != "vector" {
        return Err(QueryError::NotVector(kind.to_string()));
    }
    let result = data
        .get("result")
        .and_then(Value::as_array)
        .ok_or_else(|| QueryError::Malformed("the vector has no result array".into()))?;
    result.iter().map(|s| sample(s, account_label)).collect()
}

fn sample(s: &Value, account_label: &str) -> Result<Sample, QueryError> {
    let account = s
        .get("metric")
        .and_then(|m| m.get(account_label))
        .and_then(Value::as_str)
        .map(str::to_string);
    // `value` is `[unix_time, "1.5"]`; the number is a string ("NaN", "+Inf" too).
    let text = s
        .get("value")
        .and_then(|v| v.get(1))
        .and_then(Value::as_str)
        .ok_or_else(|| QueryError::Malformed("a sample has no value".into()))?;
    let value = text
        .parse::<f64>()
        .map_err(|_| QueryError::Malformed(format!("the sample value `{text}` is not a number")))?;
    Ok(Sample { account, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_vector() {
        let v = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"appid": "wx1"}, "value": [1700000000.0, "2.5"]},
            {"metric": {}, "value": [1700000000.0, "NaN"]},
        ]}});
        let samples = parse(&v, "appid").unwrap();
        assert_eq!(
            samples[0],
            Sample {
                account: Some("wx1".into()),
                value: 2.5
            }
        );
        assert_eq!(samples[1].account, None);
        assert!(samples[1].value.is_nan());
    }

    #[test]
    fn rejects_what_is_not_an_instant_vector() {
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert_eq!(
            parse(&matrix, "appid"),
            Err(QueryError::NotVector("matrix".into()))
        );
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}});
        assert_eq!(
            parse(&scalar, "appid"),
            Err(QueryError::NotVector("scalar".into()))
        );
        let error = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        assert_eq!(
            parse(&error, "appid"),
            Err(QueryError::Api("bad_data: parse error".into()))
        );
    }

    #[test]
    fn evidence_rounds_up_and_is_at_least_one() {
        assert_eq!(evidence(0.2), 1);
        assert_eq!(evidence(2.01), 3);
        assert_eq!(evidence(4.0), 4);
        assert_eq!(evidence(f64::INFINITY), 1);
    }
}
