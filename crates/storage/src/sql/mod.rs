//! The two backends. Both compile the same operations (the `imp` module directory: every
//! store trait implemented on the backend, one file each) against their own sqlx driver, so
//! SQLite and PostgreSQL share one implementation and one conformance suite.

use std::collections::BTreeMap;

use async_trait::async_trait;
use switchboard_core::Result;
use time::OffsetDateTime;

use crate::PruneReport;
use crate::keys::KeyId;

mod lite;
pub(crate) mod postgres;
pub(crate) mod sqlite;

/// What [`SqlStore`](crate::SqlStore) offers beyond the store traits, per backend.
#[async_trait]
pub(crate) trait SqlBackend: Send + Sync {
    /// How many sealed values each key holds.
    async fn sealed_key_usage(&self) -> Result<BTreeMap<KeyId, u64>>;
    /// Deletes finished queue rows older than `before`.
    async fn prune_queues(&self, before: OffsetDateTime) -> Result<PruneReport>;
    /// Closes the pools.
    async fn close(&self);
}
