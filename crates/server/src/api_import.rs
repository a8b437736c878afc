//! The admin API's import side: the teams a connection's service account can see, import
//! jobs (start, progress, result) and the imported users. Same conventions as [`crate::api`]:
//! bearer token → one organization, another organization's ids answer 404 exactly like ids
//! that do not exist, errors are `{code, message}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchboard_core::{
    Actor, Connection, ConnectionId, OrgId, PlatformKind, Result as CoreResult, Store, StoredUser,
    TeamId, TeamListSource, UserId,
};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Admin;
use crate::error::{AppError, ErrorBody};
use crate::jobs::{ImportJobView, ImportRequest, is_job_id};
use crate::pool::ConnectionPool;

/// The most team ids one import job accepts.
pub const MAX_TEAMS_PER_JOB: usize = 5_000;

/// A team (Slack: the workspace) the service account can see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TeamView {
    /// The platform's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description, if any.
    pub description: Option<String>,
    /// Whether it has been imported.
    pub imported: bool,
}

/// The answer of `GET /api/v1/connections/{id}/teams`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamList {
    /// The connection.
    pub connection: String,
    /// `msteams` or `slack`.
    pub platform: String,
    /// `tenant_wide` (every team of the tenant; the Slack workspace) or `joined` (only the
    /// teams the account belongs to: the tenant-wide list was refused).
    pub source: String,
    /// The teams.
    pub teams: Vec<TeamView>,
}

/// The teams a connection's service account can see, each flagged `imported` when stored.
pub async fn teams_of(
    store: &dyn Store,
    pool: &ConnectionPool,
    org: &OrgId,
    connection: &Connection,
) -> CoreResult<TeamList> {
    use switchboard_relay::engine::Connections as _;
    let live = pool.get(org, &connection.id).await?;
    let listing = live.import.list_teams().await?;
    let stored = store.list_teams(org, &connection.id).await?;
    let teams = listing
        .teams
        .into_iter()
        .map(|t| TeamView {
            imported: stored.iter().any(|s| s.id == t.id),
            id: t.id.to_string(),
            name: t.name,
            description: t.description,
        })
        .collect();
    Ok(TeamList {
        connection: connection.id.to_string(),
        platform: connection.platform.to_string(),
        source: match listing.source {
            TeamListSource::TenantWide => "tenant_wide",
            TeamListSource::Joined => "joined",
        }
        .to_owned(),
        teams,
    })
}

async fn connection_of(store: &dyn Store, org: &OrgId, id: &str) -> Result<Connection, AppError> {
    let id = ConnectionId::new(id).map_err(|_| AppError::not_found("connection"))?;
    store
        .get_connection(org, &id)
        .await?
        .ok_or_else(|| AppError::not_found("connection"))
}

/// Teams (Teams) or the workspace (Slack) the connection's service account can see.
#[utoipa::path(get, path = "/api/v1/connections/{id}/teams", params(("id" = String, Path)),
    responses(
        (status = 200, body = TeamList),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the connection must be connected again"),
        (status = 502, body = ErrorBody, description = "the platform did not answer")
    ), security(("bearer" = [])))]
pub async fn list_connection_teams(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<TeamList>, AppError> {
    let connection = connection_of(state.store.as_ref(), &admin.org, &id).await?;
    Ok(Json(
        teams_of(state.store.as_ref(), &state.pool(), &admin.org, &connection).await?,
    ))
}

/// The body of `POST /api/v1/import-jobs`: `teams` or `all`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartImport {
    /// The connection to import through.
    pub connection: String,
    /// The teams (Slack: the workspace id) to import.
    #[serde(default)]
    pub teams: Option<Vec<String>>,
    /// Import every team the service account can see.
    #[serde(default)]
    pub all: bool,
}

/// The answer to starting a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobStarted {
    /// The job's id: poll `GET /api/v1/import-jobs/{id}`.
    pub id: String,
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
}

/// Validates the team selection: `Some(ids)`, or `None` for all.
pub fn parse_selection(teams: Option<&[String]>, all: bool) -> Result<Option<Vec<TeamId>>, String> {
    match (teams, all) {
        (Some(_), true) => Err("give either `teams` or `all: true`, not both".into()),
        (None, false) => Err("give the `teams` to import, or `all: true`".into()),
        (None, true) => Ok(None),
        (Some([]), false) => Err("`teams` is empty: choose at least one team".into()),
        (Some(ids), false) if ids.len() > MAX_TEAMS_PER_JOB => Err(format!(
            "at most {MAX_TEAMS_PER_JOB} teams per import (use `all: true` for everything)"
        )),
        (Some(ids), false) => {
            let mut out: Vec<TeamId> = Vec::with_capacity(ids.len());
            for id in ids {
                let t = TeamId::new(id.as_str())
                    .map_err(|e| format!("{id:?} is not a team id: {e}"))?;
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            Ok(Some(out))
        }
    }
}

/// Starts importing teams of a connection in the background.
#[utoipa::path(post, path = "/api/v1/import-jobs", request_body = StartImport,
    responses(
        (status = 202, body = JobStarted),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such connection"),
        (status = 409, body = ErrorBody, description = "an import of this connection is running"),
        (status = 422, body = ErrorBody, description = "no or a bad team selection"),
        (status = 501, body = ErrorBody, description = "the platform is not configured")
    ), security(("bearer" = [])))]
