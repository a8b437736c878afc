//! Embedding example: import a Microsoft Teams tenant with `switchboard-msteams`.
//!
//! It starts the built-in sandbox (an emulated Microsoft identity platform + Graph) in this
//! process, connects its service account through the real OAuth code flow with PKCE (the
//! consent page is filled in the way an admin's browser would), checks the account's
//! directory roles, lists and imports every team with its channels and members, imports
//! the users, makes sure the service account is a member of every team, and prints a
//! summary. No credentials needed:
//!
//! ```text
//! cargo run -p example-msteams-import
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use scraper::{Html, Selector};
use secrecy::SecretString;
use switchboard_core::{
    Channel, ChannelKind, ImportSink, Membership, MembershipOutcome, Progress, Result,
    ServiceAccount, TeamId, TeamImport, User, VerifyOptions,
};
use switchboard_msteams::oauth::parse_callback;
use switchboard_msteams::{MsTeamsConfig, MsTeamsConnection, OAuthClient, RateLimits};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};

const REDIRECT_URI: &str = "http://127.0.0.1:9/connect/msteams/callback";

/// Keeps what an import delivers (a real embedder would upsert into its store).
#[derive(Default)]
struct Summary {
    channels: BTreeMap<String, Vec<Channel>>,
    members: BTreeMap<String, usize>,
    users: Vec<User>,
    last_progress: Option<Progress>,
}

#[async_trait]
impl ImportSink for Summary {
    async fn channels(&mut self, team: &TeamId, page: Vec<Channel>) -> Result<()> {
        self.channels
            .entry(team.to_string())
            .or_default()
            .extend(page);
        Ok(())
    }
    async fn members(&mut self, team: &TeamId, page: Vec<Membership>) -> Result<()> {
        *self.members.entry(team.to_string()).or_default() += page.len();
        Ok(())
    }
    async fn users(&mut self, page: Vec<User>) -> Result<()> {
        self.users.extend(page);
        Ok(())
    }
    async fn progress(&mut self, progress: Progress) -> Result<()> {
        self.last_progress = Some(progress);
        Ok(())
    }
}

