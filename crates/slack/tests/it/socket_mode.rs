//! The Socket Mode client against a local WebSocket server and a wiremock
//! `apps.connections.open`: hello, acknowledgement only after core's `EventSink` stored the
//! items, none when it failed (Slack redelivers), envelopes handled concurrently, the
//! replacement connection opened before the old one closes on `disconnect`, backoff on
//! `too_many_websockets` and on a dropped connection, and fatal errors that stop the client.

#[allow(unused_imports)]
use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard_core::{ConnectionId, ErrorKind, EventSink, Inbound};
use switchboard_slack::{
    OwnIdentityCache, SlackClient, SlackEventsReceiver, SocketModeClient, SocketModeOptions,
    SocketTarget,
};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

type Log = Arc<Mutex<Vec<String>>>;

struct Recorder {
    log: Log,
    /// Event ids whose first hand-off fails (not stored, so not acknowledged).
    fail_once: Mutex<Vec<String>>,
    /// Event ids whose hand-off is slow (the others must not wait for them).
    slow: Vec<String>,
}

#[switchboard_core::async_trait]
impl EventSink for Recorder {
    async fn accept(
        &self,
        connection: &ConnectionId,
        items: Vec<Inbound>,
    ) -> switchboard_core::Result<()> {
        assert_eq!(connection.as_str(), "conn-1");
        for item in items {
            let Inbound::Event(e) = item else {
                panic!("unexpected {item:?}")
            };
            if self.slow.contains(&e.event_id) {
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
            let mut fail = self.fail_once.lock().unwrap();
            if let Some(i) = fail.iter().position(|f| *f == e.event_id) {
                fail.remove(i);
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("failed:{}", e.event_id));
                return Err(switchboard_core::Error::new(
                    ErrorKind::Storage,
                    "disk full",
                ));
            }
            drop(fail);
            self.log
                .lock()
                .unwrap()
                .push(format!("stored:{}", e.event_id));
        }
        Ok(())
    }
}

fn target(log: &Log, fail_once: &[&str], slow: &[&str]) -> SocketTarget {
    SocketTarget {
        receiver: Arc::new(SlackEventsReceiver::new(
            SecretString::from("unused-for-sockets"),
            Some("A1".into()),
            Arc::new(OwnIdentityCache::default()),
        )),
        sink: Arc::new(Recorder {
            log: log.clone(),
            fail_once: Mutex::new(fail_once.iter().map(|s| (*s).to_owned()).collect()),
            slow: slow.iter().map(|s| (*s).to_owned()).collect(),
        }),
        connection_of: Arc::new(|_| Some(ConnectionId::new("conn-1").unwrap())),
    }
}

fn events_api(envelope_id: &str, event_id: &str, retry_attempt: u32) -> String {
    json!({
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": false,
        "retry_attempt": retry_attempt,
        "retry_reason": if retry_attempt > 0 { "timeout" } else { "" },
        "payload": {
            "token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
            "event_id": event_id, "event_time": 1_700_000_000,
            "event": {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1.1"}
        }
    })
    .to_string()
}

const HELLO: &str = r#"{"type":"hello","num_connections":1,"debug_info":{"host":"test"},"connection_info":{"app_id":"A1"}}"#;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn next_text(ws: &mut Ws) -> Option<String> {
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Text(t)) => return Some(t),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
    None
}

async fn expect_ack(ws: &mut Ws, log: &Log) {
    let text = next_text(ws).await.expect("an acknowledgement");
    let v: Value = serde_json::from_str(&text).unwrap();
    let id = v["envelope_id"].as_str().expect("ack carries envelope_id");
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "an ack is the envelope_id only: {text}"
    );
    log.lock().unwrap().push(format!("ack:{id}"));
}

