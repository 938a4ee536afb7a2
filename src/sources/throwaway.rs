//! A source type that exists only in tests, to show the family's shape: this
//! file and its one `#[cfg(test)]` line in the registry of [`super`] are all
//! it took to add `type = "throwaway"`, with its config checked like every
//! other key, started by the scheduler, and its signals on the queue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{Poller, Scheduled, Source, SourceConfig, SourceContext};
use crate::settings::{Accounts, Checker};
use crate::signal::Signal;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrowawayConfig {
    pub account: Option<String>,
    pub schedule: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThrowawaySpec {
    pub name: String,
    /// The config name of the account each run reports.
    pub account: String,
    pub schedule: String,
}

impl SourceConfig for ThrowawayConfig {
    type Spec = ThrowawaySpec;

    fn validate(
        self,
        name: &str,
        at: &str,
        ck: &mut Checker<'_>,
        accounts: &Accounts,
    ) -> Option<ThrowawaySpec> {
        let key = format!("{at}.account");
        let account = ck.required(&key, self.account)?;
        let Some(account) = accounts.find(&account) else {
            return ck.err(
                &key,
                format!("names `{account}`, which is not a configured account"),
            );
        };
        let schedule = super::schedule(ck, &format!("{at}.schedule"), self.schedule, "* * * * * *");
        Some(ThrowawaySpec {
            name: name.to_string(),
            account: account.name.clone(),
            schedule,
        })
    }
}

impl Source for ThrowawaySpec {
    fn start(&self, ctx: &SourceContext) -> Result<Option<Scheduled>, String> {
        Ok(Some(Scheduled::new(
            Throwaway {
                spec: self.clone(),
                ctx: ctx.clone(),
            },
            &self.schedule,
        )))
    }
}

struct Throwaway {
    spec: ThrowawaySpec,
    ctx: SourceContext,
}

#[async_trait]
impl Poller for Throwaway {
    fn name(&self) -> &str {
        &self.spec.name
    }

    async fn poll(&self, _: Duration) {
        let signal = Signal {
            account: self.spec.account.clone(),
            source: self.spec.name.clone(),
            reason: "throwaway".into(),
            count: 1,
            cgi_path: None,
            key: None,
            received_at: Utc::now(),
        };
        self.ctx.send(signal).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::metrics::Metrics;
    use crate::signal::SignalQueue;
    use crate::sources::{start_scheduled, SourceHealth, SourceSpec};
    use crate::store::SqliteStore;
    use crate::wechat::WeChat;

    const ACCOUNT: &str = "[accounts.shop]\nappid = \"wx448f04719cd48f69\"\nkind = \"mini_program\"\nsecret = \"s\"\n";

    fn load(dir: &std::path::Path, sources: &str) -> Result<crate::config::Config, String> {
        let path = dir.join("q.toml");
        let text = format!(
            "[daemon]\nstate = \"{}\"\n{ACCOUNT}{sources}",
            dir.join("l.db").display()
        );
        std::fs::write(&path, text).unwrap();
        crate::config::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn a_new_type_is_checked_like_every_other_key() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q.toml").display().to_string();
        // (the source's table, the problems `check` reports)
        let table: &[(&str, &[String])] = &[
            ("type = \"throwaway\"\naccount = \"shop\"\n", &[]),
            (
                "type = \"throwaway\"\naccount = \"wx448f04719cd48f69\"\nschedule = \"often\"\n",
                &[format!("`sources.t.schedule` (from {q}:10): `often` is not a cron expression")],
            ),
            (
                "type = \"throwaway\"\naccount = \"till\"\n",
                &[format!("`sources.t.account` (from {q}:9): names `till`, which is not a configured account")],
            ),
            (
                "type = \"throwaway\"\naccount = \"shop\"\ncolour = 1\n",
                &[format!("`sources.t.colour` (from {q}:10): unknown key `colour`")],
            ),
            // A key left out points at its table's line.
            (
                "account = \"shop\"\n",
                &[format!("`sources.t.type` (from {q}:7): is required")],
            ),
            // Without a type, a key no type takes is still reported.
            (
                "tipe = \"throwaway\"\naccount = \"shop\"\n",
                &[
                    format!("`sources.t.type` (from {q}:7): is required"),
                    format!("`sources.t.tipe` (from {q}:8): unknown key `tipe`"),
                ],
            ),
            // A wrong type is reported at its key and line, and the rest of
            // the file is still checked.
            (
                "type = \"throwaway\"\naccount = 5\n[sources.u]\ntype = \"throwawy\"\n",
                &[
                    format!("`sources.t.account` (from {q}:9): wrong type: found integer, expected a string"),
                    format!("`sources.u.type` (from {q}:11): `throwawy` is not one of"),
                ],
            ),
        ];
        for (source, want) in table {
            let got = load(dir.path(), &format!("[sources.t]\n{source}"));
            match (got, want.is_empty()) {
                (Ok(config), true) => {
                    let Some(SourceSpec::Throwaway(spec)) = config.sources.get("t") else {
                        panic!("{source}: not a throwaway source");
                    };
                    assert_eq!(spec.account, "shop");
                }
                (Err(e), false) => {
                    for w in *want {
                        assert!(e.contains(w.as_str()), "{source}: want {w}\ngot {e}");
                    }
                }
                (got, _) => panic!("{source}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_scheduler_starts_it_and_its_signals_reach_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(
            dir.path(),
            "[sources.t]\ntype = \"throwaway\"\naccount = \"wx448f04719cd48f69\"\n",
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new());
        let (signals, mut rx) = SignalQueue::new(16, metrics.clone());
        let ctx = SourceContext {
            accounts: Arc::new(config.accounts.clone()).into(),
            timezone: config.daemon.timezone,
            signals,
            metrics,
            store: Arc::new(SqliteStore::open(&dir.path().join("l.db")).unwrap()),
            wechat: Arc::new(WeChat::new(&config.wechat).unwrap()),
            health: SourceHealth::default(),
            readings: Default::default(),
            shutdown: CancellationToken::new(),
        };
        let running = start_scheduled(ctx, &config.sources);
        assert_eq!(running.names(), ["t"]);
        let signal = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a signal within a few runs")
            .unwrap();
        assert_eq!(
            (signal.account.as_str(), signal.source.as_str()),
            ("shop", "t")
        );
        running.shutdown().await;
    }
}
