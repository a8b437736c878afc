//! `teams list`, `import` (with a progress bar per phase), `channels list`, `users list` and
//! `connections list`: every listing a readable table, or JSON with `--json`.

use std::collections::HashMap;
use std::io::IsTerminal;

use clap::{ArgGroup, Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use switchboard_core::{Actor, Connection, ConnectionId, PlatformKind, StoredChannel, TeamId};
use switchboard_server::api_import::{parse_selection, teams_of, users_page};
use switchboard_server::pool::{ImportProgress, ImportStage, import_with_progress};
use tokio::sync::watch;

use crate::context::{Ctx, GlobalArgs, err};

fn platform_arg(s: &str) -> Result<PlatformKind, String> {
    s.parse::<PlatformKind>()
        .map_err(|_| format!("{s:?} is not a platform: use `msteams` or `slack`"))
}

/// `switchboard teams …`.
#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// The teams (Slack: the workspace) the service account can see, and which are imported.
    List(TeamsListArgs),
}

/// `switchboard teams list`.
#[derive(Debug, Args)]
pub struct TeamsListArgs {
    /// `msteams` or `slack`.
    #[arg(long, value_parser = platform_arg)]
    pub platform: PlatformKind,
    /// The connection (needed when the platform has several).
    #[arg(long)]
    pub connection: Option<String>,
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `switchboard import`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["team", "all"])))]
pub struct ImportArgs {
    /// `msteams` or `slack`.
    #[arg(long, value_parser = platform_arg)]
    pub platform: PlatformKind,
    /// A team (Slack: the workspace id) to import; repeat for several.
    #[arg(long = "team", value_name = "ID", num_args = 1..)]
    pub team: Vec<String>,
    /// Import every team the service account can see.
    #[arg(long)]
    pub all: bool,
    /// The connection (needed when the platform has several).
    #[arg(long)]
    pub connection: Option<String>,
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `switchboard channels …`.
#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// The imported channels.
    List(ListArgs),
}

/// `switchboard users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// The imported users.
    List(ListArgs),
}

/// `channels list` / `users list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this platform's (`msteams` or `slack`).
    #[arg(long, value_parser = platform_arg)]
    pub platform: Option<PlatformKind>,
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// `connections list`.
#[derive(Debug, Args)]
pub struct ConnectionsListArgs {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Left-aligned columns, two spaces apart, a header line first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn print_json(v: &serde_json::Value) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(v).map_err(err)?);
    Ok(())
}

