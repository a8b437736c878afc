//! Slack Events API emulation: signed HTTP delivery (order, retries, shapes) and Socket Mode
//! (hello, events_api envelopes, acks, redelivery, disconnect).

#[allow(unused_imports)]
use crate::slack_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use slack_support::{Env, start};
use switchboard_sandbox::Seed;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Slack's documented verification, written here independently of the sandbox.
fn slack_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn signature_code_matches_slack_test_vector() {
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        slack_signature(
            "8f742231b10e8888abcd99yyyzzz85a5",
            "1531420618",
            body.as_bytes()
        ),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

#[derive(Debug, Clone)]
struct Got {
    headers: HeaderMap,
    body: String,
    json: Value,
}

/// A stand-in for the app's request URL.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Answer 500 to this many deliveries.
    fail: Arc<AtomicU32>,
    /// Hold this many deliveries for `stall_ms` before answering.
    stall: Arc<AtomicU32>,
    stall_ms: Arc<AtomicU64>,
    /// Answer url_verification without the challenge.
    refuse_challenge: Arc<AtomicU32>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if json["type"] == "url_verification" {
        if r.refuse_challenge.load(Ordering::SeqCst) > 0 {
            return "nope".into_response();
        }
        return json["challenge"]
            .as_str()
            .unwrap_or("")
            .to_owned()
            .into_response();
    }
    r.got.lock().push(Got {
        headers,
        body: text,
        json,
    });
    if r.stall
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        tokio::time::sleep(Duration::from_millis(r.stall_ms.load(Ordering::SeqCst))).await;
    }
    if r.fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    "ok".into_response()
}

async fn start_receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/events", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/events"), r)
}

/// Waits until `pred` holds for the received deliveries.
async fn wait_for(r: &Receiver, what: &str, pred: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    for _ in 0..400 {
        {
            let got = r.got.lock();
            if pred(&got) {
                return got.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "timed out waiting for {what}: {:#?}",
        r.got.lock().iter().map(|g| &g.json).collect::<Vec<_>>()
    );
}

fn wrapper_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../specs/slack/event_wrapper_schema.json"
    ))
    .expect("specs/slack/event_wrapper_schema.json is readable");
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&schema)
        .unwrap()
}

