//! The PostgreSQL ledger (`daemon.state = "postgres://…"`): one database shared
//! by several replicas, with the same rows and the same counting rules as the
//! SQLite ledger. It does not choose replicas or elect a leader: every replica
//! acts, and the database makes their decisions take turns.
//!
//! Single-flight across replicas: [`PostgresStore::reserve`] takes
//! `pg_advisory_xact_lock` on a hash of the appid before it reads the
//! snapshot, so for one account at most one decision (and its intent row) is
//! in progress anywhere; the lock ends with the transaction.
//!
//! Threading: [`Store`] is synchronous and is called on tokio worker threads,
//! where the `postgres` crate's blocking client panics (it runs a runtime of
//! its own). So the connection lives on a dedicated thread that runs jobs sent
//! over a std channel, and callers wait on a std channel: safe in any context.
//! The connection is reopened on the next call after it breaks.
//!
//! TLS (rustls, see `tls_connector`): `sslmode=require` connects only over
//! TLS, the default `prefer` tries TLS first and falls back to plain text when
//! the server has no TLS or the handshake fails, `sslmode=disable` stays
//! plain. The server's certificate must chain to the CA file named by the
//! standard `sslrootcert=FILE` parameter (which `postgres::Config` does not
//! know, so `split_url` takes it out of the URL), else to the Mozilla roots
//! built in (webpki-roots), and must name the host of the URL.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use ::postgres::config::SslMode;
use ::postgres::{Client, Config, GenericClient, NoTls, Row};
use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::episodes::{self, EpisodeRow, EpisodeTx};
use super::*;
use crate::calendar;
use crate::secret::Secret;

/// What `daemon.state` must look like, for errors.
pub const URL_SHAPE: &str = "postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=require&sslrootcert=/path/to/ca.pem (sslmode is disable, prefer, require, verify-ca or verify-full)";

/// Errors of the PostgreSQL ledger. None of them holds the connection URL: it
/// may carry a password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The driver's error with its causes: its own text alone is often
    /// just `db error`.
    #[error("{}", crate::error_chain::display(.0))]
    Db(::postgres::Error),
    /// The parser's own error is dropped: its details can quote the URL.
    #[error("daemon.state is not a valid PostgreSQL URL; expected {}", URL_SHAPE)]
    Url,
    /// TLS failed where it is required: an untrusted or misnamed certificate,
    /// most often, or a server without TLS. The driver's error with its causes
    /// (which name the host at most, never the password).
    #[error("{0}")]
    Tls(String),
    /// The `sslrootcert` file: its path is not secret, the password is elsewhere.
    #[error("sslrootcert {}: {reason}", path.display())]
    RootCert { path: PathBuf, reason: String },
    #[error("the ledger's connection thread has stopped")]
    Stopped,
    #[error("cannot start the ledger's connection thread: {0}")]
    Thread(std::io::Error),
}

impl From<::postgres::Error> for PgError {
    fn from(e: ::postgres::Error) -> Self {
        PgError::Db(e)
    }
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        StoreError::Postgres(PgError::Db(e))
    }
}

fn stopped<T>(_: T) -> StoreError {
    StoreError::Postgres(PgError::Stopped)
}

/// Schema migrations, applied in order; `quotawatch_schema.version` is the
/// count applied. Times are `timestamptz`, so people can read the tables.
const MIGRATIONS: &[&str] = &[
    // 1: attempts, per-account flags, log positions, as in the SQLite ledger.
    "CREATE TABLE attempts (
        id BIGSERIAL PRIMARY KEY,
        appid TEXT NOT NULL,
        account TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('full', 'api')),
        cgi_path TEXT,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'ok', 'failed', 'ambiguous')),
        errcode BIGINT,
        errmsg TEXT,
        source TEXT NOT NULL,
        trigger TEXT NOT NULL,
        evidence BIGINT NOT NULL,
        forced BOOLEAN NOT NULL,
        owner TEXT NOT NULL,
        verified BOOLEAN
    );
    CREATE INDEX attempts_by_appid ON attempts (appid, started_at);
    CREATE INDEX attempts_pending ON attempts (appid) WHERE outcome = 'pending';
    CREATE TABLE account_flags (
        appid TEXT PRIMARY KEY,
        exhausted_until TIMESTAMPTZ,
        disabled_fingerprint TEXT,
        disabled_reason TEXT,
        disabled_at TIMESTAMPTZ
    );
    CREATE TABLE log_positions (
        source TEXT NOT NULL,
        path TEXT NOT NULL,
        file_id TEXT NOT NULL,
        byte_offset BIGINT NOT NULL,
        PRIMARY KEY (source, path)
    );",
    // 2: durable deduplication, as in the SQLite ledger.
    "CREATE TABLE acted_keys (
        appid TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        attempt BIGINT NOT NULL REFERENCES attempts (id),
        acted_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (appid, idem_key)
    );",
    // 3: lockout accounting, as in the SQLite ledger.
    "CREATE TABLE episodes (
        id BIGSERIAL PRIMARY KEY,
        appid TEXT NOT NULL,
        account TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        resets_at TIMESTAMPTZ NOT NULL,
        ended_at TIMESTAMPTZ,
        attempt BIGINT REFERENCES attempts (id)
    );
    CREATE INDEX episodes_by_appid ON episodes (appid, started_at);
    CREATE TABLE episode_decisions (
        episode BIGINT NOT NULL REFERENCES episodes (id),
        reason TEXT NOT NULL,
        count BIGINT NOT NULL,
        first_at TIMESTAMPTZ NOT NULL,
        last_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (episode, reason)
    );
    CREATE TABLE reports (
        appid TEXT NOT NULL,
        month TEXT NOT NULL,
        sent_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (appid, month)
    );",
    SET_LISTS,
    "CREATE TABLE pacing_memory (
        appid TEXT PRIMARY KEY,
        memory TEXT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    );",
];

