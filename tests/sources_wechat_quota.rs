//! The `wechat_quota` source and the quota verifier against the fake WeChat
//! on 127.0.0.1: low quotas become signals naming their cgi_path, polls are
//! spread and limited, and a clear is re-read and recorded as verified.

pub mod support {
    pub mod fake_wechat;
    pub mod sources;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use quotawatch::clearer::{ClearRequest, Clearer};
use quotawatch::event::ClearTarget;
use quotawatch::sources::wechat_quota::{QuotaReadings, WeChatQuotaSource};
use quotawatch::sources::SourceSpec;
use quotawatch::store::{AttemptRecord, HistoryFilter};
use quotawatch::verify::QuotaVerifier;
use support::fake_wechat::{FakeWeChat, Fault, QUOTA_GET};
use support::sources::{Harness, BLOG, SHOP};

const SEND: &str = "/cgi-bin/message/custom/send";
const CHECK: &str = "/wxa/msg_sec_check";

async fn setup(extra_accounts_policy: &str) -> (FakeWeChat, Harness) {
    let fake = FakeWeChat::start().await;
    fake.add_account(SHOP, "shop-secret");
    fake.add_account(BLOG, "blog-secret");
    for appid in [SHOP, BLOG] {
        for path in [SEND, CHECK] {
            fake.set_quota(appid, path, 100_000, 10);
        }
    }
    let extra = format!(
        r#"
[sources.quota]
type = "wechat_quota"
accounts = ["shop", "blog"]
cgi_paths = ["{SEND}", "{CHECK}"]
remain_below = "1%"
concurrency = 2
{extra_accounts_policy}
"#
    );
    let h = Harness::new(&fake.base_url(), &extra);
    (fake, h)
}

fn source(h: &Harness, readings: &QuotaReadings) -> WeChatQuotaSource {
    let SourceSpec::WechatQuota(spec) = h.source("quota") else {
        panic!("not a wechat_quota source")
    };
    WeChatQuotaSource::new(spec, h.ctx.clone(), readings.clone())
}

#[tokio::test]
async fn a_low_api_is_signalled_with_its_cgi_path() {
    let (fake, mut h) = setup("").await;
    fake.set_quota(SHOP, SEND, 100_000, 99_500);
    source(&h, &QuotaReadings::default())
        .run_once(Duration::ZERO)
        .await;

    assert_eq!(
        fake.count_exact(QUOTA_GET),
        4,
        "every account × cgi_path is read"
    );
    let signals = h.drain();
    assert_eq!(signals.len(), 1, "{signals:?}");
    let s = &signals[0];
    assert_eq!(
        (s.account.as_str(), s.source.as_str(), s.count),
        ("shop", "quota", 1)
    );
    assert_eq!(s.cgi_path.as_deref(), Some(SEND));
    let today = Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        s.key.as_deref(),
        Some(format!("quota:shop:{SEND}:{today}").as_str())
    );
    assert!(s.reason.contains("500 of 100000"), "{}", s.reason);
    assert_eq!(h.ctx.health.snapshot().get("quota"), Some(&None));
}

/// SPEC 4a: every polled (account, API)'s latest reading is exported, so
/// quotawatch is also the exporter of WeChat quotas; the fake answers a
/// rate limit of 100 calls per 60 s.
#[tokio::test]
async fn every_reading_is_exported_as_metrics() {
    let (fake, h) = setup("").await;
    fake.set_quota(SHOP, SEND, 100_000, 99_500);
    fake.set_quota(BLOG, CHECK, 2_000, 7);
    source(&h, &QuotaReadings::default())
        .run_once(Duration::ZERO)
        .await;
    let text = h.ctx.metrics.render();
    for want in [
        format!("quotawatch_api_quota_limit{{account=\"shop\",cgi_path=\"{SEND}\"}} 100000"),
        format!("quotawatch_api_quota_used{{account=\"shop\",cgi_path=\"{SEND}\"}} 99500"),
        format!("quotawatch_api_quota_remaining{{account=\"shop\",cgi_path=\"{SEND}\"}} 500"),
        format!("quotawatch_api_quota_limit{{account=\"blog\",cgi_path=\"{CHECK}\"}} 2000"),
        format!("quotawatch_api_quota_remaining{{account=\"blog\",cgi_path=\"{CHECK}\"}} 1993"),
        format!("quotawatch_api_rate_limit_calls{{account=\"blog\",cgi_path=\"{CHECK}\"}} 100"),
        format!(
            "quotawatch_api_rate_limit_period_seconds{{account=\"shop\",cgi_path=\"{SEND}\"}} 60"
        ),
    ] {
        assert!(text.contains(&want), "{want} in:\n{text}");
    }
    // A second poll moves the gauges to the new reading.
    fake.set_quota(SHOP, SEND, 100_000, 100_000);
    source(&h, &QuotaReadings::default())
        .run_once(Duration::ZERO)
        .await;
    let text = h.ctx.metrics.render();
    let want = format!("quotawatch_api_quota_remaining{{account=\"shop\",cgi_path=\"{SEND}\"}} 0");
    assert!(text.contains(&want), "{want} in:\n{text}");
}

