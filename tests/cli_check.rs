//! `quotawatch check` and configuration loading, through the real binary: the
//! example config passes, bad configs exit 78 naming the key and where its value
//! came from, environment overrides reach WeChat intact, and no secret is ever
//! printed.

pub mod support {
    pub mod cli;
    pub mod daemon;
    pub mod fake_wechat;
}

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::cli::{assert_no_secrets, show};
use support::{daemon::*, fake_wechat::*};

const APP: &str = "wx448f04719cd48f69";
const OTHER: &str = "wx0000000000000002";
const INLINE_SECRET: &str = "inline-appsecret-c0ffee42";
const FILE_SECRET: &str = "file-appsecret-beef17";
const ENV_SECRET: &str = "0123456789";
const ALL_SECRETS: [&str; 3] = [INLINE_SECRET, FILE_SECRET, ENV_SECRET];
const CONFIG_ERROR: i32 = 78;

/// `check` with extra environment variables.
fn check(env: &Env, vars: &[(&str, &str)]) -> Output {
    let mut cmd = env.command(&["check"]);
    cmd.envs(vars.iter().copied());
    cmd.output().unwrap()
}

/// The 1-based line of the first line of the config file that contains `needle`.
fn line_of(config: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(config).unwrap();
    let i = text
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in config");
    i + 1
}

fn accounts() -> String {
    format!(
        "[accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\nsecret = \"{INLINE_SECRET}\"\n\n\
         [accounts.blog]\nappid = \"{OTHER}\"\nkind = \"official_account\"\nsecret_file = \"blog-secret\"\n"
    )
}

fn env_with(body: &str) -> Env {
    let env = Env::new(body);
    env.file("blog-secret", &format!("{FILE_SECRET}\n"));
    env
}

#[test]
fn the_example_config_passes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/quotawatch.toml");
    let scratch = tempfile::tempdir().unwrap();
    let run = |json: bool| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&example).arg("check");
        if json {
            cmd.arg("--json");
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("QUOTAWATCH_")
                || k == "CREDENTIALS_DIRECTORY"
                || k == "STATE_DIRECTORY"
            {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(scratch.path()).output().unwrap()
    };
    let o = run(false);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains("shop"), "{}", show(&o));
    let example_secret = "replace-with-the-appsecret";
    assert!(
        !stdout(&o).contains(example_secret) && !stderr(&o).contains(example_secret),
        "{}",
        show(&o)
    );

    let o = run(true);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value =
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    assert_eq!(v["accounts"]["shop"]["appid"], "wx448f04719cd48f69");
    assert_eq!(
        v["accounts"]["shop"]["policy"]["dry_run"], true,
        "the example runs safely"
    );
    assert!(!stdout(&o).contains(example_secret), "{}", show(&o));
    // Nothing was written next to the example or in the working directory.
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[test]
fn a_valid_config_prints_the_effective_config_with_secrets_masked() {
    let env = env_with(&format!("[policy]\nmonthly_cap = 5\n\n{}", accounts()));
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        stdout(&o).contains(APP) && stdout(&o).contains(OTHER),
        "{}",
        show(&o)
    );
    assert!(
        stdout(&o).contains("********"),
        "secrets appear masked: {}",
        show(&o)
    );
    assert_no_secrets(&[&o], &ALL_SECRETS);

    let o = env.run(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["accounts"]["shop"]["policy"]["monthly_cap"], 5);
    assert_no_secrets(&[&o], &ALL_SECRETS);
}

#[test]
fn an_unknown_key_is_named_with_file_and_line() {
    let env = env_with(&format!(
        "[policy]\nmonthly_cap = 5\ncooldwon = \"1h\"\n\n{}",
        accounts()
    ));
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains("cooldwon"), "{}", show(&o));
    assert!(
        err.contains("policy.cooldwon"),
        "the full key: {}",
        show(&o)
    );
    let at = format!(
        "{}:{}",
        env.config.display(),
        line_of(&env.config, "cooldwon")
    );
    assert!(err.contains(&at), "names {at}: {}", show(&o));
    assert_no_secrets(&[&o], &ALL_SECRETS);
}

