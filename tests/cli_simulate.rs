//! `quotawatch simulate` with the real binary (SPEC section 8): a hand-made
//! trace whose figures are worked out here, a generated month written out
//! and replayed, and clear errors for bad traces.

pub mod support {
    pub mod daemon;
}

use serde_json::Value;
use support::daemon::*;

/// The figures below are worked out by hand for the plain rules, so pacing
/// (the default, measured by `benches/simulate.rs`) is off here but where a
/// test turns it on.
const CONFIG: &str = r#"[policy]
pacing = false
reset_guard = "0s"
cooldown = "5m"
monthly_cap = 2
dry_run = true
[accounts.shop]
appid = "wx448f04719cd48f69"
kind = "mini_program"
secret = "s"
"#;

/// One API with a daily limit of 10: 12 calls at 10:00 (2 fail), then 5 a
/// minute to 10:04, on one day.
const TRACE: &str = "time,account,cgi_path,calls,daily_limit
2026-11-03T10:00:00+08:00,shop,/cgi-bin/message/custom/send,12,10
2026-11-03T10:01:00+08:00,shop,/cgi-bin/message/custom/send,5,10
2026-11-03T10:02:00+08:00,shop,/cgi-bin/message/custom/send,5,10
2026-11-03T10:03:00+08:00,wx448f04719cd48f69,/cgi-bin/message/custom/send,5,10
2026-11-03T10:04:00+08:00,shop,/cgi-bin/message/custom/send,5,10
";

fn policy<'a>(json: &'a Value, account: Option<&str>, policy: &str) -> &'a Value {
    let figures = match account {
        Some(a) => json["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["account"] == a)
            .map(|x| &x["policies"])
            .unwrap(),
        None => &json["total"],
    };
    &figures[policy]
}

