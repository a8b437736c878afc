//! Limits of the control API: out-of-range fault specs are refused with a clear 400 (never a
//! panic that kills the connection), and an oversized Teams message body is 413.

#[allow(unused_imports)]
use crate::msteams_support;

use msteams_support::*;
use reqwest::Method;
use serde_json::json;
use switchboard_sandbox::Seed;

#[tokio::test]
async fn out_of_range_fault_specs_are_400_and_change_nothing() {
    let env = start(Seed::Small, 0.0).await;
    for bad in [
        json!({"platform": "msteams", "kind": "error_5xx", "rate": 1.0, "seconds": 1e300}),
        json!({"platform": "msteams", "kind": "error_5xx", "rate": 1.0, "seconds": 1e19}),
        json!({"platform": "msteams", "kind": "error_5xx", "rate": 1.0, "seconds": -5}),
        json!({"platform": "slack", "kind": "stall", "rate": 1.0, "stall_seconds": 1e300}),
        json!({"platform": "slack", "kind": "stall", "rate": 1.0, "stall_seconds": -1}),
        json!({"platform": "msteams", "kind": "error_5xx", "rate": -0.5}),
        json!({"platform": "msteams", "kind": "error_5xx", "rate": 1e300}),
        json!({"platform": "msteams", "kind": "throttle_429", "rate": 1.0, "retry_after": -1}),
        json!({"platform": "msteams", "kind": "throttle_429", "rate": 1.0, "retry_after": 1e19}),
        json!({"platform": "msteams", "kind": "error_5xx", "rate": "NaN"}),
    ] {
        let r = env
            .control(Method::POST, "/faults", Some(bad.clone()))
            .await;
        assert_eq!(r.status, 400, "{bad} → {}", r.body);
        assert!(
            r.body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: the 400 says why: {}",
            r.body
        );
    }
    // nothing was added: Graph still answers normally
    let r = env.get(&env.svc_token, "/me").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // and the server is still up and accepts a valid spec
    let r = env
        .control(
            Method::POST,
            "/faults",
            Some(json!({"platform": "msteams", "kind": "error_5xx", "rate": 1.0, "seconds": 31536000})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(env.get(&env.svc_token, "/me").await.status, 503);
    assert_eq!(
        env.control(Method::DELETE, "/faults", None).await.status,
        204
    );
    assert_eq!(env.get(&env.svc_token, "/me").await.status, 200);
}

#[tokio::test]
async fn oversized_teams_message_is_413_and_posts_nothing() {
    let env = start(Seed::Small, 0.0).await;
    let (team, chan) = env.channel("Engineering", "Backend").await;
    let list = format!("/msteams/teams/{team}/channels/{chan}/messages");
    let before = env.control(Method::GET, &list, None).await;
    assert_eq!(before.status, 200, "{}", before.body);
    let post = |html: String| json!({"user": "alice@contoso.com", "team": "Engineering", "channel": "Backend", "html": html});
    // over Graph's ~28 KB message limit
    let big = format!("<p>{}</p>", "x".repeat(40 * 1024));
    let r = env
        .control(Method::POST, "/msteams/messages", Some(post(big)))
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body["error"].as_str().unwrap_or("").contains("exceeds"));
    // over the HTTP body limit itself
    let huge = "y".repeat(3 * 1024 * 1024);
    let r = env
        .control(Method::POST, "/msteams/messages", Some(post(huge)))
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    let after = env.control(Method::GET, &list, None).await;
    assert_eq!(after.body, before.body, "a refused post stores nothing");
    // a message within the limit still posts
    let r = env
        .control(
            Method::POST,
            "/msteams/messages",
            Some(post(format!("<p>{}</p>", "z".repeat(20 * 1024)))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}
