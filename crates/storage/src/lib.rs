//! # switchboard-storage
//!
//! The [`Store`] of Switchboard on sqlx, with two backends sharing
//! one implementation and one conformance suite:
//!
//! - **SQLite**, the embedded default: one file in the data directory ([`DB_FILE_NAME`]),
//!   WAL, created (mode 0600) and migrated on first run;
//! - **PostgreSQL**, for several server replicas sharing one database.
//!
//! ```no_run
//! # async fn demo() -> switchboard_core::Result<()> {
//! use switchboard_core::OrgStore;
//! use switchboard_storage::{Keyring, SqlStore};
//!
//! let dir = std::path::Path::new("./switchboard-data");
//! // The key from SWITCHBOARD_MASTER_KEY, else dir/master.key (created 0600 on first run).
//! let store = SqlStore::open_data_dir(dir).await?;
//! // Or: SqlStore::open("postgres://…", Keyring::load(dir)?).await?
//! let org = store.create_org("Contoso").await?;
//! # let _ = (org, Keyring::load(dir)?);
//! # Ok(()) }
//! ```
//!
//! What it keeps, all scoped by organization: organizations and hashed admin tokens,
//! connections and their **sealed** credentials, named sealed secrets, the imported directory
//! (teams, channels, users, memberships; imports are upserts and what disappeared upstream is
//! marked removed), the identity map (manual links, then verified email), universal
//! channels, the message map (every copy with the identity that posted it and its part),
//! sync cursors, subscriptions and message snapshots, the durable **inbox** of received
//! items (events, change hints, signals; deduplicated per platform key) and **outbox** of
//! typed delivery jobs (per-target order, attempts, leases), and the hash-chained **audit
//! log**.
//!
//! With the `testing` feature, the `testing` module exports the conformance suite every
//! [`Store`] backend runs (`store_conformance!`).
//!
//! Secrets are sealed with XChaCha20-Poly1305 under a [`MasterKey`]; each sealed value
//! records its key id so a [`Keyring`] can rotate keys (see [`keys`]). The database alone
//! reveals no secret. Errors are the core [`Error`]: bad input is
//! `InvalidInput` (naming the field and the limit, see [`limits`]) and changes nothing;
//! values this version cannot read (an unknown enum from a newer version, invalid UTF-8) are
//! `Storage` errors naming the column, never panics.

#![warn(missing_docs)]

pub mod audit;
mod convert;
pub mod keys;
pub mod limits;
mod migrate;
mod seal;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{Error, Result, Store};
use time::OffsetDateTime;

pub use audit::{export_audit_jsonl, verify_jsonl};
pub use keys::{KeyId, Keyring, MasterKey};

/// The SQLite file name inside a data directory.
pub const DB_FILE_NAME: &str = "switchboard.db";

/// Which database a [`SqlStore`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// Tuning for [`SqlStore::open_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// PostgreSQL: the pool size. SQLite: the number of reader connections (there is one
    /// writer). Default 8.
    pub max_connections: u32,
    /// PostgreSQL: the schema to use (created when missing), e.g. one per deployment or per
    /// test. Default: the server's `search_path`.
    pub schema: Option<String>,
    /// SQLite: how long a writer waits for another process's lock. Default 10 s.
    pub busy_timeout: Duration,
    /// How long to wait for a free connection. Default 30 s.
    pub acquire_timeout: Duration,
    /// SQLite: `synchronous = FULL` (survives power loss) instead of `NORMAL` (survives
    /// process crashes, faster). Default `false`.
    pub sqlite_synchronous_full: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            schema: None,
            busy_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(30),
            sqlite_synchronous_full: false,
        }
    }
}

impl StoreOptions {
    /// Sets [`StoreOptions::max_connections`].
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`StoreOptions::schema`]: lowercase letters, digits and `_`, starting with a
    /// letter, at most 63 bytes.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Result<Self> {
        let s = schema.into();
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(Error::invalid(format!(
                "schema name {s:?} must be lowercase letters, digits and _, starting with a letter, at most 63 bytes"
            )));
        }
        self.schema = Some(s);
        Ok(self)
    }

    /// Sets [`StoreOptions::busy_timeout`].
    pub fn with_busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }

    /// Sets [`StoreOptions::acquire_timeout`].
    pub fn with_acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// Sets [`StoreOptions::sqlite_synchronous_full`].
    pub fn with_sqlite_synchronous_full(mut self, full: bool) -> Self {
        self.sqlite_synchronous_full = full;
        self
    }
}

/// What [`SqlStore::prune_queues`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Processed inbox events deleted (their event ids no longer deduplicate).
    pub inbox: u64,
    /// Finished (done or failed) deliveries deleted.
    pub outbox: u64,
}

struct Inner {
    /// The backend as the store traits see it.
    store: Arc<dyn Store>,
    /// The same backend, for what only SQL stores do.
    sql: Arc<dyn sql::SqlBackend>,
    kind: BackendKind,
    keyring: Arc<Keyring>,
}

/// The Switchboard store on SQLite or PostgreSQL. Cheap to clone (shares its pools).
///
/// It dereferences to `dyn` [`Store`] (the backend, which implements every core storage
/// trait): the traits' methods are called on it directly (`store.create_org(…)`), `&*store`
/// is a `&dyn Store`, and [`SqlStore::shared`] hands out an `Arc<dyn Store>` for the relay
/// and the server. It is not itself a `Store` (no `impl Store for SqlStore`), so no
/// signature is written out twice.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

