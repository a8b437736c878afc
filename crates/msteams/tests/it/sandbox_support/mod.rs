//! Driving the sandbox's Microsoft side: start it, sign in through the consent page (code +
//! PKCE), and read its control API.
#![allow(dead_code)]

use std::time::Duration;

use scraper::{Html, Selector};
use secrecy::SecretString;
use serde_json::Value;
use switchboard_core::Credentials;
use switchboard_msteams::oauth::parse_callback;
use switchboard_msteams::{MsTeamsConfig, MsTeamsConnection, OAuthClient, RateLimits, RetryPolicy};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};

pub const REDIRECT: &str = "http://127.0.0.1:9/connect/msteams/callback";

pub struct Env {
    pub sandbox: Sandbox,
    pub info: Value,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn start(seed: Seed, time_scale: f64) -> Env {
        let sandbox = Sandbox::start(SandboxConfig {
            seed,
            time_scale,
            ..Default::default()
        })
        .await
        .expect("the sandbox starts");
        let info = sandbox.ready_info();
        Env {
            sandbox,
            info,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn ms(&self, key: &str) -> String {
        self.info["msteams"][key]
            .as_str()
            .unwrap_or_else(|| panic!("ready_info has no msteams.{key}: {}", self.info))
            .to_owned()
    }

    pub fn base(&self) -> String {
        self.sandbox.base_url().to_owned()
    }

    pub fn config(&self, time_scale: f64) -> MsTeamsConfig {
        MsTeamsConfig::with_endpoints(
            self.info["microsoft_login_url"].as_str().unwrap(),
            self.info["graph_api_url"].as_str().unwrap(),
            self.ms("tenant_id"),
            self.ms("client_id"),
            SecretString::from(self.ms("client_secret")),
            REDIRECT,
        )
        .unwrap()
        .limits(RateLimits::documented().scaled(time_scale))
        .retry(RetryPolicy {
            max_total_wait: Duration::from_secs(60),
            ..RetryPolicy::default()
        })
    }

    /// Signs `username` in through the consent page and returns the credentials.
    pub async fn sign_in(
        &self,
        config: &MsTeamsConfig,
        username: &str,
        password: &str,
    ) -> Credentials {
        let oauth = OAuthClient::new(config).unwrap();
        let start = oauth.authorization_request(Some(username));
        let query = self.consent(start.url.as_str(), username, password).await;
        let cb = parse_callback(&query, &start.state).expect("a code for our state");
        oauth
            .exchange_code(&cb.code, start.pkce.verifier())
            .await
            .expect("the code exchange succeeds")
    }

    /// GET the consent page, POST the form with the credentials and `decision=accept`, and
    /// return the query of the redirect to our callback.
    pub async fn consent(&self, authorize_url: &str, username: &str, password: &str) -> String {
        let page = self.http.get(authorize_url).send().await.unwrap();
        assert_eq!(page.status(), 200, "the consent page");
        let html = page.text().await.unwrap();
        let (action, mut fields) = {
            let doc = Html::parse_document(&html);
            let form = doc
                .select(&Selector::parse("form").unwrap())
                .next()
                .expect("a form on the consent page");
            let action = form.value().attr("action").unwrap_or("").to_owned();
            let fields: Vec<(String, String)> = form
                .select(&Selector::parse("input[type=hidden]").unwrap())
                .filter_map(|i| {
                    Some((
                        i.value().attr("name")?.to_owned(),
                        i.value().attr("value").unwrap_or("").to_owned(),
                    ))
                })
                .collect();
            (action, fields)
        };
        fields.push(("username".into(), username.into()));
        fields.push(("password".into(), password.into()));
        fields.push(("decision".into(), "accept".into()));
        let target = if action.starts_with("http") {
            action
        } else {
            format!("{}{}", self.base(), action)
        };
        let resp = self
            .http
            .post(target)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&fields).unwrap())
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_redirection(),
            "consent answered {}",
            resp.status()
        );
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(REDIRECT), "redirected to {location}");
        url::Url::parse(&location)
            .unwrap()
            .query()
            .unwrap_or("")
            .to_owned()
    }

    /// A connection of the service account through the real OAuth flow.
    pub async fn service_connection(&self, time_scale: f64) -> MsTeamsConnection {
        let config = self.config(time_scale);
        let creds = self
            .sign_in(
                &config,
                &self.ms("service_account_upn"),
                &self.ms("service_account_password"),
            )
            .await;
        MsTeamsConnection::from_credentials(config, creds, None).unwrap()
    }

    pub async fn control_get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/_sandbox{path}", self.base()))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "GET /_sandbox{path}: {}",
            r.status()
        );
        r.json().await.unwrap()
    }

    pub async fn control_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/_sandbox{path}", self.base()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "POST /_sandbox{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}
