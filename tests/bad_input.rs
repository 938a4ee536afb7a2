//! Bad input (issue 7): property tests for everything that reads bytes from
//! outside: the webhook payload parsers, the signature checks, the config
//! loader (and the policy arithmetic on whatever it accepts), the cron
//! schedules it validates, and the `log_file` line matcher.
//!
//! Properties: no panic; every input gets `Ok` or a clean error (a short
//! message, no debug dump); inputs are bounded (at most a few KiB, or a few
//! hundred KiB for the long-line cases), so nothing here can allocate without
//! bound; and where a simpler reference exists (the line matcher against a
//! line-by-line loop, a correct signature against a tampered one) the results
//! agree.
//!
//! The default case counts keep this file at a few seconds in CI. The long
//! run: `PROPTEST_CASES=100000 cargo test --release --test bad_input`.

pub mod support {
    pub mod daemon;
    pub mod fake_wechat;
}

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use quotawatch::config::{self, Config};
use quotawatch::policy::{self, Decision, SkipReason, Snapshot};
use quotawatch::sources::log_file::LogAccount;
use quotawatch::sources::log_file::{LineCounts, LineMatcher, MAX_LINE};
use quotawatch::sources::webhook::{self, SignatureHeaders};
use quotawatch::sources::webhook::{SignatureScheme, WebhookSpec};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SHOP: &str = "wx448f04719cd48f69";
const BLOG: &str = "wx0123456789abcdef";

/// `PROPTEST_CASES` when set, else this file's CI default.
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    // A failing case is printed, minimised; no regression files in the tree.
    config.failure_persistence = None;
    config
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap()
}

/// A loaded config with two accounts and one webhook source of each format.
fn fixture() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let path = dir.path().join("quotawatch.toml");
        let text = format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\n\
             [accounts.shop]\nappid = \"{SHOP}\"\nkind = \"mini_program\"\nsecret = \"s\"\n\
             [accounts.blog]\nappid = \"{BLOG}\"\nkind = \"official_account\"\nsecret = \"t\"\n\
             [sources.alerts]\ntype = \"alertmanager\"\n\
             [sources.graf]\ntype = \"grafana\"\n\
             [sources.gen]\ntype = \"generic\"\naccount_label = \"app\"\n",
            dir.path().join("l.db").display()
        );
        std::fs::write(&path, text).unwrap();
        config::load(&path).expect("the fixture config loads")
    })
}

fn webhook_spec(name: &str) -> &'static WebhookSpec {
    match fixture().sources.get(name).and_then(|s| s.webhook()) {
        Some(spec) => spec,
        other => panic!("fixture source {name}: {other:?}"),
    }
}

/// A clean error: one short line, not a panic message or a debug dump.
fn assert_clean_error(message: &str) {
    assert!(!message.is_empty(), "empty error message");
    assert!(
        message.len() < 1024,
        "error message of {} bytes",
        message.len()
    );
    assert!(!message.contains("panicked"), "{message}");
}

// ---- JSON-ish inputs --------------------------------------------------------------

