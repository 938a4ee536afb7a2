//! `[accounts.NAME]`: the WeChat accounts quotawatch clears for, each with
//! one clear credential, an optional token source beside it (SPEC 4a), and
//! its policy on top of `[policy]`; and [`Accounts`], the validated set that
//! signals look accounts up in, by name or appid.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::check::{is_name, Checker, Choice};
use super::policy::PolicyConfig;
use crate::policy::PolicySettings;
use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountConfig {
    pub appid: Option<String>,
    pub kind: Option<Choice<AccountKind>>,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub token_command: Option<Vec<String>>,
    pub component: Option<String>,
    pub notify: Option<Vec<String>>,
    pub policy: PolicyConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    OfficialAccount,
    MiniProgram,
    Component,
    Authorizer,
}

/// How quotawatch makes a full clear for an account: its clear credential.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The appsecret: stable_token and `clear_quota/v2`.
    Secret(Secret),
    /// A token some other system keeps fresh in a file.
    TokenFile(PathBuf),
    /// A command whose stdout is a token.
    TokenCommand(Vec<String>),
    /// An authorizer cleared through its managing platform's
    /// `component/clear_quota/v2`.
    Component {
        name: String,
        component_appid: String,
        secret: Secret,
    },
}

/// A token source beside a secret or a component (SPEC 4a): the token for
/// the calls that need one (quota reads, single-API clears) while the full
/// clear goes through the token-free endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    File(PathBuf),
    Command(Vec<String>),
}

/// Where a token call gets its token: see [`Account::token_from`].
#[derive(Debug, Clone, Copy)]
pub enum TokenFrom<'a> {
    File(&'a Path),
    Command(&'a [String]),
    /// `stable_token` with the account's own secret.
    StableToken(&'a Secret),
}

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub name: String,
    pub appid: String,
    pub kind: AccountKind,
    /// How a full clear is made.
    pub credential: Credential,
    /// Tokens for token calls beside a secret or a component; `None` when the
    /// clear credential is itself a token source, or there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenSource>,
    /// Notifier names; empty means every notifier.
    pub notify: Vec<String>,
    pub policy: PolicySettings,
    /// Changes whenever the appid, kind or credential changes: a disable caused
    /// by a configuration error lasts until then.
    pub fingerprint: String,
}

/// The validated accounts by config name, with an appid index: signals name
/// accounts either way, on the hot path.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Accounts {
    by_name: BTreeMap<String, Arc<Account>>,
    #[serde(skip)]
    by_appid: HashMap<String, String>,
    /// Each account set's members by name, for a source that polls a set
    /// (`accounts = ["@NAME"]`).
    #[serde(skip)]
    by_set: BTreeMap<String, Arc<[String]>>,
}

/// The accounts as they are now: account sets change them while the daemon
/// runs, and a source holding this sees each change. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LiveAccounts(Arc<std::sync::RwLock<Arc<Accounts>>>);

impl LiveAccounts {
    pub fn now(&self) -> Arc<Accounts> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, accounts: Arc<Accounts>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = accounts;
    }
}

impl From<Arc<Accounts>> for LiveAccounts {
    fn from(accounts: Arc<Accounts>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(accounts)))
    }
}

impl Account {
    /// An account set's member (SPEC 4a): an authorizer cleared through its
    /// set's component, with the set's token source, notifiers and policy.
    pub fn member(
        name: String,
        appid: String,
        credential: Credential,
        token: Option<TokenSource>,
        notify: Vec<String>,
        policy: PolicySettings,
    ) -> Account {
        let kind = AccountKind::Authorizer;
        let fingerprint = fingerprint(&appid, kind, &credential, token.as_ref());
        Account {
            name,
            appid,
            kind,
            credential,
            token,
            notify,
            policy,
            fingerprint,
        }
    }

    /// Where token calls get their token: the token source beside the clear
    /// credential, else a token clear credential, else `stable_token` with the
    /// secret (not for a component: its token needs the
    /// component_verify_ticket, which only the platform's server receives).
    /// `None`: the account cannot make token calls.
    pub fn token_from(&self) -> Option<TokenFrom<'_>> {
        match (&self.token, &self.credential) {
            (Some(TokenSource::File(path)), _) | (None, Credential::TokenFile(path)) => {
                Some(TokenFrom::File(path))
            }
            (Some(TokenSource::Command(argv)), _) | (None, Credential::TokenCommand(argv)) => {
                Some(TokenFrom::Command(argv))
            }
            (None, Credential::Secret(secret)) if self.kind != AccountKind::Component => {
                Some(TokenFrom::StableToken(secret))
            }
            (None, _) => None,
        }
    }
}

