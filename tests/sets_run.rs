//! Running account sets (SPEC 4a) against the fake WeChat: a platform's
//! 2,000 authorizers from WeChat's own list are all watched, one is cleared
//! through `component/clear_quota/v2` with its appid, one that leaves the
//! list stops being watched, and a failing list changes nothing; a file
//! set's change is seen without a SIGHUP and a truncated file changes
//! nothing. The list's `refresh_token`s appear nowhere.

pub mod support {
    pub mod daemon;
    pub mod fake_wechat;
    pub mod in_process;
}

use std::time::Duration;

use serde_json::{json, Value};
use support::daemon::{Daemon, Env};
use support::fake_wechat::*;
use support::in_process::InProcess;

const PLATFORM: &str = "wx00000000000000c0";
const SECRET: &str = "component-secret-5ec2e7";

fn appid(i: usize) -> String {
    format!("wx{i:016x}")
}

async fn text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

async fn readyz(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// What `POST /api/v1/signals` answers for an appid.
async fn signal(url: &str, appid: &str) -> Value {
    let body = json!({"appid": appid, "reason": "45009", "count": 1});
    let answer = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    answer.json().await.unwrap_or(Value::Null)
}

fn platform_config(fake: &FakeWeChat, env: &Env, set: &str) -> String {
    let token = fake.issue_token(PLATFORM);
    env.file("platform-token", &token);
    format!(
        "[wechat]\napi_base = \"{}\"\n\n[accounts.platform]\nappid = \"{PLATFORM}\"\nkind = \"component\"\n\
         secret = \"{SECRET}\"\ntoken_file = \"platform-token\"\n\n{set}",
        fake.base_url()
    )
}

#[tokio::test(start_paused = true)]
async fn two_thousand_authorizers_from_wechats_list() {
    let fake = FakeWeChat::start().await;
    fake.add_component(PLATFORM, SECRET);
    for i in 1..=2000 {
        fake.authorize(PLATFORM, &appid(i));
    }
    let env = Env::new("");
    env.write(&platform_config(
        &fake,
        &env,
        "[account_sets.merchants]\ncomponent = \"platform\"\nfrom = \"wechat\"\nrefresh = \"10m\"\n",
    ));
    let d = InProcess::start(&env).await;
    let members = |v: &Value| v["sets"]["merchants"]["members"].as_u64();
    d.until("2,000 members", || async {
        members(&readyz(&d.url("/readyz")).await) == Some(2000)
    })
    .await;
    assert_eq!(
        d.metric("quotawatch_account_set_members{set=\"merchants\"}")
            .await,
        2000
    );
    // Four pages of 500, none larger than WeChat allows.
    let pages = fake.requests_to(AUTHORIZER_LIST);
    assert_eq!(pages.len(), 4);
    assert!(pages
        .iter()
        .all(|p| p.body.as_ref().unwrap()["count"] == 500));

    // A member is cleared through the component, with its appid.
    let target = appid(1717);
    let answer = signal(&d.url("/api/v1/signals"), &target).await;
    assert_eq!(answer["queued"], 1, "{answer}");
    d.until("the member cleared", || async {
        fake.clears_effective(&target) == 1
    })
    .await;
    let clear = fake.requests_to(COMPONENT_CLEAR_QUOTA_V2).pop().unwrap();
    assert_eq!(clear.body_str("appid").as_deref(), Some(target.as_str()));
    assert_eq!(clear.body_str("component_appid").as_deref(), Some(PLATFORM));

    // One leaves the list: at the next refresh it is no longer watched.
    let gone = appid(5);
    let budget = format!("quotawatch_budget_remaining{{account=\"{gone}\"}}");
    d.until("the members' budgets", || async {
        d.metric(&budget).await == 8
    })
    .await;
    fake.deauthorize(PLATFORM, &gone);
    d.advance(Duration::from_secs(600)).await;
    d.until("1,999 members", || async {
        members(&readyz(&d.url("/readyz")).await) == Some(1999)
    })
    .await;
    let answer = signal(&d.url("/api/v1/signals"), &gone).await;
    assert_eq!(answer["queued"], 0, "{answer}");
    assert!(
        !text(&d.url("/metrics")).await.contains(&budget),
        "a member gone is no longer exported"
    );
    assert_eq!(
        signal(&d.url("/api/v1/signals"), &appid(6)).await["queued"],
        1
    );

    // A failing list changes nothing, and says so.
    fake.push_fault(Some(AUTHORIZER_LIST), Fault::Garbage);
    d.advance(Duration::from_secs(600)).await;
    d.until("the error shown", || async {
        readyz(&d.url("/readyz")).await["sets"]["merchants"]["ok"] == false
    })
    .await;
    let ready = readyz(&d.url("/readyz")).await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(members(&ready), Some(1999), "{ready}");
    assert!(ready["sets"]["merchants"]["error"]
        .as_str()
        .unwrap()
        .contains("api_get_authorizer_list"));
    assert_eq!(
        d.metric("quotawatch_account_set_refresh_errors_total{set=\"merchants\"}")
            .await,
        1
    );
    assert_eq!(
        signal(&d.url("/api/v1/signals"), &appid(7)).await["queued"],
        1
    );

    // A list that ends before its total_count changes nothing either.
    fake.set_authorizers_unlisted(3);
    fake.deauthorize(PLATFORM, &appid(8));
    d.advance(Duration::from_secs(600)).await;
    d.until("the short list refused", || async {
        d.metric("quotawatch_account_set_refresh_errors_total{set=\"merchants\"}")
            .await
            == 2
    })
    .await;
    let ready = readyz(&d.url("/readyz")).await;
    assert_eq!(members(&ready), Some(1999), "{ready}");
    let error = ready["sets"]["merchants"]["error"].as_str().unwrap();
    assert!(error.contains("ended at 1998 of 2001"), "{error}");
    assert_eq!(
        signal(&d.url("/api/v1/signals"), &appid(8)).await["queued"],
        1
    );

    // A SIGHUP keeps the members while the list is still short.
    d.reload.send(()).await.unwrap();
    d.until("the reload", || async {
        d.metric("quotawatch_account_set_refresh_errors_total{set=\"merchants\"}")
            .await
            == 3
    })
    .await;
    assert_eq!(members(&readyz(&d.url("/readyz")).await), Some(1999));
    assert_eq!(
        signal(&d.url("/api/v1/signals"), &appid(9)).await["queued"],
        1
    );

    // No refresh token anywhere a user can see or the ledger keeps.
    let metrics = text(&d.url("/metrics")).await;
    let accounts = text(&d.url("/api/v1/accounts")).await;
    d.stop().await.unwrap();
    let ledger = String::from_utf8_lossy(&std::fs::read(&env.db).unwrap()).into_owned();
    for text in [ready.to_string(), metrics, accounts, ledger] {
        assert!(!text.contains("refreshtoken@@@"), "a refresh token leaked");
    }
}

#[tokio::test]
async fn a_file_set_follows_its_file_and_ignores_a_truncated_one() {
    let fake = FakeWeChat::start().await;
    fake.add_component(PLATFORM, SECRET);
    for i in 1..=3 {
        fake.authorize(PLATFORM, &appid(i));
    }
    let env = Env::new("");
    let list = |n: usize| json!((1..=n).map(appid).collect::<Vec<_>>()).to_string();
    env.file("members.json", &list(2));
    // A WeChat set beside it, so that its refresh tokens pass through the daemon.
    env.write(&platform_config(
        &fake,
        &env,
        "[account_sets.file]\ncomponent = \"platform\"\nfrom = \"file\"\nfile = \"members.json\"\n\
         [account_sets.wechat]\ncomponent = \"platform\"\nfrom = \"wechat\"\nrefresh = \"1s\"\n",
    ));
    let d = Daemon::start(&env).await;
    let members = |v: &Value| v["sets"]["file"]["members"].as_u64();
    let wait = |want: u64| {
        let url = d.url("/readyz");
        async move {
            for _ in 0..200 {
                if members(&readyz(&url).await) == Some(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the file set never had {want} members");
        }
    };
    wait(2).await;
    // A change is seen within seconds, without SIGHUP; a bad entry is named.
    let mut three: Vec<Value> = serde_json::from_str(&list(3)).unwrap();
    three.push(json!("wx-bad"));
    env.file("members.json", &Value::from(three).to_string());
    wait(3).await;
    let skipped = readyz(&d.url("/readyz")).await["sets"]["file"]["skipped"].clone();
    assert_eq!(
        skipped,
        json!(["entry 4: `wx-bad` is not an appid (wx followed by 16 hex digits)"])
    );
    // Before any signal for it: its budget is published when it joins.
    let budget = format!("quotawatch_budget_remaining{{account=\"{}\"}} 8", appid(3));
    let mut seen = false;
    for _ in 0..100 {
        seen = text(&d.url("/metrics")).await.contains(&budget);
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "a new member's budget is published: {budget}");
    let answer = signal(&d.url("/api/v1/signals"), &appid(3)).await;
    assert_eq!(answer["queued"], 1, "{answer}");
    // A truncated file changes nothing.
    let whole = list(1);
    env.file("members.json", &whole[..whole.len() - 3]);
    d.wait_log(
        "Account set's list could not be read",
        Duration::from_secs(10),
    )
    .await;
    let ready = readyz(&d.url("/readyz")).await;
    assert_eq!(members(&ready), Some(3), "{ready}");
    assert_eq!(ready["sets"]["file"]["ok"], false, "{ready}");
    assert_eq!(
        signal(&d.url("/api/v1/signals"), &appid(3)).await["queued"],
        1
    );
    // WeChat's list was read several times; its refresh tokens are in no log line.
    assert!(fake.count_exact(AUTHORIZER_LIST) >= 2);
    assert!(
        !d.logs().contains("refreshtoken@@@"),
        "a refresh token was logged"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_the_list_fails_keeps_the_last_good_list() {
    let fake = FakeWeChat::start().await;
    fake.add_component(PLATFORM, SECRET);
    for i in 1..=600 {
        fake.authorize(PLATFORM, &appid(i));
    }
    let env = Env::new("");
    env.write(&platform_config(
        &fake,
        &env,
        "[account_sets.merchants]\ncomponent = \"platform\"\nfrom = \"wechat\"\n",
    ));
    let members = |v: &Value| v["sets"]["merchants"]["members"].as_u64();
    let d = InProcess::start(&env).await;
    d.until("600 members", || async {
        members(&readyz(&d.url("/readyz")).await) == Some(600)
    })
    .await;
    d.stop().await.unwrap();

    // WeChat's list now fails: the restarted daemon still watches all 600.
    let pages_before = fake.count_exact(AUTHORIZER_LIST);
    fake.push_fault(Some(AUTHORIZER_LIST), Fault::Garbage);
    let d = InProcess::start(&env).await;
    d.until("the failed read", || async {
        fake.count_exact(AUTHORIZER_LIST) > pages_before
            && readyz(&d.url("/readyz")).await["sets"]["merchants"]["ok"] == false
    })
    .await;
    let ready = readyz(&d.url("/readyz")).await;
    assert_eq!(members(&ready), Some(600), "{ready}");
    assert_eq!(ready["ready"], true, "{ready}");
    let answer = signal(&d.url("/api/v1/signals"), &appid(600)).await;
    assert_eq!(answer["queued"], 1, "{answer}");
    d.stop().await.unwrap();

    // The one-shot commands find the members in the ledger too.
    let status = env.run_async(&["status", &appid(42), "--json"]).await;
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let ledger = String::from_utf8_lossy(&std::fs::read(&env.db).unwrap()).into_owned();
    assert!(ledger.contains(&appid(599)), "the list is in the ledger");
    assert!(
        !ledger.contains("refreshtoken@@@"),
        "a refresh token was stored"
    );
}

/// `from = "command"`: its stdout is the list; a failing run and one that
/// outlives its 30 s keep the last good list.
#[tokio::test(start_paused = true)]
async fn a_command_set_keeps_its_list_through_a_failure_and_a_timeout() {
    let fake = FakeWeChat::start().await;
    fake.add_component(PLATFORM, SECRET);
    let env = Env::new("");
    let dir = env.dir.path().display().to_string();
    env.file("list.json", &json!([appid(1), appid(2)]).to_string());
    env.file("mode", "ok");
    let script = env.file(
        "list.sh",
        &format!(
            "#!/bin/sh\ncase $(cat {dir}/mode) in\n  ok) cat {dir}/list.json ;;\n  fail) exit 3 ;;\n  hang) touch {dir}/started; exec sleep 1000 ;;\nesac\n"
        ),
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    env.write(&platform_config(
        &fake,
        &env,
        &format!(
            "[account_sets.listed]\ncomponent = \"platform\"\nfrom = \"command\"\ncommand = [\"{}\"]\nrefresh = \"1m\"\n",
            script.display()
        ),
    ));
    let d = InProcess::start(&env).await;
    let set = |v: Value| v["sets"]["listed"].clone();
    d.until("2 members", || async {
        set(readyz(&d.url("/readyz")).await)["members"] == 2
    })
    .await;

    env.file("mode", "fail");
    d.advance(Duration::from_secs(60)).await;
    d.until("the failure", || async {
        set(readyz(&d.url("/readyz")).await)["ok"] == false
    })
    .await;
    let failed = set(readyz(&d.url("/readyz")).await);
    assert!(
        failed["error"].as_str().unwrap().contains("exited with"),
        "{failed}"
    );
    assert_eq!(failed["members"], 2);

    env.file("mode", "hang");
    d.advance(Duration::from_secs(60)).await;
    let started = env.dir.path().join("started");
    d.until("the hanging run", || async { started.exists() })
        .await;
    d.advance(Duration::from_secs(31)).await;
    d.until("the timeout", || async {
        let s = set(readyz(&d.url("/readyz")).await);
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not finish within 30s"))
    })
    .await;
    assert_eq!(set(readyz(&d.url("/readyz")).await)["members"], 2);
    assert_eq!(
        signal(&d.url("/api/v1/signals"), &appid(2)).await["queued"],
        1
    );
    d.stop().await.unwrap();
}
