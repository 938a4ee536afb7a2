//! The `prometheus` source against a fake of the query API on 127.0.0.1
//! (vector, matrix, scalar, error, down), and, ignored by default, against a
//! real Prometheus (`ci/prometheus-real.sh`).

pub mod support {
    pub mod fake_prometheus;
    pub mod real_prometheus;
    pub mod sources;
}

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use quotawatch::sources::prometheus::PrometheusSource;
use quotawatch::sources::SourceSpec;
use support::fake_prometheus::FakePrometheus;
use support::real_prometheus::RealPrometheus;
use support::sources::{Harness, BLOG, SHOP};

const QUERY: &str = r#"sum by (appid) (increase(wechat_api_errors_total{errcode="45009"}[5m]))"#;

fn harness(url: &str, threshold: f64) -> Harness {
    harness_named("prom", url, threshold)
}

fn harness_named(name: &str, url: &str, threshold: f64) -> Harness {
    let extra = format!(
        r#"
[sources.{name}]
type = "prometheus"
url = "{url}"
query = '{QUERY}'
account_label = "appid"
threshold = {threshold}
"#
    );
    Harness::new("http://127.0.0.1:9", &extra)
}

fn source(h: &Harness) -> PrometheusSource {
    source_named(h, "prom")
}

fn source_named(h: &Harness, name: &str) -> PrometheusSource {
    let SourceSpec::Prometheus(spec) = h.source(name) else {
        panic!("not a prometheus source")
    };
    PrometheusSource::new(spec, h.ctx.clone()).expect("client")
}

/// A closed port: connections to it are refused.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[tokio::test]
async fn samples_at_or_above_the_threshold_become_signals() {
    let fake = FakePrometheus::start().await;
    let mut h = harness(&fake.url(), 2.0);
    fake.answer_vector(&[
        (&[("appid", SHOP)], "3.2"),
        (&[("appid", "blog")], "2"),
        (&[("appid", BLOG)], "1.5"),
        (&[("appid", "wx00000000000000ff")], "7"),
        (&[("job", "no-account")], "9"),
        (&[("appid", SHOP), ("instance", "b")], "NaN"),
    ]);
    source(&h).run_once().await;

    assert_eq!(
        fake.queries(),
        vec![QUERY.to_string()],
        "the query goes out as written"
    );
    let signals = h.drain();
    let got: Vec<(&str, u32)> = signals
        .iter()
        .map(|s| (s.account.as_str(), s.count))
        .collect();
    // blog at 2 (at the threshold), shop 3.2 rounded up, the unknown appid as
    // written (the dispatcher reports it); 1.5, NaN and the unlabelled sample not.
    assert_eq!(
        got,
        vec![("blog", 2), ("shop", 4), ("wx00000000000000ff", 7)]
    );
    assert!(signals
        .iter()
        .all(|s| s.source == "prom" && s.cgi_path.is_none()));
    assert_eq!(h.ctx.health.snapshot().get("prom"), Some(&None));
    assert!(h
        .ctx
        .metrics
        .render()
        .contains("quotawatch_source_healthy{source=\"prom\"} 1"));
}

#[tokio::test]
async fn an_empty_vector_sends_nothing_and_is_healthy() {
    let fake = FakePrometheus::start().await;
    let mut h = harness(&fake.url(), 1.0);
    source(&h).run_once().await;
    assert!(h.drain().is_empty());
    assert_eq!(h.ctx.health.snapshot().get("prom"), Some(&None));
}

/// Each bad answer is a source error in health and metrics, without signals.
#[tokio::test]
async fn matrix_scalar_error_and_down_are_source_errors() {
    let fake = FakePrometheus::start().await;
    let mut h = harness(&fake.url(), 1.0);
    let src = source(&h);
    type SetAnswer = fn(&FakePrometheus);
    let cases: [(&str, SetAnswer); 3] = [
        ("matrix", FakePrometheus::answer_matrix),
        ("scalar", FakePrometheus::answer_scalar),
        ("bad_data", FakePrometheus::answer_bad_query),
    ];
    for (expect, set) in cases {
        set(&fake);
        src.run_once().await;
        let err = h
            .ctx
            .health
            .snapshot()
            .get("prom")
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{expect}: no error"));
        assert!(err.contains(expect), "{expect}: {err}");
        assert!(h.drain().is_empty());
        assert!(h
            .ctx
            .metrics
            .render()
            .contains("quotawatch_source_healthy{source=\"prom\"} 0"));
    }
    fake.stop().await;
    src.run_once().await;
    let err = h
        .ctx
        .health
        .snapshot()
        .get("prom")
        .cloned()
        .flatten()
        .expect("down is an error");
    assert!(err.contains("unreachable"), "{err}");
    assert!(h
        .ctx
        .metrics
        .render()
        .contains("quotawatch_source_errors_total{source=\"prom\"} 4"));
}

