//! The test databases: a temporary SQLite file, or a fresh schema in the PostgreSQL
//! database of `DATABASE_URL`. Each test gets its own, so tests run in parallel.
//!
//! PostgreSQL: when `DATABASE_URL` is unset the PostgreSQL tests are skipped, unless the `CI`
//! environment variable is set: then they fail, so CI cannot pass without testing PostgreSQL.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use switchboard_core::{Result, Store};
use switchboard_storage::testing::Harness;
use switchboard_storage::{Keyring, MasterKey, SqlStore, StoreOptions};

// ----- harness ------------------------------------------------------------------------------

/// Raw access to the database under the store, to corrupt rows and read bytes.
pub enum Raw {
    /// The SQLite file and a separate connection to it.
    Sqlite {
        path: PathBuf,
        pool: sqlx::SqlitePool,
    },
    /// A separate pool on the test's schema.
    Postgres { pool: sqlx::PgPool, schema: String },
}

/// One test's database.
pub struct TestDb {
    pub store: SqlStore,
    pub target: String,
    pub options: StoreOptions,
    pub key: MasterKey,
    pub raw: Raw,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> Option<TestDb> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("switchboard.db");
        let key = MasterKey::generate();
        let options = StoreOptions::default();
        let target = path.to_str().unwrap().to_owned();
        let store = SqlStore::open_with(&target, key.clone(), options.clone())
            .await
            .unwrap();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .busy_timeout(Duration::from_secs(10)),
            )
            .await
            .unwrap();
        Some(TestDb {
            store,
            target,
            options,
            key,
            raw: Raw::Sqlite { path, pool },
            _dir: Some(dir),
        })
    }

    /// A fresh schema in the PostgreSQL database of `DATABASE_URL`; `None` (skipped) when it
    /// is unset, a failure when it is unset under CI.
    pub async fn postgres() -> Option<TestDb> {
        let url = postgres_url(
            std::env::var("DATABASE_URL").ok(),
            std::env::var_os("CI").is_some(),
        )?;
        assert!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "DATABASE_URL must be a postgres:// URL"
        );
        let schema = format!("sbt_{}", uuid::Uuid::new_v4().simple());
        let key = MasterKey::generate();
        let options = StoreOptions::default()
            .with_max_connections(6)
            .with_schema(schema.clone())
            .unwrap();
        let store = SqlStore::open_with(&url, key.clone(), options.clone())
            .await
            .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(
                PgConnectOptions::from_str(&url)
                    .unwrap()
                    .options([("search_path", schema.as_str())]),
            )
            .await
            .unwrap();
        Some(TestDb {
            store,
            target: url,
            options,
            key,
            raw: Raw::Postgres { pool, schema },
            _dir: None,
        })
    }

    /// Another store on the same database (another process or replica).
    pub async fn reopen(&self, keyring: impl Into<Keyring>) -> Result<SqlStore> {
        SqlStore::open_with(&self.target, keyring, self.options.clone()).await
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.raw, Raw::Postgres { .. })
    }

    /// Runs raw SQL; returns rows affected.
    pub async fn try_exec(&self, sql: &str) -> std::result::Result<u64, sqlx::Error> {
        match &self.raw {
            Raw::Sqlite { pool, .. } => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Raw::Postgres { pool, .. } => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
    }

    /// Runs a query returning one text column.
    pub async fn query_strings(&self, sql: &str) -> Vec<String> {
        let r = match &self.raw {
            Raw::Sqlite { pool, .. } => sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await,
            Raw::Postgres { pool, .. } => {
                sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await
            }
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn exec(&self, sql: &str) -> u64 {
        self.try_exec(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Removes the append-only triggers, as someone with raw database access could.
    pub async fn allow_audit_tampering(&self) {
        if self.is_postgres() {
            self.exec("DROP TRIGGER audit_log_append_only ON audit_log")
                .await;
        } else {
            self.exec("DROP TRIGGER audit_log_no_update").await;
            self.exec("DROP TRIGGER audit_log_no_delete").await;
        }
    }

    /// Every byte the database holds: the SQLite file and its WAL, or every row of every
    /// table of the schema as text (bytea shown as hex).
    pub async fn raw_bytes(&self) -> Vec<u8> {
        match &self.raw {
            Raw::Sqlite { path, .. } => {
                let mut out = std::fs::read(path).unwrap();
                for suffix in ["-wal", "-journal"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    if let Ok(b) = std::fs::read(PathBuf::from(p)) {
                        out.extend(b);
                    }
                }
                out
            }
            Raw::Postgres { pool, schema } => {
                let tables: Vec<(String,)> = sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                )
                .bind(schema)
                .fetch_all(pool)
                .await
                .unwrap();
                assert!(tables.len() > 10, "{tables:?}");
                let mut out = Vec::new();
                for (t,) in tables {
                    let rows: Vec<(String,)> =
                        sqlx::query_as(&format!("SELECT t::text FROM \"{t}\" t"))
                            .fetch_all(pool)
                            .await
                            .unwrap();
                    for (r,) in rows {
                        out.extend(r.into_bytes());
                        out.push(b'\n');
                    }
                }
                out
            }
        }
    }

    /// Drops the test's schema (PostgreSQL) or lets the directory go (SQLite).
    pub async fn cleanup(&self) {
        self.store.close().await;
        if let Raw::Postgres { pool, schema } = &self.raw {
            let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(pool)
                .await;
            pool.close().await;
        }
    }
}

/// The PostgreSQL URL to test against: `None` (skip) without one, a panic without one under
/// CI (an unset `DATABASE_URL` there is a broken pipeline, not a reason to pass).
pub fn postgres_url(database_url: Option<String>, ci: bool) -> Option<String> {
    match database_url.filter(|u| !u.is_empty()) {
        Some(url) => {
            assert!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "DATABASE_URL must be a postgres:// URL"
            );
            Some(url)
        }
        None if ci => panic!(
            "CI is set but DATABASE_URL is not: the PostgreSQL half of the storage suite would \
             be skipped. Start PostgreSQL and export DATABASE_URL (see crates/storage/README.md)."
        ),
        None => None,
    }
}

#[async_trait::async_trait]
impl Harness for TestDb {
    fn store(&self) -> &dyn Store {
        &*self.store
    }

    async fn reopen(&self) -> Arc<dyn Store> {
        self.reopen(self.key.clone()).await.unwrap().shared()
    }

    async fn cleanup(&self) {
        TestDb::cleanup(self).await;
    }
}

#[test]
fn postgres_is_skipped_only_outside_ci() {
    assert_eq!(postgres_url(None, false), None);
    assert_eq!(postgres_url(Some(String::new()), false), None);
    let url = "postgres://u:p@127.0.0.1/db".to_owned();
    assert_eq!(postgres_url(Some(url.clone()), true), Some(url));
    let under_ci = std::panic::catch_unwind(|| postgres_url(None, true));
    assert!(
        under_ci.is_err(),
        "an unset DATABASE_URL under CI must fail"
    );
}