async fn mount_open(server: &MockServer, ws_url: &str) {
    Mock::given(method("POST"))
        .and(path("/api/apps.connections.open"))
        .and(header("authorization", "Bearer xapp-1-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "url": ws_url})))
        .mount(server)
        .await;
}

fn options() -> SocketModeOptions {
    SocketModeOptions {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        hello_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn acks_after_handoff_and_reconnects_on_disconnect_and_drop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_url = format!("ws://{}/link", listener.local_addr().unwrap());
    let server = MockServer::start().await;
    mount_open(&server, &ws_url).await;
    let log: Log = Arc::default();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();

    let server_log = log.clone();
    let ws_server = tokio::spawn(async move {
        // Connection 1: two envelopes, the second not handed off; then a refresh disconnect.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        server_log.lock().unwrap().push("connected:1".into());
        ws.send(Message::Text(HELLO.into())).await.unwrap();
        ws.send(Message::Text(events_api("env-1", "Ev1", 0)))
            .await
            .unwrap();
        expect_ack(&mut ws, &server_log).await;
        ws.send(Message::Text(events_api("env-2", "Ev2", 0)))
            .await
            .unwrap();
        let silence = tokio::time::timeout(Duration::from_millis(300), next_text(&mut ws)).await;
        assert!(
            silence.is_err(),
            "a failed envelope must not be acknowledged: {silence:?}"
        );
        ws.send(Message::Text(
            r#"{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"test"}}"#
                .into(),
        ))
        .await
        .unwrap();
        // The old connection stays open until the new one said hello.
        let old_log = server_log.clone();
        let old = tokio::spawn(async move {
            let _ = next_text(&mut ws).await;
            old_log.lock().unwrap().push("closed:1".into());
        });

        // Connection 2: Slack redelivers env-2; then the connection just drops.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        server_log.lock().unwrap().push("connected:2".into());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !old.is_finished(),
            "the old connection closed before the new one was up"
        );
        ws.send(Message::Text(HELLO.into())).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), old)
            .await
            .expect("the old connection is closed after the new hello")
            .unwrap();
        ws.send(Message::Text(events_api("env-2", "Ev2", 1)))
            .await
            .unwrap();
        expect_ack(&mut ws, &server_log).await;
        drop(ws);

        // Connection 3: after the backoff; a non-events envelope is acknowledged too.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        server_log.lock().unwrap().push("connected:3".into());
        ws.send(Message::Text(HELLO.into())).await.unwrap();
        ws.send(Message::Text(
            json!({"envelope_id":"env-3","type":"slash_commands","payload":{"command":"/x"},"accepts_response_payload":true}).to_string(),
        ))
        .await
        .unwrap();
        expect_ack(&mut ws, &server_log).await;
        let _ = done_tx.send(());
        let _ = next_text(&mut ws).await;
    });

    let config = config(&server);
    let client = SocketModeClient::new(
        SlackClient::new(&config).unwrap(),
        SecretString::from("xapp-1-secret"),
    )
    .with_options(options());
    assert!(!format!("{client:?}").contains("xapp-1-secret"));
    let handler = target(&log, &["Ev2"], &[]);
    let run = client.run(&handler, async {
        let _ = done_rx.await;
    });
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("finished")
        .expect("clean shutdown");
    ws_server.abort();

    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "connected:1",
            "stored:Ev1",
            "ack:env-1",
            "failed:Ev2",
            "connected:2",
            "closed:1",
            "stored:Ev2",
            "ack:env-2",
            "connected:3",
            "ack:env-3",
        ]
    );
    assert_eq!(
        requests_for(&server, "apps.connections.open").await.len(),
        3
    );
}