/// Account sets' last good lists (SPEC 4a), one row a set; kept apart from
/// the other migrations, as its own step.
const SET_LISTS: &str = "CREATE TABLE account_set_lists (
        set_name TEXT PRIMARY KEY,
        list TEXT NOT NULL,
        saved_at TIMESTAMPTZ NOT NULL
    );";

/// The first key of the session-level advisory lock that marks an attempt in
/// flight (`pg_advisory_lock(OWNER_CLASS, id)`): the writer's session holds
/// it from the intent row's commit until its outcome is written, so a pending
/// row whose lock nobody holds belongs to a session that has ended.
const OWNER_CLASS: i32 = 0x5157_0001;

/// The second key of an attempt's advisory lock (ids past 2^31 wrap; two
/// attempts in flight 2^31 ids apart are not a case).
fn owner_key(id: AttemptId) -> i32 {
    (id & 0x7fff_ffff) as i32
}

/// An advisory-lock key: the first 8 bytes of SHA-256 of `name`, stable
/// across processes and PostgreSQL versions (unlike `hashtext`).
fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Where the CA certificates that a server's certificate must chain to come
/// from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum RootCerts {
    /// No `sslrootcert`, or libpq's `sslrootcert=system`: webpki-roots.
    Builtin,
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
}

/// What to connect to and how: the parsed URL and, unless
/// `sslmode=disable`, the TLS connector.
struct Target {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl Target {
    fn new(config: Config, roots: &RootCerts) -> Result<Self, PgError> {
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(tls_connector(roots)?),
        };
        Ok(Self { config, tls })
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let Some(tls) = &self.tls else {
            return Ok(self.config.connect(NoTls)?);
        };
        match self.config.connect(tls.clone()) {
            Ok(client) => Ok(client),
            // libpq's `prefer`: a failed TLS attempt is retried in plain text
            // (`NoTls` with `prefer` sends no SSLRequest at all).
            Err(e) if handshake_failed(&e) && self.config.get_ssl_mode() == SslMode::Prefer => {
                tracing::warn!(
                    error = %crate::error_chain::display(&e),
                    "PostgreSQL ledger: TLS failed with sslmode=prefer, connecting without TLS; set sslmode=require (and sslrootcert) to refuse plain text"
                );
                Ok(self.config.connect(NoTls)?)
            }
            Err(e) if handshake_failed(&e) => Err(StoreError::Postgres(PgError::Tls(format!(
                "{} (the server's certificate must chain to the sslrootcert file, or to the built-in Mozilla roots without one, and name the host of the URL)",
                crate::error_chain::display(&e)
            )))),
            // "server does not support TLS" under sslmode=require: the
            // driver's Display alone says only "error performing TLS handshake".
            Err(e) if e.to_string() == TLS_ERROR => {
                Err(StoreError::Postgres(PgError::Tls(crate::error_chain::display(&e))))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// How tokio-postgres shows every TLS error, whose cause it leaves out.
const TLS_ERROR: &str = "error performing TLS handshake";

/// Whether `e` is a failed TLS handshake (rustls refused the server or its
/// certificate), as opposed to a refused connection or a failed login.
fn handshake_failed(e: &::postgres::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.is::<rustls::Error>() {
            return true;
        }
        // tokio-rustls wraps rustls' error in an io::Error, whose `source()`
        // skips the wrapped error itself.
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        next = err.source();
    }
    false
}

/// A rustls client (the ring provider, as reqwest uses) that trusts `roots`.
/// rustls always checks that the certificate names the host it connects to,
/// so every TLS mode here is libpq's `verify-full`.
fn tls_connector(roots: &RootCerts) -> Result<MakeRustlsConnect, PgError> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        RootCerts::Builtin => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        RootCerts::File(path) => load_root_certs(&mut store, path)?,
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn load_root_certs(store: &mut rustls::RootCertStore, path: &Path) -> Result<(), PgError> {
    let fail = |reason: String| PgError::RootCert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("not a PEM file ({e})")))?;
        store
            .add(cert)
            .map_err(|e| fail(format!("a certificate is not usable as a CA ({e})")))?;
    }
    if store.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(())
}

/// The connection thread's state.
struct Connection {
    target: Target,
    /// `None` until the first connect, and replaced once it breaks.
    client: Option<Client>,
    /// Attempts this process has in flight, whose owner locks the session
    /// holds (taken again on a new session).
    held: std::collections::BTreeSet<AttemptId>,
}

impl Connection {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        let broken = match &self.client {
            Some(c) => c.is_closed(),
            None => true,
        };
        if broken {
            let mut client = self.target.connect()?;
            // A new session: the old one's owner locks are gone. Take them
            // again for rows still pending (another replica may have
            // recovered one meanwhile; its outcome write reconciles).
            for id in &self.held {
                client.execute(
                    "SELECT pg_try_advisory_lock($1, $2) FROM attempts WHERE id = $3 AND outcome = 'pending'",
                    &[&OWNER_CLASS, &owner_key(*id), id],
                )?;
            }
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Whether the last failure broke the connection, so that reconnecting
    /// and trying again once may work (a server restart is noticed only by
    /// the first statement after it).
    fn broken(&self) -> bool {
        self.client.as_ref().is_some_and(Client::is_closed)
    }
}

pub struct PostgresStore {
    /// Jobs for the thread that owns the connection (see the module docs).
    jobs: mpsc::Sender<Job>,
    /// `host:pid` written into intent rows, for people reading them (the
    /// session's owner lock is what tells a live owner from a dead one).
    owner: String,
}

/// Takes out of the URL what `postgres::Config` does not parse: the
/// `sslrootcert` parameter, and `sslmode=verify-ca` / `verify-full`, which
/// become `require` (that already verifies the chain and the host name).
/// Errors never quote the URL.
fn split_url(url: &str) -> Result<(String, RootCerts), PgError> {
    let bad = || PgError::Url;
    // As tokio-postgres reads it: the credentials end at the first `@`, and
    // the query starts at the first `?` after them.
    let after_creds = url.find('@').map_or(0, |i| i + 1);
    let Some(q) = url[after_creds..].find('?').map(|i| after_creds + i) else {
        return Ok((url.to_string(), RootCerts::Builtin));
    };
    let mut roots = RootCerts::Builtin;
    let mut kept = Vec::new();
    for param in url[q + 1..].split('&') {
        let Some((key, value)) = param.split_once('=') else {
            // Left for the parser to refuse.
            kept.push(param.to_string());
            continue;
        };
        let key = urlencoding::decode(key).map_err(|_| bad())?;
        let value = urlencoding::decode(value).map_err(|_| bad())?;
        match (&*key, &*value) {
            ("sslrootcert", "system") => roots = RootCerts::Builtin,
            ("sslrootcert", "") => return Err(bad()),
            ("sslrootcert", path) => roots = RootCerts::File(PathBuf::from(path)),
            ("sslmode", "verify-ca" | "verify-full") => kept.push("sslmode=require".into()),
            _ => kept.push(param.to_string()),
        }
    }
    let mut rest = url[..q].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, roots))
}

