//! Socket Mode: single-use connection tickets, the WebSocket route, `hello`/`disconnect`
//! frames and envelope acknowledgements.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::SharedWorld;

/// How long a ticket from `apps.connections.open` stays valid.
const TICKET_TTL: Duration = Duration::from_secs(60);
/// Grace period between a `disconnect` frame and closing the connection.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum Out {
    Text(String),
    Close,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    /// Sent a `disconnect` frame: gets no new envelopes.
    draining: bool,
}

#[derive(Debug, Default)]
struct HubInner {
    tickets: HashMap<String, Instant>,
    conns: Vec<Conn>,
    next_id: u64,
    rr: usize,
    /// envelope_id → (connection, waiter).
    acks: HashMap<String, (u64, oneshot::Sender<()>)>,
}

/// The open Socket Mode connections of the app.
#[derive(Debug, Default)]
pub(crate) struct SocketHub {
    inner: Mutex<HubInner>,
}

impl SocketHub {
    /// A new single-use ticket for `apps.connections.open`.
    pub fn new_ticket(&self) -> String {
        let ticket = uuid::Uuid::new_v4().simple().to_string();
        let mut inner = self.inner.lock();
        let now = Instant::now();
        inner
            .tickets
            .retain(|_, t| now.duration_since(*t) < TICKET_TTL);
        inner.tickets.insert(ticket.clone(), now);
        ticket
    }

    fn take_ticket(&self, ticket: &str) -> bool {
        let mut inner = self.inner.lock();
        matches!(inner.tickets.remove(ticket), Some(t) if t.elapsed() < TICKET_TTL)
    }

    /// Whether a connection can take envelopes.
    pub fn has_open(&self) -> bool {
        self.inner.lock().conns.iter().any(|c| !c.draining)
    }

    /// Number of open connections (draining ones included).
    pub fn count(&self) -> usize {
        self.inner.lock().conns.len()
    }

    fn register(&self, tx: mpsc::UnboundedSender<Out>) -> (u64, usize) {
        let mut inner = self.inner.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.conns.push(Conn {
            id,
            tx,
            draining: false,
        });
        (id, inner.conns.len())
    }

    fn unregister(&self, id: u64) {
        let mut inner = self.inner.lock();
        inner.conns.retain(|c| c.id != id);
        // Dropping the waiters tells the deliverers the connection is gone.
        inner.acks.retain(|_, (conn, _)| *conn != id);
    }

    /// Sends a frame on the next open connection (round robin) and registers its ack waiter.
    pub(super) fn send_envelope(
        &self,
        envelope_id: &str,
        frame: String,
    ) -> Option<oneshot::Receiver<()>> {
        let mut inner = self.inner.lock();
        let n = inner.conns.len();
        for _ in 0..n {
            inner.rr = (inner.rr + 1) % n.max(1);
            let i = inner.rr;
            let conn = &inner.conns[i];
            if conn.draining {
                continue;
            }
            if conn.tx.send(Out::Text(frame.clone())).is_ok() {
                let id = conn.id;
                let (tx, rx) = oneshot::channel();
                inner.acks.insert(envelope_id.to_owned(), (id, tx));
                return Some(rx);
            }
        }
        None
    }

    pub(super) fn forget_envelope(&self, envelope_id: &str) {
        self.inner.lock().acks.remove(envelope_id);
    }

    fn ack(&self, envelope_id: &str) {
        if let Some((_, tx)) = self.inner.lock().acks.remove(envelope_id) {
            let _ = tx.send(());
        }
    }

    /// Sends a `disconnect` frame to every open connection and closes them after a grace
    /// period. Returns how many connections were told.
    pub fn disconnect_all(&self, reason: &str) -> usize {
        let frame = json!({
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "sandbox-applink-1"},
        })
        .to_string();
        let mut told = Vec::new();
        {
            let mut inner = self.inner.lock();
            for c in inner.conns.iter_mut().filter(|c| !c.draining) {
                c.draining = true;
                let _ = c.tx.send(Out::Text(frame.clone()));
                told.push(c.tx.clone());
            }
        }
        let n = told.len();
        if n > 0 {
            tokio::spawn(async move {
                tokio::time::sleep(DISCONNECT_GRACE).await;
                for tx in told {
                    let _ = tx.send(Out::Close);
                }
            });
        }
        n
    }
}

/// `GET /slack/socket/{ticket}`: the WebSocket a Socket Mode client connects to.
pub(crate) async fn socket_route(
    State(world): State<SharedWorld>,
    Path(ticket): Path<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::BAD_REQUEST,
            "this is a Socket Mode WebSocket endpoint: connect with a WebSocket client",
        )
            .into_response();
    };
    if !world.slack.sockets.take_ticket(&ticket) {
        return (
            StatusCode::UNAUTHORIZED,
            "invalid, used or expired Socket Mode ticket: call apps.connections.open again",
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| run_connection(world, socket))
}

async fn run_connection(world: SharedWorld, socket: WebSocket) {
    let hub = &world.slack.sockets;
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, n) = hub.register(tx);
    let hello = json!({
        "type": "hello",
        "num_connections": n,
        "debug_info": {
            "host": "sandbox-applink-1",
            "build_number": 1,
            "approximate_connection_time": 18060,
        },
        "connection_info": {"app_id": world.slack.app.app_id},
    });
    if sink
        .send(WsMessage::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        hub.unregister(id);
        return;
    }
    world.slack.events.endpoint_changed.notify_waiters();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Text(s)) => {
                    if sink.send(WsMessage::Text(s.into())).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close) | None => {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    break;
                }
            },
            msg = stream.next() => match msg {
                Some(Ok(WsMessage::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                        if let Some(env) = v["envelope_id"].as_str() {
                            hub.ack(env);
                        }
                    }
                }
                Some(Ok(WsMessage::Ping(p))) => {
                    if sink.send(WsMessage::Pong(p)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    hub.unregister(id);
}
