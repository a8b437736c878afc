//! The Graph client against wiremock: bearer, error mapping, 401 refresh, 429/503 with and
//! without Retry-After, 5xx, malformed JSON, bounded give-up, paging verbatim, pacing.

#[allow(unused_imports)]
use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use secrecy::SecretString;
use switchboard_core::ErrorKind;
use switchboard_msteams::graph::{GraphRequest, Page};
use switchboard_msteams::pacer::Bucket;
use switchboard_msteams::wire::GraphTeam;
use switchboard_msteams::{MsTeamsConnection, RateLimits, RetryPolicy, TokenProvider};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn teams_page(ids: &[&str], next: Option<String>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#teams",
        "value": ids.iter().map(|id| serde_json::json!({"id": id, "displayName": format!("Team {id}"), "description": null})).collect::<Vec<_>>()
    });
    if let Some(n) = next {
        v["@odata.nextLink"] = serde_json::Value::String(n);
    }
    v
}

#[tokio::test]
async fn requests_carry_the_bearer_and_parse_json() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"id": "T1", "displayName": "Eng", "unknownField": [1, 2]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let url = conn.graph().url(&["teams", "T1"], &[]);
    let t: GraphTeam = conn.graph().get_json(url).await.unwrap();
    assert_eq!(t.display_name.as_deref(), Some("Eng"));
}

#[tokio::test]
async fn http_errors_map_to_error_kinds_with_graph_codes() {
    let server = MockServer::start().await;
    let conn = fixed_conn(&server);
    for (status, code, kind) in [
        (400, "BadRequest", ErrorKind::InvalidInput),
        (403, "Forbidden", ErrorKind::Forbidden),
        (404, "NotFound", ErrorKind::NotFound),
        (409, "Conflict", ErrorKind::Conflict),
        (501, "NotImplemented", ErrorKind::Upstream),
    ] {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path("/v1.0/teams/T1"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(graph_error(code, "Something is wrong")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let url = conn.graph().url(&["teams", "T1"], &[]);
        let e = conn.graph().get_json::<GraphTeam>(url).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{status}");
        assert!(e.message().contains(code), "{e}");
        assert!(e.message().contains("request-id req-42"), "{e}");
        assert!(e.message().starts_with("GET /v1.0/teams/T1"), "{e}");
        assert!(!e.to_string().contains(TOKEN));
    }
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_with_the_new_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .and(header("authorization", "Bearer at-revoked"))
        .respond_with(ResponseTemplate::new(401).set_body_json(graph_error(
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .and(header("authorization", "Bearer at-fresh"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "T1"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_json("at-fresh", "rt-2")))
        .expect(1)
        .mount(&server)
        .await;
    let tokens = refreshing_provider(&server, creds("at-revoked", Some("rt-1"), 3000, &[]), None);
    let conn = MsTeamsConnection::new(config(&server), tokens).unwrap();
    let url = conn.graph().url(&["teams", "T1"], &[]);
    let t: GraphTeam = conn.graph().get_json(url).await.unwrap();
    assert_eq!(t.id, "T1");
}

#[tokio::test]
async fn a_401_after_refresh_is_unauthorized_not_a_loop() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(graph_error("InvalidAuthenticationToken", "nope")),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_json("at-2", "rt-2")))
        .expect(1)
        .mount(&server)
        .await;
    let tokens = refreshing_provider(&server, creds("at-1", Some("rt-1"), 3000, &[]), None);
    let conn = MsTeamsConnection::new(config(&server), tokens).unwrap();
    let url = conn.graph().url(&["teams", "T1"], &[]);
    let e = conn.graph().get_json::<GraphTeam>(url).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    // a fixed token cannot be refreshed: Unauthorized after one attempt
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    let fixed = fixed_conn(&server);
    let url = fixed.graph().url(&["teams", "T1"], &[]);
    assert_eq!(
        fixed
            .graph()
            .get_json::<GraphTeam>(url)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthorized
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(graph_error("TooManyRequests", "Too many requests")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "T1"})))
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let started = Instant::now();
    let url = conn.graph().url(&["teams", "T1"], &[]);
    conn.graph().get_json::<GraphTeam>(url).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    assert_eq!(conn.graph().pacer().stats().throttled, 1);
}

