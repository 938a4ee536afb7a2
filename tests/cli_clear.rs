//! `quotawatch clear` end to end: the real binary against the fake WeChat API,
//! checked on both sides: what the fake received (and let take effect) and what
//! the ledger says afterwards (`status --json`, `history --json`).

pub mod support {
    pub mod cli;
    pub mod daemon;
    pub mod fake_wechat;
}

use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::cli::{assert_no_secrets, show};
use support::{daemon::*, fake_wechat::*};

const APP: &str = "wx448f04719cd48f69";
const SECRET: &str = "shop-appsecret-5f3a9c";
const NEW_SECRET: &str = "shop-appsecret-rotated-77e1";
const PLATFORM: &str = "wxc0c0c0c0c0c0c0c0";
const PLATFORM_SECRET: &str = "platform-appsecret-91b2";
const CLIENT: &str = "wxa1a1a1a1a1a1a1a1";

/// The config after `[daemon]`: the fake as WeChat, a policy where time of day
/// never matters and cooldown is off unless `policy` says otherwise.
fn body(fake: &FakeWeChat, timeout: &str, policy: &str, accounts: &str) -> String {
    format!(
        "[wechat]\napi_base = \"{}\"\ntimeout = \"{timeout}\"\n\n\
         [policy]\nreset_guard = \"0s\"\ndaily_max = 10\n{policy}\n\n{accounts}",
        fake.base_url()
    )
}

const NO_COOLDOWN: &str = "cooldown = \"0s\"";

fn shop_with_secret(secret: &str) -> String {
    format!("[accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\nsecret = \"{secret}\"\n")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("quotawatch was killed by a signal")
}

fn json_of(o: &Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", show(o)))
}

/// `clear ACCOUNT --json [extra]`: the exit code and the JSON summary.
async fn clear(env: &Env, account: &str, extra: &[&str]) -> (i32, Value, Output) {
    let mut args = vec!["clear", account, "--json"];
    args.extend_from_slice(extra);
    let o = env.run_async(&args).await;
    let v = json_of(&o);
    (code(&o), v, o)
}

