//! The status page and the paged account API through the daemon's whole
//! router, with no socket: access, filters and paging, escaping.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{DateTime, Utc};
use tower::ServiceExt;

use crate::clearer;
use crate::event::Outcome;
use crate::http::{router, test_state, HttpState};
use crate::policy::Verdict;
use crate::store::{Intent, LockoutNote, SqliteStore, Store};

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "<img src=x onerror=alert(1)>";
const ACCOUNTS: usize = 250;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn name(i: usize) -> String {
    format!("acct{i:03}")
}

fn appid(i: usize) -> String {
    format!("wx{:016x}", 0xa000 + i)
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: HttpState,
    _rx: tokio::sync::mpsc::Receiver<crate::signal::Signal>,
}

/// 250 accounts; acct007 locked, acct003 exhausted, acct005 disabled,
/// acct009 a dry run, acct001 with a failed clear whose errmsg is markup.
fn fixture(tokens: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let mut text = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\n{}\
         [wechat]\napi_base = \"http://127.0.0.1:9\"\n",
        db.display(),
        if tokens {
            "tokens = [\"good-token\", \"other-token\"]\n"
        } else {
            ""
        }
    );
    for i in 0..ACCOUNTS {
        text.push_str(&format!(
            "[accounts.{}]\nappid = \"{}\"\nkind = \"mini_program\"\nsecret = \"s\"\n",
            name(i),
            appid(i)
        ));
    }
    text.push_str("[accounts.acct009.policy]\ndry_run = true\n");
    let path = dir.path().join("q.toml");
    std::fs::write(&path, text).unwrap();
    let config = Arc::new(crate::config::load(&path).unwrap());
    let now = at("2026-11-28T10:00:00+08:00");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let tz = config.daemon.timezone;
    let account = |i: usize| config.account(&name(i)).unwrap().clone();
    let intent = Intent {
        source: "alerts".into(),
        trigger: "45009".into(),
        evidence: 1,
        ..Intent::default()
    };
    let (_, r) = store
        .reserve(
            &clearer::key(&account(1), tz),
            &intent,
            at("2026-11-28T09:00:00+08:00"),
            &mut |_| Verdict::Clear(crate::event::ClearTarget::Full),
        )
        .unwrap();
    let crate::store::Reservation::Clear { id, .. } = r else {
        panic!("{r:?}")
    };
    let failed = Outcome::Failed {
        errcode: Some(40164),
        errmsg: SCRIPT.into(),
    };
    store.finish(id, &failed, now).unwrap();
    let grace = std::time::Duration::from_secs(300);
    let evidence = LockoutNote::at(at("2026-11-28T09:30:00+08:00"), Some("cooldown"), grace);
    store
        .note_lockout(&clearer::key(&account(7), tz), &evidence)
        .unwrap();
    store
        .mark_exhausted(&clearer::key(&account(3), tz), now)
        .unwrap();
    store
        .mark_disabled(&clearer::key(&account(5), tz), IMG, now)
        .unwrap();
    let (state, rx) = test_state(config, store, crate::clock::Clock::manual(now), 10);
    state.health.set("prom", Some(IMG.into()));
    Fixture {
        _dir: dir,
        state,
        _rx: rx,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(state: &HttpState, uri: &str, auth: Option<&str>) -> Answer {
    let mut req = Request::get(uri);
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    let resp = router(state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

const BEARER: Option<&str> = Some("Bearer good-token");

fn basic(user_password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

/// The account names in the overview's table, in order.
fn listed(body: &str) -> Vec<String> {
    let table = &body[body.find("id=\"accounts\"").expect("the accounts table")..];
    let table = &table[..table.find("</table>").unwrap()];
    let re = regex::Regex::new(r#"<a href="/ui/accounts/([^"]+)">"#).unwrap();
    re.captures_iter(table).map(|c| c[1].to_string()).collect()
}

#[tokio::test]
async fn the_page_takes_the_api_tokens_as_bearer_or_basic_password() {
    let f = fixture(true);
    let challenge = |a: &Answer| {
        a.headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string())
    };
    for uri in ["/ui/", "/ui/accounts/acct001", "/"] {
        let a = get(&f.state, uri, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            challenge(&a).as_deref(),
            Some(r#"Basic realm="quotawatch""#),
            "{uri}"
        );
        assert!(!a.body.contains("acct"), "{uri}: {}", a.body);
    }
    let refused = [
        "Bearer wrong".to_string(),
        basic("admin:wrong"),
        basic("good-token:"),
        "Basic !!!not-base64".to_string(),
        "Digest good-token".to_string(),
    ];
    for auth in &refused {
        let a = get(&f.state, "/ui/", Some(auth)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{auth}");
        assert!(challenge(&a).is_some(), "{auth}");
    }
    let accepted = [
        "Bearer good-token".to_string(),
        "bearer other-token".to_string(),
        basic("admin:good-token"),
        basic(":other-token"),
        basic("anyone:good-token"),
    ];
    for auth in &accepted {
        let a = get(&f.state, "/ui/", Some(auth)).await;
        assert_eq!(a.status, StatusCode::OK, "{auth}");
        assert!(a.body.contains("acct007"), "{auth}");
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
        assert!(a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    // The API keeps to bearer tokens.
    let a = get(&f.state, "/api/v1/accounts", Some(&basic("u:good-token"))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    let a = get(&f.state, "/", BEARER).await;
    assert!(a.status.is_redirection(), "{}", a.status);
    assert_eq!(a.headers[header::LOCATION], "/ui/");
    let a = get(&f.state, "/ui/accounts/nobody", BEARER).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_tokens_the_page_is_open() {
    let f = fixture(false);
    let a = get(&f.state, "/ui/", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(
        get(&f.state, "/ui/accounts/acct007", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_overview_lists_locked_first_a_hundred_a_page_and_filters() {
    let f = fixture(true);
    let page = |uri: &'static str| {
        let state = f.state.clone();
        async move {
            let a = get(&state, uri, BEARER).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.body);
            a.body
        }
    };
    let first = page("/ui/").await;
    let names = listed(&first);
    assert_eq!(names.len(), 100);
    assert_eq!(names[0], "acct007", "locked first");
    assert_eq!(names[1..4], ["acct000", "acct001", "acct002"]);
    assert!(first.contains("250 accounts match"), "{first}");
    assert!(first.contains("page 1 of 3"));
    assert!(
        first.contains("href=\"/ui/?state=all&amp;page=2\""),
        "{first}"
    );
    let summary = &first[first.find("id=\"summary\"").unwrap()..];
    let summary = &summary[..summary.find("</dl>").unwrap()];
    for figure in [
        "<dt>Accounts watched</dt><dd>250</dd>",
        "<dt>Locked now</dt><dd>1</dd>",
        // The failed clear uses no budget; 250 accounts of 8.
        "<dt>Clears spent this month</dt><dd>0 of 2000</dd>",
        "<dt>Episodes this month</dt><dd>1</dd>",
        "<dt>Minutes locked this month</dt><dd>30</dd>",
    ] {
        assert!(summary.contains(figure), "{figure}: {summary}");
    }

    let last = listed(&page("/ui/?page=3").await);
    assert_eq!(last.len(), 50);
    assert_eq!(last[49], "acct249");
    let all: std::collections::BTreeSet<String> = [first.as_str()]
        .iter()
        .flat_map(|b| listed(b))
        .chain(listed(&page("/ui/?page=2").await))
        .chain(last)
        .collect();
    assert_eq!(all.len(), ACCOUNTS, "every account on exactly one page");

    for (uri, want) in [
        ("/ui/?state=locked", vec!["acct007"]),
        ("/ui/?state=exhausted", vec!["acct003"]),
        ("/ui/?state=disabled", vec!["acct005"]),
        ("/ui/?state=dry_run", vec!["acct009"]),
        (
            "/ui/?q=ACCT24",
            vec![
                "acct240", "acct241", "acct242", "acct243", "acct244", "acct245", "acct246",
                "acct247", "acct248", "acct249",
            ],
        ),
        ("/ui/?q=000000000000a0f9", vec!["acct249"]),
        ("/ui/?state=exhausted&q=acct00", vec!["acct003"]),
        ("/ui/?state=locked&q=acct1", vec![]),
    ] {
        assert_eq!(listed(&page(uri).await), want, "{uri}");
    }
    let a = get(&f.state, "/ui/?state=bogus", BEARER).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_api_pages_and_filters_only_when_asked() {
    let f = fixture(true);
    let json = |uri: &'static str| {
        let state = f.state.clone();
        async move {
            let a = get(&state, uri, BEARER).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.body);
            serde_json::from_str::<serde_json::Value>(&a.body).unwrap()
        }
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["account"].as_str().unwrap().to_string())
            .collect()
    };
    let all = json("/api/v1/accounts").await;
    assert_eq!(
        all.as_object().unwrap().len(),
        1,
        "as before paging: {{accounts}} only"
    );
    assert_eq!(names(&all).len(), ACCOUNTS);
    assert_eq!(names(&all)[7], "acct007", "the config's order");

    let page = json("/api/v1/accounts?limit=10&offset=245").await;
    assert_eq!(
        names(&page),
        ["acct245", "acct246", "acct247", "acct248", "acct249"]
    );
    assert_eq!(
        (page["total"].as_u64(), page["offset"].as_u64()),
        (Some(250), Some(245))
    );
    assert_eq!(page["limit"], 10);
    let locked = json("/api/v1/accounts?state=locked").await;
    assert_eq!(names(&locked), ["acct007"]);
    assert_eq!(locked["accounts"][0]["locked"], true);
    assert_eq!(locked["total"], 1);
    let q = json("/api/v1/accounts?q=acct00&state=disabled").await;
    assert_eq!(names(&q), ["acct005"]);
    let ignored = json("/api/v1/accounts?cache=123").await;
    assert_eq!(ignored, all, "other parameters change nothing");
    for bad in ["/api/v1/accounts?state=nope", "/api/v1/accounts?limit=-1"] {
        let a = get(&f.state, bad, BEARER).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(a.body.contains("\"error\""), "{bad}: {}", a.body);
    }
}

#[tokio::test]
async fn markup_from_outside_comes_out_escaped() {
    let f = fixture(true);
    let overview = get(&f.state, "/ui/", BEARER).await.body;
    assert!(!overview.contains(IMG), "{overview}");
    assert!(
        overview.contains("error: &lt;img src=x onerror=alert(1)&gt;"),
        "{overview}"
    );

    let failed = get(&f.state, "/ui/accounts/acct001", BEARER).await;
    assert_eq!(failed.status, StatusCode::OK);
    let page = failed.body;
    assert!(!page.contains("<script"), "{page}");
    // In the attempts table and in the timeline's tooltip.
    assert_eq!(
        page.matches("&lt;script&gt;alert(1)&lt;/script&gt;")
            .count(),
        2,
        "{page}"
    );
    assert!(page.contains("class=\"clear failed\""), "{page}");

    let disabled = get(&f.state, "/ui/accounts/acct005", BEARER).await.body;
    assert!(!disabled.contains(IMG), "{disabled}");
    assert!(
        disabled.contains("Disabled: &lt;img src=x onerror=alert(1)&gt;"),
        "{disabled}"
    );
    // A name in a path is looked up, never echoed raw.
    let missing = get(&f.state, "/ui/accounts/%3Cscript%3E", BEARER).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(!missing.body.contains("<script>"), "{}", missing.body);
    assert!(missing.body.contains("&lt;script&gt;"), "{}", missing.body);
}

#[tokio::test]
async fn the_account_page_draws_its_month_and_lists_refusals() {
    let f = fixture(true);
    let page = get(&f.state, "/ui/accounts/acct007", BEARER).await.body;
    assert_eq!(page.matches("<svg ").count(), 1);
    assert!(
        page.contains("<rect class=\"locked\""),
        "the open episode is shaded"
    );
    assert!(page.contains("class=\"refusal\""), "{page}");
    assert!(page.contains("refused 1× for cooldown"), "{page}");
    assert!(page.contains("<td>open</td>"), "{page}");
    for external in ["<script", "src=", "<link", "url("] {
        assert!(!page.contains(external), "{external}");
    }
    let months = &page[page.find("id=\"months\"").unwrap()..];
    assert!(months.contains("<td>2026-10</td>"), "{months}");
    assert!(months.contains("<td>2025-11</td>"), "twelve months back");
    assert!(!months.contains("<td>2025-10</td>"));
}

/// Each account set has a row in the health table; a failing list says so
/// (escaped) beside the members still watched from the last good list.
#[tokio::test]
async fn the_health_table_shows_each_account_set() {
    let f = fixture(true);
    let overview = get(&f.state, "/ui/", BEARER).await.body;
    assert!(overview.contains("none configured"), "{overview}");
    f.state.sets.failed("merchants", IMG);
    let overview = get(&f.state, "/ui/", BEARER).await.body;
    let health = &overview[overview.find("id=\"health\"").unwrap()..];
    let health = &health[..health.find("</table>").unwrap()];
    assert!(!health.contains("none configured"), "{health}");
    assert!(health.contains("<td>merchants</td>"), "{health}");
    assert!(
        health.contains(
            "error: &lt;img src=x onerror=alert(1)&gt; (watching the last good list: 0 members)"
        ),
        "{health}"
    );
    assert!(!overview.contains(IMG), "{overview}");
}
