//! Secrets (issue 7): an end-to-end run with a distinctive value for every
//! kind of secret, then a search of everything quotawatch wrote for them.
//!
//! The run: `check` (text and JSON), the daemon at `QUOTAWATCH_LOG=debug`
//! with signals that end in an ambiguous clear (connection reset), a clear, a
//! signed Grafana alert, a 40125 (wrong appsecret) and a token error on a
//! `token_file` account; `/api/v1/accounts`, a manual clear over the API,
//! `/metrics`, `/readyz`; rejected requests; `status`, `history`, `clear`,
//! `quota`, `enable` and `notify-test` on the command line; notifications to
//! two fake chat servers (a `webhook` notifier whose URL path holds a key and
//! which signs with a secret, and a WeCom notifier whose key is in the query).
//! Searched: the daemon's log, every command's stdout and stderr, every HTTP
//! answer (headers and body), every message the chat servers received
//! (headers and body: the URL itself must carry its key) and the ledger files.
//!
//! Also: hooks and the API reject requests without valid credentials (401).
//!
//! Constant time: the bearer check (`src/http.rs`, `authorize`) hashes the
//! presented token and every configured token with SHA-256 and compares the
//! digests with `subtle::ConstantTimeEq`, OR-ing the results without an early
//! exit, so neither the position of the first differing byte nor the length
//! of a configured token changes the work done; HMAC signatures are compared
//! with `ct_eq` after hex decoding (`src/sources/webhook.rs`). A statistical
//! timing test is left out on purpose: on a shared 2-core machine the noise
//! (scheduling, the loopback stack, allocation) is orders of magnitude above
//! a byte-compare difference, so such a test would be flaky or vacuous.

pub mod support {
    pub mod daemon;
    pub mod fake_chat;
    pub mod fake_wechat;
}

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use support::daemon::*;
use support::fake_chat::{FakeChat, Flavor};
use support::fake_wechat::*;

const SHOP: &str = "wx5ec0000000000001";
const BLOG: &str = "wx5ec0000000000002";
const TOK: &str = "wx5ec0000000000003";
const BROKEN: &str = "wx5ec0000000000004";

const SHOP_SECRET: &str = "qwSECRETshopAppSecret7f3e9a1c";
const BLOG_SECRET: &str = "qwSECRETblogFileSecretb82d44e0";
const BROKEN_SECRET: &str = "qwSECRETbrokenWrongSecret11aa";
const BROKEN_REAL_SECRET: &str = "qwSECRETbrokenRealSecret22bb";
const BEARER: &str = "qwSECRETbearerPrimary5c1d";
const BEARER_SPARE: &str = "qwSECRETbearerSpare9e0f";
const BEARER_FILE: &str = "qwSECRETbearerFromFile3a7b";
const HMAC: &str = "qwSECREThmacKey8f14e4";
const CHAT_KEY: &str = "qwSECRETchatPathKeyd41d8c";
const CHAT_SIGNING: &str = "qwSECRETchatSigning6b86b2";
const WECOM_KEY: &str = "qwSECRETwecomQueryKeyc4ca42";

/// Everything quotawatch wrote, labelled by where it came from.
#[derive(Default)]
struct Haystack(Vec<(String, String)>);

impl Haystack {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn output(&mut self, what: &str, o: &Output) {
        self.add(format!("{what} stdout"), stdout(o));
        self.add(format!("{what} stderr"), stderr(o));
    }

    async fn response(&mut self, what: &str, resp: reqwest::Response) -> (u16, String) {
        let status = resp.status().as_u16();
        let headers = format!("{:?}", resp.headers());
        let body = resp.text().await.unwrap();
        self.add(format!("{what} headers"), headers);
        self.add(format!("{what} body"), body.clone());
        (status, body)
    }

    fn assert_free_of(&self, secrets: &[&str]) {
        let mut leaks = Vec::new();
        for (what, text) in &self.0 {
            for s in secrets {
                if let Some(at) = text.find(s) {
                    let from = text[..at]
                        .char_indices()
                        .rev()
                        .nth(80)
                        .map_or(0, |(i, _)| i);
                    let to = (at + s.len() + 80).min(text.len());
                    let to = (to..=text.len())
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap();
                    leaks.push(format!("{s} in {what}: …{}…", &text[from..to]));
                }
            }
        }
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    }

