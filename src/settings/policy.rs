//! `[policy]` and each account's `[accounts.NAME.policy]`: the keys as written
//! and their checks; the rules themselves are [`crate::policy`]'s.

use std::time::Duration;

use serde::Deserialize;

use super::check::{Checker, Choice};
use crate::policy::{PolicySettings, Prefer};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub monthly_cap: Option<i64>,
    pub cooldown: Option<String>,
    pub daily_max: Option<i64>,
    pub reset_guard: Option<String>,
    pub min_events: Option<i64>,
    pub window: Option<String>,
    pub budget_low: Option<i64>,
    pub prefer: Option<Choice<Prefer>>,
    pub api_monthly_cap: Option<i64>,
    pub dry_run: Option<bool>,
    pub pacing: Option<bool>,
}

impl PolicyConfig {
    /// These keys on top of `base` (the defaults, or `[policy]` for an
    /// account); `prefix` is the table's key, for errors.
    pub fn validate(
        &self,
        ck: &mut Checker<'_>,
        prefix: &str,
        base: &PolicySettings,
    ) -> PolicySettings {
        let k = |name: &str| format!("{prefix}.{name}");
        let settings = PolicySettings {
            monthly_cap: ck.range(&k("monthly_cap"), self.monthly_cap, base.monthly_cap, 1, 10),
            cooldown: ck.duration(&k("cooldown"), self.cooldown.as_deref(), base.cooldown),
            daily_max: ck.range(&k("daily_max"), self.daily_max, base.daily_max, 1, 10),
            reset_guard: ck.duration(
                &k("reset_guard"),
                self.reset_guard.as_deref(),
                base.reset_guard,
            ),
            min_events: ck.range(
                &k("min_events"),
                self.min_events,
                base.min_events,
                1,
                1_000_000,
            ),
            window: ck.duration(&k("window"), self.window.as_deref(), base.window),
            budget_low: ck.range(&k("budget_low"), self.budget_low, base.budget_low, 0, 10),
            prefer: ck.choice(&k("prefer"), self.prefer.as_ref(), base.prefer),
            api_monthly_cap: ck.range(
                &k("api_monthly_cap"),
                self.api_monthly_cap,
                base.api_monthly_cap,
                1,
                50,
            ),
            dry_run: self.dry_run.unwrap_or(base.dry_run),
            pacing: self.pacing.unwrap_or(base.pacing),
        };
        if settings.reset_guard >= Duration::from_secs(24 * 3600) {
            ck.err::<()>(&k("reset_guard"), "must be shorter than a day");
        }
        for (key, d) in [("cooldown", settings.cooldown), ("window", settings.window)] {
            if d > Duration::from_secs(366 * 24 * 3600) {
                ck.err::<()>(&k(key), "must be at most a year");
            }
        }
        if settings.window.is_zero() {
            ck.err::<()>(&k("window"), "must be more than zero");
        }
        settings
    }
}
