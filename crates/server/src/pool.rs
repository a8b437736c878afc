//! Live connections and imports: the server's side of the relay's [`Connections`] and the
//! store's [`ImportSink`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use switchboard_core::{
    Actor, Channel, ChannelRef, Connected, Connection, ConnectionId, Connector, Error, ErrorKind,
    ImportCounts, ImportPhase, ImportRun, ImportSink, Membership, NewAuditEntry, OrgId,
    PlatformKind, Progress, Result, Store, Team, TeamId, User, UserId,
};
use switchboard_relay::engine::Connections;
use tokio::sync::watch;

use crate::console::StoreCredentials;

/// Opens connections through their platform's [`Connector`] with the stored credentials,
/// once, and keeps them (rotations go back to the store).
pub struct ConnectionPool {
    store: Arc<dyn Store>,
    connectors: Vec<Arc<dyn Connector>>,
    /// Each open connection, with the account it was opened as.
    open: Mutex<HashMap<(OrgId, ConnectionId), (Connected, UserId)>>,
}

impl std::fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("open", &self.open.lock().len())
            .finish()
    }
}

impl ConnectionPool {
    /// A pool over `store` opening connections with `connectors`.
    pub fn new(store: Arc<dyn Store>, connectors: Vec<Arc<dyn Connector>>) -> Self {
        ConnectionPool {
            store,
            connectors,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets an open connection (after a migration or reconnect, new credentials are read).
    pub fn forget(&self, org: &OrgId, connection: &ConnectionId) {
        self.open.lock().remove(&(org.clone(), connection.clone()));
    }

    /// Forgets every open connection whose stored account is no longer the one it was opened
    /// as (migrated by another process: `switchboard connections migrate` next to a running
    /// server, or another replica), or which is gone; the next use opens the stored
    /// credentials. Returns the connections forgotten.
    pub async fn forget_moved(&self) -> Result<Vec<(OrgId, ConnectionId)>> {
        let open: Vec<((OrgId, ConnectionId), UserId)> = self
            .open
            .lock()
            .iter()
            .map(|(k, (_, account))| (k.clone(), account.clone()))
            .collect();
        let mut moved = Vec::new();
        for ((org, id), account) in open {
            let now = self.store.get_connection(&org, &id).await?;
            if now.as_ref().map(|c| &c.account.user_id) != Some(&account) {
                tracing::info!(%org, connection = %id, "the connection's account changed in the store; reopening it");
                self.forget(&org, &id);
                moved.push((org, id));
            }
        }
        Ok(moved)
    }

    /// Whether this pool can open connections of `platform`.
    pub fn supports(&self, platform: PlatformKind) -> bool {
        self.connectors.iter().any(|c| c.platform() == platform)
    }

    fn connector(&self, platform: PlatformKind) -> Result<&Arc<dyn Connector>> {
        self.connectors
            .iter()
            .find(|c| c.platform() == platform)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!("{platform} is not configured on this server"),
                )
            })
    }

    /// Hands every linked end-user account of `org` on `platform` to the freshly opened
    /// `live` connection (their refreshed tokens go back to the store). A platform that posts
    /// only as its bot (`Unsupported`) takes none; a user whose credentials cannot be read is
    /// skipped with a warning (their copies fall back to the service account).
    async fn load_linked_users(&self, org: &OrgId, platform: PlatformKind, live: &Connected) {
        let accounts = match self.store.list_linked_accounts(org, Some(platform)).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%org, %platform, error = %e, "could not list linked user accounts; posting as the service account");
                return;
            }
        };
        for account in accounts {
            if let Err(e) = self
                .link_into(org, platform, &account.user, &live.platform)
                .await
            {
                if e.kind() == ErrorKind::Unsupported {
                    return;
                }
                tracing::warn!(%org, user = %account.user, error = %e, "could not load a linked user's account");
            }
        }
    }

    async fn link_into(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        live: &Arc<dyn switchboard_core::Platform>,
    ) -> Result<()> {
        let Some((_, credentials)) = self.store.get_linked_account(org, platform, user).await?
        else {
            live.unlink_user(user);
            return Ok(());
        };
        let sink = Arc::new(StoreUserCredentials {
            store: self.store.clone(),
            org: org.clone(),
            platform,
            user: user.clone(),
        });
        live.link_user(user.clone(), credentials, sink).await
    }

    /// Brings the open connections of `org` on `platform` up to date with the stored link of
    /// `user`: after a link they post as the user with the stored token, after an unlink they
    /// forget it. Connections opened later load the stored links themselves.
    pub async fn refresh_linked_user(&self, org: &OrgId, platform: PlatformKind, user: &UserId) {
        let open: Vec<Connected> = self
            .open
            .lock()
            .iter()
            .filter(|((o, _), (c, _))| o == org && c.platform.kind() == platform)
            .map(|(_, (c, _))| c.clone())
            .collect();
        for live in open {
            if let Err(e) = self.link_into(org, platform, user, &live.platform).await
                && e.kind() != ErrorKind::Unsupported
            {
                tracing::warn!(%org, %user, error = %e, "could not update a linked user's account on an open connection");
            }
        }
    }

    /// The stored connection.
    pub async fn connection(&self, org: &OrgId, id: &ConnectionId) -> Result<Connection> {
        self.store
            .get_connection(org, id)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no connection {id}")))
    }
}

