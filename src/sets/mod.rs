//! Account sets (SPEC 4a): a third-party platform's authorizers, kept fresh
//! from a list instead of a table each. A member is an `authorizer` cleared
//! through its set's component (`component/clear_quota/v2`), with the set's
//! token source (`{appid}` filled in), notifiers and policy.
//!
//! This module reads and checks `[account_sets.NAME]`, parses a list into
//! members and builds them into accounts; [`refresh`] keeps each set's list
//! fresh in the daemon and applies a changed one as a difference. It does not
//! decide anything about clears, and a list it cannot read changes nothing.
//!
//! # Layout
//!
//! - this file: the family. [`AccountSetConfig`] (the table as written), the
//!   validated [`AccountSet`], [`Lister`] (how a kind reads its list), the
//!   registry of kinds ([`ListFrom`]), the list parser ([`parse_list`]) and
//!   the members a list makes ([`AccountSet::members`]).
//! - one file per kind of list, each holding its keys' checks and how it
//!   reads: [`wechat`] (`component/api_get_authorizer_list`), [`file`],
//!   [`command`].
//! - [`refresh`]: the running sets, their health and metrics.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::policy::PolicySettings;
use crate::settings::{
    is_appid, is_name, ser, token_source, Account, AccountKind, Accounts, Checker, Choice,
    Credential, PolicyConfig, Table, TokenFrom, TokenSource,
};
use crate::wechat::WeChat;

pub mod command;
pub mod file;
pub mod refresh;
pub mod wechat;

/// `refresh` when unset: 10 minutes.
const DEFAULT_REFRESH: Duration = Duration::from_secs(600);

/// `[account_sets.NAME]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountSetConfig {
    pub component: Option<String>,
    pub from: Option<Choice<FromKind>>,
    pub file: Option<PathBuf>,
    pub command: Option<Vec<String>>,
    pub refresh: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_command: Option<Vec<String>>,
    pub notify: Option<Vec<String>>,
    pub policy: PolicyConfig,
}

/// `[account_sets.NAME]` kept whole until it is checked, so that an unknown
/// key in one set leaves the rest of the file checked (as a source's table).
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct SetTable(Table);

/// `from`: which kind of list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FromKind {
    Wechat,
    File,
    Command,
}

/// Where a set's list comes from, validated: one variant a kind, each
/// defined in its own file.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ListFrom {
    Wechat(wechat::WeChatList),
    File(file::FileList),
    Command(command::CommandList),
}

/// How a kind of list is read, once.
#[async_trait]
pub trait Lister {
    /// The list now, or why not (the last good list then stays).
    async fn list(&self, ctx: &ListContext<'_>) -> Result<MemberList, String>;
}

/// What a read needs from the daemon.
pub struct ListContext<'a> {
    /// For WeChat's authorizer list.
    pub wechat: &'a WeChat,
    /// The set's component, whose token reads WeChat's list.
    pub component: &'a Account,
    /// A read stops early at shutdown.
    pub shutdown: &'a CancellationToken,
}

impl ListFrom {
    /// The kind's own keys, checked; the other kinds' keys are refused.
    fn validate(
        kind: FromKind,
        raw: &AccountSetConfig,
        at: &str,
        ck: &mut Checker<'_>,
        component: &Account,
    ) -> Option<ListFrom> {
        let keys = [
            ("file", raw.file.is_some(), FromKind::File),
            ("command", raw.command.is_some(), FromKind::Command),
        ];
        for (key, set, owner) in keys {
            if set && owner != kind {
                ck.err::<()>(
                    &format!("{at}.{key}"),
                    format!(
                        "is for from = \"{key}\", and this set has from = \"{}\"",
                        kind.name()
                    ),
                );
            }
        }
        match kind {
            FromKind::Wechat => wechat::WeChatList::validate(at, ck, component).map(Self::Wechat),
            FromKind::File => file::FileList::validate(raw, at, ck).map(Self::File),
            FromKind::Command => command::CommandList::validate(raw, at, ck).map(Self::Command),
        }
    }

