//! `switchboard serve`: the server, its relay workers, and (with `--sandbox` or
//! `--sandbox-url`) both platforms wired to the emulators, optionally connected and imported
//! through the real OAuth code paths (`--autoconnect`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use switchboard_core::{Actor, PlatformKind, Store, WorkerId};
use switchboard_relay::engine::{DeliveryOutcome, Relay, RelayConfig};
use switchboard_sandbox::{ReadyInfo, Sandbox, SandboxConfig, Seed};
use switchboard_server::config::ServerConfig;
use switchboard_server::feeds::FeedKeeper;
use switchboard_server::pool::{ConnectionPool, import};
use switchboard_server::{AppState, serve};
use tokio::net::TcpListener;

use crate::context::{Platforms, err};

/// `switchboard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (switchboard.toml); every key can also be set by `SWITCHBOARD_*`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory: the SQLite file and the key file (overrides the configuration).
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Port to listen on (0: any free port; overrides the configuration).
    #[arg(long)]
    pub port: Option<u16>,
    /// Also start the emulated platforms in-process and wire OAuth and webhooks to them.
    #[arg(long, conflicts_with = "sandbox_url")]
    pub sandbox: bool,
    /// Wire OAuth and webhooks to a sandbox already running at URL.
    #[arg(long = "sandbox-url")]
    pub sandbox_url: Option<String>,
    /// Rate-limit multiplier of the in-process sandbox (`--sandbox`).
    #[arg(long = "time-scale", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Connect both sandbox platforms through their real OAuth code paths and import
    /// everything (skipped for platforms already connected: idempotent across restarts).
    #[arg(long)]
    pub autoconnect: bool,
    /// Also write the ready line to this file.
    #[arg(long = "ready-file")]
    pub ready_file: Option<PathBuf>,
}

/// How often the feed keeper looks for channels linked elsewhere (`switchboard link` writes
/// the store directly) and subscriptions due for renewal; the API and console wake it at once.
const KEEPER_INTERVAL: Duration = Duration::from_secs(5);

/// How often the relay workers look for work when nothing woke them (catch-up items,
/// retries that fell due, rows a crashed replica's lease gave back).
const POLL: Duration = Duration::from_millis(100);

/// A started server with its relay workers (and sandbox, with `--sandbox`).
pub struct Launched {
    /// The server.
    pub running: serve::Running,
    /// The sandbox's ready object, when wired to one.
    pub ready: Option<ReadyInfo>,
    sandbox: Option<Sandbox>,
    worker: tokio::task::JoinHandle<()>,
    feeds: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched")
            .field("url", &self.running.url)
            .finish_non_exhaustive()
    }
}

impl Launched {
    /// The ready line (`{"ready","url","admin_token","sandbox"?}`).
    pub fn ready_line(&self) -> Result<String, String> {
        let mut line = self.running.ready_info();
        if let Some(r) = &self.ready {
            line["sandbox"] = serde_json::to_value(r).map_err(err)?;
        }
        serde_json::to_string(&line).map_err(err)
    }

    /// Stops the workers, the server and the in-process sandbox.
    pub async fn shutdown(self) -> Result<(), String> {
        self.worker.abort();
        self.feeds.abort();
        self.running.shutdown().await.map_err(err)?;
        if let Some(sb) = self.sandbox {
            sb.shutdown().await;
        }
        Ok(())
    }
}

/// Runs `serve` until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    let ready_file = args.ready_file.clone();
    let launched = launch(args).await?;
    let stop = crate::shutdown_signal();
    crate::print_ready(&launched.ready_line()?, ready_file.as_deref())?;
    stop.await;
    launched.shutdown().await
}

