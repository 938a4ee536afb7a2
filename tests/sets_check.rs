//! `quotawatch check` of `[account_sets]`, through the real binary: every
//! wrong key is named with its line, a `file` set's list is read and counted
//! with its bad entries named, a WeChat or command set is never read, and no
//! secret is printed.

pub mod support {
    pub mod cli;
    pub mod daemon;
}

use support::cli::{assert_no_secrets, show};
use support::daemon::*;

const PLATFORM: &str = "wx00000000000000c0";
const SHOP: &str = "wx448f04719cd48f69";
const SECRET: &str = "component-secret-5ec2e7";
const CONFIG_ERROR: i32 = 78;

fn platform(extra: &str) -> String {
    format!(
        "[accounts.platform]\nappid = \"{PLATFORM}\"\nkind = \"component\"\nsecret = \"{SECRET}\"\n{extra}\n"
    )
}

fn appid(i: usize) -> String {
    format!("wx{i:016x}")
}

#[test]
fn a_file_set_is_read_counted_and_its_bad_entries_named() {
    let env = Env::new(&format!(
        "{}[accounts.shop]\nappid = \"{SHOP}\"\nkind = \"mini_program\"\nsecret = \"s\"\n\n\
         [account_sets.merchants]\ncomponent = \"platform\"\nfrom = \"file\"\nfile = \"members.json\"\n\
         token_file = \"/run/tokens/{{appid}}\"\n[account_sets.merchants.policy]\nmonthly_cap = 6\n",
        platform("")
    ));
    let good: Vec<String> = (1..=3).map(|i| format!("\"{}\"", appid(i))).collect();
    env.file(
        "members.json",
        &format!(
            "[{}, \"wx-not-hex\", {{\"appid\": \"{}\", \"name\": \"tea\", \"policy\": {{\"monthly_cap\": 3}}}}, \"{SHOP}\"]",
            good.join(", "),
            appid(9)
        ),
    );
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = stderr(&o);
    // Three plain, one named; the shop's own table wins over the list.
    assert!(
        err.contains("account set `merchants`: 5 members from members.json"),
        "{}",
        show(&o)
    );
    assert!(
        err.contains("skipped entry 4: `wx-not-hex` is not an appid"),
        "{}",
        show(&o)
    );
    assert!(
        err.contains(&format!("member {SHOP} has its own table [accounts.shop]")),
        "{}",
        show(&o)
    );
    assert!(stdout(&o).contains("member_count = 5"), "{}", show(&o));
    assert_no_secrets(&[&o], &[SECRET]);

    // The members are accounts: a one-shot command finds them by name or appid.
    let status = env.run(&["status", "tea", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", show(&status));
    let status = env.run(&["status", &appid(2), "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", show(&status));
}

#[test]
fn wrong_set_keys_are_each_named_with_their_line() {
    let env = Env::new(&format!(
        "{}[accounts.shop]\nappid = \"{SHOP}\"\nkind = \"mini_program\"\nsecret = \"s\"\n\n\
         [account_sets.a]\ncomponent = \"shop\"\nfrom = \"file\"\nfile = \"x.json\"\n\n\
         [account_sets.b]\ncomponent = \"platform\"\nfrom = \"wechat\"\n\n\
         [account_sets.c]\ncomponent = \"platform\"\nfrom = \"ftp\"\n\n\
         [account_sets.d]\ncomponent = \"platform\"\nfrom = \"command\"\nfile = \"x.json\"\ncommand = []\n\n\
         [account_sets.e]\nfrom = \"file\"\nfile = \"x.json\"\nrefresh = \"soon\"\n\
         [account_sets.e.policy]\nmonthly_cap = 11\n\n\
         [account_sets.f]\ncomponent = \"platform\"\nfrom = \"file\"\nfile = \"x.json\"\ncolour = \"red\"\n",
        platform("")
    ));
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    let config = env.config.display().to_string();
    let line = |needle: &str| {
        let text = std::fs::read_to_string(&env.config).unwrap();
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    };
    for (key, needle, why) in [
        (
            "account_sets.a.component",
            "component = \"shop\"",
            "is not of kind = \"component\"",
        ),
        (
            "account_sets.b.from",
            "from = \"wechat\"",
            "give [accounts.platform] a token_file or token_command",
        ),
        (
            "account_sets.c.from",
            "from = \"ftp\"",
            "`ftp` is not one of wechat, file, command",
        ),
        (
            "account_sets.d.file",
            "file = \"x.json\"\ncommand",
            "is for from = \"file\"",
        ),
        (
            "account_sets.d.command",
            "command = []",
            "must name a program",
        ),
        (
            "account_sets.e.refresh",
            "refresh = \"soon\"",
            "is not a duration",
        ),
        (
            "account_sets.e.policy.monthly_cap",
            "monthly_cap = 11",
            "must be between 1 and 10",
        ),
        ("account_sets.f.colour", "colour", "unknown key `colour`"),
    ] {
        let hit = err
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no {key}: {}", show(&o)));
        assert!(hit.contains(why), "{key}: {hit}");
        let first = needle.split('\n').next().unwrap();
        if !needle.contains('\n') {
            assert!(
                hit.contains(&format!("{config}:{}", line(first))),
                "{key} has no line: {hit}"
            );
        }
    }
    assert!(err.contains("account_sets.e.component"), "{}", show(&o));
    assert_no_secrets(&[&o], &[SECRET]);
}

#[test]
fn check_reads_no_list_but_a_file() {
    let env = Env::new(&(platform("token_command = [\"./token.sh\"]")
        + "[account_sets.w]\ncomponent = \"platform\"\nfrom = \"wechat\"\n\
           [account_sets.c]\ncomponent = \"platform\"\nfrom = \"command\"\ncommand = [\"./list.sh\"]\n\
           [account_sets.f]\ncomponent = \"platform\"\nfrom = \"file\"\nfile = \"missing.json\"\n"));
    let ran = env.dir.path().join("ran");
    for script in ["token.sh", "list.sh"] {
        let path = env.file(
            script,
            &format!("#!/bin/sh\ntouch {}\necho '[]'\n", ran.display()),
        );
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&path)
            .status()
            .unwrap();
    }
    // wechat.api_base is the default: a call would leave loopback, so none may be made.
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!ran.exists(), "check ran a command");
    let err = stderr(&o);
    assert!(
        err.contains("account set `w`: members from WeChat's authorizer list"),
        "{}",
        show(&o)
    );
    assert!(
        err.contains("account set `c`: members from ./list.sh: run when the daemon runs"),
        "{}",
        show(&o)
    );
    assert!(
        err.contains("warning: account set `f`: cannot read missing.json"),
        "{}",
        show(&o)
    );
}

#[test]
fn a_quota_source_over_a_set_needs_the_set_and_member_tokens() {
    let env = Env::new(&(platform("")
        + "[account_sets.plain]\ncomponent = \"platform\"\nfrom = \"file\"\nfile = \"m.json\"\n\
           [account_sets.tokened]\ncomponent = \"platform\"\nfrom = \"file\"\nfile = \"m.json\"\n\
           token_command = [\"/usr/local/bin/authorizer-token\", \"{appid}\"]\n\
           [sources.q]\ntype = \"wechat_quota\"\ncgi_paths = [\"/cgi-bin/x\"]\n\
           accounts = [\"@plain\", \"@tokened\", \"@nowhere\"]\n"));
    env.file("m.json", "[]");
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(CONFIG_ERROR), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("polls `@plain`, whose members have no token source"),
        "{}",
        show(&o)
    );
    assert!(
        err.contains("names `@nowhere`, which is not an [account_sets] table"),
        "{}",
        show(&o)
    );
    assert!(!err.contains("@tokened"), "{}", show(&o));
}
