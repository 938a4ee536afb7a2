//! The running account sets: one task a set reads its list at start, every
//! `refresh`, and (a file) within seconds of a change; a good list that
//! differs from the last is handed to the daemon as the set's new members.
//!
//! A bad list changes nothing: a read that fails, times out, does not parse
//! or ends early keeps the last good list; its error is logged once per
//! change of state, shown in `/readyz` and counted in metrics. The daemon
//! swaps its account map in one step ([`Publish`]), so members that stay
//! keep their evidence windows, in-flight clears and decision state (all
//! keyed by appid), and removed members' ledger rows stay where they are.
//! The last good list is also kept in the ledger ([`Store::set_list`]), so
//! a start while a source is down still watches every member. This module
//! does not know the daemon's runtime: it is given how to publish.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{AccountSet, Entry, ListContext, ListFrom, MemberList};
use crate::metrics::Metrics;
use crate::settings::{Account, Accounts};
use crate::store::Store;
use crate::wechat::WeChat;

/// How often a file set's file is looked at for a change (size and
/// modification time: no read, no watch API).
pub const FILE_POLL: Duration = Duration::from_secs(2);

/// Hands the sets' current members to the daemon.
pub type Publish = Arc<dyn Fn(&BTreeMap<String, Arc<[Arc<Account>]>>) + Send + Sync>;

/// A set's health, for `/readyz`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetHealth {
    pub ok: bool,
    pub error: Option<String>,
    pub members: usize,
    /// The last good read.
    pub last_refresh: Option<DateTime<Utc>>,
    /// The last good list's entries that were left out, each with why (the
    /// first [`SKIPPED_SHOWN`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// How many skipped entries `/readyz` and the log name; the rest are counted.
pub const SKIPPED_SHOWN: usize = 20;

/// Every set's last good list, its members and its health, shared by the
/// refresh tasks, reloads and `/readyz`. Cheap to clone; it outlives reloads.
#[derive(Clone, Default)]
pub struct Sets(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    /// The last good list, kept so a reload can build it with new keys.
    lists: BTreeMap<String, Arc<Vec<Entry>>>,
    members: BTreeMap<String, Arc<[Arc<Account>]>>,
    health: BTreeMap<String, SetHealth>,
}

/// What a good read changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: usize,
    pub removed: usize,
    /// Members that stay with another name or policy.
    pub changed: usize,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added + self.removed + self.changed == 0
    }

    /// `old` to `new`, by appid.
    pub fn between(old: &[Arc<Account>], new: &[Arc<Account>]) -> Diff {
        let before: HashMap<&str, &Account> =
            old.iter().map(|a| (a.appid.as_str(), &**a)).collect();
        let mut diff = Diff::default();
        let mut kept = 0;
        for account in new {
            match before.get(account.appid.as_str()) {
                None => diff.added += 1,
                Some(was) => {
                    kept += 1;
                    if was.name != account.name
                        || was.policy != account.policy
                        || was.fingerprint != account.fingerprint
                    {
                        diff.changed += 1;
                    }
                }
            }
        }
        diff.removed = old.len() - kept;
        diff
    }
}

impl Sets {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured accounts with the members of `sets`: the list read at
    /// load, else each set's last good list (this process's, else the
    /// ledger's) built with the set's current keys; sets no longer
    /// configured are forgotten. For the start and each reload.
    pub fn adopt(
        &self,
        configured: &Accounts,
        sets: &BTreeMap<String, AccountSet>,
        store: &dyn Store,
    ) -> (Accounts, Vec<String>) {
        let mut inner = self.lock();
        inner.lists.retain(|name, _| sets.contains_key(name));
        inner.health.retain(|name, _| sets.contains_key(name));
        let mut members = BTreeMap::new();
        for (name, set) in sets {
            if let Some(loaded) = set.loaded.as_ref().and_then(|l| l.members.clone()) {
                members.insert(name.clone(), loaded);
                continue;
            }
            let entries = match inner.lists.get(name) {
                Some(list) => list.to_vec(),
                None => match from_ledger(store, name) {
                    Some(entries) => entries,
                    None => continue,
                },
            };
            let mut list = MemberList {
                entries,
                skipped: Vec::new(),
            };
            members.insert(name.clone(), set.members(&mut list).into());
        }
        inner.members = members;
        super::merge_with(configured, &inner.members)
    }

