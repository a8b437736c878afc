//! # switchboard-sandbox
//!
//! Stateful emulators of the Slack Web API / OAuth v2 / Events API / Socket Mode and of the
//! Microsoft identity platform + Graph v1.0, served from one loopback HTTP server. The tests,
//! the demo and the benchmarks share it.
//!
//! It is written from the platforms' public documentation (see `PLATFORM_FACTS.md`) and
//! depends on **none** of Switchboard's own crates, so a misunderstanding in an adapter is not
//! mirrored here.
//!
//! URL layout (all under [`Sandbox::base_url`]):
//!
//! | prefix | what |
//! |---|---|
//! | `/slack/api/{method}` | Slack Web API |
//! | `/slack/oauth/v2/authorize` | Slack OAuth consent page |
//! | `/microsoft/{tenant}/oauth2/v2.0/{authorize,token}` | Microsoft identity platform |
//! | `/graph/v1.0/...` | Microsoft Graph |
//! | `/_sandbox/...` | the control API (act as users, inject faults, read state); `GET /_sandbox/ready` is the ready object |
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};
//! let sandbox = Sandbox::start(SandboxConfig { seed: Seed::Small, ..Default::default() }).await?;
//! let ready = sandbox.ready();
//! println!("Graph at {}, service account {}", ready.graph_api_url, ready.msteams.service_account_upn);
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod control;
mod faults;
mod msteams;
mod ratelimit;
mod slack;
mod stats;
mod util;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use ratelimit::RateLimiter;

/// Which seeded world the sandbox starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seed {
    /// A few teams, channels and users: the demo and most tests.
    #[default]
    Small,
    /// Teams: 1,000 teams × 10 channels and 20,000 users; Slack: 5,000 channels and 20,000
    /// users. For import benchmarks and paging tests.
    Large,
}

impl FromStr for Seed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "small" => Ok(Seed::Small),
            "large" => Ok(Seed::Large),
            other => Err(format!(
                "unknown seed {other:?}: expected `small` or `large`"
            )),
        }
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Seed::Small => "small",
            Seed::Large => "large",
        })
    }
}

impl Serialize for Seed {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Prints `[redacted]` for a secret field in a hand-written `Debug`.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The ready object: what `switchboard sandbox` prints as its ready line and what
/// `GET /_sandbox/ready` returns — the URLs plus the seeded app registrations and
/// credentials (PRODUCT.md, "ready line"). Serializes to exactly that JSON; `Debug` redacts
/// the secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// Always `true`: the sandbox accepts connections.
    pub ready: bool,
    /// `http://127.0.0.1:P`, without a trailing slash.
    pub base_url: String,
    /// Slack Web API base, `{base}/slack/api/` (method names are appended).
    pub slack_api_url: String,
    /// Microsoft Graph base, `{base}/graph/v1.0` (no trailing slash).
    pub graph_api_url: String,
    /// Microsoft identity platform base, `{base}/microsoft` (`/{tenant}/oauth2/v2.0/…`).
    pub microsoft_login_url: String,
    /// The seeded world.
    pub seed: Seed,
    /// The rate-limit multiplier the sandbox runs with.
    pub time_scale: f64,
    /// The seeded Slack workspace and app.
    pub slack: SlackReady,
    /// The seeded Microsoft tenant and app registration.
    pub msteams: MsTeamsReady,
}

impl std::fmt::Debug for ReadyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyInfo")
            .field("ready", &self.ready)
            .field("base_url", &self.base_url)
            .field("slack_api_url", &self.slack_api_url)
            .field("graph_api_url", &self.graph_api_url)
            .field("microsoft_login_url", &self.microsoft_login_url)
            .field("seed", &self.seed)
            .field("time_scale", &self.time_scale)
            .field("slack", &self.slack)
            .field("msteams", &self.msteams)
            .finish()
    }
}

/// The `slack` object of the ready line: the seeded workspace, its app and ready tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackReady {
    /// Workspace id (`T…`).
    pub team_id: String,
    /// Workspace name.
    pub team_name: String,
    /// The app's OAuth client id.
    pub client_id: String,
    /// The app's OAuth client secret.
    pub client_secret: String,
    /// The signing secret of Events API deliveries.
    pub signing_secret: String,
    /// The legacy verification token.
    pub verification_token: String,
    /// A ready bot token (`xoxb-…`) with the app's bot scopes.
    pub bot_token: String,
    /// A ready app-level token (`xapp-…`, `connections:write`) for Socket Mode.
    pub app_token: String,
    /// The app id (`A…`).
    pub app_id: String,
    /// The bot user's id (`U…`).
    pub bot_user_id: String,
    /// The bot id (`B…`).
    pub bot_id: String,
}

