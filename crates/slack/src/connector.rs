//! [`SlackConnector`]: core's [`Connector`] for Slack, turning a stored connection and its
//! credentials into the live [`Connected`] objects (one [`SlackConnection`] behind every
//! trait), with rotations handed to core's [`CredentialsSink`].

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_core::{
    Connected, Connection, Connector, Credentials, CredentialsSink, PlatformKind, TeamId,
};

use crate::client::SlackClient;
use crate::config::SlackConfig;
use crate::connection::SlackConnection;
use crate::error::{Error, Result};

/// Opens Slack connections; one per server, sharing one Web API client (and its pacing).
#[derive(Debug, Clone)]
pub struct SlackConnector {
    config: SlackConfig,
    client: SlackClient,
}

impl SlackConnector {
    /// A connector for the app in `config`.
    pub fn new(config: SlackConfig) -> Result<SlackConnector> {
        let client = SlackClient::new(&config)?;
        Ok(SlackConnector { config, client })
    }

    /// A connector sharing an existing client.
    pub fn with_client(config: SlackConfig, client: SlackClient) -> SlackConnector {
        SlackConnector { config, client }
    }

    /// The [`SlackConnection`] for `connection` (what [`Connector::open`] wraps).
    pub fn connection(
        &self,
        connection: &Connection,
        credentials: Credentials,
        sink: Arc<dyn CredentialsSink>,
    ) -> Result<SlackConnection> {
        if connection.platform != PlatformKind::Slack {
            return Err(Error::invalid(format!(
                "connection {} is a {} connection, not Slack",
                connection.id, connection.platform
            )));
        }
        let workspace = TeamId::new(connection.tenant.as_str()).map_err(|e| {
            Error::invalid(format!(
                "connection {} has no valid Slack workspace id: {e}",
                connection.id
            ))
        })?;
        Ok(
            SlackConnection::new(&self.config, self.client.clone(), workspace, credentials)
                .with_enterprise(connection.enterprise.clone())
                .with_credentials_sink(sink),
        )
    }
}

#[async_trait]
impl Connector for SlackConnector {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Slack
    }

    async fn open(
        &self,
        connection: &Connection,
        credentials: Credentials,
        sink: Arc<dyn CredentialsSink>,
    ) -> Result<Connected> {
        let slack = Arc::new(self.connection(connection, credentials, sink)?);
        Ok(Connected {
            platform: slack.clone(),
            account: slack.clone(),
            import: slack.clone(),
            history: slack,
            resolver: None,
        })
    }
}