pub async fn start_import_job(
    State(state): State<AppState>,
    Admin(admin): Admin,
    body: Bytes,
) -> Result<(StatusCode, Json<JobStarted>), AppError> {
    let body: StartImport = serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            AppError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not JSON: {e}"),
            )
        } else {
            invalid(format!("the body does not match: {e}"))
        }
    })?;
    let teams = parse_selection(body.teams.as_deref(), body.all).map_err(invalid)?;
    let connection = connection_of(state.store.as_ref(), &admin.org, &body.connection).await?;
    let id = state
        .jobs
        .start(
            state.store.clone(),
            state.pool(),
            ImportRequest {
                org: admin.org.clone(),
                connection: connection.id,
                teams,
                actor: Actor::Admin { name: admin.name },
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(JobStarted { id })))
}

/// An import job's progress and, once done, its result or its error in words.
#[utoipa::path(get, path = "/api/v1/import-jobs/{id}", params(("id" = String, Path)),
    responses(
        (status = 200, body = ImportJobView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such job (jobs are forgotten at a restart)")
    ), security(("bearer" = [])))]
pub async fn get_import_job(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<ImportJobView>, AppError> {
    if !is_job_id(&id) {
        return Err(AppError::not_found("import job"));
    }
    state
        .jobs
        .get(&admin.org, &id)
        .map(Json)
        .ok_or_else(|| AppError::not_found("import job"))
}

/// An imported user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// `msteams` or `slack`.
    pub platform: String,
    /// The platform's id.
    pub id: String,
    /// The connection it was imported through.
    pub connection: String,
    /// The name people see.
    pub display_name: String,
    /// Email, when the platform shares it.
    pub email: Option<String>,
    /// A guest or external account.
    pub is_guest: bool,
    /// A bot or app.
    pub is_bot: bool,
    /// Deactivated upstream.
    pub is_deleted: bool,
    /// Gone since the last import.
    pub removed: bool,
}

impl From<StoredUser> for UserView {
    fn from(u: StoredUser) -> Self {
        UserView {
            platform: u.platform.to_string(),
            id: u.user.id.to_string(),
            connection: u.connection.to_string(),
            display_name: u.user.display_name,
            email: u.user.email,
            is_guest: u.user.is_guest,
            is_bot: u.user.is_bot,
            is_deleted: u.user.is_deleted,
            removed: u.removed,
        }
    }
}

/// One page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// The users, ordered by platform and id.
    pub users: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// Paging and filtering of `GET /api/v1/users`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UserQuery {
    /// Only this platform's users (`msteams` or `slack`).
    pub platform: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
}

/// A page cursor: `<platform>:<user id>`.
pub fn parse_cursor(s: &str) -> Option<(PlatformKind, UserId)> {
    let (p, u) = s.split_once(':')?;
    Some((p.parse().ok()?, UserId::new(u).ok()?))
}

/// One page of the organization's imported users, optionally of one platform, after the
/// cursor `after`; with the cursor of the next page when there is one.
pub async fn users_page(
    store: &dyn Store,
    org: &OrgId,
    platform: Option<PlatformKind>,
    after: Option<&(PlatformKind, UserId)>,
    limit: usize,
) -> CoreResult<(Vec<StoredUser>, Option<String>)> {
    let limit = limit.clamp(1, switchboard_core::MAX_PAGE_SIZE);
    let after_ref = after.map(|(p, u)| (*p, u));
    let mut users = match platform {
        None => store.list_users(org, None, after_ref, limit).await?,
        Some(p) => {
            // Users are ordered by (platform, id) and belong to one connection: merge the
            // pages of the platform's connections.
            if after.is_some_and(|(ap, _)| *ap != p) {
                return Err(switchboard_core::Error::invalid(
                    "`after` is a cursor of another platform",
                ));
            }
            let mut merged = Vec::new();
            for c in store
                .list_connections(org)
                .await?
                .into_iter()
                .filter(|c| c.platform == p)
            {
                merged.extend(store.list_users(org, Some(&c.id), after_ref, limit).await?);
            }
            merged.retain(|u| u.platform == p);
            merged.sort_by(|a, b| a.user.id.as_str().cmp(b.user.id.as_str()));
            merged
        }
    };
    let more = users.len() >= limit;
    users.truncate(limit);
    let next = more
        .then(|| {
            users
                .last()
                .map(|u| format!("{}:{}", u.platform, u.user.id))
        })
        .flatten();
    Ok((users, next))
}

/// Imported users, paged, optionally of one platform.
#[utoipa::path(get, path = "/api/v1/users", params(UserQuery), responses(
    (status = 200, body = UserPage),
    (status = 401, body = ErrorBody),
    (status = 422, body = ErrorBody, description = "an unknown platform or a bad cursor")
), security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Query(q): Query<UserQuery>,
) -> Result<Json<UserPage>, AppError> {
    let platform =
        match q.platform.as_deref().filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(p.parse::<PlatformKind>().map_err(|_| {
                invalid(format!("{p:?} is not a platform: use `msteams` or `slack`"))
            })?),
        };
    let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(parse_cursor(a).ok_or_else(|| {
            invalid(format!(
                "{a:?} is not a cursor: pass the `next` of the previous page"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > switchboard_core::MAX_PAGE_SIZE {
        return Err(invalid(format!(
            "`limit` must be between 1 and {}",
            switchboard_core::MAX_PAGE_SIZE
        )));
    }
    let (users, next) = users_page(
        state.store.as_ref(),
        &admin.org,
        platform,
        after.as_ref(),
        limit,
    )
    .await?;
    Ok(Json(UserPage {
        users: users.into_iter().map(UserView::from).collect(),
        next,
    }))
}