    pub async fn list(&self, ctx: &ListContext<'_>) -> Result<MemberList, String> {
        match self {
            Self::Wechat(l) => l.list(ctx).await,
            Self::File(l) => l.list(ctx).await,
            Self::Command(l) => l.list(ctx).await,
        }
    }
}

impl FromKind {
    fn name(self) -> &'static str {
        match self {
            Self::Wechat => "wechat",
            Self::File => "file",
            Self::Command => "command",
        }
    }
}

/// A validated `[account_sets.NAME]`.
#[derive(Debug, Clone, Serialize)]
pub struct AccountSet {
    pub name: String,
    /// The `[accounts.NAME]` of the platform.
    pub component: String,
    #[serde(flatten)]
    pub from: ListFrom,
    #[serde(serialize_with = "ser::duration")]
    pub refresh: Duration,
    /// Each member's token source, `{appid}` still to be filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenSource>,
    pub notify: Vec<String>,
    /// `[policy]` with the set's keys on top; a member's own keys go on top
    /// of this.
    pub policy: PolicySettings,
    /// The component's secret, for `component/clear_quota/v2`: no member
    /// needs a token to be cleared.
    #[serde(skip)]
    credential: Credential,
    /// The list `check` read (a `file` set): what the daemon starts with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<Loaded>,
}

/// A list as `check` read it.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// Members it makes; absent when the list could not be read.
    #[serde(skip)]
    pub members: Option<Arc<[Arc<Account>]>>,
    pub member_count: usize,
    /// Entries left out, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Why the list could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One entry of a list, as written; also what the ledger keeps of a set's
/// last good list (nothing else, so never a refresh token).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub appid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Checked to be policy keys; read on top of the set's policy when the
    /// member is built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
}

/// A list read: its good entries and the ones left out, each named with why.
#[derive(Debug, Default)]
pub struct MemberList {
    pub entries: Vec<Entry>,
    pub skipped: Vec<String>,
}

/// An entry as written, before its appid is checked.
#[derive(Deserialize)]
#[serde(untagged)]
enum WrittenEntry {
    Appid(String),
    Object(Box<ObjectEntry>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectEntry {
    appid: String,
    name: Option<String>,
    policy: Option<serde_json::Value>,
}

/// A `file` or `command` list: a JSON array of appids or
/// `{"appid", "name"?, "policy"?}`. A document that is not such an array (a
/// truncated file) is an error: the last good list stays. An entry that is
/// not is skipped and named, and the rest is the list.
pub fn parse_list(text: &str) -> Result<MemberList, String> {
    let items: Vec<serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| format!("the list is not a JSON array of members: {e}"))?;
    let mut list = MemberList::default();
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let n = i + 1;
        let entry = match serde_json::from_value::<WrittenEntry>(item) {
            Ok(WrittenEntry::Appid(appid)) => Entry {
                appid,
                name: None,
                policy: None,
            },
            Ok(WrittenEntry::Object(o)) => {
                let ObjectEntry {
                    appid,
                    name,
                    policy,
                } = *o;
                Entry {
                    appid,
                    name,
                    policy,
                }
            }
            Err(_) => {
                list.skipped.push(format!(
                    "entry {n}: not an appid nor {{\"appid\", \"name\"?, \"policy\"?}}"
                ));
                continue;
            }
        };
        if let Err(why) = check_entry(&entry, &mut seen, &mut names) {
            list.skipped.push(format!("entry {n}: {why}"));
            continue;
        }
        list.entries.push(entry);
    }
    Ok(list)
}

