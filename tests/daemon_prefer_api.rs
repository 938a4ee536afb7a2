//! `prefer = "api"` end to end: the `wechat_quota` source sees one API low and
//! the daemon spends a single-API clear; two APIs low and it spends a full
//! clear; the verifier records that `used` dropped (issue 4).

pub mod support {
    pub mod daemon;
    pub mod fake_chat;
    pub mod fake_wechat;
}

use std::time::Duration;

use serde_json::Value;
use support::daemon::*;
use support::fake_wechat::*;

const APPID: &str = "wx448f04719cd48f69";
const SECRET: &str = "prefer-api-secret";
const SEND: &str = "/cgi-bin/message/custom/send";
const CHECK: &str = "/wxa/msg_sec_check";

fn history(env: &Env) -> Vec<Value> {
    let o = env.run(&["history", "--json"]);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_low_api_gets_a_single_api_clear_two_get_a_full_clear() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    fake.set_quota(APPID, SEND, 1000, 1000);
    fake.set_quota(APPID, CHECK, 1000, 10);
    let env = Env::new(&format!(
        "[wechat]\napi_base = \"{}\"\n[policy]\nreset_guard = \"0s\"\nprefer = \"api\"\n\
         [accounts.shop]\nappid = \"{APPID}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n\
         [sources.quota]\ntype = \"wechat_quota\"\naccounts = [\"shop\"]\ncgi_paths = [\"{SEND}\", \"{CHECK}\"]\n\
         remain_below = \"1%\"\nschedule = \"* * * * * *\"\n",
        fake.base_url()
    ));
    let d = Daemon::start(&env).await;
    eventually(Duration::from_secs(15), "a single-API clear", || {
        fake.api_clears_effective(APPID) == 1
    })
    .await;
    assert_eq!(fake.clears_effective(APPID), 0, "no full clear for one API");
    let events = fake.api_clear_events();
    assert_eq!(events[0].cgi_path.as_deref(), Some(SEND));
    eventually(Duration::from_secs(15), "the clear verified", || {
        history(&env)
            .first()
            .is_some_and(|r| r["verified"] == Value::Bool(true))
    })
    .await;
    assert_eq!(history(&env)[0]["scope"], "api");

    fake.set_quota(APPID, SEND, 1000, 1000);
    fake.set_quota(APPID, CHECK, 1000, 1000);
    eventually(Duration::from_secs(15), "a full clear", || {
        fake.clears_effective(APPID) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fake.api_clears_effective(APPID),
        1,
        "two low APIs: no more single-API clears"
    );
    assert_eq!(
        fake.clears_effective(APPID),
        1,
        "one full clear serves both, and the cooldown holds"
    );
    d.wait_log("API quota low", Duration::from_secs(1)).await;
    assert!(fake.violations().is_empty());
}

/// Issue 10, item 4: a 48006 from `openapi/quota/clear` spends only the
/// single-API budget (SPEC section 1); the full clear follows, the month is
/// not exhausted and the message does not say all 10 clears are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_api_48006_falls_back_to_a_full_clear() {
    use support::fake_chat::*;
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    fake.push_fault(Some("/cgi-bin/openapi/quota/clear"), Fault::errcode(48006));
    let chat = FakeChat::start(Flavor::Webhook).await;
    let env = Env::new(&format!(
        "[wechat]\napi_base = \"{}\"\n[policy]\nreset_guard = \"0s\"\nprefer = \"api\"\n\
         [accounts.shop]\nappid = \"{APPID}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n\
         [notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\nlanguage = \"en\"\n",
        fake.base_url(),
        chat.url()
    ));
    let d = Daemon::start(&env).await;
    let resp = reqwest::Client::new()
        .post(d.url("/api/v1/signals"))
        .json(&serde_json::json!({"account": "shop", "cgi_path": SEND}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    eventually(
        Duration::from_secs(10),
        "the full clear after 48006",
        || fake.clears_effective(APPID) == 1,
    )
    .await;
    assert_eq!(fake.count_exact("/cgi-bin/openapi/quota/clear"), 1);
    let got = chat.wait_for(2, Duration::from_secs(10)).await;
    let kinds: Vec<_> = got.iter().map(|r| r.body["kind"].clone()).collect();
    assert_eq!(kinds, ["failed", "cleared"], "{got:?}");
    let text = got[0].body.to_string();
    assert!(!text.contains("all 10 clears"), "{text}");
    let status: Value = serde_json::from_slice(&env.run(&["status", "--json"]).stdout).unwrap();
    let shop = &status.as_array().unwrap()[0];
    assert_eq!(shop["exhausted"], false, "{shop}");
    assert_eq!(shop["used"], 1, "{shop}");
    drop(d);
}
