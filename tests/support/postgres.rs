//! A PostgreSQL database of its own for each test, made on the server
//! `QW_POSTGRES_URL` names (`ci/postgres.sh` starts one) and dropped after.

use quotawatch::secret::Secret;
use quotawatch::store::{PostgresStore, Store};

/// A database made for one test and dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

pub fn admin_url() -> String {
    std::env::var("QW_POSTGRES_URL").expect("QW_POSTGRES_URL (see ci/postgres.sh)")
}

pub fn admin() -> postgres::Client {
    postgres::Client::connect(&admin_url(), postgres::NoTls).expect("connect to QW_POSTGRES_URL")
}

impl TestDb {
    pub fn new(test: &str) -> TestDb {
        let name = format!("qw_{test}_{:08x}", fastrand::u32(..));
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = with_database(&admin_url(), &name);
        TestDb { name, url }
    }

    pub fn open(&self) -> PostgresStore {
        PostgresStore::open(&Secret::new(&self.url)).unwrap()
    }

    /// Opens one more store on the database, as another replica would.
    pub fn opener(&self) -> impl Fn() -> Box<dyn Store> + '_ {
        || Box::new(self.open())
    }

    /// A direct connection, to do what the store never does.
    pub fn raw(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// `url` with its database replaced by `name`, and its query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let slash = base.rfind('/').filter(|&i| i > "postgres://".len());
    let base = slash.map_or(base, |i| &base[..i]);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{base}/{name}{query}")
}
