//! # switchboard-msteams
//!
//! The Microsoft Teams adapter of Switchboard: OAuth against the Microsoft identity platform
//! for the service account, and a paced Microsoft Graph v1.0 client implementing the core
//! traits [`Platform`](switchboard_core::Platform),
//! [`ServiceAccount`](switchboard_core::ServiceAccount) and
//! [`TeamImport`](switchboard_core::TeamImport) on [`MsTeamsConnection`].
//!
//! Every base URL is configurable ([`MsTeamsConfig`]), so tests point it at wiremock or the
//! sandbox.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | endpoints, app registration, pacing and retry settings |
//! | [`oauth`] | authorization URL with `state` + PKCE S256, callback, code exchange, refresh |
//! | [`token`] | [`TokenProvider`]: silent single-flight refresh with rotation; `needs_reauth` |
//! | [`pacer`] | client-side token buckets for Graph's documented limits |
//! | [`graph`] | [`GraphClient`]: bearer, pacing, bounded concurrency, `Retry-After`, backoff, paging |
//! | [`connection`] | [`MsTeamsConnection`] and its [`Platform`](switchboard_core::Platform) impl |
//! | [`connector`] | [`MsTeamsConnector`]: core's `Connector` for Teams |
//! | [`account`] | directory roles, scopes, team membership ([`ServiceAccount`](switchboard_core::ServiceAccount)) |
//! | [`import`] | teams, channels, members, users ([`TeamImport`](switchboard_core::TeamImport)) |
//! | [`subscriptions`] | change notifications: list-and-reuse/renew/delete, validation, parsing |
//! | [`receive`] | [`GraphReceiver`] (webhooks → hints and signals) and [`TeamsResolver`] (hint → events) |
//! | [`delta`] | delta catch-up with a date range, and core's `History` |
//! | [`guests`] | inviting guests through `/invitations` |
//! | [`html`] | Teams HTML ⇄ portable rich text, safe against hostile HTML |
//! | [`events`] | Graph messages → portable messages and platform events; outgoing bodies |
//! | [`files`] | downloading Teams (SharePoint) files bounded in size |
//! | [`wire`] | Graph's JSON shapes |
//!
//! Errors are the core [`Error`](switchboard_core::Error) with its
//! [`ErrorKind`](switchboard_core::ErrorKind); they never contain tokens, codes or secrets,
//! and `Debug` of anything holding one prints it redacted.
//!
//! ```no_run
//! # async fn run() -> switchboard_core::Result<()> {
//! use secrecy::SecretString;
//! use switchboard_core::TeamImport;
//! use switchboard_msteams::{MsTeamsConfig, MsTeamsConnection, OAuthClient};
//!
//! let config = MsTeamsConfig::microsoft(
//!     "contoso.onmicrosoft.com",
//!     "00000000-0000-0000-0000-000000000000",
//!     SecretString::from("client secret"),
//!     "https://switchboard.example/connect/msteams/callback",
//! )?;
//! let oauth = OAuthClient::new(&config)?;
//! let start = oauth.authorization_request(None);
//! // … redirect the admin to start.url, keep start.state and start.pkce, then on callback:
//! # let query = "";
//! let callback = switchboard_msteams::oauth::parse_callback(query, &start.state)?;
//! let credentials = oauth.exchange_code(&callback.code, start.pkce.verifier()).await?;
//! let conn = MsTeamsConnection::from_credentials(config, credentials, None)?;
//! let listing = conn.list_teams().await?;
//! println!("{} teams", listing.teams.len());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod account;
pub mod config;
pub mod connection;
pub mod connector;
pub mod delta;
pub mod events;
pub mod files;
pub mod graph;
pub mod guests;
pub mod html;
pub mod import;
pub mod oauth;
pub mod pacer;
pub mod receive;
pub mod subscriptions;
pub mod token;
pub mod wire;

pub use account::TeamAccess;
pub use config::{MsTeamsConfig, RetryPolicy};
pub use connection::MsTeamsConnection;
pub use connector::{MsTeamsAuthorizer, MsTeamsConnector};
pub use graph::{GraphClient, GraphRequest};
pub use import::{SkippedTeam, TeamsImport};
pub use oauth::{AuthorizationRequest, OAuthClient, Pkce};
pub use pacer::{DailyBudget, Pacer, RateLimits};
pub use receive::{GraphReceiver, TeamsResolver};
pub use subscriptions::{GraphFeeds, SubscriptionSpec, validation_response};
pub use token::{CredentialsSink, TokenProvider};
