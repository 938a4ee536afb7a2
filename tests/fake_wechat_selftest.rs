//! Tests of the fake WeChat server itself, over real HTTP, so the integration tests
//! that rely on it rest on rules that are known to hold.

pub mod support {
    pub mod fake_wechat;
}

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use support::fake_wechat::*;

const APP: &str = "wx448f04719cd48f69";
const SECRET: &str = "app-secret-1";
const OTHER: &str = "wx0000000000000002";
const PLATFORM: &str = "wxc0c0c0c0c0c0c0c0";
const PLATFORM_SECRET: &str = "platform-secret";
const MANAGED: &str = "wxa1a1a1a1a1a1a1a1";
const SEND: &str = "/cgi-bin/message/custom/send";

fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

async fn send(fake: &FakeWeChat, path: &str, body: Value) -> reqwest::Result<reqwest::Response> {
    let client = client_with_timeout(Duration::from_secs(10));
    let url = format!("{}{}", fake.base_url(), path);
    client.post(url).json(&body).send().await
}

/// POST JSON and parse the answer as JSON.
async fn post(fake: &FakeWeChat, path: &str, body: Value) -> Value {
    let response = send(fake, path, body).await.expect("request");
    response.json().await.expect("JSON answer")
}

fn errcode(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap_or(0)
}

/// A fake with one account, one other account and a platform managing MANAGED.
async fn fake() -> FakeWeChat {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    fake.add_account(OTHER, "other-secret");
    fake.add_component(PLATFORM, PLATFORM_SECRET);
    fake.authorize(PLATFORM, MANAGED);
    fake
}

fn stable_body(appid: &str, secret: &str, force: bool) -> Value {
    json!({"grant_type": "client_credential", "appid": appid, "secret": secret,
           "force_refresh": force})
}

async fn stable_token(fake: &FakeWeChat, force: bool) -> String {
    let answer = post(fake, STABLE_TOKEN, stable_body(APP, SECRET, force)).await;
    assert_eq!(answer["expires_in"], 7200, "{answer}");
    answer["access_token"].as_str().expect("token").to_string()
}

async fn clear_with_token(fake: &FakeWeChat, token: &str, appid: &str) -> Value {
    let path = format!("{CLEAR_QUOTA}?access_token={token}");
    post(fake, &path, json!({"appid": appid})).await
}

async fn clear_v2(fake: &FakeWeChat, appid: &str, secret: &str) -> Value {
    let path = format!("{CLEAR_QUOTA_V2}?appid={appid}&appsecret={secret}");
    post(fake, &path, json!({"appid": appid, "appsecret": secret})).await
}

#[tokio::test]
async fn stable_token_is_stable_until_force_refresh() {
    let fake = fake().await;
    let first = stable_token(&fake, false).await;
    assert_eq!(stable_token(&fake, false).await, first);
    assert_eq!(fake.force_refreshes(APP), 0);

    let refreshed = stable_token(&fake, true).await;
    assert_ne!(refreshed, first);
    assert_eq!(fake.force_refreshes(APP), 1);
    assert!(!fake.token_is_valid(&first));
    assert_eq!(errcode(&clear_with_token(&fake, &first, APP).await), 40001);
    assert_eq!(errcode(&clear_with_token(&fake, &refreshed, APP).await), 0);
}

#[tokio::test]
async fn stable_token_rejects_bad_credentials() {
    let fake = fake().await;
    let wrong = post(&fake, STABLE_TOKEN, stable_body(APP, "nope", false)).await;
    assert_eq!(
        wrong,
        json!({"errcode": 40125, "errmsg": "invalid appsecret"})
    );
    let unknown = post(&fake, STABLE_TOKEN, stable_body("wxunknown", "x", false)).await;
    assert_eq!(errcode(&unknown), 40013);
    let platform = stable_body(PLATFORM, PLATFORM_SECRET, false);
    assert_eq!(errcode(&post(&fake, STABLE_TOKEN, platform).await), 40013);
    let no_secret = json!({"grant_type": "client_credential", "appid": APP});
    assert_eq!(errcode(&post(&fake, STABLE_TOKEN, no_secret).await), 41004);
}