async fn status(env: &Env, account: &str) -> Value {
    let o = env.run_async(&["status", account, "--json"]).await;
    assert_eq!(code(&o), 0, "{}", show(&o));
    let rows = json_of(&o);
    let rows = rows.as_array().expect("status --json is an array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

async fn history(env: &Env) -> Vec<Value> {
    let o = env.run_async(&["history", "--json"]).await;
    assert_eq!(code(&o), 0, "{}", show(&o));
    json_of(&o)
        .as_array()
        .expect("history --json is an array")
        .clone()
}

fn assert_clean(fake: &FakeWeChat) {
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

fn outcome(summary: &Value) -> &str {
    summary["outcome"]["outcome"].as_str().unwrap_or("<none>")
}

fn make_executable(path: &std::path::Path) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).unwrap();
}

// ---- 1. each credential kind ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_clears_through_v2_with_appid_and_secret_in_query_and_body() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let accounts =
        format!("[accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\nsecret_file = \"shop-secret\"\n");
    let env = Env::new(&body(&fake, "2s", "", &accounts));
    env.file("shop-secret", &format!("{SECRET}\n"));

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(summary["account"], "shop");
    assert_eq!(summary["appid"], APP);
    assert_eq!(summary["decision"], "clear");
    assert_eq!(outcome(&summary), "ok", "{summary}");
    assert_eq!(summary["budget"]["used"], 1);
    assert_eq!(summary["budget"]["left"], 7);

    let all = fake.v2_params();
    let both = V2Params {
        appid_in_query: true,
        appid_in_body: true,
        secret_in_query: true,
        secret_in_body: true,
    };
    assert_eq!(all, vec![both]);
    let req = &fake.requests_to(CLEAR_QUOTA_V2)[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.query_param("appid").as_deref(), Some(APP));
    assert_eq!(req.query_param("appsecret").as_deref(), Some(SECRET));
    assert_eq!(req.body_str("appid").as_deref(), Some(APP));
    assert_eq!(req.body_str("appsecret").as_deref(), Some(SECRET));
    // Token-free: no stable_token, nothing but the one clear.
    assert_eq!(fake.requests().len(), 1, "{:?}", fake.requests());
    assert_eq!(fake.clears_effective(APP), 1);

    let st = status(&env, "shop").await;
    assert_eq!(
        (st["used"].as_u64(), st["left"].as_u64()),
        (Some(1), Some(7)),
        "{st}"
    );
    let h = history(&env).await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["outcome"], "ok");
    assert_eq!(h[0]["appid"], APP);
    assert_eq!(h[0]["scope"], "full");
    assert_no_secrets(&[&out], &[SECRET]);
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_clears_with_the_files_token_and_follows_changes() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let first = fake.issue_token(APP);
    let accounts =
        format!("[accounts.shop]\nappid = \"{APP}\"\nkind = \"official_account\"\ntoken_file = \"shop-token\"\n");
    let env = Env::new(&body(&fake, "2s", NO_COOLDOWN, &accounts));
    env.file("shop-token", &format!("{first}\n"));

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(outcome(&summary), "ok");
    let reqs = fake.requests_to(CLEAR_QUOTA);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].query_param("access_token").as_deref(),
        Some(first.as_str())
    );
    assert_eq!(reqs[0].body_str("appid").as_deref(), Some(APP));

    // The owner of the file rotates the token; the old one stops working.
    let second = fake.issue_token(APP);
    fake.expire_token(&first);
    env.file("shop-token", &format!("{second}\n"));
    let (rc, summary, out2) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out2));
    assert_eq!(outcome(&summary), "ok");
    let reqs = fake.requests_to(CLEAR_QUOTA);
    assert_eq!(reqs.len(), 2, "the rotated token works at once: no retry");
    assert_eq!(
        reqs[1].query_param("access_token").as_deref(),
        Some(second.as_str())
    );

    assert_eq!(fake.count_exact(STABLE_TOKEN), 0);
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 0);
    assert_eq!(fake.clears_effective(APP), 2);
    assert_eq!(status(&env, "shop").await["used"], 2);
    assert_no_secrets(&[&out, &out2], &[&first, &second]);
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_clears_with_the_commands_output() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let token = fake.issue_token(APP);
    let env = Env::new("");
    // The script checks it got its argument, so argv is passed through.
    let script = env.file(
        "get-token.sh",
        &format!("#!/bin/sh\n[ \"$1\" = shop ] || exit 2\necho {token}\n"),
    );
    make_executable(&script);
    let accounts = format!(
        "[accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\ntoken_command = [\"{}\", \"shop\"]\n",
        script.display()
    );
    env.write(&body(&fake, "2s", "", &accounts));

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(outcome(&summary), "ok");
    let reqs = fake.requests_to(CLEAR_QUOTA);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].query_param("access_token").as_deref(),
        Some(token.as_str())
    );
    assert_eq!(reqs[0].body_str("appid").as_deref(), Some(APP));
    assert_eq!(fake.requests().len(), 1, "{:?}", fake.requests());
    assert_eq!(fake.clears_effective(APP), 1);
    assert_eq!(history(&env).await[0]["outcome"], "ok");
    assert_no_secrets(&[&out], &[&token]);
    assert_clean(&fake);
}

