//! The `log_file` source: follows a log file the way `tail -F` does and counts
//! the lines that match `pattern`, per account.
//!
//! Each run reads what was appended since the last run and sends one signal
//! per account with the number of matched lines as evidence. It follows the
//! file across rotation by rename and create (the old file's tail is read to
//! its end before switching), across truncation (copytruncate: a size below
//! the read offset means start over) and across the file being absent for a
//! while (reported in source health, retried quietly). The position (file
//! identity and the offset after the last complete line) is kept in the
//! ledger, so a restart neither misses nor recounts lines.
//!
//! Where reading starts: at the end of a file seen for the first time when the
//! daemon starts with no saved position (years of old 45009 lines are not
//! fresh evidence); at the start of a file that appears later (created, or
//! rotated in while the daemon was away).
//!
//! Accounts: the first capture of `account_pattern` (an appid or a config
//! name), resolved with [`crate::settings::Accounts::find`] so that a name and
//! its appid add up. A capture that names no configured account is still sent
//! as a signal, so the dispatcher reports it as `unknown_account` where
//! operators look for such things. A matched line without a capture is not
//! sent; the first one is logged.
//!
//! Speed: the regex runs over a whole read buffer (1 MiB), not line by line,
//! so its literal prefilter skips most of the data; a match is then mapped to
//! its line with memchr. Nothing is allocated per line. Memory is bounded: an
//! incomplete line is carried across reads only up to [`MAX_LINE`] bytes; a
//! longer line is judged on what is in the buffer when it outgrows that (at
//! least its first 64 KiB), and the rest of it is skipped up to its newline.
//!
//! This module does not decide anything about clears.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use memchr::{memchr, memrchr};
use regex::bytes::{CaptureLocations, Regex, RegexBuilder};
use tokio_util::sync::CancellationToken;

use serde::{Deserialize, Serialize};

use super::{report, Poller, RunHealth, Scheduled, Source, SourceConfig, SourceContext};
use crate::settings::{ser, Accounts, Checker};
use crate::signal::Signal;
use crate::store::{LogPosition, Store};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFileConfig {
    pub path: Option<PathBuf>,
    pub pattern: Option<String>,
    pub account_pattern: Option<String>,
    pub account: Option<String>,
    pub schedule: Option<String>,
}