#[async_trait]
impl Connections for ConnectionPool {
    async fn get(&self, org: &OrgId, connection: &ConnectionId) -> Result<Connected> {
        if let Some((c, _)) = self.open.lock().get(&(org.clone(), connection.clone())) {
            return Ok(c.clone());
        }
        let stored = self.connection(org, connection).await?;
        let credentials = self
            .store
            .get_credentials(org, connection)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NeedsReauth,
                    format!("connection {connection} has no credentials: connect it again"),
                )
            })?;
        let sink = Arc::new(StoreCredentials::new(
            self.store.clone(),
            org.clone(),
            connection.clone(),
        ));
        let live = self
            .connector(stored.platform)?
            .open(&stored, credentials, sink)
            .await?;
        self.load_linked_users(org, stored.platform, &live).await;
        self.open.lock().insert(
            (org.clone(), connection.clone()),
            (live.clone(), stored.account.user_id.clone()),
        );
        Ok(live)
    }
}

/// Stores the rotated credentials of one end user's linked account, sealed. Once the user
/// unlinked, a late refresh is not stored again (`NotFound`, logged by the adapter).
struct StoreUserCredentials {
    store: Arc<dyn Store>,
    org: OrgId,
    platform: PlatformKind,
    user: UserId,
}

#[async_trait]
impl switchboard_core::CredentialsSink for StoreUserCredentials {
    async fn persist(&self, credentials: &switchboard_core::Credentials) -> Result<()> {
        self.store
            .update_linked_credentials(&self.org, self.platform, &self.user, credentials)
            .await
    }
}

/// Which part of an import is running, for progress displays (ordered as they run).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ImportStage {
    /// Asking the platform which teams (Slack: the workspace) the account can see.
    #[default]
    ListingTeams,
    /// Channels and members, team by team.
    Teams,
    /// Adding the service account to each imported team (Teams).
    ServiceAccount,
    /// The tenant's or workspace's users.
    Users,
    /// Finished (successfully).
    Done,
}

impl ImportStage {
    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            ImportStage::ListingTeams => "Listing teams",
            ImportStage::Teams => "Importing channels and members",
            ImportStage::ServiceAccount => "Adding the service account to each team",
            ImportStage::Users => "Importing users",
            ImportStage::Done => "Done",
        }
    }
}

