//! Turning a stored connection into live platform objects, without the caller matching on
//! the platform: each adapter provides a [`Connector`]; the server keeps one per platform.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::error::Result;
use crate::history::History;
use crate::ids::{PlatformKind, TenantId};
use crate::inbound::{ChannelFeeds, Resolver};
use crate::model::{AccountIdentity, Connection, Credentials};
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
    /// Per-channel subscriptions (platforms that need them).
    pub feeds: Option<Arc<dyn ChannelFeeds>>,
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

/// What an OAuth authorization produced: who connected which tenant or workspace, with the
/// credentials to store (sealed) for the new connection.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The Microsoft tenant or Slack workspace.
    pub tenant: TenantId,
    /// Slack Enterprise Grid id, when installed org-wide.
    pub enterprise: Option<TenantId>,
    /// A human name for the tenant or workspace.
    pub display_name: String,
    /// The account that consented (the service account, or a personal account to migrate
    /// off later).
    pub account: AccountIdentity,
    /// The granted credentials.
    pub credentials: Credentials,
}

/// The OAuth authorization-code flow of one platform, so the server connects platforms
/// without knowing which.
///
/// The server owns `state` (random, single use, bound to the browser session, 10 minutes)
/// and, where [`Authorizer::uses_pkce`], the PKCE verifier; the adapter builds the
/// provider's URL and exchanges the code.
#[async_trait]
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// The platform.
    fn platform(&self) -> PlatformKind;
    /// Whether the flow takes a PKCE S256 challenge (Microsoft: yes).
    fn uses_pkce(&self) -> bool;
    /// The provider's authorization URL to redirect the browser to.
    fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        pkce_challenge: Option<&str>,
    ) -> Result<String>;
    /// Exchanges the code the provider sent back to `redirect_uri`.
    async fn complete(
        &self,
        code: &SecretString,
        redirect_uri: &str,
        pkce_verifier: Option<&SecretString>,
    ) -> Result<Authorized>;
}
