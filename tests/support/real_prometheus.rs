//! Debian's real `prometheus` on 127.0.0.1 for the ignored tests that
//! `ci/prometheus-real.sh` runs: the binary from `$PROMETHEUS_BIN` or PATH,
//! a free port, a config written into the given directory, killed on drop.

use std::path::Path;
use std::time::{Duration, Instant};

pub struct RealPrometheus {
    /// Killed on drop.
    pub child: tokio::process::Child,
    /// "http://127.0.0.1:PORT".
    pub url: String,
}

impl RealPrometheus {
    /// Starts Prometheus with `config` (prometheus.yml text), its TSDB at
    /// `data`, and `extra` flags, once it answers `/-/ready`.
    pub async fn start(dir: &Path, config: &str, data: &Path, extra: &[&str]) -> RealPrometheus {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let child = tokio::process::Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "prometheus never got ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        RealPrometheus { child, url }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
