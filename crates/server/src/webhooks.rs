//! Platform webhooks, wired through core's receiving seam.
//!
//! Each endpoint hands the raw request to the platform's [`WebhookReceiver`] (signature,
//! `clientState`, handshake, parsing — no platform calls), maps every route to the
//! connection it belongs to, stores the items in the inbox, and only then acknowledges.
//! Bad signatures and malformed bodies get 4xx and store nothing; a database that cannot
//! take the items gets 503, so the platform delivers again.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use switchboard_core::{
    ClientStates, ConnectionId, ErrorKind, EventSink, Inbound, OrgId, PlatformKind, Result, Route,
    Store, SubscriptionId, WebhookEndpoint, WebhookOutcome, WebhookReceiver, WebhookRequest,
};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::AppError;

/// The largest webhook body accepted (Slack events and Graph notification batches are far
/// smaller); larger ones get 413 before any parsing.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// Stores inbound items of one connection in the inbox ([`EventSink`] over the store).
#[derive(Clone)]
pub struct InboxSink {
    store: Arc<dyn Store>,
    org: OrgId,
    accepted: Option<Arc<tokio::sync::Notify>>,
}

impl std::fmt::Debug for InboxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxSink").field("org", &self.org).finish()
    }
}

impl InboxSink {
    /// A sink for connections of `org`.
    pub fn new(store: Arc<dyn Store>, org: OrgId) -> Self {
        InboxSink {
            store,
            org,
            accepted: None,
        }
    }

    /// Also notifies `accepted` after items are stored (the relay workers wake at once).
    pub fn notifying(mut self, accepted: Arc<tokio::sync::Notify>) -> Self {
        self.accepted = Some(accepted);
        self
    }
}

#[async_trait]
impl EventSink for InboxSink {
    async fn accept(&self, connection: &ConnectionId, items: Vec<Inbound>) -> Result<()> {
        for chunk in items.chunks(switchboard_core::MAX_INBOX_BATCH) {
            self.store
                .inbox_accept_batch(&self.org, connection, chunk)
                .await?;
        }
        if let Some(n) = &self.accepted {
            n.notify_one();
        }
        Ok(())
    }
}

/// `clientState` secrets looked up in the store ([`ClientStates`] for the Graph receiver).
#[derive(Clone)]
pub struct StoreClientStates {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for StoreClientStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreClientStates")
    }
}

impl StoreClientStates {
    /// Over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreClientStates { store }
    }
}

#[async_trait]
impl ClientStates for StoreClientStates {
    async fn client_state(&self, subscription: &SubscriptionId) -> Result<Option<SecretString>> {
        Ok(self
            .store
            .get_subscription(subscription)
            .await?
            .map(|(_, s)| s.client_state))
    }
}

/// Which connection a route belongs to, `None` when it is none of ours. Slack workspaces
/// are looked up once and then remembered (the acknowledgement path must not scan every
/// organization's connections per delivery).
async fn resolve(state: &AppState, route: &Route) -> Result<Option<(OrgId, ConnectionId)>> {
    let store = state.store.as_ref();
    match route {
        Route::Subscription { subscription } => Ok(store
            .get_subscription(subscription)
            .await?
            .map(|(org, s)| (org, s.connection))),
        Route::Workspace { team } => {
            if let Some(hit) = state.workspace_routes.read().get(team) {
                return Ok(Some(hit.clone()));
            }
            for org in store.list_orgs().await? {
                for c in store.list_connections(&org.id).await? {
                    if c.platform == PlatformKind::Slack && c.tenant.as_str() == team.as_str() {
                        let found = (org.id, c.id);
                        state
                            .workspace_routes
                            .write()
                            .insert(team.clone(), found.clone());
                        return Ok(Some(found));
                    }
                }
            }
            Ok(None)
        }
    }
}

fn endpoint_label(e: WebhookEndpoint) -> &'static str {
    match e {
        WebhookEndpoint::SlackEvents => "slack_events",
        WebhookEndpoint::GraphNotifications => "graph_notifications",
        WebhookEndpoint::GraphLifecycle => "graph_lifecycle",
    }
}

async fn handle(
    state: &AppState,
    endpoint: WebhookEndpoint,
    receiver: Option<&Arc<dyn WebhookReceiver>>,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let label = endpoint_label(endpoint);
    let Some(receiver) = receiver else {
        state.metrics.webhook(label, "rejected");
        return AppError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "this platform is not configured on this server",
        )
        .into_response();
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let query = query.unwrap_or_default();
    let request = WebhookRequest {
        endpoint,
        query: &query,
        headers: &headers,
        body: &body,
        received_at: OffsetDateTime::now_utc(),
    };
    let outcome = match receiver.receive(&request).await {
        Ok(o) => o,
        Err(e) => {
            state.metrics.webhook(label, "rejected");
            let status = match e.kind() {
                ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
                ErrorKind::Storage => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::info!(endpoint = label, error = %e, "webhook refused");
            let code = if status == StatusCode::UNAUTHORIZED {
                "bad_signature"
            } else if status == StatusCode::SERVICE_UNAVAILABLE {
                "unavailable"
            } else {
                "malformed"
            };
            return AppError::new(status, code, e.to_string()).into_response();
        }
    };
    match outcome {
        WebhookOutcome::Handshake { content_type, body } => {
            state.metrics.webhook(label, "handshake");
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        WebhookOutcome::Accept { routed, status } => {
            for group in routed {
                let target = match resolve(state, &group.route).await {
                    Ok(t) => t,
                    Err(e) => return unavailable(state, label, e),
                };
                let Some((org, connection)) = target else {
                    tracing::warn!(endpoint = label, route = ?group.route, "delivery for no connection of ours; acknowledged and dropped");
                    state.metrics.webhook(label, "unrouted");
                    continue;
                };
                let n = group.items.len() as u64;
                let sink = InboxSink::new(state.store.clone(), org)
                    .notifying(state.inbox_accepted.clone());
                if let Err(e) = sink.accept(&connection, group.items).await {
                    return unavailable(state, label, e);
                }
                state.metrics.inbound_items.inc_by(n);
            }
            state.metrics.webhook(label, "stored");
            StatusCode::from_u16(status)
                .unwrap_or(StatusCode::OK)
                .into_response()
        }
    }
}

fn unavailable(state: &AppState, label: &str, e: switchboard_core::Error) -> Response {
    state.metrics.webhook(label, "unavailable");
    tracing::error!(endpoint = label, error = %e, "could not store a webhook delivery; the platform will retry");
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the delivery could not be stored; deliver it again",
    )
    .into_response()
}

/// `POST /webhooks/slack/events`.
pub async fn slack_events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let receiver = state.receivers.slack.clone();
    handle(
        &state,
        WebhookEndpoint::SlackEvents,
        receiver.as_ref(),
        query,
        headers,
        body,
    )
    .await
}

/// `POST /webhooks/msteams/notifications`.
pub async fn graph_notifications(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let receiver = state.receivers.graph.clone();
    handle(
        &state,
        WebhookEndpoint::GraphNotifications,
        receiver.as_ref(),
        query,
        headers,
        body,
    )
    .await
}

/// `POST /webhooks/msteams/lifecycle`.
pub async fn graph_lifecycle(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let receiver = state.receivers.graph.clone();
    handle(
        &state,
        WebhookEndpoint::GraphLifecycle,
        receiver.as_ref(),
        query,
        headers,
        body,
    )
    .await
}