/// The log of this test binary. A global subscriber, because tracing caches
/// a callsite's interest: a per-thread subscriber can miss events whose
/// callsite another test thread hit first without one.
fn captured_log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static Mutex<Vec<u8>> = Box::leak(Box::default());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Captured(log))
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        log
    })
}

struct Captured(&'static Mutex<Vec<u8>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines that contain both `message` and `source="NAME"`... as fmt writes them.
fn lines(message: &str, source: &str) -> usize {
    let log = captured_log().lock().unwrap();
    let field = format!("source=\"{source}\"");
    let alt = format!("source={source}");
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| {
            l.contains(message) && (l.contains(&field) || l.split_whitespace().any(|w| w == alt))
        })
        .count()
}

#[tokio::test]
async fn a_state_change_is_logged_once_not_once_per_tick() {
    captured_log();
    let fake = FakePrometheus::start().await;
    let h = harness_named("prom_down", &dead_url(), 1.0);
    let down = source_named(&h, "prom_down");
    for _ in 0..3 {
        down.run_once().await;
    }
    assert_eq!(
        lines("Source failed", "prom_down"),
        1,
        "three failed ticks, one line"
    );

    let h = harness_named("prom_flaky", &fake.url(), 1.0);
    let flaky = source_named(&h, "prom_flaky");
    flaky.run_once().await;
    fake.answer_matrix();
    flaky.run_once().await;
    flaky.run_once().await;
    fake.answer_vector(&[]);
    flaky.run_once().await;
    flaky.run_once().await;
    fake.answer_bad_query();
    flaky.run_once().await;
    // ok, matrix, matrix, ok, ok, error: one line per change.
    assert_eq!(lines("Source failed", "prom_flaky"), 2);
    assert_eq!(lines("Source works", "prom_flaky"), 2);
}

/// Against Debian's real `prometheus`: it scrapes a text endpoint served here,
/// and the source queries it. Run by `ci/prometheus-real.sh`; needs the
/// `prometheus` binary on PATH (or `$PROMETHEUS_BIN`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the prometheus binary; run ci/prometheus-real.sh"]
async fn real_prometheus() {
    let exporter = FakePrometheus::start().await;
    exporter.expose(&format!(
        "# TYPE wechat_api_errors_total counter\n\
         wechat_api_errors_total{{appid=\"{SHOP}\",errcode=\"45009\"}} 12\n\
         wechat_api_errors_total{{appid=\"{BLOG}\",errcode=\"0\"}} 400\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let target = exporter.url().trim_start_matches("http://").to_string();
    let prometheus = RealPrometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
        ),
        &dir.path().join("data"),
        &[],
    )
    .await;
    let url = prometheus.url.clone();

    // Last value per series, so one scrape is enough to see it.
    let query = r#"max by (appid) (last_over_time(wechat_api_errors_total{errcode="45009"}[1m]))"#;
    let extra = format!(
        "[sources.prom]\ntype = \"prometheus\"\nurl = \"{url}\"\nquery = '{query}'\naccount_label = \"appid\"\nthreshold = 10\n"
    );
    let mut h = Harness::new("http://127.0.0.1:9", &extra);
    let src = source(&h);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let signals = loop {
        src.run_once().await;
        let signals = h.drain();
        if !signals.is_empty() || tokio::time::Instant::now() > deadline {
            break signals;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    prometheus.stop().await;
    let got: Vec<(&str, u32)> = signals
        .iter()
        .map(|s| (s.account.as_str(), s.count))
        .collect();
    assert_eq!(
        got,
        vec![("shop", 12)],
        "health: {:?}",
        h.ctx.health.snapshot()
    );
}
