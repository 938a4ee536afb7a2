//! `quotawatch simulate` with the real binary (SPEC section 8): a hand-made
//! trace whose figures are worked out here, a generated month written out
//! and replayed, and clear errors for bad traces.

mod support;

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