#[tokio::test]
async fn a_429_or_503_without_retry_after_backs_off_and_succeeds() {
    for status in [429u16, 503] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1.0/teams/T1"))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(2)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/teams/T1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "T1"})))
            .mount(&server)
            .await;
        let conn = fixed_conn(&server);
        let url = conn.graph().url(&["teams", "T1"], &[]);
        conn.graph().get_json::<GraphTeam>(url).await.unwrap();
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            3,
            "{status}"
        );
    }
}

#[tokio::test]
async fn persistent_throttling_gives_up_with_a_clear_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(
            ResponseTemplate::new(429).set_body_json(graph_error("TooManyRequests", "slow down")),
        )
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let url = conn.graph().url(&["teams", "T1"], &[]);
    let e = conn.graph().get_json::<GraphTeam>(url).await.unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::RateLimited {
                retry_after: Some(_)
            }
        ),
        "{e}"
    );
    assert!(e.message().contains("gave up after 4 attempt(s)"), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 4);

    // a Retry-After longer than the remaining budget gives up at once, telling the caller
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "60"))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let url = conn.graph().url(&["teams", "T1"], &[]);
    let e = conn.graph().get_json::<GraphTeam>(url).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_but_not_for_posts() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "T1"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/teams/T1/channels/C1/messages"))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let url = conn.graph().url(&["teams", "T1"], &[]);
    conn.graph().get_json::<GraphTeam>(url).await.unwrap();
    let post = GraphRequest::new(
        Method::POST,
        conn.graph()
            .url(&["teams", "T1", "channels", "C1", "messages"], &[]),
    )
    .json(serde_json::json!({"body": {"content": "x"}}));
    let f = conn.graph().send(&post).await.unwrap_err();
    assert_eq!(f.status, Some(502));
    assert_eq!(f.error.kind(), ErrorKind::Upstream);

    // persistent 5xx on a read: bounded, then a clear error
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T2"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(graph_error("ServiceUnavailable", "busy")),
        )
        .expect(4)
        .mount(&server)
        .await;
    let url = conn.graph().url(&["teams", "T2"], &[]);
    let e = conn.graph().get_json::<GraphTeam>(url).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    assert!(
        e.message().contains("gave up") && e.message().contains("ServiceUnavailable"),
        "{e}"
    );
}

