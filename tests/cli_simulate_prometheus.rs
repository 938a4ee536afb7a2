//! `quotawatch simulate --prometheus` with the real binary against a fake
//! Prometheus on loopback (SPEC section 8): the range is fetched in chunks
//! under the points limit, a sample at t is the minute [t − 1m, t), values
//! round to counts, labels name the account and the API, and each way a
//! server or its series can be wrong is a clear error.

pub mod support {
    pub mod daemon;
    pub mod fake_prometheus_range;
    pub mod real_prometheus;
}

use serde_json::{json, Value};
use support::daemon::*;
use support::fake_prometheus_range::FakeRangePrometheus;
use support::real_prometheus::RealPrometheus;

const CONFIG: &str = r#"[policy]
reset_guard = "0s"
cooldown = "5m"
monthly_cap = 2
[accounts.shop]
appid = "wx448f04719cd48f69"
kind = "mini_program"
secret = "s"
[accounts.blog]
appid = "wx448f04719cd48f70"
kind = "mini_program"
secret = "s"
"#;

const API: &str = "/cgi-bin/message/custom/send";

/// Unix seconds of a time on 2026-11-03 in Beijing.
fn at(hh_mm: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&format!("2026-11-03T{hh_mm}:00+08:00"))
        .unwrap()
        .timestamp()
}

/// `quotawatch simulate --prometheus URL --query calls` and `rest`.
async fn simulate(env: &Env, url: &str, rest: &[&str]) -> std::process::Output {
    let mut args = vec!["simulate", "--prometheus", url, "--query", "calls"];
    args.extend_from_slice(rest);
    env.run_async(&args).await
}

