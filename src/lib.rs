//! quotawatch keeps WeChat accounts from staying locked out after they exhaust a
//! daily API quota (errcode 45009). It watches signals, decides with a policy that
//! guards the scarce monthly budget of `clear_quota` calls, calls WeChat, records
//! every attempt durably, and tells people in chat.
//!
//! # Layout
//!
//! - [`config`]: reads the file plus `QUOTAWATCH_` environment with figment and
//!   puts the validated whole ([`config::Config`]) together: the daemon's own
//!   settings and every component's.
//! - [`settings`]: the daemon's own sections (`[daemon]`, `[wechat]`,
//!   `[policy]`, `[accounts]`) and the machinery every component's settings
//!   use: the error-collecting [`settings::Checker`], typed choices, the
//!   `*_file` rules. It knows no component.
//! - [`secret`]: the masked [`secret::Secret`], a leaf every module may use.
//! - [`error_chain`]: an error with its causes, each said once, as every
//!   surface shows it; a leaf.
//! - [`memory`]: gives freed heap back after a reload, a set refresh or a
//!   full account listing; a leaf.
//! - [`program`]: runs a configured program (`token_command`, an account
//!   set's `command`) for its stdout, under a time limit; a leaf.
//! - [`calendar`]: month and day boundaries in the configured time zone.
//! - [`pacing`]: pacing's pure rule and arithmetic: what a clear now is
//!   worth against the month's better chances, and what it learns of an
//!   account; one rule of the policy's order.
//! - [`policy`]: the pure decision rules, `clear` or `skip(reason)`.
//! - [`store`]: the ledger behind the [`store::Store`] trait; SQLite by default;
//!   attempts, the lockout episodes of SPEC section 5, pacing's memory.
//! - [`wechat`]: the API client, token providers and error classification.
//! - [`clearer`]: the one entry point that spends budget: policy under the ledger's
//!   lock, intent, WeChat call, outcome, event.
//! - [`verify`]: after a clear, re-reads the quota and marks the attempt verified.
//! - [`clock`]: the wall clock, a simulation's, or one that follows tokio's
//!   paused clock in tests.
//! - [`event`]: what happened, for logs, metrics and notifications.
//! - [`signal`]: the signal type and the bounded queue from sources.
//! - [`decision`]: the pure per-account state machine from signals to a
//!   request: evidence windows, duplicates, single flight, quiet periods,
//!   fallback, retries, and pacing's memory fed with what it sees.
//! - [`dispatcher`]: the loop that feeds the decision step and performs its
//!   actions on the clearer's clock.
//! - [`read_model`]: what `status`, `history`, `/api/v1/accounts` (paged and
//!   filtered), the status page and a clear's summary show, for the CLI and
//!   the HTTP surface alike.
//! - [`report`]: the `monthly_report` notification on the first day of a month.
//! - [`lockout`]: takes each signal's evidence to the ledger's lockout
//!   episodes ([`store::episodes`]), and pacing's memory to the ledger,
//!   without making the dispatcher wait.
//! - [`simulate`]: `quotawatch simulate`, the backtest: a trace, the world of
//!   SPEC section 8, the reference policies and the daemon's own decision step.
//! - [`sources`]: the signal sources, one file a type (`webhook` for
//!   Alertmanager, Grafana and generic JSON, `log_file`, `prometheus`,
//!   `wechat_quota`), each holding its config, validation, start and
//!   behaviour; the family's traits and registry in `sources/mod.rs`, the cron
//!   scheduler in `sources/scheduler.rs`.
//! - [`sets`]: account sets (SPEC 4a), a family: `[account_sets.NAME]`, the
//!   list parser and the members a list makes in `sets/mod.rs`, one file per
//!   kind of list (`wechat`, `file`, `command`), and `sets/refresh.rs`: the
//!   running sets, their last good lists, health and metrics.
//! - [`notify`]: the chat notifiers, one file a platform (`wecom`,
//!   `dingtalk`, `feishu`, `slack`, `discord`, `webhook`), each holding its
//!   own keys, validation, build and requests; the keys every notifier shares
//!   and the registry in `notify/config.rs`, delivery queues, rate limits and
//!   retries in `notify/delivery.rs`, message text in `notify/render.rs`.
//! - [`timeline`]: a period drawn as inline SVG (shading, a line, marks),
//!   the one drawing `simulate --html` and the status page share.
//! - [`ui`]: the status page (`/ui/`, `/ui/accounts/NAME`): maud templates
//!   over the read model and the timeline; [`http`] serves it behind the
//!   API's tokens.
//! - [`http`]: the daemon's HTTP surface: hooks, API, metrics, health, and
//!   the status page's access.
//! - [`listener`]: serves it under timeouts and a connection bound.
//! - [`metrics`]: the Prometheus registry shared by all components.
//! - [`app`]: wires components from a [`config::Config`]; owns shutdown and reload.
//! - [`lifecycle`]: OS signals and systemd notify.
//! - [`telemetry`]: the tracing subscriber.
//! - [`cli`]: the command-line definitions and the commands that are not the daemon.
//!
//! Imports run one way, with no cycles, from the leaves (`secret`,
//! `error_chain`, `memory`, `program`, `clock`, `calendar`, `metrics`, `listener`,
//! `lifecycle`, `timeline`) up: `pacing`; `policy` and
//! `signal`; `event`; `store`; `settings`; `wechat`; the components
//! (`sources`, `sets`, `notify`) and `clearer`, which know `settings` but not
//! `config`; `config`, which knows the components' registries; the daemon's
//! machinery (`decision`, `dispatcher`, `read_model`, `verify`, `simulate`);
//! the surfaces (`ui`, then `http`, which serves it; `cli`, `report`);
//! `app`; `main`. Only `main` imports `cli`.

pub mod app;
pub mod calendar;
pub mod clearer;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decision;
pub mod dispatcher;
pub mod error_chain;
pub mod event;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod lockout;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod pacing;
pub mod policy;
pub mod program;
pub mod read_model;
pub mod report;
pub mod secret;
pub mod sets;
pub mod settings;
pub mod signal;
pub mod simulate;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod timeline;
pub mod ui;
pub mod verify;
pub mod wechat;

/// Exit code for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;
/// Exit code when the policy refused a manual clear.
pub const EXIT_REFUSED: i32 = 3;
/// Exit code for any other failure.
pub const EXIT_FAILURE: i32 = 1;
