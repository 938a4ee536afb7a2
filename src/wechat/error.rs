//! WeChat's error codes and what quotawatch does about each (SPEC section 1).

/// Something went wrong talking to WeChat. Messages never contain a token or
/// secret: URLs are stripped from transport errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeChatError {
    /// WeChat answered with a non-zero errcode.
    #[error("WeChat answered errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// The request may have reached WeChat and taken effect, but no usable
    /// answer came back (timeout, connection lost, a body that is not JSON).
    #[error("no usable answer after the request was sent ({0}); it may have taken effect")]
    Ambiguous(String),
    /// The request never left (connection refused, DNS): safe to retry.
    #[error("could not reach WeChat: {0}")]
    Unreachable(String),
    /// An HTTP error status without a WeChat body.
    #[error("WeChat answered HTTP {0}")]
    Status(u16),
    /// No token could be had from the account's token source.
    #[error("cannot get an access token: {0}")]
    Token(String),
    /// The account's credential cannot make this call.
    #[error("{0}")]
    Unsupported(String),
}

/// How the client and the clearer treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: retry with bounded backoff (-1, 45011, 5xx, unreachable).
    Retry,
    /// The token is invalid or expired: refresh once, retry once.
    RefreshToken,
    /// The account's configuration is wrong (40013, 40125, 40164, 41002,
    /// 41004): stop acting for it and alert.
    Config,
    /// 48006: the month's clears are used up upstream.
    Exhausted,
    /// May have taken effect: never retried, counted against the budget.
    Ambiguous,
    /// Anything else: fail this attempt, no retry.
    Fatal,
}

impl WeChatError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { errcode, .. } => classify(*errcode),
            Self::Ambiguous(_) => ErrorClass::Ambiguous,
            Self::Unreachable(_) => ErrorClass::Retry,
            Self::Status(s) if *s >= 500 => ErrorClass::Retry,
            Self::Status(_) | Self::Unsupported(_) => ErrorClass::Fatal,
            Self::Token(_) => ErrorClass::Fatal,
        }
    }

    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}

pub fn classify(errcode: i64) -> ErrorClass {
    match errcode {
        -1 | 45011 => ErrorClass::Retry,
        40001 | 40014 | 42001 => ErrorClass::RefreshToken,
        40013 | 40125 | 40164 | 41002 | 41004 => ErrorClass::Config,
        48006 => ErrorClass::Exhausted,
        _ => ErrorClass::Fatal,
    }
}

/// The caller IP from a 40164 errmsg ("invalid ip 203.0.113.5 ipv6 ..., not in
/// whitelist"), for the alert that says which address to whitelist.
pub fn whitelist_ip(errmsg: &str) -> Option<&str> {
    const MARK: &str = "invalid ip ";
    let rest = &errmsg[errmsg.find(MARK)? + MARK.len()..];
    rest.split(|c: char| c.is_whitespace() || c == ',')
        .next()
        .filter(|ip| !ip.is_empty())
}

/// What an operator should do about an error WeChat answered, in both
/// languages: the one table the CLI and the notifications read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub en: String,
    pub zh: String,
}

