use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use switchboard_server::Receivers;

use crate::support::{TestReceiver, World};

fn receivers() -> Receivers {
    Receivers {
        slack: Some(Arc::new(TestReceiver)),
        graph: Some(Arc::new(TestReceiver)),
    }
}

fn post(path: &str, signature: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("x-test-signature", signature)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

async fn inbox_len(w: &World) -> usize {
    w.store
        .inbox_lease(
            &switchboard_core::WorkerId::new("test-worker").unwrap(),
            1000,
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn verified_deliveries_are_stored_before_they_are_acknowledged() {
    let w = World::new(receivers()).await;
    let (s, _, _) = w
        .send(post(
            "/webhooks/slack/events",
            "good",
            r#"{"team":"T1","events":["Ev1","Ev2"]}"#,
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    // a retry of the same delivery is acknowledged and not stored twice
    let (s, _, _) = w
        .send(post(
            "/webhooks/slack/events",
            "good",
            r#"{"team":"T1","events":["Ev2"]}"#,
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let leased = w
        .store
        .inbox_lease(
            &switchboard_core::WorkerId::new("test-worker").unwrap(),
            1000,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);
    assert!(
        leased
            .iter()
            .all(|i| i.connection == w.slack && i.org == w.org_a)
    );
}

#[tokio::test]
async fn bad_signatures_malformed_and_oversized_bodies_store_nothing() {
    let w = World::new(receivers()).await;
    let body = r#"{"team":"T1","events":["Ev1"]}"#;
    let (s, _, b) = w.send(post("/webhooks/slack/events", "bad", body)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["code"], "bad_signature");
    let (s, _, _) = w
        .send(post("/webhooks/slack/events", "good", "{not json"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let huge = format!(
        r#"{{"team":"T1","events":["Ev1"],"pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (s, _, _) = w.send(post("/webhooks/slack/events", "good", huge)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(inbox_len(&w).await, 0);
}

#[tokio::test]
async fn handshakes_are_answered_and_strangers_dropped() {
    let w = World::new(receivers()).await;
    let (s, h, b) = w
        .send(
            Request::post("/webhooks/msteams/notifications?validationToken=abc123")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(b, b"abc123");
    // a verified delivery for a workspace no connection serves: acknowledged, not stored
    let (s, _, _) = w
        .send(post(
            "/webhooks/slack/events",
            "good",
            r#"{"team":"T404","events":["Ev9"]}"#,
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(inbox_len(&w).await, 0);
}

#[tokio::test]
async fn an_unconfigured_platform_has_no_webhook() {
    let w = World::new(Receivers::default()).await;
    let (s, _, _) = w.send(post("/webhooks/slack/events", "good", "{}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The real Slack receiver behind the router: v0 signatures over the timestamp and body,
/// and Slack's five-minute window.
#[tokio::test]
async fn slack_signatures_and_stale_timestamps_are_checked_by_the_real_receiver() {
    use secrecy::SecretString;
    use switchboard_slack::events::{compute_signature, now_unix};
    use switchboard_slack::{OwnIdentityCache, SlackEventsReceiver};
    let secret = "test-signing-secret-0123456789";
    let w = World::new(Receivers {
        slack: Some(Arc::new(SlackEventsReceiver::new(
            SecretString::from(secret.to_owned()),
            None,
            Arc::new(OwnIdentityCache::default()),
        ))),
        graph: None,
    })
    .await;
    let body = serde_json::json!({
        "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
        "event_id": "EvREAL1", "event_time": 1_700_000_000,
        "event": { "type": "message", "channel": "C1", "user": "U1", "text": "hi",
                   "ts": "1700000000.000100", "channel_type": "channel" },
    })
    .to_string();
    let signed = |ts: i64, secret: &str, body: &str| {
        let ts = ts.to_string();
        let sig = compute_signature(&SecretString::from(secret.to_owned()), &ts, body.as_bytes());
        Request::post("/webhooks/slack/events")
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig)
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let now = now_unix() as i64;
    // stale: signed correctly, ten minutes old (a replay)
    let (s, _, _) = w.send(signed(now - 600, secret, &body)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a stale timestamp is refused");
    // signed with another secret
    let (s, _, _) = w.send(signed(now, "another-secret", &body)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // the body changed after signing
    let mut tampered = signed(now, secret, &body);
    *tampered.body_mut() = Body::from(body.replace("hi", "ha"));
    let (s, _, _) = w.send(tampered).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(inbox_len(&w).await, 0, "nothing refused was stored");
    // fresh and signed: stored, then acknowledged
    let (s, _, _) = w.send(signed(now, secret, &body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(inbox_len(&w).await, 1);
}
