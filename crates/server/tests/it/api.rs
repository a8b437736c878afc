use axum::body::Body;
use axum::http::{Request, StatusCode};
use secrecy::SecretString;
use serde_json::json;
use switchboard_server::Receivers;

use crate::support::World;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let w = World::new(Receivers::default()).await;
    let (s, h, body) = w
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, b"ok");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let (s, _, _) = w
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = w
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    // the requests above were counted by route template
    assert!(
        text.contains("switchboard_http_requests_total{route=\"/healthz\",status=\"200\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn the_api_needs_a_valid_token() {
    let w = World::new(Receivers::default()).await;
    let (s, body) = w.json("GET", "/api/v1/connections", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthorized");
    let wrong = SecretString::from("sb_not-a-token".to_owned());
    let (s, _) = w
        .json("GET", "/api/v1/connections", Some(&wrong), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = w
        .json("GET", "/api/v1/connections", Some(&w.token_a), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let list = body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|c| c["health"] == "ok"));
    assert!(
        list.iter()
            .any(|c| c["platform"] == "slack" && c["tenant"] == "T1")
    );
    assert!(
        list.iter()
            .any(|c| c["id"] == w.teams.as_str() && c["platform"] == "msteams")
    );
    // unknown routes are JSON errors too
    let (s, body) = w.json("GET", "/api/v1/nope", Some(&w.token_a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn universal_channels_are_created_listed_audited_and_deleted() {
    let w = World::new(Receivers::default()).await;
    let (s, channels) = w
        .json("GET", "/api/v1/channels", Some(&w.token_a), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let refs: Vec<&str> = channels
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ref"].as_str().unwrap())
        .collect();
    assert!(refs.contains(&"slack:T1/C1"));
    assert!(refs.contains(&"msteams:team-1/19:a@thread.tacv2"));

    // one platform only: refused, nothing stored
    let (s, body) = w
        .json(
            "POST",
            "/api/v1/universal-channels",
            Some(&w.token_a),
            Some(json!({"name": "x", "endpoints": ["slack:T1/C1", "slack:T1/C2"]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "invalid_input");
    // a channel that was never imported
    let (s, body) = w
        .json(
            "POST",
            "/api/v1/universal-channels",
            Some(&w.token_a),
            Some(json!({"name": "x", "endpoints": ["slack:T1/C9", "msteams:team-1/19:a@thread.tacv2"]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("has not been imported")
    );
    // not a reference at all
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/universal-channels",
            Some(&w.token_a),
            Some(json!({"name": "x", "endpoints": ["nonsense", "slack:T1/C1"]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, list) = w
        .json("GET", "/api/v1/universal-channels", Some(&w.token_a), None)
        .await;
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "refused links stored nothing"
    );

    let (s, created) = w
        .json(
            "POST",
            "/api/v1/universal-channels",
            Some(&w.token_a),
            Some(json!({"name": "general", "endpoints": ["slack:T1/C1", "msteams:team-1/19:a@thread.tacv2"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, list) = w
        .json("GET", "/api/v1/universal-channels", Some(&w.token_a), None)
        .await;
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["endpoints"].as_array().unwrap().len(), 2);

    // org B sees nothing of it and cannot delete it
    let (_, list_b) = w
        .json("GET", "/api/v1/universal-channels", Some(&w.token_b), None)
        .await;
    assert_eq!(list_b.as_array().unwrap().len(), 0);
    let (_, conns_b) = w
        .json("GET", "/api/v1/connections", Some(&w.token_b), None)
        .await;
    assert_eq!(conns_b.as_array().unwrap().len(), 0);
    let path = format!("/api/v1/universal-channels/{id}");
    let (s, _) = w.json("DELETE", &path, Some(&w.token_b), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _) = w.json("DELETE", &path, Some(&w.token_a), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = w.json("DELETE", &path, Some(&w.token_a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, audit) = w.json("GET", "/api/v1/audit", Some(&w.token_a), None).await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["universal_channel.created", "universal_channel.deleted"]
    );
    assert_eq!(audit[0]["actor"], "admin:alice");
    let (s, check) = w
        .json("GET", "/api/v1/audit/verify", Some(&w.token_a), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(check["ok"], true);
    assert_eq!(check["checked"], 2);
    let (_, audit_b) = w.json("GET", "/api/v1/audit", Some(&w.token_b), None).await;
    assert_eq!(audit_b.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_openapi_document_describes_the_routes() {
    let w = World::new(Receivers::default()).await;
    let (s, doc) = w.json("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/connections",
        "/api/v1/channels",
        "/api/v1/universal-channels",
        "/api/v1/universal-channels/{id}",
        "/api/v1/audit",
        "/api/v1/audit/verify",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn malformed_and_oversized_api_bodies_are_refused() {
    let w = World::new(Receivers::default()).await;
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/universal-channels",
            Some(&w.token_a),
            Some(json!({"endpoints": 3})),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    let big = "x".repeat(300 * 1024);
    let (s, _) = w
        .json(
            "POST",
            "/api/v1/universal-channels",
            Some(&w.token_a),
            Some(json!({"name": big, "endpoints": []})),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}