#[tokio::test]
async fn malformed_json_is_an_upstream_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams/T1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"id\": \"T1\", "))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"items": []})))
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let e = conn
        .graph()
        .get_json::<GraphTeam>(conn.graph().url(&["teams", "T1"], &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    assert!(e.message().contains("not the expected JSON"), "{e}");
    let e = conn
        .graph()
        .get_page::<GraphTeam>(conn.graph().url(&["teams"], &[]))
        .await
        .unwrap_err();
    assert!(e.message().contains("not a collection"), "{e}");
}

#[tokio::test]
async fn paging_follows_next_links_verbatim_across_pages() {
    let server = MockServer::start().await;
    let p2 = format!(
        "{}/v1.0/teams?$select=id,displayName&$top=2&$skiptoken=RFNwdAIAAQAAAD8%2BX%3D%3D",
        server.uri()
    );
    let p3 = format!("{}/v1.0/teams?$skiptoken=page%2F3&extra=keep", server.uri());
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .and(query_param("$top", "2"))
        .and(query_param("$skiptoken", "RFNwdAIAAQAAAD8+X=="))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(teams_page(&["c", "d"], Some(p3.clone()))),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .and(query_param("extra", "keep"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "value": [{"id": "e"}, {"displayName": "no id: skipped"}, 17]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .and(query_param("$select", "id,displayName"))
        .and(query_param("$top", "2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(teams_page(&["a", "b"], Some(p2.clone()))),
        )
        .with_priority(10)
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let first = conn
        .graph()
        .url(&["teams"], &[("$select", "id,displayName"), ("$top", "2")]);
    let mut ids = Vec::new();
    let mut skipped = 0;
    let pages = conn
        .graph()
        .for_each_page::<GraphTeam, _>(first, |p: Page<GraphTeam>| {
            ids.extend(p.items.into_iter().map(|t| t.id));
            skipped += p.skipped;
            Ok(true)
        })
        .await
        .unwrap();
    assert_eq!(pages, 3);
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    assert_eq!(skipped, 2);
    let reqs = server.received_requests().await.unwrap();
    let pq = |r: &wiremock::Request| format!("{}?{}", r.url.path(), r.url.query().unwrap_or(""));
    let strip = |s: &str| s.trim_start_matches(&server.uri()).to_owned();
    assert_eq!(
        pq(&reqs[1]),
        strip(&p2),
        "the next link is requested exactly as given"
    );
    assert_eq!(pq(&reqs[2]), strip(&p3));
    assert!(reqs.iter().all(|r| bearer(r) == format!("Bearer {TOKEN}")));
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/teams"))
        .respond_with(ResponseTemplate::new(200).set_body_json(teams_page(
            &["a"],
            Some("https://evil.example/v1.0/teams?$skiptoken=x".into()),
        )))
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let e = conn
        .graph()
        .get_page::<GraphTeam>(conn.graph().url(&["teams"], &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    assert!(
        e.message().contains("outside the configured Graph base"),
        "{e}"
    );
    assert!(conn.graph().resolve_link("not a url").is_err());
    assert!(
        conn.graph()
            .resolve_link(&format!("{}/other/path", server.uri()))
            .is_err()
    );
}

#[tokio::test]
async fn the_pacer_spaces_posts_under_the_limit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/teams/T1/channels/C1/messages"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": "1"})))
        .mount(&server)
        .await;
    // documented limits: 50 posts per second per tenant, but 4 calls per second on one
    // channel (the binding limit), with a client burst of 80 % of 4
    let cfg = config(&server).limits(RateLimits::documented());
    let conn = MsTeamsConnection::new(
        cfg,
        Arc::new(TokenProvider::fixed(SecretString::from(TOKEN))),
    )
    .unwrap();
    let started = Instant::now();
    for _ in 0..8 {
        let req = GraphRequest::new(
            Method::POST,
            conn.graph()
                .url(&["teams", "T1", "channels", "C1", "messages"], &[]),
        )
        .json(serde_json::json!({}));
        conn.graph().send(&req).await.unwrap();
    }
    // a burst of three, then one every ~0.255 s
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    let stats = conn.graph().pacer().stats();
    assert_eq!(stats.per_bucket[&Bucket::PostChannelMessage], 8);
    assert_eq!(stats.max_per_scope[&Bucket::PerChannel], 8);
    // the day's budget of the channel is known to the relay
    let budget = conn.graph().pacer().daily_budget("C1");
    assert_eq!((budget.used, budget.remaining), (8, 2_992));
    assert_eq!(conn.graph().pacer().daily_remaining("C2"), 3_000);
}

#[tokio::test]
async fn pacing_beyond_the_budget_fails_fast() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": "1"})))
        .mount(&server)
        .await;
    let cfg = config(&server)
        .limits(RateLimits::documented())
        .retry(RetryPolicy {
            max_total_wait: Duration::from_millis(100),
            ..fast_retry()
        });
    let conn = MsTeamsConnection::new(
        cfg,
        Arc::new(TokenProvider::fixed(SecretString::from(TOKEN))),
    )
    .unwrap();
    let req = GraphRequest::new(
        Method::POST,
        conn.graph()
            .url(&["teams", "T1", "channels", "C1", "messages"], &[]),
    );
    // the channel's burst (3 of its 4 per second) passes, the next would have to wait
    for _ in 0..3 {
        conn.graph().send(&req).await.unwrap();
    }
    let f = conn.graph().send(&req).await.unwrap_err();
    assert!(matches!(
        f.error.kind(),
        ErrorKind::RateLimited {
            retry_after: Some(_)
        }
    ));
    assert!(
        f.error.message().contains("staying under Graph's limits"),
        "{}",
        f.error
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}
