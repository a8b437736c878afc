//! The SQLite backend: one file in the data directory, WAL, one writer connection and a
//! small pool of readers.

use std::path::Path;

use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use std::sync::Arc;

use switchboard_core::Result;

use crate::StoreOptions;
use crate::convert::{db_err, storage};
use crate::keys::Keyring;

type DB = sqlx::Sqlite;
const PG: bool = false;
/// The store's own SQLite connections (not sqlx's pool: see [`super::lite`]).
type DbPool = super::lite::Conns;
type Tx = super::lite::LiteTx;

// The shared operations, compiled for this driver.
#[allow(clippy::duplicate_mod)]
#[path = "imp/mod.rs"]
mod imp;

pub(crate) use imp::Backend;

#[async_trait::async_trait]
impl super::SqlBackend for Backend {
    async fn sealed_key_usage(&self) -> Result<std::collections::BTreeMap<crate::KeyId, u64>> {
        Backend::sealed_key_usage(self).await
    }

    async fn prune_queues(&self, before: time::OffsetDateTime) -> Result<crate::PruneReport> {
        Backend::prune_queues(self, before).await
    }

    async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Opens (creating on first run) the database file at `path` and applies migrations.
pub(crate) async fn connect(
    path: &Path,
    keyring: Arc<Keyring>,
    o: &StoreOptions,
) -> Result<Backend> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            storage(format!(
                "could not create directory {}: {e}",
                parent.display()
            ))
        })?;
    }
    create_private_file(path)?;
    let base = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if o.sqlite_synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .busy_timeout(o.busy_timeout)
        .foreign_keys(true)
        .pragma("temp_store", "memory");
    let opening = format!("opening SQLite database {}", path.display());
    // One writer (SQLite has one at a time anyway); the migrations run on it first.
    let mut first = base.connect().await.map_err(|e| db_err(&opening, e))?;
    crate::migrate::run_on::<DB>(&mut first, crate::migrate::SQLITE).await?;
    let write = DbPool::new(base.clone(), 1, o.acquire_timeout, Some(first));
    let read = DbPool::new(base, o.max_connections.max(1), o.acquire_timeout, None);
    Ok(Backend {
        write,
        read,
        keyring,
        platforms: Default::default(),
    })
}

/// Creates the database file with mode 0600 before SQLite does (SQLite would use the
/// umask); its `-wal` and `-shm` files inherit the mode.
fn create_private_file(path: &Path) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(storage(format!(
            "could not create database file {}: {e}",
            path.display()
        ))),
    }
}
