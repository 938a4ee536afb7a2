//! `quotawatch`: parse the command line, load the config, run a command, and
//! map failures to exit codes (78 configuration, 3 refused, 1 other).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use quotawatch::cli::{self, Cli, Command};
use quotawatch::settings::LogFormat;
use quotawatch::{telemetry, EXIT_CONFIG, EXIT_FAILURE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::GenerateAssets { dir } = &cli.command {
        return finish(cli::generate_assets(dir));
    }
    let config = match cli::load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quotawatch: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let daemon = matches!(cli.command, Command::Run);
    let format = if daemon {
        config.daemon.log_format
    } else {
        LogFormat::Pretty
    };
    telemetry::init(format, if daemon { "info" } else { "warn" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quotawatch: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE as u8);
        }
    };
    finish(runtime.block_on(dispatch(cli.command, config)))
}

async fn dispatch(
    command: Command,
    config: quotawatch::config::Config,
) -> anyhow::Result<cli::Exit> {
    let config = match command {
        Command::Status { .. }
        | Command::Clear { .. }
        | Command::Quota { .. }
        | Command::Enable { .. } => cli::with_ledger_members(config)?,
        _ => config,
    };
    match command {
        Command::Run => quotawatch::app::run_daemon(config).await,
        Command::Check(f) => cli::check(&config, f.json),
        Command::Status { account, json } => cli::status(&config, account.as_deref(), json.json),
        Command::History(query) => cli::history(&config, &query),
        Command::Episodes(query) => cli::episodes(&config, &query),
        Command::Clear {
            account,
            reason,
            dry_run,
            force,
            json,
        } => {
            let notifiers = quotawatch::app::command_notifiers(&config);
            let args = cli::ClearArgs {
                account: &account,
                reason: &reason,
                dry_run,
                force,
                json: json.json,
            };
            let result = cli::clear(&config, args, Arc::new(notifiers.clone())).await;
            notifiers.shutdown(config.daemon.shutdown_timeout).await;
            result
        }
        Command::Quota {
            account,
            cgi_path,
            json,
        } => cli::quota(&config, &account, &cgi_path, json.json).await,
        Command::Enable { account } => cli::enable(&config, &account),
        Command::NotifyTest { notifier } => quotawatch::app::notify_test(&config, &notifier).await,
        Command::GenerateAssets { dir } => cli::generate_assets(&dir),
        Command::Simulate(args) => quotawatch::simulate::command(&config, &args).await,
    }
}

fn finish(result: anyhow::Result<cli::Exit>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!(
                "quotawatch: {}",
                quotawatch::error_chain::display(e.as_ref())
            );
            ExitCode::from(EXIT_FAILURE as u8)
        }
    }
}
