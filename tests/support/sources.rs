//! For the `sources_*` tests: a [`SourceContext`] built by hand from a
//! TOML config in a temp dir, with a real SQLite ledger and the signal queue's
//! receiving end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quotawatch::config::Config;
use quotawatch::metrics::Metrics;
use quotawatch::signal::{Signal, SignalQueue};
use quotawatch::sources::SourceSpec;
use quotawatch::sources::{SourceContext, SourceHealth};
use quotawatch::store::{SqliteStore, Store};
use quotawatch::wechat::WeChat;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const SHOP: &str = "wx448f04719cd48f69";
pub const BLOG: &str = "wx0000000000000002";

/// Two accounts, `shop` and `blog`, then `extra` (sources, settings).
pub fn config_text(dir: &Path, api_base: &str, extra: &str) -> String {
    format!(
        r#"
[daemon]
state = "{state}"
[wechat]
api_base = "{api_base}"
timeout = "3s"
[accounts.shop]
appid = "{SHOP}"
kind = "mini_program"
secret = "shop-secret"
[accounts.blog]
appid = "{BLOG}"
kind = "official_account"
secret = "blog-secret"
{extra}
"#,
        state = dir.join("quotawatch.db").display()
    )
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config: Arc<Config>,
    pub ctx: SourceContext,
    pub signals: mpsc::Receiver<Signal>,
}

impl Harness {
    /// A config with `extra` appended; `{dir}` in it is the temp dir.
    pub fn new(api_base: &str, extra: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        let config = Arc::new(load(dir.path(), &config_text(dir.path(), api_base, &extra)));
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("quotawatch.db")).expect("ledger"));
        let (ctx, signals) = context(config.clone(), store);
        Harness {
            dir,
            config,
            ctx,
            signals,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh context over a reopened ledger, as after a daemon restart.
    pub fn restart(&mut self) {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&self.path("quotawatch.db")).expect("ledger"));
        let (ctx, signals) = context(self.config.clone(), store);
        self.ctx = ctx;
        self.signals = signals;
    }

    pub fn source(&self, name: &str) -> SourceSpec {
        self.config
            .sources
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no source {name}"))
    }

    /// The signals queued so far.
    pub fn drain(&mut self) -> Vec<Signal> {
        let mut out = Vec::new();
        while let Ok(s) = self.signals.try_recv() {
            out.push(s);
        }
        out.sort_by(|a, b| a.account.cmp(&b.account));
        out
    }
}

pub fn load(dir: &Path, text: &str) -> Config {
    let path = dir.join("quotawatch.toml");
    std::fs::write(&path, text).expect("write config");
    match quotawatch::config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("config does not load: {e}\n{text}"),
    }
}

pub fn context(
    config: Arc<Config>,
    store: Arc<dyn Store>,
) -> (SourceContext, mpsc::Receiver<Signal>) {
    let metrics = Arc::new(Metrics::new());
    let (signals, rx) = SignalQueue::new(1024, metrics.clone());
    let wechat = Arc::new(WeChat::new(&config.wechat).expect("WeChat client"));
    let ctx = SourceContext {
        accounts: Arc::new(config.accounts.clone()).into(),
        timezone: config.daemon.timezone,
        signals,
        metrics,
        store,
        wechat,
        health: SourceHealth::default(),
        readings: Default::default(),
        shutdown: CancellationToken::new(),
    };
    (ctx, rx)
}