    fn contains(&self, needle: &str) -> bool {
        self.0.iter().any(|(_, t)| t.contains(needle))
    }
}

fn all_secrets(token_file_token: &str) -> Vec<String> {
    [
        SHOP_SECRET,
        BLOG_SECRET,
        BROKEN_SECRET,
        BROKEN_REAL_SECRET,
        BEARER,
        BEARER_SPARE,
        BEARER_FILE,
        HMAC,
        CHAT_KEY,
        CHAT_SIGNING,
        WECOM_KEY,
        token_file_token,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn config(fake: &FakeWeChat, chat: &FakeChat) -> String {
    let chat_url = chat
        .url()
        .replace(chat.path(), &format!("/hook/{CHAT_KEY}"));
    format!(
        r#"tokens = ["{BEARER}", "{BEARER_SPARE}"]
tokens_file = "bearer-tokens"
shutdown_timeout = "5s"
[wechat]
api_base = "{api}"
timeout = "1s"
[policy]
cooldown = "0s"
reset_guard = "0s"
daily_max = 10
[accounts.shop]
appid = "{SHOP}"
kind = "mini_program"
secret = "{SHOP_SECRET}"
[accounts.blog]
appid = "{BLOG}"
kind = "official_account"
secret_file = "blog-secret"
[accounts.tok]
appid = "{TOK}"
kind = "official_account"
token_file = "tok-token"
[accounts.broken]
appid = "{BROKEN}"
kind = "mini_program"
secret = "{BROKEN_SECRET}"
[sources.alerts]
type = "alertmanager"
[sources.graf]
type = "grafana"
hmac_secret = "{HMAC}"
[notifiers.chat]
type = "webhook"
url = "{chat_url}"
secret = "{CHAT_SIGNING}"
language = "en"
[notifiers.wecom]
type = "wecom"
url_file = "wecom-url"
language = "en"
"#,
        api = fake.base_url()
    )
}

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn grafana_alert(appid: &str) -> String {
    json!({
        "receiver": "quotawatch", "status": "firing", "orgId": 1, "version": "1",
        "alerts": [{"status": "firing", "labels": {"alertname": "WeChat45009", "appid": appid},
                    "startsAt": "2026-11-28T10:00:00Z", "fingerprint": "5ec7e7"}],
        "commonLabels": {"alertname": "WeChat45009"}
    })
    .to_string()
}

fn finished(d: &Daemon) -> usize {
    d.logs().matches("Clear attempt finished").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_anything_quotawatch_writes() {
    let fake = FakeWeChat::start().await;
    for (appid, secret) in [
        (SHOP, SHOP_SECRET),
        (BLOG, BLOG_SECRET),
        (TOK, "qwSECRETtokAccountSecret"),
        (BROKEN, BROKEN_REAL_SECRET),
    ] {
        fake.add_account(appid, secret);
    }
    let token_file_token = fake.issue_token(TOK);
    let chat = FakeChat::start(Flavor::Webhook).await;
    let wecom = FakeChat::start(Flavor::WeCom).await;
    let env = Env::new(&config(&fake, &chat));
    env.file("blog-secret", &format!("{BLOG_SECRET}\n"));
    env.file("tok-token", &format!("{token_file_token}\n"));
    env.file("bearer-tokens", &format!("# ops\n{BEARER_FILE}\n"));
    env.file(
        "wecom-url",
        &wecom.url().replace("fake-wecom-key", WECOM_KEY),
    );
    let mut h = Haystack::default();

    let check = env.run_async(&["check"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    h.output("check", &check);
    h.output("check --json", &env.run_async(&["check", "--json"]).await);

    let mut d = Daemon::start_with(&env, &[("QUOTAWATCH_LOG", "debug")]).await;
    let client = reqwest::Client::new();

    // An ambiguous clear: the connection is reset after the request (whose
    // URL carries the appsecret) was sent.
    fake.push_fault(Some(CLEAR_QUOTA_V2), Fault::Reset);
    send_signal(&mut h, &d, BEARER, "shop", "k1").await;
    eventually(Duration::from_secs(10), "attempt 1", || finished(&d) == 1).await;
    // A clear that works, signalled with the token from tokens_file.
    send_signal(&mut h, &d, BEARER_FILE, "shop", "k2").await;
    eventually(Duration::from_secs(10), "attempt 2", || finished(&d) == 2).await;
    // A signed Grafana alert for the secret_file account.
    let body = grafana_alert(BLOG);
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = hmac_hex(HMAC, &[ts.as_bytes(), b":", body.as_bytes()]);
    let resp = client
        .post(d.url("/hooks/graf"))
        .header("X-Grafana-Alerting-Signature", &sig)
        .header("X-Grafana-Alerting-Timestamp", &ts)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(h.response("grafana hook", resp).await.0, 202);
    eventually(Duration::from_secs(10), "attempt 3", || finished(&d) == 3).await;
    // WeChat rejects the appsecret: a configuration error.
    send_signal(&mut h, &d, BEARER, "broken", "k3").await;
    eventually(Duration::from_secs(10), "attempt 4", || finished(&d) == 4).await;
    // A token error on the token_file account (the file is not rotated).
    fake.push_fault(Some(CLEAR_QUOTA), Fault::ExpireToken);
    send_signal(&mut h, &d, BEARER, "tok", "k4").await;
    eventually(Duration::from_secs(10), "attempt 5", || finished(&d) == 5).await;

    let resp = client
        .get(d.url("/api/v1/accounts"))
        .bearer_auth(BEARER_SPARE)
        .send()
        .await
        .unwrap();
    let (status, accounts) = h.response("/api/v1/accounts", resp).await;
    assert_eq!(status, 200);
    assert!(accounts.contains(SHOP), "{accounts}");
    let resp = client
        .post(d.url("/api/v1/accounts/shop/clear"))
        .bearer_auth(BEARER)
        .json(&json!({"reason": "manual over the API"}))
        .send()
        .await
        .unwrap();
    assert_eq!(h.response("API clear", resp).await.0, 200);
    for path in ["/metrics", "/readyz", "/healthz"] {
        let resp = client.get(d.url(path)).send().await.unwrap();
        h.response(path, resp).await;
    }
    for (what, bearer) in [("wrong token", "Bearer qwGUESS"), ("no token", "")] {
        let resp = client
            .get(d.url("/api/v1/accounts"))
            .header("authorization", bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(h.response(what, resp).await.0, 401);
    }

    // Commands while the daemon runs.
    let commands: &[&[&str]] = &[
        &["status"],
        &["status", "--json"],
        &["history"],
        &["history", "--json"],
        &["clear", "shop"],
        &["clear", "shop", "--json"],
        &["clear", "broken", "--json"],
        &["clear", "tok", "--force"],
        &["quota", "shop", "/cgi-bin/message/custom/send"],
        &["quota", "tok", "/cgi-bin/message/custom/send", "--json"],
        &["enable", "broken"],
        &["notify-test", "chat"],
        &["notify-test", "wecom"],
    ];
    for args in commands {
        let o = env.run_async(args).await;
        assert!(
            o.status.code().is_some(),
            "{args:?} was killed: {}",
            stderr(&o)
        );
        h.output(&args.join(" "), &o);
    }

    chat.wait_for(6, Duration::from_secs(10)).await;
    wecom.wait_for(6, Duration::from_secs(10)).await;
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(15)).await, Some(0));

    h.add("daemon log", d.logs());
    for (name, server) in [("webhook chat", &chat), ("wecom chat", &wecom)] {
        for (i, r) in server.received().iter().enumerate() {
            h.add(
                format!("{name} message {i} headers"),
                format!("{:?}", r.headers),
            );
            h.add(
                format!("{name} message {i} body"),
                String::from_utf8_lossy(&r.raw),
            );
        }
    }
    for file in ["ledger.db", "ledger.db-wal"] {
        if let Ok(bytes) = std::fs::read(env.dir.path().join(file)) {
            h.add(file, String::from_utf8_lossy(&bytes));
        }
    }

    // The run did what it claims: the secrets were in play, the traces exist.
    assert!(fake
        .requests_to(CLEAR_QUOTA_V2)
        .iter()
        .any(|r| r.raw_body.contains(SHOP_SECRET)));
    for needed in [
        "Clear attempt finished",
        "\"outcome\":\"ambiguous\"",
        "40125",
        "42001",
        "config_error",
        "cleared",
        "********",
    ] {
        assert!(
            h.contains(needed),
            "nothing quotawatch wrote contains {needed}"
        );
    }
    let secrets = all_secrets(&token_file_token);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    h.assert_free_of(&secrets);
}

async fn send_signal(h: &mut Haystack, d: &Daemon, bearer: &str, account: &str, key: &str) {
    let resp = reqwest::Client::new()
        .post(d.url("/api/v1/signals"))
        .bearer_auth(bearer)
        .json(&json!({"account": account, "reason": "45009", "key": key}))
        .send()
        .await
        .unwrap();
    let (status, body) = h.response(&format!("signal {account}"), resp).await;
    assert_eq!(status, 202, "{body}");
}

/// A config mistake on a line that holds a secret: the error names the key
/// and the line, never the value, on the command line and in the daemon's
/// log when a reload is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_never_echo_a_secret() {
    let base = format!(
        "tokens = [\"{BEARER}\"]\n[accounts.shop]\nappid = \"{SHOP}\"\nkind = \"mini_program\"\n"
    );
    let mistakes = [
        format!("secret = \"{SHOP_SECRET}\" # ok\nsecret_file = \"x\"\n"),
        format!("secret = [\"{SHOP_SECRET}\"]\n"),
        format!("secret = \"{SHOP_SECRET}\" trailing\n"),
        format!("secret = \"{SHOP_SECRET}\n"),
        format!("secret = '{SHOP_SECRET}' = 1\n"),
    ];
    let mut h = Haystack::default();
    for (i, mistake) in mistakes.iter().enumerate() {
        let env = Env::new(&format!("{base}{mistake}"));
        let o = env.run_async(&["check"]).await;
        assert_eq!(o.status.code(), Some(78), "mistake {i}: {}", stdout(&o));
        h.output(&format!("check with mistake {i}"), &o);
    }
    let env = Env::new(&format!("{base}secret = \"{SHOP_SECRET}\"\n"));
    let d = Daemon::start(&env).await;
    env.write(&format!("{base}secret = \"{SHOP_SECRET}\" trailing\n"));
    d.signal(libc::SIGHUP);
    d.wait_log("Reload refused", Duration::from_secs(5)).await;
    h.add("daemon log after a refused reload", d.logs());
    h.assert_free_of(&[SHOP_SECRET, BEARER]);
}

/// Every way to present no or wrong credentials is 401 with a JSON error;
/// the right credentials pass (so the 401s are not an accident of the setup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_and_api_reject_requests_without_valid_credentials() {
    let fake = FakeWeChat::start().await;
    let env = Env::new(&format!(
        "tokens = [\"{BEARER}\"]\n[wechat]\napi_base = \"{}\"\n\
         [policy]\ndry_run = true\nreset_guard = \"0s\"\n\
         [accounts.shop]\nappid = \"{SHOP}\"\nkind = \"mini_program\"\nsecret = \"{SHOP_SECRET}\"\n\
         [sources.alerts]\ntype = \"alertmanager\"\n\
         [sources.graf]\ntype = \"grafana\"\nhmac_secret = \"{HMAC}\"\n\
         [sources.gh]\ntype = \"generic\"\nhmac_secret = \"{HMAC}\"\nsignature = \"github\"\n",
        fake.base_url()
    ));
    let d = Daemon::start(&env).await;
    let client = reqwest::Client::new();
    let alert =
        json!({"version": "4", "alerts": [{"status": "firing", "labels": {"appid": SHOP}}]})
            .to_string();
    let graf = grafana_alert(SHOP);
    let generic = json!({"account": "shop"}).to_string();
    let now = chrono::Utc::now().timestamp();
    let ts = now.to_string();
    let stale = (now - 3600).to_string();
    let good_graf = hmac_hex(HMAC, &[ts.as_bytes(), b":", graf.as_bytes()]);
    let stale_graf = hmac_hex(HMAC, &[stale.as_bytes(), b":", graf.as_bytes()]);
    let wrong_key = hmac_hex("qwGUESSkey", &[ts.as_bytes(), b":", graf.as_bytes()]);
    let good_gh = format!("sha256={}", hmac_hex(HMAC, &[generic.as_bytes()]));
    let bearer = format!("Bearer {BEARER}");
    let truncated = format!("Bearer {}", &BEARER[..BEARER.len() - 1]);
    let extended = format!("Bearer {BEARER}x");
    let basic = format!("Basic {}", base64_of(&format!("user:{BEARER}")));

    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str, u16);
    let cases: Vec<Case> = vec![
        ("POST", "/hooks/alerts", vec![], &alert, 401),
        (
            "POST",
            "/hooks/alerts",
            vec![("authorization", "Bearer qwGUESS")],
            &alert,
            401,
        ),
        (
            "POST",
            "/hooks/alerts",
            vec![("authorization", &truncated)],
            &alert,
            401,
        ),
        (
            "POST",
            "/hooks/alerts",
            vec![("authorization", &extended)],
            &alert,
            401,
        ),
        (
            "POST",
            "/hooks/alerts",
            vec![("authorization", "Bearer ")],
            &alert,
            401,
        ),
        (
            "POST",
            "/hooks/alerts",
            vec![("authorization", BEARER)],
            &alert,
            401,
        ),
        (
            "POST",
            "/hooks/alerts",
            vec![("authorization", &basic)],
            &alert,
            401,
        ),
        (
            "POST",
            "/hooks/alerts",
            vec![("authorization", &bearer)],
            &alert,
            202,
        ),
        // An HMAC source takes its signature, not a bearer token.
        (
            "POST",
            "/hooks/graf",
            vec![("authorization", &bearer)],
            &graf,
            401,
        ),
        (
            "POST",
            "/hooks/graf",
            vec![
                ("x-grafana-alerting-signature", &wrong_key),
                ("x-grafana-alerting-timestamp", &ts),
            ],
            &graf,
            401,
        ),
        (
            "POST",
            "/hooks/graf",
            vec![
                ("x-grafana-alerting-signature", &stale_graf),
                ("x-grafana-alerting-timestamp", &stale),
            ],
            &graf,
            401,
        ),
        (
            "POST",
            "/hooks/graf",
            vec![
                ("x-grafana-alerting-signature", &good_graf),
                ("x-grafana-alerting-timestamp", &stale),
            ],
            &graf,
            401,
        ),
        (
            "POST",
            "/hooks/graf",
            vec![
                ("x-grafana-alerting-signature", "zz-not-hex"),
                ("x-grafana-alerting-timestamp", &ts),
            ],
            &graf,
            401,
        ),
        (
            "POST",
            "/hooks/graf",
            vec![
                ("x-grafana-alerting-signature", &good_graf),
                ("x-grafana-alerting-timestamp", &ts),
            ],
            &graf,
            202,
        ),
        (
            "POST",
            "/hooks/gh",
            vec![("x-hub-signature-256", &good_gh[7..])],
            &generic,
            401,
        ),
        (
            "POST",
            "/hooks/gh",
            vec![("x-grafana-alerting-signature", &good_gh[7..])],
            &generic,
            401,
        ),
        (
            "POST",
            "/hooks/gh",
            vec![("x-hub-signature-256", &good_gh)],
            "{\"account\":\"blog\"}",
            401,
        ),
        (
            "POST",
            "/hooks/gh",
            vec![("x-hub-signature-256", &good_gh)],
            &generic,
            202,
        ),
        ("POST", "/api/v1/signals", vec![], &generic, 401),
        (
            "POST",
            "/api/v1/signals",
            vec![("authorization", &truncated)],
            &generic,
            401,
        ),
        (
            "POST",
            "/api/v1/signals",
            vec![("authorization", &bearer)],
            &generic,
            202,
        ),
        ("GET", "/api/v1/accounts", vec![], "", 401),
        (
            "GET",
            "/api/v1/accounts",
            vec![("authorization", &extended)],
            "",
            401,
        ),
        (
            "GET",
            "/api/v1/accounts",
            vec![("authorization", &bearer)],
            "",
            200,
        ),
        ("POST", "/api/v1/accounts/shop/clear", vec![], "", 401),
        (
            "POST",
            "/api/v1/accounts/shop/clear",
            vec![("authorization", &bearer)],
            "",
            200,
        ),
    ];
    for (method, path, headers, body, want) in cases {
        let mut req = client.request(method.parse().unwrap(), d.url(path));
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body.to_string()).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, want, "{method} {path} {headers:?}: {text}");
        if want == 401 {
            let v: Value = serde_json::from_str(&text).expect("a JSON rejection");
            assert!(v["error"].is_string(), "{text}");
        }
    }
    assert_eq!(fake.clears_effective(SHOP), 0, "dry run");
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
