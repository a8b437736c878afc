//! `switchboard link`, `unlink` and `audit list | export | verify`: thin over the server
//! library's operations (`switchboard_server::api_links`), so the CLI, the console and the
//! admin API check, link and audit the same way.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use switchboard_core::Actor;
use switchboard_server::api_links;
use switchboard_server::capability;

use crate::context::{Ctx, GlobalArgs, err};

/// The name the CLI acts under in the audit log.
const CLI_ACTOR: &str = "cli";

/// `switchboard link REF REF… [--name N] [--dry-run]`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// Channel references: `msteams:<team>/<channel>` or `slack:<workspace>/<channel>` (at
    /// least two, on at least two platforms).
    #[arg(required = true, num_args = 1..)]
    pub refs: Vec<String>,
    /// The universal channel's name (default: the first channel's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Print the capability report and change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Relay join/leave notices.
    #[arg(long)]
    pub notices: bool,
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `switchboard unlink ID`.
#[derive(Debug, Args)]
pub struct UnlinkArgs {
    /// The universal channel's id (`switchboard link` printed it; the API lists them).
    pub id: String,
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `switchboard audit …`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The log, oldest first (`--json`: one JSON array).
    List {
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1 to 1,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Global options.
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// The whole log as JSON lines (hashes included), to stdout or a file.
    Export {
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Global options.
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// Check the hash chain; exits non-zero when it is broken.
    Verify {
        /// Global options.
        #[command(flatten)]
        global: GlobalArgs,
    },
}

fn print(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(err)?;
    out.flush().map_err(err)
}

fn json_line(v: Result<serde_json::Value, serde_json::Error>) -> Result<String, String> {
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&v.map_err(err)?).map_err(err)?
    ))
}

/// `switchboard link`.
pub async fn link(args: LinkArgs) -> Result<(), String> {
    let refs = api_links::parse_refs(&args.refs).map_err(|e| e.message().to_owned())?;
    let ctx = Ctx::open(&args.global).await?;
    if args.dry_run {
        let report = capability::report(ctx.store.as_ref(), &ctx.org, &refs)
            .await
            .map_err(err)?;
        if ctx.json {
            return print(&json_line(serde_json::to_value(&report))?);
        }
        print(&format!(
            "Capability report (dry run, nothing changed):\n{}",
            report.to_text()
        ))?;
        return if report.can_link {
            Ok(())
        } else {
            Err("the channels cannot be linked (see the blockers above)".into())
        };
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => {
            let first = ctx
                .store
                .get_channel(&ctx.org, &refs[0])
                .await
                .map_err(err)?;
            first
                .map(|c| c.channel.name)
                .unwrap_or_else(|| refs[0].channel.to_string())
        }
    };
    let linked = api_links::link_channels(
        ctx.store.as_ref(),
        &ctx.org,
        CLI_ACTOR,
        &name,
        &refs,
        args.notices,
    )
    .await
    .map_err(|e| e.message().to_owned())?;
    if ctx.json {
        return print(&json_line(Ok(serde_json::json!({
            "id": linked.channel.id().to_string(),
            "name": linked.channel.name(),
            "endpoints": linked.channel.endpoints().iter().map(|e| e.channel.to_string()).collect::<Vec<_>>(),
            "report": linked.report,
        })))?);
    }
    print(&format!(
        "Linked {:?} ({}):\n{}",
        linked.channel.name(),
        linked.channel.id(),
        linked.report.to_text()
    ))
}

/// `switchboard unlink`.
pub async fn unlink(args: UnlinkArgs) -> Result<(), String> {
    let ctx = Ctx::open(&args.global).await?;
    let channel = api_links::unlink_channel(ctx.store.as_ref(), &ctx.org, CLI_ACTOR, &args.id)
        .await
        .map_err(|e| e.message().to_owned())?;
    if ctx.json {
        return print(&json_line(Ok(serde_json::json!({
            "id": channel.id().to_string(), "name": channel.name(), "unlinked": true,
        })))?);
    }
    print(&format!(
        "Unlinked {:?} ({}): its channels no longer relay.\n",
        channel.name(),
        channel.id()
    ))
}

fn actor_text(a: &Actor) -> String {
    match a {
        Actor::Admin { name } => format!("admin:{name}"),
        Actor::ServiceAccount { connection } => format!("service_account:{connection}"),
        Actor::User { platform, user, .. } => format!("user:{platform}:{user}"),
        Actor::System => "system".into(),
    }
}

/// `switchboard audit`.
pub async fn audit(args: AuditArgs) -> Result<(), String> {
    match args.command {
        AuditCommand::List {
            after,
            limit,
            global,
        } => {
            if !(1..=1000).contains(&limit) {
                return Err("--limit must be between 1 and 1000".into());
            }
            let ctx = Ctx::open(&global).await?;
            let entries = ctx
                .store
                .list_audit(&ctx.org, after, limit)
                .await
                .map_err(err)?;
            if ctx.json {
                return print(&json_line(serde_json::to_value(&entries))?);
            }
            if entries.is_empty() {
                return print("No audit entries.\n");
            }
            let mut out = format!(
                "{:>5}  {:<20}  {:<28}  {:<30}  {}\n",
                "SEQ", "AT (UTC)", "ACTOR", "ACTION", "TARGET"
            );
            for e in &entries {
                // The entry's RFC 3339 time, to the second.
                let at = serde_json::to_value(e)
                    .ok()
                    .and_then(|v| v["at"].as_str().map(|s| s.replace('T', " ")))
                    .map(|s| s.chars().take(19).collect::<String>())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{:>5}  {:<20}  {:<28}  {:<30}  {}\n",
                    e.seq,
                    at,
                    actor_text(&e.actor),
                    e.action,
                    e.target
                ));
            }
            print(&out)
        }
        AuditCommand::Export { output, global } => {
            let ctx = Ctx::open(&global).await?;
            let lines = api_links::export_audit(ctx.store.as_ref(), &ctx.org)
                .await
                .map_err(err)?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &lines)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    eprintln!(
                        "wrote {} audit entries to {}",
                        lines.lines().count(),
                        path.display()
                    );
                    Ok(())
                }
                None => print(&lines),
            }
        }
        AuditCommand::Verify { global } => {
            let ctx = Ctx::open(&global).await?;
            let v = ctx.store.verify_audit(&ctx.org).await.map_err(err)?;
            if ctx.json {
                print(&json_line(Ok(serde_json::json!({
                    "ok": v.is_ok(), "checked": v.checked,
                    "first_bad_seq": v.first_bad_seq, "reason": v.reason,
                })))?)?;
            } else if v.is_ok() {
                print(&format!(
                    "The audit chain is intact: {} entries checked.\n",
                    v.checked
                ))?;
            }
            match v.first_bad_seq {
                None => Ok(()),
                Some(seq) => Err(format!(
                    "the audit chain is broken at entry {seq}: {} ({} entries checked); entries from there on may have been altered or removed",
                    v.reason.unwrap_or_default(),
                    v.checked
                )),
            }
        }
    }
}
