//! OAuth v2 against wiremock: the authorize URL, the code exchange (HTTP Basic), Enterprise
//! Grid installs, token rotation (refresh before expiry, once for concurrent callers,
//! rotations reported), and dead grants (`invalid_refresh_token`, `token_revoked`) →
//! `NeedsReauth`.

#[allow(unused_imports)]
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use switchboard_core::{
    ConnectionHealth, Credentials, ErrorKind, Platform, ServiceAccount, TeamImport,
};
use switchboard_slack::{BOT_SCOPES, SlackClient, SlackConnection, SlackOAuth};
use time::OffsetDateTime;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    )
}

fn oauth(server: &MockServer) -> SlackOAuth {
    let config = config(server);
    SlackOAuth::new(&config, SlackClient::new(&config).unwrap())
}

#[tokio::test]
async fn authorize_url_carries_client_scopes_redirect_and_state() {
    let server = MockServer::start().await;
    let url = oauth(&server).authorize_url("st-123").unwrap();
    assert_eq!(url.path(), "/oauth/v2/authorize");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["scope"], BOT_SCOPES.join(","));
    assert_eq!(
        q["redirect_uri"],
        "https://switchboard.test/connect/slack/callback"
    );
    assert_eq!(q["state"], "st-123");
    assert!(!url.as_str().contains(CLIENT_SECRET));
    assert_eq!(
        oauth(&server).authorize_url("").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn code_exchange_uses_basic_auth_and_keeps_rotation_state() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/oauth.v2.access"))
        .and(header("authorization", basic().as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "access_token": "xoxe.xoxb-1-new", "token_type": "bot",
            "scope": "chat:write,channels:read", "bot_user_id": "UBOT", "app_id": "A1",
            "team": {"id": "T1", "name": "Acme"}, "enterprise": {"id": "E1", "name": "Acme Corp"},
            "is_enterprise_install": false, "authed_user": {"id": "U9"},
            "expires_in": 43200, "refresh_token": "xoxe-1-refresh"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let inst = oauth(&server).exchange_code("the-code").await.unwrap();
    let req = &requests_for(&server, "oauth.v2.access").await[0];
    let form = form_body(req);
    assert_eq!(
        form,
        vec![
            ("code".to_owned(), "the-code".to_owned()),
            (
                "redirect_uri".to_owned(),
                "https://switchboard.test/connect/slack/callback".to_owned()
            )
        ]
    );
    assert_eq!(inst.tenant().unwrap().as_str(), "T1");
    assert_eq!(inst.team_id().unwrap().as_str(), "T1");
    assert_eq!(
        inst.enterprise_id().unwrap().as_str(),
        "E1",
        "the Grid id is kept"
    );
    assert_eq!(inst.display_name(), "Acme");
    assert_eq!(inst.bot_user_id.as_ref().unwrap().as_str(), "UBOT");
    assert_eq!(inst.app_id.as_deref(), Some("A1"));
    assert_eq!(inst.authed_user.as_ref().unwrap().as_str(), "U9");
    assert_eq!(inst.token_type.as_deref(), Some("bot"));
    let c = &inst.credentials;
    assert_eq!(c.access_token.expose_secret(), "xoxe.xoxb-1-new");
    assert_eq!(
        c.refresh_token.as_ref().unwrap().expose_secret(),
        "xoxe-1-refresh"
    );
    let expires = c.expires_at.unwrap() - OffsetDateTime::now_utc();
    assert!(expires > time::Duration::hours(11) && expires <= time::Duration::hours(12));
    assert_eq!(c.scopes, vec!["chat:write", "channels:read"]);
    let dbg = format!("{inst:?}");
    assert!(
        !dbg.contains("xoxe.xoxb-1-new") && !dbg.contains("xoxe-1-refresh"),
        "{dbg}"
    );

    let config = config(&server);
    let conn =
        SlackConnection::from_installation(&config, SlackClient::new(&config).unwrap(), &inst)
            .unwrap();
    assert_eq!(conn.workspace().as_str(), "T1");
    assert_eq!(conn.enterprise().unwrap().as_str(), "E1");
}

#[tokio::test]
async fn org_wide_grid_installs_are_recognised() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/oauth.v2.access"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "access_token": "xoxb-grid", "token_type": "bot", "scope": "chat:write",
            "bot_user_id": "UBOT", "app_id": "A1", "team": null,
            "enterprise": {"id": "E77", "name": "Mega Corp"}, "is_enterprise_install": true,
            "authed_user": {"id": "W1"}
        })))
        .mount(&server)
        .await;
    let inst = oauth(&server).exchange_code("c").await.unwrap();
    assert!(inst.is_enterprise_install);
    assert_eq!(inst.tenant().unwrap().as_str(), "E77");
    assert!(inst.team_id().is_none());
    assert_eq!(inst.display_name(), "Mega Corp");
    assert!(inst.credentials.expires_at.is_none() && inst.credentials.refresh_token.is_none());
    let config = config(&server);
    let err =
        SlackConnection::from_installation(&config, SlackClient::new(&config).unwrap(), &inst)
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn exchange_errors_are_clear() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/oauth.v2.access"))
        .and(body_string_contains("code=bad"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "invalid_code"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/oauth.v2.access"))
        .and(body_string_contains("code=nobot"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "team": {"id": "T1"}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/oauth.v2.access"))
        .and(body_string_contains("code=garbage"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"ok\":tru"))
        .mount(&server)
        .await;
    let o = oauth(&server);
    assert_eq!(
        o.exchange_code("bad").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let e = o.exchange_code("nobot").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    assert!(e.message().contains("access_token"), "{e}");
    assert_eq!(
        o.exchange_code("garbage").await.unwrap_err().kind(),
        ErrorKind::Upstream
    );
    assert_eq!(
        o.exchange_code("").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let e = o.exchange_code("bad").await.unwrap_err();
    assert!(!format!("{e:?}").contains(CLIENT_SECRET));
}

fn rotating(access: &str, refresh: &str, expires_in: Duration) -> Credentials {
    Credentials {
        access_token: SecretString::from(access.to_owned()),
        refresh_token: Some(SecretString::from(refresh.to_owned())),
        expires_at: Some(OffsetDateTime::now_utc() + time::Duration::try_from(expires_in).unwrap()),
        scopes: vec!["chat:write".into()],
    }
}

async fn mount_refresh(
    server: &MockServer,
    old_refresh: &str,
    new_access: &str,
    new_refresh: &str,
) {
    Mock::given(method("POST"))
        .and(path("/api/oauth.v2.access"))
        .and(header("authorization", basic().as_str()))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(
            format!("refresh_token={old_refresh}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "ok": true, "access_token": new_access, "token_type": "bot",
                    "scope": "chat:write,channels:read", "bot_user_id": "UBOT",
                    "team": {"id": "T1"}, "expires_in": 43200, "refresh_token": new_refresh
                }))
                .set_delay(Duration::from_millis(100)),
        )
        .expect(1)
        .mount(server)
        .await;
}

async fn mount_team_info(server: &MockServer, token: &str) {
    Mock::given(method("GET"))
        .and(path("/api/team.info"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "team": {"id": "T1", "name": "Acme"}})),
        )
        .mount(server)
        .await;
}

/// Core's rotation callback, forwarding to a channel.
struct ChannelSink(tokio::sync::mpsc::UnboundedSender<Credentials>);

#[switchboard_core::async_trait]
impl switchboard_core::CredentialsSink for ChannelSink {
    async fn persist(&self, credentials: &Credentials) -> switchboard_core::Result<()> {
        self.0.send(credentials.clone()).map_err(|_| {
            switchboard_core::Error::new(switchboard_core::ErrorKind::Storage, "closed")
        })
    }
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_once_for_concurrent_callers_and_reported() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r-old", "xoxb-new", "r-new").await;
    mount_team_info(&server, "xoxb-new").await;
    let config = config(&server);
    // Expires in 2 minutes: inside the 5 minute margin.
    let conn = connection_with(
        &config,
        rotating("xoxb-old", "r-old", Duration::from_secs(120)),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Credentials>();
    let conn = conn.with_credentials_sink(Arc::new(ChannelSink(tx)));
    let calls = (0..8).map(|_| conn.list_teams());
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().teams[0].name, "Acme");
    }
    // One refresh (wiremock's expect(1) checks on drop), one report.
    let rotated = rx.try_recv().expect("rotation reported");
    assert_eq!(rotated.access_token.expose_secret(), "xoxb-new");
    assert_eq!(
        rotated.refresh_token.as_ref().unwrap().expose_secret(),
        "r-new"
    );
    assert!(rx.try_recv().is_err(), "reported once");
    let current = conn.tokens().credentials().await;
    assert_eq!(current.refresh_token.unwrap().expose_secret(), "r-new");
    assert_eq!(requests_for(&server, "team.info").await.len(), 8);
}

