//! Embedding example: import a Slack workspace with `switchboard-slack`.
//!
//! It starts the built-in sandbox in-process (no credentials, no network), connects to its
//! Slack workspace with the seeded bot token, checks the bot's scopes, and imports the
//! workspace's channels, members and users page by page, printing a summary.
//!
//! ```text
//! cargo run -p example-slack-import            # the small seed
//! cargo run -p example-slack-import -- large   # 5,000 channels and 20,000 users, limits ×50
//! ```

use std::time::Instant;

use secrecy::SecretString;
use switchboard_core::{
    Channel, ChannelKind, Credentials, ImportSink, Membership, Progress, Result, ServiceAccount,
    TeamId, TeamImport, User, VerifyOptions, async_trait,
};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};
use switchboard_slack::{RateLimits, SlackClient, SlackConfig, SlackConnection};
use url::Url;

/// Counts what arrives and keeps a few examples; memory stays bounded by one page.
#[derive(Debug, Default)]
struct Summary {
    channels: u64,
    private_channels: u64,
    members: u64,
    users: u64,
    users_with_email: u64,
    bots: u64,
    deleted: u64,
    channel_names: Vec<String>,
    user_samples: Vec<String>,
}

#[async_trait]
impl ImportSink for Summary {
    async fn channels(&mut self, _team: &TeamId, page: Vec<Channel>) -> Result<()> {
        for c in page {
            self.channels += 1;
            if c.kind == ChannelKind::Private {
                self.private_channels += 1;
            }
            if self.channel_names.len() < 8 {
                self.channel_names.push(format!("#{}", c.name));
            }
        }
        Ok(())
    }

    async fn members(&mut self, _team: &TeamId, page: Vec<Membership>) -> Result<()> {
        self.members += page.len() as u64;
        Ok(())
    }

    async fn users(&mut self, page: Vec<User>) -> Result<()> {
        for u in page {
            self.users += 1;
            self.users_with_email += u64::from(u.email.is_some());
            self.bots += u64::from(u.is_bot);
            self.deleted += u64::from(u.is_deleted);
            if self.user_samples.len() < 5 && !u.is_bot {
                self.user_samples.push(match &u.email {
                    Some(e) => format!("{} <{e}>", u.display_name),
                    None => u.display_name.clone(),
                });
            }
        }
        Ok(())
    }

    async fn progress(&mut self, p: Progress) -> Result<()> {
        eprint!("\r  {:?}: {:>6} ", p.phase, p.done);
        Ok(())
    }
}

fn text(v: &serde_json::Value, key: &str) -> std::result::Result<String, String> {
    v.get(key)
        .and_then(|x| x.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("the sandbox's ready info has no {key}"))
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let seed = match std::env::args().nth(1).as_deref() {
        None | Some("small") => Seed::Small,
        Some("large") => Seed::Large,
        Some(other) => return Err(format!("unknown seed {other:?}: use `small` or `large`").into()),
    };
    // The sandbox enforces Slack's documented limits multiplied by the time scale; the client
    // paces itself under the same scaled limits.
    let time_scale = if seed == Seed::Large { 50.0 } else { 1.0 };
    let sandbox = Sandbox::start(SandboxConfig {
        seed,
        time_scale,
        ..Default::default()
    })
    .await?;
    let ready = sandbox.ready_info();
    let slack = &ready["slack"];
    let api = Url::parse(&text(&ready, "slack_api_url")?)?;
    let oauth = Url::parse(&format!("{}/slack/", text(&ready, "base_url")?))?;
    println!(
        "sandbox at {} (seed {seed}, time scale {time_scale})",
        sandbox.base_url()
    );

    let config = SlackConfig::new(
        text(slack, "client_id")?,
        SecretString::from(text(slack, "client_secret")?),
        SecretString::from(text(slack, "signing_secret")?),
    )
    .with_base_urls(api, oauth)
    .with_limits(RateLimits::documented().scaled(time_scale));
    let client = SlackClient::new(&config)?;
    let credentials = Credentials {
        access_token: SecretString::from(text(slack, "bot_token")?),
        refresh_token: None,
        expires_at: None,
        scopes: vec![],
    };
    let team = TeamId::new(text(slack, "team_id")?)?;
    let connection = SlackConnection::new(&config, client.clone(), team.clone(), credentials);

    let report = connection.verify(VerifyOptions::default()).await?;
    println!(
        "connected as {} ({}); {} of {} checks pass",
        report.account.display_name,
        report.account.user_id,
        report.checks.iter().filter(|c| c.ok).count(),
        report.checks.len()
    );
    for problem in report.problems() {
        println!(
            "  ✗ {}: {}",
            problem.name,
            problem.fix.as_deref().unwrap_or("")
        );
    }

    let started = Instant::now();
    let listing = connection.list_teams().await?;
    let mut summary = Summary::default();
    for t in &listing.teams {
        println!("importing workspace {} ({})", t.name, t.id);
        connection.import_team(&t.id, &mut summary).await?;
        eprintln!();
    }
    connection.import_users(&mut summary).await?;
    eprintln!();
    let elapsed = started.elapsed();

    println!(
        "channels: {} ({} private): {}{}",
        summary.channels,
        summary.private_channels,
        summary.channel_names.join(", "),
        if summary.channels > summary.channel_names.len() as u64 {
            ", …"
        } else {
            ""
        }
    );
    println!("members:  {}", summary.members);
    println!(
        "users:    {} ({} with email, {} bots, {} deactivated), e.g. {}",
        summary.users,
        summary.users_with_email,
        summary.bots,
        summary.deleted,
        summary.user_samples.join("; ")
    );
    let stats = client.stats();
    let calls: Vec<String> = stats
        .requests
        .iter()
        .map(|(m, n)| format!("{m} ×{n}"))
        .collect();
    println!(
        "took {:.2}s: {}; {} rate-limited answers",
        elapsed.as_secs_f64(),
        calls.join(", "),
        stats.rate_limited
    );
    sandbox.shutdown().await;
    Ok(())
}
