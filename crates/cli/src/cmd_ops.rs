//! The operator's commands: `connect` (OAuth from the terminal with a loopback redirect),
//! `doctor` (every connection's roles, scopes, membership, token and webhooks, with fixes),
//! `orgs create|list`, and `connections list|migrate` (moving a personal-token connection
//! onto a service account in place).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use switchboard_core::{
    AccessCheck, Actor, Authorized, Authorizer, ChannelRef, CheckKind, Connection,
    ConnectionHealth, ConnectionId, Connector, ImportSink, Membership, PlatformKind, TeamId, User,
    UserId, VerifyOptions,
};
use switchboard_relay::engine::Connections;
use switchboard_server::config::ServerConfig;
use switchboard_server::console::{StoreCredentials, store_connection};
use switchboard_server::migrate::{MigrationRequest, is_personal, migrate};
use switchboard_server::{serve, session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::context::{Ctx, GlobalArgs, Platforms, err};

/// A platform to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformArg {
    /// Microsoft Teams.
    Msteams,
    /// Slack.
    Slack,
}

impl From<PlatformArg> for PlatformKind {
    fn from(p: PlatformArg) -> PlatformKind {
        match p {
            PlatformArg::Msteams => PlatformKind::Msteams,
            PlatformArg::Slack => PlatformKind::Slack,
        }
    }
}

/// `switchboard connect msteams|slack`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The platform.
    pub platform: PlatformArg,
    /// How long to wait for the sign-in in the browser, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// The global options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `switchboard doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The global options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `switchboard orgs …`.
#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Create an organization and print its admin token (shown once) and id.
    Create {
        /// The organization's name.
        name: String,
        /// The global options.
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// List the organizations.
    List {
        /// The global options.
        #[command(flatten)]
        global: GlobalArgs,
    },
}

impl OrgsCommand {
    /// The global options of the subcommand.
    pub fn global(&self) -> &GlobalArgs {
        match self {
            OrgsCommand::Create { global, .. } | OrgsCommand::List { global } => global,
        }
    }
}

/// `switchboard connections …`.
#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Connected platforms and their health.
    List {
        /// The global options.
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// Move a connection made with a personal account's token onto a service account, in
    /// place (OAuth from the terminal as the service account, then the switch).
    Migrate {
        /// The connection's id (see `connections list`).
        id: String,
        /// How long to wait for the sign-in in the browser, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// The global options.
        #[command(flatten)]
        global: GlobalArgs,
    },
}

impl ConnectionsCommand {
    /// The global options of the subcommand.
    pub fn global(&self) -> &GlobalArgs {
        match self {
            ConnectionsCommand::List { global } | ConnectionsCommand::Migrate { global, .. } => {
                global
            }
        }
    }
}

/// Who a CLI action is recorded as in the audit log.
fn cli_actor() -> Actor {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64 && !u.chars().any(char::is_control))
        .unwrap_or_else(|| "unknown".into());
    Actor::Admin {
        name: format!("cli:{user}"),
    }
}

fn platform_name(p: PlatformKind) -> &'static str {
    match p {
        PlatformKind::Msteams => "Microsoft Teams",
        PlatformKind::Slack => "Slack",
        _ => "the platform",
    }
}

fn print_json(value: &serde_json::Value) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(value).map_err(err)?);
    Ok(())
}

// ------------------------------------------------------------------------------------------
// orgs

async fn open_store(global: &GlobalArgs) -> Result<Arc<dyn switchboard_core::Store>, String> {
    let config = global.load_config()?;
    Ok(serve::open_store(&config).await.map_err(err)?.shared())
}

/// The longest organization name accepted.
const MAX_ORG_NAME: usize = 200;