#[tokio::test]
async fn a_token_slack_calls_expired_is_refreshed_and_the_call_repeated() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r-1", "xoxb-2", "r-2").await;
    Mock::given(method("GET"))
        .and(path("/api/team.info"))
        .and(header("authorization", "Bearer xoxb-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "token_expired"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_team_info(&server, "xoxb-2").await;
    let config = config(&server);
    // Slack's clock says expired although ours says 11 hours left.
    let conn = connection_with(
        &config,
        rotating("xoxb-1", "r-1", Duration::from_secs(11 * 3600)),
    );
    assert_eq!(conn.list_teams().await.unwrap().teams[0].name, "Acme");
    let creds = conn.refresh_credentials().await;
    // A second explicit refresh would need r-2, which is not mounted: the error is clear.
    assert!(creds.is_err());
}

#[tokio::test]
async fn a_dead_refresh_token_needs_reauth_and_stops_calling_slack() {
    for code in ["invalid_refresh_token", "token_revoked"] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/oauth.v2.access"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": code})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let config = config(&server);
        let conn = connection_with(
            &config,
            rotating("xoxb-old", "r-dead", Duration::from_secs(10)),
        );
        let e = conn.list_teams().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NeedsReauth, "{code}");
        assert!(e.message().contains("reconnect"), "{e}");
        assert!(!format!("{e:?}").contains("r-dead"));
        // Remembered: no further refresh attempts, no API calls.
        assert_eq!(
            conn.list_teams().await.unwrap_err().kind(),
            ErrorKind::NeedsReauth
        );
        assert_eq!(
            conn.refresh_credentials().await.unwrap_err().kind(),
            ErrorKind::NeedsReauth
        );
        assert_eq!(conn.health().await.unwrap(), ConnectionHealth::NeedsReauth);
        assert!(conn.tokens().needs_reauth());
        assert!(requests_for(&server, "team.info").await.is_empty());
    }
}

#[tokio::test]
async fn an_expired_token_without_rotation_needs_reauth() {
    let server = MockServer::start().await;
    let config = config(&server);
    let creds = Credentials {
        access_token: SecretString::from("xoxb-old"),
        refresh_token: None,
        expires_at: Some(OffsetDateTime::now_utc() - time::Duration::minutes(1)),
        scopes: vec![],
    };
    let conn = connection_with(&config, creds);
    assert_eq!(
        conn.list_teams().await.unwrap_err().kind(),
        ErrorKind::NeedsReauth
    );
    // A non-rotating, non-expiring token: refresh_credentials returns it unchanged.
    let conn = connection_with(&config, credentials("xoxb-forever"));
    let same = conn.refresh_credentials().await.unwrap();
    assert_eq!(same.access_token.expose_secret(), "xoxb-forever");
}