fn platform_account() -> String {
    format!("[accounts.platform]\nappid = \"{PLATFORM}\"\nkind = \"component\"\nsecret = \"{PLATFORM_SECRET}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_with_secret_clears_its_own_quota_through_component_v2() {
    let fake = FakeWeChat::start().await;
    fake.add_component(PLATFORM, PLATFORM_SECRET);
    let env = Env::new(&body(&fake, "2s", "", &platform_account()));

    let (rc, summary, out) = clear(&env, "platform", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(outcome(&summary), "ok");
    let reqs = fake.requests_to(COMPONENT_CLEAR_QUOTA_V2);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].body_str("component_appid").as_deref(),
        Some(PLATFORM)
    );
    assert_eq!(
        reqs[0].body_str("appsecret").as_deref(),
        Some(PLATFORM_SECRET)
    );
    assert_eq!(
        reqs[0].body_str("appid"),
        None,
        "the platform's own clear names no authorizer"
    );
    assert_eq!(fake.requests().len(), 1, "{:?}", fake.requests());
    assert_eq!(fake.clears_effective(PLATFORM), 1);
    assert_eq!(status(&env, "platform").await["used"], 1);
    assert_no_secrets(&[&out], &[PLATFORM_SECRET]);
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizer_clears_through_its_component_with_its_appid() {
    let fake = FakeWeChat::start().await;
    fake.add_component(PLATFORM, PLATFORM_SECRET);
    fake.authorize(PLATFORM, CLIENT);
    let accounts = format!(
        "{}\n[accounts.client]\nappid = \"{CLIENT}\"\nkind = \"authorizer\"\ncomponent = \"platform\"\n",
        platform_account()
    );
    let env = Env::new(&body(&fake, "2s", "", &accounts));

    let (rc, summary, out) = clear(&env, "client", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(summary["appid"], CLIENT);
    assert_eq!(outcome(&summary), "ok");
    let reqs = fake.requests_to(COMPONENT_CLEAR_QUOTA_V2);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].body_str("component_appid").as_deref(),
        Some(PLATFORM)
    );
    assert_eq!(
        reqs[0].body_str("appsecret").as_deref(),
        Some(PLATFORM_SECRET)
    );
    assert_eq!(reqs[0].body_str("appid").as_deref(), Some(CLIENT));
    assert_eq!(fake.requests().len(), 1, "{:?}", fake.requests());
    assert_eq!(fake.clears_effective(CLIENT), 1);
    assert_eq!(fake.clears_effective(PLATFORM), 0);
    // The budget is the authorizer's, not the platform's.
    assert_eq!(status(&env, "client").await["used"], 1);
    assert_eq!(status(&env, "platform").await["used"], 0);
    let h = history(&env).await;
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0]["account"].as_str(), h[0]["appid"].as_str()),
        (Some("client"), Some(CLIENT))
    );
    assert_no_secrets(&[&out], &[PLATFORM_SECRET]);
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizer_with_its_own_token_file_clears_through_clear_quota() {
    let fake = FakeWeChat::start().await;
    fake.add_component(PLATFORM, PLATFORM_SECRET);
    fake.authorize(PLATFORM, CLIENT);
    let token = fake.issue_token(CLIENT);
    let accounts =
        format!("[accounts.client]\nappid = \"{CLIENT}\"\nkind = \"authorizer\"\ntoken_file = \"client-token\"\n");
    let env = Env::new(&body(&fake, "2s", "", &accounts));
    env.file("client-token", &token);

    let (rc, summary, out) = clear(&env, "client", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(outcome(&summary), "ok");
    let reqs = fake.requests_to(CLEAR_QUOTA);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].query_param("access_token").as_deref(),
        Some(token.as_str())
    );
    assert_eq!(reqs[0].body_str("appid").as_deref(), Some(CLIENT));
    assert_eq!(fake.requests().len(), 1, "{:?}", fake.requests());
    assert_eq!(fake.clears_effective(CLIENT), 1);
    assert_eq!(status(&env, "client").await["used"], 1);
    assert_no_secrets(&[&out], &[&token]);
    assert_clean(&fake);
}