    /// A good read of `set`'s list: what it changed (nothing: nothing to
    /// publish), and its skipped entries when they are not the last read's.
    fn accept(
        &self,
        set: &AccountSet,
        mut list: MemberList,
        now: DateTime<Utc>,
    ) -> (Diff, Option<Vec<String>>) {
        let members: Arc<[Arc<Account>]> = set.members(&mut list).into();
        let mut inner = self.lock();
        let empty: Arc<[Arc<Account>]> = Arc::new([]);
        let old = inner.members.get(&set.name).unwrap_or(&empty);
        let diff = Diff::between(old, &members);
        let health = inner.health.entry(set.name.clone()).or_default();
        let mut skipped = list.skipped;
        if skipped.len() > SKIPPED_SHOWN {
            let more = skipped.len() - SKIPPED_SHOWN;
            skipped.truncate(SKIPPED_SHOWN);
            skipped.push(format!("and {more} more"));
        }
        let news = (health.skipped != skipped).then(|| skipped.clone());
        *health = SetHealth {
            ok: true,
            error: None,
            members: members.len(),
            last_refresh: Some(now),
            skipped,
        };
        inner.lists.insert(set.name.clone(), Arc::new(list.entries));
        inner.members.insert(set.name.clone(), members);
        (diff, news)
    }

    /// A failed read: true when the error is news (log it once).
    pub(crate) fn failed(&self, set: &str, error: &str) -> (bool, usize) {
        let mut inner = self.lock();
        let members = inner.members.get(set).map_or(0, |m| m.len());
        let health = inner.health.entry(set.to_string()).or_default();
        let news = health.error.as_deref() != Some(error);
        health.ok = false;
        health.error = Some(error.to_string());
        health.members = members;
        (news, members)
    }

    /// Every set's members now.
    pub fn members(&self) -> BTreeMap<String, Arc<[Arc<Account>]>> {
        self.lock().members.clone()
    }

    /// Every set's health, for `/readyz`.
    pub fn health(&self) -> BTreeMap<String, SetHealth> {
        self.lock().health.clone()
    }
}

/// `set`'s last good list as the ledger keeps it; `None` when it has none
/// or cannot be read (said in the log: the set then waits for its source).
fn from_ledger(store: &dyn Store, set: &str) -> Option<Vec<Entry>> {
    let document = match store.set_list(set) {
        Ok(document) => document?,
        Err(e) => {
            tracing::warn!(set, error = %e, "Cannot read the account set's last good list from the ledger");
            return None;
        }
    };
    let list = super::parse_list(&document).ok()?;
    tracing::info!(
        set,
        members = list.entries.len(),
        "Account set starts with its last good list from the ledger"
    );
    Some(list.entries)
}

/// Keeps `set`'s list in the ledger, off the runtime's threads.
async fn save(ctx: &RefreshContext, set: &str, entries: Arc<Vec<Entry>>) {
    let (store, name) = (ctx.store.clone(), set.to_string());
    let saved = tokio::task::spawn_blocking(move || {
        let document = serde_json::to_string(&*entries).unwrap_or_else(|_| "[]".into());
        store.save_set_list(&name, &document, Utc::now())
    })
    .await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(set, error = %e, "Cannot keep the account set's list in the ledger; the next good read tries again")
        }
        Err(e) => {
            tracing::warn!(set, error = %e, "Cannot keep the account set's list in the ledger")
        }
    }
}

/// What a set's task needs from the daemon.
#[derive(Clone)]
pub struct RefreshContext {
    pub sets: Sets,
    /// Keeps each set's last good list.
    pub store: Arc<dyn Store>,
    pub wechat: Arc<WeChat>,
    pub metrics: Arc<Metrics>,
    pub publish: Publish,
    /// Cancelled at shutdown and before a reload starts the next tasks.
    pub shutdown: CancellationToken,
}

/// Starts one task a set; each stops on the context's shutdown.
pub fn start(
    ctx: &RefreshContext,
    sets: &BTreeMap<String, AccountSet>,
    configured: &Accounts,
) -> Vec<tokio::task::JoinHandle<()>> {
    sets.values()
        .filter_map(|set| {
            let component = configured.get(&set.component)?.clone();
            Some(tokio::spawn(run(ctx.clone(), set.clone(), component)))
        })
        .collect()
}

async fn run(ctx: RefreshContext, set: AccountSet, component: Arc<Account>) {
    // The first good read is kept whatever it changed: the list the set
    // started with may have come from a file the ledger has not seen.
    let mut kept = false;
    loop {
        // Counted from the read's start, so the period does not drift by
        // how long a read and its keeping take.
        let next = tokio::time::Instant::now() + set.refresh;
        // Taken before the read: a write during it is a change still to read.
        let seen = match &set.from {
            ListFrom::File(file) => file.stamp(),
            _ => None,
        };
        if let Some(entries) = refresh_once(&ctx, &set, &component).await {
            if !kept || entries.1 {
                save(&ctx, &set.name, entries.0).await;
                kept = true;
            }
        }
        if !wait_for_change(&ctx, &set, next, seen).await {
            return;
        }
    }
}

