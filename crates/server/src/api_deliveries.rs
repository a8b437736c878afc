//! Deliveries in the admin API: dead letters (deliveries given up on) with a retry action,
//! messages posted per channel today against the platform's daily cap, and the relay's
//! gauges on `/metrics` (`switchboard_dead_letters`, `switchboard_channel_daily_messages`).
//! Conventions as in [`api`](crate::api): bearer token → one organization, another
//! organization's records answer 404, errors `{code, message}`.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchboard_core::{Actor, DeadLetter, DeliveryId, DeliveryJob, NewAuditEntry, OrgId, Store};
use switchboard_relay::limits::{DAILY_CAP_WARN_PERCENT, TargetLimits};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Admin;
use crate::error::{AppError, ErrorBody};

/// A delivery that was given up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// Its id (for the retry action).
    pub id: i64,
    /// The connection it was to go through.
    pub connection: String,
    /// The target channel (`msteams:<team>/<channel>`, `slack:<workspace>/<channel>`).
    pub target: String,
    /// The target channel's name, when it was imported.
    pub target_name: Option<String>,
    /// `post`, `edit`, `delete`, `react`, `notice`, or `unknown` (a row this version cannot
    /// read).
    pub kind: String,
    /// The start of the message, when the job carries text.
    pub summary: Option<String>,
    /// Who sent it, when known.
    pub sender: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When it was given up on (RFC 3339).
    pub failed_at: String,
}

/// Paging of dead letters, newest first.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeadLetterPage {
    /// Only dead letters older than this id (the last id of the previous page).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
}

/// The answer to a retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// The delivery, queued again.
    pub id: i64,
    /// Always `pending`.
    pub state: &'static str,
}