#[tokio::test]
async fn two_low_apis_are_one_signal_for_a_full_clear() {
    let (fake, mut h) = setup("").await;
    fake.set_quota(BLOG, SEND, 100_000, 100_000);
    fake.set_quota(BLOG, CHECK, 100_000, 99_000);
    source(&h, &QuotaReadings::default())
        .run_once(Duration::ZERO)
        .await;
    let got = h.drain();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].account, "blog");
    assert_eq!(
        got[0].cgi_path, None,
        "several low APIs ask for a full clear"
    );
    assert_eq!(got[0].count, 2);
    assert!(
        got[0].reason.contains(SEND) && got[0].reason.contains(CHECK),
        "{}",
        got[0].reason
    );
}

#[tokio::test]
async fn the_one_percent_counting_error_is_allowed_for() {
    let (fake, mut h) = setup("").await;
    // remain_below 1% of 100000 is 1000; WeChat may be 1000 off, so 1999 is low.
    fake.set_quota(SHOP, SEND, 100_000, 100_000 - 1_999);
    fake.set_quota(SHOP, CHECK, 100_000, 100_000 - 2_000);
    source(&h, &QuotaReadings::default())
        .run_once(Duration::ZERO)
        .await;
    let got: Vec<Option<String>> = h.drain().into_iter().map(|s| s.cgi_path).collect();
    assert_eq!(got, vec![Some(SEND.to_string())]);
}

#[tokio::test]
async fn failed_reads_are_a_source_error_and_the_rest_still_run() {
    let (fake, mut h) = setup("").await;
    fake.push_fault(Some(QUOTA_GET), Fault::errcode(40013));
    source(&h, &QuotaReadings::default())
        .run_once(Duration::ZERO)
        .await;
    assert_eq!(fake.count_exact(QUOTA_GET), 4, "the other reads went on");
    assert!(h.drain().is_empty());
    let err = h
        .ctx
        .health
        .snapshot()
        .get("quota")
        .cloned()
        .flatten()
        .expect("an error in health");
    assert!(err.starts_with("1 of 4 quota reads failed"), "{err}");
    assert!(h
        .ctx
        .metrics
        .render()
        .contains("quotawatch_source_healthy{source=\"quota\"} 0"));
}

#[tokio::test]
async fn polls_are_spread_over_the_interval() {
    let (fake, h) = setup("").await;
    let started = Utc::now();
    source(&h, &QuotaReadings::default())
        .run_once(Duration::from_millis(800))
        .await;
    let mut at: Vec<i64> = fake
        .requests_to(QUOTA_GET)
        .iter()
        .map(|r| (r.at - started).num_milliseconds())
        .collect();
    at.sort();
    assert_eq!(at.len(), 4);
    // Two accounts, two slots of 400 ms, each account's two APIs read
    // together at a random point in its slot.
    assert!(
        at[0] < 450,
        "the first account waited past its slot: {at:?}"
    );
    assert!(
        at[2] >= 400,
        "the second account was not spread into its slot: {at:?}"
    );
    assert!(at[3] < 1_500, "polls overran the interval: {at:?}");
}

#[tokio::test]
async fn at_most_concurrency_reads_are_in_flight() {
    let (fake, h) = setup("").await;
    for _ in 0..4 {
        fake.push_fault(Some(QUOTA_GET), Fault::Delay(Duration::from_millis(300)));
    }
    let t = Instant::now();
    source(&h, &QuotaReadings::default())
        .run_once(Duration::ZERO)
        .await;
    let took = t.elapsed();
    // concurrency = 2: two waves of 300 ms, not one.
    assert!(took >= Duration::from_millis(590), "{took:?}");
    assert!(took < Duration::from_millis(1_500), "{took:?}");
}

