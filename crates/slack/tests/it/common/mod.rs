//! Shared helpers of the wiremock tests.
#![allow(dead_code)]

use std::time::Duration;

use secrecy::SecretString;
use switchboard_core::{
    Channel, Credentials, ImportSink, Membership, Progress, Result, TeamId, User, async_trait,
};
use switchboard_slack::{RateLimits, RetryPolicy, SlackClient, SlackConfig, SlackConnection};
use url::Url;
use wiremock::MockServer;

pub const TOKEN: &str = "xoxb-test-token-very-secret";
pub const CLIENT_ID: &str = "111.222";
pub const CLIENT_SECRET: &str = "client-secret-very-secret";

pub fn config(server: &MockServer) -> SlackConfig {
    SlackConfig::new(
        CLIENT_ID,
        SecretString::from(CLIENT_SECRET),
        SecretString::from("signing-secret"),
    )
    .with_base_urls(
        Url::parse(&format!("{}/api/", server.uri())).unwrap(),
        Url::parse(&format!("{}/", server.uri())).unwrap(),
    )
    .with_redirect_uri(Url::parse("https://switchboard.test/connect/slack/callback").unwrap())
    .with_limits(RateLimits::unlimited())
    .with_retry(RetryPolicy {
        max_rate_limit_wait: Duration::from_secs(10),
        max_transient_retries: 2,
        transient_backoff: Duration::from_millis(5),
        default_retry_after: Duration::from_millis(50),
    })
}

pub fn credentials(token: &str) -> Credentials {
    Credentials {
        access_token: SecretString::from(token.to_owned()),
        refresh_token: None,
        expires_at: None,
        // What the install granted (the adapter falls back to it when `auth.test` does not
        // report X-OAuth-Scopes).
        scopes: switchboard_slack::BOT_SCOPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    }
}

pub fn connection_with(config: &SlackConfig, credentials: Credentials) -> SlackConnection {
    let client = SlackClient::new(config).unwrap();
    SlackConnection::new(config, client, TeamId::new("T1").unwrap(), credentials)
}

pub fn connection(server: &MockServer) -> SlackConnection {
    connection_with(&config(server), credentials(TOKEN))
}

/// Requests received for one Web API method.
pub async fn requests_for(server: &MockServer, method: &str) -> Vec<wiremock::Request> {
    let path = format!("/api/{method}");
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == path)
        .collect()
}

pub fn json_body(r: &wiremock::Request) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

pub fn form_body(r: &wiremock::Request) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&r.body).expect("form body")
}

pub fn query(r: &wiremock::Request) -> Vec<(String, String)> {
    r.url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[derive(Debug, Default)]
pub struct RecordingSink {
    pub channels: Vec<Channel>,
    pub members: Vec<Membership>,
    pub users: Vec<User>,
    pub progress: Vec<Progress>,
    pub pages: usize,
}

#[async_trait]
impl ImportSink for RecordingSink {
    async fn channels(&mut self, _team: &TeamId, page: Vec<Channel>) -> Result<()> {
        self.pages += 1;
        self.channels.extend(page);
        Ok(())
    }
    async fn members(&mut self, _team: &TeamId, page: Vec<Membership>) -> Result<()> {
        self.pages += 1;
        self.members.extend(page);
        Ok(())
    }
    async fn users(&mut self, page: Vec<User>) -> Result<()> {
        self.pages += 1;
        self.users.extend(page);
        Ok(())
    }
    async fn progress(&mut self, progress: Progress) -> Result<()> {
        self.progress.push(progress);
        Ok(())
    }
}