/// Messages posted into one channel today (UTC), against its platform's daily cap.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyMessagesView {
    /// The channel.
    pub channel: String,
    /// Messages posted today.
    pub posted: u64,
    /// The platform's cap per channel per day (Teams: 3,000), when it has one.
    pub cap: Option<u64>,
    /// `posted` as a percentage of `cap`.
    pub percent_of_cap: Option<u64>,
    /// At or past 90 % of the cap.
    pub near_cap: bool,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn summary(text: &str) -> String {
    let mut s: String = text.chars().take(140).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// What a dead letter was, in words: its kind, the start of its text, its sender.
pub fn describe(job: Option<&DeliveryJob>) -> (String, Option<String>, Option<String>) {
    match job {
        Some(DeliveryJob::Post { content, .. }) => (
            "post".into(),
            Some(summary(&content.text.to_plain_text())),
            Some(content.sender.display_name.clone()),
        ),
        Some(DeliveryJob::Edit { content, .. }) => (
            "edit".into(),
            Some(summary(&content.text.to_plain_text())),
            Some(content.sender.display_name.clone()),
        ),
        Some(DeliveryJob::Delete { .. }) => ("delete".into(), None, None),
        Some(DeliveryJob::React { emoji, change, .. }) => (
            "react".into(),
            Some(format!(
                "{} {}",
                match change {
                    switchboard_core::ReactionChange::Add => "add",
                    _ => "remove",
                },
                match emoji {
                    switchboard_core::Emoji::Unicode { value, .. } => value.clone(),
                    switchboard_core::Emoji::Custom { name } => format!(":{name}:"),
                }
            )),
            None,
        ),
        Some(DeliveryJob::Notice { text }) => ("notice".into(), Some(summary(text)), None),
        Some(_) | None => ("unknown".into(), None, None),
    }
}

/// Dead letters of `org` as shown to an admin (the console uses it too).
pub async fn dead_letter_views(
    store: &dyn Store,
    org: &OrgId,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<DeadLetterView>, AppError> {
    let list: Vec<DeadLetter> = store
        .outbox_dead_letters(org, before.map(DeliveryId), limit)
        .await?;
    let mut out = Vec::with_capacity(list.len());
    for d in list {
        let target_name = store
            .get_channel(org, &d.target)
            .await?
            .map(|c| c.channel.name);
        let (kind, summary, sender) = describe(d.job.as_ref());
        out.push(DeadLetterView {
            id: d.id.0,
            connection: d.connection.to_string(),
            target: d.target.to_string(),
            target_name,
            kind,
            summary,
            sender,
            error: d.error,
            attempts: d.attempts,
            failed_at: rfc3339(d.failed_at),
        });
    }
    Ok(out)
}

/// Queues dead letter `id` of `org` again and audits it as `actor`.
pub async fn retry_dead_letter(
    store: &dyn Store,
    org: &OrgId,
    id: i64,
    actor: Actor,
) -> Result<(), AppError> {
    store
        .outbox_retry_dead(org, DeliveryId(id))
        .await
        .map_err(|e| match e.kind() {
            switchboard_core::ErrorKind::NotFound => AppError::not_found("dead letter"),
            _ => e.into(),
        })?;
    store
        .append_audit(
            org,
            NewAuditEntry {
                actor,
                action: "delivery.retried".into(),
                target: id.to_string(),
                details: serde_json::json!({}),
            },
        )
        .await?;
    Ok(())
}

/// Messages posted today per channel of `org`, with the platform's cap.
pub async fn daily_views(
    store: &dyn Store,
    org: &OrgId,
) -> Result<Vec<DailyMessagesView>, AppError> {
    let limits = TargetLimits::documented();
    let today = OffsetDateTime::now_utc().date();
    Ok(store
        .posted_on(org, today)
        .await?
        .into_iter()
        .map(|(channel, posted)| {
            let cap = limits.get(&channel.platform).and_then(|l| l.daily_cap);
            let percent_of_cap = cap.filter(|c| *c > 0).map(|c| posted * 100 / c);
            DailyMessagesView {
                channel: channel.to_string(),
                posted,
                cap,
                near_cap: percent_of_cap.is_some_and(|p| p >= DAILY_CAP_WARN_PERCENT),
                percent_of_cap,
            }
        })
        .collect())
}

/// Dead letters, newest first.
#[utoipa::path(get, path = "/api/v1/dead-letters", params(DeadLetterPage), responses(
    (status = 200, body = [DeadLetterView]), (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Query(page): Query<DeadLetterPage>,
) -> Result<Json<Vec<DeadLetterView>>, AppError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        dead_letter_views(state.store.as_ref(), &admin.org, page.before, limit).await?,
    ))
}

/// Queues a dead letter again: it is delivered in its channel's order, as if new.
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/retry", params(("id" = i64, Path)),
    responses(
        (status = 200, body = Retried),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such dead letter in this organization")
    ), security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Retried>, AppError> {
    let id: i64 = id.parse().map_err(|_| AppError::not_found("dead letter"))?;
    retry_dead_letter(
        state.store.as_ref(),
        &admin.org,
        id,
        Actor::Admin {
            name: admin.name.clone(),
        },
    )
    .await?;
    Ok(Json(Retried {
        id,
        state: "pending",
    }))
}