/// SPEC 4a, the credentials split (issue 21): an authorizer clears through
/// its component (token-free, so it works while token calls are over quota)
/// and reads its quotas with its own authorizer_access_token, from one
/// table; the component likewise clears with its secret and reads with its
/// component_access_token from a command. Before, either pair was refused
/// as "needs exactly one credential".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_credential_and_a_token_source_side_by_side() {
    const API: &str = "/cgi-bin/message/custom/send";
    let fake = FakeWeChat::start().await;
    fake.add_component(PLATFORM, PLATFORM_SECRET);
    fake.authorize(PLATFORM, CLIENT);
    fake.set_quota(CLIENT, API, 1000, 990);
    fake.set_quota(PLATFORM, API, 500, 1);
    let client_token = fake.issue_token(CLIENT);
    let platform_token = fake.issue_token(PLATFORM);
    let env = Env::new("");
    let script = env.file(
        "component-token.sh",
        &format!("#!/bin/sh\n[ \"$1\" = platform ] || exit 2\necho {platform_token}\n"),
    );
    make_executable(&script);
    let accounts = format!(
        "[accounts.platform]\nappid = \"{PLATFORM}\"\nkind = \"component\"\nsecret = \"{PLATFORM_SECRET}\"\n\
         token_command = [\"{}\", \"platform\"]\n\
         [accounts.client]\nappid = \"{CLIENT}\"\nkind = \"authorizer\"\ncomponent = \"platform\"\n\
         token_file = \"client-token\"\n",
        script.display()
    );
    env.write(&body(&fake, "2s", NO_COOLDOWN, &accounts));
    env.file("client-token", &client_token);

    let o = env.run(&["check"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    for (account, token, limit) in [
        ("client", &client_token, 1000),
        ("platform", &platform_token, 500),
    ] {
        let o = env.run_async(&["quota", account, API, "--json"]).await;
        assert_eq!(code(&o), 0, "{}", show(&o));
        assert_eq!(json_of(&o)["quota"]["daily_limit"], limit, "{}", show(&o));
        let read = fake.requests_to(QUOTA_GET);
        assert_eq!(
            read.last().unwrap().query_param("access_token").as_deref(),
            Some(token.as_str())
        );
        assert_no_secrets(&[&o], &[token, PLATFORM_SECRET]);
    }
    for (account, appid, with_appid) in [("client", CLIENT, true), ("platform", PLATFORM, false)] {
        let (rc, summary, out) = clear(&env, account, &[]).await;
        assert_eq!(rc, 0, "{}", show(&out));
        assert_eq!(outcome(&summary), "ok", "{summary}");
        let req = fake.requests_to(COMPONENT_CLEAR_QUOTA_V2).pop().unwrap();
        assert_eq!(req.body_str("component_appid").as_deref(), Some(PLATFORM));
        assert_eq!(req.body_str("appid").is_some(), with_appid, "{req:?}");
        assert_eq!(fake.clears_effective(appid), 1);
        assert_no_secrets(&[&out], &[&client_token, &platform_token, PLATFORM_SECRET]);
    }
    // Every clear was token-free; no token was asked of WeChat.
    assert_eq!(fake.count_exact(CLEAR_QUOTA), 0);
    assert_eq!(fake.count_exact(STABLE_TOKEN), 0);
    assert_clean(&fake);
}

/// A wrong combination is explained in one line naming the account.
#[test]
fn a_wrong_combination_of_credentials_is_explained_in_one_line() {
    let platform = platform_account();
    let cases = [
        (
            format!("{platform}[accounts.client]\nappid = \"{CLIENT}\"\nkind = \"authorizer\"\ncomponent = \"platform\"\nsecret = \"x\"\n"),
            "`accounts.client`",
            "has both secret and component",
        ),
        (
            format!("[accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\nsecret = \"x\"\ntoken_file = \"t\"\ntoken_command = [\"/bin/t\"]\n"),
            "`accounts.shop`",
            "has both token_file and token_command",
        ),
        (
            format!("[accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\n"),
            "`accounts.shop`",
            "needs a clear credential: secret (or secret_file), or a token_file or token_command",
        ),
        (
            format!("[accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\ncomponent = \"platform\"\n"),
            "`accounts.shop.component`",
            "only an account of kind = \"authorizer\"",
        ),
    ];
    for (accounts, key, want) in cases {
        let env = Env::new(&accounts);
        let o = env.run(&["check"]);
        assert_eq!(code(&o), 78, "{}", show(&o));
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(key)).collect();
        assert_eq!(lines.len(), 1, "{}", show(&o));
        assert!(lines[0].contains(want), "{want}: {}", show(&o));
    }
}