impl std::fmt::Debug for SlackReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackReady")
            .field("team_id", &self.team_id)
            .field("team_name", &self.team_name)
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field("signing_secret", &Redacted)
            .field("verification_token", &Redacted)
            .field("bot_token", &Redacted)
            .field("app_token", &Redacted)
            .field("app_id", &self.app_id)
            .field("bot_user_id", &self.bot_user_id)
            .field("bot_id", &self.bot_id)
            .finish()
    }
}

/// The `msteams` object of the ready line: the seeded tenant, its app registration, the
/// service account (with a ready delegated Graph token) and an underprivileged account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsTeamsReady {
    /// Tenant id (a GUID).
    pub tenant_id: String,
    /// The tenant's verified domain.
    pub tenant_domain: String,
    /// The app registration's client id.
    pub client_id: String,
    /// The app registration's client secret.
    pub client_secret: String,
    /// The service account's user principal name (has the required roles).
    pub service_account_upn: String,
    /// The service account's password (for the sign-in page).
    pub service_account_password: String,
    /// A ready delegated Graph access token of the service account, with every permission
    /// the Teams connection requests.
    pub service_account_token: String,
    /// An account without Teams Administrator (for `doctor`).
    pub underprivileged_upn: String,
    /// Its password.
    pub underprivileged_password: String,
}

impl std::fmt::Debug for MsTeamsReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsTeamsReady")
            .field("tenant_id", &self.tenant_id)
            .field("tenant_domain", &self.tenant_domain)
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field("service_account_upn", &self.service_account_upn)
            .field("service_account_password", &Redacted)
            .field("service_account_token", &Redacted)
            .field("underprivileged_upn", &self.underprivileged_upn)
            .field("underprivileged_password", &Redacted)
            .finish()
    }
}

/// How to start a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The seeded world.
    pub seed: Seed,
    /// Multiplies every documented rate limit (and divides Slack's event retry delays) by this
    /// factor. `1.0` is the documented behaviour; `0.0` turns rate limits off.
    pub time_scale: f64,
    /// Address to listen on (loopback by default).
    pub bind: IpAddr,
    /// Port to listen on; `0` picks any free port.
    pub port: u16,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            seed: Seed::Small,
            time_scale: 1.0,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
        }
    }
}

/// Shared state of a running sandbox. Each platform module owns its own locking.
#[derive(Debug)]
pub(crate) struct World {
    pub config: SandboxConfig,
    /// `http://127.0.0.1:P`, without a trailing slash.
    pub base_url: String,
    pub limiter: RateLimiter,
    pub faults: faults::Faults,
    pub stats: stats::Stats,
    /// Client used for outbound deliveries (Slack events, Graph notifications).
    pub http: reqwest::Client,
    pub slack: slack::SlackState,
    pub msteams: msteams::GraphState,
}

pub(crate) type SharedWorld = Arc<World>;