/// Parses the URL (see [`split_url`]) and fills in quotawatch's defaults.
fn connection_config(url: &Secret) -> Result<(Config, RootCerts), PgError> {
    let (url, roots) = split_url(url.expose())?;
    let mut config: Config = url.parse().map_err(|_| PgError::Url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("quotawatch");
    }
    Ok((config, roots))
}

/// What [`PostgresStore::open`] checks before it connects: the URL as the
/// store reads it and the `sslrootcert` file. Config validation runs it, so
/// that `check` refuses what `run` would; nothing is contacted.
pub fn check_target(url: &Secret) -> Result<(), PgError> {
    let (config, roots) = connection_config(url)?;
    Target::new(config, &roots).map(drop)
}

impl PostgresStore {
    /// Connects, applies migrations and starts the connection thread.
    pub fn open(url: &Secret) -> Result<Self, StoreError> {
        let (config, roots) = connection_config(url)?;
        // Reads the sslrootcert file now, so a bad one fails the start.
        let target = Target::new(config, &roots)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("quotawatch-ledger".into())
            .spawn(move || {
                let mut conn = Connection {
                    target,
                    client: None,
                    held: Default::default(),
                };
                let opened = conn.client().and_then(migrate);
                let ok = opened.is_ok();
                let _ = ready_tx.send(opened);
                if ok {
                    // Ends when the store, and so the sender, is dropped.
                    for job in queue {
                        job(&mut conn);
                    }
                }
            })
            .map_err(|e| StoreError::Postgres(PgError::Thread(e)))?;
        ready_rx.recv().map_err(stopped)??;
        Ok(Self {
            jobs,
            owner: owner_id(),
        })
    }

    /// Whether the store's connection is encrypted, as the server sees it
    /// (`pg_stat_ssl`). For tests.
    #[doc(hidden)]
    pub fn connection_encrypted(&self) -> Result<bool, StoreError> {
        self.call(|c| {
            let row = c.query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )?;
            Ok(row.try_get(0)?)
        })
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).map_err(stopped)
    }

    /// Runs `f` on the connection thread and waits for its answer.
    fn call<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Client) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_connection(move |conn| conn.client().and_then(&mut f))
    }

    /// Runs `f` on the connection thread, once more on a new connection when
    /// the first try found it broken, and waits for its answer. `f` must be
    /// safe to run twice: each is one transaction or one idempotent statement.
    fn with_connection<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Box::new(move |conn| {
            let mut result = f(conn);
            if result.is_err() && conn.broken() {
                result = f(conn);
            }
            let _ = reply.send(result);
        }))?;
        answer.recv().map_err(stopped)?
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    // Replicas starting together take turns; the second finds the work done.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key("quotawatch:schema")],
    )?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS quotawatch_schema (version INTEGER NOT NULL)")?;
    let version: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM quotawatch_schema",
            &[],
        )?
        .try_get(0)?;
    let known = MIGRATIONS.len() as i32;
    if version > known {
        return Err(StoreError::TooNew {
            found: version.into(),
            known: known.into(),
        });
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.batch_execute(sql)?;
    }
    tx.execute("DELETE FROM quotawatch_schema", &[])?;
    tx.execute(
        "INSERT INTO quotawatch_schema (version) VALUES ($1)",
        &[&known],
    )?;
    tx.commit()?;
    Ok(())
}

/// Marks pending rows ambiguous when no session holds their owner lock: the
/// session that wrote them has ended (on any host, in any namespace); only
/// `appid`'s rows when given.
fn recover_in(
    c: &mut impl GenericClient,
    now: DateTime<Utc>,
    appid: Option<&str>,
) -> Result<usize, StoreError> {
    let n = c.execute(
        "UPDATE attempts a SET outcome = 'ambiguous', finished_at = $2,
             errmsg = 'the ledger session sending this clear ended before its outcome was recorded'
         WHERE outcome = 'pending' AND ($1::text IS NULL OR appid = $1)
           AND NOT EXISTS (
             SELECT 1 FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid = $3::int4::oid AND l.objid = (a.id & 2147483647)::int4::oid)",
        &[&appid, &now, &OWNER_CLASS],
    )?;
    Ok(n as usize)
}

fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn snapshot_in(
    c: &mut impl GenericClient,
    account: &AccountKey<'_>,
    now: DateTime<Utc>,
) -> Result<Snapshot, StoreError> {
    let month = calendar::month(account.timezone, now);
    let day = calendar::day(account.timezone, now);
    let row = c.query_one(
        "SELECT
            COUNT(*) FILTER (WHERE scope = 'full' AND started_at >= $2 AND started_at < $3),
            COUNT(*) FILTER (WHERE scope = 'full' AND started_at >= $4 AND started_at < $5),
            COUNT(*) FILTER (WHERE scope = 'api' AND started_at >= $2 AND started_at < $3),
            MAX(started_at) FILTER (WHERE scope = 'full'),
            COALESCE(BOOL_OR(outcome = 'pending'), false)
         FROM attempts
         WHERE appid = $1 AND outcome IN ('pending', 'ok', 'ambiguous')",
        &[
            &account.appid,
            &month.start,
            &month.end,
            &day.start,
            &day.end,
        ],
    )?;
    let api_exhausted: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM attempts WHERE appid = $1 AND scope = 'api'
               AND errcode = 48006 AND started_at >= $2 AND started_at < $3)",
            &[&account.appid, &month.start, &month.end],
        )?
        .try_get(0)?;
    let flags = c.query_opt(
        "SELECT exhausted_until, disabled_fingerprint, disabled_reason
         FROM account_flags WHERE appid = $1",
        &[&account.appid],
    )?;
    let (exhausted_until, disabled_fp, disabled_reason): (
        Option<DateTime<Utc>>,
        Option<String>,
        Option<String>,
    ) = match flags {
        Some(f) => (f.try_get(0)?, f.try_get(1)?, f.try_get(2)?),
        None => (None, None, None),
    };
    Ok(Snapshot {
        month_used: count(row.try_get(0)?),
        day_used: count(row.try_get(1)?),
        api_month_used: count(row.try_get(2)?),
        api_exhausted,
        last_clear_at: row.try_get(3)?,
        in_flight: row.try_get(4)?,
        exhausted: exhausted_until.is_some_and(|until| now < until),
        disabled: match disabled_fp {
            Some(fp) if fp == account.fingerprint => Some(disabled_reason.unwrap_or_default()),
            _ => None,
        },
        seen_evidence: 0,
        pacing: c
            .query_opt(super::PACING_MEMORY_OF, &[&account.appid])?
            .map(|r| r.try_get(0))
            .transpose()?,
    })
}

fn record(r: &Row) -> Result<AttemptRecord, StoreError> {
    let scope: String = r.try_get("scope")?;
    let cgi_path: Option<String> = r.try_get("cgi_path")?;
    Ok(AttemptRecord {
        id: r.try_get("id")?,
        account: r.try_get("account")?,
        appid: r.try_get("appid")?,
        target: target_from_columns(&scope, cgi_path),
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        outcome: r.try_get("outcome")?,
        errcode: r.try_get("errcode")?,
        errmsg: r.try_get("errmsg")?,
        source: r.try_get("source")?,
        trigger: r.try_get("trigger")?,
        evidence: count(r.try_get("evidence")?),
        forced: r.try_get("forced")?,
        verified: r.try_get("verified")?,
    })
}

/// The rows of `table` (`attempts` or `episodes`, both keyed by appid and
/// start) that `filter` selects, newest first.
fn filtered(
    c: &mut impl GenericClient,
    table: &str,
    filter: &HistoryFilter,
) -> Result<Vec<Row>, StoreError> {
    Ok(c.query(
        &format!(
            "SELECT * FROM {table}
             WHERE ($1::text IS NULL OR appid = $1)
               AND ($2::timestamptz IS NULL OR started_at >= $2)
               AND ($3::timestamptz IS NULL OR started_at < $3)
             ORDER BY started_at DESC, id DESC LIMIT $4"
        ),
        &[
            &filter.appid,
            &filter.since,
            &filter.until,
            &filter.limit.map(i64::from),
        ],
    )?)
}

/// The episode statements on a transaction that holds the account's
/// episodes lock ([`lock_episodes`]).
struct Episodes<'a, C: GenericClient>(&'a mut C);

/// Serialises the writers of one account's episodes, so that two replicas
/// noting the same lockout open one episode.
fn lock_episodes(c: &mut impl GenericClient, appid: &str) -> Result<(), StoreError> {
    let lock = lock_key(&format!("quotawatch:episodes:{appid}"));
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])?;
    Ok(())
}

fn episode_row(r: &Row) -> Result<EpisodeRow, StoreError> {
    Ok(EpisodeRow {
        id: r.try_get("id")?,
        account: r.try_get("account")?,
        appid: r.try_get("appid")?,
        started_at: r.try_get("started_at")?,
        resets_at: r.try_get("resets_at")?,
        ended_at: r.try_get("ended_at")?,
        attempt: r.try_get("attempt")?,
    })
}

impl<C: GenericClient> EpisodeTx for Episodes<'_, C> {
    fn latest_episode(&mut self, appid: &str) -> Result<Option<EpisodeRow>, StoreError> {
        self.0
            .query_opt(
                "SELECT * FROM episodes WHERE appid = $1 ORDER BY started_at DESC, id DESC LIMIT 1",
                &[&appid],
            )?
            .as_ref()
            .map(episode_row)
            .transpose()
    }

    fn open_episode(
        &mut self,
        account: &AccountKey<'_>,
        at: DateTime<Utc>,
        resets_at: DateTime<Utc>,
    ) -> Result<EpisodeId, StoreError> {
        let row = self.0.query_one(
            "INSERT INTO episodes (appid, account, started_at, resets_at) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&account.appid, &account.name, &at, &resets_at],
        )?;
        Ok(row.try_get(0)?)
    }

    fn move_episode_start(&mut self, id: EpisodeId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE episodes SET started_at = LEAST(started_at, $2) WHERE id = $1",
            &[&id, &at],
        )?;
        Ok(())
    }

    fn add_decisions(
        &mut self,
        id: EpisodeId,
        reason: &str,
        count: u32,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO episode_decisions (episode, reason, count, first_at, last_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (episode, reason) DO UPDATE SET count = episode_decisions.count + excluded.count,
                 first_at = LEAST(episode_decisions.first_at, excluded.first_at),
                 last_at = GREATEST(episode_decisions.last_at, excluded.last_at)",
            &[&id, &reason, &i64::from(count), &first, &last],
        )?;
        Ok(())
    }
}