// ---- 2. the monthly cap across invocations ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_cap_holds_across_invocations_and_against_force() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let policy = "monthly_cap = 3\ncooldown = \"0s\"";
    let env = Env::new(&body(&fake, "2s", policy, &shop_with_secret(SECRET)));

    let mut codes = Vec::new();
    for i in 0..5 {
        let (rc, summary, out) = clear(&env, "shop", &[]).await;
        codes.push(rc);
        if i < 3 {
            assert_eq!(outcome(&summary), "ok", "run {i}: {}", show(&out));
            assert_eq!(summary["budget"]["used"], i + 1);
        } else {
            assert_eq!(summary["decision"], "skip", "run {i}: {}", show(&out));
            assert_eq!(summary["reason"], "monthly_cap", "run {i}: {summary}");
            assert!(
                summary["attempt"].is_null() && summary["outcome"].is_null(),
                "{summary}"
            );
            assert_eq!(summary["budget"]["left"], 0);
            assert!(
                summary["next_clear_at"].is_string(),
                "the next month's start: {summary}"
            );
        }
    }
    assert_eq!(codes, [0, 0, 0, 3, 3]);
    assert_eq!(fake.clears_effective(APP), 3);
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 3);

    let (rc, summary, out) = clear(&env, "shop", &["--force"]).await;
    assert_eq!(
        rc,
        3,
        "--force never passes the monthly cap: {}",
        show(&out)
    );
    assert_eq!(summary["reason"], "monthly_cap");
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 3);

    // The human form says why too.
    let o = env.run_async(&["clear", "shop"]).await;
    assert_eq!(code(&o), 3, "{}", show(&o));
    assert!(stdout(&o).contains("monthly_cap"), "{}", show(&o));

    let st = status(&env, "shop").await;
    assert_eq!(
        (st["used"].as_u64(), st["cap"].as_u64(), st["left"].as_u64()),
        (Some(3), Some(3), Some(0)),
        "{st}"
    );
    let h = history(&env).await;
    assert_eq!(h.len(), 3, "refusals leave no attempt rows: {h:?}");
    assert!(h.iter().all(|r| r["outcome"] == "ok"), "{h:?}");
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 3);
    assert_clean(&fake);
}

// ---- 3. 48006 ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errcode_48006_marks_the_month_exhausted_and_stops_calls() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    fake.record_console_clears(APP, 10);
    let env = Env::new(&body(&fake, "2s", NO_COOLDOWN, &shop_with_secret(SECRET)));

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 1, "{}", show(&out));
    assert_eq!(outcome(&summary), "failed", "{summary}");
    assert_eq!(summary["outcome"]["errcode"], 48006, "{summary}");
    assert_eq!(
        fake.count_exact(CLEAR_QUOTA_V2),
        1,
        "48006 is never retried"
    );

    let st = status(&env, "shop").await;
    assert_eq!(st["exhausted"], true, "{st}");
    assert_eq!(st["used"], 0, "a failed clear spends nothing: {st}");

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 3, "{}", show(&out));
    assert_eq!(summary["reason"], "exhausted_upstream", "{summary}");
    let (rc, summary, _) = clear(&env, "shop", &["--force"]).await;
    assert_eq!(
        (rc, summary["reason"].as_str()),
        (3, Some("exhausted_upstream")),
        "{summary}"
    );
    assert_eq!(
        fake.count_exact(CLEAR_QUOTA_V2),
        1,
        "no request once exhausted"
    );
    assert_eq!(fake.requests().len(), 1);

    let h = history(&env).await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["outcome"], "failed");
    assert_eq!(h[0]["errcode"], 48006);
    assert_clean(&fake);
}