fn key() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "alerts",
        "status",
        "labels",
        "commonLabels",
        "appid",
        "account",
        "app",
        "fingerprint",
        "startsAt",
        "count",
        "reason",
        "cgi_path",
        "key",
        "alertname",
        "version",
    ]);
    prop_oneof![
        3 => known.prop_map(str::to_string),
        1 => "[a-zA-Z_]{0,6}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "firing",
        "resolved",
        "shop",
        "blog",
        SHOP,
        BLOG,
        "wxffffffffffffffff",
        "WX448F04719CD48F69",
        "/cgi-bin/message/custom/send",
        "2026-11-28T10:00:00Z",
        "",
    ]);
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        words.prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An Alertmanager/Grafana-shaped payload: firing or resolved alerts, the
/// account label present, absent, unknown, or only in commonLabels.
fn alert_payload() -> impl Strategy<Value = (Value, usize)> {
    let label = prop::option::of(prop::sample::select(vec![
        "shop",
        "blog",
        SHOP,
        BLOG,
        "wxffffffffffffffff",
        "",
    ]));
    let alert = (any::<bool>(), label, prop::option::of("[a-f0-9]{0,8}")).prop_map(
        |(firing, appid, fingerprint)| {
            let mut labels = json!({"alertname": "WeChat45009"});
            if let Some(a) = appid {
                labels["appid"] = json!(a);
            }
            json!({
                "status": if firing { "firing" } else { "resolved" },
                "labels": labels,
                "startsAt": "2026-11-28T10:00:00Z",
                "fingerprint": fingerprint,
            })
        },
    );
    let common = prop::option::of(prop::sample::select(vec!["shop", SHOP, "nobody"]));
    (prop::collection::vec(alert, 0..12), common).prop_map(|(alerts, common)| {
        let n = alerts.len();
        let mut common_labels = json!({});
        if let Some(c) = common {
            common_labels["appid"] = json!(c);
        }
        let doc = json!({"version": "4", "status": "firing", "commonLabels": common_labels, "alerts": alerts});
        (doc, n)
    })
}

/// A valid payload with bytes flipped, inserted, or cut off.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len().max(1);
    let edits = prop::collection::vec((0..len, any::<u8>(), 0..3u8), 0..6);
    (edits, 0..=len).prop_map(move |(edits, cut)| {
        let mut b = base.clone();
        for (at, byte, op) in edits {
            let at = at.min(b.len());
            match op {
                0 if at < b.len() => b[at] = byte,
                1 => b.insert(at, byte),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => {}
            }
        }
        b.truncate(cut.max(b.len() / 2));
        b
    })
}

fn check_parse(name: &str, body: &[u8]) {
    let spec = webhook_spec(name);
    match webhook::parse(spec, &fixture().accounts, body, now(), usize::MAX) {
        Ok(parsed) => {
            for s in &parsed.signals {
                assert!(fixture().account(&s.account).is_some(), "{s:?}");
                assert!(s.count > 0, "{s:?}");
            }
        }
        Err(e) => assert_clean_error(&e.to_string()),
    }
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn webhook_parsers_survive_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        for name in ["alerts", "graf", "gen"] {
            check_parse(name, &body);
        }
        let generic = webhook::parse_generic("api", "account", &fixture().accounts, &body, now(), usize::MAX);
        if let Err(e) = generic {
            assert_clean_error(&e.to_string());
        }
    }

    #[test]
    fn webhook_parsers_survive_arbitrary_json(doc in json_value()) {
        let body = serde_json::to_vec(&doc).unwrap();
        for name in ["alerts", "graf", "gen"] {
            check_parse(name, &body);
        }
        for field in ["account", "appid", "app", "count"] {
            if let Err(e) = webhook::parse_generic("api", field, &fixture().accounts, &body, now(), usize::MAX) {
                assert_clean_error(&e.to_string());
            }
        }
    }

    /// Every alert is accounted for: queued, ignored as resolved, or rejected.
    #[test]
    fn every_alert_is_queued_resolved_or_rejected((doc, n) in alert_payload()) {
        let body = serde_json::to_vec(&doc).unwrap();
        for name in ["alerts", "graf"] {
            let parsed = webhook::parse(webhook_spec(name), &fixture().accounts, &body, now(), usize::MAX).unwrap();
            prop_assert_eq!(parsed.signals.len() + parsed.resolved + parsed.rejected.len(), n);
            let firing = doc["alerts"].as_array().unwrap().iter().filter(|a| a["status"] == "firing").count();
            prop_assert_eq!(parsed.signals.len() + parsed.rejected.len(), firing);
        }
    }

    #[test]
    fn webhook_parsers_survive_mutated_payloads(body in alert_payload().prop_flat_map(|(doc, _)| mutated(serde_json::to_vec(&doc).unwrap()))) {
        for name in ["alerts", "graf", "gen"] {
            check_parse(name, &body);
        }
    }
}

// ---- signatures -------------------------------------------------------------------