/// A clear took effect: it ends the account's open episode.
fn end_episode(
    c: &mut impl GenericClient,
    id: AttemptId,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE episodes SET ended_at = $2, attempt = $1
         WHERE appid = (SELECT appid FROM attempts WHERE id = $1)
           AND ended_at IS NULL AND resets_at > $2 AND started_at <= $2",
        &[&id, &at],
    )?;
    Ok(())
}

/// [`AccountKey`] with owned strings, to send to the connection thread.
struct OwnedKey {
    appid: String,
    name: String,
    fingerprint: String,
    timezone: chrono_tz::Tz,
}

impl OwnedKey {
    fn new(k: &AccountKey<'_>) -> Self {
        Self {
            appid: k.appid.to_string(),
            name: k.name.to_string(),
            fingerprint: k.fingerprint.to_string(),
            timezone: k.timezone,
        }
    }

    fn key(&self) -> AccountKey<'_> {
        AccountKey {
            appid: &self.appid,
            name: &self.name,
            fingerprint: &self.fingerprint,
            timezone: self.timezone,
        }
    }
}

/// What the connection thread tells a waiting [`PostgresStore::reserve`]:
/// the snapshot to decide on (the lock held meanwhile), then the result.
enum Step {
    Snapshot(Snapshot),
    Done(Result<Reservation, StoreError>),
}

/// The connection thread's half of `reserve`. The caller's `decide` runs on
/// the caller's thread while this transaction holds the appid's lock; if the
/// caller goes away instead of answering, the transaction rolls back.
/// `asked` is set once the snapshot went to the caller: from then on the
/// step must not be tried again.
/// What a reserve is about, sent to the connection thread.
struct ReserveJob {
    account: OwnedKey,
    intent: Intent,
    owner: String,
    now: DateTime<Utc>,
}

fn reserve_in(
    conn: &mut Connection,
    job: &ReserveJob,
    steps: &mpsc::SyncSender<Step>,
    verdicts: &mpsc::Receiver<Verdict>,
    asked: &mut bool,
) -> Result<Reservation, StoreError> {
    let ReserveJob {
        account,
        intent,
        owner,
        now,
    } = job;
    let now = *now;
    let client = conn.client()?;
    let mut tx = client.transaction()?;
    let lock = lock_key(&format!("quotawatch:reserve:{}", account.appid));
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])?;
    recover_in(&mut tx, now, Some(&account.appid))?;
    let mut snapshot = snapshot_in(&mut tx, &account.key(), now)?;
    let since = intent.keys_since(now);
    let keys: Vec<&str> = intent.keys.iter().map(|(k, _)| k.as_str()).collect();
    let seen: Vec<String> = match keys.is_empty() {
        true => Vec::new(),
        false => tx
            .query(
                "SELECT k.idem_key FROM acted_keys k JOIN attempts a ON a.id = k.attempt
                 WHERE k.appid = $1 AND k.idem_key = ANY($2) AND k.acted_at >= $3
                   AND a.outcome IN ('pending', 'ok', 'ambiguous')",
                &[&account.appid, &keys, &since],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?,
    };
    snapshot.seen_evidence = intent.evidence_under(&seen);
    *asked = true;
    steps.send(Step::Snapshot(snapshot)).map_err(stopped)?;
    let target = match verdicts.recv().map_err(stopped)? {
        Verdict::Clear(target) => target,
        Verdict::Skip { reason, retry_at } => {
            // Commit all the same: the recovery above is worth keeping.
            let skip = Reservation::Skip { reason, retry_at };
            if let Some(note) = intent.lockout_note(now, &skip) {
                lock_episodes(&mut tx, &account.appid)?;
                episodes::note(&mut Episodes(&mut tx), &account.key(), &note)?;
            }
            tx.commit()?;
            return Ok(skip);
        }
    };
    let (scope, cgi_path) = target_columns(&target);
    let row = tx.query_one(
        "INSERT INTO attempts (appid, account, scope, cgi_path, started_at, outcome, source, trigger, evidence, forced, owner)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10) RETURNING id",
        &[
            &account.appid,
            &account.name,
            &scope,
            &cgi_path,
            &now,
            &intent.source,
            &intent.trigger,
            &i64::from(intent.evidence),
            &intent.forced,
            &owner,
        ],
    )?;
    let id: AttemptId = row.try_get(0)?;
    if !keys.is_empty() {
        tx.execute(
            "DELETE FROM acted_keys WHERE appid = $1 AND acted_at < $2",
            &[&account.appid, &since],
        )?;
        // A seen key keeps the attempt that acted on it first.
        let fresh: Vec<&str> = keys
            .into_iter()
            .filter(|k| !seen.iter().any(|s| s == k))
            .collect();
        tx.execute(
            "INSERT INTO acted_keys (appid, idem_key, attempt, acted_at)
             SELECT $1, k, $3, $4 FROM UNNEST($2::text[]) AS k
             ON CONFLICT (appid, idem_key) DO UPDATE SET attempt = excluded.attempt, acted_at = excluded.acted_at",
            &[&account.appid, &fresh, &id, &now],
        )?;
    }
    let reservation = Reservation::Clear { id, target };
    if let Some(note) = intent.lockout_note(now, &reservation) {
        lock_episodes(&mut tx, &account.appid)?;
        episodes::note(&mut Episodes(&mut tx), &account.key(), &note)?;
    }
    // The owner lock is taken before the row is visible to anyone, so no
    // recovery can see it pending without an owner.
    tx.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&OWNER_CLASS, &owner_key(id)],
    )?;
    if let Err(e) = tx.commit() {
        let _ = conn.client().map(|c| {
            c.execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&OWNER_CLASS, &owner_key(id)],
            )
        });
        return Err(e.into());
    }
    conn.held.insert(id);
    Ok(reservation)
}

