//! The SQLite backend: one file in the data directory, WAL, one writer connection and a
//! small pool of readers.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use std::sync::Arc;

use switchboard_core::Result;

use crate::StoreOptions;
use crate::convert::{db_err, storage};
use crate::keys::Keyring;

type DB = sqlx::Sqlite;
const PG: bool = false;

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
    // No ping before handing out a connection (sqlx's default): a SQLite connection is a
    // local file that cannot drop, and the ping is one more round trip to the connection's
    // worker thread before every statement.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(o.acquire_timeout)
        .connect_with(base.clone())
        .await
        .map_err(|e| db_err(&opening, e))?;
    crate::migrate::run(&write, crate::migrate::SQLITE).await?;
    let read = SqlitePoolOptions::new()
        .max_connections(o.max_connections.max(1))
        .test_before_acquire(false)
        .acquire_timeout(o.acquire_timeout)
        .connect_with(base)
        .await
        .map_err(|e| db_err(&opening, e))?;
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