fn check_entry(
    entry: &Entry,
    seen: &mut HashSet<String>,
    names: &mut HashSet<String>,
) -> Result<(), String> {
    if !is_appid(&entry.appid) {
        return Err(format!(
            "`{}` is not an appid (wx followed by 16 hex digits)",
            entry.appid.chars().take(40).collect::<String>()
        ));
    }
    if let Some(name) = &entry.name {
        if !is_name(name) {
            return Err(format!(
                "{}: names use letters, digits, '-' and '_'",
                entry.appid
            ));
        }
    }
    if let Some(policy) = &entry.policy {
        if let Err(e) = serde_json::from_value::<PolicyConfig>(policy.clone()) {
            return Err(format!("{}: policy: {e}", entry.appid));
        }
    }
    if !seen.insert(entry.appid.clone()) {
        return Err(format!("{} is listed twice", entry.appid));
    }
    let name = entry.name.clone().unwrap_or_else(|| entry.appid.clone());
    if !names.insert(name.clone()) {
        return Err(format!("{}: the name `{name}` is taken", entry.appid));
    }
    Ok(())
}

impl AccountSet {
    /// The members a list makes. An entry whose own policy does not check is
    /// skipped and named in `list.skipped`.
    pub fn members(&self, list: &mut MemberList) -> Vec<Arc<Account>> {
        let mut out = Vec::with_capacity(list.entries.len());
        for entry in &list.entries {
            match self.member(entry) {
                Ok(account) => out.push(Arc::new(account)),
                Err(why) => list.skipped.push(format!("{}: {why}", entry.appid)),
            }
        }
        out
    }

    fn member(&self, entry: &Entry) -> Result<Account, String> {
        let policy = match &entry.policy {
            None => self.policy.clone(),
            Some(written) => member_policy(written, &self.policy)?,
        };
        let fill = |s: &str| s.replace("{appid}", &entry.appid);
        let token = self.token.as_ref().map(|t| match t {
            TokenSource::File(path) => {
                TokenSource::File(PathBuf::from(fill(&path.to_string_lossy())))
            }
            TokenSource::Command(argv) => {
                TokenSource::Command(argv.iter().map(|a| fill(a)).collect())
            }
        });
        Ok(Account::member(
            entry.name.clone().unwrap_or_else(|| entry.appid.clone()),
            entry.appid.clone(),
            self.credential.clone(),
            token,
            self.notify.clone(),
            policy,
        ))
    }
}

/// A member's `policy` on top of its set's, checked as a table's would be.
fn member_policy(
    written: &serde_json::Value,
    base: &PolicySettings,
) -> Result<PolicySettings, String> {
    let written: PolicyConfig =
        serde_json::from_value(written.clone()).map_err(|e| format!("policy: {e}"))?;
    let figment = figment::Figment::new();
    let locator = crate::settings::Locator::new(&figment, None);
    let resolver = crate::settings::SecretResolver::from_env(None);
    let mut ck = Checker::new(&locator, &resolver);
    let policy = written.validate(&mut ck, "policy", base);
    match ck.into_errors().first() {
        None => Ok(policy),
        Some(e) => Err(format!(
            "{} {}",
            e.key.as_deref().unwrap_or("policy"),
            e.message
        )),
    }
}

/// Checks every `[account_sets.NAME]`; `accounts` are the configured ones
/// (the component must be among them), `notifiers` the names `notify` may
/// list. A `file` set's list is read here, so `check` reports it.
pub fn validate(
    ck: &mut Checker<'_>,
    raw: BTreeMap<String, SetTable>,
    accounts: &Accounts,
    defaults: &PolicySettings,
    notifiers: &BTreeSet<String>,
) -> BTreeMap<String, AccountSet> {
    let mut out = BTreeMap::new();
    for (name, SetTable(table)) in raw {
        let at = format!("account_sets.{name}");
        if !is_name(&name) {
            ck.err::<()>(&at, "set names use letters, digits, '-' and '_'");
        }
        let Some(set) = ck.table::<AccountSetConfig>(&at, table) else {
            continue;
        };
        if let Some(set) = validate_one(ck, &at, &name, set, accounts, defaults, notifiers) {
            out.insert(name, set);
        }
    }
    out
}

