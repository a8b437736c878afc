//! Linking, the identity map and the audit export: the admin API routes
//! (`POST /api/v1/universal-channels/check`, `GET|POST /api/v1/identities`,
//! `DELETE /api/v1/identities/{platform}/{user}`, `GET /api/v1/audit/export`) and the
//! operations behind them, shared with the console and the CLI ([`link_channels`],
//! [`unlink_channel`], [`link_identities`], [`unlink_identity`], [`export_audit`]), so the
//! three say and audit the same things.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchboard_core::{
    Actor, ChannelRef, Endpoint, Error, ErrorKind, NewAuditEntry, OrgId, PlatformKind, Result,
    Store, UniversalChannel, UniversalChannelId, UserId,
};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Admin;
use crate::capability::{self, CapabilityReport, MAX_ENDPOINTS, Severity};
use crate::error::{AppError, ErrorBody};
use crate::identities::{self, IdentityMap};

/// Parses channel references, refusing a malformed one or too many with `InvalidInput`.
pub fn parse_refs<S: AsRef<str>>(refs: &[S]) -> Result<Vec<ChannelRef>> {
    if refs.len() > MAX_ENDPOINTS {
        return Err(Error::invalid(format!(
            "{} channels were given; a universal channel links at most {MAX_ENDPOINTS}",
            refs.len()
        )));
    }
    refs.iter()
        .map(|r| {
            let r = r.as_ref();
            r.trim().parse::<ChannelRef>().map_err(|e| {
                Error::invalid(format!(
                    "{r:?} is not a channel reference (msteams:<team>/<channel> or slack:<workspace>/<channel>): {}",
                    e.message()
                ))
            })
        })
        .collect()
}

/// A universal channel just made, with the report it was made under.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The new universal channel.
    pub channel: UniversalChannel,
    /// What degrades on it.
    pub report: CapabilityReport,
}

/// Links `endpoints` into a universal channel named `name` for `org`, as `actor` (audited).
/// The capability report is made first: any blocker refuses the link with `Conflict` (every
/// blocker is a channel already linked) or `InvalidInput`, naming each blocker, and nothing
/// changes. The caller wakes the feed keeper (`AppState::links_changed`) when it runs one.
pub async fn link_channels(
    store: &dyn Store,
    org: &OrgId,
    actor: &str,
    name: &str,
    endpoints: &[ChannelRef],
    relay_membership_notices: bool,
) -> Result<Linked> {
    let report = capability::report(store, org, endpoints).await?;
    let blockers: Vec<&capability::Finding> = report.of(Severity::Blocker).collect();
    if !blockers.is_empty() {
        let kind = if blockers.iter().all(|b| b.code == "already_linked") {
            ErrorKind::Conflict
        } else {
            ErrorKind::InvalidInput
        };
        let what: Vec<String> = blockers
            .iter()
            .map(|b| match &b.endpoint {
                Some(e) => format!("{e}: {}", b.summary),
                None => b.summary.clone(),
            })
            .collect();
        return Err(Error::new(
            kind,
            format!("the channels cannot be linked: {}", what.join("; ")),
        ));
    }
    let mut eps = Vec::with_capacity(endpoints.len());
    for reference in endpoints {
        let r = reference.to_string();
        let connection = report
            .endpoints
            .iter()
            .find(|f| f.reference == r)
            .and_then(|f| f.connection.as_deref())
            .ok_or_else(|| Error::invalid(format!("{reference} has not been imported")))?;
        eps.push(Endpoint {
            connection: connection.parse()?,
            channel: reference.clone(),
        });
    }
    let mut channel =
        UniversalChannel::new(UniversalChannelId::generate(), org.clone(), name, eps)?;
    channel.relay_membership_notices = relay_membership_notices;
    store.create_universal_channel(&channel).await?;
    let degraded: Vec<&str> = report.of(Severity::Degraded).map(|f| f.code).collect();
    store
        .append_audit(
            org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: actor.to_owned(),
                },
                action: "universal_channel.created".into(),
                target: channel.id().to_string(),
                details: serde_json::json!({
                    "name": channel.name(),
                    "endpoints": channel.endpoints().iter().map(|e| e.channel.to_string()).collect::<Vec<_>>(),
                    "relay_membership_notices": relay_membership_notices,
                    "degraded": degraded,
                }),
            },
        )
        .await?;
    Ok(Linked { channel, report })
}

