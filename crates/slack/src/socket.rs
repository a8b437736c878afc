//! Socket Mode: events over a WebSocket, no public URL needed.
//!
//! [`SocketModeClient::run`] calls `apps.connections.open` with the app-level (`xapp-`)
//! token, connects to the returned URL, waits for `hello`, then handles envelopes
//! **concurrently**: each `events_api` payload is parsed by the app's
//! [`SlackEventsReceiver`] (our own posts dropped, signals recognised) and handed to core's
//! [`EventSink`] for the route's connection; the envelope is acknowledged with
//! `{"envelope_id":…}` as soon as `accept` returned `Ok` (stored), so a slow envelope never
//! holds up the others (Slack redelivers after about 3 s, with the same `event_id`: the inbox
//! deduplicates). An envelope whose `accept` failed is not acknowledged, so Slack delivers it
//! again. Other envelope types (slash commands, interactivity) and payloads that cannot be
//! parsed are acknowledged and logged: redelivering them would not help.
//!
//! On a `disconnect` frame (`warning`, `refresh_requested`) the client opens the replacement
//! connection first and closes the old one only once the new one said `hello` (Slack warns
//! ahead and allows up to 10 connections per app). `too_many_websockets` is not retried at
//! once (that would make it worse): the client closes the connection and backs off.
//! `link_disabled` and a refused app token stop the client with an error. When the
//! connection drops it reconnects with exponential backoff (with jitter). It returns when the
//! shutdown future completes.
//!
//! Acknowledgements of envelopes still in flight when a connection is replaced are lost with
//! it; Slack redelivers those, and the inbox deduplicates them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use secrecy::SecretString;
use serde_json::Value;
use switchboard_core::{ConnectionId, EventSink, Route, WebhookOutcome};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Args, Auth, CallOptions, SlackClient};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, EventRequest, SlackEventsReceiver};
use crate::types::ConnectionsOpen;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One Socket Mode envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Acknowledge with this.
    pub envelope_id: String,
    /// `events_api`, `slash_commands`, `interactive`, …
    pub envelope_type: String,
    /// The payload (for `events_api`: an Events API body).
    pub payload: Value,
    /// How many times Slack tried before.
    pub retry_attempt: u32,
    /// Why it retried.
    pub retry_reason: Option<String>,
}

impl Envelope {
    /// For `events_api` envelopes: the parsed Events API request.
    pub fn event_request(&self) -> Option<Result<EventRequest>> {
        (self.envelope_type == "events_api")
            .then(|| events::parse_request_value(self.payload.clone()))
    }
}

/// Which connection a route belongs to (`None`: not ours, nothing is stored).
pub type ConnectionOf = Arc<dyn Fn(&Route) -> Option<ConnectionId> + Send + Sync>;

/// Where Socket Mode deliveries go.
#[derive(Clone)]
pub struct SocketTarget {
    /// Parses payloads and recognises our own posts (no API calls).
    pub receiver: Arc<SlackEventsReceiver>,
    /// Stores the items durably; its `Ok` is when an envelope is acknowledged.
    pub sink: Arc<dyn EventSink>,
    /// The connection of each workspace.
    pub connection_of: ConnectionOf,
}

impl std::fmt::Debug for SocketTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketTarget")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

/// Envelopes handled at once on one connection (more wait for a slot, unacknowledged).
const MAX_IN_FLIGHT: usize = 64;

/// Handles one envelope; `true` when it may be acknowledged.
async fn hand_off(target: &SocketTarget, envelope: &Envelope) -> bool {
    let Some(parsed) = envelope.event_request() else {
        tracing::debug!(envelope_type = %envelope.envelope_type, "Socket Mode envelope type not handled; acknowledged");
        return true;
    };
    let outcome = match parsed.and_then(|r| target.receiver.outcome(r)) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(envelope_id = %envelope.envelope_id, error = %e, "Socket Mode payload not understood; acknowledged and dropped");
            return true;
        }
    };
    let WebhookOutcome::Accept { routed, .. } = outcome else {
        return true;
    };
    for group in routed {
        let Some(connection) = (target.connection_of)(&group.route) else {
            tracing::warn!(route = ?group.route, "Socket Mode event for a workspace with no connection; dropped");
            continue;
        };
        if let Err(e) = target.sink.accept(&connection, group.items).await {
            tracing::warn!(envelope_id = %envelope.envelope_id, error = %e, "Socket Mode envelope not stored; not acknowledged (Slack will retry)");
            return false;
        }
    }
    true
}