/// Where a log line's account comes from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogAccount {
    /// The first capture group: an appid or a config name.
    Pattern(#[serde(serialize_with = "ser::regex")] regex::Regex),
    Fixed(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct LogFileSpec {
    pub name: String,
    pub path: PathBuf,
    #[serde(serialize_with = "ser::regex")]
    pub pattern: regex::Regex,
    pub account: LogAccount,
    /// Cron with seconds: how often the file is read.
    pub schedule: String,
}

impl SourceConfig for LogFileConfig {
    type Spec = LogFileSpec;

    fn validate(
        self,
        name: &str,
        p: &str,
        ck: &mut Checker<'_>,
        accounts: &Accounts,
    ) -> Option<LogFileSpec> {
        let path = ck.required(&format!("{p}.path"), self.path);
        let pattern = ck
            .required(&format!("{p}.pattern"), self.pattern)
            .and_then(|t| ck.regex(&format!("{p}.pattern"), &t));
        let account = match (self.account_pattern, self.account) {
            (Some(_), Some(_)) => ck.err(p, "set either account_pattern or account, not both"),
            (None, None) => ck.err(
                p,
                "needs account_pattern (a regex whose first group is an appid or name) or account",
            ),
            (Some(t), None) => {
                let key = format!("{p}.account_pattern");
                match ck.regex(&key, &t) {
                    Some(r) if r.captures_len() < 2 => {
                        ck.err(&key, "needs a capture group around the appid or name")
                    }
                    r => r.map(LogAccount::Pattern),
                }
            }
            (None, Some(a)) => match accounts.find(&a) {
                Some(acc) => Some(LogAccount::Fixed(acc.name.clone())),
                None => ck.err(
                    &format!("{p}.account"),
                    format!("names `{a}`, which is not a configured account"),
                ),
            },
        };
        let schedule =
            super::schedule(ck, &format!("{p}.schedule"), self.schedule, "*/5 * * * * *");
        Some(LogFileSpec {
            name: name.to_string(),
            path: path?,
            pattern: pattern?,
            account: account?,
            schedule,
        })
    }
}

impl Source for LogFileSpec {
    fn start(&self, ctx: &SourceContext) -> Result<Option<Scheduled>, String> {
        Ok(Some(Scheduled::new(
            LogFileSource::new(self.clone(), ctx.clone()),
            &self.schedule,
        )))
    }
}

/// An incomplete line longer than this is judged on its prefix and the rest
/// of it skipped, so a 10 MB line never sits in memory.
pub const MAX_LINE: usize = 64 * 1024;

/// The read buffer: big reads, few syscalls, long stretches for the regex's
/// prefilter.
pub const BUFFER: usize = 1024 * 1024;

/// Matched lines per account, as captured (an appid or a name).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineCounts {
    pub by_account: HashMap<Vec<u8>, u64>,
    /// Matched lines where `account_pattern` captured nothing.
    pub unattributed: u64,
}

impl LineCounts {
    pub fn total(&self) -> u64 {
        self.by_account.values().sum::<u64>() + self.unattributed
    }

    fn add(&mut self, account: Option<&[u8]>, n: u64) {
        match account {
            None => self.unattributed += n,
            Some(a) => match self.by_account.get_mut(a) {
                Some(c) => *c += n,
                None => {
                    self.by_account.insert(a.to_vec(), n);
                }
            },
        }
    }

    fn merge(&mut self, other: LineCounts) {
        for (a, n) in other.by_account {
            self.add(Some(&a), n);
        }
        self.unattributed += other.unattributed;
    }
}

/// What one pass over a reader found.
#[derive(Debug, Default)]
pub struct Scan {
    pub counts: LineCounts,
    /// Bytes read up to and including the last complete line: where the next
    /// pass starts.
    pub consumed: u64,
}

/// The line matcher: `pattern` plus where the account comes from.
pub struct LineMatcher {
    /// `pattern` with `^`/`$` at line boundaries (and before `\r\n`), so that
    /// it can run over a buffer of many lines.
    pattern: Regex,
    account: AccountRule,
}

enum AccountRule {
    Pattern(Regex),
    Fixed(Vec<u8>),
}

/// A line too long to carry: its verdict is taken on its prefix, and the rest
/// of it is skipped up to its newline.
#[derive(Default)]
struct LongLine {
    matched: bool,
    account: Option<Vec<u8>>,
    /// Bytes of it already dropped from the buffer.
    skipped: u64,
}

impl LineMatcher {
    pub fn new(pattern: &regex::Regex, account: &LogAccount) -> Result<Self, regex::Error> {
        let pattern = line_regex(pattern.as_str())?;
        let account = match account {
            LogAccount::Pattern(r) => AccountRule::Pattern(line_regex(r.as_str())?),
            LogAccount::Fixed(name) => AccountRule::Fixed(name.as_bytes().to_vec()),
        };
        Ok(Self { pattern, account })
    }

    /// Reads `reader` to its end and counts the matching complete lines.
    /// `buf` is the working buffer (its length is the read size; at least
    /// twice [`MAX_LINE`]). At the end, an incomplete last line is counted
    /// only when `eof_ends_line` (a rotated-away file that will not grow);
    /// otherwise it is left for the next pass. Stops early, at a line
    /// boundary, when `cancel` is cancelled.
    pub fn scan<R: Read>(
        &self,
        mut reader: R,
        buf: &mut [u8],
        eof_ends_line: bool,
        cancel: &CancellationToken,
    ) -> io::Result<Scan> {
        assert!(
            buf.len() >= 2 * MAX_LINE,
            "the scan buffer must hold more than one carried line"
        );
        let mut scan = Scan::default();
        let mut locs = self.capture_locations();
        // buf[..filled] starts at a line start, at file offset `scan.consumed`
        // (plus `long.skipped` while a long line is being skipped).
        let mut filled = 0;
        let mut long: Option<LongLine> = None;
        loop {
            if cancel.is_cancelled() {
                return Ok(scan);
            }
            let n = match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            filled += n;
            if let Some(line) = long.as_mut() {
                let Some(nl) = memchr(b'\n', &buf[..filled]) else {
                    line.skipped += filled as u64;
                    filled = 0;
                    continue;
                };
                let line = long.take().unwrap_or_default();
                if line.matched {
                    scan.counts.add(line.account.as_deref(), 1);
                }
                scan.consumed += line.skipped + nl as u64 + 1;
                buf.copy_within(nl + 1..filled, 0);
                filled -= nl + 1;
            }
            if let Some(last) = memrchr(b'\n', &buf[..filled]) {
                self.count_lines(&buf[..=last], &mut locs, &mut scan.counts);
                scan.consumed += last as u64 + 1;
                buf.copy_within(last + 1..filled, 0);
                filled -= last + 1;
            }
            if filled > MAX_LINE {
                long = Some(self.judge_long(&buf[..filled], &mut locs));
                filled = 0;
            }
        }
        if eof_ends_line {
            if let Some(line) = long {
                if line.matched {
                    scan.counts.add(line.account.as_deref(), 1);
                }
                scan.consumed += line.skipped;
            } else if filled > 0 {
                if self.pattern.is_match(&buf[..filled]) {
                    let account = self.account_of(&buf[..filled], &mut locs);
                    scan.counts.add(account, 1);
                }
                scan.consumed += filled as u64;
            }
        }
        Ok(scan)
    }

    /// Counts the matching lines of `region`, which ends with a newline.
    ///
    /// The regex runs over the whole region; each match is mapped to its line.
    /// A match that runs past its line's end (`\s` matches a newline) counts
    /// only if the line matches on its own. The search always resumes at the
    /// next line start, so no line is skipped: the leftmost match found starts
    /// in the first line that has any match of its own.
    pub fn count_lines(&self, region: &[u8], locs: &mut CaptureLocations, counts: &mut LineCounts) {
        let mut at = 0;
        while at < region.len() {
            let Some(m) = self.pattern.find_at(region, at) else {
                break;
            };
            if m.start() >= region.len() {
                break;
            }
            let start = memrchr(b'\n', &region[at..m.start()]).map_or(at, |i| at + i + 1);
            let end = memchr(b'\n', &region[m.start()..]).map_or(region.len(), |i| m.start() + i);
            let line = &region[start..end];
            if m.end() <= end || self.pattern.is_match(line) {
                let account = self.account_of(line, locs);
                counts.add(account, 1);
            }
            at = end + 1;
        }
    }

    /// A reusable capture buffer for [`Self::count_lines`].
    pub fn capture_locations(&self) -> CaptureLocations {
        match &self.account {
            AccountRule::Pattern(r) => r.capture_locations(),
            AccountRule::Fixed(_) => self.pattern.capture_locations(),
        }
    }

    fn judge_long(&self, prefix: &[u8], locs: &mut CaptureLocations) -> LongLine {
        let matched = self.pattern.is_match(prefix);
        let account = if matched {
            self.account_of(prefix, locs).map(<[u8]>::to_vec)
        } else {
            None
        };
        LongLine {
            matched,
            account,
            skipped: prefix.len() as u64,
        }
    }

    fn account_of<'a>(&'a self, line: &'a [u8], locs: &mut CaptureLocations) -> Option<&'a [u8]> {
        match &self.account {
            AccountRule::Fixed(name) => Some(name),
            AccountRule::Pattern(r) => {
                r.captures_read(locs, line)?;
                let (s, e) = locs.get(1)?;
                Some(&line[s..e])
            }
        }
    }
}

fn line_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .multi_line(true)
        .crlf(true)
        .build()
}