// ---- 4. 40164 ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errcode_40164_disables_until_the_config_changes_or_enable() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&body(&fake, "2s", NO_COOLDOWN, &shop_with_secret(SECRET)));
    let mut outputs = Vec::new();

    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::ip_not_whitelisted());
    let o = env.run_async(&["clear", "shop"]).await;
    assert_eq!(code(&o), 1, "{}", show(&o));
    let text = stdout(&o);
    assert!(
        text.contains("whitelist"),
        "names the IP whitelist: {}",
        show(&o)
    );
    assert!(
        text.contains("203.0.113.5"),
        "shows the caller IP: {}",
        show(&o)
    );
    assert_eq!(
        fake.count_exact(CLEAR_QUOTA_V2),
        1,
        "configuration errors are not retried"
    );
    outputs.push(o);

    let st = status(&env, "shop").await;
    let why = st["disabled"]
        .as_str()
        .unwrap_or_else(|| panic!("disabled: {st}"));
    assert!(why.contains("40164") || why.contains("whitelist"), "{why}");
    assert_eq!(st["used"], 0);

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 3, "{}", show(&out));
    assert_eq!(summary["reason"], "account_disabled");
    assert_eq!(
        fake.count_exact(CLEAR_QUOTA_V2),
        1,
        "no request while disabled"
    );
    outputs.push(out);

    // A new secret changes the account's fingerprint: enabled again.
    fake.add_account(APP, NEW_SECRET);
    env.write(&body(
        &fake,
        "2s",
        NO_COOLDOWN,
        &shop_with_secret(NEW_SECRET),
    ));
    assert!(status(&env, "shop").await["disabled"].is_null());
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(outcome(&summary), "ok");
    let reqs = fake.requests_to(CLEAR_QUOTA_V2);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].body_str("appsecret").as_deref(), Some(NEW_SECRET));
    outputs.push(out);

    // Disabled again, then lifted by `quotawatch enable` with the same config.
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::ip_not_whitelisted());
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(
        (rc, summary["outcome"]["errcode"].as_i64()),
        (1, Some(40164)),
        "{}",
        show(&out)
    );
    let (rc, summary, _) = clear(&env, "shop", &[]).await;
    assert_eq!(
        (rc, summary["reason"].as_str()),
        (3, Some("account_disabled"))
    );
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 3);
    outputs.push(out);

    let o = env.run_async(&["enable", "shop"]).await;
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(stdout(&o).contains("enabled"), "{}", show(&o));
    assert!(status(&env, "shop").await["disabled"].is_null());
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!((rc, outcome(&summary)), (0, "ok"), "{}", show(&out));
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 4);
    outputs.push(o);
    outputs.push(out);

    let h = history(&env).await;
    let got: Vec<_> = h
        .iter()
        .rev()
        .map(|r| (r["outcome"].as_str().unwrap(), r["errcode"].as_i64()))
        .collect();
    assert_eq!(
        got,
        [
            ("failed", Some(40164)),
            ("ok", None),
            ("failed", Some(40164)),
            ("ok", None)
        ],
        "{h:?}"
    );
    assert_eq!(fake.clears_effective(APP), 2);
    let refs: Vec<&Output> = outputs.iter().collect();
    assert_no_secrets(&refs, &[SECRET, NEW_SECRET]);
    assert_clean(&fake);
}

/// A wrong appsecret (40125) and an appid WeChat does not know (40013) are
/// configuration errors: no retry, the account is disabled, the output says
/// what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_or_appid_disables_the_account() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let unknown = "wx00000000000000c3";
    let accounts = format!(
        "{}\n[accounts.ghost]\nappid = \"{unknown}\"\nkind = \"official_account\"\nsecret = \"{SECRET}\"\n",
        shop_with_secret(NEW_SECRET)
    );
    let env = Env::new(&body(&fake, "2s", NO_COOLDOWN, &accounts));

    let o = env.run_async(&["clear", "shop"]).await;
    assert_eq!(code(&o), 1, "{}", show(&o));
    assert!(stdout(&o).contains("appsecret"), "{}", show(&o));
    let o2 = env.run_async(&["clear", "ghost"]).await;
    assert_eq!(code(&o2), 1, "{}", show(&o2));
    assert!(stdout(&o2).contains("appid"), "{}", show(&o2));
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 2, "never retried");

    for (name, errcode) in [("shop", 40125), ("ghost", 40013)] {
        let st = status(&env, name).await;
        assert!(st["disabled"].is_string(), "{st}");
        let (rc, summary, _) = clear(&env, name, &[]).await;
        assert_eq!(
            (rc, summary["reason"].as_str()),
            (3, Some("account_disabled")),
            "{summary}"
        );
        let h = history(&env).await;
        assert!(
            h.iter()
                .any(|r| r["account"] == name && r["errcode"] == errcode),
            "{h:?}"
        );
    }
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 2);
    assert_eq!(fake.clears_effective(APP), 0);
    assert_no_secrets(&[&o, &o2], &[SECRET, NEW_SECRET]);
    assert_clean(&fake);
}

