//! Crash safety (issue 7): the real daemon against the fake WeChat, killed with
//! SIGKILL at random moments while clears are in flight, restarted, again and
//! again; also two daemons sharing one SQLite ledger.
//!
//! The invariant, checked after every round, per account:
//! - the clears that took effect at the fake never exceed `monthly_cap`;
//! - the ledger's `ok` + `ambiguous` rows (after the restart has recovered the
//!   rows a dead process left `pending`) are at least the clears that took
//!   effect: the ledger may be pessimistic, never optimistic;
//! - the ledger itself never counts more than the cap.
//!
//! Rounds: `QW_CRASH_ROUNDS` (default 4 for one daemon, 3 for two, a few
//! seconds each). The long run is `QW_CRASH_ROUNDS=50`; `QW_CRASH_SEED=N`
//! replays a failing run (the seed is printed at the start).

pub mod support {
    pub mod daemon;
    pub mod fake_wechat;
}

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::daemon::*;
use support::fake_wechat::*;

const TOKEN: &str = "crash-proof-bearer-token";
const CAP: u32 = 5;

fn rounds(default: usize) -> usize {
    std::env::var("QW_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seeded_rng(name: &str) -> fastrand::Rng {
    let seed = std::env::var("QW_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{name}: QW_CRASH_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}

/// One fake WeChat, one config and ledger, and the accounts the rounds use.
struct Rig {
    fake: FakeWeChat,
    env: Env,
    appids: Vec<String>,
}

impl Rig {
    /// Each account is the target of four consecutive rounds (round r fires at
    /// accounts r/2 and r/2 + 1), so its budget runs out while kills go on.
    async fn new(rounds: usize) -> Rig {
        let fake = FakeWeChat::start().await;
        let count = rounds / 2 + 2;
        let base = fastrand::u64(..u64::MAX / 2);
        let appids: Vec<String> = (0..count)
            .map(|i| format!("wx{:016x}", base + i as u64))
            .collect();
        let mut accounts = String::new();
        for (i, appid) in appids.iter().enumerate() {
            let secret = format!("crash-secret-{i}");
            fake.add_account(appid, &secret);
            accounts.push_str(&format!(
                "[accounts.a{i}]\nappid = \"{appid}\"\nkind = \"mini_program\"\nsecret = \"{secret}\"\n"
            ));
        }
        let body = format!(
            "tokens = [\"{TOKEN}\"]\nshutdown_timeout = \"5s\"\n\
             [wechat]\napi_base = \"{}\"\ntimeout = \"10s\"\n\
             [policy]\nmonthly_cap = {CAP}\ncooldown = \"0s\"\ndaily_max = 10\nreset_guard = \"0s\"\n{accounts}",
            fake.base_url()
        );
        let env = Env::new(&body);
        Rig { fake, env, appids }
    }

    fn targets(&self, round: usize) -> Vec<String> {
        let first = round / 2;
        self.appids[first..first + 2].to_vec()
    }

    /// A new random delay between effect and answer for this round, plus a
    /// few per-request ones so clears within a round differ too.
    fn reseed_delays(&self, rng: &mut fastrand::Rng) {
        let ms = |rng: &mut fastrand::Rng| Duration::from_millis(rng.u64(0..=400));
        self.fake.set_default_delay_after_effect(Some(ms(rng)));
        for _ in 0..3 {
            let fault = Fault::DelayAfterEffect(ms(rng));
            self.fake.push_fault(Some(CLEAR_QUOTA_V2), fault);
        }
    }

    /// The ledger's rows per appid, by outcome.
    async fn ledger(&self) -> HashMap<String, HashMap<String, u32>> {
        let out = self.env.run_async(&["history", "--json"]).await;
        assert_eq!(out.status.code(), Some(0), "history: {}", stderr(&out));
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("history --json");
        let mut by_appid: HashMap<String, HashMap<String, u32>> = HashMap::new();
        for row in rows {
            let appid = row["appid"].as_str().unwrap().to_string();
            let outcome = row["outcome"].as_str().unwrap().to_string();
            *by_appid
                .entry(appid)
                .or_default()
                .entry(outcome)
                .or_default() += 1;
        }
        by_appid
    }

    /// The invariant. `recovered`: a daemon has started since the last kill,
    /// so no row of a dead process may still be `pending`.
    async fn check(&self, round: usize, recovered: bool) {
        // Requests the killed daemon sent may still be landing at the fake.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ledger = self.ledger().await;
        for appid in &self.appids {
            let effective = self.fake.clears_effective(appid);
            let rows = ledger.get(appid).cloned().unwrap_or_default();
            let n = |k: &str| rows.get(k).copied().unwrap_or(0);
            let (ok, ambiguous, pending) = (n("ok"), n("ambiguous"), n("pending"));
            let what = format!(
                "round {round}, {appid}: effective {effective}, ledger {rows:?}, recovered {recovered}"
            );
            assert!(effective <= CAP, "the cap was exceeded at WeChat: {what}");
            assert!(
                ok + ambiguous + pending <= CAP,
                "the ledger overspent: {what}"
            );
            if recovered {
                assert_eq!(pending, 0, "a dead process's row is still pending: {what}");
            }
            assert!(
                ok + ambiguous + pending >= effective,
                "the ledger is optimistic: {what}"
            );
            assert!(
                !recovered || ok + ambiguous >= effective,
                "the ledger is optimistic after recovery: {what}"
            );
        }
        assert!(
            self.fake.violations().is_empty(),
            "{:?}",
            self.fake.violations()
        );
    }
}

/// Posts signals with distinct keys to random targets at random intervals
/// until `stop` or until the daemon stops answering.
fn spawn_firing(
    url: String,
    targets: Vec<String>,
    tag: String,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let client = reqwest::Client::new();
        let mut sent = 0;
        while !stop.load(Ordering::SeqCst) {
            let appid = &targets[rng.usize(..targets.len())];
            let body = json!({"appid": appid, "reason": "45009", "count": 1, "key": format!("{tag}-{sent}")});
            let posted = client
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if posted.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(rng.u64(0..120))).await;
        }
        sent
    })
}