/// The identity of a file: device and inode, as the ledger stores it.
fn file_id(meta: &std::fs::Metadata) -> String {
    format!("{}:{}", meta.dev(), meta.ino())
}

/// The file being read and where.
struct OpenFile {
    file: File,
    id: String,
    offset: u64,
}

/// What survives between runs of one source.
#[derive(Default)]
struct Tail {
    /// The ledger's position has been read (first run done).
    loaded: bool,
    /// The position last saved in the ledger.
    saved: Option<LogPosition>,
    /// Kept open across runs so that after a rename the old file's tail can
    /// still be read.
    open: Option<OpenFile>,
    buf: Vec<u8>,
    warned_unattributed: bool,
}

/// A run's result before signals are sent.
struct Step {
    counts: LineCounts,
    health: RunHealth,
}

pub struct LogFileSource {
    spec: LogFileSpec,
    matcher: Result<Arc<LineMatcher>, String>,
    ctx: SourceContext,
    /// Owned by one run at a time (the blocking part takes it along).
    tail: Arc<tokio::sync::Mutex<Tail>>,
}

impl LogFileSource {
    /// Builds the source and takes its starting position now, when the
    /// daemon starts (or reloads), so that lines appended before the first
    /// scheduled run are evidence too.
    pub fn new(spec: LogFileSpec, ctx: SourceContext) -> Self {
        let matcher = LineMatcher::new(&spec.pattern, &spec.account)
            .map(Arc::new)
            .map_err(|e| format!("the pattern does not compile for byte matching: {e}"));
        let mut tail = Tail::default();
        if let Err(e) = start_position(&mut tail, &spec, ctx.store.as_ref()) {
            // The first run tries again and reports it in source health.
            tracing::warn!(source = %spec.name, error = %e, "Cannot take the log file's starting position yet");
        }
        Self {
            spec,
            matcher,
            ctx,
            tail: Arc::new(tokio::sync::Mutex::new(tail)),
        }
    }

