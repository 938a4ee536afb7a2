//! From [`RawConfig`] to [`Config`]: the daemon's own sections, then every
//! notifier and source through its family, collecting all problems with the
//! key and origin of each.

use super::raw::*;
use super::*;
use crate::settings::{Checker, Locator};

pub(super) fn validate(
    raw: RawConfig,
    locator: &Locator<'_>,
    resolver: &SecretResolver,
) -> Result<Config, ConfigErrors> {
    let mut ctx = Checker::new(locator, resolver);
    let daemon = raw.daemon.validate(&mut ctx);
    let wechat = raw.wechat.validate(&mut ctx);
    let defaults = raw
        .policy
        .validate(&mut ctx, "policy", &PolicySettings::default());
    let notifiers = crate::notify::validate(&mut ctx, raw.notifiers);
    let names = notifiers.keys().cloned().collect();
    let accounts = crate::settings::validate_accounts(&mut ctx, raw.accounts, &defaults, &names);
    let account_sets =
        crate::sets::validate(&mut ctx, raw.account_sets, &accounts, &defaults, &names);
    let (members, notes) = crate::sets::merge(&accounts, &account_sets);
    let sources = crate::sources::validate(&mut ctx, raw.sources, &members);
    crate::sets::check_polled_sets(&mut ctx, &sources, &account_sets);
    let errors = ctx.into_errors();
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        path: locator.path().unwrap_or_default(),
        daemon,
        wechat,
        policy: defaults,
        accounts: members,
        configured: accounts,
        account_sets,
        notes,
        sources,
        notifiers,
    })
}
