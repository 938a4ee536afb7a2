pub mod daemon;
pub mod fake_chat;
pub mod fake_prometheus;
pub mod fake_prometheus_range;
pub mod fake_wechat;
pub mod real_prometheus;
