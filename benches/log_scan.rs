//! Scan rate of the `log_file` matcher against `grep -c` on the same 100 MB
//! log (WeChat API call lines, almost all `"errcode":0`, a few 45009).
//!
//!     cargo bench --bench log_scan
//!
//! The log is generated once (deterministically) at
//! `$TMPDIR/quotawatch-log-scan-100M.log` and kept, so grep can be timed by
//! hand on the very same bytes (see BENCHMARKS.md). Both benchmarks read the
//! file from the page cache.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quotawatch::sources::log_file::LogAccount;
use quotawatch::sources::log_file::{LineMatcher, BUFFER};
use tokio_util::sync::CancellationToken;

const SIZE: u64 = 100 * 1024 * 1024;
const PATTERN: &str = r#"errcode"?\s*[:=]\s*45009"#;
/// Any 4xxxx error: its only literal, `errcode`, is on every line, so the
/// regex's prefilter cannot skip anything. The hard case.
const PATTERN_NO_SKIP: &str = r#"errcode"?\s*[:=]\s*4[0-9]{4}"#;
const ACCOUNT: &str = r"(wx[0-9a-f]{16})";
/// One line in this many is a 45009.
const HIT_EVERY: u64 = 100_000;

fn log_path() -> PathBuf {
    std::env::temp_dir().join("quotawatch-log-scan-100M.log")
}

/// Writes the log unless a file of the right size is already there; returns
/// the number of 45009 lines in it.
fn ensure_log() -> u64 {
    let path = log_path();
    let mut rng = fastrand::Rng::with_seed(45009);
    let appids: Vec<String> = (0..8)
        .map(|i| format!("wx{:016x}", 0x448f04719cd48f69_u64 + i))
        .collect();
    let apis = [
        "/cgi-bin/message/custom/send",
        "/wxa/msg_sec_check",
        "/cgi-bin/user/info",
        "/wxa/getwxacodeunlimit",
    ];
    let existing = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut out =
        (existing != SIZE).then(|| BufWriter::new(File::create(&path).expect("create log")));
    let (mut written, mut hits, mut n) = (0u64, 0u64, 0u64);
    while written < SIZE {
        n += 1;
        let appid = &appids[rng.usize(..appids.len())];
        let api = apis[rng.usize(..apis.len())];
        let (code, msg) = if n % HIT_EVERY == 0 {
            hits += 1;
            (45009, "reach max api daily quota limit")
        } else if n % 997 == 0 {
            (45011, "api minute-quota reach limit")
        } else {
            (0, "ok")
        };
        let line = format!(
            "2026-11-02T10:{:02}:{:02}.{:03}+08:00 INFO wechat call appid={appid} api={api} took_ms={} {{\"errcode\":{code},\"errmsg\":\"{msg}\"}}\n",
            rng.u32(..60), rng.u32(..60), rng.u32(..1000), rng.u32(1..900)
        );
        let room = (SIZE - written) as usize;
        let bytes = &line.as_bytes()[..line.len().min(room)];
        if let Some(out) = out.as_mut() {
            out.write_all(bytes).expect("write log");
        }
        written += bytes.len() as u64;
    }
    if let Some(mut out) = out {
        out.flush().expect("flush log");
    }
    hits
}

fn matcher(pattern: &str) -> LineMatcher {
    let pattern = regex::Regex::new(pattern).unwrap();
    let account = LogAccount::Pattern(regex::Regex::new(ACCOUNT).unwrap());
    LineMatcher::new(&pattern, &account).unwrap()
}

fn scan(matcher: &LineMatcher, buf: &mut [u8]) -> u64 {
    let file = File::open(log_path()).expect("open log");
    let scan = matcher
        .scan(file, buf, false, &CancellationToken::new())
        .expect("scan");
    scan.counts.total()
}

fn grep_count(pattern: &str) -> Option<u64> {
    let out = Command::new("grep")
        .env("LC_ALL", "C")
        .args(["-cE", pattern])
        .arg(log_path())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn bench(c: &mut Criterion) {
    let hits = ensure_log();
    let mut buf = vec![0u8; BUFFER];
    for (name, pattern) in [("45009", PATTERN), ("any_4xxxx", PATTERN_NO_SKIP)] {
        let matcher = matcher(pattern);
        let found = scan(&matcher, &mut buf);
        if pattern == PATTERN {
            assert_eq!(found, hits, "the matcher finds every 45009 line");
        }
        let mut group = c.benchmark_group(format!("log_scan_100MiB/{name}"));
        group.throughput(Throughput::Bytes(SIZE));
        group.sample_size(10);
        group.bench_function("quotawatch_matcher", |b| {
            b.iter(|| scan(&matcher, &mut buf))
        });
        match grep_count(pattern) {
            Some(n) => {
                assert_eq!(n, found, "grep finds the same lines");
                group.bench_function("grep_-c", |b| b.iter(|| grep_count(pattern)));
            }
            None => eprintln!("grep is not available; only the matcher was measured"),
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