/// Starts what `serve` starts and returns once it is ready (autoconnect done).
pub async fn launch(args: ServeArgs) -> Result<Launched, String> {
    let mut config = ServerConfig::load(args.config.as_deref()).map_err(err)?;
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(p) = args.port {
        config.server.port = p;
    }
    if args.autoconnect
        && !args.sandbox
        && args.sandbox_url.is_none()
        && config.sandbox_url.is_none()
    {
        return Err("--autoconnect needs --sandbox or --sandbox-url".into());
    }
    // The platforms: the in-process sandbox, one already running, or none yet.
    let mut sandbox: Option<Sandbox> = None;
    let ready: Option<ReadyInfo> = if args.sandbox {
        if !(args.time_scale >= 0.0 && args.time_scale.is_finite()) {
            return Err("--time-scale must be a non-negative number".into());
        }
        let sb = Sandbox::start(SandboxConfig {
            seed: Seed::Small,
            time_scale: args.time_scale,
            port: 0,
            ..SandboxConfig::default()
        })
        .await
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
        let r = sb.ready();
        sandbox = Some(sb);
        Some(r)
    } else if let Some(url) = args.sandbox_url.as_ref().or(config.sandbox_url.as_ref()) {
        Some(crate::context::fetch_ready(url).await?)
    } else {
        None
    };

    let store: Arc<dyn Store> = serve::open_store(&config).await.map_err(err)?.shared();
    let (org, admin_token) = serve::bootstrap_admin(store.as_ref()).await.map_err(err)?;
    let listener = TcpListener::bind((config.server.bind, config.server.port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}:{}: {e}",
                config.server.bind, config.server.port
            )
        })?;
    let addr = listener.local_addr().map_err(err)?;
    let public = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let platforms = match &ready {
        Some(r) => Platforms::from_ready(r, &public)?,
        None => Platforms::from_config(&config, &public)?,
    };
    let receivers = platforms.receivers(&store);
    let connectors = platforms.connectors()?;
    let state_platforms = platforms.authorizers()?;
    // One pool of live connections for the relay, the feed keeper and console/API imports,
    // so they share the adapters' pacing.
    let pool = Arc::new(ConnectionPool::new(store.clone(), connectors));
    let mut state = AppState::new(store.clone(), receivers)
        .with_public_url(public.clone())
        .with_pool(pool.clone());
    for (a, c) in state_platforms {
        state = state.with_platform(a, c);
    }
    // End users link their own Teams account at /link-account (posted as themselves).
    if let Some(c) = &platforms.msteams {
        let linking = switchboard_msteams::MsTeamsAuthorizer::for_end_users(c.clone());
        state = state.with_user_authorizer(Arc::new(linking.map_err(err)?));
    }
    let links_changed = state.links_changed.clone();
    let inbox_accepted = state.inbox_accepted.clone();
    let metrics = state.metrics.clone();
    let platform_errors = state.platform_errors.clone();
    let running =
        serve::start_with(listener, state, org.clone(), admin_token.clone()).map_err(err)?;

    // The relay workers, and the keeper of the channels' live feeds.
    let keeper = Arc::new(FeedKeeper::new(store.clone(), pool.clone(), &public).map_err(err)?);
    let relay = Relay::new(
        store.clone(),
        pool.clone(),
        WorkerId::new(format!("{}/{}", hostname(), std::process::id())).map_err(err)?,
        RelayConfig {
            batch: config.relay.batch.clamp(1, 1000),
            lease: Duration::from_secs(config.relay.lease_seconds.max(1)),
            reorder_max: Duration::from_millis(config.relay.reorder_max_ms.min(60_000)),
            ..RelayConfig::default()
        },
    )
    .with_observer(keeper.clone())
    .with_error_counts(platform_errors);
    // Two loops: translating wakes as soon as a webhook stored something, delivering as
    // soon as a translation produced deliveries; both also poll (catch-up, retries due).
    let relay = Arc::new(relay);
    let deliver_wake = Arc::new(tokio::sync::Notify::new());
    let batch = config.relay.batch.clamp(1, 1000);
    let linger = Duration::from_millis(config.relay.linger_ms.min(1000));
    let translate_loop = {
        let relay = relay.clone();
        let deliver_wake = deliver_wake.clone();
        async move {
            loop {
                match relay.translate_batch_counted().await {
                    Ok(t) if t.items > 0 => {
                        // Nothing to deliver after a batch that queued nothing (the
                        // delivering loop still polls for retries that fall due).
                        if t.deliveries > 0 {
                            deliver_wake.notify_one();
                        }
                        if t.deliveries > 0 && t.items < batch && !linger.is_zero() {
                            // Messages are trickling in (one webhook at a time): let a few
                            // more arrive so the next lease and its one completing
                            // transaction carry several, instead of holding SQLite's one
                            // writer per item while the webhooks wait on it. A message
                            // arriving alone is translated at once; this only delays one
                            // that follows another within `linger`. Not after a batch that
                            // queued nothing (the notifications of our own copies, which
                            // follow every post): the next message would wait for nothing.
                            tokio::time::sleep(linger).await;
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "translating failed"),
                }
                // Events held back for late ones (see switchboard_relay::order) are due
                // possibly sooner than the next poll.
                let wake = relay
                    .next_held()
                    .map_or(POLL, |due| {
                        due.saturating_duration_since(std::time::Instant::now())
                    })
                    .min(POLL);
                tokio::select! {
                    _ = tokio::time::sleep(wake) => {}
                    _ = inbox_accepted.notified() => {}
                }
            }
        }
    };
    let deliver_loop = async move {
        loop {
            match relay.deliver_batch().await {
                Ok(d) if !d.is_empty() => {
                    for o in &d {
                        metrics.delivery(match o {
                            DeliveryOutcome::Delivered => "delivered",
                            DeliveryOutcome::Retried { .. } => "retried",
                            DeliveryOutcome::Failed { .. } => "failed",
                        });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "delivering failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = deliver_wake.notified() => {}
            }
        }
    };
    let worker = tokio::spawn(async move {
        tokio::join!(translate_loop, deliver_loop);
    });
    // A connection migrated by another process (the CLI, another replica) is reopened with
    // its new account's credentials; the migration moved its subscriptions itself.
    let moved_loop = {
        let pool = pool.clone();
        async move {
            loop {
                tokio::time::sleep(KEEPER_INTERVAL).await;
                if let Err(e) = pool.forget_moved().await {
                    tracing::warn!(error = %e, "could not compare open connections with the store");
                }
            }
        }
    };
    let keeper_loop = keeper.run(
        links_changed,
        KEEPER_INTERVAL,
        Duration::from_secs(config.relay.lease_seconds.max(1)),
    );
    let feeds = tokio::spawn(async move {
        tokio::join!(keeper_loop, moved_loop);
    });

    if args.autoconnect
        && let Some(r) = &ready
    {
        autoconnect(&running.url, &admin_token, r, &store, &pool, &org).await?;
    }

    Ok(Launched {
        running,
        ready,
        sandbox,
        worker,
        feeds,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "switchboard".into())
}

/// The hidden inputs of the first form of `html` and its `action`.
fn form_fields(html: &str) -> (String, Vec<(String, String)>) {
    fn attr(tag: &str, name: &str) -> Option<String> {
        let pat = format!("{name}=\"");
        let start = tag.find(&pat)? + pat.len();
        let end = tag[start..].find('"')? + start;
        Some(
            tag[start..end]
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        )
    }
    let action = html
        .find("<form")
        .and_then(|i| html[i..].find('>').map(|j| &html[i..i + j]))
        .and_then(|tag| attr(tag, "action"))
        .unwrap_or_default();
    let mut fields = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<input") {
        let Some(j) = rest[i..].find('>') else { break };
        let tag = &rest[i..i + j];
        if attr(tag, "type").as_deref() == Some("hidden")
            && let Some(n) = attr(tag, "name")
        {
            fields.push((n, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[i + j..];
    }
    (action, fields)
}

/// Connects `platform` through the console's real OAuth flow, playing the admin's browser on
/// the sandbox's consent page.
async fn connect_through_console(
    server: &str,
    admin_token: &SecretString,
    sandbox: &ReadyInfo,
    platform: PlatformKind,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(err)?;
    let signin = http
        .post(format!("{server}/signin"))
        .form(&[("token", admin_token.expose_secret())])
        .send()
        .await
        .map_err(err)?;
    let cookie = signin
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("signing in to the console set no session cookie")?
        .to_owned();
    let start = http
        .get(format!("{server}/connect/{platform}/start"))
        .header("cookie", &cookie)
        .send()
        .await
        .map_err(err)?;
    let authorize = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or(format!(
            "connecting {platform} did not redirect to the provider"
        ))?
        .to_owned();
    let page = http
        .get(&authorize)
        .send()
        .await
        .map_err(err)?
        .text()
        .await
        .map_err(err)?;
    let (action, mut fields) = form_fields(&page);
    if platform == PlatformKind::Msteams {
        fields.push((
            "username".into(),
            sandbox.msteams.service_account_upn.clone(),
        ));
        fields.push((
            "password".into(),
            sandbox.msteams.service_account_password.clone(),
        ));
    }
    fields.push(("decision".into(), "accept".into()));
    let target = if action.starts_with("http") {
        action
    } else {
        format!("{}{action}", sandbox.base_url)
    };
    let consent = http.post(target).form(&fields).send().await.map_err(err)?;
    let callback = consent
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or(format!("the {platform} consent page did not redirect back"))?
        .to_owned();
    let done = http
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .map_err(err)?;
    if !done.status().is_success() {
        let status = done.status();
        let body = done.text().await.unwrap_or_default();
        return Err(format!("connecting {platform} failed ({status}): {body}"));
    }
    Ok(())
}

async fn autoconnect(
    server: &str,
    admin_token: &SecretString,
    sandbox: &ReadyInfo,
    store: &Arc<dyn Store>,
    pool: &ConnectionPool,
    org: &switchboard_core::OrgId,
) -> Result<(), String> {
    for platform in [PlatformKind::Msteams, PlatformKind::Slack] {
        let connected = store
            .list_connections(org)
            .await
            .map_err(err)?
            .into_iter()
            .any(|c| c.platform == platform);
        if !connected {
            connect_through_console(server, admin_token, sandbox, platform).await?;
        }
    }
    // The Slack app's Events API request URL (on real Slack the admin sets it in the app's
    // settings): the sandbox verifies it with a signed url_verification, as Slack does.
    let answer = reqwest::Client::new()
        .put(format!(
            "{}/_sandbox/slack/event_subscription",
            sandbox.base_url
        ))
        .json(&serde_json::json!({ "request_url": format!("{server}/webhooks/slack/events") }))
        .send()
        .await
        .map_err(err)?;
    if !answer.status().is_success() {
        let body = answer.text().await.unwrap_or_default();
        return Err(format!("the Slack request URL was not verified: {body}"));
    }
    for c in store.list_connections(org).await.map_err(err)? {
        let counts = import(
            store,
            pool,
            org,
            &c.id,
            None,
            Actor::Admin {
                name: "autoconnect".into(),
            },
        )
        .await
        .map_err(|e| format!("importing {} failed: {e}", c.display_name))?;
        tracing::info!(connection = %c.id, ?counts, "imported");
    }
    Ok(())
}
