//! The page around each status page's content: the document, its inline
//! style (the timeline's included) and the formats every page shows times
//! and flags in. No script, no link to anything outside the page.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, DOCTYPE};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222;max-width:1200px}\n\
a{color:#1552b8;text-decoration:none}a:hover{text-decoration:underline}\n\
h1{font-size:1.4em;margin:0 0 .4em}h2{font-size:1.15em;margin:1.4em 0 .4em}\n\
nav{margin-bottom:1em;color:#666}\n\
table{border-collapse:collapse;font-size:.92em}td,th{padding:3px 8px;text-align:left;border-bottom:1px solid #eee}\n\
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}\n\
dl.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:.5em;margin:0}\n\
dl.summary div{background:#f6f6f6;padding:.5em .8em;border-radius:4px}\n\
dl.summary dt{font-size:.8em;color:#555}dl.summary dd{margin:0;font-size:1.3em}\n\
.flag{display:inline-block;padding:0 5px;border-radius:3px;font-size:.8em;margin-right:3px;background:#eee}\n\
.flag.locked{background:#d33;color:#fff}.flag.exhausted{background:#c60;color:#fff}\n\
.flag.disabled{background:#555;color:#fff}.flag.dry_run{background:#cde}.flag.in_flight{background:#fd6}\n\
tr.locked td:first-child{border-left:4px solid #d33}\n\
.ok{color:#0a7a2a}.bad{color:#b00}.ambiguous{color:#c60}.muted{color:#777}\n\
form.filter{margin:.6em 0}form.filter input,form.filter select{font-size:1em}\n\
.pages a,.pages span{margin-right:.8em}.error{color:#b00}\n\
.key span{margin-right:1.2em}.key .k-ok{color:#0a7a2a}.key .k-failed{color:#b00}\n\
.key .k-ambiguous{color:#c60}.key .k-locked{color:#d33}.key .k-refusal{color:#555}\n";

/// A whole page.
pub fn page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (maud::PreEscaped(STYLE)) (maud::PreEscaped(crate::timeline::STYLE)) }
            }
            body {
                nav { a href="/ui/" { "quotawatch" } " · status" }
                (content)
            }
        }
    }
}

/// A time as the operator reads it: in `daemon.timezone`, to the minute.
pub fn time(tz: Tz, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

pub fn opt_time(tz: Tz, t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".to_string(), |t| time(tz, t))
}

/// The link to an account's page.
pub fn account_href(name: &str) -> String {
    format!("/ui/accounts/{}", urlencoding::encode(name))
}