/// Where an import is, updated after every page.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct ImportProgress {
    /// The running stage.
    pub stage: ImportStage,
    /// Teams to import (known once listed).
    pub teams_total: u64,
    /// Teams whose channels and members are stored.
    pub teams_done: u64,
    /// The name of the team being imported, during [`ImportStage::Teams`].
    pub team: Option<String>,
    /// Teams the service account was added to or already belonged to.
    pub memberships_ensured: u64,
    /// Channels stored so far.
    pub channels: u64,
    /// Team memberships stored so far.
    pub members: u64,
    /// Users stored so far.
    pub users: u64,
    /// The platform's estimate of the users to come, when it gives one.
    pub users_estimated: Option<u64>,
}

impl ImportProgress {
    /// What was stored so far.
    pub fn counts(&self) -> ImportCounts {
        ImportCounts {
            channels: self.channels,
            members: self.members,
            users: self.users,
        }
    }
}

/// Writes an import page by page into the store.
pub struct StoreImportSink {
    store: Arc<dyn Store>,
    org: OrgId,
    connection: ConnectionId,
    platform: PlatformKind,
    run: ImportRun,
    progress: watch::Sender<ImportProgress>,
    /// One channel of each team seen (the service account's membership is per team, and any
    /// channel of the team addresses it).
    first_channel: HashMap<TeamId, ChannelRef>,
    /// The service account's user id, and the teams whose imported members include it.
    account: UserId,
    member_of: HashSet<TeamId>,
    /// What was written.
    pub counts: ImportCounts,
}

impl std::fmt::Debug for StoreImportSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreImportSink")
            .field("connection", &self.connection)
            .field("counts", &self.counts)
            .finish()
    }
}

impl StoreImportSink {
    fn publish(&self) {
        let counts = self.counts;
        self.progress.send_modify(|p| {
            p.channels = counts.channels;
            p.members = counts.members;
            p.users = counts.users;
        });
    }
}

#[async_trait]
impl ImportSink for StoreImportSink {
    async fn channels(&mut self, team: &TeamId, page: Vec<Channel>) -> Result<()> {
        if let Some(c) = page.first() {
            self.first_channel
                .entry(team.clone())
                .or_insert_with(|| ChannelRef::new(self.platform, c.team.clone(), c.id.clone()));
        }
        self.store
            .upsert_channels(&self.org, &self.connection, self.run, &page)
            .await?;
        self.counts.channels += page.len() as u64;
        self.publish();
        Ok(())
    }
    async fn members(&mut self, team: &TeamId, page: Vec<Membership>) -> Result<()> {
        if page.iter().any(|m| m.user == self.account) {
            self.member_of.insert(team.clone());
        }
        self.store
            .upsert_memberships(&self.org, &self.connection, self.run, &page)
            .await?;
        self.counts.members += page.len() as u64;
        self.publish();
        Ok(())
    }
    async fn users(&mut self, page: Vec<User>) -> Result<()> {
        self.store
            .upsert_users(&self.org, &self.connection, self.run, &page)
            .await?;
        self.counts.users += page.len() as u64;
        self.publish();
        Ok(())
    }
    async fn progress(&mut self, progress: Progress) -> Result<()> {
        if progress.phase == ImportPhase::Users
            && let Some(total) = progress.estimated_total
        {
            self.progress
                .send_modify(|p| p.users_estimated = Some(total));
        }
        Ok(())
    }
}

/// Imports `teams` (all the account can see when `None`) and the users of a connection:
/// the service account is added to each team first (Teams), channels and members are
/// stored, and the run is audited.
pub async fn import(
    store: &Arc<dyn Store>,
    pool: &ConnectionPool,
    org: &OrgId,
    connection: &ConnectionId,
    teams: Option<&[TeamId]>,
    actor: Actor,
) -> Result<ImportCounts> {
    let (progress, _) = watch::channel(ImportProgress::default());
    import_with_progress(store, pool, org, connection, teams, actor, &progress).await
}