impl Accounts {
    /// These accounts and an account set's members (SPEC 4a). A member whose
    /// appid is one of these accounts is that account; one whose name is
    /// taken is left out. Both are said in the returned notes, for `check`
    /// and the log.
    pub fn with_members<'m>(
        &self,
        sets: impl IntoIterator<Item = (&'m String, &'m Arc<[Arc<Account>]>)>,
    ) -> (Accounts, Vec<String>) {
        let mut out = self.clone();
        let mut notes = Vec::new();
        for (set, members) in sets {
            let names = out.add_members(&self.by_appid, members, &mut notes);
            out.by_set.insert(set.clone(), names.into());
        }
        (out, notes)
    }

    /// Adds a set's members (`own`: the appids of the accounts with a table);
    /// the names of those it added.
    fn add_members(
        &mut self,
        own: &HashMap<String, String>,
        members: &[Arc<Account>],
        notes: &mut Vec<String>,
    ) -> Vec<String> {
        let mut added = Vec::with_capacity(members.len());
        for member in members {
            if let Some(own) = own.get(&member.appid) {
                notes.push(format!(
                    "member {} has its own table [accounts.{own}]: that account is used",
                    member.appid
                ));
                continue;
            }
            if let Some(other) = self.by_name.get(&member.name) {
                notes.push(format!(
                    "member {} is left out: its name `{}` is already account {}'s",
                    member.appid, member.name, other.appid
                ));
                continue;
            }
            if self.by_appid.contains_key(&member.appid) {
                notes.push(format!(
                    "member {} is left out: another set lists it too",
                    member.appid
                ));
                continue;
            }
            self.by_appid
                .insert(member.appid.clone(), member.name.clone());
            self.by_name.insert(member.name.clone(), member.clone());
            added.push(member.name.clone());
        }
        added
    }

    /// The names of an account set's members; `None` for no such set.
    pub fn set_members(&self, set: &str) -> Option<&[String]> {
        self.by_set.get(set).map(|names| &names[..])
    }

    /// An account by config name or by appid.
    pub fn find(&self, name_or_appid: &str) -> Option<&Arc<Account>> {
        self.by_name.get(name_or_appid).or_else(|| {
            self.by_appid
                .get(name_or_appid)
                .and_then(|name| self.by_name.get(name))
        })
    }

    /// Changes every account's policy; names, appids and credentials stay, so
    /// the index does too (`quotawatch simulate` turns `dry_run` off).
    pub fn edit_policies(&mut self, edit: impl Fn(&mut PolicySettings)) {
        for account in self.by_name.values_mut() {
            edit(&mut Arc::make_mut(account).policy);
        }
    }
}

impl std::ops::Deref for Accounts {
    type Target = BTreeMap<String, Arc<Account>>;

    fn deref(&self) -> &Self::Target {
        &self.by_name
    }
}

impl<'a> IntoIterator for &'a Accounts {
    type Item = (&'a String, &'a Arc<Account>);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Arc<Account>>;

    fn into_iter(self) -> Self::IntoIter {
        self.by_name.iter()
    }
}

