//! OAuth against a mock identity platform: the authorization URL, the code exchange, silent
//! refresh with rotation, single-flight refresh, and dead grants.

#[allow(unused_imports)]
use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use secrecy::{ExposeSecret, SecretString};
use switchboard_core::ErrorKind;
use switchboard_msteams::oauth::{Pkce, scopes};
use switchboard_msteams::token::CredentialsSink;
use switchboard_msteams::{OAuthClient, TokenProvider};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn form(req: &wiremock::Request) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body)
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn authorization_url_carries_state_pkce_and_the_scope_set() {
    let server = MockServer::start().await;
    let oauth = OAuthClient::new(&config(&server)).unwrap();
    let start = oauth.authorization_request(Some("switchboard@contoso.onmicrosoft.com"));
    let url = &start.url;
    assert_eq!(url.path(), format!("/login/{TENANT}/oauth2/v2.0/authorize"));
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["response_mode"], "query");
    assert_eq!(
        q["redirect_uri"],
        "http://localhost:8080/connect/msteams/callback"
    );
    assert_eq!(q["state"], start.state);
    assert!(start.state.len() >= 32);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(
        q["code_challenge"],
        Pkce::challenge_for(start.pkce.verifier().expose_secret())
    );
    assert_eq!(q["login_hint"], "switchboard@contoso.onmicrosoft.com");
    let requested: Vec<&str> = q["scope"].split(' ').collect();
    assert_eq!(
        requested,
        scopes(false).iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(requested.contains(&"offline_access"));
    assert!(requested.contains(&"https://graph.microsoft.com/RoleManagement.Read.Directory"));
    assert!(!q["scope"].contains("User.Invite.All"));
    // the verifier never appears in the URL
    assert!(!url.as_str().contains(start.pkce.verifier().expose_secret()));
    // two requests never share state or verifier
    let other = oauth.authorization_request(None);
    assert_ne!(other.state, start.state);
    assert!(!other.url.as_str().contains("login_hint"));

    let guest = OAuthClient::new(&config(&server).guest_sync(true)).unwrap();
    let g = guest.authorization_request(None);
    assert!(
        g.url
            .query_pairs()
            .any(|(k, v)| k == "scope" && v.contains("https://graph.microsoft.com/User.Invite.All"))
    );
}

#[tokio::test]
async fn code_exchange_posts_the_form_and_reads_the_tokens() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_json("at-1", "rt-1")))
        .expect(1)
        .mount(&server)
        .await;
    let oauth = OAuthClient::new(&config(&server)).unwrap();
    let pkce = Pkce::generate();
    let creds = oauth
        .exchange_code(&SecretString::from("the-code"), pkce.verifier())
        .await
        .unwrap();
    assert_eq!(creds.access_token.expose_secret(), "at-1");
    assert_eq!(
        creds.refresh_token.as_ref().unwrap().expose_secret(),
        "rt-1"
    );
    let left = creds.expires_at.unwrap() - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::seconds(3590) && left <= time::Duration::seconds(3599));
    assert!(
        creds
            .scopes
            .contains(&"https://graph.microsoft.com/ChannelMessage.Send".to_owned())
    );
    let dbg = format!("{creds:?}");
    assert!(!dbg.contains("at-1") && !dbg.contains("rt-1"), "{dbg}");

    let reqs = server.received_requests().await.unwrap();
    let f = form(&reqs[0]);
    assert_eq!(f["client_id"], CLIENT_ID);
    assert_eq!(f["client_secret"], CLIENT_SECRET);
    assert_eq!(f["code"], "the-code");
    assert_eq!(
        f["redirect_uri"],
        "http://localhost:8080/connect/msteams/callback"
    );
    assert_eq!(f["code_verifier"], pkce.verifier().expose_secret());
    assert_eq!(f["scope"], scopes(false).join(" "));
}

