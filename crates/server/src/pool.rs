//! Live connections and imports: the server's side of the relay's [`Connections`] and the
//! store's [`ImportSink`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use switchboard_core::{
    Actor, Channel, Connected, Connection, ConnectionId, Connector, Error, ErrorKind, ImportCounts,
    ImportRun, ImportSink, Membership, NewAuditEntry, OrgId, PlatformKind, Result, Store, Team,
    TeamId, User,
};
use switchboard_relay::engine::Connections;

use crate::console::StoreCredentials;

/// Opens connections through their platform's [`Connector`] with the stored credentials,
/// once, and keeps them (rotations go back to the store).
pub struct ConnectionPool {
    store: Arc<dyn Store>,
    connectors: Vec<Arc<dyn Connector>>,
    open: Mutex<HashMap<(OrgId, ConnectionId), Connected>>,
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
        if let Some(c) = self.open.lock().get(&(org.clone(), connection.clone())) {
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
        self.open
            .lock()
            .insert((org.clone(), connection.clone()), live.clone());
        Ok(live)
    }
}

/// Writes an import page by page into the store.
pub struct StoreImportSink {
    store: Arc<dyn Store>,
    org: OrgId,
    connection: ConnectionId,
    run: ImportRun,
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

#[async_trait]
impl ImportSink for StoreImportSink {
    async fn channels(&mut self, _team: &TeamId, page: Vec<Channel>) -> Result<()> {
        self.counts.channels += page.len() as u64;
        self.store
            .upsert_channels(&self.org, &self.connection, self.run, &page)
            .await
    }
    async fn members(&mut self, _team: &TeamId, page: Vec<Membership>) -> Result<()> {
        self.counts.members += page.len() as u64;
        self.store
            .upsert_memberships(&self.org, &self.connection, self.run, &page)
            .await
    }
    async fn users(&mut self, page: Vec<User>) -> Result<()> {
        self.counts.users += page.len() as u64;
        self.store
            .upsert_users(&self.org, &self.connection, self.run, &page)
            .await
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
    let live = pool.get(org, connection).await?;
    let listing = live.import.list_teams().await?;
    let chosen: Vec<Team> = match teams {
        Some(ids) => listing
            .teams
            .into_iter()
            .filter(|t| ids.contains(&t.id))
            .collect(),
        None => listing.teams,
    };
    let run = store.begin_import(org, connection).await?;
    store.upsert_teams(org, connection, run, &chosen).await?;
    let mut sink = StoreImportSink {
        store: store.clone(),
        org: org.clone(),
        connection: connection.clone(),
        run,
        counts: ImportCounts::default(),
    };
    let stored = pool.connection(org, connection).await?;
    for team in &chosen {
        live.import.import_team(&team.id, &mut sink).await?;
        store
            .finish_team_import(org, connection, run, &team.id)
            .await?;
    }
    if stored.platform == PlatformKind::Msteams {
        // The service account administers what it imports: make it a member of each team
        // (Teams membership is per team; any channel of the team addresses it).
        let channels = store
            .list_channels(org, Some(connection), None, switchboard_core::MAX_PAGE_SIZE)
            .await?;
        for team in &chosen {
            let Some(c) = channels.iter().find(|c| c.channel.team == team.id) else {
                continue;
            };
            match live.account.ensure_membership(&c.reference).await {
                Ok(outcome) => {
                    tracing::info!(team = %team.id, ?outcome, "service account membership")
                }
                Err(e) => {
                    tracing::warn!(team = %team.id, error = %e, "could not add the service account to the team")
                }
            }
        }
    }
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
    Ok(sink.counts)
}