fn scheme() -> impl Strategy<Value = SignatureScheme> {
    prop::sample::select(vec![
        SignatureScheme::Grafana,
        SignatureScheme::Github,
        SignatureScheme::Any,
    ])
}

/// Header values: hex-ish, numbers of every size, and junk.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{0,70}",
        "sha256=[0-9a-f]{0,70}",
        any::<i64>().prop_map(|i| i.to_string()),
        any::<i64>().prop_map(|i| format!(" {i} ")),
        "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn signature_checks_survive_arbitrary_headers(
        scheme in scheme(),
        secret in prop::collection::vec(any::<u8>(), 0..80),
        grafana in prop::option::of(header_value()),
        timestamp in prop::option::of(header_value()),
        github in prop::option::of(header_value()),
        body in prop::collection::vec(any::<u8>(), 0..512),
        now_secs in 0i64..=4_102_444_800,
    ) {
        let headers = SignatureHeaders {
            grafana_signature: grafana.as_deref(),
            grafana_timestamp: timestamp.as_deref(),
            github_signature: github.as_deref(),
        };
        let now = Utc.timestamp_opt(now_secs, 0).unwrap();
        let result = webhook::verify_signature(scheme, &secret, &headers, &body, now);
        // A random header is (overwhelmingly likely) not a valid signature.
        prop_assert!(result.is_err());
    }

    /// A correct signature passes; one changed body byte or a timestamp more
    /// than 5 minutes away fails.
    #[test]
    fn signatures_verify_and_tampering_fails(
        secret in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 1..512),
        flip in any::<prop::sample::Index>(),
        skew in -300i64..=300,
        stale in 301i64..100_000,
    ) {
        let now = now();
        let ts = (now.timestamp() + skew).to_string();
        let grafana = hex::encode(webhook::hmac_sha256(&secret, &[ts.as_bytes(), b":", &body]));
        let github = format!("sha256={}", hex::encode(webhook::hmac_sha256(&secret, &[&body])));
        let graf_headers = SignatureHeaders { grafana_signature: Some(&grafana), grafana_timestamp: Some(&ts), github_signature: None };
        let gh_headers = SignatureHeaders { grafana_signature: None, grafana_timestamp: None, github_signature: Some(&github) };
        prop_assert!(webhook::verify_signature(SignatureScheme::Any, &secret, &graf_headers, &body, now).is_ok());
        prop_assert!(webhook::verify_signature(SignatureScheme::Grafana, &secret, &graf_headers, &body, now).is_ok());
        prop_assert!(webhook::verify_signature(SignatureScheme::Github, &secret, &gh_headers, &body, now).is_ok());
        prop_assert!(webhook::verify_signature(SignatureScheme::Github, &secret, &graf_headers, &body, now).is_err());

        let mut tampered = body.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        prop_assert!(webhook::verify_signature(SignatureScheme::Any, &secret, &graf_headers, &tampered, now).is_err());
        prop_assert!(webhook::verify_signature(SignatureScheme::Any, &secret, &gh_headers, &tampered, now).is_err());

        let old = (now.timestamp() - stale).to_string();
        let old_sig = hex::encode(webhook::hmac_sha256(&secret, &[old.as_bytes(), b":", &body]));
        let old_headers = SignatureHeaders { grafana_signature: Some(&old_sig), grafana_timestamp: Some(&old), github_signature: None };
        prop_assert_eq!(
            webhook::verify_signature(SignatureScheme::Grafana, &secret, &old_headers, &body, now),
            Err(webhook::SignatureError::Stale)
        );
    }
}

/// The extreme timestamps an attacker can send without knowing the secret:
/// the timestamp is judged before the HMAC, so it must not overflow.
#[test]
fn extreme_grafana_timestamps_are_stale_not_a_panic() {
    for ts in [
        i64::MIN.to_string(),
        (i64::MIN + 1).to_string(),
        i64::MAX.to_string(),
        "-9223372036000000000".to_string(),
    ] {
        let headers = SignatureHeaders {
            grafana_signature: Some("00"),
            grafana_timestamp: Some(&ts),
            github_signature: None,
        };
        let result = std::panic::catch_unwind(|| {
            webhook::verify_signature(SignatureScheme::Any, b"k", &headers, b"{}", now())
        });
        assert_eq!(
            result.ok(),
            Some(Err(webhook::SignatureError::Stale)),
            "timestamp {ts}: expected Stale, got a panic or another answer"
        );
    }
}

