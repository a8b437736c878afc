//! OAuth v2: the authorize URL, the `oauth.v2.access` code exchange (client id and secret by
//! HTTP Basic) and the refresh of rotating tokens (`grant_type=refresh_token`).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use switchboard_core::{Credentials, TeamId, TenantId, UserId};
use time::OffsetDateTime;
use url::Url;

use crate::client::{Args, Auth, CallOptions, SlackClient};
use crate::config::SlackConfig;
use crate::error::{Error, Result};

/// A workspace or Enterprise Grid organization as named in an OAuth answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedId {
    /// `T…` or `E…`.
    pub id: String,
    /// Its name, when given.
    pub name: Option<String>,
}

/// The outcome of an install (`oauth.v2.access` with a code). `Debug` redacts the tokens.
#[derive(Debug, Clone)]
pub struct Installation {
    /// The workspace; absent for an org-wide Enterprise Grid install.
    pub team: Option<NamedId>,
    /// The Enterprise Grid organization, when the workspace belongs to one.
    pub enterprise: Option<NamedId>,
    /// Installed org-wide on an Enterprise Grid organization.
    pub is_enterprise_install: bool,
    /// The app's bot user.
    pub bot_user_id: Option<UserId>,
    /// The app id.
    pub app_id: Option<String>,
    /// The user who installed the app.
    pub authed_user: Option<UserId>,
    /// `bot` for a bot token.
    pub token_type: Option<String>,
    /// The bot token, its rotation state and its granted scopes.
    pub credentials: Credentials,
}

impl Installation {
    /// The id a connection is keyed by: the workspace, or the organization for an org-wide
    /// install.
    pub fn tenant(&self) -> Result<TenantId> {
        let id = self
            .team
            .as_ref()
            .or(self.enterprise.as_ref())
            .map(|n| n.id.clone())
            .ok_or_else(|| {
                Error::upstream("Slack's OAuth answer names neither a team nor an enterprise")
            })?;
        TenantId::new(id)
    }

    /// The workspace id, when the install is for one workspace.
    pub fn team_id(&self) -> Option<TeamId> {
        self.team.as_ref().and_then(|t| TeamId::new(&t.id).ok())
    }

    /// The Enterprise Grid organization id, kept for Grid installs.
    pub fn enterprise_id(&self) -> Option<TenantId> {
        self.enterprise
            .as_ref()
            .and_then(|e| TenantId::new(&e.id).ok())
    }

    /// A name for humans: the workspace's, else the organization's, else the id.
    pub fn display_name(&self) -> String {
        self.team
            .as_ref()
            .or(self.enterprise.as_ref())
            .map(|n| n.name.clone().unwrap_or_else(|| n.id.clone()))
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct RawNamed {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    id: Option<String>,
}

#[derive(Deserialize)]
struct AccessAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    bot_user_id: Option<String>,
    app_id: Option<String>,
    team: Option<RawNamed>,
    enterprise: Option<RawNamed>,
    #[serde(default)]
    is_enterprise_install: bool,
    authed_user: Option<RawUser>,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
}

impl AccessAnswer {
    fn credentials(&mut self) -> Result<Credentials> {
        let access = self.access_token.take().ok_or_else(|| {
            Error::upstream(
                "Slack's oauth.v2.access answer has no bot access_token (was the app installed with bot scopes?)",
            )
        })?;
        let expires_at = self.expires_in.map(|secs| {
            OffsetDateTime::now_utc() + time::Duration::seconds(secs.clamp(0, 10 * 365 * 86_400))
        });
        Ok(Credentials {
            access_token: SecretString::from(access),
            refresh_token: self.refresh_token.take().map(SecretString::from),
            expires_at,
            scopes: split_scopes(self.scope.as_deref().unwrap_or("")),
        })
    }
}

fn named(raw: Option<RawNamed>) -> Option<NamedId> {
    raw.and_then(|r| {
        r.id.filter(|id| !id.is_empty())
            .map(|id| NamedId { id, name: r.name })
    })
}

/// Scopes as Slack lists them: comma separated (spaces tolerated).
pub fn split_scopes(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// OAuth v2 for one Slack app.
#[derive(Debug, Clone)]
pub struct SlackOAuth {
    client: SlackClient,
    oauth_base: Url,
    client_id: String,
    client_secret: SecretString,
    redirect_uri: Option<Url>,
    bot_scopes: Vec<String>,
}

impl SlackOAuth {
    /// OAuth for the configured app, calling `oauth.v2.access` through `client`.
    pub fn new(config: &SlackConfig, client: SlackClient) -> SlackOAuth {
        SlackOAuth {
            client,
            oauth_base: config.oauth_base.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            redirect_uri: config.redirect_uri.clone(),
            bot_scopes: config.bot_scopes.clone(),
        }
    }

    /// The consent page to send the installing admin to: `client_id`, the bot `scope`s
    /// (comma separated), `redirect_uri` when configured, and the caller's `state`.
    pub fn authorize_url(&self, state: &str) -> Result<Url> {
        if state.is_empty() {
            return Err(Error::invalid("OAuth state must not be empty"));
        }
        let mut url = self
            .oauth_base
            .join("oauth/v2/authorize")
            .map_err(|e| Error::invalid(format!("bad Slack OAuth base URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.client_id);
            q.append_pair("scope", &self.bot_scopes.join(","));
            if let Some(redirect) = &self.redirect_uri {
                q.append_pair("redirect_uri", redirect.as_str());
            }
            q.append_pair("state", state);
        }
        Ok(url)
    }

    /// Exchanges the code of the OAuth callback for the bot token.
    pub async fn exchange_code(&self, code: &str) -> Result<Installation> {
        if code.is_empty() {
            return Err(Error::invalid("the OAuth callback carried no code"));
        }
        let mut form = vec![("code", code.to_owned())];
        if let Some(redirect) = &self.redirect_uri {
            form.push(("redirect_uri", redirect.to_string()));
        }
        let mut answer: AccessAnswer = self
            .client
            .call(
                "oauth.v2.access",
                Auth::Basic {
                    client_id: &self.client_id,
                    client_secret: &self.client_secret,
                },
                &Args::Form(form),
                CallOptions::default(),
            )
            .await?
            .body;
        let credentials = answer.credentials()?;
        let team = named(answer.team.take());
        let enterprise = named(answer.enterprise.take());
        if team.is_none() && enterprise.is_none() {
            return Err(Error::upstream(
                "Slack's oauth.v2.access answer names neither a team nor an enterprise",
            ));
        }
        Ok(Installation {
            team,
            enterprise,
            is_enterprise_install: answer.is_enterprise_install,
            bot_user_id: answer.bot_user_id.and_then(|u| UserId::new(u).ok()),
            app_id: answer.app_id,
            authed_user: answer
                .authed_user
                .and_then(|u| u.id)
                .and_then(|u| UserId::new(u).ok()),
            token_type: answer.token_type,
            credentials,
        })
    }

    /// Trades a refresh token for a new access token and a new refresh token (the old one
    /// stops working). A dead refresh token (`invalid_refresh_token`, `token_revoked`, …)
    /// is [`ErrorKind::NeedsReauth`](crate::ErrorKind::NeedsReauth).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials> {
        let result = self
            .client
            .call::<AccessAnswer>(
                "oauth.v2.access",
                Auth::Basic {
                    client_id: &self.client_id,
                    client_secret: &self.client_secret,
                },
                &Args::Form(vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh_token.expose_secret().to_owned()),
                ]),
                CallOptions::default(),
            )
            .await;
        let mut answer = result?.body;
        answer.credentials()
    }
}
