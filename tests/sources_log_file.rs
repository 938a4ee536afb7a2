//! The `log_file` source against real files in a temp dir and a real SQLite
//! ledger: appends, rotation by rename and create, copytruncate, a file that
//! appears late, a 10 MB line, a restart in the middle, two accounts.

pub mod support {
    pub mod sources;
}

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use quotawatch::signal::Signal;
use quotawatch::sources::log_file::LogFileSource;
use quotawatch::sources::SourceSpec;
use support::sources::{Harness, BLOG, SHOP};

const SOURCE: &str = r#"
[sources.app_log]
type = "log_file"
path = "{dir}/app.log"
pattern = 'errcode"?\s*[:=]\s*45009'
account_pattern = '(wx[0-9a-f]{16})'
"#;

fn harness() -> Harness {
    Harness::new("http://127.0.0.1:9", SOURCE)
}

fn source(h: &Harness) -> LogFileSource {
    let SourceSpec::LogFile(spec) = h.source("app_log") else {
        panic!("not a log_file source")
    };
    LogFileSource::new(spec, h.ctx.clone())
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("append");
}

fn hit(appid: &str) -> String {
    format!("2026-11-02T10:00:00Z WARN call failed appid={appid} {{\"errcode\":45009,\"errmsg\":\"reach max api daily quota limit\"}}\n")
}

fn miss(appid: &str) -> String {
    format!("2026-11-02T10:00:00Z INFO call ok appid={appid} {{\"errcode\":0,\"errmsg\":\"ok\"}}\n")
}

/// (account, count) of each signal, sorted by account.
fn counts(signals: &[Signal]) -> Vec<(String, u32)> {
    signals
        .iter()
        .map(|s| (s.account.clone(), s.count))
        .collect()
}

fn pairs(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(a, n)| (a.to_string(), *n)).collect()
}

#[tokio::test]
async fn appended_lines_are_counted_per_account_once() {
    let mut h = harness();
    let log = h.path("app.log");
    File::create(&log).unwrap();
    let src = source(&h);
    src.run_once().await;
    assert!(h.drain().is_empty());

    append(
        &log,
        &format!(
            "{}{}{}{}{}{}",
            hit(SHOP),
            miss(SHOP),
            hit(BLOG),
            hit(SHOP),
            miss(BLOG),
            hit(SHOP)
        ),
    );
    src.run_once().await;
    let signals = h.drain();
    assert_eq!(counts(&signals), pairs(&[("blog", 1), ("shop", 3)]));
    let shop = &signals[1];
    assert_eq!(shop.source, "app_log");
    assert_eq!(shop.reason, "log: 3 lines matched");
    assert_eq!(
        (shop.key.as_deref(), shop.cgi_path.as_deref()),
        (None, None)
    );

    src.run_once().await;
    assert!(h.drain().is_empty(), "nothing new, nothing sent");
    append(&log, &hit(BLOG));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("blog", 1)]));
    assert_eq!(h.ctx.health.snapshot().get("app_log"), Some(&None));
}

#[tokio::test]
async fn old_content_is_not_evidence_at_first_start() {
    let mut h = harness();
    let log = h.path("app.log");
    append(&log, &hit(SHOP).repeat(50));
    let src = source(&h);
    src.run_once().await;
    assert!(
        h.drain().is_empty(),
        "a file seen for the first time is read from its end"
    );
    append(&log, &hit(SHOP));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 1)]));
}

/// Issue 10, item 6: the starting position is taken when the daemon starts,
/// so a line appended between start-up and the first scheduled run counts.
#[tokio::test]
async fn lines_written_between_start_and_the_first_run_count() {
    let mut h = harness();
    let log = h.path("app.log");
    append(&log, &hit(SHOP).repeat(5));
    let src = source(&h);
    append(&log, &hit(SHOP));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 1)]));
}

#[tokio::test]
async fn follows_rename_and_create_rotation_finishing_the_old_file() {
    let mut h = harness();
    let log = h.path("app.log");
    File::create(&log).unwrap();
    let src = source(&h);
    src.run_once().await;
    append(&log, &hit(SHOP));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 1)]));

    // The writer logs two more lines, logrotate renames, the writer logs one
    // more to the old file before reopening, then writes to the new file.
    let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
    writer.write_all(hit(SHOP).repeat(2).as_bytes()).unwrap();
    std::fs::rename(&log, h.path("app.log.1")).unwrap();
    writer.write_all(hit(SHOP).as_bytes()).unwrap();
    append(&log, &format!("{}{}", hit(BLOG), hit(SHOP)));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("blog", 1), ("shop", 4)]));

    // Only the new file is followed now.
    writer.write_all(hit(SHOP).as_bytes()).unwrap();
    append(&log, &hit(BLOG));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("blog", 1)]));
}

