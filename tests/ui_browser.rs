//! The status page in a real browser: Debian's Chromium, headless, loads the
//! overview and an account page from the real daemon (with the token as the
//! HTTP Basic password in the URL), the DOM it built is checked for what the
//! ledger holds, and screenshots are written to `target/ui-screenshots/`, or
//! to `docs/` for the README with `UI_SCREENSHOTS=docs` (so that a
//! run does not rewrite the committed pictures).
//!
//! The ledger holds history written through the library before the daemon
//! starts (an episode with a refusal, an ambiguous clear, a failed one whose
//! errmsg is markup, last month's clear), and the daemon adds two manual
//! clears of its own against the fake WeChat: one that takes effect, one
//! refused for the caller's IP.
//!
//! Ignored by default because it needs `chromium` installed; `.ci/run`
//! installs it and runs `cargo test --test ui_browser -- --ignored`.

pub mod support {
    pub mod daemon;
    pub mod fake_wechat;
}

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use quotawatch::event::{ClearTarget, Outcome};
use quotawatch::policy::Verdict;
use quotawatch::store::{Intent, LockoutNote, Reservation, SqliteStore, Store};
use support::daemon::*;
use support::fake_wechat::*;

const TOKEN: &str = "browser-test-token";
const SCRIPT: &str = "<script>alert(1)</script>";

fn appid(i: usize) -> String {
    format!("wx{:016x}", 0xb000 + i)
}

/// Accounts: `shop`, `blog`, `kiosk` and 24 more, `store-00` to `store-23`.
fn config(api_base: &str) -> String {
    let mut text = format!(
        "tokens = [\"{TOKEN}\"]\n[wechat]\napi_base = \"{api_base}\"\n\
         [policy]\nreset_guard = \"0s\"\ndaily_max = 5\n"
    );
    let names = ["shop", "blog", "kiosk"]
        .map(String::from)
        .into_iter()
        .chain((0..24).map(|i| format!("store-{i:02}")));
    for (i, name) in names.enumerate() {
        text.push_str(&format!(
            "[accounts.{name}]\nappid = \"{}\"\nkind = \"official_account\"\nsecret = \"secret-{i}\"\n",
            appid(i)
        ));
    }
    text
}

/// History inside this month and before now, however early in the month
/// the test runs (then it all stands at the month's first instant).
fn this_month(now: DateTime<Utc>, minutes_ago: i64) -> DateTime<Utc> {
    let month = quotawatch::calendar::month(chrono_tz::Asia::Shanghai, now);
    (now - Duration::minutes(minutes_ago)).max(month.start)
}

fn seed(env: &Env) {
    let config = quotawatch::config::load(&env.config).unwrap();
    let store = SqliteStore::open(&env.db).unwrap();
    let tz = config.daemon.timezone;
    let key = |name: &str| quotawatch::clearer::key(config.account(name).unwrap(), tz);
    let now = Utc::now();
    let intent = Intent {
        source: "alerts".into(),
        trigger: "45009".into(),
        evidence: 3,
        lockout: true,
        window: std::time::Duration::from_secs(300),
        ..Intent::default()
    };
    let clear = |name: &str, at: DateTime<Utc>, outcome: Outcome| {
        let (_, r) = store
            .reserve(&key(name), &intent, at, &mut |_| {
                Verdict::Clear(ClearTarget::Full)
            })
            .unwrap();
        let Reservation::Clear { id, .. } = r else {
            panic!("{r:?}")
        };
        store
            .finish(id, &outcome, at + Duration::seconds(1))
            .unwrap();
    };
    let grace = std::time::Duration::from_secs(300);
    let lockout = |name: &str, at: DateTime<Utc>, refused: Option<&str>| {
        let note = LockoutNote::at(at, refused, grace);
        store.note_lockout(&key(name), &note).unwrap();
    };
    let failed = Outcome::Failed {
        errcode: Some(-1),
        errmsg: SCRIPT.into(),
    };
    let ambiguous = Outcome::Ambiguous {
        detail: "timeout after sending".into(),
    };
    lockout("shop", this_month(now, 330), None);
    lockout("shop", this_month(now, 325), Some("insufficient_evidence"));
    clear("shop", this_month(now, 320), failed);
    clear("shop", this_month(now, 300), Outcome::Ok);
    clear("shop", this_month(now, 200), ambiguous);
    let last_month = quotawatch::calendar::month(tz, now).start - Duration::days(3);
    clear("shop", last_month, Outcome::Ok);
    // At `now`: open whenever the test runs, the daily reset being ahead.
    lockout("kiosk", now, Some("cooldown"));
}