// ---- the config loader ------------------------------------------------------------

fn config_key() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "listen",
        "state",
        "timezone",
        "log_format",
        "tokens",
        "tokens_file",
        "shutdown_timeout",
        "queue_capacity",
        "api_base",
        "timeout",
        "monthly_cap",
        "cooldown",
        "daily_max",
        "reset_guard",
        "min_events",
        "window",
        "budget_low",
        "prefer",
        "api_monthly_cap",
        "dry_run",
        "appid",
        "kind",
        "secret",
        "secret_file",
        "token_file",
        "token_command",
        "component",
        "notify",
        "type",
        "account_label",
        "hmac_secret",
        "signature",
        "path",
        "pattern",
        "account_pattern",
        "account",
        "url",
        "query",
        "threshold",
        "schedule",
        "accounts",
        "cgi_paths",
        "remain_below",
        "concurrency",
        "events",
        "language",
        "skipped_interval",
    ]);
    prop_oneof![9 => known.prop_map(str::to_string), 1 => "[a-z_]{1,8}"]
}

fn config_value() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        "\"90s\"",
        "\"0s\"",
        "\"2h30m\"",
        "\"1000000years\"",
        "\"300000000years\"",
        "\"18446744073709551615s\"",
        "\"-5s\"",
        "\"1e3s\"",
        "\"\"",
        "\"wx448f04719cd48f69\"",
        "\"wx0123456789abcdef\"",
        "\"WX448F04719CD48F69\"",
        "\"wx0123\"",
        "\"mini_program\"",
        "\"official_account\"",
        "\"component\"",
        "\"authorizer\"",
        "\"alertmanager\"",
        "\"grafana\"",
        "\"generic\"",
        "\"log_file\"",
        "\"prometheus\"",
        "\"wechat_quota\"",
        "\"wecom\"",
        "\"webhook\"",
        "\"shop\"",
        "\"api\"",
        "\"full\"",
        "\"1%\"",
        "\"150%\"",
        "\"-1%\"",
        "\"NaN%\"",
        "\"127.0.0.1:0\"",
        "\"0.0.0.0:9466\"",
        "\"[::1]:0\"",
        "\"Asia/Shanghai\"",
        "\"Mars/Olympus\"",
        "\"http://127.0.0.1:9\"",
        "\"postgres://u:p@h/db\"",
        "\"/nonexistent/secret\"",
        "'errcode\"?\\s*[:=]\\s*45009'",
        "'(wx[0-9a-f]{16})'",
        "'(a{1000}){1000}'",
        "'('",
        "'\\p{Greek}+'",
        "\"0 */5 * * * *\"",
        "\"* * * * *\"",
        "\"61 * * * * *\"",
        "\"0 0 0 31 2 *\"",
        "\"*/0 * * * * *\"",
        "\"5-1 * * * * *\"",
        "\"0 0 0 ? * L\"",
        "\"0 0 0 L * *\"",
        "\"0 0 0 * * 5#6\"",
        "\"@hourly\"",
        "nan",
        "inf",
        "-inf",
        "[]",
        "{}",
        "[\"shop\"]",
        "[\"/bin/true\"]",
    ]);
    let leaf = prop_oneof![
        6 => special.prop_map(str::to_string),
        2 => any::<i64>().prop_map(|i| i.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:?}")),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        2 => "\"[a-zA-Z0-9 ._:*%-]{0,16}\"",
        1 => "[0-9a-z*/ ?#L,-]{1,12}".prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            (config_key(), inner).prop_map(|(k, v)| format!("{{ {k} = {v} }}")),
        ]
    })
}