// ---- 5. timeouts are ambiguous -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_ambiguous_and_counted_as_spent() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let policy = "cooldown = \"0s\"\nmonthly_cap = 2";
    let env = Env::new(&body(&fake, "1s", policy, &shop_with_secret(SECRET)));

    // The clear takes effect, the answer comes too late.
    fake.push_fault(
        Some(CLEAR_QUOTA_V2),
        Fault::DelayAfterEffect(Duration::from_secs(3)),
    );
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 1, "{}", show(&out));
    assert_eq!(outcome(&summary), "ambiguous", "{summary}");
    assert_eq!(fake.clears_effective(APP), 1);
    assert_eq!(
        fake.count_exact(CLEAR_QUOTA_V2),
        1,
        "an ambiguous clear is never retried"
    );
    assert_eq!(summary["budget"]["used"], 1, "{summary}");
    let st = status(&env, "shop").await;
    assert_eq!(
        (st["used"].as_u64(), st["left"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );

    // No answer at all: WeChat may or may not have cleared; counted all the same.
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Hang);
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!((rc, outcome(&summary)), (1, "ambiguous"), "{}", show(&out));
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 2);
    let st = status(&env, "shop").await;
    assert_eq!(
        (st["used"].as_u64(), st["left"].as_u64()),
        (Some(2), Some(0)),
        "{st}"
    );
    assert_eq!(st["in_flight"], false);

    let h = history(&env).await;
    assert_eq!(h.len(), 2);
    assert!(h.iter().all(|r| r["outcome"] == "ambiguous"), "{h:?}");

    // Ambiguous attempts alone reach the cap.
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 3, "{}", show(&out));
    assert_eq!(summary["reason"], "monthly_cap");
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 2);
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_after_sending_is_ambiguous() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&body(&fake, "2s", NO_COOLDOWN, &shop_with_secret(SECRET)));
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Reset);
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!((rc, outcome(&summary)), (1, "ambiguous"), "{}", show(&out));
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 1, "never retried");
    assert_eq!(status(&env, "shop").await["used"], 1);
    assert_eq!(history(&env).await[0]["outcome"], "ambiguous");
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_decides_without_calling_wechat() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&body(&fake, "2s", "", &shop_with_secret(SECRET)));
    let (rc, summary, out) = clear(&env, "shop", &["--dry-run"]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(
        (summary["decision"].as_str(), summary["reason"].as_str()),
        (Some("skip"), Some("dry_run"))
    );

    env.write(&body(
        &fake,
        "2s",
        "dry_run = true",
        &shop_with_secret(SECRET),
    ));
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 0, "{}", show(&out));
    assert_eq!(summary["reason"], "dry_run");

    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    assert!(history(&env).await.is_empty());
    assert_eq!(status(&env, "shop").await["used"], 0);
}

// ---- 6. retries --------------------------------------------------------------------

/// One transient fault, then WeChat works: one ledger row, two requests, with
/// a backoff between them.
async fn retried_once_then_ok(fault: Fault) {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&body(&fake, "2s", "", &shop_with_secret(SECRET)));
    fake.push_fault(Some(CLEAR_QUOTA_V2), fault.clone());

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 0, "{fault:?}: {}", show(&out));
    assert_eq!(outcome(&summary), "ok", "{fault:?}: {summary}");
    let reqs = fake.requests_to(CLEAR_QUOTA_V2);
    assert_eq!(reqs.len(), 2, "{fault:?}");
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= chrono::Duration::milliseconds(150),
        "{fault:?}: retried after {gap} without backoff"
    );
    assert_eq!(fake.clears_effective(APP), 1);
    let h = history(&env).await;
    assert_eq!(
        h.len(),
        1,
        "{fault:?}: one attempt, however many requests: {h:?}"
    );
    assert_eq!(h[0]["outcome"], "ok");
    assert_eq!(status(&env, "shop").await["used"], 1);
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_error_is_retried() {
    retried_once_then_ok(Fault::errcode(-1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minute_quota_is_retried() {
    retried_once_then_ok(Fault::errcode(45011)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_gateway_is_retried() {
    retried_once_then_ok(Fault::Status(502)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&body(&fake, "2s", "", &shop_with_secret(SECRET)));
    for _ in 0..10 {
        fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::errcode(-1));
    }
    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 1, "{}", show(&out));
    assert_eq!(outcome(&summary), "failed", "{summary}");
    assert_eq!(summary["outcome"]["errcode"], -1);
    let n = fake.count_exact(CLEAR_QUOTA_V2);
    assert!((2..=6).contains(&n), "{n} requests for one clear");
    assert_eq!(fake.pending_faults(), 10 - n);
    assert_eq!(status(&env, "shop").await["used"], 0);
    assert_eq!(history(&env).await.len(), 1);
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_answer_is_ambiguous_and_not_retried() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&body(&fake, "2s", "", &shop_with_secret(SECRET)));
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Garbage);

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 1, "{}", show(&out));
    assert_eq!(outcome(&summary), "ambiguous", "{summary}");
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 1);
    assert_eq!(history(&env).await[0]["outcome"], "ambiguous");
    assert_eq!(status(&env, "shop").await["used"], 1);
    assert_clean(&fake);
}

