//! The admin JSON API under `/api/v1`, scoped to the organization of the bearer token.
//! Another organization's records answer 404, exactly like records that do not exist.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchboard_core::{
    Actor, ChannelRef, Endpoint, NewAuditEntry, UniversalChannel, UniversalChannelId,
};
use time::OffsetDateTime;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::AppState;
use crate::auth::Admin;
use crate::error::{AppError, ErrorBody};

/// A connected platform.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    /// Switchboard's id.
    pub id: String,
    /// `msteams` or `slack`.
    pub platform: String,
    /// The Microsoft tenant or Slack workspace id.
    pub tenant: String,
    /// Its name.
    pub display_name: String,
    /// Who the connection acts as.
    pub account: String,
    /// Whether that is a dedicated service account (or bot).
    pub is_service_account: bool,
    /// `ok`, `needs_reauth`, `missing_roles`, `missing_scopes`, `degraded`, `disabled`.
    pub health: String,
    /// When it was connected (RFC 3339).
    pub created_at: String,
}

/// An imported channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelView {
    /// `slack:<workspace>/<channel>` or `msteams:<team>/<channel>`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The connection it was imported through.
    pub connection: String,
    /// Its name.
    pub name: String,
    /// `standard`, `private` or `shared`.
    pub kind: String,
    /// Gone upstream since the last import.
    pub removed: bool,
}

/// A universal channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct UniversalChannelView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The linked channels.
    pub endpoints: Vec<String>,
    /// Whether join/leave notices are relayed.
    pub relay_membership_notices: bool,
}

/// The body of `POST /api/v1/universal-channels`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUniversalChannel {
    /// A name for people.
    pub name: String,
    /// Channel references, on at least two platforms.
    pub endpoints: Vec<String>,
    /// Relay join/leave notices (default off).
    #[serde(default)]
    pub relay_membership_notices: bool,
}

/// The answer to a creation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The new id.
    pub id: String,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Who (`admin:<name>`, `service_account:<connection>`, `system`).
    pub actor: String,
    /// What (`universal_channel.created`, …).
    pub action: String,
    /// On what.
    pub target: String,
    /// When (RFC 3339).
    pub at: String,
    /// Details (never secrets).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Hex SHA-256 of this entry.
    pub hash: String,
}

/// The audit chain check.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditCheck {
    /// Whether the chain is intact.
    pub ok: bool,
    /// Entries checked.
    pub checked: u64,
    /// The first entry found altered, removed or out of order.
    pub first_bad_seq: Option<u64>,
    /// What was wrong there.
    pub reason: Option<String>,
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditPage {
    /// Entries after this sequence number (default 0: from the start).
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Connected platforms with their health.
#[utoipa::path(get, path = "/api/v1/connections", responses(
    (status = 200, body = [ConnectionView]),
    (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn list_connections(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<Json<Vec<ConnectionView>>, AppError> {
    let list = state.store.list_connections(&admin.org).await?;
    Ok(Json(
        list.into_iter()
            .map(|c| ConnectionView {
                id: c.id.to_string(),
                platform: c.platform.to_string(),
                tenant: c.tenant.to_string(),
                display_name: c.display_name,
                account: c.account.display_name,
                is_service_account: c.account.is_service_account,
                health: c.health.to_string(),
                created_at: rfc3339(c.created_at),
            })
            .collect(),
    ))
}

/// Imported channels.
#[utoipa::path(get, path = "/api/v1/channels", responses(
    (status = 200, body = [ChannelView]),
    (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn list_channels(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<Json<Vec<ChannelView>>, AppError> {
    let mut list = Vec::new();
    loop {
        let after = list
            .last()
            .map(|c: &switchboard_core::StoredChannel| c.reference.clone());
        let page = state
            .store
            .list_channels(
                &admin.org,
                None,
                after.as_ref(),
                switchboard_core::MAX_PAGE_SIZE,
            )
            .await?;
        let done = page.len() < switchboard_core::MAX_PAGE_SIZE;
        list.extend(page);
        if done {
            break;
        }
    }
    Ok(Json(
        list.into_iter()
            .map(|c| ChannelView {
                reference: c.reference.to_string(),
                connection: c.connection.to_string(),
                name: c.channel.name,
                kind: c.channel.kind.as_str().to_owned(),
                removed: c.removed,
            })
            .collect(),
    ))
}

fn view(u: &UniversalChannel) -> UniversalChannelView {
    UniversalChannelView {
        id: u.id().to_string(),
        name: u.name().to_owned(),
        endpoints: u
            .endpoints()
            .iter()
            .map(|e| e.channel.to_string())
            .collect(),
        relay_membership_notices: u.relay_membership_notices,
    }
}

/// Universal channels.
#[utoipa::path(get, path = "/api/v1/universal-channels", responses(
    (status = 200, body = [UniversalChannelView]),
    (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn list_universal_channels(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<Json<Vec<UniversalChannelView>>, AppError> {
    let list = state.store.list_universal_channels(&admin.org).await?;
    Ok(Json(list.iter().map(view).collect()))
}

/// Links imported channels into a universal channel.
#[utoipa::path(post, path = "/api/v1/universal-channels", request_body = CreateUniversalChannel,
    responses(
        (status = 201, body = Created),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a channel is already linked"),
        (status = 422, body = ErrorBody, description = "fewer than two platforms, an unknown or unimported channel")
    ), security(("bearer" = [])))]
pub async fn create_universal_channel(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<CreateUniversalChannel>,
) -> Result<(StatusCode, Json<Created>), AppError> {
    let mut endpoints = Vec::with_capacity(body.endpoints.len());
    for r in &body.endpoints {
        let reference: ChannelRef = r.parse().map_err(|e: switchboard_core::Error| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                format!("{r:?} is not a channel reference: {e}"),
            )
        })?;
        let stored = state
            .store
            .get_channel(&admin.org, &reference)
            .await?
            .filter(|c| !c.removed)
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_input",
                    format!("{r} has not been imported: import its team or workspace first"),
                )
            })?;
        endpoints.push(Endpoint {
            connection: stored.connection,
            channel: reference,
        });
    }
    let mut channel = UniversalChannel::new(
        UniversalChannelId::generate(),
        admin.org.clone(),
        body.name,
        endpoints,
    )?;
    channel.relay_membership_notices = body.relay_membership_notices;
    state.store.create_universal_channel(&channel).await?;
    state.links_changed.notify_one();
    state
        .store
        .append_audit(
            &admin.org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: admin.name.clone(),
                },
                action: "universal_channel.created".into(),
                target: channel.id().to_string(),
                details: serde_json::json!({
                    "name": channel.name(),
                    "endpoints": channel.endpoints().iter().map(|e| e.channel.to_string()).collect::<Vec<_>>(),
                }),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: channel.id().to_string(),
        }),
    ))
}

