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
//! | `/_sandbox/...` | the control API (act as users, inject faults, read state) |
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};
//! let sandbox = Sandbox::start(SandboxConfig { seed: Seed::Small, ..Default::default() }).await?;
//! println!("{}", sandbox.ready_info());
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
use serde_json::{Value, json};
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

    /// The ready JSON object of PRODUCT.md: URLs plus the seeded credentials and client ids.
    pub fn ready_info(&self) -> Value {
        let base = &self.world.base_url;
        json!({
            "ready": true,
            "base_url": base,
            "slack_api_url": format!("{base}/slack/api/"),
            "graph_api_url": format!("{base}/graph/v1.0"),
            "microsoft_login_url": format!("{base}/microsoft"),
            "seed": self.world.config.seed.to_string(),
            "time_scale": self.world.config.time_scale,
            "slack": self.world.slack.ready_info(),
            "msteams": self.world.msteams.ready_info(),
        })
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
