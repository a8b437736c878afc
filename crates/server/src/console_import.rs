//! The console's import pages: the teams (Teams) or the workspace (Slack) of a connection
//! with checkboxes, a CSRF-protected form that starts an import job, and a progress page
//! that updates live (a few lines of JavaScript polling a JSON route; without JavaScript a
//! reload shows the same) and, once done, lists the channels and users imported.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, context};
use serde::Serialize;
use switchboard_core::{
    Actor, Connection, ConnectionId, ErrorKind, OrgId, PlatformKind, StoredChannel, TeamId,
};

use crate::AppState;
use crate::api_import::{TeamList, parse_selection, teams_of};
use crate::error::AppError;
use crate::jobs::{ImportJobView, ImportRequest, is_job_id};
use crate::session::{COOKIE, Session};

/// At most this many channels and users are listed on the result page.
pub const SHOWN: usize = 200;

/// Adds this module's templates to the console's.
pub fn add_templates(env: &mut Environment<'static>) {
    for (name, src) in [
        ("teams.html", include_str!("../templates/teams.html")),
        ("import.html", include_str!("../templates/import.html")),
    ] {
        env.add_template(name, src)
            .unwrap_or_else(|e| panic!("template {name}: {e}"));
    }
}

fn render(state: &AppState, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    match state
        .templates
        .get_template(name)
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, id)| state.sessions.get(id))
}

fn message(
    state: &AppState,
    status: StatusCode,
    session: &Session,
    heading: &str,
    error: String,
    paragraphs: Vec<String>,
    next: Option<(String, &str)>,
) -> Response {
    let (next_href, next_label) = next.unzip();
    render(
        state,
        status,
        "message.html",
        context! {
            title => heading, heading, error, paragraphs, next_href, next_label,
            signed_in => true, csrf => session.csrf.clone(), section => "connect",
        },
    )
}

fn platform_name(p: PlatformKind) -> &'static str {
    match p {
        PlatformKind::Msteams => "Microsoft Teams",
        PlatformKind::Slack => "Slack",
        _ => "this platform",
    }
}

/// The connection of the path, when it is the session's organization's and of that
/// platform; else the page to answer.
async fn connection_for(
    state: &AppState,
    session: &Session,
    platform: &str,
    connection: &str,
) -> Result<Connection, Response> {
    let not_found = |state: &AppState| {
        message(
            state,
            StatusCode::NOT_FOUND,
            session,
            "No such connection",
            "This connection does not exist in your organization (it may have been removed)."
                .into(),
            vec![],
            None,
        )
    };
    let (Ok(kind), Ok(id)) = (
        platform.parse::<PlatformKind>(),
        ConnectionId::new(connection),
    ) else {
        return Err(not_found(state));
    };
    match state
        .store
        .get_connection(&session.principal.org, &id)
        .await
    {
        Ok(Some(c)) if c.platform == kind => Ok(c),
        Ok(_) => Err(not_found(state)),
        Err(e) => {
            tracing::error!(error = %e, "reading a connection failed");
            Err(message(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                session,
                "Import",
                "The database could not be reached. Try again in a moment.".into(),
                vec![],
                None,
            ))
        }
    }
}

async fn teams_response(
    state: &AppState,
    session: &Session,
    connection: &Connection,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let list: TeamList = match teams_of(
        state.store.as_ref(),
        &state.pool(),
        &session.principal.org,
        connection,
    )
    .await
    {
        Ok(l) => l,
        Err(e) => {
            let (status, words) = match e.kind() {
                ErrorKind::NeedsReauth => (
                    StatusCode::CONFLICT,
                    format!(
                        "The sign-in of {} is no longer valid. Connect {} again, then choose what to import.",
                        connection.display_name,
                        platform_name(connection.platform)
                    ),
                ),
                ErrorKind::Unsupported => (
                    StatusCode::NOT_IMPLEMENTED,
                    format!(
                        "{} is not configured on this server: add its app registration to switchboard.toml.",
                        platform_name(connection.platform)
                    ),
                ),
                ErrorKind::Forbidden | ErrorKind::Unauthorized => (
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "{} refused to list the teams of {}: check the service account's roles and permissions ({e}).",
                        platform_name(connection.platform),
                        connection.account.display_name
                    ),
                ),
                _ => {
                    tracing::warn!(connection = %connection.id, error = %e, "listing teams failed");
                    (
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "{} did not answer as expected while listing the teams. Try again in a moment.",
                            platform_name(connection.platform)
                        ),
                    )
                }
            };
            return message(
                state,
                status,
                session,
                "Teams could not be listed",
                words,
                vec![],
                None,
            );
        }
    };
    let slack = connection.platform == PlatformKind::Slack;
    let joined_only = list.source == "joined";
    render(
        state,
        status,
        "teams.html",
        context! {
            title => if slack { "Import the workspace" } else { "Choose teams to import" },
            section => "connect", signed_in => true, csrf => session.csrf.clone(),
            platform => connection.platform.to_string(),
            platform_name => platform_name(connection.platform),
            connection => connection.id.to_string(),
            connection_name => connection.display_name.clone(),
            account => connection.account.display_name.clone(),
            slack, joined_only, error,
            teams => list.teams,
        },
    )
}

