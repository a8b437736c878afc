//! The Slack emulator: Web API (`/slack/api/{method}`), OAuth v2 consent page, Events API
//! delivery (signed HTTP with retries, or Socket Mode), files, and its control routes.
//! `crates/sandbox/docs/slack.md` is the reference for adapter authors.

mod auth;
mod control;
mod events;
mod files;
mod model;
mod oauth;
mod ops;
mod render;
mod socket;
mod web;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

use crate::{Seed, SharedWorld};

/// State of the emulated Slack workspace and its app. Locks: `ws` (workspace data),
/// `auth` (tokens), and the event bus / socket hub's own.
pub(crate) struct SlackState {
    pub(crate) app: model::AppInfo,
    pub(crate) ws: RwLock<model::Workspace>,
    pub(crate) auth: Mutex<auth::AuthState>,
    pub(crate) events: events::EventBus,
    pub(crate) sockets: socket::SocketHub,
    bot_token: String,
    app_token: String,
}

impl std::fmt::Debug for SlackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackState")
            .field("app", &self.app)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl SlackState {
    /// Seeds the workspace (the large seed takes a few tens of milliseconds).
    pub fn new(seed: Seed) -> Self {
        let (ws, app) = model::build(seed);
        let mut auth = auth::AuthState::default();
        let bot_scopes = auth::Scopes::parse(auth::BOT_SCOPES).expect("bot scopes are known");
        let bot_token = auth.add_static(auth::TokenKind::Bot, ws.bot_user, bot_scopes);
        let app_scopes = auth::Scopes::parse("connections:write").expect("known scope");
        let app_token = auth.add_static(auth::TokenKind::App, ws.bot_user, app_scopes);
        SlackState {
            app,
            ws: RwLock::new(ws),
            auth: Mutex::new(auth),
            events: events::EventBus::new(),
            sockets: socket::SocketHub::default(),
            bot_token,
            app_token,
        }
    }

    /// The `slack` object of the ready line.
    pub fn ready_info(&self) -> Value {
        json!({
            "team_id": self.app.team_id,
            "team_name": self.app.team_name,
            "client_id": self.app.client_id,
            "client_secret": self.app.client_secret,
            "signing_secret": self.app.signing_secret,
            "verification_token": self.app.verification_token,
            "bot_token": self.bot_token,
            "app_token": self.app_token,
            "app_id": self.app.app_id,
            "bot_user_id": self.app.bot_user_id,
            "bot_id": self.app.bot_id,
        })
    }

    /// The `slack` object of `GET /_sandbox/seed`.
    pub fn seed_json(&self) -> Value {
        let ws = self.ws.read();
        let users: Vec<Value> = ws
            .users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "name": u.name,
                    "real_name": u.real_name,
                    "email": u.email,
                    "is_bot": u.is_bot(),
                    "deleted": u.deleted,
                })
            })
            .collect();
        let channels: Vec<Value> = ws
            .channels
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "name": c.name,
                    "is_private": c.is_private,
                    "is_archived": c.is_archived,
                    "is_member": c.members.contains(&ws.bot_user),
                })
            })
            .collect();
        json!({
            "team_id": ws.team_id,
            "team_name": ws.team_name,
            "bot_user_id": self.app.bot_user_id,
            "users": users,
            "channels": channels,
        })
    }
}

/// Slack's public routes: Web API, OAuth consent, Socket Mode, file upload/download.
pub(crate) fn routes() -> Router<SharedWorld> {
    Router::new()
        .route("/slack/api/{method}", any(web::api))
        .route(
            "/slack/oauth/v2/authorize",
            get(oauth::authorize_page).post(oauth::authorize_submit),
        )
        .route("/slack/socket/{ticket}", get(socket::socket_route))
        .route(
            "/slack/upload/v1/{upload_id}",
            post(files::upload_route).layer(DefaultBodyLimit::max(files::MAX_UPLOAD + 64 * 1024)),
        )
        .route("/slack/files/{file_id}/{name}", get(files::file_route))
        .route(
            "/slack/files/{file_id}/download/{name}",
            get(files::file_download_route),
        )
        .route("/slack/avatars/{id}/{size}", get(files::avatar_route))
}

/// Control routes, nested at `/_sandbox/slack`.
pub(crate) fn control_routes() -> Router<SharedWorld> {
    control::routes()
}

/// Starts the event delivery worker.
pub(crate) fn spawn_background(world: SharedWorld) {
    events::spawn_dispatcher(&world);
}
