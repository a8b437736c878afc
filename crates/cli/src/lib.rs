//! The `switchboard` command line: argument parsing and the subcommands, thin over the
//! libraries.
//!
//! PRODUCT.md's global options (`--config`, `--data-dir`, `--json`) arrive with the commands
//! that read a configuration, keep data or list things (`serve`, `demo`, `import`, …);
//! `sandbox` needs none of them (its state is in memory and its ready line is JSON already),
//! so they are not accepted yet rather than accepted and ignored.

#![warn(missing_docs)]

pub mod cmd_import;
pub mod cmd_links;
pub mod cmd_ops;
pub mod context;
pub mod demo;
pub mod serve;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};
use switchboard_server::config::{LogFormat, ServerConfig};

/// Switchboard: bridges Microsoft Teams and Slack through universal channels.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The end-to-end walkthrough on the built-in sandbox (no credentials needed).
    Demo(demo::DemoArgs),
    /// Run the server: console, admin API, webhooks and relay workers.
    Serve(serve::ServeArgs),
    /// Run the emulated Slack and Microsoft platforms alone.
    Sandbox(SandboxArgs),
    /// Teams and workspaces the service accounts can see.
    #[command(subcommand)]
    Teams(cmd_import::TeamsCommand),
    /// Import teams (Slack: the workspace): channels, members, users.
    Import(cmd_import::ImportArgs),
    /// The imported channels.
    #[command(subcommand)]
    Channels(cmd_import::ChannelsCommand),
    /// The imported users.
    #[command(subcommand)]
    Users(cmd_import::UsersCommand),
    /// Link imported channels into a universal channel (`--dry-run`: the capability report).
    Link(cmd_links::LinkArgs),
    /// Remove a universal channel.
    Unlink(cmd_links::UnlinkArgs),
    /// The audit log: list, export, verify.
    Audit(cmd_links::AuditArgs),
    /// Connect Microsoft Teams or Slack through OAuth from the terminal (loopback redirect).
    Connect(cmd_ops::ConnectArgs),
    /// Check every connection's roles, scopes, membership, tokens and webhooks; exits
    /// non-zero with the fix for each problem.
    Doctor(cmd_ops::DoctorArgs),
    /// Organizations: create one (printing its admin token once), list them.
    #[command(subcommand)]
    Orgs(cmd_ops::OrgsCommand),
    /// Connected platforms: list them, move one onto a service account.
    #[command(subcommand)]
    Connections(cmd_ops::ConnectionsCommand),
}

/// `switchboard sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seeded world: `small` or `large`.
    #[arg(long, default_value = "small")]
    pub seed: Seed,
    /// Multiplies every documented rate limit by K (0 turns limits off).
    #[arg(long = "time-scale", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Also write the ready JSON line to this file (it is printed to stdout either way).
    #[arg(long = "ready-file")]
    pub ready_file: Option<PathBuf>,
}

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(log_format(&cli));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Sandbox(args) => run_sandbox(args).await.map(|()| ExitCode::SUCCESS),
            Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Teams(cmd_import::TeamsCommand::List(args)) => cmd_import::teams_list(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Import(args) => cmd_import::import(args).await.map(|()| ExitCode::SUCCESS),
            Command::Channels(cmd_import::ChannelsCommand::List(args)) => {
                cmd_import::channels_list(args)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Users(cmd_import::UsersCommand::List(args)) => cmd_import::users_list(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Link(args) => cmd_links::link(args).await.map(|()| ExitCode::SUCCESS),
            Command::Unlink(args) => cmd_links::unlink(args).await.map(|()| ExitCode::SUCCESS),
            Command::Audit(args) => cmd_links::audit(args).await.map(|()| ExitCode::SUCCESS),
            Command::Connect(args) => cmd_ops::connect(args).await,
            Command::Doctor(args) => cmd_ops::doctor(args).await,
            Command::Orgs(cmd) => cmd_ops::orgs(cmd).await,
            Command::Connections(cmd) => cmd_ops::connections(cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The log format of the configuration the command reads (`log_format` of its
/// `--config` file, overridden by `SWITCHBOARD_LOG_FORMAT`); human when it cannot be read
/// (the command itself then reports the configuration error).
fn log_format(cli: &Cli) -> LogFormat {
    let file = match &cli.command {
        Command::Serve(a) => a.config.as_deref(),
        Command::Demo(_) | Command::Sandbox(_) => None,
        Command::Connect(a) => a.global.config.as_deref(),
        Command::Doctor(a) => a.global.config.as_deref(),
        Command::Orgs(c) => c.global().config.as_deref(),
        Command::Connections(c) => c.global().config.as_deref(),
        Command::Teams(cmd_import::TeamsCommand::List(a)) => a.global.config.as_deref(),
        Command::Import(a) => a.global.config.as_deref(),
        Command::Channels(cmd_import::ChannelsCommand::List(a))
        | Command::Users(cmd_import::UsersCommand::List(a)) => a.global.config.as_deref(),
        Command::Link(a) => a.global.config.as_deref(),
        Command::Unlink(a) => a.global.config.as_deref(),
        // `audit` reads its configuration in its subcommand; the environment decides here.
        Command::Audit(_) => None,
    };
    match ServerConfig::load(file) {
        Ok(c) => c.log_format,
        Err(_) => match std::env::var("SWITCHBOARD_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            _ => LogFormat::Human,
        },
    }
}

/// Logs go to stderr (stdout carries ready lines and command output), filtered by
/// `SWITCHBOARD_LOG` (an `EnvFilter` directive such as `info` or
/// `switchboard_relay=debug`; `warn` when unset or invalid), as human lines or one JSON
/// object per line. Nothing secret is logged: tokens and secrets are `secrecy` types whose
/// `Debug` is redacted, and no code path formats an exposed secret into an event.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Human => builder.init(),
    }
}

async fn run_sandbox(args: SandboxArgs) -> Result<(), String> {
    if !(args.time_scale >= 0.0 && args.time_scale.is_finite()) {
        return Err("--time-scale must be a non-negative number".into());
    }
    let sandbox = Sandbox::start(SandboxConfig {
        seed: args.seed,
        time_scale: args.time_scale,
        port: args.port,
        ..SandboxConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the sandbox on port {}: {e}", args.port))?;
    let line = serde_json::to_string(&sandbox.ready()).map_err(|e| e.to_string())?;
    let stop = shutdown_signal();
    print_ready(&line, args.ready_file.as_deref())?;
    stop.await;
    sandbox.shutdown().await;
    Ok(())
}

/// Prints the ready line on stdout (flushed) and writes it to `ready_file` when given.
pub(crate) fn print_ready(line: &str, ready_file: Option<&std::path::Path>) -> Result<(), String> {
    if let Some(path) = ready_file {
        std::fs::write(path, format!("{line}\n"))
            .map_err(|e| format!("cannot write the ready file {}: {e}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

/// SIGINT or SIGTERM, with the handlers installed when this is created, so a signal sent
/// right after the ready line (printed after it) is never missed.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut t), Some(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                (Some(mut t), None) => {
                    t.recv().await;
                }
                (None, Some(mut i)) => {
                    i.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