/// Timing of the Socket Mode client.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketModeOptions {
    /// First reconnect delay after a dropped connection.
    pub initial_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// How long to wait for `hello` after connecting.
    pub hello_timeout: Duration,
    /// How often to ping the server.
    pub ping_interval: Duration,
    /// A connection silent for this long is considered dead.
    pub idle_timeout: Duration,
}

impl Default for SocketModeOptions {
    fn default() -> Self {
        SocketModeOptions {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// What ended one connection.
enum SessionEnd {
    /// Slack asked us to reconnect (`disconnect`): open the next connection at once, then
    /// close this one (handed over, still open).
    Refresh(Box<Ws>),
    /// The connection failed or dropped (or Slack said `too_many_websockets`): back off.
    Dropped(Error),
}

/// The Socket Mode client of one app.
pub struct SocketModeClient {
    client: SlackClient,
    app_token: SecretString,
    options: SocketModeOptions,
}

impl std::fmt::Debug for SocketModeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketModeClient")
            .field("api_base", &self.client.api_base().as_str())
            .field("app_token", &"<redacted>")
            .field("options", &self.options)
            .finish()
    }
}

impl SocketModeClient {
    /// A client opening connections through `client` with the app-level token.
    pub fn new(client: SlackClient, app_token: SecretString) -> SocketModeClient {
        SocketModeClient {
            client,
            app_token,
            options: SocketModeOptions::default(),
        }
    }

    /// Replaces the timing options.
    pub fn with_options(mut self, options: SocketModeOptions) -> SocketModeClient {
        self.options = options;
        self
    }

    /// Asks Slack for a WebSocket URL (`apps.connections.open`).
    pub async fn open_url(&self) -> Result<String> {
        let answer = self
            .client
            .call::<ConnectionsOpen>(
                "apps.connections.open",
                Auth::Bearer(&self.app_token),
                &Args::None,
                CallOptions::default(),
            )
            .await?;
        let url = answer.body.url;
        if !(url.starts_with("wss://") || url.starts_with("ws://")) {
            return Err(Error::upstream(
                "apps.connections.open returned a URL that is not a WebSocket URL",
            ));
        }
        Ok(url)
    }