#[tokio::test]
async fn token_endpoint_errors_map_to_kinds_without_leaking_secrets() {
    let server = MockServer::start().await;
    let oauth = OAuthClient::new(&config(&server)).unwrap();
    let cases: Vec<(u16, serde_json::Value, ErrorKind)> = vec![
        (
            400,
            serde_json::json!({"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.\r\nTrace ID: x","error_codes":[70008],"trace_id":"t","correlation_id":"c"}),
            ErrorKind::NeedsReauth,
        ),
        (
            400,
            serde_json::json!({"error":"interaction_required","error_description":"AADSTS50076: MFA required"}),
            ErrorKind::NeedsReauth,
        ),
        (
            401,
            serde_json::json!({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}),
            ErrorKind::Unauthorized,
        ),
        (
            400,
            serde_json::json!({"error":"invalid_scope","error_description":"bad scope"}),
            ErrorKind::InvalidInput,
        ),
        (503, serde_json::json!({}), ErrorKind::Upstream),
        (
            429,
            serde_json::json!({"error":"too_many"}),
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
        ),
    ];
    for (status, body, kind) in cases {
        server.reset().await;
        Mock::given(method("POST"))
            .and(path(token_path()))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(body.clone())
                    .insert_header("retry-after", "7"),
            )
            .mount(&server)
            .await;
        let e = oauth
            .refresh(&SecretString::from("refresh-secret-abc"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{status} {body}");
        assert!(!e.to_string().contains("refresh-secret-abc"));
        assert!(!e.to_string().contains(CLIENT_SECRET));
        if kind == ErrorKind::NeedsReauth {
            assert!(e.message().contains("reconnect"), "{e}");
            assert!(
                !e.message().contains("Trace ID"),
                "only the first line: {e}"
            );
        }
    }
    // a success that is not JSON
    server.reset().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy</html>"))
        .mount(&server)
        .await;
    let e = oauth.refresh(&SecretString::from("r")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
}

#[tokio::test]
async fn refresh_happens_before_expiry_and_rotates_the_refresh_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=rt-0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_json("at-1", "rt-1")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .and(body_string_contains("refresh_token=rt-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_json("at-2", "rt-2")))
        .expect(1)
        .mount(&server)
        .await;
    let sink = Arc::new(RecordingSink::default());
    // still valid for 100 s, but inside the 300 s margin: refreshed silently
    let provider = refreshing_provider(
        &server,
        creds("at-0", Some("rt-0"), 100, &[]),
        Some(sink.clone() as Arc<dyn CredentialsSink>),
    );
    assert_eq!(
        provider.access_token().await.unwrap().expose_secret(),
        "at-1"
    );
    // the new token is good for an hour: no further refresh
    for _ in 0..5 {
        assert_eq!(
            provider.access_token().await.unwrap().expose_secret(),
            "at-1"
        );
    }
    // an explicit refresh uses the rotated refresh token
    let c = provider.refresh_now().await.unwrap();
    assert_eq!(c.access_token.expose_secret(), "at-2");
    assert_eq!(c.refresh_token.unwrap().expose_secret(), "rt-2");
    let saved = sink.saved.lock().clone();
    assert_eq!(saved.len(), 2);
    assert_eq!(
        saved[0].refresh_token.as_ref().unwrap().expose_secret(),
        "rt-1"
    );
    assert_eq!(
        saved[1].refresh_token.as_ref().unwrap().expose_secret(),
        "rt-2"
    );
    assert_eq!(provider.refresh_count().await, 2);
    assert!(!format!("{provider:?}").contains("at-"));
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(token_json("at-new", "rt-new"))
                .set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let provider = refreshing_provider(&server, creds("at-old", Some("rt-old"), -10, &[]), None);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.access_token().await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().expose_secret(), "at-new");
    }
    assert_eq!(provider.refresh_count().await, 1);
}

#[tokio::test]
async fn a_dead_grant_is_needs_reauth_once_and_never_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant",
            "error_description": "AADSTS50173: The provided grant has expired due to it being revoked."
        })))
        .expect(1)
        .mount(&server)
        .await;
    let provider = refreshing_provider(&server, creds("at-old", Some("rt-old"), -10, &[]), None);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.access_token().await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().kind(), ErrorKind::NeedsReauth);
    }
    assert!(provider.needs_reauth().await);
    // later calls fail at once without contacting the endpoint (expect(1) above)
    assert_eq!(
        provider.refresh_now().await.unwrap_err().kind(),
        ErrorKind::NeedsReauth
    );
    assert_eq!(
        provider
            .token_after_rejection(&SecretString::from("at-old"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NeedsReauth
    );
}

#[tokio::test]
async fn a_transient_failure_ahead_of_expiry_keeps_the_current_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let early = refreshing_provider(&server, creds("at-valid", Some("rt"), 100, &[]), None);
    assert_eq!(
        early.access_token().await.unwrap().expose_secret(),
        "at-valid"
    );
    assert!(!early.needs_reauth().await);
    let expired = refreshing_provider(&server, creds("at-expired", Some("rt"), -1, &[]), None);
    assert_eq!(
        expired.access_token().await.unwrap_err().kind(),
        ErrorKind::Upstream
    );
    // a token that cannot be refreshed
    let fixed = TokenProvider::fixed(SecretString::from("x"));
    assert_eq!(
        fixed.refresh_now().await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
}