/// The fix for the errors an operator must act on. `account` is the
/// config name the fix names; `single_api` tells a single-API clear's 48006
/// (its own 50 a month) from a full clear's.
pub fn advice(errcode: i64, errmsg: &str, account: &str, single_api: bool) -> Option<Advice> {
    let (en, zh) = match errcode {
        // openapi/quota/clear's own budget, not the account's 10 (SPEC section 1).
        48006 if single_api => (
            "the 50 single-API clears of this month are used. Nothing to change: quotawatch falls back to a full clear.".to_string(),
            "本月 50 次单接口清零已用完。无需修改配置：quotawatch 会改用全量清零。".to_string(),
        ),
        48006 => (
            "all 10 clears of this month are used, console clears included. Nothing to change: quotawatch waits for next month.".to_string(),
            "本月 10 次清零已全部用完（包括在后台手动清零）。无需修改配置：quotawatch 会等到下个月。".to_string(),
        ),
        40013 => (
            format!("the appid is not valid. Check accounts.{account}.appid (case matters) and that the secret or token belongs to that appid."),
            format!("appid 无效。请检查 accounts.{account}.appid（区分大小写），并确认密钥或令牌属于该 appid。"),
        ),
        40125 => (
            format!("the appsecret is not valid (it may have been reset in the WeChat console). Update accounts.{account}.secret and reload."),
            format!("appsecret 无效（可能已在微信后台重置）。请更新 accounts.{account}.secret 并重新加载配置。"),
        ),
        40164 => {
            let ip = whitelist_ip(errmsg).unwrap_or("?");
            (
                format!("this server's IP {ip} is not in the account's IP whitelist. Add it in the WeChat console (Development, Basic configuration, IP whitelist), then reload."),
                format!("本机 IP {ip} 不在该账号的 IP 白名单中。请在微信后台「开发 → 基本配置 → IP 白名单」中添加，然后重新加载配置。"),
            )
        }
        41002 | 41004 => (
            format!("the request lacked the appid or appsecret. Check the credential of accounts.{account}."),
            format!("请求缺少 appid 或 appsecret。请检查 accounts.{account} 的凭据。"),
        ),
        _ => return None,
    };
    Some(Advice { en, zh })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let table = [
            (-1, ErrorClass::Retry),
            (45011, ErrorClass::Retry),
            (40001, ErrorClass::RefreshToken),
            (40014, ErrorClass::RefreshToken),
            (42001, ErrorClass::RefreshToken),
            (40013, ErrorClass::Config),
            (40125, ErrorClass::Config),
            (40164, ErrorClass::Config),
            (41002, ErrorClass::Config),
            (41004, ErrorClass::Config),
            (48006, ErrorClass::Exhausted),
            (45009, ErrorClass::Fatal),
        ];
        for (code, want) in table {
            assert_eq!(classify(code), want, "errcode {code}");
        }
        assert_eq!(WeChatError::Status(502).class(), ErrorClass::Retry);
        assert_eq!(WeChatError::Status(404).class(), ErrorClass::Fatal);
        assert_eq!(
            WeChatError::Ambiguous("t".into()).class(),
            ErrorClass::Ambiguous
        );
    }

    #[test]
    fn whitelist_ip_from_errmsg() {
        let msg = "invalid ip 203.0.113.5 ipv6 ::ffff:203.0.113.5, not in whitelist rid: 64f0a1b2-1c2d3e4f";
        assert_eq!(whitelist_ip(msg), Some("203.0.113.5"));
        let fix = advice(40164, msg, "shop", false).unwrap();
        assert!(fix.en.contains("203.0.113.5") && fix.zh.contains("203.0.113.5"));
        assert_eq!(
            whitelist_ip("invalid ip 203.0.113.5 ipv6 ::ffff:203.0.113.5, not in whitelist"),
            Some("203.0.113.5")
        );
        assert_eq!(
            whitelist_ip("invalid ip 2001:db8::1, not in whitelist"),
            Some("2001:db8::1")
        );
        assert_eq!(whitelist_ip("not in whitelist"), None);
        assert_eq!(whitelist_ip("system error"), None);
    }

    #[test]
    fn every_configuration_error_has_advice_in_both_languages() {
        for code in [40013, 40125, 40164, 41002, 41004, 48006] {
            assert!(
                classify(code) == ErrorClass::Config || code == 48006,
                "{code}"
            );
            let a = advice(code, "", "shop", false).unwrap_or_else(|| panic!("{code}"));
            assert!(!a.en.is_empty() && !a.zh.is_empty(), "{code}");
        }
        let single = advice(48006, "", "shop", true).unwrap();
        assert!(single.en.contains("50 single-API"), "{single:?}");
        assert_eq!(advice(45009, "", "shop", false), None);
    }
}