impl std::ops::Deref for SqlStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.inner.store
    }
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend())
            .field("key", self.inner.keyring.current().id())
            .finish()
    }
}

fn is_postgres_url(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

fn sqlite_path(target: &str) -> Result<PathBuf> {
    let path = match target.strip_prefix("sqlite:") {
        Some(rest) => {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            rest.split('?').next().unwrap_or(rest)
        }
        None => target,
    };
    if path.is_empty() || path.contains(":memory:") || path.starts_with("file::memory") {
        return Err(Error::invalid(
            "an in-memory SQLite database is not supported: give a file path (a temporary directory in tests)",
        ));
    }
    Ok(PathBuf::from(path))
}

impl SqlStore {
    /// Opens a store: `postgres://…`/`postgresql://…` selects PostgreSQL; `sqlite://PATH`,
    /// `sqlite:PATH` or a plain path selects SQLite (the file is created on first run).
    /// Migrations are applied.
    pub async fn open(target: &str, keyring: impl Into<Keyring>) -> Result<SqlStore> {
        SqlStore::open_with(target, keyring, StoreOptions::default()).await
    }

    /// [`SqlStore::open`] with options.
    pub async fn open_with(
        target: &str,
        keyring: impl Into<Keyring>,
        options: StoreOptions,
    ) -> Result<SqlStore> {
        let keyring = Arc::new(keyring.into());
        let (store, sql, kind): (Arc<dyn Store>, Arc<dyn sql::SqlBackend>, _) =
            if is_postgres_url(target) {
                let b = Arc::new(sql::postgres::connect(target, keyring.clone(), &options).await?);
                (b.clone(), b, BackendKind::Postgres)
            } else {
                let path = sqlite_path(target)?;
                let b = Arc::new(sql::sqlite::connect(&path, keyring.clone(), &options).await?);
                (b.clone(), b, BackendKind::Sqlite)
            };
        Ok(SqlStore {
            inner: Arc::new(Inner {
                store,
                sql,
                kind,
                keyring,
            }),
        })
    }

    /// Opens (creating on first run) the SQLite database at `path`.
    pub async fn sqlite(path: impl AsRef<Path>, keyring: impl Into<Keyring>) -> Result<SqlStore> {
        let path = path.as_ref();
        let target = path
            .to_str()
            .ok_or_else(|| Error::invalid("the database path is not valid UTF-8"))?;
        SqlStore::open(target, keyring).await
    }

    /// Connects to PostgreSQL at `url`.
    pub async fn postgres(url: &str, keyring: impl Into<Keyring>) -> Result<SqlStore> {
        if !is_postgres_url(url) {
            return Err(Error::invalid(
                "a PostgreSQL URL starts with postgres:// or postgresql://",
            ));
        }
        SqlStore::open(url, keyring).await
    }

    /// The default deployment: the SQLite file [`DB_FILE_NAME`] in `data_dir` with the
    /// keyring of [`Keyring::load`] (the environment, else the data directory's key file).
    pub async fn open_data_dir(data_dir: &Path) -> Result<SqlStore> {
        let keyring = Keyring::load(data_dir)?;
        SqlStore::sqlite(data_dir.join(DB_FILE_NAME), keyring).await
    }

    /// Which database this is.
    pub fn backend(&self) -> BackendKind {
        self.inner.kind
    }

    /// The store as a shared trait object (what the relay and the server hold).
    pub fn shared(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// The keyring sealing and opening secrets.
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// How many sealed values each master key holds (credentials, secrets and subscription
    /// states). After [`SecretStore::reseal_all`](switchboard_core::SecretStore::reseal_all) only the current key should appear; a
    /// retired key absent here can be deleted.
    pub async fn sealed_key_usage(&self) -> Result<BTreeMap<KeyId, u64>> {
        self.inner.sql.sealed_key_usage().await
    }

    /// Deletes processed inbox events and finished deliveries older than `before`. Keep at
    /// least as long as platforms redeliver events (a day is ample): pruned event ids no
    /// longer deduplicate.
    pub async fn prune_queues(&self, before: OffsetDateTime) -> Result<PruneReport> {
        self.inner.sql.prune_queues(before).await
    }

    /// Closes the pools (waits for connections in use to be returned).
    pub async fn close(&self) {
        self.inner.sql.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_select_the_backend() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("sqlite://x.db"));
        assert_eq!(
            sqlite_path("sqlite://data/x.db").unwrap(),
            PathBuf::from("data/x.db")
        );
        assert_eq!(
            sqlite_path("sqlite:x.db?mode=rwc").unwrap(),
            PathBuf::from("x.db")
        );
        assert_eq!(
            sqlite_path("/tmp/x.db").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert!(sqlite_path("sqlite::memory:").is_err());
        assert!(sqlite_path("").is_err());
    }

    #[test]
    fn schema_names_are_validated() {
        assert!(StoreOptions::default().with_schema("sb_test_1").is_ok());
        for bad in ["", "1abc", "Abc", "a-b", "a\"b", &"a".repeat(64)] {
            assert!(StoreOptions::default().with_schema(bad).is_err(), "{bad:?}");
        }
    }
}
