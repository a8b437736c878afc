//! The Microsoft half of the sandbox: the Microsoft identity platform (authorize + consent
//! page, token endpoint) and Microsoft Graph v1.0 (users, directory roles, teams, channels,
//! members, channel messages, delta, subscriptions with change and lifecycle notifications,
//! invitations), with Graph's throttling limits, plus its control API.
//!
//! The behaviour and route reference for adapter authors is `crates/sandbox/docs/msteams.md`.

mod common;
mod control;
mod directory;
mod files;
mod identity;
mod messages;
mod model;
mod state;
mod subscriptions;
mod teams;

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

use crate::{Seed, SharedWorld};
use model::{OIDC_OFFLINE, OIDC_OPENID, OIDC_PROFILE, Perm, Scopes};
use state::{Dir, JR_PASSWORD, SVC_PASSWORD};

/// The emulated tenant: directory, tokens, subscriptions and the delivery log. Each part has
/// its own lock; the directory lock is never held across an `.await`.
#[derive(Debug)]
pub(crate) struct GraphState {
    pub(crate) dir: RwLock<Dir>,
    pub(crate) auth: Mutex<identity::Auth>,
    pub(crate) subs: Mutex<subscriptions::Subs>,
    pub(crate) log: Mutex<subscriptions::DeliveryLog>,
    /// Messages posted per (app, channel) today (the 3,000-a-day budget).
    pub(crate) daily: Mutex<std::collections::HashMap<(String, String), common::DayCount>>,
    /// Per channel id: delta links issued before this time (ms) are expired (410).
    pub(crate) delta_expired: Mutex<std::collections::HashMap<String, u64>>,
    /// Files uploaded into channels' SharePoint folders.
    pub(crate) files: Mutex<files::Drive>,
    tenant_id: String,
    service_token: String,
}

/// The scopes of the ready-made service-account token: every permission the Teams
/// connection requests (PLATFORM_FACTS.md), plus `openid profile offline_access`.
fn connection_scopes() -> Scopes {
    Scopes {
        perms: [
            Perm::TEAM_READBASIC_ALL,
            Perm::CHANNEL_READBASIC_ALL,
            Perm::TEAMMEMBER_READWRITE_ALL,
            Perm::USER_READ_ALL,
            Perm::ROLEMANAGEMENT_READ_DIRECTORY,
            Perm::CHANNELMESSAGE_SEND,
            Perm::CHANNELMESSAGE_READWRITE,
            Perm::CHANNELMESSAGE_READ_ALL,
            Perm::USER_INVITE_ALL,
            Perm::FILES_READWRITE_ALL,
        ]
        .iter()
        .fold(0, |a, p| a | p.bit()),
        oidc: OIDC_OPENID | OIDC_PROFILE | OIDC_OFFLINE,
    }
}

impl GraphState {
    /// Seeds the tenant (fast and compact even for the large seed).
    pub fn new(seed: Seed) -> Self {
        let dir = Dir::build(seed);
        let tenant_id = dir.tenant_id.clone();
        let svc = dir.service_account;
        let client_id = dir.app.client_id.clone();
        let state = GraphState {
            dir: RwLock::new(dir),
            auth: Mutex::new(identity::Auth::default()),
            subs: Mutex::new(subscriptions::Subs::default()),
            log: Mutex::new(subscriptions::DeliveryLog::default()),
            daily: Mutex::new(std::collections::HashMap::new()),
            delta_expired: Mutex::new(std::collections::HashMap::new()),
            files: Mutex::new(files::Drive::default()),
            tenant_id,
            service_token: String::new(),
        };
        let token = state.issue_access(
            Some(svc),
            &client_id,
            connection_scopes().perms,
            identity::SERVICE_TOKEN_TTL,
        );
        GraphState {
            service_token: token,
            ..state
        }
    }

    pub(crate) fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The `msteams` object of the ready line.
    pub fn ready_info(&self) -> Value {
        let dir = self.dir.read();
        json!({
            "tenant_id": dir.tenant_id,
            "tenant_domain": dir.domain,
            "client_id": dir.app.client_id,
            "client_secret": dir.app.client_secret,
            "service_account_upn": dir.users[dir.service_account as usize].upn,
            "service_account_password": SVC_PASSWORD,
            "service_account_token": self.service_token,
            "underprivileged_upn": dir.users[dir.underprivileged as usize].upn,
            "underprivileged_password": JR_PASSWORD,
        })
    }