#[test]
fn an_unknown_key_in_an_account_is_named_with_file_and_line() {
    let body = format!("{}\nsecert_file = \"shop-secret\"\n", accounts());
    let env = env_with(&body);
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains("accounts.blog.secert_file"), "{}", show(&o));
    let at = format!(
        "{}:{}",
        env.config.display(),
        line_of(&env.config, "secert_file")
    );
    assert!(err.contains(&at), "names {at}: {}", show(&o));
    assert_no_secrets(&[&o], &ALL_SECRETS);
}

#[test]
fn an_out_of_range_cap_from_the_environment_names_the_variable() {
    let env = env_with(&accounts());
    let o = check(&env, &[("QUOTAWATCH_POLICY__MONTHLY_CAP", "11")]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains("policy.monthly_cap"), "{}", show(&o));
    assert!(
        err.contains("QUOTAWATCH_POLICY__MONTHLY_CAP"),
        "{}",
        show(&o)
    );
    assert!(err.contains("11"), "{}", show(&o));
    assert_no_secrets(&[&o], &ALL_SECRETS);

    let o = check(
        &env,
        &[("QUOTAWATCH_ACCOUNTS__SHOP__POLICY__MONTHLY_CAP", "0")],
    );
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("accounts.shop.policy.monthly_cap"),
        "{}",
        show(&o)
    );
    assert!(
        err.contains("QUOTAWATCH_ACCOUNTS__SHOP__POLICY__MONTHLY_CAP"),
        "{}",
        show(&o)
    );
    assert_no_secrets(&[&o], &ALL_SECRETS);

    // In range, the same variable is accepted and wins over the file.
    let env = env_with(&format!("[policy]\nmonthly_cap = 5\n\n{}", accounts()));
    let mut cmd = env.command(&["check", "--json"]);
    let o = cmd
        .env("QUOTAWATCH_POLICY__MONTHLY_CAP", "4")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["accounts"]["shop"]["policy"]["monthly_cap"], 4);
}

#[test]
fn a_missing_secret_file_is_a_config_error() {
    let body = format!(
        "{}\n[accounts.news]\nappid = \"wx00000000000000a3\"\nkind = \"official_account\"\nsecret_file = \"no-such-secret\"\n",
        accounts()
    );
    let env = env_with(&body);
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains("accounts.news.secret_file"), "{}", show(&o));
    assert!(err.contains("no-such-secret"), "{}", show(&o));
    let at = format!(
        "{}:{}",
        env.config.display(),
        line_of(&env.config, "no-such-secret")
    );
    assert!(err.contains(&at), "names {at}: {}", show(&o));
    assert_no_secrets(&[&o], &ALL_SECRETS);

    // Every command refuses such a config the same way, before any work.
    let o = env.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    assert!(!env.db.exists(), "no ledger is created for a bad config");
    assert_no_secrets(&[&o], &ALL_SECRETS);
}