/// Chromium, headless, on `url`; `--dump-dom` or `--screenshot=FILE`.
fn chromium(profile: &Path, action: &str, url: &str) -> String {
    let binary = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
    let out = Command::new("timeout")
        .arg("120")
        .arg(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(action)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("{binary}: {e} (apt-get install chromium)"));
    assert!(
        out.status.success(),
        "{binary} {action} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Where the screenshots go: `docs/` when asked, else under `target/`.
fn docs(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var("UI_SCREENSHOTS").as_deref() {
        Ok("docs") => root.join("docs"),
        _ => root.join("target").join("ui-screenshots"),
    };
    dir.join(name)
}

/// The text of the element with `id`, up to its table's or list's end.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest
        .find("</table>")
        .or(rest.find("</dl>"))
        .unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium; run by .ci/run"]
async fn chromium_shows_the_fleet_and_an_accounts_month() {
    let fake = FakeWeChat::start().await;
    for i in 0..27 {
        fake.add_account(&appid(i), &format!("secret-{i}"));
    }
    let env = Env::new(&config(&fake.base_url()));
    seed(&env);
    let d = Daemon::start(&env).await;
    let http = reqwest::Client::new();
    let clear = |name: &'static str| {
        let (http, url) = (
            http.clone(),
            d.url(&format!("/api/v1/accounts/{name}/clear")),
        );
        async move {
            // Forced: seeded history close before it must not refuse it.
            http.post(url)
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({ "force": true }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(clear("shop").await, 200);
    fake.push_fault(None, Fault::ip_not_whitelisted());
    assert_eq!(clear("blog").await, 502);

    let profile = tempfile::tempdir().unwrap();
    let with_token = |path: &str| format!("http://viewer:{TOKEN}@{}{path}", d.addr);
    let dumps = tokio::task::spawn_blocking({
        let (overview, shop) = (with_token("/ui/"), with_token("/ui/accounts/shop"));
        let profile = profile.path().to_path_buf();
        move || {
            std::fs::create_dir_all(docs("")).unwrap();
            let dom = (
                chromium(&profile, "--dump-dom", &overview),
                chromium(&profile, "--dump-dom", &shop),
            );
            for (url, file) in [(&overview, "ui-overview.png"), (&shop, "ui-account.png")] {
                let shot = docs(file);
                let _ = std::fs::remove_file(&shot);
                chromium(&profile, &format!("--screenshot={}", shot.display()), url);
                let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
                assert!(size > 10_000, "{file}: {size} bytes");
            }
            dom
        }
    })
    .await
    .unwrap();
    let (overview, shop) = dumps;

    // The fleet: the locked account first, the flags and figures the
    // ledger and the daemon's own clears made.
    let summary = section(&overview, "summary");
    assert!(summary.contains("<dd>27</dd>"), "{summary}");
    assert!(
        summary.contains("<dt>Locked now</dt><dd>1</dd>"),
        "{summary}"
    );
    // shop's ok, ambiguous and today's clear count; the failed ones do not.
    assert!(summary.contains("<dd>3 of 216</dd>"), "{summary}");
    let accounts = section(&overview, "accounts");
    let first = accounts.find("/ui/accounts/kiosk").unwrap();
    assert!(
        first < accounts.find("/ui/accounts/blog").unwrap(),
        "locked first"
    );
    assert!(accounts.contains("<tr class=\"locked\">"), "{accounts}");
    assert!(
        accounts.contains("class=\"flag disabled\""),
        "blog refused for its IP"
    );
    assert_eq!(accounts.matches("href=\"/ui/accounts/").count(), 27);
    assert!(section(&overview, "health").contains("SQLite</td><td class=\"ok\">ok"));

    // shop's month: clears by outcome in the timeline, the refusal, the
    // markup in errmsg as text (no element made of it), last month's clear.
    let timeline = section(&shop, "timeline");
    assert_eq!(
        timeline.matches("class=\"clear ok\"").count(),
        2,
        "{timeline}"
    );
    assert_eq!(timeline.matches("class=\"clear failed\"").count(), 1);
    assert_eq!(timeline.matches("class=\"clear ambiguous\"").count(), 1);
    assert!(timeline.contains("class=\"refusal\""), "{timeline}");
    assert!(timeline.contains("<rect class=\"locked\""), "{timeline}");
    assert!(!shop.contains("<script"), "{shop}");
    assert!(
        section(&shop, "attempts").contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{shop}"
    );
    assert!(shop.contains("insufficient_evidence ×1"), "{shop}");
    let months = section(&shop, "months");
    let row = months.find("<tr><td>").unwrap();
    assert!(
        months[row..].starts_with("<tr><td>") && months[row..].contains("<td class=\"n\">1</td>"),
        "{months}"
    );
    drop(d);
}
