//! The PostgreSQL backend: one pool shared by reads and writes; several replicas can share
//! one database (leases use `FOR UPDATE SKIP LOCKED`, audit appends lock their chain head).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use std::sync::Arc;

use switchboard_core::{Error, Result};

use crate::StoreOptions;
use crate::convert::db_err;
use crate::keys::Keyring;

type DB = sqlx::Postgres;
const PG: bool = true;
type DbPool = sqlx::Pool<DB>;
type Tx = sqlx::Transaction<'static, DB>;

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
        // One pool serves reads and writes.
        self.write.close().await;
    }
}

/// Connects, creates the schema when one is configured, and applies migrations.
pub(crate) async fn connect(url: &str, keyring: Arc<Keyring>, o: &StoreOptions) -> Result<Backend> {
    let mut opts = PgConnectOptions::from_str(url)
        .map_err(|e| Error::invalid(format!("the PostgreSQL URL is not valid: {e}")))?;
    if let Some(schema) = &o.schema {
        opts = opts.options([("search_path", schema.as_str())]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(o.max_connections.max(2))
        .acquire_timeout(o.acquire_timeout)
        .connect_with(opts)
        .await
        .map_err(|e| db_err("connecting to PostgreSQL", e))?;
    if let Some(schema) = &o.schema {
        let r = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&pool)
            .await;
        match r {
            Ok(_) => {}
            // Another replica created it at the same moment.
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {}
            Err(e) => return Err(db_err(&format!("creating schema {schema}"), e)),
        }
    }
    crate::migrate::run(&pool, crate::migrate::POSTGRES).await?;
    Ok(Backend {
        write: pool.clone(),
        read: pool,
        keyring,
        platforms: Default::default(),
    })
}