fn json(out: &std::process::Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_range_is_fetched_in_chunks_under_the_points_limit() {
    let env = Env::new(CONFIG);
    let prom = FakeRangePrometheus::start().await;
    prom.series(
        "calls",
        &[("appid", "shop"), ("cgi_path", API)],
        &[(at("10:01"), "12")],
    );
    prom.series(
        "limit",
        &[("appid", "shop"), ("cgi_path", API)],
        &[(at("00:01"), "10")],
    );
    // 2026-11-01 to 2026-11-14 inclusive: 14 days, 20,160 minutes.
    let out = simulate(
        &env,
        &prom.url(),
        &[
            "--limit-query",
            "limit",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-14",
            "--json",
        ],
    )
    .await;
    let report = json(&out);
    let from = at("00:00") - 2 * 86_400;
    let to = from + 14 * 86_400;
    assert_eq!(report["from"], "2026-11-02T16:00:00Z", "the row's day");
    let requests = prom.requests();
    for query in ["calls", "limit"] {
        let chunks: Vec<_> = requests.iter().filter(|r| r.query == query).collect();
        assert_eq!(chunks.len(), 3, "{query}: 20,160 steps in 3 queries");
        let mut next = from + 60;
        for r in &chunks {
            assert_eq!(r.step, 60, "{query}: a 1-minute step");
            assert_eq!(r.start, next, "{query}: contiguous, no minute twice");
            assert!(r.points() <= 10_000, "{query}: {} points", r.points());
            next = r.end + 60;
        }
        assert_eq!(
            chunks.last().unwrap().end,
            to,
            "{query}: the last sample covers the last minute"
        );
        assert_eq!(
            chunks.iter().map(|r| r.points()).sum::<i64>(),
            14 * 1440,
            "{query}: every minute once"
        );
    }
    assert_eq!(requests.len(), 6);

    // --to as an instant (and a URL with a trailing /), --days as the
    // default length: (url, range flags, first and last evaluation).
    let slash = format!("{}/", prom.url());
    let cases = [
        (
            slash.as_str(),
            [
                "--from",
                "2026-11-03T10:00:00+08:00",
                "--to",
                "2026-11-03T10:30:00+08:00",
            ],
            (at("10:01"), at("10:30")),
        ),
        (
            &prom.url(),
            ["--from", "2026-11-03", "--days", "1"],
            (at("00:01"), at("00:00") + 86_400),
        ),
    ];
    for (url, range, want) in cases {
        let mut rest = vec!["--daily-limit", "10", "--json"];
        rest.extend(range);
        json(&simulate(&env, url, &rest).await);
        let last = prom.requests().pop().unwrap();
        assert_eq!((last.start, last.end), want, "{range:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_become_the_minute_before_them_rounded_and_named_by_their_labels() {
    let env = Env::new(CONFIG);
    let prom = FakeRangePrometheus::start().await;
    // By appid; 11.6 and 4.5 round up, NaN and 0.4 are no rows.
    prom.series(
        "calls",
        &[("appid", "wx448f04719cd48f69"), ("cgi_path", API)],
        &[
            (at("10:01"), "11.6"),
            (at("10:02"), "4.5"),
            (at("10:03"), "NaN"),
            (at("10:04"), "0.4"),
            (at("10:05"), "5"),
        ],
    );
    // By config name, with no limit series: --daily-limit applies.
    prom.series(
        "calls",
        &[("appid", "blog"), ("cgi_path", "/a")],
        &[(at("10:31"), "3")],
    );
    // The limit in force is the latest sample at or before the minute.
    prom.series(
        "limit",
        &[("appid", "wx448f04719cd48f69"), ("cgi_path", API)],
        &[(at("09:00"), "10"), (at("10:03"), "20")],
    );
    let written = env.dir.path().join("fetched.csv");
    let args = [
        "--limit-query",
        "limit",
        "--daily-limit",
        "100",
        "--from",
        "2026-11-03",
        "--to",
        "2026-11-03",
        "--write-trace",
        written.to_str().unwrap(),
        "--json",
    ];
    let fetched = json(&simulate(&env, &prom.url(), &args).await);
    let csv = std::fs::read_to_string(&written).unwrap();
    assert_eq!(
        csv,
        format!(
            "time,account,cgi_path,calls,daily_limit\n\
             2026-11-03T10:00:00+08:00,shop,{API},12,10\n\
             2026-11-03T10:01:00+08:00,shop,{API},5,10\n\
             2026-11-03T10:04:00+08:00,shop,{API},5,20\n\
             2026-11-03T10:30:00+08:00,blog,/a,3,100\n"
        )
    );
    // The figures are those of the CSV it wrote.
    let replayed = json(
        &env.run_async(&["simulate", "--trace", written.to_str().unwrap(), "--json"])
            .await,
    );
    assert_eq!(fetched, replayed);
    // never: 10:00 fails 2 of 12, 10:01 all 5; 10:04 is under the new limit.
    let shop = fetched["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == "shop")
        .unwrap();
    assert_eq!(shop["policies"]["never"]["locked_minutes"], 2);
    assert_eq!(shop["policies"]["never"]["failed_calls"], 7);

    // Other label names, given by flag.
    let prom = FakeRangePrometheus::start().await;
    prom.series(
        "calls",
        &[("account", "shop"), ("api", "/b"), ("job", "app")],
        &[(at("10:01"), "7")],
    );
    let renamed = [
        "--daily-limit",
        "5",
        "--from",
        "2026-11-03",
        "--to",
        "2026-11-03",
        "--write-trace",
        written.to_str().unwrap(),
    ];
    let out = simulate(&env, &prom.url(), &renamed).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("has no `appid` label") && stderr(&out).contains("--account-label"),
        "{}",
        stderr(&out)
    );
    let mut with_flags = renamed.to_vec();
    with_flags.extend(["--account-label", "account", "--api-label", "api"]);
    // A limit of its own for /b beats the plain one.
    with_flags.extend(["--daily-limit", "/b=6"]);
    let out = simulate(&env, &prom.url(), &with_flags).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "time,account,cgi_path,calls,daily_limit\n2026-11-03T10:00:00+08:00,shop,/b,7,6\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_server_or_series_is_a_clear_error() {
    let env = Env::new(CONFIG);
    let run = |url: String, extra: &'static [&'static str]| {
        let env = &env;
        async move {
            let mut args = vec!["--from", "2026-11-03", "--to", "2026-11-03"];
            args.extend_from_slice(extra);
            let out = simulate(env, &url, &args).await;
            assert_ne!(out.status.code(), Some(0), "{args:?}");
            stderr(&out)
        }
    };
    let limit: &[&str] = &["--daily-limit", "10"];

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let err = run(url.clone(), limit).await;
    assert!(
        err.contains(&format!("cannot reach Prometheus at {url}")),
        "{err}"
    );
    let with_password = url.replace("http://", "http://reader:hunter2@");
    let err = run(with_password, limit).await;
    assert!(err.contains("cannot reach Prometheus at http://"), "{err}");
    assert!(!err.contains("hunter2"), "the password is masked: {err}");

    // Prometheus's error envelope.
    let prom = FakeRangePrometheus::start().await;
    prom.answer(
        400,
        json!({"status": "error", "errorType": "bad_data", "error": "1:7: parse error: unexpected <EOF>"}),
    );
    let err = run(prom.url(), limit).await;
    assert!(
        err.contains("Prometheus refused --query (HTTP 400): bad_data: 1:7: parse error"),
        "{err}"
    );

    // A proxy's page, not Prometheus.
    prom.answer_text(502, "<html>Bad Gateway</html>");
    let err = run(prom.url(), limit).await;
    assert!(err.contains("answered HTTP 502"), "{err}");
    assert!(err.contains("Bad Gateway"), "{err}");

    // An instant vector is not a range.
    prom.answer(
        200,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"appid": "shop", "cgi_path": "/a"}, "value": [1_762_000_000, "3"]}]}}),
    );
    let err = run(prom.url(), limit).await;
    assert!(err.contains("returned a vector, not a range"), "{err}");

    // One series each: (labels, value, flags, error). Series that do not
    // name a configured account and an API, a value that is no count, and
    // a daily limit missing altogether or for a minute with calls.
    let shop_a: &[(&str, &str)] = &[("appid", "shop"), ("cgi_path", "/a")];
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        &'a str,
        &'static [&'static str],
        &'a str,
    );
    let cases: [Case; 7] = [
        (&[("cgi_path", "/a")], "3", limit, "has no `appid` label"),
        (&[("appid", "shop")], "3", limit, "has no `cgi_path` label"),
        (
            &[("appid", "wx0000000000000000"), ("cgi_path", "/a")],
            "3",
            limit,
            "names account `wx0000000000000000`, which is not in the config",
        ),
        (
            &[("appid", "shop"), ("cgi_path", "cgi-bin/a")],
            "3",
            limit,
            "does not start with /",
        ),
        (shop_a, "-4", limit, "has the value -4"),
        (shop_a, "3", &[], "needs the daily limit"),
        (
            shop_a,
            "3",
            &["--limit-query", "limit"],
            "no daily limit for (shop, /a) at 2026-11-03T02:00:00+00:00",
        ),
    ];
    for (labels, value, flags, want) in cases {
        let prom = FakeRangePrometheus::start().await;
        prom.series("calls", labels, &[(at("10:01"), value)]);
        let err = run(prom.url(), flags).await;
        assert!(err.contains(want), "{labels:?} {value} {flags:?}: {err}");
    }

    // Two series for one (account, API): labels left to aggregate.
    let prom = FakeRangePrometheus::start().await;
    for instance in ["a:1", "b:1"] {
        let labels = [
            ("appid", "shop"),
            ("cgi_path", "/a"),
            ("instance", instance),
        ];
        prom.series("calls", &labels, &[(at("10:01"), "3")]);
    }
    let err = run(prom.url(), limit).await;
    assert!(err.contains("two series give (shop, /a)"), "{err}");

    // Nothing in the range: one query for the one day, then an error.
    let prom = FakeRangePrometheus::start().await;
    let err = run(prom.url(), limit).await;
    assert!(err.contains("--query returned no calls"), "{err}");
    assert_eq!(prom.requests().len(), 1);

    // Flags that do not fit are refused before any query.
    let err = run(prom.url(), &["--daily-limit", "10", "--trace", "x.csv"]).await;
    assert!(err.contains("cannot be used with"), "{err}");
    assert_eq!(prom.requests().len(), 1);
}