#[tokio::test]
async fn force_refresh_is_limited_per_day() {
    let fake = fake().await;
    for _ in 0..DAILY_FORCE_REFRESHES {
        stable_token(&fake, true).await;
    }
    let refused = post(&fake, STABLE_TOKEN, stable_body(APP, SECRET, true)).await;
    assert_eq!(errcode(&refused), 45009);
    assert_eq!(fake.force_refreshes(APP), DAILY_FORCE_REFRESHES as u32 + 1);
    // The next Beijing day has a fresh allowance.
    fake.set_now(Some(Utc::now() + chrono::Duration::days(1)));
    stable_token(&fake, true).await;
}

#[tokio::test]
async fn legacy_token_endpoint_is_a_violation() {
    let fake = fake().await;
    assert!(fake.violations().is_empty());
    let url = format!(
        "{}{LEGACY_TOKEN}?grant_type=client_credential&appid={APP}&secret={SECRET}",
        fake.base_url()
    );
    let response = reqwest::get(url).await.unwrap();
    assert!(!response.status().is_success());
    let body: Value = response.json().await.unwrap();
    assert_ne!(errcode(&body), 0);
    assert!(body.get("access_token").is_none());
    let violations = fake.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains(LEGACY_TOKEN));
}

#[tokio::test]
async fn unknown_endpoints_and_wrong_methods_are_violations() {
    let fake = fake().await;
    post(&fake, "/cgi-bin/something/else", json!({})).await;
    let url = format!(
        "{}{CLEAR_QUOTA_V2}?appid={APP}&appsecret={SECRET}",
        fake.base_url()
    );
    reqwest::get(url).await.unwrap();
    assert_eq!(fake.violations().len(), 2, "{:?}", fake.violations());
    assert_eq!(fake.clears_effective(APP), 0);
}

#[tokio::test]
async fn clear_quota_checks_token_and_appid() {
    let fake = fake().await;
    fake.set_quota(APP, SEND, 100, 100);
    let token = stable_token(&fake, false).await;

    assert_eq!(errcode(&clear_with_token(&fake, "bogus", APP).await), 40001);
    let other = fake.issue_token(OTHER);
    assert_eq!(errcode(&clear_with_token(&fake, &other, APP).await), 40013);
    let path = format!("{CLEAR_QUOTA}?access_token={token}");
    assert_eq!(errcode(&post(&fake, &path, json!({})).await), 41002);
    assert_eq!(fake.clears_effective(APP), 0);
    assert_eq!(fake.quota_used(APP, SEND), Some(100));

    let ok = clear_with_token(&fake, &token, APP).await;
    assert_eq!(ok, json!({"errcode": 0, "errmsg": "ok"}));
    assert_eq!(fake.clears_effective(APP), 1);
    assert_eq!(fake.quota_used(APP, SEND), Some(0));
}

#[tokio::test]
async fn clear_quota_with_platform_tokens() {
    let fake = fake().await;
    let authorizer = fake.issue_token(MANAGED);
    let component = fake.issue_token(PLATFORM);
    assert!(authorizer.starts_with("AUTHORIZER_"));
    assert!(component.starts_with("COMPONENT_"));

    // Strict: the platform must act for an account with its authorizer token.
    let wrong = clear_with_token(&fake, &component, MANAGED).await;
    assert_eq!(errcode(&wrong), 40013);
    assert_eq!(
        errcode(&clear_with_token(&fake, &authorizer, MANAGED).await),
        0
    );
    assert_eq!(
        errcode(&clear_with_token(&fake, &component, PLATFORM).await),
        0
    );
    assert_eq!(fake.clears_effective(MANAGED), 1);
    assert_eq!(fake.clears_effective(PLATFORM), 1);
}

#[tokio::test]
async fn clear_quota_v2_takes_query_body_or_both() {
    let fake = fake().await;
    let query_only = format!("{CLEAR_QUOTA_V2}?appid={APP}&appsecret={SECRET}");
    assert_eq!(errcode(&post(&fake, &query_only, json!({})).await), 0);
    let body_only = json!({"appid": APP, "appsecret": SECRET});
    assert_eq!(errcode(&post(&fake, CLEAR_QUOTA_V2, body_only).await), 0);
    assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 0);
    assert_eq!(fake.clears_effective(APP), 3);

    let both = V2Params {
        appid_in_query: true,
        appid_in_body: true,
        secret_in_query: true,
        secret_in_body: true,
    };
    let seen = fake.v2_params();
    assert_eq!(
        seen[0],
        V2Params {
            appid_in_body: false,
            secret_in_body: false,
            ..both
        }
    );
    assert_eq!(
        seen[1],
        V2Params {
            appid_in_query: false,
            secret_in_query: false,
            ..both
        }
    );
    assert_eq!(seen[2], both);
}