fn section() -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "",
        "[daemon]",
        "[wechat]",
        "[policy]",
        "[accounts.shop]",
        "[accounts.shop.policy]",
        "[accounts.blog]",
        "[accounts.\"a b\"]",
        "[sources.s]",
        "[sources.t]",
        "[notifiers.n]",
        "[nonsense]",
        "[[accounts]]",
        "[daemon",
    ]);
    let line = (config_key(), config_value()).prop_map(|(k, v)| format!("{k} = {v}"));
    (header, prop::collection::vec(line, 0..8))
        .prop_map(|(h, lines)| format!("{h}\n{}\n", lines.join("\n")))
}

/// A config document: sections of plausible lines, sometimes with a line of
/// arbitrary text or a cut in the middle.
fn config_text() -> impl Strategy<Value = String> {
    let doc = prop::collection::vec(section(), 0..8).prop_map(|s| s.concat());
    let junk = "\\PC{0,60}";
    (
        doc,
        prop::option::of(junk),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(doc, junk, at, cut)| {
            let mut doc = doc;
            if let Some(j) = junk {
                let mut i = at.index(doc.len() + 1);
                while !doc.is_char_boundary(i) {
                    i -= 1;
                }
                doc.insert_str(i, &j);
            }
            if cut {
                let mut i = at.index(doc.len() + 1);
                while !doc.is_char_boundary(i) {
                    i -= 1;
                }
                doc.truncate(i);
            }
            doc
        })
}

/// A config that loads must not make the policy panic, whatever it says:
/// the decision, the cooldown end and the next possible clear for an account
/// that was cleared just now.
fn exercise_policy(config: &Config) {
    let now = now();
    for account in config.accounts.values() {
        let snapshot = Snapshot {
            month_used: 1,
            day_used: 1,
            last_clear_at: Some(now),
            ..Snapshot::default()
        };
        // Pacing's arithmetic too, with a quota that lasts minutes.
        let reading = quotawatch::pacing::Reading {
            stale: false,
            lasts: 3.0,
            past: vec![0.0, 600.0, f64::INFINITY],
            before: None,
        };
        let input = policy::Input {
            settings: &account.policy,
            snapshot: &snapshot,
            evidence: 1,
            manual: false,
            force: false,
            dry_run: false,
            api: false,
            pacing: Some(&reading),
            timezone: config.daemon.timezone,
            now,
        };
        let decision = policy::decide(&input);
        let _ = policy::cooldown_end(&account.policy, &snapshot);
        if let Decision::Skip(reason) = decision {
            let _ = policy::next_possible_clear(&input, reason);
        }
        let _ = policy::next_possible_clear(&input, SkipReason::Cooldown);
    }
}

struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn load(&self, text: &str) -> Result<Config, quotawatch::settings::ConfigErrors> {
        let path: PathBuf = self.dir.path().join("quotawatch.toml");
        std::fs::write(&path, text).unwrap();
        config::load(&path)
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn config_loader_answers_every_document(text in config_text()) {
        let dir = ConfigDir::new();
        match dir.load(&text) {
            Ok(config) => exercise_policy(&config),
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.is_empty());
                prop_assert!(!message.contains("panicked"), "{}", message);
            }
        }
    }
}

/// A base config that loads, with one policy key replaced: every value the
/// loader accepts must be safe to compute with.
fn with_policy(line: &str) -> String {
    format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"/nonexistent/l.db\"\n\
         [policy]\n{line}\n\
         [accounts.shop]\nappid = \"{SHOP}\"\nkind = \"mini_program\"\nsecret = \"s\"\n"
    )
}

proptest! {
    #![proptest_config(cases(200))]

    #[test]
    fn accepted_policy_values_never_make_the_policy_panic(
        key in prop::sample::select(vec!["cooldown", "window", "reset_guard", "monthly_cap", "daily_max", "budget_low", "min_events"]),
        value in prop_oneof![
            // Around the largest accepted cooldown and window (366 days).
            (0u64..=40_000_000).prop_map(|s| format!("\"{s}s\"")),
            (0u64..=u64::MAX).prop_map(|s| format!("\"{s}s\"")),
            (0u64..=1_000_000_000).prop_map(|y| format!("\"{y}years\"")),
            any::<u32>().prop_map(|n| n.to_string()),
        ],
    ) {
        let dir = ConfigDir::new();
        if let Ok(config) = dir.load(&with_policy(&format!("{key} = {value}"))) {
            let caught = std::panic::catch_unwind(|| exercise_policy(&config));
            prop_assert!(caught.is_ok(), "`{} = {}` loads, then the policy panics", key, value);
        }
    }
}

