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
    let rest = errmsg.split("invalid ip ").nth(1)?;
    let ip = rest.split([' ', ',']).next()?;
    (!ip.is_empty()).then_some(ip)
}

/// A plain-language fix for the errors an operator must act on.
pub fn advice(errcode: i64, errmsg: &str) -> Option<String> {
    Some(match errcode {
        40013 => "the appid is not valid: check accounts.NAME.appid (case matters)".to_string(),
        40125 => "the appsecret is wrong: check the account's secret (it changes when reset in the console)".to_string(),
        40164 => match whitelist_ip(errmsg) {
            Some(ip) => format!("this server's IP {ip} is not in the account's IP whitelist: add it in the WeChat console"),
            None => "this server's IP is not in the account's IP whitelist: add it in the WeChat console".to_string(),
        },
        48006 => "the account used all 10 clears of this month (console clears count too): it stays limited until the daily reset, and quotawatch stops trying until next month".to_string(),
        41002 | 41004 => "the request lacked the appid or appsecret: check the account's credential".to_string(),
        _ => return None,
    })
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
        assert!(advice(40164, msg).unwrap().contains("203.0.113.5"));
        assert_eq!(whitelist_ip("system error"), None);
    }
}