    /// One run: read what was appended, save the position, send the signals.
    pub async fn run_once(&self) {
        let matcher = match &self.matcher {
            Ok(m) => m.clone(),
            Err(e) => return report(&self.ctx, &self.spec.name, RunHealth::Failed(e.clone())),
        };
        let mut tail = self.tail.clone().lock_owned().await;
        let spec = self.spec.clone();
        let store = self.ctx.store.clone();
        let cancel = self.ctx.shutdown.clone();
        let joined = tokio::task::spawn_blocking(move || {
            step(&mut tail, &spec, &matcher, store.as_ref(), &cancel)
        })
        .await;
        let step = match joined {
            Ok(step) => step,
            Err(e) => Step {
                counts: LineCounts::default(),
                health: RunHealth::Failed(format!("the reader task failed: {e}")),
            },
        };
        report(&self.ctx, &self.spec.name, step.health);
        self.warn_unattributed(&step.counts).await;
        self.send(step.counts).await;
    }

    async fn warn_unattributed(&self, counts: &LineCounts) {
        if counts.unattributed == 0 {
            return;
        }
        let mut tail = self.tail.lock().await;
        if !tail.warned_unattributed {
            tail.warned_unattributed = true;
            tracing::warn!(
                source = %self.spec.name, lines = counts.unattributed,
                "Matched lines where account_pattern captured no account; they are not counted (logged once)"
            );
        }
    }

    /// One signal per account, accounts resolved so a name and its appid add up.
    async fn send(&self, counts: LineCounts) {
        let mut per_account: BTreeMap<String, u64> = BTreeMap::new();
        for (raw, n) in counts.by_account {
            let raw = String::from_utf8_lossy(&raw);
            let account = match self.ctx.accounts.now().find(&raw) {
                Some(a) => a.name.clone(),
                None => raw.into_owned(),
            };
            *per_account.entry(account).or_default() += n;
        }
        for (account, n) in per_account {
            let signal = Signal {
                account,
                source: self.spec.name.clone(),
                reason: format!("log: {n} lines matched"),
                count: u32::try_from(n).unwrap_or(u32::MAX),
                cgi_path: None,
                key: None,
                received_at: Utc::now(),
            };
            if !self.ctx.send(signal).await {
                return;
            }
        }
    }
}