fn validate_one(
    ck: &mut Checker<'_>,
    at: &str,
    name: &str,
    raw: AccountSetConfig,
    accounts: &Accounts,
    defaults: &PolicySettings,
    notifiers: &BTreeSet<String>,
) -> Option<AccountSet> {
    for n in raw.notify.iter().flatten() {
        if !notifiers.contains(n) {
            ck.err::<()>(
                &format!("{at}.notify"),
                format!("names notifier `{n}`, which is not in [notifiers]"),
            );
        }
    }
    let policy = raw.policy.validate(ck, &format!("{at}.policy"), defaults);
    let refresh = ck.duration(
        &format!("{at}.refresh"),
        raw.refresh.as_deref(),
        DEFAULT_REFRESH,
    );
    if refresh < Duration::from_secs(1) {
        ck.err::<()>(&format!("{at}.refresh"), "must be at least 1s");
    }
    let token = token_template(ck, at, &raw);
    let key = format!("{at}.from");
    let kind = match &raw.from {
        Some(kind) => ck.known(&key, kind),
        None => ck.err(&key, "is required (wechat, file or command)"),
    };
    let (component, credential) = component(ck, at, raw.component.as_deref(), accounts)?;
    let from = ListFrom::validate(kind?, &raw, at, ck, &component)?;
    let mut set = AccountSet {
        name: name.to_string(),
        component: component.name.clone(),
        from,
        refresh,
        token,
        notify: raw.notify.unwrap_or_default(),
        policy,
        credential,
        loaded: None,
    };
    if let ListFrom::File(file) = &set.from {
        set.loaded = Some(set.load(file.read_now()));
    }
    Some(set)
}

impl AccountSet {
    /// What a list read at start makes.
    fn load(&self, read: Result<MemberList, String>) -> Loaded {
        match read {
            Ok(mut list) => {
                let members = self.members(&mut list);
                Loaded {
                    member_count: members.len(),
                    members: Some(members.into()),
                    skipped: list.skipped,
                    error: None,
                }
            }
            Err(error) => Loaded {
                members: None,
                member_count: 0,
                skipped: Vec::new(),
                error: Some(error),
            },
        }
    }
}

/// The set's component: a configured account of kind = "component" with a
/// secret, and the credential its members clear with.
fn component(
    ck: &mut Checker<'_>,
    at: &str,
    name: Option<&str>,
    accounts: &Accounts,
) -> Option<(Arc<Account>, Credential)> {
    let key = format!("{at}.component");
    let name = ck.required(&key, name)?;
    let Some(platform) = accounts.get(name) else {
        return ck.err(
            &key,
            format!(
                "names account `{name}`, which is not a configured account of kind = \"component\""
            ),
        );
    };
    match (&platform.kind, &platform.credential) {
        (AccountKind::Component, Credential::Secret(secret)) => {
            let credential = Credential::Component {
                name: name.to_string(),
                component_appid: platform.appid.clone(),
                secret: secret.clone(),
            };
            Some((platform.clone(), credential))
        }
        (AccountKind::Component, _) => ck.err(&key, format!("component `{name}` needs a secret: its members are cleared with component/clear_quota/v2")),
        _ => ck.err(&key, format!("account `{name}` is not of kind = \"component\"")),
    }
}

/// `token_file` or `token_command`, `{appid}` kept for each member.
fn token_template(ck: &mut Checker<'_>, at: &str, raw: &AccountSetConfig) -> Option<TokenSource> {
    token_source(ck, at, raw.token_file.as_ref(), raw.token_command.as_ref()).flatten()
}

/// The configured accounts with every set's members, as `members` gives
/// them (a set absent from it has none), and what the merge left out.
pub fn merge_with(
    configured: &Accounts,
    members: &BTreeMap<String, Arc<[Arc<Account>]>>,
) -> (Accounts, Vec<String>) {
    configured.with_members(members)
}

