//! Against the sandbox's emulated Slack (crates/sandbox, reference `docs/slack.md`): OAuth
//! with rotation and revocation, the small seed's import with exact counts, a post with
//! attribution / reply / edit / react / delete round trip checked in the sandbox's stored
//! state, an Events API delivery verified and parsed, and a Socket Mode session receiving
//! and acknowledging events across a reconnect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use switchboard_core::{
    Channel, ConnectionHealth, Credentials, Emoji, ErrorKind, EventKind, ImportSink, Membership,
    MembershipOutcome, MessageId, MessageRef, OutgoingMessage, Platform, PlatformKind,
    PortableMessage, Sender, ServiceAccount, TeamId, TeamImport, User, UserId, VerifyOptions,
    WebhookReceiver, async_trait,
};
use switchboard_sandbox::{Sandbox, SandboxConfig, Seed};
use switchboard_slack::{
    RateLimits, SlackClient, SlackConfig, SlackConnection, SlackOAuth, SocketModeClient,
    SocketModeOptions,
};
use url::Url;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const REDIRECT: &str = "http://127.0.0.1:9/connect/slack/callback";

struct Env {
    sandbox: Sandbox,
    ready: Value,
    config: SlackConfig,
    http: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        let sandbox = Sandbox::start(SandboxConfig {
            seed: Seed::Small,
            time_scale: 1.0,
            ..Default::default()
        })
        .await
        .expect("sandbox starts");
        let ready = sandbox.ready_info();
        let s = |k: &str| ready["slack"][k].as_str().unwrap().to_owned();
        let config = SlackConfig::new(
            s("client_id"),
            SecretString::from(s("client_secret")),
            SecretString::from(s("signing_secret")),
        )
        .with_base_urls(
            Url::parse(ready["slack_api_url"].as_str().unwrap()).unwrap(),
            Url::parse(&format!("{}/slack/", sandbox.base_url())).unwrap(),
        )
        .with_redirect_uri(Url::parse(REDIRECT).unwrap())
        .with_limits(RateLimits::documented());
        Env {
            sandbox,
            ready,
            config,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn slack(&self, k: &str) -> String {
        self.ready["slack"][k]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn team(&self) -> TeamId {
        TeamId::new(self.slack("team_id")).unwrap()
    }

    fn connection(&self) -> SlackConnection {
        SlackConnection::new(
            &self.config,
            SlackClient::new(&self.config).unwrap(),
            self.team(),
            Credentials {
                access_token: SecretString::from(self.slack("bot_token")),
                refresh_token: None,
                expires_at: None,
                scopes: vec![],
            },
        )
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_sandbox{path}", self.sandbox.base_url());
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn seed(&self) -> Value {
        self.control(reqwest::Method::GET, "/seed", None).await["slack"].clone()
    }

    async fn channel_id(&self, name: &str) -> String {
        let seed = self.seed().await;
        seed["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no channel {name}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn user_id(&self, name: &str) -> String {
        let seed = self.seed().await;
        seed["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no user {name}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn stored(&self, channel: &str) -> Vec<Value> {
        self.control(
            reqwest::Method::GET,
            &format!("/slack/channels/{channel}/messages"),
            None,
        )
        .await["messages"]
            .as_array()
            .unwrap()
            .clone()
    }
}

fn from_teams(text: &str, thread_root: Option<&str>) -> OutgoingMessage {
    OutgoingMessage {
        content: PortableMessage {
            sender: Sender {
                platform: PlatformKind::Msteams,
                user: UserId::new("00000000-0000-0000-0000-00000000000a").unwrap(),
                display_name: "Megan Bowen".into(),
                avatar_url: Some("https://avatars.test/megan.png".into()),
                email: Some("megan@contoso.com".into()),
            },
            text: switchboard_slack::mrkdwn::from_mrkdwn(text),
            attachments: vec![],
            thread_root: thread_root.map(|t| MessageId::new(t).unwrap()),
        },
        marker: Some("um-42".into()),
        reply_to: thread_root.map(|t| MessageId::new(t).unwrap()),
        broadcast: false,
        post_as: switchboard_core::PostingIdentity::ServiceAccount,
        files: vec![],
    }
}

/// Core's rotation callback, forwarding to a channel.
struct ChannelSink(tokio::sync::mpsc::UnboundedSender<Credentials>);

#[async_trait]
impl switchboard_core::CredentialsSink for ChannelSink {
    async fn persist(&self, credentials: &Credentials) -> switchboard_core::Result<()> {
        self.0
            .send(credentials.clone())
            .map_err(|_| switchboard_core::Error::new(ErrorKind::Storage, "closed"))
    }
}

#[tokio::test]
async fn oauth_install_rotation_and_revocation() {
    let env = Env::start().await;
    let oauth = SlackOAuth::new(&env.config, SlackClient::new(&env.config).unwrap());
    let authorize = oauth.authorize_url("state-xyz").unwrap();
    // The consent page, as a browser would show it.
    let page = env.http.get(authorize.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Accept"), "{html}");
    // Accept: the form posts the authorize parameters back with the decision.
    let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    form.push(("user_scope".into(), String::new()));
    form.push(("decision".into(), "accept".into()));
    let resp = env
        .http
        .post(format!(
            "{}/slack/oauth/v2/authorize",
            env.sandbox.base_url()
        ))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    let q: HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "state-xyz");

    let inst = oauth.exchange_code(&q["code"]).await.unwrap();
    assert_eq!(inst.team_id().unwrap(), env.team());
    assert_eq!(
        inst.bot_user_id.as_ref().unwrap().as_str(),
        env.slack("bot_user_id")
    );
    assert_eq!(inst.app_id.as_deref(), Some(env.slack("app_id").as_str()));
    assert!(!inst.is_enterprise_install && inst.enterprise_id().is_none());
    let first = inst.credentials.clone();
    assert!(
        first.refresh_token.is_some(),
        "the sandbox app rotates tokens"
    );
    assert!(first.expires_at.is_some());
    // A code is single use.
    assert_eq!(
        oauth.exchange_code(&q["code"]).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Credentials>();
    let conn = SlackConnection::from_installation(
        &env.config,
        SlackClient::new(&env.config).unwrap(),
        &inst,
    )
    .unwrap()
    .with_credentials_sink(Arc::new(ChannelSink(tx)));
    let report = conn.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.account.user_id.as_str(), env.slack("bot_user_id"));
    assert!(report.account.is_service_account);

    // Rotation: a new access token and a new refresh token, reported.
    let second = conn.refresh_credentials().await.unwrap();
    assert_ne!(
        second.access_token.expose_secret(),
        first.access_token.expose_secret()
    );
    assert_ne!(
        second.refresh_token.as_ref().unwrap().expose_secret(),
        first.refresh_token.as_ref().unwrap().expose_secret()
    );
    assert_eq!(
        rx.try_recv().unwrap().access_token.expose_secret(),
        second.access_token.expose_secret()
    );
    // The old refresh token is dead now.
    let dead = oauth
        .refresh(first.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    assert_eq!(dead.kind(), ErrorKind::NeedsReauth, "{dead}");

    // An access token Slack expired early is refreshed on the spot.
    env.control(
        reqwest::Method::POST,
        "/slack/tokens/expire",
        Some(json!({"token": second.access_token.expose_secret()})),
    )
    .await;
    assert_eq!(conn.list_teams().await.unwrap().teams[0].id, env.team());
    let third = rx
        .try_recv()
        .expect("rotation after token_expired reported");
    assert_ne!(
        third.access_token.expose_secret(),
        second.access_token.expose_secret()
    );

    // A revoked grant: NeedsReauth, and the connection reports it.
    env.control(
        reqwest::Method::POST,
        "/slack/tokens/revoke",
        Some(json!({"token": third.refresh_token.as_ref().unwrap().expose_secret()})),
    )
    .await;
    let e = conn.refresh_credentials().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NeedsReauth, "{e}");
    assert_eq!(conn.health().await.unwrap(), ConnectionHealth::NeedsReauth);
    assert!(!format!("{e:?} {conn:?}").contains(third.access_token.expose_secret()));
}

#[derive(Default)]
struct Sink {
    channels: Vec<Channel>,
    members: Vec<Membership>,
    users: Vec<User>,
    channel_members: Vec<(String, UserId)>,
    progress: usize,
}

#[async_trait]
impl ImportSink for Sink {
    async fn channels(&mut self, _: &TeamId, page: Vec<Channel>) -> switchboard_core::Result<()> {
        self.channels.extend(page);
        Ok(())
    }
    async fn members(&mut self, _: &TeamId, page: Vec<Membership>) -> switchboard_core::Result<()> {
        self.members.extend(page);
        Ok(())
    }
    async fn users(&mut self, page: Vec<User>) -> switchboard_core::Result<()> {
        self.users.extend(page);
        Ok(())
    }
    async fn channel_members(
        &mut self,
        channel: &switchboard_core::ChannelRef,
        page: Vec<UserId>,
    ) -> switchboard_core::Result<()> {
        self.channel_members
            .extend(page.into_iter().map(|u| (channel.channel.to_string(), u)));
        Ok(())
    }
    async fn progress(&mut self, _: switchboard_core::Progress) -> switchboard_core::Result<()> {
        self.progress += 1;
        Ok(())
    }
}

#[tokio::test]
async fn the_small_seed_imports_with_exact_counts() {
    let env = Env::start().await;
    let conn = env.connection();
    let listing = conn.list_teams().await.unwrap();
    assert_eq!(listing.teams.len(), 1);
    assert_eq!(listing.teams[0].id, env.team());
    assert_eq!(listing.teams[0].name, env.slack("team_name"));
    let mut sink = Sink::default();
    let counts = conn.import_team(&env.team(), &mut sink).await.unwrap();
    let users = conn.import_users(&mut sink).await.unwrap();
    // #general, #random, #engineering, #marketing; #leadership is private without the bot,
    // #old-project archived.
    assert_eq!(counts.channels, 4);
    let mut names: Vec<_> = sink.channels.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["engineering", "general", "marketing", "random"]);
    // Channel membership is not read for every channel (a call each): on demand only.
    assert_eq!(counts.members, 0);
    assert!(sink.members.is_empty() && sink.channel_members.is_empty());
    // Everyone in users.list: five people, two bots, frank (deactivated).
    assert_eq!(users.users, 8);
    assert!(sink.progress >= 2);

    // Cross-check against the seeded world.
    let seed = env.seed().await;
    let visible = seed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["is_archived"] != true && (c["is_private"] != true || c["is_member"] == true))
        .count();
    assert_eq!(visible as u64, counts.channels);
    assert_eq!(seed["users"].as_array().unwrap().len() as u64, users.users);
    let alice = sink
        .users
        .iter()
        .find(|u| u.email.as_deref() == Some("alice@contoso.com"))
        .unwrap();
    assert_eq!(alice.display_name, "Alice");
    assert!(!alice.is_bot && !alice.is_deleted && !alice.is_guest);
    assert_eq!(sink.users.iter().filter(|u| u.is_bot).count(), 2);
    assert_eq!(sink.users.iter().filter(|u| u.is_deleted).count(), 1);

    // One channel's members, when it gets linked.
    let general = env.channel_id("general").await;
    let chan: switchboard_core::ChannelRef =
        format!("slack:{}/{general}", env.team()).parse().unwrap();
    let counts = conn.import_channel_members(&chan, &mut sink).await.unwrap();
    assert_eq!(counts.members as usize, sink.channel_members.len());
    let ids: std::collections::HashSet<&str> = sink
        .channel_members
        .iter()
        .map(|(_, u)| u.as_str())
        .collect();
    assert_eq!(ids.len(), sink.channel_members.len(), "each member once");
    assert!(ids.contains(env.user_id("alice").await.as_str()));
    assert!(ids.contains(env.slack("bot_user_id").as_str()));
    assert!(sink.channel_members.iter().all(|(c, _)| *c == general));
    let other: switchboard_core::ChannelRef = "slack:T999/C1".parse().unwrap();
    assert_eq!(
        conn.import_channel_members(&other, &mut sink)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn post_reply_edit_react_delete_round_trip() {
    let env = Env::start().await;
    let conn = env.connection();
    let general = env.channel_id("general").await;
    let chan: switchboard_core::ChannelRef =
        format!("slack:{}/{general}", env.team()).parse().unwrap();

    let posted = conn
        .post(&chan, &from_teams("Hello *Slack* & <@U000>!", None))
        .await
        .unwrap();
    let root = posted.reference.message.clone();
    let reply = conn
        .post(&chan, &from_teams("a reply", Some(root.as_str())))
        .await
        .unwrap();
    assert_eq!(reply.reference.thread_root.as_ref(), Some(&root));

    let stored = env.stored(&general).await;
    let find = |msgs: &[Value], ts: &str| msgs.iter().find(|m| m["ts"] == ts).cloned().unwrap();
    let m = find(&stored, root.as_str());
    assert_eq!(m["username"], "Megan Bowen");
    assert_eq!(m["icon_url"], "https://avatars.test/megan.png");
    assert_eq!(m["bot_id"], env.slack("bot_id"));
    assert_eq!(m["text"], "Hello *Slack* &amp; <@U000>!");
    assert_eq!(m["metadata"]["event_type"], "switchboard_relayed");
    assert_eq!(m["metadata"]["event_payload"]["marker"], "um-42");
    let r = find(&stored, reply.reference.message.as_str());
    assert_eq!(r["thread_ts"], root.as_str());
    assert_eq!(r["username"], "Megan Bowen");

    conn.edit(
        &posted.reference,
        &from_teams("Hello again", None),
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    let thumbs = Emoji::Unicode {
        value: "👍".into(),
        name: None,
    };
    conn.react(
        &posted.reference,
        &thumbs,
        switchboard_core::ReactionChange::Add,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.react(
        &posted.reference,
        &thumbs,
        switchboard_core::ReactionChange::Add,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .expect("reacting twice is fine");
    let party = Emoji::Custom {
        name: "tada".into(),
    };
    conn.react(
        &posted.reference,
        &party,
        switchboard_core::ReactionChange::Add,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.react(
        &posted.reference,
        &party,
        switchboard_core::ReactionChange::Remove,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.react(
        &posted.reference,
        &party,
        switchboard_core::ReactionChange::Remove,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .expect("removing twice is fine");
    let m = find(&env.stored(&general).await, root.as_str());
    // chat.update dropped the custom name (as Slack does): the text still names the sender.
    assert_eq!(m["username"], Value::Null, "{m}");
    assert_eq!(m["text"], "*Megan Bowen*: Hello again");
    assert_eq!(m["metadata"]["event_payload"]["marker"], "um-42");
    assert!(m["edited"].is_object(), "{m}");
    let reactions = m["reactions"].as_array().unwrap();
    assert_eq!(reactions.len(), 1, "{m}");
    assert!(reactions[0]["name"] == "+1" || reactions[0]["name"] == "thumbsup");
    assert_eq!(reactions[0]["users"], json!([env.slack("bot_user_id")]));

    let reply_ref = MessageRef {
        thread_root: Some(root.clone()),
        ..reply.reference.clone()
    };
    conn.delete(
        &reply_ref,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.delete(
        &posted.reference,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.delete(
        &posted.reference,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .expect("deleting twice is fine");
    let after = env.stored(&general).await;
    let gone = |ts: &str| {
        after
            .iter()
            .find(|m| m["ts"] == ts)
            .is_none_or(|m| m["deleted"] == true)
    };
    assert!(
        gone(root.as_str()) && gone(reply.reference.message.as_str()),
        "{after:#?}"
    );

    // Membership: a public channel the bot is not in is joined; a private one needs a human.
    let random = env.channel_id("random").await;
    let random_ref = format!("slack:{}/{random}", env.team()).parse().unwrap();
    assert_eq!(
        conn.ensure_membership(&random_ref).await.unwrap(),
        MembershipOutcome::Added
    );
    assert_eq!(
        conn.ensure_membership(&random_ref).await.unwrap(),
        MembershipOutcome::AlreadyMember
    );
    let leadership = env.channel_id("leadership").await;
    let private_ref = format!("slack:{}/{leadership}", env.team())
        .parse()
        .unwrap();
    match conn.ensure_membership(&private_ref).await.unwrap() {
        MembershipOutcome::ActionRequired { fix } => assert!(fix.contains("/invite"), "{fix}"),
        other => panic!("{other:?}"),
    }
}

/// Echoes `url_verification` challenges; everything else gets 200.
struct Receiver;

impl Respond for Receiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let v: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if v["type"] == "url_verification" {
            return ResponseTemplate::new(200).set_body_json(json!({"challenge": v["challenge"]}));
        }
        ResponseTemplate::new(200)
    }
}

#[tokio::test]
async fn events_api_delivery_is_verified_and_parsed() {
    let env = Env::start().await;
    let receiver = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Receiver)
        .mount(&receiver)
        .await;
    env.control(
        reqwest::Method::PUT,
        "/slack/event_subscription",
        Some(json!({"request_url": format!("{}/webhooks/slack/events", receiver.uri())})),
    )
    .await;

    let conn = env.connection();
    let own = conn.own_identity().await.unwrap();
    let general = env.channel_id("general").await;
    let alice = env.user_id("alice").await;
    env.control(
        reqwest::Method::POST,
        "/slack/messages",
        Some(json!({"user": alice, "channel": general, "text": "Hi *team* :tada:"})),
    )
    .await;
    let chan = format!("slack:{}/{general}", env.team()).parse().unwrap();
    conn.post(&chan, &from_teams("relayed from Teams", None))
        .await
        .unwrap();

    // Wait for both deliveries (the sandbox delivers in the background).
    let mut callbacks = Vec::new();
    for _ in 0..100 {
        callbacks = receiver
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| !String::from_utf8_lossy(&r.body).contains("url_verification"))
            .collect::<Vec<_>>();
        if callbacks.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(callbacks.len() >= 2, "got {} deliveries", callbacks.len());

    let secret = SecretString::from(env.slack("signing_secret"));
    let identities = Arc::new(switchboard_slack::OwnIdentityCache::default());
    identities.insert(env.team(), own.clone());
    let slack_events =
        switchboard_slack::SlackEventsReceiver::new(secret.clone(), None, identities);
    let mut relayed = Vec::new();
    let mut own_count = 0;
    for r in &callbacks {
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let now = time::OffsetDateTime::now_utc();
        let req = switchboard_core::WebhookRequest {
            endpoint: switchboard_core::WebhookEndpoint::SlackEvents,
            query: "",
            headers: &headers,
            body: &r.body,
            received_at: now,
        };
        let outcome = slack_events
            .receive(&req)
            .await
            .expect("the sandbox signs like Slack");
        // A tampered copy, or one received more than 300 s after it was signed, is refused.
        let mut tampered = r.body.clone();
        tampered.push(b' ');
        let bad = switchboard_core::WebhookRequest {
            body: &tampered,
            ..req
        };
        assert_eq!(
            slack_events.receive(&bad).await.unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        let late = switchboard_core::WebhookRequest {
            received_at: now + time::Duration::seconds(301),
            ..req
        };
        assert_eq!(
            slack_events.receive(&late).await.unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        let switchboard_core::WebhookOutcome::Accept { routed, status } = outcome else {
            panic!("not an event: {}", String::from_utf8_lossy(&r.body))
        };
        assert_eq!(status, 200);
        if routed.is_empty() {
            own_count += 1;
        }
        for group in routed {
            assert_eq!(
                group.route,
                switchboard_core::Route::Workspace { team: env.team() }
            );
            for item in group.items {
                let switchboard_core::Inbound::Event(e) = item else {
                    panic!("{item:?}")
                };
                assert!(e.event_id.starts_with("Ev"), "{}", e.event_id);
                relayed.push(e);
            }
        }
    }
    assert_eq!(own_count, 1, "our own post is recognised");
    assert_eq!(relayed.len(), 1);
    let mut ev = relayed[0].clone();
    assert_eq!(ev.channel.channel.as_str(), general);
    {
        let EventKind::Posted { content, .. } = &ev.kind else {
            panic!("{ev:?}")
        };
        assert_eq!(content.sender.user.as_str(), alice);
        assert_ne!(content.sender.display_name, alice, "never the raw id");
        assert_eq!(content.text.to_plain_text(), "Hi team 🎉");
    }
    // The name comes from users.info (cached in the connection), off the ack path.
    conn.resolve_sender(&mut ev).await.unwrap();
    let EventKind::Posted { content, .. } = &ev.kind else {
        panic!("{ev:?}")
    };
    assert_eq!(content.sender.display_name, "Alice");
    assert_eq!(content.sender.email.as_deref(), Some("alice@contoso.com"));
}

struct Forward {
    tx: tokio::sync::mpsc::UnboundedSender<switchboard_core::Inbound>,
}

#[async_trait]
impl switchboard_core::EventSink for Forward {
    async fn accept(
        &self,
        _: &switchboard_core::ConnectionId,
        items: Vec<switchboard_core::Inbound>,
    ) -> switchboard_core::Result<()> {
        for item in items {
            self.tx
                .send(item)
                .map_err(|_| switchboard_core::Error::new(ErrorKind::Storage, "receiver gone"))?;
        }
        Ok(())
    }
}

async fn wait_for_socket(env: &Env, connected: bool) {
    for _ in 0..100 {
        let sub = env
            .control(reqwest::Method::GET, "/slack/event_subscription", None)
            .await;
        if (sub["socket_mode_connections"].as_u64().unwrap_or(0) > 0) == connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("socket mode connected != {connected}");
}

#[tokio::test]
async fn socket_mode_session_receives_and_acknowledges_events() {
    let env = Env::start().await;
    let conn = env.connection();
    let own = conn.own_identity().await.unwrap();
    let client = SocketModeClient::new(
        SlackClient::new(&env.config).unwrap(),
        SecretString::from(env.slack("app_token")),
    )
    .with_options(SocketModeOptions {
        initial_backoff: Duration::from_millis(100),
        ..SocketModeOptions::default()
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let identities = Arc::new(switchboard_slack::OwnIdentityCache::default());
    identities.insert(env.team(), own.clone());
    let target = switchboard_slack::SocketTarget {
        receiver: Arc::new(switchboard_slack::SlackEventsReceiver::new(
            SecretString::from(env.slack("signing_secret")),
            None,
            identities,
        )),
        sink: Arc::new(Forward { tx }),
        connection_of: Arc::new(|_| Some(switchboard_core::ConnectionId::new("c-1").unwrap())),
    };
    let run = tokio::spawn(async move {
        client
            .run(&target, async {
                let _ = stop_rx.await;
            })
            .await
    });
    wait_for_socket(&env, true).await;

    let general = env.channel_id("general").await;
    let bob = env.user_id("bob").await;
    let said = Arc::new(Mutex::new(Vec::<String>::new()));
    for (i, text) in ["first over the socket", "second, after a reconnect"]
        .into_iter()
        .enumerate()
    {
        if i == 1 {
            // Slack asks the app to reconnect: the client opens a fresh connection.
            env.control(
                reqwest::Method::POST,
                "/slack/socket/disconnect",
                Some(json!({"reason": "refresh_requested"})),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            wait_for_socket(&env, true).await;
        }
        env.control(
            reqwest::Method::POST,
            "/slack/messages",
            Some(json!({"user": bob, "channel": general, "text": text})),
        )
        .await;
        let item = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event arrives")
            .unwrap();
        let switchboard_core::Inbound::Event(ev) = item else {
            panic!("{item:?}")
        };
        let EventKind::Posted { content, .. } = ev.kind else {
            panic!()
        };
        said.lock().unwrap().push(content.text.to_plain_text());
    }
    assert_eq!(
        *said.lock().unwrap(),
        vec!["first over the socket", "second, after a reconnect"]
    );

    // Both were acknowledged: the sandbox's delivery log says delivered over Socket Mode.
    let mut delivered = 0;
    for _ in 0..50 {
        let log = env
            .control(reqwest::Method::GET, "/slack/events", None)
            .await;
        delivered = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["status"] == "delivered" && e["via"] == "socket_mode")
            .count();
        if delivered >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered >= 2, "acknowledged deliveries: {delivered}");

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("stops")
        .unwrap()
        .expect("clean shutdown");
}

// Fault kinds as PRODUCT.md names them: `error_5xx` and `throttle_429`.
#[tokio::test]
async fn the_import_survives_injected_5xx_and_429_storms() {
    let env = Env::start().await;
    let config = env
        .config
        .clone()
        .with_retry(switchboard_slack::RetryPolicy {
            max_transient_retries: 8,
            transient_backoff: Duration::from_millis(10),
            ..Default::default()
        });
    let conn = SlackConnection::new(
        &config,
        SlackClient::new(&config).unwrap(),
        env.team(),
        Credentials {
            access_token: SecretString::from(env.slack("bot_token")),
            refresh_token: None,
            expires_at: None,
            scopes: vec![],
        },
    );
    for (kind, rate) in [("error_5xx", 0.3), ("throttle_429", 0.3)] {
        env.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"platform": "slack", "kind": kind, "rate": rate, "seconds": 60})),
        )
        .await;
    }
    let mut sink = Sink::default();
    let counts = conn.import_team(&env.team(), &mut sink).await.unwrap();
    let users = conn.import_users(&mut sink).await.unwrap();
    env.control(reqwest::Method::DELETE, "/faults", None).await;
    // The same exact counts as without faults: nothing lost, nothing twice.
    assert_eq!((counts.channels, counts.members, users.users), (4, 0, 8));
    let stats = env.control(reqwest::Method::GET, "/stats", None).await;
    let client = conn.client().stats();
    assert_eq!(
        client.rate_limited,
        stats["throttled_429"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn history_catch_up_spends_few_calls_under_the_2025_limits_and_finds_markers() {
    use switchboard_core::{History, HistoryStart};
    let env = Env::start().await;
    let config = env
        .config
        .clone()
        .with_distribution(switchboard_slack::Distribution::NonMarketplace);
    let conn = SlackConnection::new(
        &config,
        SlackClient::new(&config).unwrap(),
        env.team(),
        Credentials {
            access_token: SecretString::from(env.slack("bot_token")),
            refresh_token: None,
            expires_at: None,
            scopes: vec![],
        },
    );
    let general = env.channel_id("general").await;
    let chan: switchboard_core::ChannelRef =
        format!("slack:{}/{general}", env.team()).parse().unwrap();
    let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let say = |user: &'static str, text: String, thread: Option<String>| {
        let env = &env;
        let general = general.clone();
        async move {
            let mut body = json!({"user": user, "channel": general, "text": text});
            if let Some(t) = thread {
                body["thread_ts"] = json!(t);
            }
            env.control(reqwest::Method::POST, "/slack/messages", Some(body))
                .await["ts"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    for i in 0..20 {
        say("alice", format!("old {i}"), None).await;
    }
    let root = say("alice", "a thread".into(), None).await;
    let r1 = say("bob", "reply one".into(), Some(root.clone())).await;
    let r2 = say("bob", "reply two".into(), Some(root.clone())).await;
    let ours = conn
        .post(&chan, &from_teams("relayed", None))
        .await
        .unwrap();

    // Reconciliation (an internal app here): our marker comes back
    // (include_all_metadata=true), newest first.
    let recent = env
        .connection()
        .recent_messages(&chan, since, 5)
        .await
        .unwrap();
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0].reference.message, ours.reference.message);
    assert_eq!(recent[0].marker.as_deref(), Some("um-42"));
    assert_eq!(
        recent[0].posted_by,
        Some(switchboard_core::PostingIdentity::ServiceAccount)
    );
    assert!(
        recent[1..]
            .iter()
            .all(|m| m.marker.is_none() && m.posted_by.is_none())
    );

    // A non-Marketplace commercial app: 1 history request a minute, 15 messages a page.
    env.control(
        reqwest::Method::PUT,
        "/slack/modes",
        Some(json!({"history_limits": "non_marketplace"})),
    )
    .await;
    let before = conn.client().stats();
    let page = conn
        .changes_since(&chan, &HistoryStart::Time { since }, 100)
        .await
        .unwrap();
    let after = conn.client().stats();
    let calls = |m: &str| {
        after.requests.get(m).copied().unwrap_or(0) - before.requests.get(m).copied().unwrap_or(0)
    };
    assert_eq!(calls("conversations.history"), 1, "one history page");
    assert_eq!(
        calls("conversations.replies"),
        1,
        "replies only for the thread with new ones"
    );
    assert_eq!(after.rate_limited, before.rate_limited, "no 429");
    // The newest page (15 top-level messages, ours left out) plus the thread's replies, in
    // ts order; more exists before it.
    assert!(page.more);
    let ts: Vec<String> = page
        .events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Posted { message, .. } => message.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ts.len(), 14 + 2, "{ts:?}");
    let mut sorted = ts.clone();
    sorted.sort_by(|a, b| {
        let n = |t: &str| t.replace('.', "").parse::<u64>().unwrap();
        n(a).cmp(&n(b))
    });
    assert_eq!(ts, sorted, "oldest first, by ts");
    assert!(
        !ts.contains(&ours.reference.message.to_string()),
        "our own post is not caught up"
    );
    let pos = |t: &str| ts.iter().position(|x| x == t).unwrap();
    assert!(pos(&root) < pos(&r1) && pos(&r1) < pos(&r2));
    assert_eq!(page.cursor.0, r2.max(ours.reference.message.to_string()));
}

#[tokio::test]
async fn the_connector_opens_a_stored_connection_into_live_objects() {
    use switchboard_core::Connector;
    let env = Env::start().await;
    let connector = switchboard_slack::SlackConnector::new(env.config.clone()).unwrap();
    assert_eq!(connector.platform(), PlatformKind::Slack);
    let mut stored = switchboard_core::Connection {
        id: switchboard_core::ConnectionId::new("conn-slack-1").unwrap(),
        org: switchboard_core::OrgId::new("org-1").unwrap(),
        platform: PlatformKind::Slack,
        tenant: switchboard_core::TenantId::new(env.team().as_str()).unwrap(),
        enterprise: None,
        display_name: "Contoso".into(),
        account: switchboard_core::AccountIdentity {
            user_id: UserId::new(env.slack("bot_user_id")).unwrap(),
            display_name: "switchboard".into(),
            is_service_account: true,
        },
        health: ConnectionHealth::Ok,
        created_at: time::OffsetDateTime::now_utc(),
    };
    let credentials = || Credentials {
        access_token: SecretString::from(env.slack("bot_token")),
        refresh_token: None,
        expires_at: None,
        scopes: vec![],
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel::<Credentials>();
    let sink = Arc::new(ChannelSink(tx));
    let live = connector
        .open(&stored, credentials(), sink.clone())
        .await
        .unwrap();
    assert_eq!(live.platform.kind(), PlatformKind::Slack);
    assert!(live.resolver.is_none(), "Slack events carry their content");
    let teams = live.import.list_teams().await.unwrap();
    assert_eq!(teams.teams[0].id, env.team());
    let report = live.account.verify(VerifyOptions::default()).await.unwrap();
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.kind == switchboard_core::CheckKind::Token && c.ok)
    );
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.kind != switchboard_core::CheckKind::Scope || c.ok)
    );
    let general = env.channel_id("general").await;
    let chan: switchboard_core::ChannelRef =
        format!("slack:{}/{general}", env.team()).parse().unwrap();
    let posted = live
        .platform
        .post(&chan, &from_teams("via the connector", None))
        .await
        .unwrap();
    let recent = live
        .history
        .recent_messages(
            &chan,
            time::OffsetDateTime::now_utc() - time::Duration::seconds(60),
            3,
        )
        .await
        .unwrap();
    assert_eq!(recent[0].reference.message, posted.reference.message);
    // Another platform's connection is refused, nothing opened.
    stored.platform = PlatformKind::Msteams;
    let e = connector
        .open(&stored, credentials(), sink)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}