/// Against Debian's real `prometheus` and `promtool`: 8 days of a counter of
/// calls and a gauge of the daily limit are backfilled into a TSDB with
/// `promtool tsdb create-blocks-from openmetrics`, Prometheus serves it on
/// 127.0.0.1, and `simulate` reads it with the README's queries. The 11,520
/// steps need two queries (the server refuses more than 11,000 points), and
/// `increase(...[1m])` at t gives the calls of [t − 1m, t): the trace written
/// is the counter's minutes. Run by `ci/prometheus-real.sh`; needs the
/// binaries on PATH (or `$PROMETHEUS_BIN`, `$PROMTOOL_BIN`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the prometheus and promtool binaries; run ci/prometheus-real.sh"]
async fn real_prometheus() {
    let env = Env::new(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let from = at("00:00") - 2 * 86_400;
    let minutes = 8 * 1440;
    let calls = |k: i64| (k * 7) % 13;
    let mut om = String::from("# TYPE wechat_api_requests counter\n");
    let mut total = 0;
    for k in 0..=minutes {
        om.push_str(&format!(
            "wechat_api_requests_total{{appid=\"wx448f04719cd48f69\",cgi_path=\"{API}\"}} {total} {}\n",
            from + 60 * k
        ));
        total += calls(k);
    }
    om.push_str("# TYPE wechat_daily_limit gauge\n");
    for k in (0..=minutes).step_by(5) {
        let limit = if k < 3 * 1440 { 100 } else { 150 };
        om.push_str(&format!(
            "wechat_daily_limit{{appid=\"shop\",cgi_path=\"{API}\"}} {limit} {}\n",
            from + 60 * k
        ));
    }
    om.push_str("# EOF\n");
    let om_path = dir.path().join("data.om");
    std::fs::write(&om_path, om).unwrap();
    let data = dir.path().join("data");
    let promtool = std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into());
    let backfill = std::process::Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om_path)
        .arg(&data)
        .output()
        .expect("run promtool");
    assert!(backfill.status.success(), "{}", stderr(&backfill));

    // The backfilled days are older than the default 15 days' retention.
    let prometheus = RealPrometheus::start(
        dir.path(),
        "global:\n  scrape_interval: 1m\n",
        &data,
        &["--storage.tsdb.retention.time=100y"],
    )
    .await;
    let url = prometheus.url.clone();

    let written = env.dir.path().join("fetched.csv");
    let out = env
        .run_async(&[
            "simulate",
            "--prometheus",
            &url,
            "--query",
            "sum by (appid, cgi_path) (increase(wechat_api_requests_total[1m]))",
            "--limit-query",
            "max by (appid, cgi_path) (wechat_daily_limit)",
            "--from",
            "2026-11-01",
            "--days",
            "8",
            "--write-trace",
            written.to_str().unwrap(),
            "--json",
        ])
        .await;
    prometheus.stop().await;
    let fetched = json(&out);
    assert!(
        stderr(&out).contains("--query chunk 2 of 2"),
        "{}",
        stderr(&out)
    );
    let mut want = String::from("time,account,cgi_path,calls,daily_limit\n");
    let tz = chrono_tz::Asia::Shanghai;
    for k in (0..minutes).filter(|k| calls(*k) > 0) {
        let t = chrono::DateTime::from_timestamp(from + 60 * k, 0)
            .unwrap()
            .with_timezone(&tz);
        // The gauge's sample at t is the minute before t too.
        let limit = if k + 1 < 3 * 1440 { 100 } else { 150 };
        want.push_str(&format!(
            "{},shop,{API},{},{limit}\n",
            t.format("%Y-%m-%dT%H:%M:%S%:z"),
            calls(k)
        ));
    }
    let got = std::fs::read_to_string(&written).unwrap();
    let diff: Vec<(&str, &str)> = got
        .lines()
        .zip(want.lines())
        .filter(|(a, b)| a != b)
        .take(3)
        .collect();
    assert!(diff.is_empty(), "got, want: {diff:?}");
    assert_eq!(got.lines().count(), want.lines().count());
    let replayed = json(
        &env.run_async(&["simulate", "--trace", written.to_str().unwrap(), "--json"])
            .await,
    );
    assert_eq!(fetched, replayed);
}
