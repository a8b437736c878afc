//! Moving a connection made with a personal account's token onto the service account, in
//! place, against the sandbox: the real Teams and Slack adapters, the real webhook path, the
//! relay and SQLite. A Slack channel is linked to a Teams channel while the Teams connection
//! acts as Bob (an ordinary user); after the migration the same universal channel keeps
//! relaying, a delivery queued before the switch goes out through the service account, and
//! the audit log records who switched what. What cannot move is said: the copies Bob posted
//! are counted (and an edit of one is reported, not attempted), and the channel's Graph
//! subscription is made again under the service account.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use switchboard_core::*;
use switchboard_msteams::{GraphReceiver, MsTeamsAuthorizer, MsTeamsConfig, MsTeamsConnector};
use switchboard_relay::engine::{
    Connections, DeliveryOutcome, OLD_ACCOUNT_REASON, Relay, RelayConfig,
};
use switchboard_sandbox::{ReadyInfo, Sandbox, SandboxConfig, Seed};
use switchboard_server::feeds::FeedKeeper;
use switchboard_server::migrate::{MIGRATED_ACTION, MigrationRequest, migrate, old_copies_note};
use switchboard_server::pool::{ConnectionPool, import};
use switchboard_server::webhooks::StoreClientStates;
use switchboard_server::{AppState, Receivers, router};
use switchboard_slack::{OwnIdentityCache, SlackConfig, SlackConnector, SlackEventsReceiver};
use switchboard_storage::{Keyring, MasterKey, SqlStore};
use time::OffsetDateTime;

/// The app served on loopback, with the relay's pool layered in as the composition root does.
struct Server {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    fn start(listener: tokio::net::TcpListener, app: axum::Router) -> Server {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { url, task }
    }

    fn shutdown(self) {
        self.task.abort();
    }
}

struct World {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    ready: ReadyInfo,
    seed: serde_json::Value,
    store: Arc<dyn Store>,
    org: OrgId,
    admin: SecretString,
    server: Server,
    teams_config: MsTeamsConfig,
    teams_connector: Arc<MsTeamsConnector>,
    pool: Arc<ConnectionPool>,
    relay: Relay,
    /// The personal-token Teams connection.
    teams: ConnectionId,
    bob_id: String,
    team_id: String,
    teams_channel: String,
    slack_channel: String,
    slack_sender: String,
    http: reqwest::Client,
}

