//! Shared helpers of the wiremock tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use secrecy::SecretString;
use switchboard_core::{
    Channel, Credentials, ImportSink, Membership, Progress, Result, TeamId, User,
};
use switchboard_msteams::token::CredentialsSink;
use switchboard_msteams::{
    MsTeamsConfig, MsTeamsConnection, OAuthClient, RateLimits, RetryPolicy, TokenProvider,
};
use time::OffsetDateTime;
use wiremock::MockServer;

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_SECRET: &str = "client-secret-value-xyz";
pub const TOKEN: &str = "access-token-1";
pub const ME: &str = "0b9e3b7f-0000-4000-8000-00000000a11c";

/// A configuration pointing at the mock server: `/login` and `/v1.0`, no pacing, fast
/// retries.
pub fn config(server: &MockServer) -> MsTeamsConfig {
    MsTeamsConfig::with_endpoints(
        &format!("{}/login", server.uri()),
        &format!("{}/v1.0", server.uri()),
        TENANT,
        CLIENT_ID,
        SecretString::from(CLIENT_SECRET),
        "http://localhost:8080/connect/msteams/callback",
    )
    .unwrap()
    .limits(RateLimits::unlimited())
    .retry(fast_retry())
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_total_wait: Duration::from_secs(5),
        max_attempts: 4,
    }
}

/// A connection with a fixed bearer token (`TOKEN`).
pub fn fixed_conn(server: &MockServer) -> MsTeamsConnection {
    MsTeamsConnection::new(
        config(server),
        Arc::new(TokenProvider::fixed(SecretString::from(TOKEN))),
    )
    .unwrap()
}

pub fn creds(
    access: &str,
    refresh: Option<&str>,
    expires_in_secs: i64,
    scopes: &[&str],
) -> Credentials {
    Credentials {
        access_token: SecretString::from(access),
        refresh_token: refresh.map(SecretString::from),
        expires_at: Some(OffsetDateTime::now_utc() + time::Duration::seconds(expires_in_secs)),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A refreshing token provider against the mock server's token endpoint.
pub fn refreshing_provider(
    server: &MockServer,
    credentials: Credentials,
    sink: Option<Arc<dyn CredentialsSink>>,
) -> Arc<TokenProvider> {
    let cfg = config(server);
    Arc::new(TokenProvider::new(
        OAuthClient::new(&cfg).unwrap(),
        credentials,
        Duration::from_secs(300),
        sink,
    ))
}

/// The token endpoint path on the mock server.
pub fn token_path() -> String {
    format!("/login/{TENANT}/oauth2/v2.0/token")
}

/// A realistic token response.
pub fn token_json(access: &str, refresh: &str) -> serde_json::Value {
    serde_json::json!({
        "token_type": "Bearer",
        "scope": "openid profile offline_access https://graph.microsoft.com/Team.ReadBasic.All https://graph.microsoft.com/Channel.ReadBasic.All https://graph.microsoft.com/TeamMember.ReadWrite.All https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/RoleManagement.Read.Directory https://graph.microsoft.com/ChannelMessage.Send https://graph.microsoft.com/ChannelMessage.ReadWrite https://graph.microsoft.com/ChannelMessage.Read.All",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access,
        "refresh_token": refresh,
        "id_token": "eyJ0eXAiOiJKV1QifQ.e30.sig"
    })
}

/// Persisted credentials, for checking rotation.
#[derive(Default)]
pub struct RecordingSink {
    pub saved: Mutex<Vec<Credentials>>,
}

#[async_trait]
impl CredentialsSink for RecordingSink {
    async fn persist(&self, credentials: &Credentials) -> Result<()> {
        self.saved.lock().push(credentials.clone());
        Ok(())
    }
}

/// An import sink keeping everything.
#[derive(Default)]
pub struct VecSink {
    pub channels: Vec<Channel>,
    pub members: Vec<Membership>,
    pub users: Vec<User>,
    pub progress: Vec<Progress>,
    pub pages: usize,
    /// Fail on the page with this index (0-based).
    pub fail_at_page: Option<usize>,
}

impl VecSink {
    fn page(&mut self) -> Result<()> {
        let i = self.pages;
        self.pages += 1;
        if self.fail_at_page == Some(i) {
            return Err(switchboard_core::Error::new(
                switchboard_core::ErrorKind::Storage,
                "disk full",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl ImportSink for VecSink {
    async fn channels(&mut self, _team: &TeamId, page: Vec<Channel>) -> Result<()> {
        self.page()?;
        self.channels.extend(page);
        Ok(())
    }
    async fn members(&mut self, _team: &TeamId, page: Vec<Membership>) -> Result<()> {
        self.page()?;
        self.members.extend(page);
        Ok(())
    }
    async fn users(&mut self, page: Vec<User>) -> Result<()> {
        self.page()?;
        self.users.extend(page);
        Ok(())
    }
    async fn progress(&mut self, progress: Progress) -> Result<()> {
        self.progress.push(progress);
        Ok(())
    }
}

/// The bearer token a received request carried.
pub fn bearer(req: &wiremock::Request) -> String {
    req.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// `GET /me` answering as the service account.
pub async fn mount_me(server: &MockServer) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    Mock::given(method("GET"))
        .and(path("/v1.0/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "id": ME,
            "displayName": "Switchboard Service",
            "userPrincipalName": "switchboard@contoso.onmicrosoft.com",
            "mail": "switchboard@contoso.onmicrosoft.com"
        })))
        .mount(server)
        .await;
}

/// A Graph error body.
pub fn graph_error(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": "2024-05-01T10:00:00", "request-id": "req-42", "client-request-id": "c-42"}
        }
    })
}
