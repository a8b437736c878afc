//! # switchboard-slack
//!
//! Switchboard's Slack adapter: it implements the core [`Platform`](switchboard_core::Platform),
//! [`ServiceAccount`](switchboard_core::ServiceAccount) and
//! [`TeamImport`](switchboard_core::TeamImport) traits against the real Slack Web API, with
//! every base URL configurable (the built-in sandbox, a proxy, a mock).
//!
//! | module | what |
//! |---|---|
//! | [`config`] | [`SlackConfig`]: base URLs, app credentials, bot scopes, rate limits, retries |
//! | [`client`] | [`SlackClient`]: paced Web API calls, 429 `Retry-After`, `ok:false` → [`ErrorKind`] |
//! | [`oauth`] | [`SlackOAuth`]: authorize URL, `oauth.v2.access`, token rotation |
//! | [`tokens`] | [`TokenSource`]: refresh before expiry, once for concurrent callers, rotations reported |
//! | [`connection`] | [`SlackConnection`]: the core traits for one workspace |
//! | [`connector`] | [`SlackConnector`]: core's `Connector` (stored connection → live objects) |
//! | [`history`] | core's `History` over `conversations.history` / `.replies`, few calls |
//! | [`events`] | Events API verification and parsing, [`SlackEventsReceiver`] (core's `WebhookReceiver`) |
//! | [`socket`] | [`SocketModeClient`]: Socket Mode into core's `EventSink`, concurrent envelopes acked once stored, open-before-close reconnects |
//! | [`mrkdwn`] | mrkdwn ⇄ portable rich text |
//! | [`emoji`] | Slack emoji names ⇄ portable emoji |
//!
//! Secrets are [`secrecy::SecretString`]s: `Debug` of anything holding one prints it
//! redacted, and tokens never appear in errors or logs (they travel in the `Authorization`
//! header only).
//!
//! ```no_run
//! # async fn run() -> switchboard_core::Result<()> {
//! use secrecy::SecretString;
//! use switchboard_core::{Credentials, TeamId, TeamImport};
//! use switchboard_slack::{SlackClient, SlackConfig, SlackConnection};
//!
//! let config = SlackConfig::new(
//!     "123.456",
//!     SecretString::from("client-secret"),
//!     SecretString::from("signing-secret"),
//! );
//! let client = SlackClient::new(&config)?;
//! let credentials = Credentials {
//!     access_token: SecretString::from("xoxb-…"),
//!     refresh_token: None,
//!     expires_at: None,
//!     scopes: vec![],
//! };
//! let slack = SlackConnection::new(&config, client, TeamId::new("T0123")?, credentials);
//! let teams = slack.list_teams().await?;
//! # let _ = teams; Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod connection;
pub mod connector;
pub mod emoji;
pub mod error;
pub mod events;
pub mod history;
pub mod mrkdwn;
pub mod oauth;
mod pacer;
pub mod socket;
pub mod tokens;
pub mod types;

pub use client::{ApiResponse, Args, Auth, CallOptions, CallStats, SlackClient};
pub use config::{
    BOT_SCOPES, Distribution, MARKER_EVENT_TYPE, Rate, RateLimits, RetryPolicy, SlackConfig, Tier,
    tier_of,
};
pub use connection::{
    BotIdentity, CUSTOMIZE_SCOPE, ConnectionOptions, FILE_ID_SCHEME, SlackConnection,
};
pub use connector::{SlackAuthorizer, SlackConnector};
pub use error::{Error, ErrorKind, Result, SlackApiError, slack_api_error, slack_error_code};
pub use events::{
    Disposition, EventCallback, EventRequest, OwnIdentities, OwnIdentity, OwnIdentityCache,
    SignatureError, SlackEvent, SlackEventsReceiver, inbound_items, parse_request,
    to_platform_event, verify_signature,
};
pub use oauth::{Installation, NamedId, SlackOAuth};
pub use socket::{ConnectionOf, Envelope, SocketModeClient, SocketModeOptions, SocketTarget};
pub use tokens::TokenSource;
