//! Many `quotawatch clear` processes on one ledger at once: the ledger's lock,
//! not luck, decides who clears.

pub mod support {
    pub mod cli;
    pub mod daemon;
    pub mod fake_wechat;
}

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::cli::show;
use support::{daemon::*, fake_wechat::*};

const APP: &str = "wx448f04719cd48f69";
const SECRET: &str = "shop-appsecret-5f3a9c";
const PROCESSES: usize = 20;

fn config(fake: &FakeWeChat, policy: &str) -> String {
    format!(
        "[wechat]\napi_base = \"{}\"\ntimeout = \"5s\"\n\n\
         [policy]\nreset_guard = \"0s\"\n{policy}\n\n\
         [accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n",
        fake.base_url()
    )
}

/// Starts every process before waiting for any, so they race for the ledger.
async fn clear_all_at_once(env: &Env, args: &[&str]) -> Vec<Output> {
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let mut cmd = env.command(args);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let wait = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    });
    tokio::time::timeout(Duration::from_secs(40), wait)
        .await
        .expect("every clear finished")
        .unwrap()
}

fn summary(o: &Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", show(o)))
}

async fn history(env: &Env) -> Vec<Value> {
    let o = env.run_async(&["history", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    serde_json::from_str::<Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn status(env: &Env) -> Value {
    let o = env.run_async(&["status", "shop", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    serde_json::from_str::<Value>(&stdout(&o)).unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_clears_with_a_cooldown_give_exactly_one() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    // A slow answer keeps the winner in flight while the others decide.
    fake.set_default_delay_after_effect(Some(Duration::from_millis(300)));
    let env = Env::new(&config(&fake, "cooldown = \"1h\"\ndaily_max = 10"));

    let outputs = clear_all_at_once(&env, &["clear", "shop", "--json"]).await;
    let codes: Vec<_> = outputs.iter().map(|o| o.status.code()).collect();
    let winners = codes.iter().filter(|c| **c == Some(0)).count();
    let refused = codes.iter().filter(|c| **c == Some(3)).count();
    let details: Vec<_> = outputs
        .iter()
        .filter(|o| !matches!(o.status.code(), Some(0 | 3)))
        .map(show)
        .collect();
    assert_eq!(
        (winners, refused),
        (1, PROCESSES - 1),
        "exit codes {codes:?}\n{details:#?}"
    );
    for o in &outputs {
        let s = summary(o);
        match o.status.code() {
            Some(0) => assert_eq!(s["outcome"]["outcome"], "ok", "{s}"),
            _ => {
                let reason = s["reason"].as_str().unwrap_or_default();
                assert!(
                    ["cooldown", "duplicate"].contains(&reason),
                    "refused for {reason:?}: {s}"
                );
            }
        }
        assert!(!stdout(o).contains(SECRET) && !stderr(o).contains(SECRET));
    }

    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 1, "{:?}", fake.requests());
    assert_eq!(fake.clears_effective(APP), 1);
    let h = history(&env).await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["outcome"], "ok");
    let st = status(&env).await;
    assert_eq!(
        (st["used"].as_u64(), st["in_flight"].as_bool()),
        (Some(1), Some(false)),
        "{st}"
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// `--force` lifts the cooldown, never the cap: racing processes spend at most
/// `monthly_cap` clears, and the ledger agrees with WeChat on how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_forced_clears_never_pass_the_cap() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&config(
        &fake,
        "monthly_cap = 2\ncooldown = \"1h\"\ndaily_max = 10",
    ));

    let outputs = clear_all_at_once(&env, &["clear", "shop", "--json", "--force"]).await;
    let codes: Vec<_> = outputs.iter().map(|o| o.status.code()).collect();
    let winners = codes.iter().filter(|c| **c == Some(0)).count();
    let refused = codes.iter().filter(|c| **c == Some(3)).count();
    assert_eq!(winners + refused, PROCESSES, "exit codes {codes:?}");
    assert!(
        (1..=2).contains(&winners),
        "{winners} clears with monthly_cap = 2: {codes:?}"
    );

    let effective = fake.clears_effective(APP) as usize;
    assert_eq!(effective, winners);
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), winners);
    let h = history(&env).await;
    assert_eq!(h.len(), winners, "{h:?}");
    assert!(
        h.iter()
            .all(|r| r["outcome"] == "ok" && r["forced"] == true),
        "{h:?}"
    );

    // Once the cap is reached, later forced runs are refused for it.
    let o = env.run_async(&["clear", "shop", "--json", "--force"]).await;
    if winners == 2 {
        assert_eq!(o.status.code(), Some(3), "{}", show(&o));
        assert_eq!(summary(&o)["reason"], "monthly_cap");
    }
    assert!(fake.clears_effective(APP) <= 2);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// A `clear` killed (SIGKILL) while its request is out leaves an intent row:
/// it counts against the cap, and the next run records it as ambiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_clear_still_counts_against_the_cap() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, SECRET);
    let env = Env::new(&config(
        &fake,
        "monthly_cap = 1\ncooldown = \"0s\"\ndaily_max = 10",
    ));
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Hang);

    let mut child = env
        .command(&["clear", "shop", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(10), "the clear request", || {
        fake.count_exact(CLEAR_QUOTA_V2) == 1
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    let st = status(&env).await;
    assert_eq!(
        (st["used"].as_u64(), st["left"].as_u64()),
        (Some(1), Some(0)),
        "{st}"
    );

    let o = env.run_async(&["clear", "shop", "--json"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert_eq!(summary(&o)["reason"], "monthly_cap");
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 1);
    let h = history(&env).await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        h[0]["outcome"], "ambiguous",
        "the dead run's attempt is resolved: {h:?}"
    );
    let st = status(&env).await;
    assert_eq!(st["in_flight"], false, "{st}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}
