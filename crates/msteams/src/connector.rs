//! [`MsTeamsConnector`]: core's [`Connector`] for Teams, turning a stored connection and its
//! credentials into live objects.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use switchboard_core::{
    AccountIdentity, Authorized, Authorizer, Connected, Connection, Connector, Credentials,
    CredentialsSink, Error, PlatformKind, Result, TenantId, UserId,
};

use crate::config::MsTeamsConfig;
use crate::connection::MsTeamsConnection;
use crate::oauth::OAuthClient;
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
            resolver: Some(Arc::new(TeamsResolver::new(conn.clone()))),
            feeds: Some(Arc::new(crate::subscriptions::GraphFeeds::new(
                conn,
                connection.id.clone(),
            ))),
        })
    }
}

/// Core's [`Authorizer`] for Microsoft: the authorization-code flow with PKCE of one app
/// registration, then `GET /me` to learn who consented.
#[derive(Debug, Clone)]
pub struct MsTeamsAuthorizer {
    config: MsTeamsConfig,
    oauth: OAuthClient,
    end_user: bool,
}

impl MsTeamsAuthorizer {
    /// For the app registration of `config`. Its `tenant` must be the tenant's id (a GUID or
    /// verified domain): connections are stored under it.
    pub fn new(config: MsTeamsConfig) -> Result<Self> {
        let oauth = OAuthClient::new(&config)?;
        Ok(MsTeamsAuthorizer {
            config,
            oauth,
            end_user: false,
        })
    }

    /// The flow an end user takes to link their own Teams account ("post as me"): the same
    /// app registration and redirect URI, asking only the delegated scopes posting as the user
    /// needs ([`end_user_scopes`](crate::oauth::end_user_scopes)); the account it reports is
    /// not a service account.
    pub fn for_end_users(config: MsTeamsConfig) -> Result<Self> {
        let oauth = OAuthClient::new(&config)?.with_scopes(crate::oauth::end_user_scopes());
        Ok(MsTeamsAuthorizer {
            config,
            oauth,
            end_user: true,
        })
    }

    fn check_redirect(&self, redirect_uri: &str) -> Result<()> {
        if redirect_uri != self.oauth.redirect_uri().as_str() {
            return Err(Error::invalid(format!(
                "the redirect URI {redirect_uri} is not the app registration's ({}); set the server's public URL to match",
                self.oauth.redirect_uri()
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Authorizer for MsTeamsAuthorizer {
    fn platform(&self) -> PlatformKind {
        PlatformKind::Msteams
    }

    fn uses_pkce(&self) -> bool {
        true
    }

    fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        pkce_challenge: Option<&str>,
    ) -> Result<String> {
        self.check_redirect(redirect_uri)?;
        let challenge = pkce_challenge
            .ok_or_else(|| Error::invalid("Microsoft sign-in needs a PKCE challenge"))?;
        Ok(self
            .oauth
            .authorize_url_with_challenge(state, challenge, None, Some("select_account"))
            .to_string())
    }

    async fn complete(
        &self,
        code: &SecretString,
        redirect_uri: &str,
        pkce_verifier: Option<&SecretString>,
    ) -> Result<Authorized> {
        self.check_redirect(redirect_uri)?;
        let verifier = pkce_verifier
            .ok_or_else(|| Error::invalid("Microsoft sign-in needs the PKCE verifier"))?;
        let credentials = self.oauth.exchange_code(code, verifier).await?;
        let probe =
            MsTeamsConnection::from_credentials(self.config.clone(), credentials.clone(), None)?;
        let me = probe.me().await?;
        let upn = me
            .user_principal_name
            .clone()
            .or(me.mail.clone())
            .unwrap_or_else(|| me.id.clone());
        let domain = upn.split_once('@').map(|(_, d)| d.to_owned());
        Ok(Authorized {
            tenant: TenantId::new(self.config.tenant.clone())?,
            enterprise: None,
            display_name: domain.unwrap_or_else(|| self.config.tenant.clone()),
            account: AccountIdentity {
                user_id: UserId::new(me.id).map_err(|e| {
                    Error::upstream(format!("Graph returned an unusable user id: {e}"))
                })?,
                display_name: upn,
                is_service_account: !self.end_user,
            },
            credentials,
        })
    }
}
