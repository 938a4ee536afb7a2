//! The read commands over a real ledger: `status` by name and by appid,
//! `history` filtered by account and by month (months in Beijing time), and
//! unknown accounts.

pub mod support {
    pub mod cli;
    pub mod daemon;
    pub mod fake_wechat;
}

use chrono::{DateTime, Utc};
use serde_json::Value;
use support::cli::show;
use support::{daemon::*, fake_wechat::*};

const APP: &str = "wx448f04719cd48f69";
const OTHER: &str = "wx00000000000000b2";
const SECRET: &str = "shop-appsecret-5f3a9c";
const OTHER_SECRET: &str = "blog-appsecret-4d4d";

fn body(fake_url: &str) -> String {
    format!(
        "[wechat]\napi_base = \"{fake_url}\"\ntimeout = \"2s\"\n\n\
         [policy]\nreset_guard = \"0s\"\ncooldown = \"0s\"\ndaily_max = 10\n\n\
         [accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n\n\
         [accounts.blog]\nappid = \"{OTHER}\"\nkind = \"official_account\"\nsecret = \"{OTHER_SECRET}\"\n"
    )
}

async fn ok_json(env: &Env, args: &[&str]) -> Value {
    let o = env.run_async(args).await;
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", show(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", show(&o)))
}

async fn rows(env: &Env, args: &[&str]) -> Vec<Value> {
    ok_json(env, args)
        .await
        .as_array()
        .expect("an array")
        .clone()
}

fn current_month() -> String {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_by_name_appid_account_and_month() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    fake.add_account(OTHER, OTHER_SECRET);
    let env = Env::new(&body(&fake.base_url()));
    for account in ["shop", "blog", APP] {
        let o = env.run_async(&["clear", account, "--json"]).await;
        assert_eq!(o.status.code(), Some(0), "clear {account}: {}", show(&o));
    }
    assert_eq!(fake.clears_effective(APP), 2);
    assert_eq!(fake.clears_effective(OTHER), 1);

    let by_name = rows(&env, &["status", "shop", "--json"]).await;
    let by_appid = rows(&env, &["status", APP, "--json"]).await;
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name, by_appid);
    let shop = &by_name[0];
    assert_eq!(
        (shop["account"].as_str(), shop["appid"].as_str()),
        (Some("shop"), Some(APP))
    );
    assert_eq!(
        (
            shop["used"].as_u64(),
            shop["cap"].as_u64(),
            shop["left"].as_u64()
        ),
        (Some(2), Some(8), Some(6)),
        "{shop}"
    );
    assert_eq!(shop["exhausted"], false);
    assert!(shop["disabled"].is_null());
    assert_eq!(shop["in_flight"], false);
    assert_eq!(shop["month"], current_month().as_str());

    let all = rows(&env, &["status", "--json"]).await;
    let names: Vec<_> = all.iter().map(|r| r["account"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2);
    assert!(
        names.contains(&"shop") && names.contains(&"blog"),
        "{names:?}"
    );
    let blog = all.iter().find(|r| r["account"] == "blog").unwrap();
    assert_eq!(blog["used"], 1);

    let o = env.run_async(&["status"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        stdout(&o).contains("shop") && stdout(&o).contains("blog") && stdout(&o).contains("2/8"),
        "{}",
        show(&o)
    );

    let h = rows(&env, &["history", "--json"]).await;
    assert_eq!(h.len(), 3);
    let ids: Vec<_> = h.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let shop_rows = rows(&env, &["history", "--account", "shop", "--json"]).await;
    assert_eq!(shop_rows.len(), 2);
    assert!(
        shop_rows
            .iter()
            .all(|r| r["appid"] == APP && r["account"] == "shop"),
        "{shop_rows:?}"
    );
    assert_eq!(
        rows(&env, &["history", "--account", OTHER, "--json"])
            .await
            .len(),
        1
    );
    assert_eq!(
        rows(&env, &["history", "--limit", "1", "--json"])
            .await
            .len(),
        1
    );

    let this_month = current_month();
    assert_eq!(
        rows(&env, &["history", "--month", &this_month, "--json"])
            .await
            .len(),
        3
    );
    let other_month = if this_month == "2026-10" {
        "2026-09"
    } else {
        "2026-10"
    };
    assert_eq!(
        rows(&env, &["history", "--month", other_month, "--json"])
            .await
            .len(),
        0
    );

    for r in &h {
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["source"], "cli");
        assert!(r["errcode"].is_null());
    }
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_accounts_fail_with_a_clear_message_and_no_request() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&body(&fake.base_url()));
    for args in [
        vec!["status", "nope"],
        vec!["status", "nope", "--json"],
        vec!["clear", "nope"],
        vec!["clear", "wx0123456789abcdef", "--json"],
        vec!["history", "--account", "nope"],
        vec!["enable", "nope"],
    ] {
        let o = env.run_async(&args).await;
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", show(&o));
        let named = args
            .iter()
            .find(|a| **a == "nope" || a.starts_with("wx"))
            .unwrap();
        let err = stderr(&o);
        assert!(
            err.contains(&format!("no account `{named}`")),
            "{args:?}: {}",
            show(&o)
        );
        assert!(!stdout(&o).contains(SECRET) && !err.contains(SECRET));
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_months_are_beijing_calendar_months() {
    let fake = FakeWeChat::start().await;
    let env = Env::new(&body(&fake.base_url()));
    // Creates the ledger and its schema.
    let o = env.run_async(&["status", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // Attempts at past instants cannot be made through the CLI: write them as
    // the ledger would have (schema version 1).
    let at = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
            .timestamp_millis()
    };
    let attempts = [
        ("oct-last", at("2026-10-31T15:30:00Z")), // 23:30 31 Oct CST
        ("nov-first", at("2026-10-31T16:30:00Z")), // 00:30  1 Nov CST
        ("nov-last", at("2026-11-30T15:59:00Z")), // 23:59 30 Nov CST
        ("dec-first", at("2026-11-30T16:01:00Z")), // 00:01  1 Dec CST
    ];
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        for (trigger, started) in attempts {
            conn.execute(
                "INSERT INTO attempts (appid, account, scope, started_at, finished_at, outcome, source, trigger, evidence, forced, owner)
                 VALUES (?1, 'shop', 'full', ?2, ?2, 'ok', 'test', ?3, 1, 0, 'elsewhere:1')",
                rusqlite::params![APP, started, trigger],
            )
            .unwrap();
        }
    }
    let triggers = |rows: Vec<Value>| -> Vec<String> {
        rows.iter()
            .map(|r| r["trigger"].as_str().unwrap().to_string())
            .collect()
    };
    let nov = rows(&env, &["history", "--month", "2026-11", "--json"]).await;
    assert_eq!(triggers(nov), ["nov-last", "nov-first"]);
    let oct = rows(&env, &["history", "--month", "2026-10", "--json"]).await;
    assert_eq!(triggers(oct), ["oct-last"]);
    let dec = rows(
        &env,
        &[
            "history",
            "--month",
            "2026-12",
            "--account",
            "shop",
            "--json",
        ],
    )
    .await;
    assert_eq!(triggers(dec), ["dec-first"]);
    assert!(rows(
        &env,
        &[
            "history",
            "--month",
            "2026-12",
            "--account",
            "blog",
            "--json"
        ]
    )
    .await
    .is_empty());

    for bad in ["2026-13", "November"] {
        let o = env.run_async(&["history", "--month", bad]).await;
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert!(stderr(&o).contains("YYYY-MM"), "{}", show(&o));
    }
}
