//! `[accounts.NAME]`: the WeChat accounts quotawatch clears for, each with
//! one credential and its policy on top of `[policy]`; and [`Accounts`], the
//! validated set that signals look accounts up in, by name or appid.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
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

/// How quotawatch proves it may act for an account.
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

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub name: String,
    pub appid: String,
    pub kind: AccountKind,
    pub credential: Credential,
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
}

impl Accounts {
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
    let credential = credential(ck, p, kind, &raw, known)?;
    let fingerprint = fingerprint(&appid, kind, &credential);
    Some(Account {
        name: name.to_string(),
        appid,
        kind,
        credential,
        notify: raw.notify.unwrap_or_default(),
        policy,
        fingerprint,
    })
}

/// Exactly one credential source per account; `component` only for authorizers.
fn credential(
    ck: &mut Checker<'_>,
    p: &str,
    kind: AccountKind,
    raw: &AccountConfig,
    known: &BTreeMap<String, Arc<Account>>,
) -> Option<Credential> {
    let secret = ck.secret(
        &format!("{p}.secret"),
        raw.secret.clone(),
        raw.secret_file.as_ref(),
    );
    let mut sources = Vec::new();
    if raw.secret.is_some() || raw.secret_file.is_some() {
        sources.push("secret");
    }
    if raw.token_file.is_some() {
        sources.push("token_file");
    }
    if raw.token_command.is_some() {
        sources.push("token_command");
    }
    if raw.component.is_some() {
        if kind != AccountKind::Authorizer {
            return ck.err(
                &format!("{p}.component"),
                "only an account of kind = \"authorizer\" has a managing component",
            );
        }
        sources.push("component");
    }
    if sources.len() != 1 {
        let found = if sources.is_empty() {
            "none".to_string()
        } else {
            sources.join(", ")
        };
        return ck.err(p, format!("needs exactly one credential: secret (or secret_file), token_file, token_command{}; found {found}", if kind == AccountKind::Authorizer { " or component" } else { "" }));
    }
    match sources[0] {
        "secret" => secret.map(Credential::Secret),
        "token_file" => raw
            .token_file
            .clone()
            .map(|f| Credential::TokenFile(ck.resolver().path(&f))),
        "token_command" => match raw.token_command.clone() {
            Some(cmd) if !cmd.is_empty() && !cmd[0].is_empty() => {
                Some(Credential::TokenCommand(cmd))
            }
            _ => ck.err(
                &format!("{p}.token_command"),
                "must name a program: [\"/path/to/program\", \"arg\", ...]",
            ),
        },
        _ => component_credential(ck, p, raw.component.as_deref().unwrap_or_default(), known),
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
        (AccountKind::Component, _) => ck.err(&key, format!("component `{component}` needs a secret to clear for its authorizers; give this account its own token_file or token_command instead")),
        _ => ck.err(&key, format!("account `{component}` is not of kind = \"component\"")),
    }
}

fn fingerprint(appid: &str, kind: AccountKind, credential: &Credential) -> String {
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
    hex::encode(&h.finalize()[..8])
}