#[async_trait]
impl Poller for LogFileSource {
    fn name(&self) -> &str {
        &self.spec.name
    }

    async fn poll(&self, _interval: Duration) {
        self.run_once().await;
    }
}

/// The blocking part of a run: position, file identity, reading, saving.
fn step(
    tail: &mut Tail,
    spec: &LogFileSpec,
    matcher: &LineMatcher,
    store: &dyn Store,
    cancel: &CancellationToken,
) -> Step {
    let mut counts = LineCounts::default();
    let health = match follow(tail, spec, matcher, store, cancel, &mut counts) {
        Ok(()) if tail.open.is_none() => {
            RunHealth::Waiting(format!("waiting for {} to appear", spec.path.display()))
        }
        Ok(()) => RunHealth::Ok,
        Err(e) => RunHealth::Failed(e),
    };
    Step { counts, health }
}

fn follow(
    tail: &mut Tail,
    spec: &LogFileSpec,
    matcher: &LineMatcher,
    store: &dyn Store,
    cancel: &CancellationToken,
    counts: &mut LineCounts,
) -> Result<(), String> {
    let first_run = !tail.loaded;
    if first_run {
        start_position(tail, spec, store)?;
    }
    if tail.buf.len() < BUFFER {
        tail.buf = vec![0; BUFFER];
    }
    let current = stat(&spec.path)?;
    let current_id = current.as_ref().map(file_id);

    // Rotated away (or gone): finish what was written to the old file.
    if let Some(open) = tail.open.as_mut() {
        if current_id.as_deref() != Some(open.id.as_str()) {
            let replaced = current_id.is_some();
            read_on(open, matcher, &mut tail.buf, replaced, cancel, counts)
                .map_err(|e| read_error(&spec.path, e))?;
            if replaced && !cancel.is_cancelled() {
                tracing::info!(source = %spec.name, path = %spec.path.display(), "Log file rotated; following the new file");
                tail.open = None;
            }
        }
    }

    if tail.open.is_none() {
        if let Some(opened) = open_current(&spec.path, tail.saved.as_ref(), first_run)? {
            tail.open = Some(opened);
        }
    }

    if let Some(open) = tail
        .open
        .as_mut()
        .filter(|o| current_id.as_deref() == Some(o.id.as_str()))
    {
        let len = open
            .file
            .metadata()
            .map_err(|e| read_error(&spec.path, e))?
            .len();
        if len < open.offset {
            tracing::info!(source = %spec.name, path = %spec.path.display(), "Log file truncated; reading from its start");
            open.offset = 0;
        }
        read_on(open, matcher, &mut tail.buf, false, cancel, counts)
            .map_err(|e| read_error(&spec.path, e))?;
    }

    save(tail, spec, store)
}

/// Where reading starts: the ledger's saved position, or else the end of the
/// file as it is now. Cheap (one ledger read, one open): nothing is read.
fn start_position(tail: &mut Tail, spec: &LogFileSpec, store: &dyn Store) -> Result<(), String> {
    tail.saved = store
        .log_position(&spec.name, &spec.path.to_string_lossy())
        .map_err(|e| e.to_string())?;
    tail.loaded = true;
    if tail.saved.is_none() {
        tail.open = open_current(&spec.path, None, true)?;
    }
    Ok(())
}

fn stat(path: &Path) -> Result<Option<std::fs::Metadata>, String> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(path, e)),
    }
}