#[tokio::test]
async fn link_disabled_and_a_refused_app_token_stop_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_url = format!("ws://{}/link", listener.local_addr().unwrap());
    let server = MockServer::start().await;
    mount_open(&server, &ws_url).await;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(Message::Text(HELLO.into())).await.unwrap();
        ws.send(Message::Text(
            r#"{"type":"disconnect","reason":"link_disabled"}"#.into(),
        ))
        .await
        .unwrap();
        let _ = next_text(&mut ws).await;
    });
    let config = config(&server);
    let handler = target(&Arc::default(), &[], &[]);
    let client = SocketModeClient::new(
        SlackClient::new(&config).unwrap(),
        SecretString::from("xapp-1-secret"),
    )
    .with_options(options());
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        client.run(&handler, std::future::pending()),
    )
    .await
    .expect("stopped")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert!(err.message().contains("link_disabled"), "{err}");

    let refused = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/apps.connections.open"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "invalid_auth"})),
        )
        .expect(1)
        .mount(&refused)
        .await;
    let config = common::config(&refused);
    let client = SocketModeClient::new(
        SlackClient::new(&config).unwrap(),
        SecretString::from("xapp-bad"),
    );
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        client.run(&handler, std::future::pending()),
    )
    .await
    .expect("stopped")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(!format!("{err:?}").contains("xapp-bad"));
}

#[tokio::test]
async fn a_server_that_never_says_hello_is_abandoned_and_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_url = format!("ws://{}/link", listener.local_addr().unwrap());
    let server = MockServer::start().await;
    mount_open(&server, &ws_url).await;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // First connection: silent.
        let (tcp, _) = listener.accept().await.unwrap();
        let _silent = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // Second: a proper session.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(Message::Text(HELLO.into())).await.unwrap();
        let _ = done_tx.send(());
        let _ = next_text(&mut ws).await;
    });
    let config = config(&server);
    let mut opts = options();
    opts.hello_timeout = Duration::from_millis(300);
    let client = SocketModeClient::new(
        SlackClient::new(&config).unwrap(),
        SecretString::from("xapp-1-secret"),
    )
    .with_options(opts);
    let handler = target(&Arc::default(), &[], &[]);
    tokio::time::timeout(
        Duration::from_secs(10),
        client.run(&handler, async {
            let _ = done_rx.await;
        }),
    )
    .await
    .expect("reconnected")
    .unwrap();
    assert_eq!(
        requests_for(&server, "apps.connections.open").await.len(),
        2
    );
}

#[tokio::test]
async fn envelopes_are_handled_concurrently_and_too_many_websockets_backs_off() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_url = format!("ws://{}/link", listener.local_addr().unwrap());
    let server = MockServer::start().await;
    mount_open(&server, &ws_url).await;
    let log: Log = Arc::default();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server_log = log.clone();
    tokio::spawn(async move {
        // Connection 1: Slack has too many connections for the app.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(Message::Text(HELLO.into())).await.unwrap();
        ws.send(Message::Text(
            r#"{"type":"disconnect","reason":"too_many_websockets"}"#.into(),
        ))
        .await
        .unwrap();
        let _ = next_text(&mut ws).await;
        server_log.lock().unwrap().push("closed:1".into());
        // Connection 2, after a backoff: a slow envelope, then a quick one.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(Message::Text(HELLO.into())).await.unwrap();
        ws.send(Message::Text(events_api("env-slow", "EvSlow", 0)))
            .await
            .unwrap();
        ws.send(Message::Text(events_api("env-quick", "EvQuick", 0)))
            .await
            .unwrap();
        expect_ack(&mut ws, &server_log).await;
        expect_ack(&mut ws, &server_log).await;
        let _ = done_tx.send(());
        let _ = next_text(&mut ws).await;
    });
    let client = SocketModeClient::new(
        SlackClient::new(&config(&server)).unwrap(),
        SecretString::from("xapp-1-secret"),
    )
    .with_options(options());
    let handler = target(&log, &[], &["EvSlow"]);
    tokio::time::timeout(
        Duration::from_secs(10),
        client.run(&handler, async {
            let _ = done_rx.await;
        }),
    )
    .await
    .expect("finished")
    .expect("too_many_websockets is not fatal");
    let log = log.lock().unwrap().clone();
    // The quick envelope did not wait for the slow one.
    assert_eq!(
        log,
        vec![
            "closed:1",
            "stored:EvQuick",
            "ack:env-quick",
            "stored:EvSlow",
            "ack:env-slow"
        ]
    );
    assert_eq!(
        requests_for(&server, "apps.connections.open").await.len(),
        2
    );
}