/// The connection thread's half of `finish`: the outcome (reconciled with a
/// recovery that got there first), then the owner lock let go.
fn finish_in(
    conn: &mut Connection,
    id: AttemptId,
    outcome: &Outcome,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (label, errcode, errmsg) = outcome_columns(outcome);
    let written = (|| {
        let mut tx = conn.client()?.transaction()?;
        let n = tx.execute(
            "UPDATE attempts SET outcome = $2, errcode = $3, errmsg = $4, finished_at = $5
             WHERE id = $1 AND outcome = 'pending'",
            &[&id, &label, &errcode, &errmsg, &at],
        )?;
        if n != 1 {
            let current = tx.query_opt("SELECT outcome FROM attempts WHERE id = $1", &[&id])?;
            let current = current.map(|r| r.try_get::<_, String>(0)).transpose()?;
            settle_finished(id, current, outcome, |errmsg| {
                tx.execute(
                    "UPDATE attempts SET outcome = $2, errcode = $3, errmsg = $4, finished_at = $5 WHERE id = $1",
                    &[&id, &label, &errcode, &errmsg, &at],
                )?;
                Ok(())
            })?;
        }
        if *outcome == Outcome::Ok {
            end_episode(&mut tx, id, at)?;
        }
        tx.commit()?;
        Ok(())
    })();
    if written.is_err() && conn.broken() {
        // The session is gone, and its owner lock with it: the caller tries
        // once more on a new one (which takes the lock again while pending).
        return written;
    }
    // Written, or settled by someone else: either way no longer in flight.
    if conn.held.remove(&id) {
        conn.client()?.execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&OWNER_CLASS, &owner_key(id)],
        )?;
    }
    written
}

impl Store for PostgresStore {
    fn reserve(
        &self,
        account: &AccountKey<'_>,
        intent: &Intent,
        now: DateTime<Utc>,
        decide: &mut dyn FnMut(&Snapshot) -> Verdict,
    ) -> Result<(Snapshot, Reservation), StoreError> {
        let job = ReserveJob {
            account: OwnedKey::new(account),
            intent: intent.clone(),
            owner: self.owner.clone(),
            now,
        };
        let (steps_tx, steps) = mpsc::sync_channel(1);
        let (verdicts, verdicts_rx) = mpsc::sync_channel(1);
        self.send(Box::new(move |conn| {
            let mut asked = false;
            let step = |conn: &mut Connection, asked: &mut bool| {
                reserve_in(conn, &job, &steps_tx, &verdicts_rx, asked)
            };
            let mut done = step(conn, &mut asked);
            // A broken connection before the caller was asked: nothing was
            // decided, so one more try on a new connection is safe.
            if done.is_err() && !asked && conn.broken() {
                done = step(conn, &mut asked);
            }
            let _ = steps_tx.send(Step::Done(done));
        }))?;
        let snapshot = match steps.recv().map_err(stopped)? {
            Step::Snapshot(s) => s,
            Step::Done(Err(e)) => return Err(e),
            Step::Done(Ok(_)) => return Err(stopped(())),
        };
        let verdict = decide(&snapshot);
        verdicts.send(verdict).map_err(stopped)?;
        match steps.recv().map_err(stopped)? {
            Step::Done(reservation) => Ok((snapshot, reservation?)),
            Step::Snapshot(_) => Err(stopped(())),
        }
    }

    fn finish(
        &self,
        id: AttemptId,
        outcome: &Outcome,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let outcome = outcome.clone();
        self.with_connection(move |conn| finish_in(conn, id, &outcome, at))
    }

