//! SQLite connections held by the store itself, without sqlx's pool.
//!
//! sqlx's pool hands a connection back through a spawned task that first pings it. On
//! SQLite that ping is a round trip to the connection's worker thread, and the next caller
//! waits for it: every statement run through the pool costs about three thread hand-offs
//! instead of one. The store's writer is a single connection, so that wait was the whole
//! pipeline's limit (measured on this machine: a one-row insert through the pool 315 µs,
//! on a held connection 80 µs; see BENCHMARKS.md, session 7). A SQLite connection is a
//! local file and cannot drop like a network one, so the store keeps its connections in
//! slots of its own: a caller takes a free slot (opening its connection on first use),
//! runs its statement or transaction, and the slot is free again when the guard drops.
//! A connection whose worker thread died is closed and reopened on next use.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteQueryResult, SqliteRow, SqliteStatement,
    SqliteTypeInfo,
};
use sqlx::{
    ConnectOptions as _, Connection as _, Describe, Either, Execute, Executor, Sqlite,
    TransactionManager as _,
};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

type Manager = <Sqlite as sqlx::Database>::TransactionManager;

/// A fixed number of SQLite connections, each opened on first use.
pub(crate) struct Conns {
    options: SqliteConnectOptions,
    slots: Vec<Arc<Mutex<Option<SqliteConnection>>>>,
    free: Arc<Semaphore>,
    acquire_timeout: Duration,
}

impl fmt::Debug for Conns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conns")
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// One slot taken: its connection, open.
pub(crate) struct Held {
    slot: OwnedMutexGuard<Option<SqliteConnection>>,
    _permit: OwnedSemaphorePermit,
}

impl Held {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.slot
            .as_mut()
            .expect("a held slot always has an open connection")
    }

    /// Forgets the connection when its worker thread is gone (the next use reopens it).
    fn check<T>(&mut self, r: &Result<T, sqlx::Error>) {
        if matches!(r, Err(sqlx::Error::WorkerCrashed)) {
            *self.slot = None;
        }
    }
}

impl Conns {
    /// Up to `size` connections with `options`; `first` (already open, e.g. the one the
    /// migrations ran on) fills the first slot.
    pub(crate) fn new(
        options: SqliteConnectOptions,
        size: u32,
        acquire_timeout: Duration,
        mut first: Option<SqliteConnection>,
    ) -> Conns {
        let size = size.max(1) as usize;
        Conns {
            options,
            slots: (0..size)
                .map(|_| Arc::new(Mutex::new(first.take())))
                .collect(),
            free: Arc::new(Semaphore::new(size)),
            acquire_timeout,
        }
    }

    /// Takes a free slot, waiting at most the acquire timeout for one.
    pub(crate) async fn acquire(&self) -> Result<Held, sqlx::Error> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.free.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // A permit means a slot nobody holds; prefer the first ones, so connections are
        // opened only as concurrency needs them. (A scan can miss the free slot when other
        // holders take and free slots meanwhile: then it scans again.)
        let mut slot = loop {
            if let Some(g) = self
                .slots
                .iter()
                .find_map(|s| s.clone().try_lock_owned().ok())
            {
                break g;
            }
            tokio::task::yield_now().await;
        };
        if slot.is_none() {
            *slot = Some(self.options.connect().await?);
        }
        Ok(Held {
            slot,
            _permit: permit,
        })
    }

    /// Starts a transaction with `BEGIN`.
    pub(crate) async fn begin(&self) -> Result<LiteTx, sqlx::Error> {
        self.start(None).await
    }

    /// Starts a transaction with `statement` (e.g. `BEGIN IMMEDIATE`).
    pub(crate) async fn begin_with(&self, statement: &'static str) -> Result<LiteTx, sqlx::Error> {
        self.start(Some(Cow::Borrowed(statement))).await
    }

    async fn start(&self, statement: Option<Cow<'static, str>>) -> Result<LiteTx, sqlx::Error> {
        let mut held = self.acquire().await?;
        let r = Manager::begin(held.conn(), statement).await;
        held.check(&r);
        r?;
        Ok(LiteTx { held, open: true })
    }

    /// Closes every open connection; later calls fail.
    pub(crate) async fn close(&self) {
        self.free.close();
        for s in &self.slots {
            if let Some(c) = s.lock().await.take() {
                let _ = c.close().await;
            }
        }
    }
}