/// Messages posted per channel today (UTC), against each platform's daily cap.
#[utoipa::path(get, path = "/api/v1/daily-messages", responses(
    (status = 200, body = [DailyMessagesView]), (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn daily_messages(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<Json<Vec<DailyMessagesView>>, AppError> {
    Ok(Json(daily_views(state.store.as_ref(), &admin.org).await?))
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The relay's gauges in the text exposition format (read from the store at scrape time).
pub async fn relay_gauges(store: &dyn Store) -> switchboard_core::Result<String> {
    let limits = TargetLimits::documented();
    let today = OffsetDateTime::now_utc().date();
    let mut dead = String::new();
    let mut daily = String::new();
    let mut pending = String::new();
    let mut inbox = String::new();
    for org in store.list_orgs().await? {
        let p = store.outbox_pending(&org.id).await?;
        let _ = writeln!(
            pending,
            "switchboard_outbox_pending{{org=\"{}\"}} {p}",
            label(org.id.as_str())
        );
        let i = store.inbox_pending(&org.id).await?;
        let _ = writeln!(
            inbox,
            "switchboard_inbox_pending{{org=\"{}\"}} {i}",
            label(org.id.as_str())
        );
        let n = store.outbox_dead_letter_count(&org.id).await?;
        let _ = writeln!(
            dead,
            "switchboard_dead_letters{{org=\"{}\"}} {n}",
            label(org.id.as_str())
        );
        for (channel, posted) in store.posted_on(&org.id, today).await? {
            let Some(cap) = limits.get(&channel.platform).and_then(|l| l.daily_cap) else {
                continue;
            };
            let _ = writeln!(
                daily,
                "switchboard_channel_daily_messages{{org=\"{}\",channel=\"{}\",cap=\"{cap}\"}} {posted}",
                label(org.id.as_str()),
                label(&channel.to_string())
            );
        }
    }
    Ok(format!(
        "# HELP switchboard_dead_letters Deliveries given up on, waiting for a retry.\n\
         # TYPE switchboard_dead_letters gauge\n{dead}\
         # HELP switchboard_channel_daily_messages Messages posted into a channel today (UTC), for platforms with a daily cap.\n\
         # TYPE switchboard_channel_daily_messages gauge\n{daily}\
         # HELP switchboard_outbox_pending Deliveries waiting in the outbox (the relay's backlog).\n\
         # TYPE switchboard_outbox_pending gauge\n{pending}\
         # HELP switchboard_inbox_pending Inbound items waiting to be translated.\n\
         # TYPE switchboard_inbox_pending gauge\n{inbox}"
    ))
}

/// The running imports: how many per platform and what they stored so far.
fn import_gauges(
    running: &[(switchboard_core::PlatformKind, crate::pool::ImportProgress)],
) -> String {
    let mut jobs: std::collections::BTreeMap<String, (u64, u64, u64, u64)> = Default::default();
    for (platform, p) in running {
        let e = jobs.entry(platform.to_string()).or_default();
        e.0 += 1;
        e.1 += p.teams_done;
        e.2 += p.channels;
        e.3 += p.users;
    }
    let mut out = String::from(
        "# HELP switchboard_imports_running Imports running now.\n\
         # TYPE switchboard_imports_running gauge\n",
    );
    for (platform, (n, ..)) in &jobs {
        let _ = writeln!(
            out,
            "switchboard_imports_running{{platform=\"{platform}\"}} {n}"
        );
    }
    out.push_str(
        "# HELP switchboard_import_progress What the running imports stored so far.\n\
         # TYPE switchboard_import_progress gauge\n",
    );
    for (platform, (_, teams, channels, users)) in &jobs {
        for (what, v) in [("teams", teams), ("channels", channels), ("users", users)] {
            let _ = writeln!(
                out,
                "switchboard_import_progress{{platform=\"{platform}\",what=\"{what}\"}} {v}"
            );
        }
    }
    out
}

/// `GET /metrics`: the server's metrics with the relay's gauges.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    match relay_gauges(state.store.as_ref()).await {
        Ok(mut gauges) => {
            gauges.push_str(&import_gauges(&state.jobs.running()));
            gauges.push_str(
                "# HELP switchboard_platform_errors Failed platform calls of deliveries, by platform and kind (rate_limited counts 429s).\n\
                 # TYPE switchboard_platform_errors counter\n",
            );
            for (platform, kind, n) in state.platform_errors.snapshot() {
                let _ = writeln!(
                    gauges,
                    "switchboard_platform_errors_total{{platform=\"{platform}\",kind=\"{kind}\"}} {n}"
                );
            }
            let eof = text.rfind("# EOF").unwrap_or(text.len());
            text.insert_str(eof, &gauges);
            if !text.ends_with("# EOF\n") {
                text.push_str("# EOF\n");
            }
        }
        Err(e) => tracing::warn!(error = %e, "relay gauges unavailable"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