pub fn is_appid(s: &str) -> bool {
    s.len() == 18 && s.starts_with("wx") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Validates every account; `notifiers` are the names `notify` may list.
pub fn validate(
    ck: &mut Checker<'_>,
    raw: BTreeMap<String, AccountConfig>,
    defaults: &PolicySettings,
    notifiers: &BTreeSet<String>,
) -> Accounts {
    // Components first: authorizers borrow their platform's appid and secret.
    let mut order: Vec<_> = raw.into_iter().collect();
    order.sort_by_key(|(_, a)| !matches!(a.kind, Some(Choice::Known(AccountKind::Component))));
    let mut out: BTreeMap<String, Arc<Account>> = BTreeMap::new();
    let mut by_appid: HashMap<String, String> = HashMap::new();
    for (name, acc) in order {
        let p = format!("accounts.{name}");
        if !is_name(&name) {
            ck.err::<()>(&p, "account names use letters, digits, '-' and '_'");
        }
        if let Some(account) = account(ck, &p, &name, acc, defaults, notifiers, &out) {
            if let Some(other) = by_appid.insert(account.appid.clone(), name.clone()) {
                ck.err::<()>(
                    &format!("{p}.appid"),
                    format!("is also the appid of account `{other}`"),
                );
            }
            out.insert(name, Arc::new(account));
        }
    }
    Accounts {
        by_name: out,
        by_appid,
        by_set: BTreeMap::new(),
    }
}

fn account(
    ck: &mut Checker<'_>,
    p: &str,
    name: &str,
    raw: AccountConfig,
    defaults: &PolicySettings,
    notifiers: &BTreeSet<String>,
    known: &BTreeMap<String, Arc<Account>>,
) -> Option<Account> {
    let appid = ck.required(&format!("{p}.appid"), raw.appid.clone())?;
    if !is_appid(&appid) {
        ck.err::<()>(
            &format!("{p}.appid"),
            format!("`{appid}` is not an appid (wx followed by 16 hex digits)"),
        );
    }
    let key = format!("{p}.kind");
    let kind = match &raw.kind {
        Some(kind) => ck.known(&key, kind)?,
        None => {
            return ck.err(
                &key,
                "is required (official_account, mini_program, component or authorizer)",
            )
        }
    };
    for n in raw.notify.iter().flatten() {
        if !notifiers.contains(n) {
            ck.err::<()>(
                &format!("{p}.notify"),
                format!("names notifier `{n}`, which is not in [notifiers]"),
            );
        }
    }
    let policy = raw.policy.validate(ck, &format!("{p}.policy"), defaults);
    let (credential, token) = credentials(ck, p, kind, &raw, known)?;
    let fingerprint = fingerprint(&appid, kind, &credential, token.as_ref());
    Some(Account {
        name: name.to_string(),
        appid,
        kind,
        credential,
        token,
        notify: raw.notify.unwrap_or_default(),
        policy,
        fingerprint,
    })
}

/// One clear credential (a secret, a component for an authorizer, or a
/// token source) and at most one token source beside a secret or a
/// component (SPEC 4a). A wrong combination is explained in one line.
fn credentials(
    ck: &mut Checker<'_>,
    p: &str,
    kind: AccountKind,
    raw: &AccountConfig,
    known: &BTreeMap<String, Arc<Account>>,
) -> Option<(Credential, Option<TokenSource>)> {
    let secret = ck.secret(
        &format!("{p}.secret"),
        raw.secret.clone(),
        raw.secret_file.as_ref(),
    );
    let has_secret = raw.secret.is_some() || raw.secret_file.is_some();
    if raw.component.is_some() && kind != AccountKind::Authorizer {
        return ck.err(
            &format!("{p}.component"),
            "only an account of kind = \"authorizer\" has a managing component",
        );
    }
    let token = token_source(ck, p, raw.token_file.as_ref(), raw.token_command.as_ref())?;
    match (has_secret, raw.component.as_deref()) {
        (true, Some(_)) => ck.err(
            p,
            "has both secret and component: an authorizer clears either with its own secret or through its component, not both",
        ),
        (true, None) => secret.map(|s| (Credential::Secret(s), token)),
        (false, Some(component)) => {
            component_credential(ck, p, component, known).map(|c| (c, token))
        }
        (false, None) => match token {
            Some(TokenSource::File(path)) => Some((Credential::TokenFile(path), None)),
            Some(TokenSource::Command(argv)) => Some((Credential::TokenCommand(argv), None)),
            None => ck.err(
                p,
                format!(
                    "needs a clear credential: secret (or secret_file){}, or a token_file or token_command",
                    if kind == AccountKind::Authorizer { ", component" } else { "" }
                ),
            ),
        },
    }
}

/// `token_file` or `token_command` of the table at `p` (an account, or an
/// account set's template): at most one, and a command names a program.
/// `None`: a problem, reported in `ck`; `Some(None)`: neither key.
pub fn token_source(
    ck: &mut Checker<'_>,
    p: &str,
    file: Option<&PathBuf>,
    command: Option<&Vec<String>>,
) -> Option<Option<TokenSource>> {
    match (file, command) {
        (Some(_), Some(_)) => ck.err(
            p,
            "has both token_file and token_command: a token comes from one of them",
        ),
        (Some(file), None) => Some(Some(TokenSource::File(ck.resolver().path(file)))),
        (None, Some(cmd)) => ck
            .program(&format!("{p}.token_command"), cmd.clone())
            .map(|cmd| Some(TokenSource::Command(cmd))),
        (None, None) => Some(None),
    }
}

fn component_credential(
    ck: &mut Checker<'_>,
    p: &str,
    component: &str,
    known: &BTreeMap<String, Arc<Account>>,
) -> Option<Credential> {
    let key = format!("{p}.component");
    let Some(platform) = known.get(component) else {
        return ck.err(&key, format!("names account `{component}`, which is not a configured account of kind = \"component\""));
    };
    match (&platform.kind, &platform.credential) {
        (AccountKind::Component, Credential::Secret(secret)) => Some(Credential::Component {
            name: component.to_string(),
            component_appid: platform.appid.clone(),
            secret: secret.clone(),
        }),
        (AccountKind::Component, _) => ck.err(&key, format!("component `{component}` needs a secret to clear for its authorizers (component/clear_quota/v2); give it one, or clear this account with its own token_file or token_command instead")),
        _ => ck.err(&key, format!("account `{component}` is not of kind = \"component\"")),
    }
}

fn fingerprint(
    appid: &str,
    kind: AccountKind,
    credential: &Credential,
    token: Option<&TokenSource>,
) -> String {
    let mut h = Sha256::new();
    h.update(appid.as_bytes());
    h.update(format!("{kind:?}").as_bytes());
    match credential {
        Credential::Secret(s) => h.update(s.expose().as_bytes()),
        Credential::TokenFile(p) => h.update(p.to_string_lossy().as_bytes()),
        Credential::TokenCommand(c) => h.update(c.join("\0").as_bytes()),
        Credential::Component {
            component_appid,
            secret,
            ..
        } => {
            h.update(component_appid.as_bytes());
            h.update(secret.expose().as_bytes());
        }
    }
    match token {
        Some(TokenSource::File(p)) => {
            h.update([b"\x01".as_slice(), p.to_string_lossy().as_bytes()].concat())
        }
        Some(TokenSource::Command(c)) => {
            h.update([b"\x02".as_slice(), c.join("\0").as_bytes()].concat())
        }
        None => {}
    }
    hex::encode(&h.finalize()[..8])
}