/// A transaction on one held connection; rolled back when dropped uncommitted.
pub(crate) struct LiteTx {
    held: Held,
    open: bool,
}

impl fmt::Debug for LiteTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteTx").field("open", &self.open).finish()
    }
}

impl LiteTx {
    /// Commits.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let held = &mut self.held;
        let r = Manager::commit(held.conn()).await;
        held.check(&r);
        self.open = r.is_err();
        r
    }

    /// Rolls back.
    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let held = &mut self.held;
        let r = Manager::rollback(held.conn()).await;
        held.check(&r);
        self.open = r.is_err();
        r
    }
}

impl Drop for LiteTx {
    fn drop(&mut self) {
        if self.open
            && let Some(conn) = self.held.slot.as_mut()
        {
            // Queued on the connection's worker before anything the next holder sends.
            Manager::start_rollback(conn);
        }
    }
}

impl Deref for LiteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.held
            .slot
            .as_ref()
            .expect("a transaction holds an open connection")
    }
}

impl DerefMut for LiteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.held.conn()
    }
}

impl<'c> Executor<'c> for &'c Conns {
    type Database = Sqlite;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<SqliteQueryResult, SqliteRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Sqlite>,
    {
        // The rows are collected while the slot is held (the store reads whole results
        // anyway), so the slot is free before the caller sees the first one.
        futures::stream::once(async move {
            let mut held = self.acquire().await?;
            let r = held.conn().fetch_many(query).try_collect::<Vec<_>>().await;
            held.check(&r);
            r
        })
        .map_ok(|rows| futures::stream::iter(rows.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<SqliteRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Sqlite>,
    {
        Box::pin(async move {
            let mut held = self.acquire().await?;
            let r = held.conn().fetch_optional(query).await;
            held.check(&r);
            r
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [SqliteTypeInfo],
    ) -> BoxFuture<'e, Result<SqliteStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            let mut held = self.acquire().await?;
            let r = held.conn().prepare_with(sql, parameters).await;
            held.check(&r);
            r
        })
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Sqlite>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            let mut held = self.acquire().await?;
            let r = held.conn().describe(sql).await;
            held.check(&r);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteJournalMode;

    fn conns(dir: &tempfile::TempDir, size: u32, timeout_ms: u64) -> Conns {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        Conns::new(options, size, Duration::from_millis(timeout_ms), None)
    }

    async fn count(c: &Conns) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(c)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_dropped_transaction_is_rolled_back_before_the_next_holder_runs() {
        let dir = tempfile::tempdir().unwrap();
        let c = conns(&dir, 1, 1000);
        sqlx::query("CREATE TABLE t (v INTEGER)")
            .execute(&c)
            .await
            .unwrap();
        {
            let mut tx = c.begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
            // dropped uncommitted
        }
        assert_eq!(count(&c).await, 0, "the insert was rolled back");
        // The same (only) connection starts a new transaction: none is left open on it.
        let mut tx = c.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(&c).await, 1);
    }

    #[tokio::test]
    async fn a_caller_waits_for_a_free_slot_and_times_out_as_the_pool_did() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(conns(&dir, 1, 200));
        let tx = c.begin().await.unwrap();
        let err = sqlx::query("SELECT 1").execute(&*c).await.unwrap_err();
        assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
        // Freed, the next caller gets the slot at once.
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { sqlx::query("SELECT 1").execute(&*c).await })
        };
        tx.rollback().await.unwrap();
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn concurrent_readers_each_get_a_connection_and_see_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(conns(&dir, 3, 1000));
        sqlx::query("CREATE TABLE t (v INTEGER)")
            .execute(&*c)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1), (2), (3)")
            .execute(&*c)
            .await
            .unwrap();
        // Three transactions open at once need three slots.
        let a = c.begin().await.unwrap();
        let b = c.begin().await.unwrap();
        let mut third = c.begin().await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *third)
            .await
            .unwrap();
        assert_eq!(n, 3);
        drop((a, b, third));
        let rows: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&*c)
            .await
            .unwrap();
        assert_eq!(rows, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_closed_set_refuses_callers() {
        let dir = tempfile::tempdir().unwrap();
        let c = conns(&dir, 2, 1000);
        sqlx::query("SELECT 1").execute(&c).await.unwrap();
        c.close().await;
        let err = sqlx::query("SELECT 1").execute(&c).await.unwrap_err();
        assert!(matches!(err, sqlx::Error::PoolClosed), "{err:?}");
    }
}