/// `GET /connect/{platform}/{connection}/teams`: the teams (or the workspace) with
/// checkboxes.
pub async fn teams_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((platform, connection)): Path<(String, String)>,
) -> Response {
    let Some(session) = session_of(&state, &headers) else {
        return Redirect::to("/signin").into_response();
    };
    let connection = match connection_for(&state, &session, &platform, &connection).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    teams_response(&state, &session, &connection, StatusCode::OK, None).await
}

/// `POST /connect/{platform}/{connection}/teams`: `csrf`, then `team=<id>` for each
/// selected team (or `all=1`); starts an import job and redirects to its progress page.
pub async fn start_import(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((platform, connection)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(session) = session_of(&state, &headers) else {
        return Redirect::to("/signin").into_response();
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if !session.csrf_ok(csrf) {
        return message(
            &state,
            StatusCode::FORBIDDEN,
            &session,
            "Form expired",
            "This form is out of date. Reload the page and try again.".into(),
            vec![],
            None,
        );
    }
    let connection = match connection_for(&state, &session, &platform, &connection).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let teams: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "team")
        .map(|(_, v)| v.clone())
        .collect();
    let all = fields.iter().any(|(k, v)| k == "all" && v == "1");
    let selection = if teams.is_empty() && !all {
        Err("Choose at least one team to import.".to_owned())
    } else {
        parse_selection((!all).then_some(teams.as_slice()), all)
    };
    let teams = match selection {
        Ok(t) => t,
        Err(words) => {
            return teams_response(
                &state,
                &session,
                &connection,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(words),
            )
            .await;
        }
    };
    let started = state
        .jobs
        .start(
            state.store.clone(),
            state.pool(),
            ImportRequest {
                org: session.principal.org.clone(),
                connection: connection.id.clone(),
                teams,
                actor: Actor::Admin {
                    name: session.principal.name.clone(),
                },
            },
        )
        .await;
    match started {
        Ok(job) => Redirect::to(&format!(
            "/connect/{}/{}/import/{job}",
            connection.platform, connection.id
        ))
        .into_response(),
        Err(e) if e.kind() == ErrorKind::Conflict => {
            teams_response(
                &state,
                &session,
                &connection,
                StatusCode::CONFLICT,
                Some(e.message().to_owned()),
            )
            .await
        }
        Err(e) => {
            tracing::warn!(error = %e, "starting an import failed");
            let status = AppError::from(e).status();
            message(
                &state,
                status,
                &session,
                "The import could not start",
                "Nothing was imported. Try again in a moment.".into(),
                vec![],
                Some((
                    format!("/connect/{}/{}/teams", connection.platform, connection.id),
                    "Back to the team list",
                )),
            )
        }
    }
}

#[derive(Debug, Serialize)]
struct ChannelRow {
    team: String,
    name: String,
    kind: &'static str,
    reference: String,
}

#[derive(Debug, Serialize)]
struct UserRow {
    name: String,
    email: Option<String>,
    guest: bool,
    bot: bool,
    deactivated: bool,
}

/// The channels of `connection` in `teams` (all when `None`), at most [`SHOWN`] of them,
/// with the number found.
async fn imported_channels(
    state: &AppState,
    org: &OrgId,
    connection: &ConnectionId,
    teams: Option<&[TeamId]>,
) -> switchboard_core::Result<(Vec<ChannelRow>, usize)> {
    let names: HashMap<TeamId, String> = state
        .store
        .list_teams(org, connection)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let mut rows = Vec::new();
    let mut total = 0;
    let mut after = None;
    loop {
        let page: Vec<StoredChannel> = state
            .store
            .list_channels(
                org,
                Some(connection),
                after.as_ref(),
                switchboard_core::MAX_PAGE_SIZE,
            )
            .await?;
        let last = page.len() < switchboard_core::MAX_PAGE_SIZE;
        after = page.last().map(|c| c.reference.clone());
        for c in page {
            if c.removed || teams.is_some_and(|t| !t.contains(&c.channel.team)) {
                continue;
            }
            total += 1;
            if rows.len() < SHOWN {
                rows.push(ChannelRow {
                    team: names
                        .get(&c.channel.team)
                        .cloned()
                        .unwrap_or_else(|| c.channel.team.to_string()),
                    name: c.channel.name,
                    kind: c.channel.kind.as_str(),
                    reference: c.reference.to_string(),
                });
            }
        }
        if last {
            break;
        }
    }
    Ok((rows, total))
}

/// `GET /connect/{platform}/{connection}/import/{job}`: live progress, then the result.
pub async fn import_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((platform, connection, job)): Path<(String, String, String)>,
) -> Response {
    let Some(session) = session_of(&state, &headers) else {
        return Redirect::to("/signin").into_response();
    };
    let connection = match connection_for(&state, &session, &platform, &connection).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let org = session.principal.org.clone();
    let teams_href = format!("/connect/{}/{}/teams", connection.platform, connection.id);
    let view = is_job_id(&job)
        .then(|| state.jobs.get(&org, &job))
        .flatten()
        .filter(|v| v.connection == connection.id.as_str());
    let Some(view) = view else {
        return message(
            &state,
            StatusCode::NOT_FOUND,
            &session,
            "No such import",
            "This import is not known: the server may have restarted since it ran (what it imported is kept).".into(),
            vec![],
            Some((teams_href, "Back to the team list")),
        );
    };
    let mut channels = Vec::new();
    let mut channels_total = 0;
    let mut users = Vec::new();
    if view.done && view.error.is_none() {
        let teams = state.jobs.teams_of(&org, &job).flatten();
        match imported_channels(&state, &org, &connection.id, teams.as_deref()).await {
            Ok((rows, total)) => {
                channels = rows;
                channels_total = total;
            }
            Err(e) => tracing::error!(error = %e, "listing imported channels failed"),
        }
        match state
            .store
            .list_users(&org, Some(&connection.id), None, SHOWN)
            .await
        {
            Ok(list) => {
                users = list
                    .into_iter()
                    .filter(|u| !u.removed)
                    .map(|u| UserRow {
                        name: u.user.display_name,
                        email: u.user.email,
                        guest: u.user.is_guest,
                        bot: u.user.is_bot,
                        deactivated: u.user.is_deleted,
                    })
                    .collect();
                users.sort_by_key(|u| u.name.to_lowercase());
            }
            Err(e) => tracing::error!(error = %e, "listing imported users failed"),
        }
    }
    let users_total = view.result.map_or(0, |r| r.users);
    let stage_text = view.progress.stage.describe();
    render(
        &state,
        StatusCode::OK,
        "import.html",
        context! {
            title => format!("Importing from {}", connection.display_name),
            section => "connect", signed_in => true, csrf => session.csrf.clone(),
            platform_name => platform_name(connection.platform),
            connection_name => connection.display_name.clone(),
            slack => connection.platform == PlatformKind::Slack,
            progress_url => format!("/connect/{}/{}/import/{job}/progress", connection.platform, connection.id),
            teams_href,
            job => view, stage_text,
            channels, channels_total, users, users_total, shown => SHOWN,
        },
    )
}

/// The progress route's answer: the job and its stage in words.
#[derive(Debug, Serialize)]
pub struct ProgressAnswer {
    /// The job.
    #[serde(flatten)]
    pub job: ImportJobView,
    /// Its stage, in words.
    pub stage_text: &'static str,
}

/// `GET /connect/{platform}/{connection}/import/{job}/progress`: the job as JSON, for the
/// progress page's script (console session, not a bearer token).
pub async fn import_progress(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((_platform, connection, job)): Path<(String, String, String)>,
) -> Result<Json<ProgressAnswer>, AppError> {
    let session = session_of(&state, &headers).ok_or_else(|| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in to the console again",
        )
    })?;
    let view = is_job_id(&job)
        .then(|| state.jobs.get(&session.principal.org, &job))
        .flatten()
        .filter(|v| v.connection == connection)
        .ok_or_else(|| AppError::not_found("import job"))?;
    let stage_text = view.progress.stage.describe();
    Ok(Json(ProgressAnswer {
        job: view,
        stage_text,
    }))
}

/// `GET /static/import.js`: the progress page's poller.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/import.js"),
    )
        .into_response()
}