async fn attempts(h: &Harness, appid: &str) -> Vec<AttemptRecord> {
    let filter = HistoryFilter {
        appid: Some(appid.to_string()),
        ..HistoryFilter::default()
    };
    h.ctx.store.history(&filter).unwrap()
}

/// Waits until the latest attempt of `appid` has a verification.
async fn verified(h: &Harness, appid: &str) -> Option<bool> {
    for _ in 0..100 {
        if let Some(v) = attempts(h, appid).await.first().and_then(|a| a.verified) {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn clearer(h: &Harness, verifier: QuotaVerifier) -> Clearer {
    Clearer {
        store: h.ctx.store.clone(),
        wechat: h.ctx.wechat.clone(),
        metrics: h.ctx.metrics.clone(),
        events: Arc::new(verifier),
        timezone: h.config.daemon.timezone,
        outcome_retry: quotawatch::clearer::OUTCOME_RETRY,
        health: Default::default(),
        clock: Default::default(),
    }
}

fn request(cgi_path: &str) -> ClearRequest {
    ClearRequest {
        source: "quota".into(),
        trigger: "quota low".into(),
        evidence: 1,
        cgi_path: Some(cgi_path.into()),
        manual: false,
        // Past cooldown and reset_guard, so the test passes at any hour.
        force: true,
        dry_run: false,
        keys: Vec::new(),
        pacing: None,
    }
}

#[tokio::test]
async fn a_full_clear_is_verified_when_used_dropped() {
    let (fake, mut h) = setup("").await;
    fake.set_quota(SHOP, SEND, 100_000, 100_000);
    let readings = QuotaReadings::default();
    source(&h, &readings).run_once(Duration::ZERO).await;
    assert_eq!(h.drain().len(), 1);

    let verifier = QuotaVerifier::new(h.config.clone(), h.ctx.store.clone(), h.ctx.wechat.clone())
        .with_readings(readings)
        .with_delay(Duration::ZERO);
    let shop = h.config.account("shop").unwrap().clone();
    let report = clearer(&h, verifier)
        .handle(&shop, request(SEND))
        .await
        .unwrap();
    assert_eq!(report.target, ClearTarget::Full);
    assert_eq!(fake.clears_effective(SHOP), 1);
    assert_eq!(verified(&h, SHOP).await, Some(true));
}

#[tokio::test]
async fn a_clear_whose_used_did_not_drop_is_recorded_unverified() {
    let (fake, mut h) = setup("").await;
    fake.set_quota(SHOP, SEND, 100_000, 100_000);
    let readings = QuotaReadings::default();
    source(&h, &readings).run_once(Duration::ZERO).await;
    h.drain();

    let verifier = QuotaVerifier::new(h.config.clone(), h.ctx.store.clone(), h.ctx.wechat.clone())
        .with_readings(readings)
        .with_delay(Duration::from_millis(300));
    let shop = h.config.account("shop").unwrap().clone();
    clearer(&h, verifier)
        .handle(&shop, request(SEND))
        .await
        .unwrap();
    // WeChat said ok, but the counter is full again by the time it is re-read.
    fake.set_quota(SHOP, SEND, 100_000, 100_000);
    assert_eq!(verified(&h, SHOP).await, Some(false));
}

#[tokio::test]
async fn a_single_api_clear_is_verified_on_its_api() {
    let (fake, mut h) = setup("[accounts.shop.policy]\nprefer = \"api\"\n").await;
    fake.set_quota(SHOP, SEND, 100_000, 99_900);
    let readings = QuotaReadings::default();
    source(&h, &readings).run_once(Duration::ZERO).await;
    h.drain();

    let verifier = QuotaVerifier::new(h.config.clone(), h.ctx.store.clone(), h.ctx.wechat.clone())
        .with_readings(readings)
        .with_delay(Duration::ZERO);
    let shop = h.config.account("shop").unwrap().clone();
    let report = clearer(&h, verifier)
        .handle(&shop, request(SEND))
        .await
        .unwrap();
    assert_eq!(
        report.target,
        ClearTarget::Api {
            cgi_path: SEND.into()
        }
    );
    assert_eq!(fake.api_clears_effective(SHOP), 1);
    assert_eq!(verified(&h, SHOP).await, Some(true));
}

#[tokio::test]
async fn accounts_no_source_watches_are_not_verified() {
    let (fake, h) = setup("").await;
    fake.add_account("wx00000000000000aa", "other-secret");
    let extra = "[accounts.other]\nappid = \"wx00000000000000aa\"\nkind = \"mini_program\"\nsecret = \"other-secret\"\n";
    let other_config = Harness::new(&fake.base_url(), extra);
    let verifier = QuotaVerifier::new(
        other_config.config.clone(),
        h.ctx.store.clone(),
        h.ctx.wechat.clone(),
    )
    .with_delay(Duration::ZERO);
    let other = other_config.config.account("other").unwrap().clone();
    clearer(&h, verifier)
        .handle(&other, request(SEND))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.count_exact(QUOTA_GET),
        0,
        "no quota read for an unwatched account"
    );
    assert_eq!(attempts(&h, "wx00000000000000aa").await[0].verified, None);
}

/// A source over an account set (`accounts = ["@NAME"]`) reads every member
/// with its own token, keeps `concurrency` and its spread, and follows the
/// set's members as a refresh changes them.
#[tokio::test]
async fn a_set_is_polled_member_by_member_as_it_is_now() {
    const PLATFORM: &str = "wx00000000000000c0";
    let fake = FakeWeChat::start().await;
    fake.add_account(SHOP, "shop-secret");
    fake.add_component(PLATFORM, "component-secret");
    let files = tempfile::tempdir().unwrap();
    std::fs::create_dir(files.path().join("tokens")).unwrap();
    // Not 1 or 2: wx…02 is `blog`, an account of its own.
    let members: Vec<String> = (0x100..0x10a).map(|i| format!("wx{i:016x}")).collect();
    for appid in &members {
        fake.authorize(PLATFORM, appid);
        let token = fake.issue_token(appid);
        std::fs::write(files.path().join("tokens").join(appid), token).unwrap();
    }
    for appid in members.iter().chain([&SHOP.to_string()]) {
        for path in [SEND, CHECK] {
            fake.set_quota(appid, path, 100_000, 10);
        }
    }
    let list = files.path().join("members.json");
    std::fs::write(&list, serde_json::to_string(&members).unwrap()).unwrap();
    let extra = format!(
        r#"
[accounts.platform]
appid = "{PLATFORM}"
kind = "component"
secret = "component-secret"
[account_sets.merchants]
component = "platform"
from = "file"
file = "{list}"
token_file = "{tokens}/{{appid}}"
[sources.quota]
type = "wechat_quota"
accounts = ["@merchants", "shop"]
cgi_paths = ["{SEND}", "{CHECK}"]
concurrency = 3
"#,
        list = list.display(),
        tokens = files.path().join("tokens").display(),
    );
    let h = Harness::new(&fake.base_url(), &extra);
    let started = Instant::now();
    source(&h, &QuotaReadings::default())
        .run_once(Duration::from_millis(600))
        .await;
    let reads = fake.requests_to(QUOTA_GET);
    assert_eq!(reads.len(), 2 * 11, "every member and shop, × 2 APIs");
    let tokens: std::collections::HashSet<_> = reads
        .iter()
        .filter_map(|r| r.query_param("access_token"))
        .collect();
    assert_eq!(tokens.len(), 11, "each account reads with its own token");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the reads are spread over the interval"
    );

    // A refresh that drops a member: the next run no longer reads it.
    let set = &h.config.account_sets["merchants"];
    let kept: Arc<[_]> = set.loaded.as_ref().unwrap().members.as_ref().unwrap()[1..].into();
    let (accounts, _) = quotawatch::sets::merge_with(
        &h.config.configured,
        &[("merchants".to_string(), kept)].into_iter().collect(),
    );
    h.ctx.accounts.replace(Arc::new(accounts));
    source(&h, &QuotaReadings::default())
        .run_once(Duration::ZERO)
        .await;
    let reads = fake.requests_to(QUOTA_GET);
    assert_eq!(reads.len(), 2 * 11 + 2 * 10);
    let token_of =
        |appid: &str| std::fs::read_to_string(files.path().join("tokens").join(appid)).unwrap();
    let read_with = |token: &str| {
        reads[22..]
            .iter()
            .any(|r| r.query_param("access_token").as_deref() == Some(token))
    };
    assert!(
        !read_with(&token_of(&members[0])),
        "the dropped member is not read"
    );
    assert!(read_with(&token_of(&members[1])), "the others are");
}