/// The extremes of the property above, by name: the largest accepted
/// cooldown and window work; larger ones are refused by the loader (until
/// commit 7c5fbec a million-year cooldown loaded and then panicked in
/// `policy::cooldown_end`).
#[test]
fn the_longest_accepted_durations_do_not_panic_the_policy() {
    let dir = ConfigDir::new();
    for line in [
        "cooldown = \"366days\"",
        "window = \"366days\"",
        "cooldown = \"1year\"",
    ] {
        let config = dir
            .load(&with_policy(line))
            .unwrap_or_else(|e| panic!("`{line}` is at most a year: {e}"));
        let caught = std::panic::catch_unwind(|| exercise_policy(&config));
        assert!(caught.is_ok(), "`{line}` loads, then the policy panics");
    }
    for line in [
        "cooldown = \"1000000years\"",
        "window = \"1000000years\"",
        "cooldown = \"18446744073709551615s\"",
    ] {
        let err = dir.load(&with_policy(line)).err();
        let err = err.unwrap_or_else(|| panic!("`{line}` is longer than a year and loads"));
        assert!(err.to_string().contains("at most a year"), "{err}");
    }
}

proptest! {
    #![proptest_config(cases(500))]

    /// Cron strings as the config validator sees them: an answer, no panic.
    #[test]
    fn schedule_validation_answers_every_string(expr in prop_oneof![
        "[0-9*/,?LW#-]{1,4}( [0-9*/,?LW#-]{1,4}){4,6}",
        "\\PC{0,30}",
    ]) {
        if let Err(e) = quotawatch::sources::validate_schedule(&expr) {
            prop_assert!(!e.is_empty());
        }
    }
}

// ---- the log line matcher ---------------------------------------------------------

fn pattern() -> impl Strategy<Value = String> {
    let realistic = prop::sample::select(vec![
        r#"errcode"?\s*[:=]\s*45009"#,
        "45009",
        "^45009$",
        r"\b45009\b",
        r"a\s+b",
        r"x\s*$",
        "a|b",
        "^",
        "$",
        "",
        r"\n",
        r"\r",
        r"\s",
        ".*",
        "(?i)ERRCODE",
        r"[^\n]*45",
    ]);
    prop_oneof![
        3 => realistic.prop_map(str::to_string),
        2 => r"[ab45\\s.*+?|()^$]{1,8}",
    ]
}

fn account_rule() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "(wx[0-9a-f]{16})".to_string(),
        "app=(\\w+)".to_string(),
        "(a+)".to_string(),
        "()".to_string(),
        "b".to_string(),
    ]))
}

/// Log text over a small alphabet, so matches and near-misses are common.
fn log_text(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        "errcode",
        "\"",
        ":",
        "=",
        " ",
        "45009",
        "4500",
        "a",
        "b",
        "x",
        "\n",
        "\n",
        "\r\n",
        "\r",
        "app=",
        "shop",
        "wx448f04719cd48f69",
        "\t",
        "\u{e9}",
    ]);
    let bytes = prop::collection::vec(any::<u8>(), 0..4);
    prop::collection::vec(
        prop_oneof![9 => piece.prop_map(|s| s.as_bytes().to_vec()), 1 => bytes],
        0..max,
    )
    .prop_map(|pieces| pieces.concat())
}

fn line_regex(pattern: &str) -> Option<regex::bytes::Regex> {
    regex::bytes::RegexBuilder::new(pattern)
        .multi_line(true)
        .crlf(true)
        .build()
        .ok()
}