/// Reads the list once and applies what it changed; after a good read, the
/// list and whether it changed anything.
pub async fn refresh_once(
    ctx: &RefreshContext,
    set: &AccountSet,
    component: &Account,
) -> Option<(Arc<Vec<Entry>>, bool)> {
    let list_ctx = ListContext {
        wechat: &ctx.wechat,
        component,
        shutdown: &ctx.shutdown,
    };
    // Real time, for the log: how long a refresh holds its set up.
    let started = std::time::Instant::now();
    let read = set.from.list(&list_ctx).await;
    if ctx.shutdown.is_cancelled() {
        return None;
    }
    match read {
        Ok(list) => {
            let now = Utc::now();
            let (diff, skipped) = ctx.sets.accept(set, list, now);
            let members = ctx.sets.health().get(&set.name).map_or(0, |h| h.members);
            ctx.metrics
                .set_refreshed(&set.name, members, now.timestamp());
            if !diff.is_empty() {
                (ctx.publish)(&ctx.sets.members());
                let took_ms = started.elapsed().as_millis() as u64;
                tracing::info!(set = %set.name, members, added = diff.added, removed = diff.removed, changed = diff.changed, took_ms, "Account set's members changed");
                crate::memory::release();
            }
            if let Some(skipped) = skipped.filter(|s| !s.is_empty()) {
                tracing::warn!(set = %set.name, skipped = %skipped.join("; "), "Account set's list has entries that were skipped");
            }
            let entries = ctx.sets.lock().lists.get(&set.name).cloned()?;
            Some((entries, !diff.is_empty()))
        }
        Err(error) => {
            let (news, members) = ctx.sets.failed(&set.name, &error);
            ctx.metrics.set_refresh_failed(&set.name, members);
            if news {
                tracing::warn!(set = %set.name, members, error = %error, "Account set's list could not be read; keeping the last good list");
            }
            None
        }
    }
}

/// Waits until `deadline`, or (a file) a change of the file; false at
/// shutdown.
async fn wait_for_change(
    ctx: &RefreshContext,
    set: &AccountSet,
    deadline: tokio::time::Instant,
    seen: Option<super::file::Stamp>,
) -> bool {
    let ListFrom::File(file) = &set.from else {
        return tokio::select! {
            _ = ctx.shutdown.cancelled() => false,
            _ = tokio::time::sleep_until(deadline) => true,
        };
    };
    loop {
        let next = (tokio::time::Instant::now() + FILE_POLL).min(deadline);
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return false,
            _ = tokio::time::sleep_until(next) => {}
        }
        if next >= deadline || file.stamp() != seen {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySettings;
    use crate::secret::Secret;
    use crate::settings::Credential;

    fn member(appid: &str, name: &str, cap: u32) -> Arc<Account> {
        let policy = PolicySettings {
            monthly_cap: cap,
            ..PolicySettings::default()
        };
        let credential = Credential::Component {
            name: "platform".into(),
            component_appid: "wx00000000000000c0".into(),
            secret: Secret::new("s".to_string()),
        };
        Arc::new(Account::member(
            name.into(),
            appid.into(),
            credential,
            None,
            Vec::new(),
            policy,
        ))
    }

    #[test]
    fn a_diff_counts_by_appid() {
        let a = || member("wx0000000000000001", "a", 8);
        let b = || member("wx0000000000000002", "b", 8);
        let c = || member("wx0000000000000003", "c", 8);
        // (before, after, want)
        type Case = (Vec<Arc<Account>>, Vec<Arc<Account>>, Diff);
        let table: Vec<Case> = vec![
            (vec![a(), b()], vec![a(), b()], Diff::default()),
            (
                vec![a()],
                vec![a(), b(), c()],
                Diff {
                    added: 2,
                    removed: 0,
                    changed: 0,
                },
            ),
            (
                vec![a(), b(), c()],
                vec![b()],
                Diff {
                    added: 0,
                    removed: 2,
                    changed: 0,
                },
            ),
            (
                vec![a(), b()],
                vec![member("wx0000000000000001", "renamed", 8), c()],
                Diff {
                    added: 1,
                    removed: 1,
                    changed: 1,
                },
            ),
            (
                vec![a()],
                vec![member("wx0000000000000001", "a", 3)],
                Diff {
                    added: 0,
                    removed: 0,
                    changed: 1,
                },
            ),
        ];
        for (i, (before, after, want)) in table.into_iter().enumerate() {
            assert_eq!(Diff::between(&before, &after), want, "case {i}");
        }
    }
}