#[test]
fn a_bad_appid_and_a_missing_credential_are_reported_together() {
    let body = format!(
        "{}\n[accounts.news]\nappid = \"wx-not-hex\"\nkind = \"official_account\"\n",
        accounts()
    );
    let env = env_with(&body);
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains("accounts.news.appid"), "{}", show(&o));
    assert!(err.contains("credential"), "{}", show(&o));
    assert_no_secrets(&[&o], &ALL_SECRETS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_secret_from_the_environment_is_used_verbatim() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, ENV_SECRET);
    let body = format!(
        "[wechat]\napi_base = \"{}\"\ntimeout = \"2s\"\n\n[policy]\nreset_guard = \"0s\"\n\n\
         [accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\n",
        fake.base_url()
    );
    let env = Env::new(&body);
    let var = ("QUOTAWATCH_ACCOUNTS__SHOP__SECRET", ENV_SECRET);

    // Without the variable the account has no credential.
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));

    let o = check(&env, &[var]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_no_secrets(&[&o], &ALL_SECRETS);

    let mut cmd = env.command(&["clear", "shop", "--json"]);
    cmd.env(var.0, var.1);
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_no_secrets(&[&o], &ALL_SECRETS);
    let reqs = fake.requests_to(CLEAR_QUOTA_V2);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].query_param("appsecret").as_deref(),
        Some(ENV_SECRET)
    );
    assert_eq!(
        reqs[0].body_str("appsecret").as_deref(),
        Some(ENV_SECRET),
        "a JSON string, leading zero kept: {}",
        reqs[0].raw_body
    );
    assert_eq!(fake.clears_effective(APP), 1);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// A secret written with the wrong type is reported without its value: the