fn matcher(pattern: &str, account: &Option<String>) -> Option<LineMatcher> {
    let pattern = regex::Regex::new(pattern).ok()?;
    let account = match account {
        Some(p) => LogAccount::Pattern(regex::Regex::new(p).ok()?),
        None => LogAccount::Fixed("shop".into()),
    };
    LineMatcher::new(&pattern, &account).ok()
}

/// The reference: one line at a time, the same regex semantics.
fn reference(pattern: &str, account: &Option<String>, lines: &[&[u8]]) -> LineCounts {
    let pat = line_regex(pattern).unwrap();
    let acc = account.as_deref().map(|a| line_regex(a).unwrap());
    let mut counts = LineCounts::default();
    for line in lines.iter().filter(|l| pat.is_match(l)) {
        let who: Option<Vec<u8>> = match &acc {
            None => Some(b"shop".to_vec()),
            Some(r) => r
                .captures(line)
                .and_then(|c| c.get(1))
                .map(|m| m.as_bytes().to_vec()),
        };
        match who {
            Some(a) => *counts.by_account.entry(a).or_default() += 1,
            None => counts.unattributed += 1,
        }
    }
    counts
}

/// Hands out the data in the given chunk sizes, like a file growing between
/// reads or a short read from a pipe.
struct Chunked {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self
            .sizes
            .get(self.next)
            .copied()
            .unwrap_or(usize::MAX)
            .max(1);
        self.next += 1;
        let n = want.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn scan(m: &LineMatcher, data: &[u8], sizes: Vec<usize>, eof_ends_line: bool) -> (LineCounts, u64) {
    let reader = Chunked {
        data: data.to_vec(),
        at: 0,
        sizes,
        next: 0,
    };
    let mut buf = vec![0u8; 2 * MAX_LINE];
    let scan = m
        .scan(reader, &mut buf, eof_ends_line, &CancellationToken::new())
        .unwrap();
    (scan.counts, scan.consumed)
}

fn normalised(c: &LineCounts) -> (HashMap<Vec<u8>, u64>, u64) {
    let mut map = c.by_account.clone();
    map.retain(|_, n| *n > 0);
    (map, c.unattributed)
}

proptest! {
    #![proptest_config(cases(500))]

    /// The buffer-at-a-time matcher counts exactly what a line-by-line loop
    /// counts, however the reads are chunked, and stops at the last newline.
    #[test]
    fn line_matcher_agrees_with_a_line_by_line_reference(
        pattern in pattern(),
        account in account_rule(),
        text in log_text(120),
        sizes in prop::collection::vec(1usize..64, 0..40),
        eof_ends_line in any::<bool>(),
    ) {
        let Some(m) = matcher(&pattern, &account) else { return Ok(()) };
        prop_assume!(line_regex(&pattern).is_some());
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut lines: Vec<&[u8]> = text[..complete].split(|b| *b == b'\n').collect();
        lines.pop(); // the empty piece after the last newline
        if eof_ends_line && complete < text.len() {
            lines.push(&text[complete..]);
        }
        let want = reference(&pattern, &account, &lines);
        let (got, consumed) = scan(&m, &text, sizes, eof_ends_line);
        // Where a bare line and the same line in its file differ: a `\r`
        // before the `\n` is content in the bare line but half of the line
        // terminator in the file (CRLF mode: `^`/`$` never match between `\r`
        // and `\n`), so patterns that look at line ends or whitespace may
        // judge such a line differently. There, only the bounds are checked.
        let line_end_sensitive = ["^", "$", "\\s", "\\r", "\\n"].iter().any(|t| pattern.contains(t));
        if text.contains(&b'\r') && line_end_sensitive {
            prop_assert!(got.total() <= lines.len() as u64);
        } else {
            prop_assert_eq!(normalised(&got), normalised(&want), "pattern {:?} account {:?} text {:?}", pattern, account, String::from_utf8_lossy(&text));
        }
        let end = if eof_ends_line { text.len() } else { complete };
        prop_assert_eq!(consumed, end as u64);
    }
}

proptest! {
    #![proptest_config(cases(24))]

    /// Lines longer than MAX_LINE are judged on their prefix and skipped to
    /// their newline: memory stays bounded, offsets stay right, lines after
    /// them are still counted.
    #[test]
    fn long_lines_are_bounded_and_do_not_derail_the_count(
        long in (MAX_LINE + 1)..(3 * MAX_LINE),
        marker_at in prop::option::of(0usize..(3 * MAX_LINE)),
        tail_lines in 0usize..5,
        sizes in prop::collection::vec(1usize..(2 * MAX_LINE), 0..8),
    ) {
        let m = matcher("45009", &None).unwrap();
        let mut data = vec![b'a'; long];
        let marked = marker_at.filter(|at| at + 5 <= MAX_LINE);
        if let Some(at) = marker_at.filter(|at| at + 5 <= long) {
            data[at..at + 5].copy_from_slice(b"45009");
        }
        data.push(b'\n');
        for _ in 0..tail_lines {
            data.extend_from_slice(b"errcode 45009\n");
        }
        let (got, consumed) = scan(&m, &data, sizes, false);
        prop_assert_eq!(consumed, data.len() as u64);
        prop_assert!(got.total() >= tail_lines as u64, "lines after a long line were lost");
        let long_counted = got.total() - tail_lines as u64;
        if marked.is_some() {
            // In the first MAX_LINE bytes: always seen.
            prop_assert_eq!(long_counted, 1);
        }
        prop_assert!(long_counted <= 1);
    }
}

// ---- the same extremes end to end -------------------------------------------------

mod e2e {
    use std::time::Duration;

