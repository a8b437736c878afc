//! What the commands share: the global options, the platforms' app registrations (from the
//! configuration or a running sandbox), and for the admin commands the opened store, the
//! organization they act for and the live connections.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use switchboard_core::{Authorizer, Connector, OrgId, Store};
use switchboard_msteams::{GraphReceiver, MsTeamsAuthorizer, MsTeamsConfig, MsTeamsConnector};
use switchboard_sandbox::ReadyInfo;
use switchboard_server::Receivers;
use switchboard_server::config::ServerConfig;
use switchboard_server::pool::ConnectionPool;
use switchboard_server::serve;
use switchboard_server::webhooks::StoreClientStates;
use switchboard_slack::{
    OwnIdentityCache, SlackAuthorizer, SlackConfig, SlackConnector, SlackEventsReceiver,
};
use url::Url;

pub(crate) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The options every admin command takes (PRODUCT.md's global options).
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Configuration file (switchboard.toml); every key can also be set by `SWITCHBOARD_*`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory: the SQLite file and the key file (overrides the configuration).
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// The organization to act for (id or name; the oldest when absent).
    #[arg(long)]
    pub org: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl GlobalArgs {
    /// The configuration with the command-line overrides applied.
    pub fn load_config(&self) -> Result<ServerConfig, String> {
        let mut config = ServerConfig::load(self.config.as_deref()).map_err(err)?;
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        Ok(config)
    }
}

/// A platform's OAuth flow with its connector.
pub type OAuthPlatform = (Arc<dyn Authorizer>, Arc<dyn Connector>);

/// The platforms this installation talks to: app registrations and endpoints.
#[derive(Clone, Default)]
pub struct Platforms {
    /// Teams, when configured.
    pub msteams: Option<MsTeamsConfig>,
    /// Slack, when configured.
    pub slack: Option<SlackConfig>,
    /// The sandbox the registrations came from, if any.
    pub sandbox: Option<ReadyInfo>,
}

impl std::fmt::Debug for Platforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platforms")
            .field("msteams", &self.msteams.is_some())
            .field("slack", &self.slack.is_some())
            .field("sandbox", &self.sandbox.as_ref().map(|s| &s.base_url))
            .finish()
    }
}

impl Platforms {
    /// Both platforms of a sandbox, with OAuth redirects to `public` (the server's base URL).
    pub fn from_ready(ready: &ReadyInfo, public: &str) -> Result<Platforms, String> {
        let msteams = MsTeamsConfig::with_endpoints(
            &ready.microsoft_login_url,
            &ready.graph_api_url,
            ready.msteams.tenant_id.clone(),
            ready.msteams.client_id.clone(),
            SecretString::from(ready.msteams.client_secret.clone()),
            &format!("{public}/connect/msteams/callback"),
        )
        .map_err(err)?
        .limits(switchboard_msteams::RateLimits::documented().scaled(ready.time_scale));
        let slack = SlackConfig::new(
            ready.slack.client_id.clone(),
            SecretString::from(ready.slack.client_secret.clone()),
            SecretString::from(ready.slack.signing_secret.clone()),
        )
        .with_base_urls(
            Url::parse(&ready.slack_api_url).map_err(err)?,
            Url::parse(&format!("{}/slack/", ready.base_url)).map_err(err)?,
        )
        .with_redirect_uri(Url::parse(&format!("{public}/connect/slack/callback")).map_err(err)?)
        .with_limits(switchboard_slack::RateLimits::documented().scaled(ready.time_scale));
        Ok(Platforms {
            msteams: Some(msteams),
            slack: Some(slack),
            sandbox: Some(ready.clone()),
        })
    }

    /// The `[msteams]` and `[slack]` sections of the configuration.
    pub fn from_config(config: &ServerConfig, public: &str) -> Result<Platforms, String> {
        let msteams = match &config.msteams {
            None => None,
            Some(app) => Some(
                MsTeamsConfig::with_endpoints(
                    app.login_url
                        .as_deref()
                        .unwrap_or("https://login.microsoftonline.com"),
                    app.graph_url
                        .as_deref()
                        .unwrap_or("https://graph.microsoft.com/v1.0"),
                    app.tenant_id.clone(),
                    app.client_id.clone(),
                    app.client_secret.clone(),
                    &format!("{public}/connect/msteams/callback"),
                )
                .map_err(|e| format!("[msteams]: {e}"))?,
            ),
        };
        let slack = match &config.slack {
            None => None,
            Some(app) => {
                let mut c = SlackConfig::new(
                    app.client_id.clone(),
                    app.client_secret.clone(),
                    app.signing_secret.clone(),
                );
                if app.api_url.is_some() || app.oauth_url.is_some() {
                    let api =
                        Url::parse(app.api_url.as_deref().unwrap_or("https://slack.com/api/"))
                            .map_err(|e| format!("[slack] api_url: {e}"))?;
                    let oauth =
                        Url::parse(app.oauth_url.as_deref().unwrap_or("https://slack.com/"))
                            .map_err(|e| format!("[slack] oauth_url: {e}"))?;
                    c = c.with_base_urls(api, oauth);
                }
                let c = c.with_redirect_uri(
                    Url::parse(&format!("{public}/connect/slack/callback")).map_err(err)?,
                );
                c.validate().map_err(|e| format!("[slack]: {e}"))?;
                Some(c)
            }
        };
        Ok(Platforms {
            msteams,
            slack,
            sandbox: None,
        })
    }

