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
pub mod api_import;
pub mod api_links;
pub mod auth;
pub mod capability;
pub mod config;
pub mod console;
pub mod console_deliveries;
pub mod console_import;
pub mod console_linkme;
pub mod console_links;
pub mod error;
pub mod feeds;
pub mod identities;
pub mod jobs;
pub mod metrics;
pub mod migrate;
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
    /// The OAuth flows end users take to link their own accounts ("link my account"), with
    /// only the delegated scopes posting as the user needs; empty: nothing to link.
    pub user_authorizers: Vec<Arc<dyn Authorizer>>,
    /// Pending end-user links and the short sessions after linking.
    pub links: Arc<console_linkme::LinkSessions>,
    /// The public base URL (OAuth redirects, webhook URLs); `http://` for loopback.
    pub public_url: String,
    /// The console's templates.
    pub templates: Arc<minijinja::Environment<'static>>,
    /// Notified whenever universal channels are created or removed (the feed keeper wakes and
    /// subscribes to or drops the channels' live feeds at once).
    pub links_changed: Arc<tokio::sync::Notify>,
    /// Notified whenever webhook items are stored in the inbox (the relay workers wake at
    /// once instead of at their next poll).
    pub inbox_accepted: Arc<tokio::sync::Notify>,
    /// Failed platform calls of this process's relay workers (exported on `/metrics`).
    pub platform_errors: Arc<switchboard_relay::engine::PlatformErrors>,
    /// Slack workspace → the connection that serves it, learned on first delivery.
    pub workspace_routes: Arc<
        parking_lot::RwLock<
            std::collections::HashMap<
                switchboard_core::TeamId,
                (switchboard_core::OrgId, switchboard_core::ConnectionId),
            >,
        >,
    >,
    /// Import jobs started from the API or the console.
    pub jobs: Arc<jobs::ImportJobs>,
    /// The live connections imports use: the one given to [`AppState::with_pool`] (share the
    /// relay's, so both pace themselves on one set of rate limits), else one built from
    /// [`AppState::connectors`] on first use.
    pool: Arc<std::sync::OnceLock<Arc<pool::ConnectionPool>>>,
    pool_given: bool,
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
            user_authorizers: Vec::new(),
            links: Arc::default(),
            public_url: "http://127.0.0.1".into(),
            templates: Arc::new({
                let mut env = console::templates();
                console_import::add_templates(&mut env);
                console_linkme::add_templates(&mut env);
                env
            }),
            links_changed: Arc::default(),
            inbox_accepted: Arc::default(),
            platform_errors: Arc::default(),
            workspace_routes: Arc::default(),
            jobs: Arc::default(),
            pool: Arc::default(),
            pool_given: false,
        }
    }

    /// Uses `pool` for imports (and anything else that needs a live connection).
    pub fn with_pool(mut self, pool: Arc<pool::ConnectionPool>) -> Self {
        self.pool = Arc::new(std::sync::OnceLock::from(pool));
        self.pool_given = true;
        self
    }

    /// The live connections (see [`AppState::with_pool`]). Without one, a pool over the
    /// configured connectors is made on first use, so configure the platforms first.
    pub fn pool(&self) -> Arc<pool::ConnectionPool> {
        self.pool
            .get_or_init(|| {
                Arc::new(pool::ConnectionPool::new(
                    self.store.clone(),
                    self.connectors.clone(),
                ))
            })
            .clone()
    }

    /// Adds a platform's OAuth flow and connector.
    pub fn with_platform(
        mut self,
        authorizer: Arc<dyn Authorizer>,
        connector: Arc<dyn Connector>,
    ) -> Self {
        self.authorizers.push(authorizer);
        self.connectors.push(connector);
        if !self.pool_given {
            // A pool made on first use must see this connector too.
            self.pool = Arc::default();
        }
        self
    }

    /// Offers end users to link their own account of the authorizer's platform
    /// (`/link-account`).
    pub fn with_user_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.user_authorizers.push(authorizer);
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
        .route(
            "/api/v1/universal-channels/check",
            post(api_links::check_universal_channel),
        )
        .route(
            "/api/v1/identities",
            get(api_links::list_identities).post(api_links::create_identity_link),
        )
        .route(
            "/api/v1/identities/{platform}/{user}",
            delete(api_links::delete_identity_link),
        )
        .route("/api/v1/audit/export", get(api_links::audit_export))
        .route("/api/v1/audit", get(api::list_audit))
        .route("/api/v1/audit/verify", get(api::verify_audit))
        .route(
            "/api/v1/connections/{id}/teams",
            get(api_import::list_connection_teams),
        )
        .route("/api/v1/import-jobs", post(api_import::start_import_job))
        .route("/api/v1/import-jobs/{id}", get(api_import::get_import_job))
        .route("/api/v1/users", get(api_import::list_users))
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
        .route("/signin/{platform}/start", get(console::signin_start))
        .route("/connect", get(console::connect_page))
        .route(
            "/universal-channels",
            get(console_links::universal_channels).post(console_links::create),
        )
        .route("/universal-channels/check", post(console_links::check))
        .route(
            "/universal-channels/{id}/delete",
            post(console_links::delete),
        )
        .route("/users", get(console_links::users))
        .route("/users/link", post(console_links::users_link))
        .route("/users/unlink", post(console_links::users_unlink))
        .route("/users/separate", post(console_links::users_separate))
        .route("/audit", get(console_links::audit))
        .route("/audit/export", get(console_links::audit_export))
        .route("/settings", get(console_links::settings))
        .route("/settings/tokens", post(console_links::create_token))
        .route("/settings/tokens/revoke", post(console_links::revoke_token))
        .route("/deliveries", get(console_deliveries::page))
        .route("/deliveries/{id}/retry", post(console_deliveries::retry))
        .route("/link-account", get(console_linkme::link_page))
        .route(
            "/link-account/{platform}/start",
            get(console_linkme::link_start),
        )
        .route("/link-account/unlink", post(console_linkme::unlink))
        .route("/connect/{platform}/start", get(console::connect_start))
        .route(
            "/connect/{platform}/callback",
            get(console::connect_callback),
        )
        .route(
            "/connect/{platform}/{connection}/teams",
            get(console_import::teams_page).post(console_import::start_import),
        )
        .route(
            "/connect/{platform}/{connection}/import/{job}",
            get(console_import::import_page),
        )
        .route(
            "/connect/{platform}/{connection}/import/{job}/progress",
            get(console_import::import_progress),
        )
        .route("/static/import.js", get(console_import::script))
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