/// Runs `switchboard orgs …`.
pub async fn orgs(cmd: OrgsCommand) -> Result<ExitCode, String> {
    match cmd {
        OrgsCommand::Create { name, global } => {
            let name = name.trim().to_owned();
            if name.is_empty() || name.len() > MAX_ORG_NAME || name.chars().any(char::is_control) {
                return Err(format!(
                    "an organization name must be 1 to {MAX_ORG_NAME} bytes without control characters"
                ));
            }
            let store = open_store(&global).await?;
            if store
                .list_orgs()
                .await
                .map_err(err)?
                .iter()
                .any(|o| o.name == name)
            {
                return Err(format!(
                    "an organization named {name:?} exists already (see `switchboard orgs list`)"
                ));
            }
            let org = store.create_org(&name).await.map_err(err)?;
            let token = store
                .create_admin_token(&org.id, "admin")
                .await
                .map_err(err)?;
            store
                .append_audit(
                    &org.id,
                    switchboard_core::NewAuditEntry {
                        actor: cli_actor(),
                        action: "org.created".into(),
                        target: org.id.to_string(),
                        details: serde_json::json!({ "name": org.name, "token": "admin" }),
                    },
                )
                .await
                .map_err(err)?;
            if global.json {
                print_json(&serde_json::json!({
                    "id": org.id.to_string(),
                    "name": org.name,
                    "admin_token": token.expose_secret(),
                }))?;
            } else {
                println!("Created organization {:?} ({})", org.name, org.id);
                println!("Admin token (shown once; store it now):");
                println!("{}", token.expose_secret());
            }
            Ok(ExitCode::SUCCESS)
        }
        OrgsCommand::List { global } => {
            let store = open_store(&global).await?;
            let orgs = store.list_orgs().await.map_err(err)?;
            if global.json {
                print_json(&serde_json::json!(
                    orgs.iter()
                        .map(|o| serde_json::json!({"id": o.id.to_string(), "name": o.name}))
                        .collect::<Vec<_>>()
                ))?;
            } else if orgs.is_empty() {
                println!("No organization yet: `switchboard orgs create NAME` creates one.");
            } else {
                println!("{:<38} NAME", "ID");
                for o in orgs {
                    println!("{:<38} {}", o.id.to_string(), o.name);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

// ------------------------------------------------------------------------------------------
// OAuth from the terminal

/// A sign-in through the platform's OAuth flow with a loopback redirect: the URL to open is
/// printed, the browser comes back to `http://127.0.0.1:PORT/connect/{platform}/callback`.
struct TerminalSignIn {
    authorized: Authorized,
    connector: Arc<dyn Connector>,
}

/// Compares two strings in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The longest request head the loopback listener reads.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

async fn answer(stream: &mut tokio::net::TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Switchboard</title><body style=\"font-family:sans-serif;margin:3em\"><h1>Switchboard</h1><p>{}</p>",
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads one request's target (`/path?query`) from `stream`, `None` when it is not a GET.
async fn request_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_REQUEST_HEAD {
            return None;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_owned)
}

/// What came back to the loopback redirect.
enum Returned {
    Code(SecretString),
    Refused(String),
}

/// Waits for the provider's redirect to `path` with `state`; strays (another path, a wrong
/// state, a favicon) get an error page and the wait goes on.
async fn wait_for_callback(listener: &TcpListener, path: &str, state: &str) -> Returned {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let Some(target) = request_target(&mut stream).await else {
            answer(&mut stream, "400 Bad Request", "Not a sign-in answer.").await;
            continue;
        };
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            answer(&mut stream, "400 Bad Request", "Not a sign-in answer.").await;
            continue;
        };
        if url.path() != path {
            answer(&mut stream, "404 Not Found", "Nothing here.").await;
            continue;
        }
        let get = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if !get("state").is_some_and(|s| same_secret(&s, state)) {
            answer(
                &mut stream,
                "400 Bad Request",
                "This sign-in answer is not the one the terminal is waiting for. Nothing was connected.",
            )
            .await;
            continue;
        }
        if let Some(error) = get("error") {
            let why = get("error_description").unwrap_or_default();
            answer(
                &mut stream,
                "400 Bad Request",
                "Signing in was cancelled. Nothing was connected; see the terminal.",
            )
            .await;
            return Returned::Refused(format!("the sign-in was refused: {error}. {why}"));
        }
        match get("code") {
            Some(code) => {
                answer(
                    &mut stream,
                    "200 OK",
                    "Signed in. You can close this tab and go back to the terminal.",
                )
                .await;
                return Returned::Code(SecretString::from(code));
            }
            None => {
                answer(
                    &mut stream,
                    "400 Bad Request",
                    "The answer carries no authorization code. Nothing was connected.",
                )
                .await;
                return Returned::Refused("the provider sent no authorization code".into());
            }
        }
    }
}

/// Runs the platform's OAuth flow with a loopback redirect and returns who signed in.
async fn sign_in_from_terminal(
    config: &ServerConfig,
    platform: PlatformKind,
    timeout: Duration,
    purpose: &str,
) -> Result<TerminalSignIn, String> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("cannot listen on a loopback port for the sign-in: {e}"))?;
    let base = format!("http://{}", listener.local_addr().map_err(err)?);
    let platforms = Platforms::resolve(config, &base).await?;
    let (authorizer, connector): (Arc<dyn Authorizer>, Arc<dyn Connector>) = platforms
        .authorizers()?
        .into_iter()
        .find(|(a, _)| a.platform() == platform)
        .ok_or_else(|| {
            format!(
                "{} is not configured: add its app registration ([{platform}] in switchboard.toml) or set sandbox_url",
                platform_name(platform)
            )
        })?;
    let path = format!("/connect/{platform}/callback");
    let redirect = format!("{base}{path}");
    let state = session::random_token();
    let verifier = authorizer
        .uses_pkce()
        .then(|| SecretString::from(session::random_token()));
    let challenge = verifier.as_ref().map(session::pkce_challenge);
    let url = authorizer
        .authorize_url(&redirect, &state, challenge.as_deref())
        .map_err(err)?;
    eprintln!(
        "Open this URL in a browser and sign in {purpose}:\n\n{url}\n\nWaiting for the sign-in on {redirect} (up to {} s)…",
        timeout.as_secs()
    );
    if platform == PlatformKind::Slack && platforms.sandbox.is_none() {
        eprintln!(
            "(Slack redirects only to https URLs registered in the app's OAuth settings, so it may refuse {redirect}: if it does, connect Slack through the console instead.)"
        );
    }
    let code =
        match tokio::time::timeout(timeout, wait_for_callback(&listener, &path, &state)).await {
            Err(_) => {
                return Err(format!(
                    "no sign-in arrived within {} s; nothing was connected",
                    timeout.as_secs()
                ));
            }
            Ok(Returned::Refused(why)) => return Err(format!("{why}; nothing was connected")),
            Ok(Returned::Code(code)) => code,
        };
    let authorized = authorizer
        .complete(&code, &redirect, verifier.as_ref())
        .await
        .map_err(|e| format!("completing the sign-in failed: {e}"))?;
    Ok(TerminalSignIn {
        authorized,
        connector,
    })
}

fn check_json(c: &AccessCheck) -> serde_json::Value {
    serde_json::json!({ "kind": c.kind, "name": c.name, "ok": c.ok, "fix": c.fix })
}

fn print_checks(checks: &[AccessCheck]) {
    for c in checks {
        if c.ok {
            println!("  ok       {}", c.name);
        } else {
            println!("  MISSING  {}", c.name);
            if let Some(fix) = &c.fix {
                println!("           fix: {fix}");
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// connect

/// Runs `switchboard connect`: signs in from the terminal, verifies the account, stores the
/// connection with its health and prints every missing role or scope with its fix.
pub async fn connect(args: ConnectArgs) -> Result<ExitCode, String> {
    let ctx = Ctx::open(&args.global).await?;
    let platform: PlatformKind = args.platform.into();
    let purpose = match platform {
        PlatformKind::Msteams => {
            "as the dedicated service account (Application Administrator and Teams Administrator roles)"
        }
        _ => "and install the app into the workspace",
    };
    let signed = sign_in_from_terminal(
        &ctx.config,
        platform,
        Duration::from_secs(args.timeout),
        purpose,
    )
    .await?;
    let actor = match cli_actor() {
        Actor::Admin { name } => name,
        _ => "cli".into(),
    };
    let connection = store_connection(&ctx.store, &ctx.org, &actor, platform, &signed.authorized)
        .await
        .map_err(|e| format!("storing the connection failed: {e}"))?;
    let sink = Arc::new(StoreCredentials::new(
        ctx.store.clone(),
        ctx.org.clone(),
        connection.id.clone(),
    ));
    let (health, checks, problem) = match signed
        .connector
        .open(&connection, signed.authorized.credentials.clone(), sink)
        .await
    {
        Ok(live) => match live.account.verify(VerifyOptions::default()).await {
            Ok(report) => (report.health(), report.checks, None),
            Err(e) => (
                ConnectionHealth::Degraded,
                Vec::new(),
                Some(format!("the account could not be checked: {e}")),
            ),
        },
        Err(e) => (
            ConnectionHealth::Degraded,
            Vec::new(),
            Some(format!("the connection could not be opened: {e}")),
        ),
    };
    ctx.store
        .set_connection_health(&ctx.org, &connection.id, health)
        .await
        .map_err(err)?;
    ctx.pool.forget(&ctx.org, &connection.id);
    if ctx.json {
        print_json(&serde_json::json!({
            "connection": connection.id.to_string(),
            "platform": platform.to_string(),
            "tenant": connection.tenant.to_string(),
            "display_name": connection.display_name,
            "account": connection.account.display_name,
            "health": health.as_str(),
            "checks": checks.iter().map(check_json).collect::<Vec<_>>(),
            "problem": problem,
        }))?;
    } else {
        println!(
            "Connected {}: {} as {} (connection {})",
            platform_name(platform),
            connection.display_name,
            connection.account.display_name,
            connection.id
        );
        println!("Health: {}", health.as_str());
        print_checks(&checks);
        if let Some(p) = &problem {
            println!("  problem: {p}");
        }
        if health == ConnectionHealth::Ok {
            println!("Next: switchboard import --platform {platform} --all");
        } else {
            println!(
                "Fix what is missing, then run `switchboard doctor` (or connect again) to check."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------
// connections

fn connection_json(c: &Connection) -> serde_json::Value {
    serde_json::json!({
        "id": c.id.to_string(),
        "platform": c.platform.to_string(),
        "tenant": c.tenant.to_string(),
        "display_name": c.display_name,
        "account": c.account.display_name,
        "account_id": c.account.user_id.to_string(),
        "is_service_account": c.account.is_service_account,
        "health": c.health.as_str(),
    })
}

/// Runs `switchboard connections …`.
pub async fn connections(cmd: ConnectionsCommand) -> Result<ExitCode, String> {
    match cmd {
        ConnectionsCommand::List { global } => {
            crate::cmd_import::connections_list(crate::cmd_import::ConnectionsListArgs { global })
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        ConnectionsCommand::Migrate {
            id,
            timeout,
            global,
        } => migrate_connection(&global, &id, Duration::from_secs(timeout)).await,
    }
}

async fn migrate_connection(
    global: &GlobalArgs,
    id: &str,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let ctx = Ctx::open(global).await?;
    let id = ConnectionId::new(id).map_err(|e| format!("{id:?} is not a connection id: {e}"))?;
    let connection = ctx
        .store
        .get_connection(&ctx.org, &id)
        .await
        .map_err(err)?
        .ok_or_else(|| {
            format!("there is no connection {id} (see `switchboard connections list`)")
        })?;
    if !is_personal(&connection) {
        return Err(format!(
            "connection {id} already acts through the service account {}; nothing to migrate",
            connection.account.display_name
        ));
    }
    let signed = sign_in_from_terminal(
        &ctx.config,
        connection.platform,
        timeout,
        "as the service account that takes over",
    )
    .await?;
    let request = MigrationRequest {
        org: &ctx.org,
        connection: &id,
        authorized: &signed.authorized,
        actor: cli_actor(),
        options: VerifyOptions::default(),
    };
    let done = migrate(
        &ctx.store,
        signed.connector.as_ref(),
        Some(&ctx.pool),
        request,
    )
    .await
    .map_err(|e| format!("the connection was not moved: {e}"))?;
    // Graph subscriptions made with the previous token: subscribed again under the new
    // account (the running server answers Graph's validation at the public URL).
    let feeds = if done.connection.platform == PlatformKind::Msteams {
        let keeper = switchboard_server::feeds::FeedKeeper::new(
            ctx.store.clone(),
            ctx.pool.clone(),
            &public_url(&ctx.config),
        )
        .map_err(err)?;
        Some(
            keeper
                .resubscribe(&ctx.org, &id, done.previous_feeds.as_deref())
                .await
                .map_err(|e| {
                    format!("the connection was moved, but its subscriptions were not: {e}")
                })?,
        )
    } else {
        None
    };
    let old_copies = switchboard_server::migrate::old_copies_note(&done);
    if ctx.json {
        print_json(&serde_json::json!({
            "connection": connection_json(&done.connection),
            "previous": done.previous.display_name,
            "queued": done.queued,
            "old_copies": done.old_copies,
            "old_copies_note": old_copies,
            "subscriptions": feeds.as_ref().map(|f| serde_json::json!({
                "created": f.created,
                "deleted": f.deleted,
                "not_deleted": f.not_deleted,
                "failed": f.failed,
                "replayed": f.replayed,
            })),
            "checks": done.report.checks.iter().map(check_json).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "Moved connection {} ({}) from {} to the service account {}.",
            id,
            done.connection.display_name,
            done.previous.display_name,
            done.connection.account.display_name
        );
        print_checks(&done.report.checks);
        println!(
            "Universal channels are unchanged; {} queued deliveries go out through the service account.",
            done.queued
        );
        if let Some(note) = &old_copies {
            println!("{note}");
        }
        if let Some(f) = &feeds {
            println!(
                "Live feeds: {} subscription(s) made again under the service account ({} replayed from the gap){}.",
                f.created,
                f.replayed,
                if f.failed > 0 {
                    format!(
                        "; {} channel(s) could not be subscribed now and are retried by the running server",
                        f.failed
                    )
                } else {
                    String::new()
                }
            );
        }
        println!(
            "A `switchboard serve` already running keeps its open connection until it restarts."
        );
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------
// doctor

/// One problem `doctor` found, with what to do about it.
#[derive(Debug, Clone, serde::Serialize)]
struct Problem {
    /// The connection, when the problem is one connection's.
    connection: Option<String>,
    /// What kind of problem (role, scope, membership, token, webhook, account).
    kind: &'static str,
    /// What is wrong.
    what: String,
    /// How to fix it.
    fix: String,
}

fn kind_word(k: CheckKind) -> &'static str {
    match k {
        CheckKind::Role => "role",
        CheckKind::Scope => "scope",
        CheckKind::Membership => "membership",
        CheckKind::Token => "token",
    }
}

/// Collects the members a membership check looks for, ignoring everything else.
struct MemberSink {
    wanted: UserId,
    found: bool,
}

#[async_trait::async_trait]
impl ImportSink for MemberSink {
    async fn channels(
        &mut self,
        _: &TeamId,
        _: Vec<switchboard_core::Channel>,
    ) -> switchboard_core::Result<()> {
        Ok(())
    }
    async fn members(&mut self, _: &TeamId, page: Vec<Membership>) -> switchboard_core::Result<()> {
        self.found |= page.iter().any(|m| m.user == self.wanted);
        Ok(())
    }
    async fn users(&mut self, _: Vec<User>) -> switchboard_core::Result<()> {
        Ok(())
    }
    async fn channel_members(
        &mut self,
        _: &ChannelRef,
        page: Vec<UserId>,
    ) -> switchboard_core::Result<()> {
        self.found |= page.contains(&self.wanted);
        Ok(())
    }
}

/// The checks of one connection: account kind, token, roles and scopes, membership of the
/// teams (Teams) or channels (Slack) that universal channels use.
async fn check_connection(ctx: &Ctx, c: &Connection, out: &mut Vec<Problem>) -> Vec<AccessCheck> {
    let id = c.id.to_string();
    let mut problem = |kind: &'static str, what: String, fix: String| {
        out.push(Problem {
            connection: Some(id.clone()),
            kind,
            what,
            fix,
        });
    };
    if !c.account.is_service_account {
        problem(
            "account",
            format!(
                "{} acts through {}'s personal token, which stops working when that person leaves",
                c.display_name, c.account.display_name
            ),
            format!(
                "move it onto a dedicated service account: switchboard connections migrate {}",
                c.id
            ),
        );
    }
    let reconnect = format!("reconnect it: switchboard connect {}", c.platform);
    match ctx.store.get_credentials(&ctx.org, &c.id).await {
        Ok(Some(creds)) => {
            if let Some(at) = creds.expires_at
                && creds.refresh_token.is_none()
                && at < time::OffsetDateTime::now_utc() + time::Duration::days(1)
            {
                problem(
                    "token",
                    format!("the access token expires at {at} and has no refresh token"),
                    reconnect.clone(),
                );
            }
        }
        Ok(None) => {
            problem(
                "token",
                "no credentials are stored".into(),
                reconnect.clone(),
            );
            return Vec::new();
        }
        Err(e) => {
            problem(
                "token",
                format!("the stored credentials cannot be read: {e}"),
                "check the master key (SWITCHBOARD_MASTER_KEY or the key file in the data directory)".into(),
            );
            return Vec::new();
        }
    }
    let live = match ctx.pool.get(&ctx.org, &c.id).await {
        Ok(l) => l,
        Err(e) => {
            problem(
                "token",
                format!("the connection cannot be opened: {e}"),
                reconnect,
            );
            return Vec::new();
        }
    };
    // Health refreshes the access token when it is due (a forced rotation here would
    // invalidate the refresh token a running server holds).
    match live.platform.health().await {
        Ok(ConnectionHealth::NeedsReauth) => {
            problem(
                "token",
                "the grant was revoked or has expired (refreshing fails)".into(),
                reconnect.clone(),
            );
            return Vec::new();
        }
        Ok(_) => {}
        Err(e) => {
            problem(
                "token",
                format!("the token does not work: {e}"),
                reconnect.clone(),
            );
            return Vec::new();
        }
    }
    let checks = match live.account.verify(VerifyOptions::default()).await {
        Ok(report) => report.checks,
        Err(e) => {
            problem(
                "account",
                format!("the account's roles and scopes cannot be read: {e}"),
                reconnect,
            );
            return Vec::new();
        }
    };
    for check in checks.iter().filter(|c| !c.ok) {
        problem(
            kind_word(check.kind),
            check.name.clone(),
            check
                .fix
                .clone()
                .unwrap_or_else(|| format!("grant {} and connect again", check.name)),
        );
    }
    // Membership where universal channels need it.
    let linked = match ctx.store.list_universal_channels(&ctx.org).await {
        Ok(l) => l,
        Err(e) => {
            problem(
                "membership",
                format!("universal channels cannot be read: {e}"),
                "check the database".into(),
            );
            return checks;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for endpoint in linked
        .iter()
        .flat_map(|u| u.endpoints())
        .filter(|e| e.connection == c.id)
    {
        let channel = &endpoint.channel;
        let (key, result) = if c.platform == PlatformKind::Msteams {
            let key = channel.team.to_string();
            if seen.contains(&key) {
                continue;
            }
            let mut sink = MemberSink {
                wanted: c.account.user_id.clone(),
                found: false,
            };
            let r = live.import.import_team(&channel.team, &mut sink).await;
            (key, r.map(|_| sink.found))
        } else {
            let key = channel.to_string();
            if seen.contains(&key) {
                continue;
            }
            let mut sink = MemberSink {
                wanted: c.account.user_id.clone(),
                found: false,
            };
            let r = live.import.import_channel_members(channel, &mut sink).await;
            (key, r.map(|_| sink.found))
        };
        seen.push(key.clone());
        match result {
            Ok(true) => {}
            Ok(false) if c.platform == PlatformKind::Msteams => problem(
                "membership",
                format!(
                    "{} is not a member of team {key}, which a universal channel uses",
                    c.account.display_name
                ),
                format!(
                    "import the team again (it adds the service account): switchboard import --platform msteams --team {key}; or add {} in the Teams admin center",
                    c.account.display_name
                ),
            ),
            Ok(false) => problem(
                "membership",
                format!("the Slack app is not in {channel}, which a universal channel uses"),
                "invite the app into the channel in Slack (type /invite and the app's name there)"
                    .into(),
            ),
            Err(e) => problem(
                "membership",
                format!("the members of {key} cannot be read: {e}"),
                "check the account's access to it".into(),
            ),
        }
    }
    checks
}

/// The server's public URL: `server.public_url`, else the listening address.
fn public_url(config: &ServerConfig) -> String {
    config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}:{}", config.server.bind, config.server.port))
        .trim_end_matches('/')
        .to_owned()
}

/// Webhook reachability: `/healthz` answers at the public URL, Graph gets HTTPS, and the
/// Slack request URL passes Slack's signed `url_verification`.
async fn check_webhooks(ctx: &Ctx, connections: &[Connection], out: &mut Vec<Problem>) {
    let public = public_url(&ctx.config);
    let fix_url = "start `switchboard serve`, and set server.public_url (SWITCHBOARD_SERVER__PUBLIC_URL) to the address the platforms reach it at";
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            out.push(Problem {
                connection: None,
                kind: "webhook",
                what: format!("no HTTP client: {e}"),
                fix: "check the system's TLS configuration".into(),
            });
            return;
        }
    };
    let healthz = format!("{public}/healthz");
    let reachable = match http.get(&healthz).send().await {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            out.push(Problem {
                connection: None,
                kind: "webhook",
                what: format!("{healthz} answered {}", r.status()),
                fix: fix_url.into(),
            });
            false
        }
        Err(e) => {
            out.push(Problem {
                connection: None,
                kind: "webhook",
                what: format!("the server does not answer at {healthz}: {e}"),
                fix: fix_url.into(),
            });
            false
        }
    };
    let loopback = url::Url::parse(&public)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]")
        })
        .unwrap_or(false);
    if connections
        .iter()
        .any(|c| c.platform == PlatformKind::Msteams)
        && !public.starts_with("https://")
        && !loopback
    {
        out.push(Problem {
            connection: None,
            kind: "webhook",
            what: format!("Microsoft Graph delivers change notifications only to HTTPS URLs; the public URL is {public}"),
            fix: "serve Switchboard behind HTTPS and set server.public_url to the https:// address".into(),
        });
    }
    let slack_connected = connections
        .iter()
        .any(|c| c.platform == PlatformKind::Slack);
    if let (true, true, Some(slack)) = (reachable, slack_connected, &ctx.platforms.slack) {
        let request_url = format!("{public}/webhooks/slack/events");
        let challenge = session::random_token();
        let body = serde_json::json!({
            "token": "doctor", "challenge": challenge, "type": "url_verification"
        })
        .to_string();
        let ts = switchboard_slack::events::now_unix().to_string();
        let signature = switchboard_slack::events::compute_signature(
            &slack.signing_secret,
            &ts,
            body.as_bytes(),
        );
        let fix = format!(
            "in the Slack app's settings (Event Subscriptions), set the Request URL to {request_url}, and make sure the signing secret in [slack] is the app's"
        );
        match http
            .post(&request_url)
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", signature)
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                let text = r.text().await.unwrap_or_default();
                if !text.contains(&challenge) {
                    out.push(Problem {
                        connection: None,
                        kind: "webhook",
                        what: format!("{request_url} does not answer Slack's url_verification with the challenge"),
                        fix,
                    });
                }
            }
            Ok(r) => out.push(Problem {
                connection: None,
                kind: "webhook",
                what: format!(
                    "{request_url} refused a request signed with the configured signing secret ({})",
                    r.status()
                ),
                fix,
            }),
            Err(e) => out.push(Problem {
                connection: None,
                kind: "webhook",
                what: format!("{request_url} cannot be reached: {e}"),
                fix,
            }),
        }
    }
}

/// Runs `switchboard doctor`: exits 0 when nothing is wrong, 1 with every problem and its
/// fix otherwise.
pub async fn doctor(args: DoctorArgs) -> Result<ExitCode, String> {
    let ctx = Ctx::open(&args.global).await?;
    let connections = ctx.store.list_connections(&ctx.org).await.map_err(err)?;
    let mut problems = Vec::new();
    let mut report = Vec::new();
    if connections.is_empty() {
        problems.push(Problem {
            connection: None,
            kind: "connection",
            what: "no platform is connected".into(),
            fix: "connect one: switchboard connect msteams (or slack), or through the console"
                .into(),
        });
    }
    for c in &connections {
        let before = problems.len();
        let checks = check_connection(&ctx, c, &mut problems).await;
        report.push((c, checks, problems.len() - before));
    }
    check_webhooks(&ctx, &connections, &mut problems).await;
    if ctx.json {
        print_json(&serde_json::json!({
            "ok": problems.is_empty(),
            "connections": report.iter().map(|(c, checks, _)| serde_json::json!({
                "connection": connection_json(c),
                "checks": checks.iter().map(check_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "problems": problems,
        }))?;
    } else {
        for (c, checks, n) in &report {
            println!(
                "{} {} as {} (connection {}): {}",
                platform_name(c.platform),
                c.display_name,
                c.account.display_name,
                c.id,
                if *n == 0 {
                    "ok".to_owned()
                } else {
                    format!("{n} problem(s)")
                }
            );
            print_checks(checks);
        }
        if problems.is_empty() {
            println!("No problems found.");
        } else {
            println!("\n{} problem(s):", problems.len());
            for (i, p) in problems.iter().enumerate() {
                let on = p
                    .connection
                    .as_deref()
                    .map(|c| format!(" [connection {c}]"))
                    .unwrap_or_default();
                println!("{}. {} ({}){on}", i + 1, p.what, p.kind);
                println!("   fix: {}", p.fix);
            }
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
