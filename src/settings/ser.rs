//! How runtime settings print in the effective config `quotawatch check` prints: durations as
//! "1h 30m", URLs with their userinfo masked, regexes and headers as text.

use axum::http::HeaderName;
use chrono_tz::Tz;
use serde::Serializer;

use crate::secret::mask_userinfo;

pub fn duration<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_userinfo(url))
}

pub fn header<S: Serializer>(h: &HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.as_str())
}

pub fn headers<S: Serializer>(hs: &[HeaderName], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(hs.iter().map(HeaderName::as_str))
}

pub fn tz<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

pub fn regex<S: Serializer>(r: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}