/// error names the key and the line, and that is enough to fix it.
#[test]
fn a_wrongly_typed_secret_is_not_echoed_in_the_error() {
    let token = "api-bearer-token-9a8b7c";
    let env = env_with(&format!("tokens = \"{token}\"\n{}", accounts()));
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains("daemon.tokens"), "{}", show(&o));
    let at = format!(
        "{}:{}",
        env.config.display(),
        line_of(&env.config, "tokens = ")
    );
    assert!(err.contains(&at), "names {at}: {}", show(&o));
    assert!(
        !err.contains(token) && !stdout(&o).contains(token),
        "the bearer token is printed:\n{}",
        show(&o)
    );
    assert_no_secrets(&[&o], &ALL_SECRETS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_secret_files_are_read_from_the_credentials_directory() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APP, FILE_SECRET);
    let body = format!(
        "[wechat]\napi_base = \"{}\"\ntimeout = \"2s\"\n\n[policy]\nreset_guard = \"0s\"\n\n\
         [accounts.shop]\nappid = \"{APP}\"\nkind = \"mini_program\"\nsecret_file = \"shop-secret\"\n",
        fake.base_url()
    );
    let env = Env::new(&body);
    // Next to the config: a stale secret that must not be used under systemd.
    env.file("shop-secret", &format!("{INLINE_SECRET}\n"));
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("shop-secret"), format!("{FILE_SECRET}\n")).unwrap();

    let mut cmd = env.command(&["clear", "shop", "--json"]);
    cmd.env("CREDENTIALS_DIRECTORY", creds.path());
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_no_secrets(&[&o], &ALL_SECRETS);
    let reqs = fake.requests_to(CLEAR_QUOTA_V2);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body_str("appsecret").as_deref(), Some(FILE_SECRET));

    // Without the variable the file next to the config is used.
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // A credentials directory without the file is a config error.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = env.command(&["check"]);
    let o = cmd
        .env("CREDENTIALS_DIRECTORY", empty.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    assert!(
        stderr(&o).contains("accounts.shop.secret_file"),
        "{}",
        show(&o)
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn the_config_is_found_through_quotawatch_config() {
    let env = env_with(&accounts());
    let bad = env.file("bad.toml", "[daemon]\nunknown = 1\n");
    let bare = |config_var: &Path, flag: Option<&Path>| {
        let mut cmd = Command::new(BIN);
        if let Some(f) = flag {
            cmd.arg("--config").arg(f);
        }
        cmd.arg("check");
        for (k, _) in std::env::vars() {
            if k.starts_with("QUOTAWATCH_")
                || k == "CREDENTIALS_DIRECTORY"
                || k == "STATE_DIRECTORY"
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("QUOTAWATCH_CONFIG", config_var);
        cmd.current_dir(env.dir.path()).output().unwrap()
    };
    let o = bare(&env.config, None);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains(APP), "{}", show(&o));
    let o = bare(&bad, None);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    assert!(stderr(&o).contains("bad.toml"), "{}", show(&o));
    // --config wins over the variable.
    let o = bare(&bad, Some(&env.config));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

// ---- issue 10: what `check` passes, `run` accepts, and the reverse ----------------

fn quota_source(remain_below: &str) -> String {
    format!(
        "{}\n[sources.quota]\ntype = \"wechat_quota\"\naccounts = [\"shop\"]\n\
         cgi_paths = [\"/cgi-bin/message/custom/send\"]\nremain_below = \"{remain_below}\"\n",
        accounts()
    )
}

#[test]
fn a_remain_below_count_past_what_toml_holds_is_a_config_error() {
    let env = env_with(&quota_source("18446744073709551615"));
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    assert!(
        stderr(&o).contains("sources.quota.remain_below"),
        "{}",
        show(&o)
    );
    assert!(!stdout(&o).contains("is valid"), "{}", show(&o));

    // The largest accepted count prints, in both forms.
    let env = env_with(&quota_source("9223372036854775807"));
    for args in [&["check"][..], &["check", "--json"]] {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        assert!(stdout(&o).contains("9223372036854775807"), "{}", show(&o));
    }
}

#[test]
fn a_malformed_postgres_state_is_a_config_error_for_check_and_run() {
    let env = env_with(&accounts());
    for url in [
        "postgres://x@h/db?sslmode=nope",
        "postgres://[::1",
        "postgres://qw:hunter2@127.0.0.1:notaport/qw",
        // The store reads its CA file before it connects: so does `check`.
        "postgres://qw:hunter2@127.0.0.1:1/qw?sslmode=require&sslrootcert=/nonexistent/ca.pem",
    ] {
        let var = [("QUOTAWATCH_DAEMON__STATE", url)];
        let o = check(&env, &var);
        assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{url}: {}", show(&o));
        let err = stderr(&o);
        assert!(err.contains("daemon.state"), "{url}: {}", show(&o));
        assert!(
            err.contains("QUOTAWATCH_DAEMON__STATE"),
            "{url}: {}",
            show(&o)
        );
        assert!(!err.contains("hunter2"), "{url}: {}", show(&o));
        assert!(!stdout(&o).contains("is valid"), "{url}: {}", show(&o));
        // `run` refuses it the same way, before it opens anything.
        let mut cmd = env.command(&["run"]);
        let o = cmd.envs(var).output().unwrap();
        assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{url}: {}", show(&o));
    }
}

#[test]
fn check_masks_the_userinfo_of_every_url_it_prints() {
    let body = format!(
        "[wechat]\napi_base = \"http://qw:hunter2-api@127.0.0.1:9/\"\n\n{}\n\
         [sources.prom]\ntype = \"prometheus\"\nurl = \"http://prom:hunter2-prom@127.0.0.1:9090\"\n\
         query = \"up\"\n\n\
         [notifiers.hook]\ntype = \"webhook\"\nurl = \"https://hook:hunter2-hook@127.0.0.1:9/x\"\n",
        accounts()
    );
    let env = env_with(&body);
    for args in [&["check"][..], &["check", "--json"]] {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let out = stdout(&o);
        assert!(!out.contains("hunter2"), "{}", show(&o));
        assert!(
            !out.contains("qw:") && !out.contains("prom:"),
            "{}",
            show(&o)
        );
        assert!(out.contains("127.0.0.1:9090"), "{}", show(&o));
        assert!(out.contains("@127.0.0.1:9"), "the host stays: {}", show(&o));
        assert_no_secrets(&[&o], &ALL_SECRETS);
    }

    // An invalid URL's error masks it too.
    let env = env_with(&format!(
        "[wechat]\napi_base = \"ftp://qw:hunter2-api@127.0.0.1/\"\n\n{}",
        accounts()
    ));
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    assert!(stderr(&o).contains("wechat.api_base"), "{}", show(&o));
    assert!(!stderr(&o).contains("hunter2"), "{}", show(&o));
}

#[test]
fn renamed_grafana_signature_headers_must_be_header_names() {
    let hook = |extra: &str| {
        format!(
            "{}\n[sources.grafana]\ntype = \"grafana\"\nhmac_secret = \"hmac-key\"\n{extra}",
            accounts()
        )
    };
    let env = env_with(&hook(
        "signature_header = \"X-Ops-Signature\"\ntimestamp_header = \"x-ops-timestamp\"\n",
    ));
    let o = env.run(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let spec = &v["sources"]["grafana"];
    assert_eq!(spec["signature_header"], "x-ops-signature", "{spec}");
    assert_eq!(spec["timestamp_headers"][0], "x-ops-timestamp", "{spec}");

    let env = env_with(&hook("signature_header = \"X Ops: Signature\"\n"));
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("sources.grafana.signature_header")
            && err.contains("not a valid HTTP header name"),
        "{}",
        show(&o)
    );
}

/// A table whose `type` cannot be read is still searched for keys that no
/// member of its family takes, so one run shows both mistakes.
#[test]
fn a_misspelt_type_does_not_hide_a_misspelt_key() {
    let env = env_with(&format!(
        "{}[notifiers.ops]\ntype = \"wecomm\"\nurl = \"https://example.com/hook\"\ncolour = \"red\"\n\
         [sources.logs]\ntype = \"logfile\"\npath = \"/var/log/app.log\"\npaht = \"x\"\n",
        accounts()
    ));
    let o = check(&env, &[]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    for want in [
        "`notifiers.ops.type`",
        "`wecomm` is not one of",
        "`notifiers.ops.colour`",
        "unknown key `colour`",
        "`sources.logs.type`",
        "`logfile` is not one of",
        "`sources.logs.paht`",
        "unknown key `paht`",
    ] {
        assert!(err.contains(want), "{want}: {}", show(&o));
    }
    // `path` is a key of log_file: not reported.
    assert!(!err.contains("`sources.logs.path`"), "{}", show(&o));
}

/// Issue 19, item 2: each error's line is found without parsing (or merging)
/// the whole file again, so 10,000 errors are listed at once, each at its own
/// line. Before, every error re-parsed the file and re-merged figment's
/// providers: 2,000 such errors took 2 min 11 s and 10,000 took 8 min 31 s
/// (release). The deadline is 60 times what this takes here (debug build):
/// it catches a cost that grows with the square of the errors, not a slow
/// machine. The figures are in BENCHMARKS.md.
#[test]
fn ten_thousand_errors_are_listed_each_at_its_line() {
    const N: usize = 10_000;
    let mut body = String::from(
        "[accounts.mp]\nappid = \"wx0000000000000000\"\nkind = \"mini_program\"\nsecret = \"s\"\n",
    );
    for i in 1..=N {
        body.push_str(&format!(
            "[accounts.a{i}]\nappid = \"wx{i:016x}\"\nkind = \"authorizer\"\ncomponent = \"mp\"\n"
        ));
    }
    let env = env_with(&body);
    let mut child = env
        .command(&["check"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr_pipe, &mut text).unwrap();
        text
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("check did not list {N} errors within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(CONFIG_ERROR), "{err}");
    let listed = err
        .lines()
        .filter(|l| l.contains("which is not a configured account of kind = \"component\""))
        .count();
    assert_eq!(listed, N, "{}", &err[..err.len().min(2000)]);
    for i in [1, 2, N / 2, N] {
        let line = line_of(&env.config, &format!("[accounts.a{i}]")) + 3;
        let want = format!(
            "`accounts.a{i}.component` (from {}:{line})",
            env.config.display()
        );
        assert!(
            err.contains(&want),
            "{want} in {}",
            &err[..err.len().min(2000)]
        );
    }
}