    fn snapshot(
        &self,
        account: &AccountKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<Snapshot, StoreError> {
        let key = OwnedKey::new(account);
        self.call(move |c| snapshot_in(c, &key.key(), now))
    }

    fn mark_exhausted(
        &self,
        account: &AccountKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let until = calendar::month(account.timezone, now).end;
        let appid = account.appid.to_string();
        self.call(move |c| {
            c.execute(
                "INSERT INTO account_flags (appid, exhausted_until) VALUES ($1, $2)
                 ON CONFLICT (appid) DO UPDATE SET exhausted_until = excluded.exhausted_until",
                &[&appid, &until],
            )?;
            Ok(())
        })
    }

    fn mark_disabled(
        &self,
        account: &AccountKey<'_>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (appid, fingerprint) = (account.appid.to_string(), account.fingerprint.to_string());
        let reason = reason.to_string();
        self.call(move |c| {
            c.execute(
                "INSERT INTO account_flags (appid, disabled_fingerprint, disabled_reason, disabled_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (appid) DO UPDATE SET disabled_fingerprint = excluded.disabled_fingerprint,
                     disabled_reason = excluded.disabled_reason, disabled_at = excluded.disabled_at",
                &[&appid, &fingerprint, &reason, &now],
            )?;
            Ok(())
        })
    }

    fn enable(&self, appid: &str) -> Result<bool, StoreError> {
        let appid = appid.to_string();
        self.call(move |c| {
            let n = c.execute(
                "UPDATE account_flags SET disabled_fingerprint = NULL, disabled_reason = NULL, disabled_at = NULL
                 WHERE appid = $1 AND disabled_fingerprint IS NOT NULL",
                &[&appid],
            )?;
            Ok(n > 0)
        })
    }

    fn set_verified(&self, id: AttemptId, verified: bool) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE attempts SET verified = $2 WHERE id = $1",
                &[&id, &verified],
            )?;
            Ok(())
        })
    }

    fn history(&self, filter: &HistoryFilter) -> Result<Vec<AttemptRecord>, StoreError> {
        let filter = filter.clone();
        self.call(move |c| {
            filtered(c, "attempts", &filter)?
                .iter()
                .map(record)
                .collect()
        })
    }

    fn recover(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.call(move |c| recover_in(c, now, None))
    }

    fn log_position(&self, source: &str, path: &str) -> Result<Option<LogPosition>, StoreError> {
        let (source, path) = (source.to_string(), path.to_string());
        self.call(move |c| {
            let row = c.query_opt(
                "SELECT file_id, byte_offset FROM log_positions WHERE source = $1 AND path = $2",
                &[&source, &path],
            )?;
            Ok(match row {
                Some(r) => Some(LogPosition {
                    file_id: r.try_get(0)?,
                    offset: r.try_get::<_, i64>(1)?.max(0) as u64,
                }),
                None => None,
            })
        })
    }

    fn save_log_position(
        &self,
        source: &str,
        path: &str,
        pos: &LogPosition,
    ) -> Result<(), StoreError> {
        let (source, path, pos) = (source.to_string(), path.to_string(), pos.clone());
        self.call(move |c| {
            c.execute(
                "INSERT INTO log_positions (source, path, file_id, byte_offset) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source, path) DO UPDATE SET file_id = excluded.file_id, byte_offset = excluded.byte_offset",
                &[&source, &path, &pos.file_id, &(pos.offset as i64)],
            )?;
            Ok(())
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.call(|c| Ok(c.batch_execute("SELECT 1")?))
    }

    fn set_list(&self, set: &str) -> Result<Option<String>, StoreError> {
        let set = set.to_string();
        self.call(move |c| match c.query_opt(SET_LIST_GET, &[&set])? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        })
    }

    fn save_set_list(&self, set: &str, list: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let (set, list) = (set.to_string(), list.to_string());
        self.call(move |c| {
            c.execute(SET_LIST_SAVE, &[&set, &list, &at])?;
            Ok(())
        })
    }

    fn note_lockout(&self, account: &AccountKey<'_>, note: &LockoutNote) -> Result<(), StoreError> {
        let (key, note) = (OwnedKey::new(account), note.clone());
        self.call(move |c| {
            let mut tx = c.transaction()?;
            lock_episodes(&mut tx, &key.appid)?;
            episodes::note(&mut Episodes(&mut tx), &key.key(), &note)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn episodes(
        &self,
        filter: &HistoryFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<EpisodeRecord>, StoreError> {
        let filter = filter.clone();
        self.call(move |c| {
            let rows = filtered(c, "episodes", &filter)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let row = episode_row(row)?;
                let counts = c
                    .query(
                        "SELECT reason, count, first_at, last_at FROM episode_decisions WHERE episode = $1 ORDER BY first_at, reason",
                        &[&row.id],
                    )?
                    .iter()
                    .map(|r| {
                        Ok(DecisionCount {
                            reason: r.try_get(0)?,
                            count: count(r.try_get(1)?),
                            first_at: r.try_get(2)?,
                            last_at: r.try_get(3)?,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
                out.push(row.record(now, counts));
            }
            Ok(out)
        })
    }

    fn claim_report(
        &self,
        appid: &str,
        month: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (appid, month) = (appid.to_string(), month.to_string());
        self.call(move |c| {
            let n = c.execute(
                "INSERT INTO reports (appid, month, sent_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&appid, &month, &now],
            )?;
            Ok(n == 1)
        })
    }

    fn fleet(&self, period: &calendar::Period, now: DateTime<Utc>) -> Result<Fleet, StoreError> {
        let (from, to) = (period.start, period.end);
        self.call(move |c| {
            let clears: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM attempts WHERE scope = 'full' AND outcome IN ('pending', 'ok', 'ambiguous')
                     AND started_at >= $1 AND started_at < $2",
                    &[&from, &to],
                )?
                .try_get(0)?;
            let totals = c.query_one(
                "SELECT COUNT(*), COALESCE(SUM(GREATEST(0, EXTRACT(EPOCH FROM LEAST(COALESCE(ended_at, resets_at), $3) - started_at))), 0)::BIGINT
                 FROM episodes WHERE started_at >= $1 AND started_at < $2",
                &[&from, &to, &now],
            )?;
            let flagged = c
                .query(
                    "SELECT appid, BOOL_OR(locked), BOOL_OR(exhausted), MAX(disabled) FROM (
                         SELECT appid, TRUE AS locked, FALSE AS exhausted, NULL::TEXT AS disabled FROM episodes
                         WHERE ended_at IS NULL AND resets_at > $1 AND started_at <= $1
                         UNION ALL
                         SELECT appid, FALSE, COALESCE(exhausted_until > $1, FALSE), disabled_fingerprint FROM account_flags
                         WHERE exhausted_until > $1 OR disabled_fingerprint IS NOT NULL
                     ) f GROUP BY appid ORDER BY appid",
                    &[&now],
                )?
                .iter()
                .map(|r| {
                    Ok(Flags {
                        appid: r.try_get(0)?,
                        locked: r.try_get(1)?,
                        exhausted: r.try_get(2)?,
                        disabled_fingerprint: r.try_get(3)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Fleet {
                clears: clears.max(0) as u64,
                episodes: totals.try_get::<_, i64>(0)?.max(0) as u64,
                locked_seconds: totals.try_get::<_, i64>(1)?.max(0) as u64,
                flagged,
            })
        })
    }

    fn pacing_memories(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.call(|c| {
            c.query(super::PACING_MEMORIES, &[])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn merge_pacing_notes(
        &self,
        appid: &str,
        replica: &str,
        notes: &[(u64, crate::pacing::Note)],
        timezone: Tz,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let (appid, replica, notes) = (appid.to_string(), replica.to_string(), notes.to_vec());
        // One transaction, safe to run twice: a note merged once is skipped.
        self.call(move |c| {
            let mut tx = c.transaction()?;
            let lock = lock_key(&format!("quotawatch:pacing:{appid}"));
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])?;
            let kept: Option<String> = tx
                .query_opt(super::PACING_MEMORY_OF, &[&appid])?
                .map(|r| r.try_get(0))
                .transpose()?;
            let (memory, merged) =
                crate::pacing::merge_into(kept.as_deref(), &replica, &notes, timezone);
            tx.execute(super::SAVE_PACING_MEMORY, &[&appid, &memory, &at])?;
            tx.commit()?;
            Ok(merged)
        })
    }

    fn lockout_totals(&self, now: DateTime<Utc>) -> Result<Vec<LockoutTotal>, StoreError> {
        self.call(move |c| {
            c.query(
                "SELECT appid,
                        SUM(GREATEST(0, EXTRACT(EPOCH FROM LEAST(COALESCE(ended_at, resets_at), $1) - started_at)))::BIGINT,
                        BOOL_OR(ended_at IS NULL AND resets_at > $1)
                 FROM episodes GROUP BY appid ORDER BY appid",
                &[&now],
            )?
            .iter()
            .map(|r| {
                Ok(LockoutTotal {
                    appid: r.try_get(0)?,
                    seconds: r.try_get::<_, i64>(1)?.max(0) as u64,
                    locked: r.try_get(2)?,
                })
            })
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(
            lock_key("quotawatch:reserve:a"),
            lock_key("quotawatch:reserve:b")
        );
    }

    #[test]
    fn sslrootcert_and_verify_modes_are_taken_out_of_the_url() {
        let (rest, roots) = split_url(
            "postgres://qw:pa%3Fss@db.example:5432/qw?sslmode=verify-full&sslrootcert=%2Fetc%2Fqw%20ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://qw:pa%3Fss@db.example:5432/qw?sslmode=require&application_name=x"
        );
        assert_eq!(roots, RootCerts::File("/etc/qw ca.pem".into()));
        // A `?` in an unencoded password is not the query.
        let (rest, roots) = split_url("postgres://qw:a?b@h/qw?sslrootcert=system").unwrap();
        assert_eq!(rest, "postgres://qw:a?b@h/qw");
        assert_eq!(roots, RootCerts::Builtin);
        let (rest, _) = split_url("postgres://qw@h/qw").unwrap();
        assert_eq!(rest, "postgres://qw@h/qw");

        let mode = |url: &str| {
            connection_config(&Secret::new(url))
                .unwrap()
                .0
                .get_ssl_mode()
        };
        assert_eq!(mode("postgres://qw@h/qw"), SslMode::Prefer);
        assert_eq!(mode("postgres://qw@h/qw?sslmode=disable"), SslMode::Disable);
        assert_eq!(mode("postgres://qw@h/qw?sslmode=require"), SslMode::Require);
        assert_eq!(
            mode("postgres://qw@h/qw?sslmode=verify-ca"),
            SslMode::Require
        );
    }

    #[test]
    fn errors_hide_the_password() {
        for bad in [
            "postgres://qw:hunter2@127.0.0.1:notaport/qw",
            "postgres://qw:hunter2@127.0.0.1/qw?sslmode=hunter2x",
            "postgres://qw:hunter2@127.0.0.1/qw?hunter2=1",
            "postgres://qw:hunter2@127.0.0.1/qw?sslrootcert=",
            "postgres://qw:hunter2@127.0.0.1/qw?sslrootcert=%FF",
            "postgres://qw:hunter2@127.0.0.1/qw?sslmode=allow",
        ] {
            let err = PostgresStore::open(&Secret::new(bad)).err().unwrap();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("not a valid PostgreSQL URL"), "{text}");
        }
    }

    #[test]
    fn a_bad_sslrootcert_fails_the_open_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hunter2 is not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, why) in [(&missing, "No such file"), (&not_pem, "no PEM certificate")] {
            // Port 1 refuses: the error must come from the file, not the socket.
            let url = format!(
                "postgres://qw:hunter2@127.0.0.1:1/qw?sslmode=require&sslrootcert={}",
                path.display()
            );
            let err = PostgresStore::open(&Secret::new(&url)).err().unwrap();
            let text = format!("{err}");
            assert!(text.contains("sslrootcert /"), "{text}");
            assert!(text.contains(why), "{text}");
            assert!(!format!("{text} {err:?}").contains("hunter2:"), "{text}");
        }
        // sslmode=disable reads no file, as libpq.
        let url = format!(
            "postgres://qw:hunter2@127.0.0.1:1/qw?sslmode=disable&sslrootcert={}",
            missing.display()
        );
        let err = PostgresStore::open(&Secret::new(&url)).err().unwrap();
        assert!(!err.to_string().contains("sslrootcert"), "{err}");
    }

    /// A server that answers PostgreSQL's SSLRequest with `N` (no TLS) and
    /// then hangs up.
    fn server_without_tls() -> u16 {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut request = [0u8; 8];
                if s.read_exact(&mut request).is_ok() {
                    // Length 8, code 80877103: SSLRequest.
                    assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47]);
                    let _ = s.write_all(b"N");
                }
            }
        });
        port
    }

    #[test]
    fn sslmode_require_refuses_a_server_without_tls() {
        let port = server_without_tls();
        let url = format!("postgres://qw:hunter2@127.0.0.1:{port}/qw?sslmode=require");
        let err = PostgresStore::open(&Secret::new(&url)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "PostgreSQL ledger: error performing TLS handshake: server does not support TLS"
        );
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    #[test]
    fn an_unreachable_server_is_an_error_not_a_panic_inside_a_runtime() {
        // Port 1 on loopback refuses at once. Opening from a runtime thread is
        // what `status` and the daemon do.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let err = rt
            .block_on(async {
                PostgresStore::open(&Secret::new(
                    "postgres://qw:hunter2@127.0.0.1:1/qw?sslmode=disable",
                ))
            })
            .err()
            .unwrap();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
}