#[tokio::test]
async fn clear_quota_v2_errors() {
    let fake = fake().await;
    assert_eq!(errcode(&clear_v2(&fake, APP, "wrong").await), 40125);
    assert_eq!(errcode(&clear_v2(&fake, "wxunknown", SECRET).await), 40013);
    let no_appid = json!({"appsecret": SECRET});
    assert_eq!(errcode(&post(&fake, CLEAR_QUOTA_V2, no_appid).await), 41002);
    let no_secret = json!({"appid": APP});
    assert_eq!(
        errcode(&post(&fake, CLEAR_QUOTA_V2, no_secret).await),
        41004
    );
    assert_eq!(fake.clears_effective(APP), 0);
}

#[tokio::test]
async fn component_clear_v2_own_and_authorized() {
    let fake = fake().await;
    let body = |appid: Option<&str>, secret: &str| {
        let mut b = json!({"component_appid": PLATFORM, "appsecret": secret});
        if let Some(a) = appid {
            b["appid"] = json!(a);
        }
        b
    };
    let path = COMPONENT_CLEAR_QUOTA_V2;
    assert_eq!(
        errcode(&post(&fake, path, body(None, "wrong")).await),
        40125
    );
    let refused = post(&fake, path, body(Some(APP), PLATFORM_SECRET)).await;
    assert_eq!(refused["errcode"], 61003);
    assert_eq!(
        refused["errmsg"],
        "component is not authorized by this account"
    );
    assert_eq!(
        errcode(&post(&fake, path, body(None, PLATFORM_SECRET)).await),
        0
    );
    let managed = post(&fake, path, body(Some(MANAGED), PLATFORM_SECRET)).await;
    assert_eq!(errcode(&managed), 0);
    assert_eq!(fake.clears_effective(PLATFORM), 1);
    assert_eq!(fake.clears_effective(MANAGED), 1);
    assert_eq!(fake.clears_effective(APP), 0);
    let endpoints: Vec<_> = fake
        .clear_events()
        .into_iter()
        .map(|e| e.endpoint)
        .collect();
    assert_eq!(endpoints, [path, path]);
}

#[tokio::test]
async fn full_clears_share_ten_per_month() {
    let fake = fake().await;
    fake.record_console_clears(APP, 2);
    let token = fake.issue_token(APP);
    for _ in 0..4 {
        assert_eq!(errcode(&clear_with_token(&fake, &token, APP).await), 0);
        assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 0);
    }
    assert_eq!(fake.clears_effective(APP), 10);
    let refused = clear_v2(&fake, APP, SECRET).await;
    assert_eq!(
        refused,
        json!({"errcode": 48006, "errmsg": "forbid to clear quota because of reaching the limit"})
    );
    assert_eq!(errcode(&clear_with_token(&fake, &token, APP).await), 48006);
    assert_eq!(fake.clears_effective(APP), 10);
    // Another account's budget is untouched.
    assert_eq!(errcode(&clear_v2(&fake, OTHER, "other-secret").await), 0);
}

#[tokio::test]
async fn month_boundary_follows_beijing_time() {
    let fake = fake().await;
    // 2026-01-31 23:59:59 in Beijing.
    let before = Utc.with_ymd_and_hms(2026, 1, 31, 15, 59, 59).unwrap();
    fake.set_now(Some(before));
    for _ in 0..10 {
        assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 0);
    }
    assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 48006);
    // 2026-02-01 00:00:00 in Beijing, still January in UTC.
    fake.set_now(Some(before + chrono::Duration::seconds(1)));
    assert_eq!(fake.clears_effective(APP), 0);
    assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 0);
    assert_eq!(fake.clears_effective(APP), 1);
}

#[tokio::test]
async fn quota_get_and_single_api_clear() {
    let fake = fake().await;
    fake.set_quota(APP, SEND, 1000, 990);
    let token = fake.issue_token(APP);
    let get = format!("{QUOTA_GET}?access_token={token}");
    let answer = post(&fake, &get, json!({"cgi_path": SEND})).await;
    let limit = json!({"call_count": 100, "refresh_second": 60});
    let expected = json!({"errcode": 0, "errmsg": "ok",
        "quota": {"daily_limit": 1000, "used": 990, "remain": 10},
        "rate_limit": limit, "component_rate_limit": limit});
    assert_eq!(answer, expected);
    let unknown = post(&fake, &get, json!({"cgi_path": "/cgi-bin/nope"})).await;
    assert_eq!(
        unknown,
        json!({"errcode": 76021, "errmsg": "cgi_path not found"})
    );

    let clear = format!("{QUOTA_CLEAR}?access_token={token}");
    assert_eq!(
        errcode(&post(&fake, &clear, json!({"cgi_path": SEND})).await),
        0
    );
    assert_eq!(fake.quota_used(APP, SEND), Some(0));
    assert_eq!(fake.api_clears_effective(APP), 1);
    assert_eq!(fake.clears_effective(APP), 0, "separate budget");
    let answer = post(&fake, &get, json!({"cgi_path": SEND})).await;
    assert_eq!(answer["quota"]["remain"], 1000);
}