/// A running sandbox server. Dropping it stops the server.
#[derive(Debug)]
pub struct Sandbox {
    world: SharedWorld,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Seeds the world, binds the listener and starts serving in the background.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind((config.bind, config.port)).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let (slack, msteams) = {
            let seed = config.seed;
            tokio::task::spawn_blocking(move || {
                (slack::SlackState::new(seed), msteams::GraphState::new(seed))
            })
            .await
            .map_err(std::io::Error::other)?
        };
        let world = Arc::new(World {
            limiter: RateLimiter::new(config.time_scale),
            config,
            base_url,
            faults: faults::Faults::default(),
            stats: stats::Stats::default(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .map_err(std::io::Error::other)?,
            slack,
            msteams,
        });
        let app = router(world.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        slack::spawn_background(world.clone());
        msteams::spawn_background(world.clone());
        Ok(Sandbox {
            world,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The address the sandbox listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:P`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.world.base_url
    }

    /// The ready object of PRODUCT.md: URLs plus the seeded credentials and client ids (the
    /// same as `GET /_sandbox/ready`).
    pub fn ready(&self) -> ReadyInfo {
        ready_info(&self.world)
    }

    /// [`Sandbox::ready`] as untyped JSON, for callers that index it by key.
    pub fn ready_info(&self) -> Value {
        serde_json::to_value(self.ready()).expect("the ready object serializes")
    }

    /// Stops serving and waits for the server task to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The ready object of a running world. The platform modules describe their half as JSON;
/// both are plain string maps built by this crate, so reading them back cannot fail unless
/// a module and these types disagree, which the tests catch.
pub(crate) fn ready_info(world: &World) -> ReadyInfo {
    let base = &world.base_url;
    ReadyInfo {
        ready: true,
        base_url: base.clone(),
        slack_api_url: format!("{base}/slack/api/"),
        graph_api_url: format!("{base}/graph/v1.0"),
        microsoft_login_url: format!("{base}/microsoft"),
        seed: world.config.seed,
        time_scale: world.config.time_scale,
        slack: serde_json::from_value(world.slack.ready_info())
            .expect("the slack module's ready object matches SlackReady"),
        msteams: serde_json::from_value(world.msteams.ready_info())
            .expect("the msteams module's ready object matches MsTeamsReady"),
    }
}

fn router(world: SharedWorld) -> Router {
    Router::new()
        .merge(slack::routes())
        .merge(msteams::routes())
        .nest("/_sandbox", control::routes())
        .layer(axum::middleware::from_fn_with_state(
            world.clone(),
            faults::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            world.clone(),
            stats::middleware,
        ))
        .with_state(world)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_ready_route_returns_the_ready_object_with_credentials() {
        let sandbox = Sandbox::start(SandboxConfig {
            time_scale: 0.0,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let ready = sandbox.ready();
        let resp = reqwest::get(format!("{}/_sandbox/ready", sandbox.base_url()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = resp.json().await.unwrap();
        // The same JSON as the ready line, and it reads back into the typed object.
        assert_eq!(body, sandbox.ready_info());
        assert_eq!(
            serde_json::from_value::<ReadyInfo>(body.clone()).unwrap(),
            ready
        );
        assert_eq!(body["ready"], true);
        assert_eq!(body["seed"], "small");
        assert_eq!(body["time_scale"], 0.0);
        assert_eq!(
            body["graph_api_url"],
            format!("{}/graph/v1.0", sandbox.base_url())
        );
        // Every key the module-side JSON has survives the typed round trip.
        let slack = sandbox.world.slack.ready_info();
        let msteams = sandbox.world.msteams.ready_info();
        assert_eq!(body["slack"], slack);
        assert_eq!(body["msteams"], msteams);
        assert!(
            ready.slack.bot_token.starts_with("xoxb-"),
            "{}",
            ready.slack.bot_token
        );
        assert!(!ready.msteams.service_account_token.is_empty());
        // The credentials work: the service token reads Graph.
        let me = reqwest::Client::new()
            .get(format!("{}/me", ready.graph_api_url))
            .bearer_auth(&ready.msteams.service_account_token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn debug_of_the_ready_object_redacts_every_secret() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let ready = sandbox.ready();
        let debug = format!("{ready:?}");
        for secret in [
            &ready.slack.client_secret,
            &ready.slack.signing_secret,
            &ready.slack.verification_token,
            &ready.slack.bot_token,
            &ready.slack.app_token,
            &ready.msteams.client_secret,
            &ready.msteams.service_account_password,
            &ready.msteams.service_account_token,
            &ready.msteams.underprivileged_password,
        ] {
            assert!(!secret.is_empty());
            assert!(!debug.contains(secret.as_str()), "{secret} in {debug}");
        }
        assert!(debug.contains(&ready.msteams.service_account_upn));
        assert!(debug.contains("[redacted]"));
        sandbox.shutdown().await;
    }

    #[test]
    fn seed_serializes_as_its_name_and_refuses_unknown_names() {
        assert_eq!(serde_json::to_value(Seed::Large).unwrap(), "large");
        assert_eq!(
            serde_json::from_value::<Seed>("small".into()).unwrap(),
            Seed::Small
        );
        let err = serde_json::from_value::<Seed>("huge".into()).unwrap_err();
        assert!(err.to_string().contains("huge"), "{err}");
    }
}