/// Fires at `daemon` and kills it with SIGKILL after `kill_after`.
async fn fire_and_kill(
    mut daemon: Daemon,
    targets: Vec<String>,
    tag: String,
    rng: &mut fastrand::Rng,
) -> u32 {
    let kill_after = Duration::from_millis(rng.u64(50..1200));
    let stop = Arc::new(AtomicBool::new(false));
    let url = daemon.url("/api/v1/signals");
    let firing = spawn_firing(url, targets, tag, rng.u64(..), stop.clone());
    tokio::time::sleep(kill_after).await;
    daemon.signal(libc::SIGKILL);
    // Reaped here, so the next daemon sees the owner as dead, not a zombie.
    assert_eq!(daemon.wait(Duration::from_secs(5)).await, None);
    stop.store(true, Ordering::SeqCst);
    firing.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_never_exceeds_the_cap() {
    let n = rounds(4);
    let mut rng = seeded_rng("one daemon");
    let rig = Rig::new(n).await;
    let mut signals = 0;
    for round in 0..n {
        rig.reseed_delays(&mut rng);
        let daemon = Daemon::start(&rig.env).await;
        // The start recovered what the previous round's kill left pending.
        rig.check(round, true).await;
        let tag = format!("r{round}");
        signals += fire_and_kill(daemon, rig.targets(round), tag, &mut rng).await;
        rig.check(round, false).await;
    }
    let last = Daemon::start(&rig.env).await;
    rig.check(n, true).await;
    drop(last);
    let spent: u32 = rig
        .appids
        .iter()
        .map(|a| rig.fake.clears_effective(a))
        .sum();
    let ambiguous: u32 = rig
        .ledger()
        .await
        .values()
        .filter_map(|r| r.get("ambiguous"))
        .sum();
    eprintln!(
        "{n} rounds, {signals} signals, {spent} clears took effect, {ambiguous} ambiguous rows"
    );
    assert!(spent > 0, "no clear ever happened: the test proved nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_ledger_never_exceed_the_cap() {
    let n = rounds(3);
    let mut rng = seeded_rng("two daemons");
    let rig = Rig::new(n).await;
    let mut signals = 0;
    for round in 0..n {
        rig.reseed_delays(&mut rng);
        let first = Daemon::start(&rig.env).await;
        let second = Daemon::start(&rig.env).await;
        rig.check(round, true).await;
        let targets = rig.targets(round);
        let (mut rng_a, mut rng_b) = (rng.fork(), rng.fork());
        let a = fire_and_kill(first, targets.clone(), format!("r{round}a"), &mut rng_a);
        let b = fire_and_kill(second, targets, format!("r{round}b"), &mut rng_b);
        let (sa, sb) = tokio::join!(a, b);
        signals += sa + sb;
        rig.check(round, false).await;
    }
    let last = Daemon::start(&rig.env).await;
    rig.check(n, true).await;
    drop(last);
    let spent: u32 = rig
        .appids
        .iter()
        .map(|a| rig.fake.clears_effective(a))
        .sum();
    let ambiguous: u32 = rig
        .ledger()
        .await
        .values()
        .filter_map(|r| r.get("ambiguous"))
        .sum();
    eprintln!(
        "{n} rounds, {signals} signals, {spent} clears took effect, {ambiguous} ambiguous rows"
    );
    assert!(spent > 0, "no clear ever happened: the test proved nothing");
}