fn user_id(seed: &serde_json::Value, upn_prefix: &str) -> String {
    seed["msteams"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| {
            u["userPrincipalName"]
                .as_str()
                .unwrap()
                .starts_with(upn_prefix)
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

impl World {
    async fn new() -> World {
        let sandbox = Sandbox::start(SandboxConfig {
            seed: Seed::Small,
            time_scale: 0.0,
            port: 0,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let ready = sandbox.ready();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let seed: serde_json::Value = http
            .get(format!("{}/_sandbox/seed", ready.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = SqlStore::sqlite(
            dir.path().join("sb.db"),
            Keyring::new(MasterKey::generate()),
        )
        .await
        .unwrap()
        .shared();
        let org = store.create_org("Contoso").await.unwrap().id;
        let admin = store.create_admin_token(&org, "alice").await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = format!("http://{}", listener.local_addr().unwrap());
        let teams_config = MsTeamsConfig::with_endpoints(
            &ready.microsoft_login_url,
            &ready.graph_api_url,
            ready.msteams.tenant_id.clone(),
            ready.msteams.client_id.clone(),
            SecretString::from(ready.msteams.client_secret.clone()),
            &format!("{public}/connect/msteams/callback"),
        )
        .unwrap();
        let slack_config = SlackConfig::new(
            ready.slack.client_id.clone(),
            SecretString::from(ready.slack.client_secret.clone()),
            SecretString::from(ready.slack.signing_secret.clone()),
        )
        .with_base_urls(
            url::Url::parse(&ready.slack_api_url).unwrap(),
            url::Url::parse(&format!("{}/slack/", ready.base_url)).unwrap(),
        );
        let teams_connector = Arc::new(MsTeamsConnector::new(teams_config.clone()));
        let slack_connector = Arc::new(SlackConnector::new(slack_config).unwrap());
        let connectors: Vec<Arc<dyn Connector>> =
            vec![teams_connector.clone(), slack_connector.clone()];
        let receivers = Receivers {
            slack: Some(Arc::new(SlackEventsReceiver::new(
                SecretString::from(ready.slack.signing_secret.clone()),
                None,
                Arc::new(OwnIdentityCache::default()),
            ))),
            graph: Some(Arc::new(GraphReceiver::new(Arc::new(
                StoreClientStates::new(store.clone()),
            )))),
        };
        let pool = Arc::new(ConnectionPool::new(store.clone(), connectors));
        let state = AppState::new(store.clone(), receivers)
            .with_public_url(public.clone())
            .with_pool(pool.clone())
            .with_platform(
                Arc::new(MsTeamsAuthorizer::new(teams_config.clone()).unwrap()),
                teams_connector.clone(),
            );
        let server = Server::start(listener, router(state));

        // Slack: the app's bot, as connected normally.
        let slack_tenant = TenantId::new(ready.slack.team_id.clone()).unwrap();
        let slack = Connection {
            id: ConnectionId::generate(),
            org: org.clone(),
            platform: PlatformKind::Slack,
            tenant: slack_tenant,
            enterprise: None,
            display_name: ready.slack.team_name.clone(),
            account: AccountIdentity {
                user_id: UserId::new(ready.slack.bot_user_id.clone()).unwrap(),
                display_name: "switchboard".into(),
                is_service_account: true,
            },
            health: ConnectionHealth::Ok,
            created_at: OffsetDateTime::now_utc(),
        };
        store.put_connection(&slack).await.unwrap();
        store
            .put_credentials(
                &org,
                &slack.id,
                &Credentials {
                    access_token: SecretString::from(ready.slack.bot_token.clone()),
                    refresh_token: None,
                    expires_at: None,
                    scopes: Vec::new(),
                },
            )
            .await
            .unwrap();

        // Teams: made with Bob's own token (an ordinary user, no directory roles).
        let bob_id = user_id(&seed, "bob@");
        let minted: serde_json::Value = http
            .post(format!("{}/_sandbox/msteams/tokens", ready.base_url))
            .json(&serde_json::json!({ "user": "bob@contoso.onmicrosoft.com" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let teams = Connection {
            id: ConnectionId::generate(),
            org: org.clone(),
            platform: PlatformKind::Msteams,
            tenant: TenantId::new(ready.msteams.tenant_id.clone()).unwrap(),
            enterprise: None,
            display_name: "contoso.onmicrosoft.com".into(),
            account: AccountIdentity {
                user_id: UserId::new(bob_id.clone()).unwrap(),
                display_name: "bob@contoso.onmicrosoft.com".into(),
                is_service_account: false,
            },
            health: ConnectionHealth::Ok,
            created_at: OffsetDateTime::now_utc(),
        };
        store.put_connection(&teams).await.unwrap();
        store
            .put_credentials(
                &org,
                &teams.id,
                &Credentials {
                    access_token: SecretString::from(
                        minted["access_token"].as_str().unwrap().to_owned(),
                    ),
                    refresh_token: None,
                    expires_at: None,
                    scopes: minted["scope"]
                        .as_str()
                        .unwrap()
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect(),
                },
            )
            .await
            .unwrap();

        for c in [&slack.id, &teams.id] {
            import(
                &store,
                &pool,
                &org,
                c,
                None,
                Actor::Admin {
                    name: "test".into(),
                },
            )
            .await
            .unwrap();
        }

        // Link a public Slack channel the bot is in with Engineering's General channel.
        let slack_channel = seed["slack"]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["is_private"] == false && c["is_member"] == true)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let team = seed["msteams"]["teams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["displayName"] == "Engineering")
            .unwrap();
        let team_id = team["id"].as_str().unwrap().to_owned();
        let teams_channel = team["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["displayName"] == "General")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let uc = UniversalChannel::new(
            UniversalChannelId::generate(),
            org.clone(),
            "general",
            vec![
                Endpoint {
                    connection: slack.id.clone(),
                    channel: format!("slack:{}/{slack_channel}", ready.slack.team_id)
                        .parse()
                        .unwrap(),
                },
                Endpoint {
                    connection: teams.id.clone(),
                    channel: format!("msteams:{team_id}/{teams_channel}")
                        .parse()
                        .unwrap(),
                },
            ],
        )
        .unwrap();
        store.create_universal_channel(&uc).await.unwrap();

        // Slack delivers events to the server's webhook, as configured in the app.
        let answer = http
            .put(format!(
                "{}/_sandbox/slack/event_subscription",
                ready.base_url
            ))
            .json(&serde_json::json!({
                "request_url": format!("{}/webhooks/slack/events", server.url)
            }))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());

        let slack_sender = seed["slack"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["is_bot"] == false && u["deleted"] == false)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let relay = Relay::new(
            store.clone(),
            pool.clone(),
            WorkerId::new("test/relay").unwrap(),
            RelayConfig::default(),
        );
        World {
            _dir: dir,
            sandbox,
            ready,
            seed,
            store,
            org,
            admin,
            server,
            teams_config,
            teams_connector,
            pool,
            relay,
            teams: teams.id,
            bob_id,
            team_id,
            teams_channel,
            slack_channel,
            slack_sender,
            http,
        }
    }

    async fn post_in_slack(&self, text: &str) -> String {
        let r = self
            .http
            .post(format!("{}/_sandbox/slack/messages", self.ready.base_url))
            .json(&serde_json::json!({
                "user": self.slack_sender, "channel": self.slack_channel, "text": text,
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let posted: serde_json::Value = r.json().await.unwrap();
        posted["ts"].as_str().unwrap().to_owned()
    }

    /// The Graph subscriptions on the linked Teams channel, as the sandbox holds them:
    /// (id, creator's user id).
    async fn channel_subscriptions(&self) -> Vec<(String, String)> {
        let all: serde_json::Value = self
            .http
            .get(format!(
                "{}/_sandbox/msteams/subscriptions",
                self.ready.base_url
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                let r = s["resource"].as_str().unwrap_or("");
                r.contains(&self.team_id) && r.contains(&self.teams_channel)
            })
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_owned(),
                    s["creatorId"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Translates until at least one inbox item was processed (the webhook is asynchronous).
    async fn translate_one(&self) {
        for _ in 0..200 {
            if self.relay.translate_batch().await.unwrap() > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no event reached the inbox");
    }

    async fn deliver_all(&self) {
        for _ in 0..200 {
            self.relay.translate_batch().await.unwrap();
            let outcomes = self.relay.deliver_batch().await.unwrap();
            for o in &outcomes {
                assert_eq!(
                    o,
                    &switchboard_relay::engine::DeliveryOutcome::Delivered,
                    "{o:?}"
                );
            }
            if outcomes.is_empty() && self.store.outbox_pending(&self.org).await.unwrap() == 0 {
                return;
            }
        }
        panic!("deliveries did not finish");
    }

    /// The Teams channel's messages as the sandbox stores them: (text, poster's user id).
    async fn teams_messages(&self) -> Vec<(String, String)> {
        let path = format!(
            "{}/_sandbox/msteams/teams/{}/channels/{}/messages",
            self.ready.base_url,
            self.team_id,
            self.teams_channel.replace(':', "%3A").replace('@', "%40")
        );
        let stored: serde_json::Value = self
            .http
            .get(&path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stored["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["body"]["content"].as_str().unwrap_or("").to_owned(),
                    m["from"]["user"]["id"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    async fn poster_of(&self, text: &str) -> String {
        let all = self.teams_messages().await;
        let hits: Vec<_> = all.iter().filter(|(body, _)| body.contains(text)).collect();
        assert_eq!(hits.len(), 1, "exactly one copy of {text:?} in {all:?}");
        hits[0].1.clone()
    }

    /// Plays the admin's browser on the sandbox's consent page: returns the redirect back
    /// (`…/callback?code=…&state=…`).
    async fn consent(&self, authorize_url: &str, user: &str, password: &str) -> String {
        let page = self
            .http
            .get(authorize_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut fields = hidden_inputs(&page);
        fields.push(("username".into(), user.into()));
        fields.push(("password".into(), password.into()));
        fields.push(("decision".into(), "accept".into()));
        let action = form_action(&page);
        let target = if action.starts_with("http") {
            action
        } else {
            format!("{}{action}", self.ready.base_url)
        };
        let answer = self.http.post(target).form(&fields).send().await.unwrap();
        answer
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("consent did not redirect ({})", answer.status()))
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// An OAuth sign-in of `user` through the Microsoft authorizer, as the CLI and console
    /// do it.
    async fn sign_in(&self, user: &str, password: &str) -> Authorized {
        let authorizer = MsTeamsAuthorizer::new(self.teams_config.clone()).unwrap();
        let verifier = SecretString::from("v".repeat(50));
        let challenge = switchboard_server::session::pkce_challenge(&verifier);
        let redirect = self.teams_config.redirect_uri.to_string();
        let url = authorizer
            .authorize_url(&redirect, "st", Some(&challenge))
            .unwrap();
        let back = self.consent(&url, user, password).await;
        let back = url::Url::parse(&back).unwrap();
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {back}"));
        authorizer
            .complete(&SecretString::from(code), &redirect, Some(&verifier))
            .await
            .unwrap()
    }

    fn request<'a>(&'a self, authorized: &'a Authorized) -> MigrationRequest<'a> {
        MigrationRequest {
            org: &self.org,
            connection: &self.teams,
            authorized,
            actor: Actor::Admin {
                name: "alice".into(),
            },
            options: VerifyOptions::default(),
        }
    }

    async fn teams_connection(&self) -> Connection {
        self.store
            .get_connection(&self.org, &self.teams)
            .await
            .unwrap()
            .unwrap()
    }

    async fn migrations(&self) -> Vec<AuditEntry> {
        self.store
            .list_audit(&self.org, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == MIGRATED_ACTION)
            .collect()
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let pat = format!("{name}=\"");
    let start = tag.find(&pat)? + pat.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            (attr(tag, "type").as_deref() == Some("hidden"))
                .then(|| Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default())))
                .flatten()
        })
        .collect()
}

fn form_action(html: &str) -> String {
    let i = html.find("<form").unwrap();
    let tag = &html[i..i + html[i..].find('>').unwrap()];
    attr(tag, "action").unwrap()
}

#[tokio::test]
async fn a_personal_connection_moves_to_the_service_account_and_keeps_relaying() {
    let w = World::new().await;
    let svc_id = user_id(&w.seed, "switchboard-svc@");

    // Before: the universal channel relays, posted with Bob's own token.
    w.post_in_slack("before the switch").await;
    w.translate_one().await;
    w.deliver_all().await;
    assert_eq!(w.poster_of("before the switch").await, w.bob_id);
    // The relay holds the live connection (Bob's token) in its pool.
    assert!(w.pool.get(&w.org, &w.teams).await.is_ok());

    // Refused, nothing changed: an account without Teams Administrator …
    let junior = w
        .sign_in(
            &w.ready.msteams.underprivileged_upn,
            &w.ready.msteams.underprivileged_password,
        )
        .await;
    let e = migrate(
        &w.store,
        w.teams_connector.as_ref(),
        Some(&w.pool),
        w.request(&junior),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(e.to_string().contains("Teams Administrator"), "{e}");
    // … the account the connection already uses …
    let bob = w
        .sign_in("bob@contoso.onmicrosoft.com", "Contoso-User-Passw0rd!")
        .await;
    let e = migrate(
        &w.store,
        w.teams_connector.as_ref(),
        Some(&w.pool),
        w.request(&bob),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // … and the service account of another tenant.
    let svc = w
        .sign_in(
            &w.ready.msteams.service_account_upn,
            &w.ready.msteams.service_account_password,
        )
        .await;
    let mut elsewhere = svc.clone();
    elsewhere.tenant = TenantId::new("fabrikam.onmicrosoft.com").unwrap();
    let e = migrate(
        &w.store,
        w.teams_connector.as_ref(),
        Some(&w.pool),
        w.request(&elsewhere),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("same tenant"), "{e}");
    let unchanged = w.teams_connection().await;
    assert_eq!(unchanged.account.user_id.as_str(), w.bob_id);
    assert!(!unchanged.account.is_service_account);
    assert!(w.migrations().await.is_empty());

    // A message arrives and is queued for Teams before the switch.
    w.post_in_slack("queued during the switch").await;
    w.translate_one().await;
    assert_eq!(w.store.outbox_pending(&w.org).await.unwrap(), 1);

    let done = migrate(
        &w.store,
        w.teams_connector.as_ref(),
        Some(&w.pool),
        w.request(&svc),
    )
    .await
    .unwrap();
    assert_eq!(done.connection.id, w.teams, "the same connection, in place");
    assert_eq!(done.connection.account.user_id.as_str(), svc_id);
    assert!(done.connection.account.is_service_account);
    assert_eq!(done.connection.health, ConnectionHealth::Ok);
    assert_eq!(done.previous.user_id.as_str(), w.bob_id);
    assert!(done.report.is_ok());
    assert_eq!(done.queued, 1, "the queued delivery is still there");
    assert_eq!(w.teams_connection().await, done.connection);
    // The universal channel was not touched.
    let linked = w
        .store
        .find_universal_channel(
            &w.org,
            &format!("msteams:{}/{}", w.team_id, w.teams_channel)
                .parse()
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(linked.endpoints().iter().any(|e| e.connection == w.teams));

    // The queued message and a new one go out through the service account.
    w.deliver_all().await;
    assert_eq!(w.poster_of("queued during the switch").await, svc_id);
    w.post_in_slack("after the switch").await;
    w.translate_one().await;
    w.deliver_all().await;
    assert_eq!(w.poster_of("after the switch").await, svc_id);
    assert_eq!(w.poster_of("before the switch").await, w.bob_id);

    // The audit log says who switched what, and holds no token.
    let entries = w.migrations().await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        e.actor,
        Actor::Admin {
            name: "alice".into()
        }
    );
    assert_eq!(e.target, w.teams.to_string());
    assert_eq!(e.details["from"]["name"], "bob@contoso.onmicrosoft.com");
    assert_eq!(e.details["from"]["service_account"], false);
    assert_eq!(e.details["to"]["user_id"], svc_id.as_str());
    let all = serde_json::to_string(&w.store.list_audit(&w.org, 0, 1000).await.unwrap()).unwrap();
    for secret in [
        svc.credentials.access_token.expose_secret(),
        w.ready.msteams.service_account_password.as_str(),
    ] {
        assert!(!all.contains(secret), "a secret reached the audit log");
    }
    assert!(w.store.verify_audit(&w.org).await.unwrap().is_ok());
    w.server.shutdown();
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn the_console_moves_a_personal_connection_to_a_service_account() {
    let w = World::new().await;
    let svc_id = user_id(&w.seed, "switchboard-svc@");
    let url = w.server.url.clone();
    let signin = w
        .http
        .post(format!("{url}/signin"))
        .form(&[("token", w.admin.expose_secret())])
        .send()
        .await
        .unwrap();
    let cookie = signin.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = |http: reqwest::Client, cookie: String| {
        let url = url.clone();
        async move {
            http.get(format!("{url}/connect"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let before = page(w.http.clone(), cookie.clone()).await;
    let action = format!("/connect/msteams/start?migrate={}", w.teams);
    assert!(before.contains("Move to a service account"), "{before}");
    assert!(before.contains(&action.replace('&', "&amp;")), "{before}");

    // An unknown connection is refused before any provider is involved.
    let bad = w
        .http
        .get(format!("{url}/connect/msteams/start?migrate=nope"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);

    // The underprivileged account is refused, and nothing changes.
    let start = |http: reqwest::Client, cookie: String| {
        let target = format!("{url}{action}");
        async move {
            let r = http
                .get(target)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 302);
            r.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    let authorize = start(w.http.clone(), cookie.clone()).await;
    let back = w
        .consent(
            &authorize,
            &w.ready.msteams.underprivileged_upn,
            &w.ready.msteams.underprivileged_password,
        )
        .await;
    let refused = w
        .http
        .get(&back)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let text = refused.text().await.unwrap();
    assert!(text.contains("Teams Administrator"), "{text}");
    assert!(!w.teams_connection().await.account.is_service_account);
    assert_eq!(
        w.store.list_connections(&w.org).await.unwrap().len(),
        2,
        "no connection was added"
    );

    // A copy posted with Bob's token before the switch.
    w.post_in_slack("relayed before the console switch").await;
    w.translate_one().await;
    w.deliver_all().await;

    // The service account: moved in place.
    let authorize = start(w.http.clone(), cookie.clone()).await;
    let back = w
        .consent(
            &authorize,
            &w.ready.msteams.service_account_upn,
            &w.ready.msteams.service_account_password,
        )
        .await;
    let done = w
        .http
        .get(&back)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let text = done.text().await.unwrap();
    assert!(text.contains("moved to a service account"), "{text}");
    // The page says what stays Bob's.
    assert!(
        text.contains("1 relayed message posted by bob@contoso.onmicrosoft.com before the switch"),
        "{text}"
    );
    assert!(
        text.contains("lets only the sender edit or delete"),
        "{text}"
    );
    // The channel's live feed is subscribed under the service account, in the background.
    let mut subs = Vec::new();
    for _ in 0..200 {
        subs = w.channel_subscriptions().await;
        if !subs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0].1, svc_id);
    let moved = w.teams_connection().await;
    assert_eq!(moved.account.user_id.as_str(), svc_id);
    assert!(moved.account.is_service_account);
    assert_eq!(w.store.list_connections(&w.org).await.unwrap().len(), 2);
    let entries = w.migrations().await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].actor,
        Actor::Admin {
            name: "alice".into()
        }
    );
    // A replayed callback is refused and changes nothing.
    let replay = w
        .http
        .get(&back)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    assert_eq!(w.migrations().await.len(), 1);
    let after = page(w.http.clone(), cookie.clone()).await;
    assert!(!after.contains("Move to a service account"), "{after}");

    // The universal channel relays through the service account.
    w.post_in_slack("after the console switch").await;
    w.translate_one().await;
    w.deliver_all().await;
    assert_eq!(w.poster_of("after the console switch").await, svc_id);
    w.server.shutdown();
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn after_a_migration_old_copies_are_counted_and_reported_and_the_feed_moves_to_the_new_account()
 {
    let w = World::new().await;
    let svc_id = user_id(&w.seed, "switchboard-svc@");
    // The feed keeper subscribes the linked Teams channel, with Bob's token.
    let keeper = FeedKeeper::new(w.store.clone(), w.pool.clone(), &w.server.url).unwrap();
    let pass = keeper.pass().await.unwrap();
    assert_eq!((pass.created, pass.failed), (1, 0), "{pass:?}");
    let before = w.channel_subscriptions().await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].1, w.bob_id);

    // Bob's token posts a copy.
    let ts = w.post_in_slack("posted with the token of bob").await;
    w.translate_one().await;
    w.deliver_all().await;
    assert_eq!(w.poster_of("posted with the token of bob").await, w.bob_id);

    let svc = w
        .sign_in(
            &w.ready.msteams.service_account_upn,
            &w.ready.msteams.service_account_password,
        )
        .await;
    let done = migrate(
        &w.store,
        w.teams_connector.as_ref(),
        Some(&w.pool),
        w.request(&svc),
    )
    .await
    .unwrap();
    // What the CLI and console print: how many copies stay Bob's, and why.
    assert_eq!(done.old_copies, 1);
    let note = old_copies_note(&done).unwrap();
    assert!(
        note.starts_with("1 relayed message posted by bob@contoso.onmicrosoft.com"),
        "{note}"
    );
    assert!(
        note.contains("lets only the sender edit or delete"),
        "{note}"
    );

    // The subscription is made again under the service account; Bob's is gone.
    let moved = keeper
        .resubscribe(&w.org, &w.teams, done.previous_feeds.as_deref())
        .await
        .unwrap();
    assert_eq!(
        (
            moved.created,
            moved.deleted,
            moved.not_deleted,
            moved.failed
        ),
        (1, 1, 0, 0),
        "{moved:?}"
    );
    let after = w.channel_subscriptions().await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].1, svc_id, "created by the service account");
    assert_ne!(after[0].0, before[0].0);
    let stored = w.store.list_subscriptions(&w.org).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id.as_str(), after[0].0);
    // The keeper keeps it (nothing to create again).
    let pass = keeper.pass().await.unwrap();
    assert_eq!((pass.created, pass.failed), (0, 0), "{pass:?}");

    // An edit of Bob's copy is reported as a dead letter, not attempted, not retried.
    let r = w
        .http
        .patch(format!(
            "{}/_sandbox/slack/messages/{}/{ts}",
            w.ready.base_url, w.slack_channel
        ))
        .json(&serde_json::json!({ "text": "edited after the switch" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let mut failed = Vec::new();
    for _ in 0..200 {
        w.relay.translate_batch().await.unwrap();
        for o in w.relay.deliver_batch().await.unwrap() {
            match o {
                DeliveryOutcome::Failed { error } => failed.push(error),
                DeliveryOutcome::Delivered => {}
                other => panic!("{other:?}"),
            }
        }
        if !failed.is_empty() && w.store.outbox_pending(&w.org).await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with(OLD_ACCOUNT_REASON), "{}", failed[0]);
    let dead = w.store.outbox_dead_letters(&w.org, None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        w.teams_messages()
            .await
            .iter()
            .all(|(body, _)| !body.contains("edited after the switch"))
    );
    assert_eq!(w.poster_of("posted with the token of bob").await, w.bob_id);
    w.server.shutdown();
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_running_server_reopens_a_connection_migrated_by_another_process() {
    let w = World::new().await;
    let svc_id = user_id(&w.seed, "switchboard-svc@");
    w.post_in_slack("before the switch").await;
    w.translate_one().await;
    w.deliver_all().await;
    assert_eq!(w.poster_of("before the switch").await, w.bob_id);
    assert!(w.pool.forget_moved().await.unwrap().is_empty());

    // `switchboard connections migrate` in another process: this server's pool is not told.
    let svc = w
        .sign_in(
            &w.ready.msteams.service_account_upn,
            &w.ready.msteams.service_account_password,
        )
        .await;
    migrate(&w.store, w.teams_connector.as_ref(), None, w.request(&svc))
        .await
        .unwrap();
    assert_eq!(
        w.pool.forget_moved().await.unwrap(),
        vec![(w.org.clone(), w.teams.clone())]
    );
    assert!(w.pool.forget_moved().await.unwrap().is_empty());

    w.post_in_slack("after the switch").await;
    w.translate_one().await;
    w.deliver_all().await;
    assert_eq!(w.poster_of("after the switch").await, svc_id);
    w.server.shutdown();
    w.sandbox.shutdown().await;
}