/// The connection of `platform` to act on: `--connection` when given, else the only one.
async fn pick_connection(
    ctx: &Ctx,
    platform: PlatformKind,
    wanted: Option<&str>,
) -> Result<Connection, String> {
    let all: Vec<Connection> = ctx
        .store
        .list_connections(&ctx.org)
        .await
        .map_err(err)?
        .into_iter()
        .filter(|c| c.platform == platform)
        .collect();
    if let Some(id) = wanted {
        let id = ConnectionId::new(id).map_err(|e| format!("--connection {id:?}: {e}"))?;
        return all.into_iter().find(|c| c.id == id).ok_or(format!(
            "no {platform} connection {id} in this organization"
        ));
    }
    match all.len() {
        0 => Err(format!(
            "no {platform} connection yet: connect it first (the console's Connect Platforms page, or `switchboard serve --autoconnect` with the sandbox)"
        )),
        1 => Ok(all.into_iter().next().unwrap_or_else(|| unreachable!())),
        _ => Err(format!(
            "several {platform} connections: choose one with --connection ({})",
            all.iter()
                .map(|c| format!("{} = {}", c.id, c.display_name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `teams list`.
pub async fn teams_list(args: TeamsListArgs) -> Result<(), String> {
    let ctx = Ctx::open(&args.global).await?;
    let connection = pick_connection(&ctx, args.platform, args.connection.as_deref()).await?;
    let list = teams_of(ctx.store.as_ref(), &ctx.pool, &ctx.org, &connection)
        .await
        .map_err(|e| {
            format!(
                "listing the teams of {} failed: {e}",
                connection.display_name
            )
        })?;
    if ctx.json {
        return print_json(&serde_json::to_value(&list).map_err(err)?);
    }
    if list.teams.is_empty() {
        println!(
            "The service account of {} sees no teams.",
            connection.display_name
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .teams
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                if t.imported { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    print!("{}", table(&["ID", "NAME", "IMPORTED"], &rows));
    if list.source == "joined" {
        eprintln!(
            "note: only the teams the service account belongs to are listed (the tenant-wide list was refused): give it the Teams Administrator role"
        );
    }
    Ok(())
}

/// One progress bar per phase, drawn on stderr while it is a terminal.
struct Bars {
    multi: MultiProgress,
    teams: Option<ProgressBar>,
    account: Option<ProgressBar>,
    users: Option<ProgressBar>,
    platform: PlatformKind,
}

impl Bars {
    fn new(visible: bool, platform: PlatformKind) -> Bars {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            teams: None,
            account: None,
            users: None,
            platform,
        }
    }

    fn bar(&self, len: Option<u64>, prefix: &str) -> ProgressBar {
        let bar = match len {
            Some(n) => {
                let b = ProgressBar::new(n);
                b.set_style(
                    ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b
            }
            None => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template("{prefix:>16} {spinner} {pos} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            }
        };
        bar.set_prefix(prefix.to_owned());
        self.multi.add(bar)
    }

    fn show(&mut self, p: &ImportProgress) {
        if p.stage != ImportStage::ListingTeams && self.teams.is_none() {
            let label = if self.platform == PlatformKind::Slack {
                "workspace"
            } else {
                "teams"
            };
            self.teams = Some(self.bar(Some(p.teams_total), label));
        }
        if let Some(b) = &self.teams {
            b.set_position(p.teams_done);
            b.set_message(format!(
                "{} channels, {} members{}",
                p.channels,
                p.members,
                p.team
                    .as_deref()
                    .map(|t| format!(" · {t}"))
                    .unwrap_or_default()
            ));
            if p.stage > ImportStage::Teams && !b.is_finished() {
                b.finish();
            }
        }
        if p.stage >= ImportStage::ServiceAccount
            && self.platform == PlatformKind::Msteams
            && self.account.is_none()
        {
            self.account = Some(self.bar(Some(p.teams_total), "service account"));
        }
        if let Some(b) = &self.account {
            b.set_position(p.memberships_ensured);
            b.set_message("teams it is a member of");
            if p.stage > ImportStage::ServiceAccount && !b.is_finished() {
                b.finish();
            }
        }
        if p.stage >= ImportStage::Users && self.users.is_none() {
            self.users = Some(self.bar(p.users_estimated, "users"));
        }
        if let Some(b) = &self.users {
            if let Some(n) = p.users_estimated {
                b.set_length(n.max(p.users));
            }
            b.set_position(p.users);
            if p.stage == ImportStage::Done && !b.is_finished() {
                b.finish();
            }
        }
    }

    fn abandon(&self) {
        for b in [&self.teams, &self.account, &self.users]
            .into_iter()
            .flatten()
        {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}

fn actor() -> Actor {
    let who = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into());
    Actor::Admin {
        name: format!("cli:{who}"),
    }
}

/// `import`.
pub async fn import(args: ImportArgs) -> Result<(), String> {
    let teams: Option<Vec<TeamId>> =
        parse_selection((!args.all).then_some(args.team.as_slice()), args.all).map_err(|e| {
            e.replace("`teams`", "--team")
                .replace("`all: true`", "--all")
        })?;
    let ctx = Ctx::open(&args.global).await?;
    let connection = pick_connection(&ctx, args.platform, args.connection.as_deref()).await?;
    let (tx, mut rx) = watch::channel(ImportProgress::default());
    let visible = !ctx.json && std::io::stderr().is_terminal();
    let mut bars = Bars::new(visible, connection.platform);
    let drawer = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            bars.show(&p);
        }
        bars
    });
    let result = import_with_progress(
        &ctx.store,
        &ctx.pool,
        &ctx.org,
        &connection.id,
        teams.as_deref(),
        actor(),
        &tx,
    )
    .await;
    let last = tx.borrow().clone();
    drop(tx);
    // Finished bars stay on screen above the summary; a failure leaves them where they
    // stopped.
    if let Ok(bars) = drawer.await
        && result.is_err()
    {
        bars.abandon();
    }
    let counts = result.map_err(|e| {
        let why = if e.kind() == switchboard_core::ErrorKind::InvalidInput {
            e.message().to_owned()
        } else {
            e.to_string()
        };
        format!("importing {} failed: {why}", connection.display_name)
    })?;
    if ctx.json {
        return print_json(&json!({
            "connection": connection.id.to_string(),
            "platform": connection.platform.to_string(),
            "teams": last.teams_total,
            "channels": counts.channels,
            "members": counts.members,
            "users": counts.users,
        }));
    }
    let what = if connection.platform == PlatformKind::Slack {
        "the workspace".to_owned()
    } else if last.teams_total == 1 {
        "1 team".to_owned()
    } else {
        format!("{} teams", last.teams_total)
    };
    println!(
        "Imported {what} of {} ({}): {} channels, {} team memberships, {} users.",
        connection.display_name, connection.platform, counts.channels, counts.members, counts.users
    );
    Ok(())
}

/// `channels list`.
pub async fn channels_list(args: ListArgs) -> Result<(), String> {
    let ctx = Ctx::open(&args.global).await?;
    let mut team_names: HashMap<(ConnectionId, TeamId), String> = HashMap::new();
    for c in ctx.store.list_connections(&ctx.org).await.map_err(err)? {
        for t in ctx.store.list_teams(&ctx.org, &c.id).await.map_err(err)? {
            team_names.insert((c.id.clone(), t.id), t.name);
        }
    }
    let mut channels: Vec<StoredChannel> = Vec::new();
    let mut after = None;
    loop {
        let page = ctx
            .store
            .list_channels(
                &ctx.org,
                None,
                after.as_ref(),
                switchboard_core::MAX_PAGE_SIZE,
            )
            .await
            .map_err(err)?;
        let last = page.len() < switchboard_core::MAX_PAGE_SIZE;
        after = page.last().map(|c| c.reference.clone());
        channels.extend(
            page.into_iter()
                .filter(|c| args.platform.is_none_or(|p| c.reference.platform == p)),
        );
        if last {
            break;
        }
    }
    let team_of = |c: &StoredChannel| {
        team_names
            .get(&(c.connection.clone(), c.channel.team.clone()))
            .cloned()
            .unwrap_or_else(|| c.channel.team.to_string())
    };
    if ctx.json {
        let list: Vec<serde_json::Value> = channels
            .iter()
            .map(|c| {
                json!({
                    "ref": c.reference.to_string(),
                    "platform": c.reference.platform.to_string(),
                    "connection": c.connection.to_string(),
                    "team": c.channel.team.to_string(),
                    "team_name": team_of(c),
                    "id": c.channel.id.to_string(),
                    "name": c.channel.name,
                    "kind": c.channel.kind.as_str(),
                    "removed": c.removed,
                })
            })
            .collect();
        return print_json(&serde_json::Value::Array(list));
    }
    if channels.is_empty() {
        println!(
            "No channels imported yet: `switchboard import --platform {} --all` imports them.",
            args.platform.map_or("msteams", |p| p.as_str())
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            vec![
                c.reference.platform.to_string(),
                team_of(c),
                c.channel.name.clone(),
                c.channel.kind.as_str().to_owned(),
                if c.removed { "removed" } else { "" }.to_owned(),
                c.reference.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["PLATFORM", "TEAM", "CHANNEL", "KIND", "STATE", "REF"],
            &rows
        )
    );
    Ok(())
}

/// `users list`.
pub async fn users_list(args: ListArgs) -> Result<(), String> {
    let ctx = Ctx::open(&args.global).await?;
    let mut users = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = users_page(
            ctx.store.as_ref(),
            &ctx.org,
            args.platform,
            after.as_ref(),
            switchboard_core::MAX_PAGE_SIZE,
        )
        .await
        .map_err(err)?;
        users.extend(page);
        match next
            .as_deref()
            .and_then(switchboard_server::api_import::parse_cursor)
        {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    if ctx.json {
        let list: Vec<serde_json::Value> = users
            .into_iter()
            .map(|u| {
                serde_json::to_value(switchboard_server::api_import::UserView::from(u))
                    .unwrap_or_default()
            })
            .collect();
        return print_json(&serde_json::Value::Array(list));
    }
    if users.is_empty() {
        println!("No users imported yet: `switchboard import` imports them with their teams.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let mut flags = Vec::new();
            if u.user.is_guest {
                flags.push("guest");
            }
            if u.user.is_bot {
                flags.push("bot");
            }
            if u.user.is_deleted {
                flags.push("deactivated");
            }
            if u.removed {
                flags.push("removed");
            }
            vec![
                u.platform.to_string(),
                u.user.display_name.clone(),
                u.user.email.clone().unwrap_or_default(),
                flags.join(","),
                u.user.id.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["PLATFORM", "NAME", "EMAIL", "FLAGS", "ID"], &rows)
    );
    Ok(())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `connections list`.
pub async fn connections_list(args: ConnectionsListArgs) -> Result<(), String> {
    let ctx = Ctx::open(&args.global).await?;
    let list = ctx.store.list_connections(&ctx.org).await.map_err(err)?;
    if ctx.json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|c| {
                json!({
                    "id": c.id.to_string(),
                    "platform": c.platform.to_string(),
                    "tenant": c.tenant.to_string(),
                    "display_name": c.display_name,
                    "account": c.account.display_name,
                    "account_id": c.account.user_id.to_string(),
                    "is_service_account": c.account.is_service_account,
                    "health": c.health.to_string(),
                    "created_at": rfc3339(c.created_at),
                })
            })
            .collect();
        return print_json(&serde_json::Value::Array(v));
    }
    if list.is_empty() {
        println!("No platform is connected yet: open the console's Connect Platforms page.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.platform.to_string(),
                c.display_name.clone(),
                c.account.display_name.clone(),
                if c.account.is_service_account {
                    "service account"
                } else {
                    "personal token"
                }
                .to_owned(),
                c.health.to_string(),
                rfc3339(c.created_at),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "PLATFORM",
                "NAME",
                "ACCOUNT",
                "KIND",
                "HEALTH",
                "CONNECTED"
            ],
            &rows
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_by_characters() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "Zoë".into()],
                vec!["22222".into(), "Bob".into()],
            ],
        );
        assert_eq!(t, "ID     NAME\n1      Zoë\n22222  Bob\n");
    }
}