async fn subscribe(env: &Env, url: &str) {
    let (st, v) = env
        .control(
            Method::PUT,
            "/event_subscription",
            Some(json!({"request_url": url})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn http_delivery_is_signed_ordered_and_shaped() {
    let env = start(Seed::Small, 600.0).await;
    let (url, rx) = start_receiver().await;

    // the request URL must answer the challenge
    rx.refuse_challenge.store(1, Ordering::SeqCst);
    let (st, v) = env
        .control(
            Method::PUT,
            "/event_subscription",
            Some(json!({"request_url": url})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = env
        .control(
            Method::PUT,
            "/event_subscription",
            Some(json!({"request_url": "not a url"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    rx.refuse_challenge.store(0, Ordering::SeqCst);
    subscribe(&env, &url).await;

    let secret = env.info["slack"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let bot_user = env.seed["bot_user_id"].as_str().unwrap().to_owned();
    let general = env.channel_id("general");
    let random = env.channel_id("random");
    let alice = env.user_id("alice");

    // a channel the bot is not in sends nothing; one it is in sends everything, in order
    env.user_posts("bob", "random", "unseen").await;
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(env.user_posts("alice", "general", &format!("m{i}")).await);
    }
    let got = wait_for(&rx, "20 messages", |g| g.len() >= 20).await;
    let ts: Vec<String> = got
        .iter()
        .map(|g| g.json["event"]["ts"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ts, sent, "delivered in order");

    let validator = wrapper_validator();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for g in &got {
        let stamp = g.headers["x-slack-request-timestamp"].to_str().unwrap();
        let sig = g.headers["x-slack-signature"].to_str().unwrap();
        assert_eq!(sig, slack_signature(&secret, stamp, g.body.as_bytes()));
        assert!(now.abs_diff(stamp.parse::<u64>().unwrap()) < 300);
        assert!(g.headers.get("x-slack-retry-num").is_none());
        let errors: Vec<String> = validator
            .iter_errors(&g.json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{:#}", g.json);
        let v = &g.json;
        assert_eq!(v["type"], "event_callback");
        assert_eq!(v["token"], env.info["slack"]["verification_token"]);
        assert_eq!(v["team_id"], env.seed["team_id"]);
        assert_eq!(v["api_app_id"], env.info["slack"]["app_id"]);
        assert!(v["event_id"].as_str().unwrap().starts_with("Ev"));
        assert!(v["event_time"].is_u64());
        assert_eq!(v["authorizations"][0]["user_id"], bot_user.as_str());
        assert_eq!(v["authorizations"][0]["is_bot"], true);
        assert_eq!(v["is_ext_shared_channel"], false);
        assert!(v["event_context"].is_string());
        let e = &v["event"];
        assert_eq!(e["type"], "message");
        assert_eq!(e["channel"], general.as_str());
        assert_eq!(e["user"], alice.as_str());
        assert_eq!(e["channel_type"], "channel");
        assert_eq!(e["event_ts"], e["ts"]);
    }
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|g| g.json["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 20, "event ids are unique");
    assert!(
        got.iter()
            .all(|g| g.json["event"]["channel"] != random.as_str())
    );
    rx.got.lock().clear();

    // edit, react, delete by a user
    let ts = sent[0].clone();
    let (st, _) = env
        .control(
            Method::PATCH,
            &format!("/messages/general/{ts}"),
            Some(json!({"text": "m0 (edited)"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = env
        .control(
            Method::POST,
            "/reactions",
            Some(json!({"user": "bob", "channel": "general", "ts": ts, "name": "tada"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = env
        .control(
            Method::DELETE,
            "/reactions",
            Some(json!({"user": "bob", "channel": "general", "ts": ts, "name": "tada"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = env
        .control(Method::DELETE, &format!("/messages/general/{ts}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let got = wait_for(&rx, "edit/react/delete", |g| g.len() >= 4).await;
    let e: Vec<&Value> = got.iter().map(|g| &g.json["event"]).collect();
    assert_eq!(e[0]["subtype"], "message_changed");
    assert_eq!(e[0]["hidden"], true);
    assert_eq!(e[0]["message"]["text"], "m0 (edited)");
    assert_eq!(e[0]["message"]["ts"], ts.as_str());
    assert_eq!(e[0]["message"]["edited"]["user"], alice.as_str());
    assert_eq!(e[0]["previous_message"]["text"], "m0");
    assert_eq!(e[1]["type"], "reaction_added");
    assert_eq!(e[1]["reaction"], "tada");
    assert_eq!(e[1]["user"], env.user_id("bob"));
    assert_eq!(e[1]["item_user"], alice.as_str());
    assert_eq!(
        e[1]["item"],
        json!({"type": "message", "channel": general, "ts": ts})
    );
    assert_eq!(e[2]["type"], "reaction_removed");
    assert_eq!(e[3]["subtype"], "message_deleted");
    assert_eq!(e[3]["deleted_ts"], ts.as_str());
    assert_eq!(e[3]["previous_message"]["text"], "m0 (edited)");
    rx.got.lock().clear();

    // the bot's own posts come back, with bot_id and metadata
    let v = env
        .call(
            "chat.postMessage",
            &env.bot,
            &[
                ("channel", &general),
                ("text", "from teams"),
                (
                    "metadata",
                    r#"{"event_type":"switchboard","event_payload":{"id":"1"}}"#,
                ),
            ],
        )
        .await;
    assert_eq!(v["ok"], true);
    let v = env
        .call(
            "chat.postMessage",
            &env.bot,
            &[
                ("channel", &general),
                ("text", "as someone"),
                ("username", "Dan (Teams)"),
            ],
        )
        .await;
    assert_eq!(v["ok"], true);
    let got = wait_for(&rx, "bot posts", |g| g.len() >= 2).await;
    let own = &got[0].json["event"];
    assert_eq!(own["bot_id"], env.info["slack"]["bot_id"]);
    assert_eq!(own["app_id"], env.info["slack"]["app_id"]);
    assert_eq!(own["user"], bot_user.as_str());
    assert_eq!(own["metadata"]["event_type"], "switchboard");
    let custom = &got[1].json["event"];
    assert_eq!(custom["subtype"], "bot_message");
    assert_eq!(custom["username"], "Dan (Teams)");
    rx.got.lock().clear();

    // joining: a channel_join message and member_joined_channel; a file share
    let v = env
        .call("conversations.join", &env.bot, &[("channel", &random)])
        .await;
    assert_eq!(v["ok"], true);
    let (st, _) = env
        .control(
            Method::POST,
            "/files",
            Some(json!({"user": "bob", "channel": "random", "filename": "a.txt", "content": "A"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let got = wait_for(&rx, "join + file", |g| g.len() >= 3).await;
    let e: Vec<&Value> = got.iter().map(|g| &g.json["event"]).collect();
    assert_eq!(e[0]["subtype"], "channel_join");
    assert_eq!(e[1]["type"], "member_joined_channel");
    assert_eq!(e[1]["user"], bot_user.as_str());
    assert_eq!(e[1]["channel"], random.as_str());
    assert_eq!(e[1]["channel_type"], "C");
    assert_eq!(e[2]["subtype"], "file_share");
    assert_eq!(e[2]["files"][0]["name"], "a.txt");
    assert_eq!(e[2]["user"], env.user_id("bob"));

    let (_, log) = env.control(Method::GET, "/events", None).await;
    let entries = log["events"].as_array().unwrap();
    assert!(entries.len() >= 29);
    assert!(
        entries
            .iter()
            .all(|e| e["status"] == "delivered" && e["via"] == "http"),
        "{log:#}"
    );
}

#[tokio::test]
async fn http_delivery_retries_with_retry_headers() {
    // time_scale 600: the +1 min and +5 min retries come after 0.1 s and 0.5 s
    let env = start(Seed::Small, 600.0).await;
    let (url, rx) = start_receiver().await;
    subscribe(&env, &url).await;

    rx.fail.store(2, Ordering::SeqCst);
    env.user_posts("alice", "general", "retry me").await;
    let got = wait_for(&rx, "three attempts", |g| g.len() >= 3).await;
    assert_eq!(got.len(), 3);
    let ids: Vec<&Value> = got.iter().map(|g| &g.json["event_id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "same event each time");
    assert!(got[0].headers.get("x-slack-retry-num").is_none());
    assert_eq!(got[1].headers["x-slack-retry-num"], "1");
    assert_eq!(got[1].headers["x-slack-retry-reason"], "http_error");
    assert_eq!(got[2].headers["x-slack-retry-num"], "2");
    assert_eq!(got[2].headers["x-slack-retry-reason"], "http_error");
    // every attempt is freshly signed
    let secret = env.info["slack"]["signing_secret"].as_str().unwrap();
    for g in &got {
        let stamp = g.headers["x-slack-request-timestamp"].to_str().unwrap();
        assert_eq!(
            g.headers["x-slack-signature"].to_str().unwrap(),
            slack_signature(secret, stamp, g.body.as_bytes())
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, log) = env.control(Method::GET, "/events", None).await;
    assert_eq!(log["events"][0]["attempts"], 3, "{log}");
    assert_eq!(log["events"][0]["status"], "delivered");
    assert_eq!(
        log["events"][0]["retry_reasons"],
        json!(["http_error", "http_error"])
    );

    // never answered: 1 + 3 retries, then given up
    rx.got.lock().clear();
    rx.fail.store(100, Ordering::SeqCst);
    env.user_posts("alice", "general", "doomed").await;
    let got = wait_for(&rx, "four attempts", |g| g.len() >= 4).await;
    assert_eq!(got[3].headers["x-slack-retry-num"], "3");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.got.lock().len(), 4, "no fifth attempt");
    let (_, log) = env.control(Method::GET, "/events", None).await;
    assert_eq!(log["events"][1]["status"], "failed", "{log}");
    assert_eq!(log["events"][1]["attempts"], 4);
}

#[tokio::test]
async fn http_delivery_times_out_after_three_seconds() {
    let env = start(Seed::Small, 600.0).await;
    let (url, rx) = start_receiver().await;
    subscribe(&env, &url).await;
    rx.stall_ms.store(3_600, Ordering::SeqCst);
    rx.stall.store(1, Ordering::SeqCst);
    env.user_posts("alice", "general", "slow").await;
    let got = wait_for(&rx, "a retry after the timeout", |g| g.len() >= 2).await;
    assert_eq!(got[1].headers["x-slack-retry-num"], "1");
    assert_eq!(got[1].headers["x-slack-retry-reason"], "http_timeout");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_socket(env: &Env) -> (Ws, Value, String) {
    let app = env.info["slack"]["app_token"].as_str().unwrap();
    let v = env.call("apps.connections.open", app, &[]).await;
    assert_eq!(v["ok"], true, "{v}");
    let url = v["url"].as_str().unwrap().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let hello = next_json(&mut ws).await;
    (ws, hello, url)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .unwrap();
        if let WsMessage::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn ack(ws: &mut Ws, frame: &Value) {
    let a = json!({"envelope_id": frame["envelope_id"]}).to_string();
    ws.send(WsMessage::Text(a)).await.unwrap();
}

#[tokio::test]
async fn socket_mode_hello_events_ack_redelivery_disconnect() {
    let env = start(Seed::Small, 0.0).await;
    // an event raised before any connection waits for one
    let early = env
        .user_posts("alice", "general", "before connecting")
        .await;

    let (mut a, hello, url) = open_socket(&env).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["num_connections"], 1);
    assert_eq!(
        hello["connection_info"]["app_id"],
        env.info["slack"]["app_id"]
    );
    assert!(hello["debug_info"].is_object());
    // tickets are single use
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());

    let f = next_json(&mut a).await;
    assert_eq!(f["type"], "events_api");
    assert_eq!(f["accepts_response_payload"], false);
    assert_eq!(f["retry_attempt"], 0);
    assert_eq!(f["retry_reason"], "");
    assert_eq!(f["payload"]["event"]["ts"], early.as_str());
    assert_eq!(f["payload"]["type"], "event_callback");
    ack(&mut a, &f).await;

    let ts = env.user_posts("alice", "general", "hello socket").await;
    let f = next_json(&mut a).await;
    assert_eq!(f["payload"]["event"]["ts"], ts.as_str());
    assert!(!f["envelope_id"].as_str().unwrap().is_empty());
    ack(&mut a, &f).await;

    // not acknowledged within 3 s: sent again, same envelope, retry_attempt 1
    let ts = env.user_posts("bob", "general", "ack me later").await;
    let first = next_json(&mut a).await;
    assert_eq!(first["payload"]["event"]["ts"], ts.as_str());
    let again = next_json(&mut a).await;
    assert_eq!(again["envelope_id"], first["envelope_id"]);
    assert_eq!(again["retry_attempt"], 1);
    assert_eq!(again["retry_reason"], "timeout");
    ack(&mut a, &again).await;

    // disconnect: the server asks the client to reconnect; new events go to the new socket
    let (st, v) = env
        .control(Method::POST, "/socket/disconnect", Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["connections"], 1);
    let d = next_json(&mut a).await;
    assert_eq!(d["type"], "disconnect");
    assert_eq!(d["reason"], "refresh_requested");
    let (mut b, hello, _) = open_socket(&env).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["num_connections"], 2);
    let ts = env.user_posts("carol", "general", "after reconnect").await;
    let f = next_json(&mut b).await;
    assert_eq!(f["payload"]["event"]["ts"], ts.as_str());
    ack(&mut b, &f).await;
    drop(a);

    // unacknowledged on a connection that closes: redelivered on the next one at once
    let ts = env.user_posts("dan", "general", "lost in transit").await;
    let f = next_json(&mut b).await;
    assert_eq!(f["payload"]["event"]["ts"], ts.as_str());
    b.close(None).await.unwrap();
    drop(b);
    let (mut c, _, _) = open_socket(&env).await;
    let started = std::time::Instant::now();
    let again = next_json(&mut c).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(again["envelope_id"], f["envelope_id"]);
    assert_eq!(again["payload"]["event"]["ts"], ts.as_str());
    assert_eq!(again["retry_attempt"], 1);
    assert_eq!(again["retry_reason"], "connection_closed");
    ack(&mut c, &again).await;

    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, log) = env.control(Method::GET, "/events", None).await;
    let entries = log["events"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert!(
        entries
            .iter()
            .all(|e| e["status"] == "delivered" && e["via"] == "socket_mode"),
        "{log:#}"
    );
}

#[tokio::test]
async fn shuffle_mode_delivers_every_event_without_order_and_id_only_files() {
    let env = start(Seed::Small, 1.0).await;
    let (url, rx) = start_receiver().await;
    subscribe(&env, &url).await;
    let (st, v) = env
        .control(
            Method::PUT,
            "/modes",
            Some(json!({"shuffle": true, "id_only_files": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let n = 30;
    for i in 0..n {
        env.user_posts("alice", "general", &format!("n{i}")).await;
    }
    let (st, shared) = env
        .control(
            Method::POST,
            "/files",
            Some(
                json!({"user": "alice", "channel": "general", "filename": "f.txt", "content": "x"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{shared}");
    let got = wait_for(&rx, "every event", |g| g.len() > n).await;
    let texts: Vec<String> = got
        .iter()
        .filter_map(|g| g.json["event"]["text"].as_str())
        .filter(|t| t.starts_with('n'))
        .map(str::to_owned)
        .collect();
    let mut sorted = texts.clone();
    sorted.sort_by_key(|t| t[1..].parse::<u32>().unwrap());
    assert_eq!(sorted.len(), n, "each event exactly once");
    assert_eq!(
        sorted.iter().collect::<HashSet<_>>().len(),
        n,
        "no duplicates"
    );
    assert_ne!(texts, sorted, "30 events in shuffle mode kept their order");
    // every event still carries its ts, so a receiver can order them
    assert!(got.iter().all(|g| g.json["event"]["ts"].is_string()));
    let file_event = got
        .iter()
        .find(|g| g.json["event"]["subtype"] == "file_share")
        .expect("the file share");
    let files = &file_event.json["event"]["files"];
    assert_eq!(
        files[0],
        json!({"id": shared["file_id"], "file_access": "check_file_info"}),
        "{files}"
    );
}