    /// `sandbox_url` of the configuration when set (the sandbox's ready object is fetched),
    /// else its `[msteams]`/`[slack]` sections.
    pub async fn resolve(config: &ServerConfig, public: &str) -> Result<Platforms, String> {
        match &config.sandbox_url {
            Some(url) => Platforms::from_ready(&fetch_ready(url).await?, public),
            None => Platforms::from_config(config, public),
        }
    }

    /// The connectors of the configured platforms.
    pub fn connectors(&self) -> Result<Vec<Arc<dyn Connector>>, String> {
        let mut out: Vec<Arc<dyn Connector>> = Vec::new();
        if let Some(c) = &self.msteams {
            out.push(Arc::new(MsTeamsConnector::new(c.clone())));
        }
        if let Some(c) = &self.slack {
            out.push(Arc::new(SlackConnector::new(c.clone()).map_err(err)?));
        }
        Ok(out)
    }

    /// The OAuth side of each configured platform, with its connector.
    pub fn authorizers(&self) -> Result<Vec<OAuthPlatform>, String> {
        let mut out: Vec<OAuthPlatform> = Vec::new();
        if let Some(c) = &self.msteams {
            out.push((
                Arc::new(MsTeamsAuthorizer::new(c.clone()).map_err(err)?),
                Arc::new(MsTeamsConnector::new(c.clone())),
            ));
        }
        if let Some(c) = &self.slack {
            out.push((
                Arc::new(SlackAuthorizer::new(c).map_err(err)?),
                Arc::new(SlackConnector::new(c.clone()).map_err(err)?),
            ));
        }
        Ok(out)
    }

    /// The webhook receivers of the configured platforms.
    pub fn receivers(&self, store: &Arc<dyn Store>) -> Receivers {
        let mut receivers = Receivers::default();
        if let Some(c) = &self.slack {
            receivers.slack = Some(Arc::new(SlackEventsReceiver::new(
                SecretString::from(c.signing_secret.expose_secret().to_owned()),
                None,
                Arc::new(OwnIdentityCache::default()),
            )));
        }
        if self.msteams.is_some() {
            receivers.graph = Some(Arc::new(GraphReceiver::new(Arc::new(
                StoreClientStates::new(store.clone()),
            ))));
        }
        receivers
    }
}

/// The ready object of the sandbox at `url`.
pub async fn fetch_ready(url: &str) -> Result<ReadyInfo, String> {
    let url = format!("{}/_sandbox/ready", url.trim_end_matches('/'));
    reqwest::get(&url)
        .await
        .map_err(|e| format!("cannot reach the sandbox at {url}: {e}"))?
        .error_for_status()
        .map_err(|e| format!("the sandbox at {url} answered {e}"))?
        .json::<ReadyInfo>()
        .await
        .map_err(|e| format!("the sandbox at {url} sent no ready object: {e}"))
}

/// An admin command's view of the installation: the store in the data directory (or
/// PostgreSQL), the organization it acts for, and the platforms.
pub struct Ctx {
    /// The configuration.
    pub config: ServerConfig,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The organization acted for.
    pub org: OrgId,
    /// The configured platforms.
    pub platforms: Platforms,
    /// Live connections through the platforms' connectors.
    pub pool: Arc<ConnectionPool>,
    /// `--json`.
    pub json: bool,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("org", &self.org)
            .field("platforms", &self.platforms)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// Opens the store named by the configuration and picks the organization.
    pub async fn open(global: &GlobalArgs) -> Result<Ctx, String> {
        let config = global.load_config()?;
        let store: Arc<dyn Store> = serve::open_store(&config).await.map_err(err)?.shared();
        let orgs = store.list_orgs().await.map_err(err)?;
        let org = match &global.org {
            Some(wanted) => orgs
                .into_iter()
                .find(|o| o.id.as_str() == wanted || o.name == *wanted)
                .ok_or(format!("no organization {wanted:?}"))?,
            None => orgs.into_iter().next().ok_or(
                "no organization yet: run `switchboard serve` once or `switchboard orgs create NAME`",
            )?,
        };
        let public = config
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", config.server.bind, config.server.port));
        let platforms = Platforms::resolve(&config, &public).await?;
        let pool = Arc::new(ConnectionPool::new(store.clone(), platforms.connectors()?));
        Ok(Ctx {
            config,
            store,
            org: org.id,
            platforms,
            pool,
            json: global.json,
        })
    }
}
