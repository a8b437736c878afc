//! [`SlackConnector`]: core's [`Connector`] for Slack, turning a stored connection and its
//! credentials into the live [`Connected`] objects (one [`SlackConnection`] behind every
//! trait), with rotations handed to core's [`CredentialsSink`].

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use switchboard_core::{
    AccountIdentity, Authorized, Authorizer, Connected, Connection, Connector, Credentials,
    CredentialsSink, PlatformKind, TeamId,
};

use crate::client::SlackClient;
use crate::config::SlackConfig;
use crate::connection::SlackConnection;
use crate::error::{Error, Result};
use crate::oauth::SlackOAuth;

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
            feeds: None,
        })
    }
}

/// Core's [`Authorizer`] for Slack: the OAuth v2 install flow of one app (no PKCE;
/// `oauth.v2.access` with the app's credentials by HTTP Basic).
#[derive(Debug, Clone)]
pub struct SlackAuthorizer {
    oauth: SlackOAuth,
    redirect_uri: Option<String>,
}

impl SlackAuthorizer {
    /// For the app of `config` (its `redirect_uri` must be the server's callback).
    pub fn new(config: &SlackConfig) -> Result<Self> {
        let client = SlackClient::new(config)?;
        Ok(SlackAuthorizer {
            oauth: SlackOAuth::new(config, client),
            redirect_uri: config.redirect_uri.as_ref().map(|u| u.to_string()),
        })
    }

    fn check_redirect(&self, redirect_uri: &str) -> Result<()> {
        match &self.redirect_uri {
            Some(r) if r == redirect_uri => Ok(()),
            Some(r) => Err(Error::invalid(format!(
                "the redirect URI {redirect_uri} is not the Slack app's ({r}); set the server's public URL to match"
            ))),
            None => Err(Error::invalid(
                "the Slack app has no redirect URI configured; set the server's public URL",
            )),
        }
    }
}

#[async_trait]
impl Authorizer for SlackAuthorizer {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Slack
    }

    fn uses_pkce(&self) -> bool {
        false
    }

    fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        _pkce_challenge: Option<&str>,
    ) -> Result<String> {
        self.check_redirect(redirect_uri)?;
        Ok(self.oauth.authorize_url(state)?.to_string())
    }

    async fn complete(
        &self,
        code: &SecretString,
        redirect_uri: &str,
        _pkce_verifier: Option<&SecretString>,
    ) -> Result<Authorized> {
        self.check_redirect(redirect_uri)?;
        let install = self.oauth.exchange_code(code.expose_secret()).await?;
        let bot = install.bot_user_id.clone().ok_or_else(|| {
            Error::upstream("Slack's install answer has no bot user: add a bot user to the app")
        })?;
        Ok(Authorized {
            tenant: install.tenant()?,
            enterprise: install.enterprise_id(),
            display_name: install.display_name(),
            account: AccountIdentity {
                display_name: format!("bot {bot}"),
                user_id: bot,
                is_service_account: true,
            },
            credentials: install.credentials,
        })
    }
}