#[tokio::test]
async fn single_api_clears_are_fifty_per_month() {
    let fake = fake().await;
    fake.set_quota(APP, SEND, 10, 10);
    let token = fake.issue_token(APP);
    let clear = format!("{QUOTA_CLEAR}?access_token={token}");
    for _ in 0..MONTHLY_API_CLEARS {
        assert_eq!(
            errcode(&post(&fake, &clear, json!({"cgi_path": SEND})).await),
            0
        );
    }
    fake.set_quota(APP, SEND, 10, 10);
    let refused = post(&fake, &clear, json!({"cgi_path": SEND})).await;
    assert_eq!(errcode(&refused), 48006);
    assert_eq!(fake.api_clears_effective(APP), 50);
    assert_eq!(fake.quota_used(APP, SEND), Some(10));
}

#[tokio::test]
async fn faults_are_fifo_per_path_before_any_path() {
    let fake = fake().await;
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::errcode(-1));
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Errcode(45009, "second".into()));
    fake.push_fault(None, Fault::errcode(40013));
    assert_eq!(fake.pending_faults(), 3);

    assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), -1);
    let second = clear_v2(&fake, APP, SECRET).await;
    assert_eq!(second, json!({"errcode": 45009, "errmsg": "second"}));
    // The path queue is empty, so the any-path fault applies next.
    assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 40013);
    assert_eq!(
        fake.clears_effective(APP),
        0,
        "faulted requests take no effect"
    );
    assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 0);
    assert_eq!(fake.pending_faults(), 0);
}

#[tokio::test]
async fn any_path_fault_hits_other_endpoints() {
    let fake = fake().await;
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::errcode(-1));
    fake.push_fault(None, Fault::errcode(40164));
    let answer = post(&fake, STABLE_TOKEN, stable_body(APP, SECRET, false)).await;
    assert_eq!(errcode(&answer), 40164);
    assert!(!stable_token(&fake, false).await.is_empty());
    assert_eq!(fake.pending_faults(), 1, "the v2 fault waits for its path");
}

#[tokio::test]
async fn ip_whitelist_fault_looks_like_wechat() {
    let fake = fake().await;
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::ip_not_whitelisted());
    let answer = clear_v2(&fake, APP, SECRET).await;
    assert_eq!(answer["errcode"], 40164);
    let msg = answer["errmsg"].as_str().unwrap();
    assert!(
        msg.starts_with("invalid ip 203.0.113.5 ipv6 ::ffff:203.0.113.5"),
        "{msg}"
    );
    assert!(msg.contains("not in whitelist rid: "), "{msg}");
}

#[tokio::test]
async fn status_and_garbage_faults() {
    let fake = fake().await;
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Status(503));
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Garbage);
    let body = json!({"appid": APP, "appsecret": SECRET});

    let unavailable = send(&fake, CLEAR_QUOTA_V2, body.clone()).await.unwrap();
    assert_eq!(unavailable.status(), 503);
    let garbage = send(&fake, CLEAR_QUOTA_V2, body).await.unwrap();
    assert_eq!(garbage.status(), 200);
    let text = garbage.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert_eq!(fake.clears_effective(APP), 0);
}

#[tokio::test]
async fn reset_fault_drops_the_connection_without_effect() {
    let fake = fake().await;
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Reset);
    let client = client_with_timeout(Duration::from_secs(5));
    let url = format!("{}{CLEAR_QUOTA_V2}", fake.base_url());
    let body = json!({"appid": APP, "appsecret": SECRET});

    let started = Instant::now();
    let error = client.post(&url).json(&body).send().await.unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.status().is_none(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        fake.count_exact(CLEAR_QUOTA_V2),
        1,
        "the request did arrive"
    );
    assert_eq!(fake.clears_effective(APP), 0);

    // The same client recovers on a new connection.
    let again: Value = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&again), 0);
}

