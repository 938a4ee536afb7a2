//! Runs the real `quotawatch` binary: one-shot commands and the daemon, each
//! with its own temp directory, config file and ledger.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_quotawatch");

/// A temp directory holding a config file and the ledger it points at.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
}

impl Env {
    /// `body` is the config after `[daemon]`'s listen and state lines; it may
    /// add more `[daemon]` keys first.
    pub fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let config = dir.path().join("quotawatch.toml");
        let env = Self { dir, config, db };
        env.write(body);
        env
    }

    /// [`Env::new`] with `daemon.state` = `state` (a PostgreSQL URL)
    /// instead of a ledger file in the temp directory.
    pub fn with_state(state: &str, body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("quotawatch.toml");
        let env = Self {
            dir,
            config,
            db: PathBuf::from(state),
        };
        env.write(body);
        env
    }

    pub fn write(&self, body: &str) {
        let text = format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\n{body}",
            self.db.display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// A FIFO in the temp dir, for a `token_file` that [`feed_fifo`] fills
    /// one read at a time.
    pub fn fifo(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        let made = Command::new("mkfifo").arg(&p).status().unwrap();
        assert!(made.success(), "mkfifo {}", p.display());
        p
    }

    /// A command with a clean environment: no QUOTAWATCH_ variables from the
    /// caller, no systemd variables.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&self.config).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("QUOTAWATCH_")
                || k == "NOTIFY_SOCKET"
                || k == "CREDENTIALS_DIRECTORY"
                || k == "STATE_DIRECTORY"
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("QUOTAWATCH_LOG", "info")
            .current_dir(self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs the command off the async runtime's threads.
    pub async fn run_async(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The daemon as a child process, logging JSON to a file.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    pub async fn start(env: &Env) -> Daemon {
        Self::start_with(env, &[]).await
    }

    pub async fn start_with(env: &Env, vars: &[(&str, &str)]) -> Daemon {
        let mut cmd = env.command(&["run"]);
        cmd.envs(vars.iter().copied());
        Self::start_command(env, cmd).await
    }

    /// Starts `cmd` (an `env.command(&["run"])` the caller adjusted) and
    /// waits until it is ready.
    pub async fn start_command(env: &Env, mut cmd: Command) -> Daemon {
        let log = env
            .dir
            .path()
            .join(format!("daemon-{}.log", fastrand::u32(..)));
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().unwrap();
        let addr = wait_ready(&log).await;
        Daemon { child, addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to exit; returns its exit code (None if killed).
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit in {timeout:?}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in the daemon's logs within {timeout:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(log: &Path) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["message"] == "quotawatch is ready" {
                return v["listen"].as_str().unwrap().parse().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "daemon not ready in 20 s; logs:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes one token into the FIFO once a reader has it open (a non-blocking
/// open fails with ENXIO until then, so a dead reader fails the test instead
/// of hanging it).
pub async fn feed_fifo(fifo: &Path, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo);
        match open {
            Ok(mut f) => {
                f.write_all(format!("{token}\n").as_bytes()).unwrap();
                return;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                assert!(
                    Instant::now() < deadline,
                    "quotawatch never read the token file"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("open fifo: {e}"),
        }
    }
}

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
