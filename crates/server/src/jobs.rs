//! Import jobs: an import started from the admin API or the console runs in a background
//! task; its progress and its result (or its error in words) stay readable by the
//! organization that started it.
//!
//! Jobs live in memory: a restart forgets them (what they stored stays stored; an unfinished
//! run is simply started again). One import runs per connection at a time, and the registry
//! keeps the last [`KEEP_FINISHED`] finished jobs.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use switchboard_core::{
    Actor, ConnectionId, Error, ErrorKind, ImportCounts, NewAuditEntry, OrgId, PlatformKind,
    Result, Store, TeamId,
};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::pool::{ConnectionPool, ImportProgress, import_with_progress};

/// How many finished jobs are remembered (the oldest are forgotten first).
pub const KEEP_FINISHED: usize = 200;

/// How a job ended.
#[derive(Debug, Clone)]
enum Outcome {
    Running,
    Succeeded(ImportCounts),
    Failed(String),
}

#[derive(Debug)]
struct Job {
    org: OrgId,
    connection: ConnectionId,
    platform: PlatformKind,
    teams: Option<Vec<TeamId>>,
    progress: watch::Receiver<ImportProgress>,
    outcome: Arc<Mutex<Outcome>>,
    started_at: OffsetDateTime,
    finished_at: Arc<Mutex<Option<OffsetDateTime>>>,
    seq: u64,
}

/// What a reader sees of a job.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportJobView {
    /// The job's id.
    pub id: String,
    /// The connection imported.
    pub connection: String,
    /// `msteams` or `slack`.
    pub platform: String,
    /// The teams asked for; absent when everything was.
    pub teams: Option<Vec<String>>,
    /// The latest progress.
    pub progress: ImportProgress,
    /// Whether it has finished (successfully or not).
    pub done: bool,
    /// Why it failed, in words.
    pub error: Option<String>,
    /// What was stored, once it succeeded.
    pub result: Option<ImportResult>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished (RFC 3339).
    pub finished_at: Option<String>,
}

/// What a finished import stored.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    /// Channels.
    pub channels: u64,
    /// Team memberships.
    pub members: u64,
    /// Users.
    pub users: u64,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The import jobs of one server.
#[derive(Debug, Default)]
pub struct ImportJobs {
    jobs: Mutex<HashMap<String, Job>>,
    seq: Mutex<u64>,
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The organization.
    pub org: OrgId,
    /// Its connection.
    pub connection: ConnectionId,
    /// The teams, or `None` for all the service account can see.
    pub teams: Option<Vec<TeamId>>,
    /// Who asked (audited).
    pub actor: Actor,
}