/// [`merge_with`] the lists read at load (a `file` set's).
pub fn merge(
    configured: &Accounts,
    sets: &BTreeMap<String, AccountSet>,
) -> (Accounts, Vec<String>) {
    merge_with(configured, &loaded_members(sets))
}

/// Each set's members as read at load, for those that were.
pub fn loaded_members(
    sets: &BTreeMap<String, AccountSet>,
) -> BTreeMap<String, Arc<[Arc<Account>]>> {
    sets.iter()
        .filter_map(|(name, set)| {
            let members = set.loaded.as_ref()?.members.clone()?;
            Some((name.clone(), members))
        })
        .collect()
}

/// A `wechat_quota` source's `@NAME` must be an account set whose members
/// have a token source: quota reads need a token, and a member is cleared
/// through its component without one.
pub fn check_polled_sets(
    ck: &mut Checker<'_>,
    sources: &BTreeMap<String, crate::sources::SourceSpec>,
    sets: &BTreeMap<String, AccountSet>,
) {
    for (name, source) in sources {
        let crate::sources::SourceSpec::WechatQuota(spec) = source else {
            continue;
        };
        let key = format!("sources.{name}.accounts");
        for set in spec.accounts.iter().filter_map(|a| a.strip_prefix('@')) {
            match sets.get(set) {
                None => {
                    ck.err::<()>(
                        &key,
                        format!("names `@{set}`, which is not an [account_sets] table"),
                    );
                }
                Some(s) if s.token.is_none() => {
                    ck.err::<()>(&key, format!("polls `@{set}`, whose members have no token source: give [account_sets.{set}] a token_file or token_command (\"{{appid}}\" is each member's)"));
                }
                Some(_) => {}
            }
        }
    }
}

/// Whether the component can read WeChat's list: it needs a token.
fn has_token(component: &Account) -> bool {
    matches!(
        component.token_from(),
        Some(TokenFrom::File(_) | TokenFrom::Command(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "wx0000000000000001";
    const B: &str = "wx0000000000000002";

    #[test]
    fn a_list_keeps_good_entries_and_names_the_bad_ones() {
        // (document, appids kept, skipped entries' starts)
        let table: &[(&str, &[&str], &[&str])] = &[
            (r#"[]"#, &[], &[]),
            (
                &format!(r#"["{A}", {{"appid": "{B}", "name": "shop"}}]"#),
                &[A, B],
                &[],
            ),
            (
                &format!(r#"["{A}", "wx12", 7, "{A}"]"#),
                &[A],
                &[
                    "entry 2: `wx12`",
                    "entry 3:",
                    "entry 4: wx0000000000000001 is listed twice",
                ],
            ),
            (
                &format!(r#"[{{"appid": "{A}", "name": "x"}}, {{"appid": "{B}", "name": "x"}}]"#),
                &[A],
                &["entry 2: wx0000000000000002: the name `x`"],
            ),
            (
                &format!(
                    r#"[{{"appid": "{A}", "policy": {{"nope": 1}}}}, {{"appid": "{B}", "name": "a b"}}]"#
                ),
                &[],
                &["entry 1:", "entry 2:"],
            ),
        ];
        for (doc, kept, skipped) in table {
            let list = parse_list(doc).unwrap();
            let got: Vec<_> = list.entries.iter().map(|e| e.appid.as_str()).collect();
            assert_eq!(&got, kept, "{doc}");
            assert_eq!(
                list.skipped.len(),
                skipped.len(),
                "{doc}: {:?}",
                list.skipped
            );
            for (s, want) in list.skipped.iter().zip(skipped.iter()) {
                assert!(s.starts_with(want), "{doc}: {s} does not start with {want}");
            }
        }
    }

    #[test]
    fn a_document_that_is_not_a_list_is_an_error() {
        for doc in [
            "",
            &format!(r#"["{A}", "{B}""#),
            r#"{"appid": "wx0000000000000001"}"#,
        ] {
            assert!(parse_list(doc).is_err(), "{doc}");
        }
    }
}