/// [`import`], publishing its [`ImportProgress`] on `progress` after every page (the caller
/// keeps a receiver: a progress bar, an import job). Teams asked for that the account cannot
/// see are refused (`InvalidInput`) before anything is written. On Teams the service account
/// is added to each imported team whose imported members do not include it already (a
/// failure there is logged, not fatal).
pub async fn import_with_progress(
    store: &Arc<dyn Store>,
    pool: &ConnectionPool,
    org: &OrgId,
    connection: &ConnectionId,
    teams: Option<&[TeamId]>,
    actor: Actor,
    progress: &watch::Sender<ImportProgress>,
) -> Result<ImportCounts> {
    progress.send_replace(ImportProgress::default());
    let stored = pool.connection(org, connection).await?;
    let live = pool.get(org, connection).await?;
    let listing = live.import.list_teams().await?;
    let chosen: Vec<Team> = match teams {
        Some(ids) => {
            let unknown: Vec<&str> = ids
                .iter()
                .filter(|id| !listing.teams.iter().any(|t| t.id == **id))
                .map(|id| id.as_str())
                .collect();
            if !unknown.is_empty() {
                return Err(Error::invalid(format!(
                    "the service account of {} cannot see {}: {} (list them with `switchboard teams list`)",
                    stored.display_name,
                    if unknown.len() == 1 {
                        "this team"
                    } else {
                        "these teams"
                    },
                    unknown.join(", ")
                )));
            }
            listing
                .teams
                .into_iter()
                .filter(|t| ids.contains(&t.id))
                .collect()
        }
        None => listing.teams,
    };
    progress.send_modify(|p| {
        p.stage = ImportStage::Teams;
        p.teams_total = chosen.len() as u64;
    });
    let run = store.begin_import(org, connection).await?;
    store.upsert_teams(org, connection, run, &chosen).await?;
    let mut sink = StoreImportSink {
        store: store.clone(),
        org: org.clone(),
        connection: connection.clone(),
        platform: stored.platform,
        run,
        progress: progress.clone(),
        first_channel: HashMap::new(),
        account: stored.account.user_id.clone(),
        member_of: HashSet::new(),
        counts: ImportCounts::default(),
    };
    for team in &chosen {
        progress.send_modify(|p| p.team = Some(team.name.clone()));
        live.import.import_team(&team.id, &mut sink).await?;
        store
            .finish_team_import(org, connection, run, &team.id)
            .await?;
        progress.send_modify(|p| p.teams_done += 1);
    }
    progress.send_modify(|p| p.team = None);
    if stored.platform == PlatformKind::Msteams {
        // The service account administers what it imports: make it a member of each team
        // (Teams membership is per team; any channel of the team addresses it).
        // Teams whose imported members already include it cost no further call.
        progress.send_modify(|p| p.stage = ImportStage::ServiceAccount);
        for team in &chosen {
            if sink.member_of.contains(&team.id) {
                progress.send_modify(|p| p.memberships_ensured += 1);
                continue;
            }
            let Some(channel) = sink.first_channel.get(&team.id) else {
                continue;
            };
            match live.account.ensure_membership(channel).await {
                Ok(outcome) => {
                    tracing::info!(team = %team.id, ?outcome, "service account membership");
                    progress.send_modify(|p| p.memberships_ensured += 1);
                }
                Err(e) => {
                    tracing::warn!(team = %team.id, error = %e, "could not add the service account to the team")
                }
            }
        }
    }
    progress.send_modify(|p| p.stage = ImportStage::Users);
    live.import.import_users(&mut sink).await?;
    store.finish_user_import(org, connection, run).await?;
    store
        .append_audit(
            org,
            NewAuditEntry {
                actor,
                action: "import.completed".into(),
                target: connection.to_string(),
                details: serde_json::json!({
                    "teams": chosen.len(),
                    "channels": sink.counts.channels,
                    "members": sink.counts.members,
                    "users": sink.counts.users,
                }),
            },
        )
        .await?;
    progress.send_modify(|p| p.stage = ImportStage::Done);
    Ok(sink.counts)
}
