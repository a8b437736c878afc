//! Turning a stored connection into live platform objects, without the caller matching on
//! the platform: each adapter provides a [`Connector`]; the server keeps one per platform.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::history::History;
use crate::ids::PlatformKind;
use crate::inbound::Resolver;
use crate::model::{Connection, Credentials};
use crate::platform::{Platform, ServiceAccount, TeamImport};

/// Told about every credential rotation (refresh tokens rotate: the old one stops working once
/// a new one is issued), so the new credentials are sealed and stored at once. One callback
/// for every adapter.
#[async_trait]
pub trait CredentialsSink: Send + Sync {
    /// Persists `credentials`, replacing what was stored for the connection. An error is
    /// logged by the adapter; the fresh token is still used.
    async fn persist(&self, credentials: &Credentials) -> Result<()>;
}

/// The live objects of one connection.
#[derive(Debug, Clone)]
pub struct Connected {
    /// Posting and managing messages.
    pub platform: Arc<dyn Platform>,
    /// The administering account.
    pub account: Arc<dyn ServiceAccount>,
    /// Reading teams, channels, members, users.
    pub import: Arc<dyn TeamImport>,
    /// Catch-up and reconciliation.
    pub history: Arc<dyn History>,
    /// Resolving change hints (platforms whose notifications carry only a pointer).
    pub resolver: Option<Arc<dyn Resolver>>,
}

/// Opens connections of one platform from what the store holds.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The platform this connector serves.
    fn platform(&self) -> PlatformKind;
    /// Builds the live objects for `connection` with its `credentials`; every rotation of the
    /// credentials is handed to `sink`.
    async fn open(
        &self,
        connection: &Connection,
        credentials: Credentials,
        sink: Arc<dyn CredentialsSink>,
    ) -> Result<Connected>;
}
