//! # switchboard-server
//!
//! The HTTP side of Switchboard, as a library: [`router`] builds the axum app from an
//! [`AppState`] (a store and the platforms' webhook receivers, all core trait objects), so the
//! CLI composes it with real adapters and storage, and tests drive it in-process with
//! `tower::ServiceExt::oneshot`.
//!
//! Routes so far: the admin JSON API (`/api/v1/...`, bearer token scoped to one
//! organization, OpenAPI document at `/api/v1/openapi.json`), the platform webhooks
//! (`/webhooks/slack/events`, `/webhooks/msteams/notifications`,
//! `/webhooks/msteams/lifecycle`) wired through core's receiving seam into the inbox, and
//! `/healthz`, `/readyz`, `/metrics`. The console, OAuth flows and relay workers follow.
//!
//! **Architecture invariant:** only this crate (and the sandbox's own emulator) knows axum.
//! Route handlers see platforms and storage only through `switchboard-core`'s traits; the
//! composition root ([`serve`]) is the one place that names a concrete store.

#![warn(missing_docs)]

pub mod api;
pub mod api_deliveries;
pub mod auth;
pub mod config;
pub mod console;
pub mod console_deliveries;
pub mod error;
pub mod metrics;
pub mod pool;
pub mod serve;
pub mod session;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use switchboard_core::{Authorizer, Connector, PlatformKind, Store, WebhookReceiver};

pub use error::AppError;
pub use metrics::Metrics;

/// The platforms' webhook receivers (absent when a platform is not configured: its webhook
/// answers 404).
#[derive(Clone, Default)]
pub struct Receivers {
    /// Slack Events API.
    pub slack: Option<Arc<dyn WebhookReceiver>>,
    /// Graph change notifications and lifecycle events.
    pub graph: Option<Arc<dyn WebhookReceiver>>,
}

impl std::fmt::Debug for Receivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receivers")
            .field("slack", &self.slack.is_some())
            .field("graph", &self.graph.is_some())
            .finish()
    }
}

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The webhook receivers.
    pub receivers: Receivers,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Console sessions and pending OAuth authorizations.
    pub sessions: Arc<session::Sessions>,
    /// The OAuth flows of the configured platforms.
    pub authorizers: Vec<Arc<dyn Authorizer>>,
    /// The connectors of the configured platforms.
    pub connectors: Vec<Arc<dyn Connector>>,
    /// The public base URL (OAuth redirects, webhook URLs); `http://` for loopback.
    pub public_url: String,
    /// The console's templates.
    pub templates: Arc<minijinja::Environment<'static>>,
    /// Notified whenever universal channels are created or removed (the feed keeper wakes and
    /// subscribes to or drops the channels' live feeds at once).
    pub links_changed: Arc<tokio::sync::Notify>,
    /// Slack workspace → the connection that serves it, learned on first delivery.
    pub workspace_routes: Arc<
        parking_lot::RwLock<
            std::collections::HashMap<
                switchboard_core::TeamId,
                (switchboard_core::OrgId, switchboard_core::ConnectionId),
            >,
        >,
    >,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("receivers", &self.receivers)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over `store` with `receivers`, fresh metrics and sessions, no platform
    /// configured for connecting (see [`AppState::with_platform`]).
    pub fn new(store: Arc<dyn Store>, receivers: Receivers) -> Self {
        AppState {
            store,
            receivers,
            metrics: Arc::new(Metrics::new()),
            sessions: Arc::new(session::Sessions::default()),
            authorizers: Vec::new(),
            connectors: Vec::new(),
            public_url: "http://127.0.0.1".into(),
            templates: Arc::new(console::templates()),
            links_changed: Arc::default(),
            workspace_routes: Arc::default(),
        }
    }

    /// Adds a platform's OAuth flow and connector.
    pub fn with_platform(
        mut self,
        authorizer: Arc<dyn Authorizer>,
        connector: Arc<dyn Connector>,
    ) -> Self {
        self.authorizers.push(authorizer);
        self.connectors.push(connector);
        self
    }

    /// Sets the public base URL.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = url.into();
        self
    }

    /// The OAuth flow of `platform`, when configured.
    pub fn authorizer(&self, platform: PlatformKind) -> Option<&Arc<dyn Authorizer>> {
        self.authorizers.iter().find(|a| a.platform() == platform)
    }

    /// The connector of `platform`, when configured.
    pub fn connector(&self, platform: PlatformKind) -> Option<&Arc<dyn Connector>> {
        self.connectors.iter().find(|c| c.platform() == platform)
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    // The store runs its migrations when it opens; reaching it means they are applied.
    match state.store.list_orgs().await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database is unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn fallback() -> AppError {
    AppError::not_found("route")
}

/// Counts requests by route template and status, and sets the security headers on every
/// answer (no framing, no sniffing, a strict CSP, no referrer leaks).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let mut response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&metrics::RouteLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    let h = response.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    response
}

/// The whole app.
pub fn router(state: AppState) -> Router {
    let webhooks = Router::new()
        .route("/webhooks/slack/events", post(webhooks::slack_events))
        .route(
            "/webhooks/msteams/notifications",
            post(webhooks::graph_notifications),
        )
        .route(
            "/webhooks/msteams/lifecycle",
            post(webhooks::graph_lifecycle),
        )
        .layer(DefaultBodyLimit::max(webhooks::MAX_WEBHOOK_BODY));
    let api = Router::new()
        .route("/api/v1/connections", get(api::list_connections))
        .route("/api/v1/channels", get(api::list_channels))
        .route(
            "/api/v1/universal-channels",
            get(api::list_universal_channels).post(api::create_universal_channel),
        )
        .route(
            "/api/v1/universal-channels/{id}",
            delete(api::delete_universal_channel),
        )
        .route("/api/v1/audit", get(api::list_audit))
        .route("/api/v1/audit/verify", get(api::verify_audit))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route(
            "/api/v1/dead-letters",
            get(api_deliveries::list_dead_letters),
        )
        .route(
            "/api/v1/dead-letters/{id}/retry",
            post(api_deliveries::retry),
        )
        .route(
            "/api/v1/daily-messages",
            get(api_deliveries::daily_messages),
        )
        .layer(DefaultBodyLimit::max(256 * 1024));
    let console = Router::new()
        .route("/", get(console::index))
        .route("/static/console.css", get(console::stylesheet))
        .route("/signin", get(console::signin_page).post(console::signin))
        .route("/signout", post(console::signout))
        .route("/connect", get(console::connect_page))
        .route("/deliveries", get(console_deliveries::page))
        .route("/deliveries/{id}/retry", post(console_deliveries::retry))
        .route("/connect/{platform}/start", get(console::connect_start))
        .route(
            "/connect/{platform}/callback",
            get(console::connect_callback),
        )
        .layer(DefaultBodyLimit::max(64 * 1024));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(api_deliveries::metrics))
        .merge(webhooks)
        .merge(api)
        .merge(console)
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}