fn token_file_account() -> String {
    format!("[accounts.shop]\nappid = \"{APP}\"\nkind = \"official_account\"\ntoken_file = \"shop-token\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_and_retried_once() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let token = fake.issue_token(APP);
    let env = Env::new(&body(&fake, "2s", "", &token_file_account()));
    env.file("shop-token", &token);
    // The file is never updated: the retry gets 42001 too, and it stops there.
    fake.push_fault(Some(CLEAR_QUOTA), Fault::ExpireToken);

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!(rc, 1, "{}", show(&out));
    assert_eq!(outcome(&summary), "failed", "{summary}");
    assert_eq!(summary["outcome"]["errcode"], 42001);
    let reqs = fake.requests_to(CLEAR_QUOTA);
    assert_eq!(reqs.len(), 2, "one retry after one refresh");
    assert!(reqs
        .iter()
        .all(|r| r.query_param("access_token").as_deref() == Some(token.as_str())));
    assert_eq!(
        fake.count_exact(STABLE_TOKEN),
        0,
        "a token_file account never asks for tokens"
    );
    assert_eq!(status(&env, "shop").await["used"], 0);
    assert!(
        status(&env, "shop").await["disabled"].is_null(),
        "a token error is not a config error"
    );
    assert_clean(&fake);
}

/// The refresh re-reads the token file: `shop-token` is a FIFO, so each read
/// gets what the test writes at that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_rereads_the_token_file() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let old = fake.issue_token(APP);
    let new = fake.issue_token(APP);
    let env = Env::new(&body(&fake, "2s", "", &token_file_account()));
    let fifo = env.fifo("shop-token");
    fake.push_fault(Some(CLEAR_QUOTA), Fault::ExpireToken);

    let mut cmd = env.command(&["clear", "shop", "--json"]);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    feed_fifo(&fifo, &old).await;
    eventually(Duration::from_secs(10), "the first clear_quota", || {
        fake.count_exact(CLEAR_QUOTA) >= 1
    })
    .await;
    feed_fifo(&fifo, &new).await;
    let out = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("clear finished")
        .unwrap();

    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(outcome(&json_of(&out)), "ok");
    let reqs = fake.requests_to(CLEAR_QUOTA);
    let used: Vec<_> = reqs
        .iter()
        .map(|r| r.query_param("access_token").unwrap())
        .collect();
    assert_eq!(used, [old, new]);
    assert_eq!(fake.clears_effective(APP), 1);
    assert_eq!(history(&env).await.len(), 1);
    assert_clean(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_reruns_the_token_command() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let old = fake.issue_token(APP);
    let new = fake.issue_token(APP);
    let env = Env::new("");
    env.file("tokens", &format!("{old}\n{new}\n"));
    // Prints the next line of `tokens` on each run.
    let script = env.file(
        "next-token.sh",
        "#!/bin/sh\ncd \"$(dirname \"$0\")\"\nn=$(( $(cat runs 2>/dev/null || echo 0) + 1 ))\necho $n > runs\nsed -n \"${n}p\" tokens\n",
    );
    make_executable(&script);
    let accounts = format!(
        "[accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\ntoken_command = [\"{}\"]\n",
        script.display()
    );
    env.write(&body(&fake, "2s", "", &accounts));
    fake.push_fault(Some(CLEAR_QUOTA), Fault::ExpireToken);

    let (rc, summary, out) = clear(&env, "shop", &[]).await;
    assert_eq!((rc, outcome(&summary)), (0, "ok"), "{}", show(&out));
    let used: Vec<_> = fake
        .requests_to(CLEAR_QUOTA)
        .iter()
        .map(|r| r.query_param("access_token").unwrap())
        .collect();
    assert_eq!(used, [old, new]);
    assert_eq!(fake.clears_effective(APP), 1);
    assert_clean(&fake);
}