#[tokio::test]
async fn hang_fault_never_answers() {
    let fake = fake().await;
    fake.push_fault(None, Fault::Hang);
    let client = client_with_timeout(Duration::from_millis(300));
    let url = format!("{}{CLEAR_QUOTA_V2}", fake.base_url());
    let error = client.post(&url).json(&json!({})).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(fake.count(CLEAR_QUOTA_V2), 1);
}

#[tokio::test]
async fn delay_fault_answers_late() {
    let fake = fake().await;
    fake.push_fault(
        Some(CLEAR_QUOTA_V2),
        Fault::Delay(Duration::from_millis(400)),
    );
    let started = Instant::now();
    assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 0);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(fake.clears_effective(APP), 1);
}

#[tokio::test]
async fn delay_after_effect_clears_before_the_client_times_out() {
    let fake = fake().await;
    let delay = Fault::DelayAfterEffect(Duration::from_secs(3));
    fake.push_fault(Some(CLEAR_QUOTA_V2), delay);
    let client = client_with_timeout(Duration::from_millis(300));
    let url = format!("{}{CLEAR_QUOTA_V2}", fake.base_url());
    let body = json!({"appid": APP, "appsecret": SECRET});
    let error = client.post(&url).json(&body).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(fake.clears_effective(APP), 1, "ambiguous: it took effect");
}

#[tokio::test]
async fn default_delay_after_effect_slows_every_clear() {
    let fake = fake().await;
    fake.set_default_delay_after_effect(Some(Duration::from_millis(600)));
    let slow = fake.clone();
    let started = Instant::now();
    let call = tokio::spawn(async move { clear_v2(&slow, APP, SECRET).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!call.is_finished());
    assert_eq!(fake.clears_effective(APP), 1, "applied before the answer");
    assert_eq!(errcode(&call.await.unwrap()), 0);
    assert!(started.elapsed() >= Duration::from_millis(600));

    fake.set_default_delay_after_effect(None);
    let started = Instant::now();
    assert_eq!(errcode(&clear_v2(&fake, APP, SECRET).await), 0);
    assert!(started.elapsed() < Duration::from_millis(600));
}

#[tokio::test]
async fn expire_token_fault_expires_the_presented_token() {
    let fake = fake().await;
    let token = stable_token(&fake, false).await;
    fake.push_fault(Some(CLEAR_QUOTA), Fault::ExpireToken);
    let expired = clear_with_token(&fake, &token, APP).await;
    assert_eq!(
        expired,
        json!({"errcode": 42001, "errmsg": "access_token expired"})
    );
    // No fault left: the token itself is now expired.
    assert_eq!(errcode(&clear_with_token(&fake, &token, APP).await), 42001);
    assert_eq!(fake.clears_effective(APP), 0);

    // stable_token hands out a new token once the old one expired.
    let fresh = stable_token(&fake, false).await;
    assert_ne!(fresh, token);
    assert_eq!(errcode(&clear_with_token(&fake, &fresh, APP).await), 0);
}

#[tokio::test]
async fn request_log_records_every_request() {
    let fake = fake().await;
    fake.push_fault(None, Fault::Status(500));
    let path = format!("{CLEAR_QUOTA_V2}?appid={APP}");
    let failed = send(&fake, &path, json!({"appsecret": SECRET})).await;
    assert_eq!(failed.unwrap().status(), 500);
    let client = client_with_timeout(Duration::from_secs(5));
    let url = format!("{}{CLEAR_QUOTA}?access_token=abc", fake.base_url());
    client.post(url).body("not json").send().await.unwrap();

    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, CLEAR_QUOTA_V2);
    assert_eq!(log[0].query_param("appid").as_deref(), Some(APP));
    assert_eq!(log[0].body_str("appsecret").as_deref(), Some(SECRET));
    assert!(log[0].at <= log[1].at);
    assert_eq!(log[1].query.as_deref(), Some("access_token=abc"));
    assert_eq!(log[1].body, None);
    assert_eq!(log[1].raw_body, "not json");

    assert_eq!(fake.count(CLEAR_QUOTA), 2, "prefix matches v2 too");
    assert_eq!(fake.count_exact(CLEAR_QUOTA), 1);
    assert_eq!(fake.requests_to(CLEAR_QUOTA_V2).len(), 1);
    assert_eq!(fake.count(STABLE_TOKEN), 0);
}