/// Unlinks universal channel `id` of `org`, as `actor` (audited). `NotFound` when `org` has
/// no such universal channel (another organization's included).
pub async fn unlink_channel(
    store: &dyn Store,
    org: &OrgId,
    actor: &str,
    id: &str,
) -> Result<UniversalChannel> {
    let not_found = || Error::not_found(format!("no universal channel {id:?}"));
    let id = UniversalChannelId::new(id).map_err(|_| not_found())?;
    let channel = store
        .get_universal_channel(org, &id)
        .await?
        .ok_or_else(not_found)?;
    store.delete_universal_channel(org, &id).await?;
    store
        .append_audit(
            org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: actor.to_owned(),
                },
                action: "universal_channel.deleted".into(),
                target: id.to_string(),
                details: serde_json::json!({
                    "name": channel.name(),
                    "endpoints": channel.endpoints().iter().map(|e| e.channel.to_string()).collect::<Vec<_>>(),
                }),
            },
        )
        .await?;
    Ok(channel)
}

/// Parses `platform` and `user` of an identity, `InvalidInput` when malformed.
pub fn parse_identity(platform: &str, user: &str) -> Result<(PlatformKind, UserId)> {
    let p: PlatformKind = platform.trim().parse().map_err(|_| {
        Error::invalid(format!("{platform:?} is not a platform (msteams or slack)"))
    })?;
    let u = UserId::new(user.trim())
        .map_err(|e| Error::invalid(format!("{user:?} is not a user id: {}", e.message())))?;
    Ok((p, u))
}

/// Links two accounts by hand (overriding email matching for both), as `actor` (audited).
/// `InvalidInput` for two accounts of one platform; `NotFound` when either is not in the
/// directory of `org`.
pub async fn link_identities(
    store: &dyn Store,
    org: &OrgId,
    actor: &str,
    a: &(PlatformKind, UserId),
    b: &(PlatformKind, UserId),
) -> Result<()> {
    store.link_identities(org, (a.0, &a.1), (b.0, &b.1)).await?;
    store
        .append_audit(
            org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: actor.to_owned(),
                },
                action: "identity.linked".into(),
                target: format!("{}:{}", a.0, a.1),
                details: serde_json::json!({ "with": format!("{}:{}", b.0, b.1) }),
            },
        )
        .await?;
    Ok(())
}

/// Records that two accounts are not the same person (email matching never pairs them),
/// as `actor` (audited). `InvalidInput` for one platform; `NotFound` when either is not in
/// the directory of `org`.
pub async fn separate_identities(
    store: &dyn Store,
    org: &OrgId,
    actor: &str,
    a: &(PlatformKind, UserId),
    b: &(PlatformKind, UserId),
) -> Result<()> {
    store
        .separate_identities(org, (a.0, &a.1), (b.0, &b.1))
        .await?;
    store
        .append_audit(
            org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: actor.to_owned(),
                },
                action: "identity.separated".into(),
                target: format!("{}:{}", a.0, a.1),
                details: serde_json::json!({ "from": format!("{}:{}", b.0, b.1) }),
            },
        )
        .await?;
    Ok(())
}

/// Removes the overrides (manual links and separations) of an account so email matching
/// applies to it again, as `actor` (audited). `NotFound` when it has none.
pub async fn unlink_identity(
    store: &dyn Store,
    org: &OrgId,
    actor: &str,
    user: &(PlatformKind, UserId),
) -> Result<()> {
    store.unlink_identity(org, (user.0, &user.1)).await?;
    store
        .append_audit(
            org,
            NewAuditEntry {
                actor: Actor::Admin {
                    name: actor.to_owned(),
                },
                action: "identity.unlinked".into(),
                target: format!("{}:{}", user.0, user.1),
                details: serde_json::json!({}),
            },
        )
        .await?;
    Ok(())
}

