//! `from = "wechat"`: the list is WeChat's own,
//! `component/api_get_authorizer_list`, read with the component's token 500
//! at a time until `total_count`. Each entry's `refresh_token` is a secret
//! quotawatch has no use for: it is dropped as the page is read, never
//! logged, stored or shown.

use std::collections::HashSet;

use async_trait::async_trait;
use serde::Serialize;

use super::{check_entry, has_token, Entry, ListContext, Lister, MemberList};
use crate::settings::{Account, Checker};

/// WeChat's most per page.
pub const PAGE: usize = 500;

#[derive(Debug, Clone, Serialize)]
pub struct WeChatList {}

impl WeChatList {
    pub(super) fn validate(at: &str, ck: &mut Checker<'_>, component: &Account) -> Option<Self> {
        if !has_token(component) {
            return ck.err(
                &format!("{at}.from"),
                format!("\"wechat\" reads WeChat's authorizer list with the component's token: give [accounts.{}] a token_file or token_command beside its secret", component.name),
            );
        }
        Some(Self {})
    }
}

#[async_trait]
impl Lister for WeChatList {
    async fn list(&self, ctx: &ListContext<'_>) -> Result<MemberList, String> {
        let mut list = MemberList::default();
        let (mut seen, mut names) = (HashSet::new(), HashSet::new());
        let mut offset = 0;
        let mut read = 0;
        loop {
            let page = tokio::select! {
                _ = ctx.shutdown.cancelled() => return Err("stopped".into()),
                page = ctx.wechat.authorizer_page(ctx.component, offset, PAGE) => page,
            }
            .map_err(|e| format!("api_get_authorizer_list at offset {offset}: {e}"))?;
            if page.appids.is_empty() && offset < page.total_count {
                return Err(format!(
                    "api_get_authorizer_list ended at {offset} of {} authorizers",
                    page.total_count
                ));
            }
            for appid in page.appids {
                read += 1;
                let entry = Entry {
                    appid,
                    name: None,
                    policy: None,
                };
                match check_entry(&entry, &mut seen, &mut names) {
                    Ok(()) => list.entries.push(entry),
                    Err(why) => list.skipped.push(format!("entry {read}: {why}")),
                }
            }
            offset = read;
            if offset >= page.total_count {
                return Ok(list);
            }
        }
    }
}