/// Opens the file now at `path` and picks where to start reading.
fn open_current(
    path: &Path,
    saved: Option<&LogPosition>,
    first_run: bool,
) -> Result<Option<OpenFile>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(path, e)),
    };
    // The identity of what was opened, not of what was stat'ed a moment ago.
    let meta = file.metadata().map_err(|e| read_error(path, e))?;
    let id = file_id(&meta);
    let offset = match saved {
        Some(p) if p.file_id == id && p.offset <= meta.len() => p.offset,
        // Same file but shorter: truncated while we were away.
        Some(p) if p.file_id == id => 0,
        // Another file: rotated in while we were away, or created later.
        Some(_) => 0,
        None if first_run => meta.len(),
        None => 0,
    };
    Ok(Some(OpenFile { file, id, offset }))
}

fn read_on(
    open: &mut OpenFile,
    matcher: &LineMatcher,
    buf: &mut [u8],
    eof_ends_line: bool,
    cancel: &CancellationToken,
    counts: &mut LineCounts,
) -> io::Result<()> {
    open.file.seek(SeekFrom::Start(open.offset))?;
    let scan = matcher.scan(&mut open.file, buf, eof_ends_line, cancel)?;
    open.offset += scan.consumed;
    counts.merge(scan.counts);
    Ok(())
}

/// Saves the position when it moved. A file that is gone keeps its last
/// saved position until another file takes its place.
fn save(tail: &mut Tail, spec: &LogFileSpec, store: &dyn Store) -> Result<(), String> {
    let Some(open) = &tail.open else {
        return Ok(());
    };
    let pos = LogPosition {
        file_id: open.id.clone(),
        offset: open.offset,
    };
    if tail.saved.as_ref() == Some(&pos) {
        return Ok(());
    }
    store
        .save_log_position(&spec.name, &spec.path.to_string_lossy(), &pos)
        .map_err(|e| format!("cannot save the read position: {e}"))?;
    tail.saved = Some(pos);
    Ok(())
}