/// The whole audit log of `org` as JSON lines, oldest first: one stored entry per line with
/// its sequence number, hashes and the previous entry's hash, so the chain can be checked
/// outside Switchboard.
pub async fn export_audit(store: &dyn Store, org: &OrgId) -> Result<String> {
    let mut out = String::new();
    let mut after = 0;
    loop {
        let page = store.list_audit(org, after, 1000).await?;
        for e in &page {
            out.push_str(
                &serde_json::to_string(e)
                    .map_err(|err| Error::new(ErrorKind::Storage, err.to_string()))?,
            );
            out.push('\n');
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = last.seq,
            _ => return Ok(out),
        }
    }
}

/// The body of `POST /api/v1/universal-channels/check`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckUniversalChannel {
    /// Channel references (`msteams:<team>/<channel>`, `slack:<workspace>/<channel>`).
    pub endpoints: Vec<String>,
}

/// The capability report of a proposed universal channel; changes nothing.
#[utoipa::path(post, path = "/api/v1/universal-channels/check", request_body = CheckUniversalChannel,
    responses(
        (status = 200, body = CapabilityReport, description = "what will degrade and why; `can_link` false when a blocker refuses the link"),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a malformed reference, or too many")
    ), security(("bearer" = [])))]
pub async fn check_universal_channel(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<CheckUniversalChannel>,
) -> std::result::Result<Json<CapabilityReport>, AppError> {
    let refs = parse_refs(&body.endpoints)?;
    Ok(Json(
        capability::report(state.store.as_ref(), &admin.org, &refs).await?,
    ))
}

/// The identity map: matched pairs, conflicts, unmatched people.
#[utoipa::path(get, path = "/api/v1/identities", responses(
    (status = 200, body = IdentityMap), (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn list_identities(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> std::result::Result<Json<IdentityMap>, AppError> {
    Ok(Json(
        identities::load(state.store.as_ref(), &admin.org).await?,
    ))
}

/// One account.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct IdentityRef {
    /// `msteams` or `slack`.
    pub platform: String,
    /// The platform's user id.
    pub user: String,
}

/// What an override says of two accounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The same person: linked, whatever their emails.
    #[default]
    Same,
    /// Different people: never matched by email.
    Different,
}

/// The body of `POST /api/v1/identities`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LinkIdentities {
    /// One account.
    pub a: IdentityRef,
    /// The other, on another platform.
    pub b: IdentityRef,
    /// `same` (default: link them) or `different` (keep them apart).
    #[serde(default)]
    pub relation: Relation,
}

/// An admin override of email matching: links two accounts, or keeps them apart.
#[utoipa::path(post, path = "/api/v1/identities", request_body = LinkIdentities,
    responses(
        (status = 201, description = "linked (or separated)"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "an account not in the directory"),
        (status = 422, body = ErrorBody, description = "malformed, or both on one platform")
    ), security(("bearer" = [])))]
pub async fn create_identity_link(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<LinkIdentities>,
) -> std::result::Result<StatusCode, AppError> {
    let a = parse_identity(&body.a.platform, &body.a.user)?;
    let b = parse_identity(&body.b.platform, &body.b.user)?;
    match body.relation {
        Relation::Same => {
            link_identities(state.store.as_ref(), &admin.org, &admin.name, &a, &b).await?
        }
        Relation::Different => {
            separate_identities(state.store.as_ref(), &admin.org, &admin.name, &a, &b).await?
        }
    }
    Ok(StatusCode::CREATED)
}

/// Removes an account's overrides (links and separations), so email matching applies to it
/// again.
#[utoipa::path(delete, path = "/api/v1/identities/{platform}/{user}",
    params(("platform" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no override for that account")),
    security(("bearer" = [])))]
pub async fn delete_identity_link(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((platform, user)): Path<(String, String)>,
) -> std::result::Result<StatusCode, AppError> {
    let who = parse_identity(&platform, &user).map_err(|_| AppError::not_found("identity"))?;
    unlink_identity(state.store.as_ref(), &admin.org, &admin.name, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The whole audit log as JSON lines (`application/x-ndjson`), oldest first, hashes included.
#[utoipa::path(get, path = "/api/v1/audit/export", responses(
    (status = 200, content_type = "application/x-ndjson", body = String), (status = 401, body = ErrorBody)
), security(("bearer" = [])))]
pub async fn audit_export(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> std::result::Result<Response, AppError> {
    let body = export_audit(state.store.as_ref(), &admin.org).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"switchboard-audit.jsonl\"",
            ),
        ],
        body,
    )
        .into_response())
}