/// Unlinks a universal channel.
#[utoipa::path(delete, path = "/api/v1/universal-channels/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_universal_channel(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let id = UniversalChannelId::new(id).map_err(|_| AppError::not_found("universal channel"))?;
    state
        .store
        .get_universal_channel(&admin.org, &id)
        .await?
        .ok_or_else(|| AppError::not_found("universal channel"))?;
    state
        .store
        .delete_universal_channel(&admin.org, &id)
        .await?;
    state.links_changed.notify_one();
    state
        .store
        .append_audit(
            &admin.org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: admin.name.clone(),
                },
                action: "universal_channel.deleted".into(),
                target: id.to_string(),
                details: serde_json::json!({}),
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log, oldest first.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditPage), responses(
    (status = 200, body = [AuditView]), (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn list_audit(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Query(page): Query<AuditPage>,
) -> Result<Json<Vec<AuditView>>, AppError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .store
        .list_audit(&admin.org, page.after, limit)
        .await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditView {
                seq: e.seq,
                actor: match &e.actor {
                    Actor::Admin { name } => format!("admin:{name}"),
                    Actor::ServiceAccount { connection } => {
                        format!("service_account:{connection}")
                    }
                    Actor::User { platform, user, .. } => format!("user:{platform}:{user}"),
                    Actor::System => "system".into(),
                },
                action: e.action,
                target: e.target,
                at: rfc3339(e.at),
                details: e.details,
                hash: e.hash,
            })
            .collect(),
    ))
}

/// Checks the audit log's hash chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", responses(
    (status = 200, body = AuditCheck), (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn verify_audit(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<Json<AuditCheck>, AppError> {
    let v = state.store.verify_audit(&admin.org).await?;
    Ok(Json(AuditCheck {
        ok: v.is_ok(),
        checked: v.checked,
        first_bad_seq: v.first_bad_seq,
        reason: v.reason,
    }))
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the admin API, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard admin API", version = "1"),
    paths(
        list_connections,
        list_channels,
        list_universal_channels,
        create_universal_channel,
        delete_universal_channel,
        list_audit,
        verify_audit,
        crate::api_import::list_connection_teams,
        crate::api_import::start_import_job,
        crate::api_import::get_import_job,
        crate::api_import::list_users,
        crate::api_links::check_universal_channel,
        crate::api_links::list_identities,
        crate::api_links::create_identity_link,
        crate::api_links::delete_identity_link,
        crate::api_links::audit_export,
        crate::api_deliveries::list_dead_letters,
        crate::api_deliveries::retry,
        crate::api_deliveries::daily_messages
    ),
    modifiers(&BearerAuth)
)]
#[derive(Debug)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