impl ImportJobs {
    /// Starts importing in a background task and returns the job's id at once. The start is
    /// audited (`import.started`), and so is a failure (`import.failed`; a success is audited
    /// by the import itself). `NotFound` for a connection of another organization or none,
    /// `Unsupported` when its platform is not configured, `Conflict` while another import of
    /// the same connection runs.
    pub async fn start(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        pool: Arc<ConnectionPool>,
        request: ImportRequest,
    ) -> Result<String> {
        let connection = pool.connection(&request.org, &request.connection).await?;
        if !pool.supports(connection.platform) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{} is not configured on this server", connection.platform),
            ));
        }
        if let Some(teams) = &request.teams
            && teams.is_empty()
        {
            return Err(Error::invalid("choose at least one team to import"));
        }
        let id = uuid_like();
        let (tx, rx) = watch::channel(ImportProgress::default());
        let outcome = Arc::new(Mutex::new(Outcome::Running));
        let finished_at = Arc::new(Mutex::new(None));
        {
            let mut jobs = self.jobs.lock();
            if let Some((running, _)) = jobs.iter().find(|(_, j)| {
                j.org == request.org
                    && j.connection == request.connection
                    && matches!(*j.outcome.lock(), Outcome::Running)
            }) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "an import of {} is already running (job {running}); wait for it to finish",
                        connection.display_name
                    ),
                ));
            }
            let seq = {
                let mut s = self.seq.lock();
                *s += 1;
                *s
            };
            jobs.insert(
                id.clone(),
                Job {
                    org: request.org.clone(),
                    connection: request.connection.clone(),
                    platform: connection.platform,
                    teams: request.teams.clone(),
                    progress: rx,
                    outcome: outcome.clone(),
                    started_at: OffsetDateTime::now_utc(),
                    finished_at: finished_at.clone(),
                    seq,
                },
            );
            Self::evict(&mut jobs);
        }
        let details = serde_json::json!({
            "job": id,
            "teams": request.teams.as_ref().map(|t| t.iter().map(|t| t.to_string()).collect::<Vec<_>>()),
            "all": request.teams.is_none(),
        });
        if let Err(e) = store
            .append_audit(
                &request.org,
                NewAuditEntry {
                    actor: request.actor.clone(),
                    action: "import.started".into(),
                    target: request.connection.to_string(),
                    details,
                },
            )
            .await
        {
            self.jobs.lock().remove(&id);
            return Err(e);
        }
        let job = id.clone();
        tokio::spawn(async move {
            let result = import_with_progress(
                &store,
                &pool,
                &request.org,
                &request.connection,
                request.teams.as_deref(),
                request.actor.clone(),
                &tx,
            )
            .await;
            let ended = match result {
                Ok(counts) => Outcome::Succeeded(counts),
                Err(e) => {
                    tracing::warn!(job = %job, connection = %request.connection, error = %e, "import failed");
                    let words = failure_words(&e);
                    let audited = store
                        .append_audit(
                            &request.org,
                            NewAuditEntry {
                                actor: request.actor,
                                action: "import.failed".into(),
                                target: request.connection.to_string(),
                                details: serde_json::json!({
                                    "job": job,
                                    "error": words,
                                    "stage": tx.borrow().stage,
                                }),
                            },
                        )
                        .await;
                    if let Err(a) = audited {
                        tracing::error!(error = %a, "auditing a failed import failed");
                    }
                    Outcome::Failed(words)
                }
            };
            *finished_at.lock() = Some(OffsetDateTime::now_utc());
            *outcome.lock() = ended;
        });
        Ok(id)
    }

    /// Forgets the oldest finished jobs beyond [`KEEP_FINISHED`].
    fn evict(jobs: &mut HashMap<String, Job>) {
        let mut finished: Vec<(u64, String)> = jobs
            .iter()
            .filter(|(_, j)| !matches!(*j.outcome.lock(), Outcome::Running))
            .map(|(id, j)| (j.seq, id.clone()))
            .collect();
        if finished.len() <= KEEP_FINISHED {
            return;
        }
        finished.sort();
        let excess = finished.len() - KEEP_FINISHED;
        for (_, id) in finished.into_iter().take(excess) {
            jobs.remove(&id);
        }
    }

    /// The running imports' progress, by platform (for `/metrics`).
    pub fn running(&self) -> Vec<(PlatformKind, ImportProgress)> {
        self.jobs
            .lock()
            .values()
            .filter(|j| matches!(*j.outcome.lock(), Outcome::Running))
            .map(|j| (j.platform, j.progress.borrow().clone()))
            .collect()
    }

    /// The job `id` of `org`; `None` when unknown or another organization's.
    pub fn get(&self, org: &OrgId, id: &str) -> Option<ImportJobView> {
        let jobs = self.jobs.lock();
        let j = jobs.get(id).filter(|j| j.org == *org)?;
        let progress = j.progress.borrow().clone();
        let outcome = j.outcome.lock().clone();
        let (done, error, result) = match outcome {
            Outcome::Running => (false, None, None),
            Outcome::Succeeded(c) => (
                true,
                None,
                Some(ImportResult {
                    channels: c.channels,
                    members: c.members,
                    users: c.users,
                }),
            ),
            Outcome::Failed(e) => (true, Some(e), None),
        };
        Some(ImportJobView {
            id: id.to_owned(),
            connection: j.connection.to_string(),
            platform: j.platform.to_string(),
            teams: j
                .teams
                .as_ref()
                .map(|t| t.iter().map(|t| t.to_string()).collect()),
            progress,
            done,
            error,
            result,
            started_at: rfc3339(j.started_at),
            finished_at: j.finished_at.lock().map(rfc3339),
        })
    }

    /// The connection of job `id` of `org`.
    pub fn connection_of(&self, org: &OrgId, id: &str) -> Option<ConnectionId> {
        self.jobs
            .lock()
            .get(id)
            .filter(|j| j.org == *org)
            .map(|j| j.connection.clone())
    }

    /// The teams job `id` of `org` asked for (`Some(None)`: all of them).
    pub fn teams_of(&self, org: &OrgId, id: &str) -> Option<Option<Vec<TeamId>>> {
        self.jobs
            .lock()
            .get(id)
            .filter(|j| j.org == *org)
            .map(|j| j.teams.clone())
    }
}

/// An error for people: what failed and what to do, without internals.
fn failure_words(e: &Error) -> String {
    let m = e.message();
    match e.kind() {
        ErrorKind::NeedsReauth => {
            format!(
                "The connection's sign-in is no longer valid: connect the platform again ({m})."
            )
        }
        ErrorKind::Forbidden | ErrorKind::Unauthorized => format!(
            "The service account is not allowed to read this: check its roles and permissions ({m})."
        ),
        ErrorKind::RateLimited { .. } => {
            format!("The platform kept throttling the import; start it again later ({m}).")
        }
        ErrorKind::Storage => {
            "The database could not be written; start the import again shortly.".to_owned()
        }
        ErrorKind::InvalidInput | ErrorKind::NotFound | ErrorKind::Unsupported => m.to_owned(),
        // Upstream details are logged above, never shown (as in the API's errors).
        _ => "The platform did not answer as expected; start the import again shortly.".to_owned(),
    }
}

/// 128 random bits, hex: a job id nobody can guess.
fn uuid_like() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `id` looks like a job id (so a bad one answers 404 before any lookup).
pub fn is_job_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}