fn read_error(path: &Path, e: io::Error) -> String {
    format!("cannot read {}: {e}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(pattern: &str, account: &str) -> LineMatcher {
        let account = LogAccount::Pattern(regex::Regex::new(account).unwrap());
        LineMatcher::new(&regex::Regex::new(pattern).unwrap(), &account).unwrap()
    }

    fn scan_all(m: &LineMatcher, data: &[u8], buf_len: usize, eof_ends_line: bool) -> Scan {
        let mut buf = vec![0; buf_len];
        m.scan(data, &mut buf, eof_ends_line, &CancellationToken::new())
            .unwrap()
    }

    fn count(scan: &Scan, account: &str) -> u64 {
        scan.counts
            .by_account
            .get(account.as_bytes())
            .copied()
            .unwrap_or(0)
    }

    const PATTERN: &str = r#"errcode"?\s*[:=]\s*45009"#;
    const ACCOUNT: &str = r"(wx[0-9a-f]{16})";
    const A: &str = "wx448f04719cd48f69";
    const B: &str = "wx0000000000000002";

    #[test]
    fn counts_matching_lines_per_account() {
        let m = matcher(PATTERN, ACCOUNT);
        let data = format!(
            "appid={A} errcode=45009\nappid={A} errcode=0\nappid={B} {{\"errcode\": 45009}}\nappid={A} errcode: 45009\nno account errcode=45009\n"
        );
        let scan = scan_all(&m, data.as_bytes(), BUFFER, false);
        assert_eq!(count(&scan, A), 2);
        assert_eq!(count(&scan, B), 1);
        assert_eq!(scan.counts.unattributed, 1);
        assert_eq!(scan.consumed, data.len() as u64);
    }

    #[test]
    fn a_match_across_a_newline_does_not_count() {
        // `\s*` would happily run from "errcode=" on one line to "45009" on the next.
        let m = matcher(PATTERN, ACCOUNT);
        let data = format!("appid={A} errcode=\n45009 appid={B}\nappid={B} errcode=45009\n");
        let scan = scan_all(&m, data.as_bytes(), BUFFER, false);
        assert_eq!(count(&scan, A), 0);
        assert_eq!(count(&scan, B), 1);
    }

    #[test]
    fn anchors_work_per_line_and_with_crlf() {
        let m = matcher(r"^ERR (wx[0-9a-f]{16}) 45009$", ACCOUNT);
        let data = format!("ERR {A} 45009\r\nINFO ERR {A} 45009\nERR {B} 45009\n");
        let scan = scan_all(&m, data.as_bytes(), BUFFER, false);
        assert_eq!(count(&scan, A), 1);
        assert_eq!(count(&scan, B), 1);
    }

    #[test]
    fn an_incomplete_last_line_waits_unless_the_file_is_done() {
        let m = matcher(PATTERN, ACCOUNT);
        let data = format!("{A} errcode=45009\n{B} errcode=45009");
        let scan = scan_all(&m, data.as_bytes(), BUFFER, false);
        assert_eq!((count(&scan, A), count(&scan, B)), (1, 0));
        assert_eq!(scan.consumed, (A.len() + 15) as u64);
        let scan = scan_all(&m, data.as_bytes(), BUFFER, true);
        assert_eq!((count(&scan, A), count(&scan, B)), (1, 1));
        assert_eq!(scan.consumed, data.len() as u64);
    }

    #[test]
    fn lines_split_across_reads_count_once() {
        let m = matcher(PATTERN, ACCOUNT);
        let line = format!("{A} errcode=45009 {}\n", "x".repeat(1000));
        let data = line.repeat(1000);
        // A buffer that is not a multiple of the line length splits many lines.
        let scan = scan_all(&m, data.as_bytes(), 2 * MAX_LINE + 7, false);
        assert_eq!(count(&scan, A), 1000);
        assert_eq!(scan.consumed, data.len() as u64);
    }

    #[test]
    fn a_long_line_is_judged_on_its_prefix_and_skipped_in_bounded_memory() {
        let m = matcher(PATTERN, ACCOUNT);
        let head = format!("{A} errcode=45009 ");
        let long = format!("{head}{}\n", "y".repeat(10 * 1024 * 1024));
        let late = format!("{}{B} errcode=45009\n", "z".repeat(3 * MAX_LINE));
        let data = format!("{long}{late}{B} errcode=45009\n");
        let scan = scan_all(&m, data.as_bytes(), 2 * MAX_LINE, false);
        assert_eq!(count(&scan, A), 1, "the 10 MB line matches on its prefix");
        assert_eq!(
            count(&scan, B),
            1,
            "a match beyond the prefix of a long line is not seen"
        );
        assert_eq!(scan.consumed, data.len() as u64);
    }

    #[test]
    fn an_unfinished_long_line_is_left_for_the_next_pass() {
        let m = matcher(PATTERN, ACCOUNT);
        let data = format!(
            "{A} errcode=45009\n{A} errcode=45009 {}",
            "y".repeat(5 * MAX_LINE)
        );
        let scan = scan_all(&m, data.as_bytes(), 2 * MAX_LINE, false);
        assert_eq!(count(&scan, A), 1);
        assert_eq!(scan.consumed, (A.len() + 15) as u64);
        let scan = scan_all(&m, data.as_bytes(), 2 * MAX_LINE, true);
        assert_eq!(count(&scan, A), 2);
        assert_eq!(scan.consumed, data.len() as u64);
    }

    #[test]
    fn a_fixed_account_counts_every_match() {
        let account = LogAccount::Fixed("shop".into());
        let m = LineMatcher::new(&regex::Regex::new("45009").unwrap(), &account).unwrap();
        let scan = scan_all(&m, b"45009\nok\n45009 45009\n", BUFFER, false);
        assert_eq!(count(&scan, "shop"), 2);
    }

    #[test]
    fn cancel_stops_at_a_line_boundary() {
        let m = matcher(PATTERN, ACCOUNT);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut buf = vec![0; BUFFER];
        let scan = m
            .scan(
                format!("{A} errcode=45009\n").as_bytes(),
                &mut buf,
                false,
                &cancel,
            )
            .unwrap();
        assert_eq!(scan.consumed, 0);
        assert_eq!(scan.counts.total(), 0);
    }
}
