//! Socket Mode: events over a WebSocket, no public URL needed.
//!
//! [`SocketModeClient::run`] calls `apps.connections.open` with the app-level (`xapp-`)
//! token, connects to the returned URL, waits for `hello`, then hands every envelope to the
//! [`EnvelopeHandler`] **in order** and acknowledges it with `{"envelope_id":…}` only after
//! the handler returned `Ok` (the event is durably handed off); an envelope whose handler
//! failed is not acknowledged, so Slack delivers it again. On a `disconnect` frame it opens a
//! fresh connection at once; when the connection drops it reconnects with exponential
//! backoff (with jitter). It returns when the shutdown future completes, or with an error
//! that retrying cannot fix (a refused app token, Socket Mode turned off).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use secrecy::SecretString;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Args, Auth, CallOptions, SlackClient};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, EventRequest};
use crate::types::ConnectionsOpen;

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

/// Receives envelopes. Return `Ok` only once the envelope is safely handed off (stored):
/// that is when it is acknowledged.
#[async_trait]
pub trait EnvelopeHandler: Send + Sync {
    /// Handles one envelope.
    async fn handle(&self, envelope: Envelope) -> Result<()>;
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
    /// Slack asked us to reconnect (`disconnect`): do so at once.
    Refresh,
    /// The connection failed or dropped: back off.
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
    pub async fn run<H, S>(&self, handler: &H, shutdown: S) -> Result<()>
    where
        H: EnvelopeHandler + ?Sized,
        S: Future<Output = ()> + Send,
    {
        tokio::pin!(shutdown);
        let mut backoff = self.options.initial_backoff;
        loop {
            let end = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                end = self.session(handler, &mut backoff) => end,
            };
            match end {
                Ok(SessionEnd::Refresh) => {
                    tracing::debug!("Socket Mode: reconnecting on Slack's request");
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

    async fn session<H>(&self, handler: &H, backoff: &mut Duration) -> Result<SessionEnd>
    where
        H: EnvelopeHandler + ?Sized,
    {
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
                }
                "disconnect" => {
                    let reason = value.get("reason").and_then(Value::as_str).unwrap_or("");
                    let _ = ws.close(None).await;
                    if reason == "link_disabled" {
                        return Err(Error::new(
                            ErrorKind::Forbidden,
                            "Slack disabled Socket Mode for this app (disconnect: link_disabled): turn it on in the app settings or use the Events API",
                        ));
                    }
                    return Ok(SessionEnd::Refresh);
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
                    match handler.handle(envelope).await {
                        Ok(()) => {
                            let ack = serde_json::json!({ "envelope_id": envelope_id }).to_string();
                            if let Err(e) = ws.send(Message::Text(ack)).await {
                                return Ok(SessionEnd::Dropped(Error::upstream(format!(
                                    "Socket Mode acknowledgement failed: {e}"
                                ))));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(envelope_id, error = %e, "Socket Mode envelope not handed off; not acknowledged (Slack will retry)");
                        }
                    }
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