/// Plays the admin's browser on the sandbox's consent page: GET the page, POST the form
/// with the account's credentials and `decision=accept`, return the callback's query.
async fn consent(
    base_url: &str,
    authorize_url: &str,
    username: &str,
    password: &str,
) -> std::result::Result<String, Box<dyn std::error::Error>> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = http.get(authorize_url).send().await?.text().await?;
    let (action, mut fields) = {
        let doc = Html::parse_document(&page);
        let form = doc
            .select(&Selector::parse("form").map_err(|e| e.to_string())?)
            .next()
            .ok_or("the consent page has no form")?;
        let hidden = Selector::parse("input[type=hidden]").map_err(|e| e.to_string())?;
        let fields: Vec<(String, String)> = form
            .select(&hidden)
            .filter_map(|i| {
                Some((
                    i.value().attr("name")?.to_owned(),
                    i.value().attr("value").unwrap_or("").to_owned(),
                ))
            })
            .collect();
        (form.value().attr("action").unwrap_or("").to_owned(), fields)
    };
    fields.push(("username".into(), username.into()));
    fields.push(("password".into(), password.into()));
    fields.push(("decision".into(), "accept".into()));
    let target = if action.starts_with("http") {
        action
    } else {
        format!("{base_url}{action}")
    };
    let resp = http
        .post(target)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&fields)?)
        .send()
        .await?;
    let location = resp
        .headers()
        .get("location")
        .ok_or("the consent form did not redirect back")?
        .to_str()?;
    Ok(url::Url::parse(location)?.query().unwrap_or("").to_owned())
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let sandbox = Sandbox::start(SandboxConfig {
        seed: Seed::Small,
        ..Default::default()
    })
    .await?;
    let info = sandbox.ready_info();
    let ms = &info["msteams"];
    let field = |k: &str| {
        ms[k]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("ready info lacks msteams.{k}"))
    };
    println!("sandbox running at {}", sandbox.base_url());

    // 1. Configure the adapter for this tenant (the endpoints are the sandbox's).
    let config = MsTeamsConfig::with_endpoints(
        info["microsoft_login_url"].as_str().ok_or("no login URL")?,
        info["graph_api_url"].as_str().ok_or("no Graph URL")?,
        field("tenant_id")?,
        field("client_id")?,
        SecretString::from(field("client_secret")?),
        REDIRECT_URI,
    )?
    .limits(RateLimits::documented());

    // 2. OAuth: authorization URL with state + PKCE, consent, callback, code exchange.
    let oauth = OAuthClient::new(&config)?;
    let upn = field("service_account_upn")?;
    let start = oauth.authorization_request(Some(&upn));
    let query = consent(
        sandbox.base_url(),
        start.url.as_str(),
        &upn,
        &field("service_account_password")?,
    )
    .await?;
    let callback = parse_callback(&query, &start.state)?;
    let credentials = oauth
        .exchange_code(&callback.code, start.pkce.verifier())
        .await?;
    println!(
        "connected as {upn} (granted {} scopes)",
        credentials.scopes.len()
    );
    let conn = Arc::new(MsTeamsConnection::from_credentials(
        config,
        credentials,
        None,
    )?);

    // 3. The service account's roles and scopes.
    let report = conn.verify(VerifyOptions::default()).await?;
    println!("\naccess check ({}):", report.health());
    for c in &report.checks {
        println!("  [{}] {}", if c.ok { "ok" } else { "!!" }, c.name);
        if let Some(fix) = &c.fix {
            println!("       fix: {fix}");
        }
    }

    // 4. Teams, then channels and members of all of them, then users.
    let listing = conn.list_teams().await?;
    println!(
        "\n{} teams ({:?} list)",
        listing.teams.len(),
        listing.source
    );
    let ids: Vec<TeamId> = listing.teams.iter().map(|t| t.id.clone()).collect();
    let mut summary = Summary::default();
    let team_counts = conn.import_teams(&ids, &mut summary).await?;
    let user_counts = conn.import_users(&mut summary).await?;

    // 5. The service account must be in every imported team.
    let memberships = conn.ensure_memberships(&ids).await;

    for team in &listing.teams {
        let channels = summary
            .channels
            .get(team.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let kind = |k: ChannelKind| channels.iter().filter(|c| c.kind == k).count();
        let membership = memberships
            .iter()
            .find(|(t, _)| *t == team.id)
            .map(|(_, r)| match r {
                Ok(MembershipOutcome::AlreadyMember) => "member".to_owned(),
                Ok(MembershipOutcome::Added) => "added now".to_owned(),
                Ok(MembershipOutcome::ActionRequired { fix }) => format!("action required: {fix}"),
                Err(e) => format!("error: {e}"),
            })
            .unwrap_or_default();
        println!(
            "  {:<24} {} channels ({} standard, {} private, {} shared), {} members; service account: {}",
            team.name,
            channels.len(),
            kind(ChannelKind::Standard),
            kind(ChannelKind::Private),
            kind(ChannelKind::Shared),
            summary.members.get(team.id.as_str()).copied().unwrap_or(0),
            membership
        );
    }
    let guests = summary.users.iter().filter(|u| u.is_guest).count();
    let disabled = summary.users.iter().filter(|u| u.is_deleted).count();
    println!(
        "\nimported {} channels, {} memberships, {} users ({guests} guests, {disabled} disabled)",
        team_counts.channels, team_counts.members, user_counts.users
    );
    let stats = conn.graph().pacer().stats();
    println!(
        "Graph calls paced: {} Teams calls, {} directory calls, {} throttled",
        stats
            .per_bucket
            .get(&switchboard_msteams::pacer::Bucket::TeamsAny)
            .copied()
            .unwrap_or(0),
        stats
            .per_bucket
            .get(&switchboard_msteams::pacer::Bucket::Directory)
            .copied()
            .unwrap_or(0),
        stats.throttled
    );
    sandbox.shutdown().await;
    Ok(())
}