#[tokio::test]
async fn the_old_file_keeps_being_read_while_the_new_one_is_missing() {
    let mut h = harness();
    let log = h.path("app.log");
    File::create(&log).unwrap();
    let src = source(&h);
    src.run_once().await;
    let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, h.path("app.log.1")).unwrap();
    writer.write_all(hit(SHOP).as_bytes()).unwrap();
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 1)]));
    assert_eq!(
        h.ctx.health.snapshot().get("app_log"),
        Some(&None),
        "a rotation gap is not an error"
    );
    append(&log, &hit(SHOP));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 1)]));
}

#[tokio::test]
async fn copytruncate_starts_over() {
    let mut h = harness();
    let log = h.path("app.log");
    File::create(&log).unwrap();
    let src = source(&h);
    src.run_once().await;
    append(&log, &hit(SHOP).repeat(5));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 5)]));

    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &format!("{}{}", hit(SHOP), hit(BLOG)));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("blog", 1), ("shop", 1)]));
}

#[tokio::test]
async fn a_file_that_appears_later_is_read_from_its_start() {
    let mut h = harness();
    let log = h.path("app.log");
    let src = source(&h);
    src.run_once().await;
    src.run_once().await;
    assert!(h.drain().is_empty());
    let health = h.ctx.health.snapshot();
    let waiting = health
        .get("app_log")
        .cloned()
        .flatten()
        .expect("absence is reported in health");
    assert!(waiting.contains("app.log"), "{waiting}");

    append(&log, &hit(SHOP).repeat(2));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 2)]));
    assert_eq!(h.ctx.health.snapshot().get("app_log"), Some(&None));
}

#[tokio::test]
async fn a_ten_megabyte_line_counts_once_even_when_written_in_pieces() {
    let mut h = harness();
    let log = h.path("app.log");
    File::create(&log).unwrap();
    let src = source(&h);
    src.run_once().await;

    let filler = "x".repeat(5 * 1024 * 1024);
    append(&log, &format!("appid={SHOP} errcode=45009 {filler}"));
    src.run_once().await;
    assert!(
        h.drain().is_empty(),
        "an unfinished line is not counted yet"
    );
    append(&log, &format!("{filler}\n{}", hit(BLOG)));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("blog", 1), ("shop", 1)]));
    src.run_once().await;
    assert!(h.drain().is_empty());
}

#[tokio::test]
async fn a_restart_neither_misses_nor_recounts_lines() {
    let mut h = harness();
    let log = h.path("app.log");
    File::create(&log).unwrap();
    let src = source(&h);
    src.run_once().await;
    append(&log, &hit(SHOP).repeat(3));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 3)]));

    // Two complete lines and half of a third, then the daemon stops.
    let third = hit(SHOP);
    let (head, tail) = third.split_at(30);
    append(&log, &format!("{}{}{head}", hit(SHOP), hit(BLOG)));
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("blog", 1), ("shop", 1)]));
    drop(src);
    let saved = h
        .ctx
        .store
        .log_position("app_log", &log.to_string_lossy())
        .unwrap()
        .expect("a saved position");
    let size = std::fs::metadata(&log).unwrap().len();
    assert_eq!(
        saved.offset,
        size - head.len() as u64,
        "the position is the end of the last complete line"
    );

    // Lines written while it was down, then a new process over the same ledger.
    append(&log, &format!("{tail}{}", hit(SHOP)));
    h.restart();
    let src = source(&h);
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("shop", 2)]));
}

#[tokio::test]
async fn a_rotation_during_a_restart_reads_the_new_file_from_its_start() {
    let mut h = harness();
    let log = h.path("app.log");
    File::create(&log).unwrap();
    source(&h).run_once().await;
    std::fs::rename(&log, h.path("app.log.1")).unwrap();
    append(&log, &hit(BLOG));
    h.restart();
    source(&h).run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("blog", 1)]));
}

#[tokio::test]
async fn names_and_appids_add_up_and_unknown_accounts_are_still_sent() {
    let extra = r#"
[sources.by_name]
type = "log_file"
path = "{dir}/named.log"
pattern = '45009'
account_pattern = 'account=(\S+)'
"#;
    let mut h = Harness::new("http://127.0.0.1:9", extra);
    let log = h.path("named.log");
    File::create(&log).unwrap();
    let SourceSpec::LogFile(spec) = h.source("by_name") else {
        panic!()
    };
    let src = LogFileSource::new(spec, h.ctx.clone());
    src.run_once().await;
    append(
        &log,
        &format!("account=shop 45009\naccount={SHOP} 45009\naccount=ghost 45009\n45009 without an account\n"),
    );
    src.run_once().await;
    assert_eq!(counts(&h.drain()), pairs(&[("ghost", 1), ("shop", 2)]));
}
