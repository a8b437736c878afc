//! [`MsTeamsConnector`]: core's [`Connector`] for Teams, turning a stored connection and its
//! credentials into live objects.

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_core::{
    Connected, Connection, Connector, Credentials, CredentialsSink, Error, PlatformKind, Result,
};

use crate::config::MsTeamsConfig;
use crate::connection::MsTeamsConnection;
use crate::receive::TeamsResolver;

/// Opens Teams connections with one app registration (`config`: endpoints, client id and
/// secret, limits); each connection gets its own tenant and token provider.
#[derive(Debug, Clone)]
pub struct MsTeamsConnector {
    config: MsTeamsConfig,
}

impl MsTeamsConnector {
    /// A connector for the app registration in `config` (its `tenant` is replaced by each
    /// connection's own).
    pub fn new(config: MsTeamsConfig) -> Self {
        MsTeamsConnector { config }
    }

    /// Opens `connection` and returns the concrete connection (for calls beyond the core
    /// traits: subscriptions, delta, the daily budget).
    pub fn open_connection(
        &self,
        connection: &Connection,
        credentials: Credentials,
        sink: Arc<dyn CredentialsSink>,
    ) -> Result<Arc<MsTeamsConnection>> {
        if connection.platform != PlatformKind::Msteams {
            return Err(Error::invalid(format!(
                "connection {} is a {} connection, not a Microsoft Teams one",
                connection.id, connection.platform
            )));
        }
        let mut config = self.config.clone();
        config.tenant = connection.tenant.as_str().to_owned();
        let conn = MsTeamsConnection::from_credentials(config, credentials, Some(sink))?;
        let conn = if connection.account.is_service_account {
            conn
        } else {
            conn.personal_account()
        };
        Ok(Arc::new(conn))
    }
}

#[async_trait]
impl Connector for MsTeamsConnector {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Msteams
    }

    /// One [`MsTeamsConnection`] serves as platform, account, import and history; the
    /// resolver is a [`TeamsResolver`] on it. Every token rotation goes to `sink`.
    async fn open(
        &self,
        connection: &Connection,
        credentials: Credentials,
        sink: Arc<dyn CredentialsSink>,
    ) -> Result<Connected> {
        let conn = self.open_connection(connection, credentials, sink)?;
        Ok(Connected {
            platform: conn.clone(),
            account: conn.clone(),
            import: conn.clone(),
            history: conn.clone(),
            resolver: Some(Arc::new(TeamsResolver::new(conn))),
        })
    }
}