#[test]
fn a_worked_trace_gives_the_figures_worked_out_by_hand() {
    let env = Env::new(CONFIG);
    let trace = env.file("trace.csv", TRACE);
    let out = env.run(&["simulate", "--trace", trace.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    // never: 10:00 fails 2; 10:01 to 10:04 fail all 5: 5 locked minutes, 22 calls.
    let never = policy(&json, Some("shop"), "never");
    assert_eq!(
        (
            never["locked_minutes"].as_u64(),
            never["failed_calls"].as_u64()
        ),
        (Some(5), Some(22))
    );
    // oracle: a clear on the 10:01 signal serves 10:01 and 10:02 (10 calls);
    // 10:03 fails and signals at 10:04, whose clear serves 10:04. Locked:
    // 10:00 and 10:03.
    let oracle = policy(&json, Some("shop"), "oracle");
    assert_eq!(
        (oracle["locked_minutes"].as_u64(), oracle["clears"].as_u64()),
        (Some(2), Some(2))
    );
    // The policy (dry_run is ignored in a backtest) clears at 10:01, then
    // its 5 minute cooldown keeps it quiet: 10:03 and 10:04 locked.
    let p = policy(&json, Some("shop"), "policy");
    assert_eq!(
        (p["locked_minutes"].as_u64(), p["clears"].as_u64()),
        (Some(3), Some(1))
    );
    // recovery = (5 - 3) / (5 - 2)
    assert!(
        (p["recovery"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{p}"
    );
    // naive clears on every signal at least a minute apart: 10:01, 10:04.
    let naive = policy(&json, Some("shop"), "naive");
    assert_eq!(
        (naive["locked_minutes"].as_u64(), naive["clears"].as_u64()),
        (Some(2), Some(2)),
        "{naive}"
    );
    let clears = &json["clears"];
    let times = |p: &str| -> Vec<String> {
        clears[p]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["time"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(times("policy"), ["2026-11-03T02:01:00Z"]);
    assert_eq!(
        times("oracle"),
        ["2026-11-03T02:01:00Z", "2026-11-03T02:04:00Z"]
    );
    assert_eq!(clears["policy"][0]["scope"], "full");
    assert!(times("never").is_empty());
    assert_eq!(
        policy(&json, None, "policy"),
        p,
        "one account: the total is its figures"
    );

    let table = env.run(&["simulate", "--trace", trace.to_str().unwrap()]);
    let text = stdout(&table);
    assert!(
        text.lines().next().unwrap().contains("locked_minutes"),
        "{text}"
    );
    assert!(text.contains("TOTAL"), "{text}");
    // Progress goes to stderr, never into the table.
    let progress = stderr(&table);
    assert!(
        progress.contains("1 accounts, 1 APIs, 1 days, 5 demand rows"),
        "{progress}"
    );
    assert!(progress.contains("four policies in"), "{progress}");
    assert!(!text.contains("simulate:"), "{text}");
}

#[test]
fn a_generated_month_written_out_replays_to_the_same_figures() {
    let env = Env::new(CONFIG);
    let path = env.dir.path().join("storm.csv");
    let path = path.to_str().unwrap();
    let generated = env.run(&[
        "simulate",
        "--synthetic",
        "storm",
        "--seed",
        "4",
        "--from",
        "2026-11-01",
        "--days",
        "7",
        "--write-trace",
        path,
        "--json",
    ]);
    assert_eq!(generated.status.code(), Some(0), "{}", stderr(&generated));
    let replayed = env.run(&["simulate", "--trace", path, "--json"]);
    assert_eq!(replayed.status.code(), Some(0), "{}", stderr(&replayed));
    let a: Value = serde_json::from_slice(&generated.stdout).unwrap();
    let b: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert_eq!(a, b);
    assert!(
        policy(&a, None, "never")["locked_minutes"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn bad_traces_are_refused_with_the_line_that_is_wrong() {
    let env = Env::new(CONFIG);
    let cases = [
        ("time,account\n", "the header must be"),
        ("time,account,cgi_path,calls,daily_limit\n", "no rows"),
        (
            "time,account,cgi_path,calls,daily_limit\n2026-11-03T10:00:00+08:00,blog,/a,1,10\n",
            "trace.csv:2: account `blog` is not in the config",
        ),
        (
            "time,account,cgi_path,calls,daily_limit\n2026-11-03T10:00:30+08:00,shop,/a,1,10\n",
            "not at a whole minute",
        ),
        (
            "time,account,cgi_path,calls,daily_limit\n2026-11-03T10:01:00+08:00,shop,/a,1,10\n2026-11-03T10:00:00+08:00,shop,/a,1,10\n",
            "trace.csv:3: rows must be in time order",
        ),
        (
            "time,account,cgi_path,calls,daily_limit\n2026-11-03T10:00:00+08:00,shop,/a,-1,10\n",
            "calls `-1` is not a count",
        ),
    ];
    for (text, want) in cases {
        let trace = env.file("trace.csv", text);
        let out = env.run(&["simulate", "--trace", trace.to_str().unwrap()]);
        assert_ne!(out.status.code(), Some(0), "{text}");
        assert!(stderr(&out).contains(want), "{text}: {}", stderr(&out));
    }
    let out = env.run(&["simulate"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("--trace"), "{}", stderr(&out));
}

#[test]
fn set_and_sweep_override_policy_keys_for_the_run() {
    let env = Env::new(CONFIG);
    let trace = env.file("trace.csv", TRACE);
    let trace = trace.to_str().unwrap();
    // Without the 5 minute cooldown the policy also clears on the 10:04
    // signal: as good as the oracle.
    let out = env.run(&[
        "simulate",
        "--trace",
        trace,
        "--set",
        "cooldown=0s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = policy(&json, None, "policy");
    assert_eq!(
        (p["locked_minutes"].as_u64(), p["clears"].as_u64()),
        (Some(2), Some(2)),
        "{p}"
    );
    // With pacing the second clear, with most of the month to come, is
    // kept for a better chance: 3 locked minutes, one clear.
    let out = env.run(&[
        "simulate",
        "--trace",
        trace,
        "--set",
        "cooldown=0s",
        "--set",
        "pacing=true",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = policy(&json, None, "policy");
    assert_eq!(
        (p["locked_minutes"].as_u64(), p["clears"].as_u64()),
        (Some(3), Some(1)),
        "{p}"
    );

    let out = env.run(&[
        "simulate",
        "--trace",
        trace,
        "--set",
        "cooldown=0s",
        "--sweep",
        "monthly_cap=1,2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["sweep"], "monthly_cap");
    let rows = json["rows"].as_array().unwrap();
    let figures = |i: usize, p: &str| {
        let f = &rows[i]["total"][p];
        (
            f["clears"].as_u64().unwrap(),
            f["locked_minutes"].as_u64().unwrap(),
        )
    };
    assert_eq!(rows[0]["value"], "1");
    // One clear a month: the policy spends it at 10:01 (3 locked), the
    // oracle too (any one clear leaves 3).
    assert_eq!(figures(0, "policy"), (1, 3));
    assert_eq!(figures(0, "oracle"), (1, 3));
    assert_eq!(figures(1, "policy"), (2, 2));
    assert_eq!(figures(1, "oracle"), (2, 2));

    let table = env.run(&["simulate", "--trace", trace, "--sweep", "monthly_cap=1,2"]);
    let text = stdout(&table);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.starts_with("monthly_cap"), "{text}");

    for bad in [
        ["--set", "monthly_cap=11"],
        ["--set", "cooldown"],
        ["--sweep", "nokey"],
        ["--set", "no_such_key=1"],
    ] {
        let out = env.run(&["simulate", "--trace", trace, bad[0], bad[1]]);
        assert_ne!(out.status.code(), Some(0), "{bad:?}");
        let err = stderr(&out);
        assert!(
            err.contains("monthly_cap") || err.contains("KEY=VALUE") || err.contains("no_such_key"),
            "{bad:?}: {err}"
        );
        assert!(!err.contains("toml::value"), "{err}");
    }
}

/// The figures of one account (or TOTAL) and policy, as the table prints them.
fn row(json: &Value, account: &str, p: &str) -> Vec<String> {
    let f = policy(json, (account != "TOTAL").then_some(account), p);
    vec![
        account.to_string(),
        p.to_string(),
        f["clears"].to_string(),
        f["locked_minutes"].to_string(),
        f["failed_calls"].to_string(),
        format!("{:.3}", f["recovery"].as_f64().unwrap()),
    ]
}

#[test]
fn the_html_report_is_one_page_with_a_timeline_per_account_and_the_table() {
    let env = Env::new(&format!(
        "{CONFIG}[accounts.blog]\nappid = \"wx448f04719cd48f70\"\nkind = \"mini_program\"\nsecret = \"s\"\n"
    ));
    let html = env.dir.path().join("report.html");
    let args = [
        "simulate",
        "--synthetic",
        "storm",
        "--seed",
        "3",
        "--from",
        "2026-11-01",
        "--days",
        "7",
        "--html",
        html.to_str().unwrap(),
    ];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let out = env.run(&with_json);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();

    // One self-contained document.
    assert!(
        page.starts_with("<!DOCTYPE html>\n<html"),
        "{}",
        &page[..80]
    );
    assert!(page.ends_with("</html>\n"));
    assert_eq!(page.matches("<html").count(), 1);
    assert_eq!(page.matches("</html>").count(), 1);
    for external in ["<script", "src=", "href=", "<link", "url("] {
        assert!(!page.contains(external), "{external}");
    }
    assert!(
        page.len() < 200_000,
        "7 days, 2 accounts: {} bytes",
        page.len()
    );

    // The table, figure for figure: the JSON's and the text output's.
    let cell = regex::Regex::new(
        r"<tr(?: class=.total.)?><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>",
    )
    .unwrap();
    let rows: Vec<Vec<String>> = cell
        .captures_iter(&page)
        .map(|c| (1..=6).map(|i| c[i].to_string()).collect())
        .collect();
    let accounts = ["blog", "shop", "TOTAL"];
    let mut want = Vec::new();
    for a in accounts {
        for p in ["never", "naive", "oracle", "policy"] {
            want.push(row(&json, a, p));
        }
    }
    assert_eq!(rows, want);
    let text = stdout(&env.run(&args));
    let printed: Vec<Vec<String>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(rows, printed, "the table the text output prints");

    // Per account one timeline, with a mark per clear attempt of the policy
    // and of the oracle (48006 answers dashed).
    let sections: Vec<&str> = page.split("<section class=\"account\">").skip(1).collect();
    assert_eq!(sections.len(), 2);
    assert_eq!(page.matches("<svg ").count(), 2);
    for (section, name) in sections.iter().zip(["blog", "shop"]) {
        assert!(
            section.starts_with(&format!("\n<h3>{name}</h3>")),
            "{section:.80}"
        );
        assert_eq!(section.matches("<svg ").count(), 1, "{name}");
        assert!(section.matches("</svg>").count() == 1, "{name}");
        assert!(section.contains("class=\"demand\""), "{name}");
        for p in ["policy", "oracle"] {
            let attempts: Vec<&Value> = json["clears"][p]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["account"] == name)
                .collect();
            let refused = attempts.iter().filter(|c| c["errcode"] == 48006).count();
            assert_eq!(
                section.matches(&format!("class=\"clear {p}")).count(),
                attempts.len(),
                "{name} {p}"
            );
            assert_eq!(
                section
                    .matches(&format!("class=\"clear {p} refused\""))
                    .count(),
                refused,
                "{name} {p}"
            );
        }
        let locked = policy(&json, Some(name), "policy")["locked_minutes"].as_u64();
        assert_eq!(
            section.contains("class=\"locked\""),
            locked != Some(0),
            "{name}: the policy's locked minutes are shaded"
        );
    }
    let clears = json["clears"]["policy"].as_array().unwrap().len();
    assert!(clears > 0, "a storm week makes the policy clear");

    // Account names are letters, digits, - and _; a trace's cgi_path can be
    // anything, and shows escaped.
    let trace = env.file(
        "odd.csv",
        "time,account,cgi_path,calls,daily_limit\n2026-11-03T10:00:00+08:00,shop,/a<b>&\"c',12,10\n",
    );
    let out = env.run(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<code>/a&lt;b&gt;&amp;&quot;c&#39;</code>"),
        "{page}"
    );
    assert!(!page.contains("<b>"));

    let out = env.run(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--sweep",
        "monthly_cap=1,2",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}