    /// The `msteams` object of `GET /_sandbox/seed`.
    pub fn seed_json(&self) -> Value {
        let dir = self.dir.read();
        let users: Vec<Value> = dir
            .users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "displayName": u.display_name,
                    "mail": u.mail,
                    "userPrincipalName": u.upn,
                    "userType": u.user_type.as_str(),
                    "accountEnabled": u.account_enabled,
                })
            })
            .collect();
        let teams: Vec<Value> = dir
            .teams
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "displayName": t.display_name,
                    "channels": t.channels.iter().map(|c| json!({
                        "id": c.id,
                        "displayName": c.display_name,
                        "membershipType": c.membership_type.as_str(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "tenant_id": dir.tenant_id,
            "tenant_domain": dir.domain,
            "users": users,
            "teams": teams,
        })
    }
}

/// Echoes `client-request-id` like Graph does.
async fn client_request_id(req: Request, next: Next) -> Response {
    let crid = req.headers().get("client-request-id").cloned();
    let mut resp = next.run(req).await;
    if let Some(v) = crid {
        resp.headers_mut().insert("client-request-id", v);
    }
    resp
}

/// Unknown Graph paths: 400 like Graph ("Resource not found for the segment …").
async fn unknown_segment(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let seg = path
        .trim_start_matches("/graph/v1.0/")
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let mut r = common::GraphError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Resource not found for the segment '{seg}'."),
    )
    .into_response();
    r.headers_mut().insert(
        "x-sandbox-note",
        HeaderValue::from_static("unknown graph route"),
    );
    r
}