    /// Runs until `shutdown` completes (then `Ok`) or a failure retrying cannot fix.
    pub async fn run<S>(&self, target: &SocketTarget, shutdown: S) -> Result<()>
    where
        S: Future<Output = ()> + Send,
    {
        tokio::pin!(shutdown);
        let mut backoff = self.options.initial_backoff;
        let mut previous: Option<Box<Ws>> = None;
        loop {
            let end = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                end = self.session(target, &mut backoff, previous.take()) => end,
            };
            match end {
                Ok(SessionEnd::Refresh(old)) => {
                    tracing::debug!("Socket Mode: reconnecting on Slack's request");
                    previous = Some(old);
                }
                Ok(SessionEnd::Dropped(e)) | Err(e) => {
                    if is_fatal(&e) {
                        return Err(e);
                    }
                    let jitter = rand::thread_rng().gen_range(0.8..1.2);
                    let wait = backoff.mul_f64(jitter);
                    tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "Socket Mode connection lost; reconnecting");
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    async fn session(
        &self,
        target: &SocketTarget,
        backoff: &mut Duration,
        mut previous: Option<Box<Ws>>,
    ) -> Result<SessionEnd> {
        let url = self.open_url().await?;
        let connect = tokio_tungstenite::connect_async(url.as_str());
        let (mut ws, _) = match tokio::time::timeout(self.options.hello_timeout, connect).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                return Ok(SessionEnd::Dropped(Error::upstream(format!(
                    "Socket Mode connection failed: {e}"
                ))));
            }
            Err(_) => {
                return Ok(SessionEnd::Dropped(Error::upstream(
                    "Socket Mode connection timed out",
                )));
            }
        };
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut greeted = false;
        let mut ping = tokio::time::interval(self.options.ping_interval);
        ping.tick().await;
        let mut last_seen = tokio::time::Instant::now();
        loop {
            let wait_limit = if greeted {
                self.options.idle_timeout
            } else {
                self.options.hello_timeout
            };
            let deadline = last_seen + wait_limit;
            let frame = tokio::select! {
                frame = ws.next() => frame,
                Some(envelope_id) = ack_rx.recv() => {
                    let ack = serde_json::json!({ "envelope_id": envelope_id }).to_string();
                    if let Err(e) = ws.send(Message::Text(ack)).await {
                        return Ok(SessionEnd::Dropped(Error::upstream(format!(
                            "Socket Mode acknowledgement failed: {e}"
                        ))));
                    }
                    continue;
                }
                _ = ping.tick() => {
                    if let Err(e) = ws.send(Message::Ping(Vec::new())).await {
                        return Ok(SessionEnd::Dropped(Error::upstream(format!("Socket Mode ping failed: {e}"))));
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let what = if greeted { "went silent" } else { "sent no hello" };
                    return Ok(SessionEnd::Dropped(Error::upstream(format!("Socket Mode connection {what}"))));
                }
            };
            last_seen = tokio::time::Instant::now();
            let text = match frame {
                None => {
                    return Ok(SessionEnd::Dropped(Error::upstream(
                        "Socket Mode connection closed",
                    )));
                }
                Some(Err(e)) => {
                    return Ok(SessionEnd::Dropped(Error::upstream(format!(
                        "Socket Mode connection failed: {e}"
                    ))));
                }
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) => {
                    return Ok(SessionEnd::Dropped(Error::upstream(
                        "Socket Mode connection closed by Slack",
                    )));
                }
                Some(Ok(Message::Ping(_))) => {
                    // tungstenite queued the pong; push it out now.
                    let _ = ws.flush().await;
                    continue;
                }
                Some(Ok(_)) => continue,
            };
            let value: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "Socket Mode frame is not JSON; ignored");
                    continue;
                }
            };
            let frame_type = value.get("type").and_then(Value::as_str).unwrap_or("");
            match frame_type {
                "hello" => {
                    greeted = true;
                    *backoff = self.options.initial_backoff;
                    tracing::debug!("Socket Mode: hello");
                    // The replacement is up: now the old connection may go.
                    if let Some(old) = previous.take() {
                        let mut old = *old;
                        let _ = old.close(None).await;
                    }
                }
                "disconnect" => {
                    let reason = value.get("reason").and_then(Value::as_str).unwrap_or("");
                    match reason {
                        "link_disabled" => {
                            let _ = ws.close(None).await;
                            return Err(Error::new(
                                ErrorKind::Forbidden,
                                "Slack disabled Socket Mode for this app (disconnect: link_disabled): turn it on in the app settings or use the Events API",
                            ));
                        }
                        "too_many_websockets" => {
                            let _ = ws.close(None).await;
                            return Ok(SessionEnd::Dropped(Error::upstream(
                                "Slack refused another Socket Mode connection (too_many_websockets: at most 10 per app); backing off",
                            )));
                        }
                        _ => return Ok(SessionEnd::Refresh(Box::new(ws))),
                    }
                }
                _ => {
                    let Some(envelope_id) = value
                        .get("envelope_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                    else {
                        tracing::debug!(
                            frame_type,
                            "Socket Mode frame without envelope_id; ignored"
                        );
                        continue;
                    };
                    let envelope = Envelope {
                        envelope_id: envelope_id.clone(),
                        envelope_type: frame_type.to_owned(),
                        payload: value.get("payload").cloned().unwrap_or(Value::Null),
                        retry_attempt: value
                            .get("retry_attempt")
                            .and_then(Value::as_u64)
                            .unwrap_or(0) as u32,
                        retry_reason: value
                            .get("retry_reason")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    };
                    let (target, ack_tx, slots) = (target.clone(), ack_tx.clone(), slots.clone());
                    tokio::spawn(async move {
                        let Ok(_slot) = slots.acquire_owned().await else {
                            return;
                        };
                        if hand_off(&target, &envelope).await {
                            let _ = ack_tx.send(envelope.envelope_id);
                        }
                    });
                }
            }
        }
    }
}

fn is_fatal(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::NeedsReauth
            | ErrorKind::InvalidInput
    )
}