    use serde_json::json;

    use super::support::daemon::*;
    use super::support::fake_wechat::*;
    use super::SHOP;

    fn body(fake: &FakeWeChat, policy: &str) -> String {
        format!(
            "tokens = [\"t0k3n\"]\n[wechat]\napi_base = \"{}\"\ntimeout = \"2s\"\n\
             [policy]\nreset_guard = \"0s\"\ndaily_max = 10\n{policy}\n\
             [accounts.shop]\nappid = \"{SHOP}\"\nkind = \"mini_program\"\nsecret = \"s\"\n",
            fake.base_url()
        )
    }

    /// The longest cooldown the loader accepts: `status` and a second `clear`
    /// answer, they do not crash with a panic (exit 101).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_survive_the_longest_cooldown_the_loader_accepts() {
        let fake = FakeWeChat::start().await;
        fake.add_account(SHOP, "s");
        let env = Env::new(&body(&fake, "cooldown = \"366days\""));
        assert_eq!(env.run_async(&["check"]).await.status.code(), Some(0));
        let first = env.run_async(&["clear", "shop"]).await;
        assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
        let status = env.run_async(&["status", "shop", "--json"]).await;
        assert_eq!(
            status.status.code(),
            Some(0),
            "status after a clear: {}",
            stderr(&status)
        );
        let second = env.run_async(&["clear", "shop"]).await;
        assert_eq!(
            second.status.code(),
            Some(quotawatch::EXIT_REFUSED),
            "a second clear is refused by the cooldown: {}",
            stderr(&second)
        );
    }

    /// The longest evidence window the loader accepts: the daemon acts on a
    /// signal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dispatcher_survives_the_longest_window_the_loader_accepts() {
        let fake = FakeWeChat::start().await;
        fake.add_account(SHOP, "s");
        let env = Env::new(&body(&fake, "window = \"366days\""));
        let d = Daemon::start(&env).await;
        let client = reqwest::Client::new();
        let post = |key: &str| {
            client
                .post(d.url("/api/v1/signals"))
                .bearer_auth("t0k3n")
                .json(&json!({"account": "shop", "key": key}))
                .send()
        };
        assert_eq!(post("a").await.unwrap().status(), 202);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            fake.clears_effective(SHOP),
            1,
            "the signal was acted on; daemon logs:\n{}",
            d.logs()
        );
        assert_eq!(post("b").await.unwrap().status(), 202, "still accepting");
    }
}