/// Identity platform and Graph routes (full paths).
pub(crate) fn routes() -> Router<SharedWorld> {
    use messages as m;
    let g = "/graph/v1.0";
    let msg = "/graph/v1.0/teams/{team}/channels/{channel}/messages";
    let graph = Router::new()
        .route(&format!("{g}/me"), get(directory::me))
        .route(&format!("{g}/me/memberOf"), get(directory::member_of_all))
        .route(
            &format!("{g}/me/memberOf/microsoft.graph.directoryRole"),
            get(directory::member_of_roles),
        )
        .route(
            &format!("{g}/me/memberOf/microsoft.graph.group"),
            get(directory::member_of_groups),
        )
        .route(
            &format!("{g}/me/transitiveMemberOf"),
            get(directory::transitive_all),
        )
        .route(
            &format!("{g}/me/transitiveMemberOf/microsoft.graph.directoryRole"),
            get(directory::transitive_roles),
        )
        .route(
            &format!("{g}/me/transitiveMemberOf/microsoft.graph.group"),
            get(directory::transitive_groups),
        )
        .route(&format!("{g}/me/joinedTeams"), get(teams::joined_teams))
        .route(&format!("{g}/users"), get(directory::list_users))
        .route(&format!("{g}/users/{{id}}"), get(directory::get_user))
        .route(&format!("{g}/invitations"), post(directory::invite))
        .route(&format!("{g}/teams"), get(teams::list_teams))
        .route(&format!("{g}/teams/{{team}}"), get(teams::get_team))
        .route(
            &format!("{g}/teams/{{team}}/channels/{{channel}}/filesFolder"),
            get(files::files_folder),
        )
        .route(
            &format!("{g}/shares/{{share}}/driveItem"),
            get(files::shared_drive_item),
        )
        .route("/sharepoint/download/{id}", get(files::download))
        .route(
            &format!("{g}/drives/{{drive}}/items/{{*rest}}"),
            get(files::drive_item).put(files::drive_item).layer(
                axum::extract::DefaultBodyLimit::max(files::MAX_UPLOAD_BYTES + 1024),
            ),
        )
        .route(
            &format!("{g}/teams/{{team}}/channels"),
            get(teams::list_channels),
        )
        .route(
            &format!("{g}/teams/{{team}}/channels/{{channel}}"),
            get(teams::get_channel),
        )
        .route(
            &format!("{g}/teams/{{team}}/channels/{{channel}}/members"),
            get(teams::list_channel_members),
        )
        .route(
            &format!("{g}/teams/{{team}}/members"),
            get(teams::list_members).post(teams::add_member),
        )
        .route(
            &format!("{g}/teams/{{team}}/members/{{member}}"),
            get(teams::get_member).delete(teams::remove_member),
        )
        .route(msg, get(m::list_messages).post(m::post_message))
        .route(&format!("{msg}/delta"), get(m::delta))
        // Graph's SDKs call the delta function with its parentheses (Kiota: `…/delta()`).
        .route(&format!("{msg}/delta()"), get(m::delta))
        .route(
            &format!("{msg}/{{message}}"),
            get(m::get_message).patch(m::patch_message),
        )
        .route(
            &format!("{msg}/{{message}}/softDelete"),
            post(m::soft_delete_message),
        )
        .route(
            &format!("{msg}/{{message}}/undoSoftDelete"),
            post(m::undo_delete_message),
        )
        .route(
            &format!("{msg}/{{message}}/setReaction"),
            post(m::set_reaction_message),
        )
        .route(
            &format!("{msg}/{{message}}/unsetReaction"),
            post(m::unset_reaction_message),
        )
        .route(
            &format!("{msg}/{{message}}/replies"),
            get(m::list_replies).post(m::post_reply),
        )
        .route(
            &format!("{msg}/{{message}}/replies/{{reply}}"),
            get(m::get_reply).patch(m::patch_reply),
        )
        .route(
            &format!("{msg}/{{message}}/replies/{{reply}}/softDelete"),
            post(m::soft_delete_reply),
        )
        .route(
            &format!("{msg}/{{message}}/replies/{{reply}}/undoSoftDelete"),
            post(m::undo_delete_reply),
        )
        .route(
            &format!("{msg}/{{message}}/replies/{{reply}}/setReaction"),
            post(m::set_reaction_reply),
        )
        .route(
            &format!("{msg}/{{message}}/replies/{{reply}}/unsetReaction"),
            post(m::unset_reaction_reply),
        )
        .route(
            &format!("{g}/subscriptions"),
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            &format!("{g}/subscriptions/{{id}}"),
            get(subscriptions::get)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route(
            &format!("{g}/subscriptions/{{id}}/reauthorize"),
            post(subscriptions::reauthorize),
        )
        .route(&format!("{g}/{{*rest}}"), any(unknown_segment))
        .layer(axum::middleware::from_fn(client_request_id));
    let identity = Router::new()
        .route(
            "/microsoft/{tenant}/oauth2/v2.0/authorize",
            get(identity::authorize_get).post(identity::authorize_post),
        )
        .route(
            "/microsoft/{tenant}/oauth2/v2.0/token",
            post(identity::token),
        )
        .route(
            "/microsoft/{tenant}/v2.0/.well-known/openid-configuration",
            get(identity::openid_configuration),
        );
    graph.merge(identity)
}

/// The control API, nested at `/_sandbox/msteams`.
pub(crate) fn control_routes() -> Router<SharedWorld> {
    control::routes().route("/files", get(list_files))
}

/// `GET /_sandbox/msteams/files`: every file uploaded into a channel folder.
async fn list_files(axum::extract::State(world): axum::extract::State<SharedWorld>) -> Response {
    let files: Vec<serde_json::Value> = world
        .msteams
        .files
        .lock()
        .list()
        .into_iter()
        .map(|(web_url, name, size, guid)| {
            serde_json::json!({"webUrl": web_url, "name": name, "size": size, "id": guid})
        })
        .collect();
    axum::Json(serde_json::json!({ "files": files })).into_response()
}

/// Background work: subscription expiry and reauthorization warnings, token sweeping.
/// (Notification delivery runs in one task per subscription, started at creation.)
pub(crate) fn spawn_background(world: SharedWorld) {
    let weak = std::sync::Arc::downgrade(&world);
    drop(world);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(250));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            interval.tick().await;
            let Some(world) = weak.upgrade() else {
                break;
            };
            subscriptions::tick(&world);
            ticks += 1;
            if ticks % 240 == 0 {
                world.msteams.auth.lock().sweep(crate::util::now_unix());
            }
        }
    });
}
