//! Against the in-process sandbox (Microsoft identity + Graph emulator), with the documented
//! rate limits enforced: connect with code + PKCE, role reports, the small-seed import with
//! exact counts, membership, a message round trip, subscriptions with the validation
//! handshake, delta catch-up, token expiry and revocation.

#[allow(unused_imports)]
use crate::sandbox_support;

use std::sync::Arc;
use std::time::Duration;

use sandbox_support::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use switchboard_core::{
    ChannelRef, ClientStates, ConnectionHealth, Connector, ErrorKind, EventKind, History,
    HistoryStart, ImportCounts, Inbound, MembershipOutcome, MessageRef, OutgoingMessage, Platform,
    PlatformKind, PortableMessage, Resolver, RichText, Sender, ServiceAccount, SubscriptionId,
    TeamId, TeamImport, TeamListSource, UserId, VerifyOptions, WebhookEndpoint, WebhookOutcome,
    WebhookReceiver, WebhookRequest,
};
use switchboard_msteams::subscriptions::{SubscribeOutcome, SubscriptionSpec, parse_notifications};
use switchboard_msteams::{
    GraphReceiver, MsTeamsConnection, OAuthClient, Pkce, TeamAccess, TeamsResolver,
    validation_response,
};
use switchboard_sandbox::Seed;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SCALE: f64 = 1.0;

struct Collect {
    channels: Vec<switchboard_core::Channel>,
    members: Vec<switchboard_core::Membership>,
    users: Vec<switchboard_core::User>,
}

#[async_trait::async_trait]
impl switchboard_core::ImportSink for Collect {
    async fn channels(
        &mut self,
        _t: &TeamId,
        page: Vec<switchboard_core::Channel>,
    ) -> switchboard_core::Result<()> {
        self.channels.extend(page);
        Ok(())
    }
    async fn members(
        &mut self,
        _t: &TeamId,
        page: Vec<switchboard_core::Membership>,
    ) -> switchboard_core::Result<()> {
        self.members.extend(page);
        Ok(())
    }
    async fn users(&mut self, page: Vec<switchboard_core::User>) -> switchboard_core::Result<()> {
        self.users.extend(page);
        Ok(())
    }
}

fn collect() -> Collect {
    Collect {
        channels: vec![],
        members: vec![],
        users: vec![],
    }
}

/// A team of the seed the given user belongs to, with its first standard channel.
async fn seeded_channel(env: &Env) -> (Value, ChannelRef) {
    let seed = env.control_get("/seed").await;
    let team = seed["msteams"]["teams"][0].clone();
    let channel = team["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["membershipType"] == "standard")
        .unwrap()
        .clone();
    let r = ChannelRef::new(
        PlatformKind::Msteams,
        TeamId::new(team["id"].as_str().unwrap()).unwrap(),
        channel["id"].as_str().unwrap().parse().unwrap(),
    );
    (team, r)
}

fn slack_message(text: &str, root: Option<&switchboard_core::MessageId>) -> OutgoingMessage {
    OutgoingMessage {
        content: PortableMessage {
            sender: Sender {
                platform: PlatformKind::Slack,
                user: UserId::new("U0SLACK1").unwrap(),
                display_name: "Sam Slack".into(),
                avatar_url: None,
                email: None,
            },
            text: RichText::plain(text),
            attachments: vec![],
            thread_root: root.cloned(),
        },
        marker: None,
        reply_to: root.cloned(),
        broadcast: false,
        post_as: switchboard_core::PostingIdentity::ServiceAccount,
        files: vec![],
    }
}

#[tokio::test]
async fn connect_with_code_and_pkce_then_refresh() {
    let env = Env::start(Seed::Small, SCALE).await;
    let config = env.config(SCALE);
    let creds = env
        .sign_in(
            &config,
            &env.ms("service_account_upn"),
            &env.ms("service_account_password"),
        )
        .await;
    assert!(
        creds.refresh_token.is_some(),
        "offline_access gives a refresh token"
    );
    assert!(creds.expires_at.is_some());
    let first_refresh = creds.refresh_token.clone().unwrap();
    let conn = MsTeamsConnection::from_credentials(config.clone(), creds, None).unwrap();
    let me = conn.identity().await.unwrap();
    assert_eq!(me.display_name, env.ms("service_account_upn"));
    assert_eq!(conn.health().await.unwrap(), ConnectionHealth::Ok);
    // refresh rotates the refresh token
    let rotated = conn.refresh_credentials().await.unwrap();
    assert_ne!(
        rotated.refresh_token.unwrap().expose_secret(),
        first_refresh.expose_secret()
    );

    // the connector opens a stored connection: one object behind every seam, and every
    // rotation goes to core's CredentialsSink
    let creds = env
        .sign_in(
            &config,
            &env.ms("service_account_upn"),
            &env.ms("service_account_password"),
        )
        .await;
    let stored = switchboard_core::Connection {
        id: switchboard_core::ConnectionId::generate(),
        org: switchboard_core::OrgId::generate(),
        platform: PlatformKind::Msteams,
        tenant: switchboard_core::TenantId::new(env.ms("tenant_id")).unwrap(),
        enterprise: None,
        display_name: "Contoso".into(),
        account: me.clone(),
        health: ConnectionHealth::Ok,
        created_at: time::OffsetDateTime::now_utc(),
    };
    let sink = Arc::new(Persisted(parking_lot::Mutex::new(0)));
    let connected = switchboard_msteams::MsTeamsConnector::new(config.clone())
        .open(&stored, creds, sink.clone())
        .await
        .unwrap();
    assert_eq!(connected.platform.kind(), PlatformKind::Msteams);
    assert_eq!(
        connected.platform.identity().await.unwrap().user_id,
        me.user_id
    );
    assert!(connected.resolver.is_some());
    connected.account.refresh_credentials().await.unwrap();
    assert_eq!(*sink.0.lock(), 1);
    let slack = switchboard_core::Connection {
        platform: PlatformKind::Slack,
        ..stored
    };
    let e = switchboard_msteams::MsTeamsConnector::new(config.clone())
        .open(&slack, conn.tokens().credentials().await, sink)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    // the code is bound to the PKCE verifier: the wrong verifier is refused
    let oauth = OAuthClient::new(&config).unwrap();
    let start = oauth.authorization_request(None);
    let query = env
        .consent(
            start.url.as_str(),
            &env.ms("service_account_upn"),
            &env.ms("service_account_password"),
        )
        .await;
    let cb = switchboard_msteams::oauth::parse_callback(&query, &start.state).unwrap();
    let wrong = Pkce::generate();
    let e = oauth
        .exchange_code(&cb.code, wrong.verifier())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NeedsReauth, "{e}");
    // and a reused state is refused before any exchange
    assert!(switchboard_msteams::oauth::parse_callback(&query, "another-state").is_err());
}

#[tokio::test]
async fn role_reports_for_the_good_and_the_underprivileged_account() {
    let env = Env::start(Seed::Small, SCALE).await;
    let good = env.service_connection(SCALE).await;
    let report = good.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_ok(), "{report:#?}");
    let with_guests = good
        .verify(VerifyOptions { guest_sync: true })
        .await
        .unwrap();
    assert!(
        with_guests
            .checks
            .iter()
            .any(|c| c.name == "User Administrator role" && c.ok),
        "{with_guests:#?}"
    );

    let config = env.config(SCALE);
    let creds = env
        .sign_in(
            &config,
            &env.ms("underprivileged_upn"),
            &env.ms("underprivileged_password"),
        )
        .await;
    let weak = MsTeamsConnection::from_credentials(config, creds, None).unwrap();
    let report = weak.verify(VerifyOptions::default()).await.unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.health(), ConnectionHealth::MissingRoles);
    let problems: Vec<_> = report.problems().map(|c| c.name.as_str()).collect();
    assert_eq!(problems, ["Teams Administrator role"], "{report:#?}");
    let fix = report.problems().next().unwrap().fix.clone().unwrap();
    assert!(fix.contains(&env.ms("underprivileged_upn")), "{fix}");

    // a non-admin lists every team (as Graph allows with Team.ReadBasic.All); the import
    // skips the teams it may not read, says why, and imports the others
    let listing = weak.list_teams().await.unwrap();
    assert_eq!(listing.source, TeamListSource::TenantWide);
    let ids: Vec<TeamId> = listing.teams.iter().map(|t| t.id.clone()).collect();
    let mut sink = Collect {
        channels: vec![],
        members: vec![],
        users: vec![],
    };
    let report = weak.import_teams_report(&ids, &mut sink).await.unwrap();
    assert!(!report.skipped.is_empty());
    assert!(report.skipped.len() < ids.len());
    assert!(
        report.skipped[0].reason.contains("was skipped")
            && report.skipped[0].reason.contains("Teams Administrator"),
        "{:?}",
        report.skipped[0]
    );
    let skipped: Vec<&TeamId> = report.skipped.iter().map(|s| &s.team).collect();
    assert!(sink.channels.iter().all(|c| !skipped.contains(&&c.team)));
    assert!(report.counts.channels > 0);
}

#[tokio::test]
async fn import_of_the_small_seed_has_exact_counts_and_membership() {
    let env = Env::start(Seed::Small, SCALE).await;
    let conn = env.service_connection(SCALE).await;
    let seed = env.control_get("/seed").await;
    let seed_teams = seed["msteams"]["teams"].as_array().unwrap();
    let seed_users = seed["msteams"]["users"].as_array().unwrap();

    let listing = conn.list_teams().await.unwrap();
    assert_eq!(listing.source, TeamListSource::TenantWide);
    assert_eq!(listing.teams.len(), seed_teams.len());
    let ids: Vec<TeamId> = listing.teams.iter().map(|t| t.id.clone()).collect();

    let mut total = ImportCounts::default();
    for t in seed_teams {
        let id = TeamId::new(t["id"].as_str().unwrap()).unwrap();
        let mut sink = collect();
        let counts = conn.import_team(&id, &mut sink).await.unwrap();
        let expected = t["channels"].as_array().unwrap();
        assert_eq!(
            counts.channels as usize,
            expected.len(),
            "channels of {}",
            t["displayName"]
        );
        for c in expected {
            let got = sink
                .channels
                .iter()
                .find(|x| x.id.as_str() == c["id"].as_str().unwrap())
                .unwrap();
            assert_eq!(got.kind.as_str(), c["membershipType"].as_str().unwrap());
            assert_eq!(got.name, c["displayName"].as_str().unwrap());
        }
        assert!(counts.members > 0);
        total.channels += counts.channels;
        total.members += counts.members;
    }
    let mut all = collect();
    let counts = conn.import_teams(&ids, &mut all).await.unwrap();
    assert_eq!(
        (counts.channels, counts.members),
        (total.channels, total.members)
    );

    // channel members on demand: a private channel's own members, a standard channel's
    // are the team's
    for t in seed_teams {
        let tid = TeamId::new(t["id"].as_str().unwrap()).unwrap();
        let team_members = conn
            .import_team(&tid, &mut collect())
            .await
            .unwrap()
            .members;
        for c in t["channels"].as_array().unwrap() {
            let cref: ChannelRef = format!(
                "msteams:{}/{}",
                t["id"].as_str().unwrap(),
                c["id"].as_str().unwrap()
            )
            .parse()
            .unwrap();
            let mut sink = ChannelMembers(Vec::new());
            let n = conn.import_channel_members(&cref, &mut sink).await.unwrap();
            assert_eq!(n.members as usize, sink.0.len());
            if c["membershipType"] == "standard" {
                assert_eq!(n.members, team_members, "{cref}");
            } else if c["membershipType"] == "private" {
                assert!(n.members >= 1 && n.members <= team_members, "{cref}");
            }
        }
    }

    let mut users = collect();
    let counts = conn.import_users(&mut users).await.unwrap();
    assert_eq!(counts.users as usize, seed_users.len());
    for u in seed_users {
        let got = users
            .users
            .iter()
            .find(|x| x.id.as_str() == u["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(got.email.as_deref(), u["mail"].as_str());
    }

    // membership ensured on every imported team
    for (team, outcome) in conn.ensure_memberships(&ids).await {
        let outcome = outcome.unwrap();
        assert!(
            matches!(
                outcome,
                MembershipOutcome::AlreadyMember | MembershipOutcome::Added
            ),
            "{team}: {outcome:?}"
        );
        assert_eq!(
            conn.check_membership(&team).await.unwrap(),
            TeamAccess::Member,
            "{team}"
        );
    }
}

/// Counts rotations handed to it.
struct Persisted(parking_lot::Mutex<u32>);

#[async_trait::async_trait]
impl switchboard_core::CredentialsSink for Persisted {
    async fn persist(
        &self,
        _credentials: &switchboard_core::Credentials,
    ) -> switchboard_core::Result<()> {
        *self.0.lock() += 1;
        Ok(())
    }
}

/// Collects channel-member pages.
struct ChannelMembers(Vec<UserId>);

#[async_trait::async_trait]
impl switchboard_core::ImportSink for ChannelMembers {
    async fn channels(
        &mut self,
        _t: &TeamId,
        _p: Vec<switchboard_core::Channel>,
    ) -> switchboard_core::Result<()> {
        Ok(())
    }
    async fn members(
        &mut self,
        _t: &TeamId,
        _p: Vec<switchboard_core::Membership>,
    ) -> switchboard_core::Result<()> {
        Ok(())
    }
    async fn users(&mut self, _p: Vec<switchboard_core::User>) -> switchboard_core::Result<()> {
        Ok(())
    }
    async fn channel_members(
        &mut self,
        _c: &ChannelRef,
        page: Vec<UserId>,
    ) -> switchboard_core::Result<()> {
        self.0.extend(page);
        Ok(())
    }
}

#[tokio::test]
async fn removal_from_a_team_is_detected_and_repaired() {
    let env = Env::start(Seed::Small, SCALE).await;
    let conn = env.service_connection(SCALE).await;
    let (team, channel) = seeded_channel(&env).await;
    let team_id = team["id"].as_str().unwrap();
    assert_eq!(
        conn.ensure_membership(&channel).await.unwrap(),
        MembershipOutcome::AlreadyMember
    );
    env.control_post(
        &format!("/msteams/teams/{team_id}/members/remove"),
        json!({"user": env.ms("service_account_upn")}),
    )
    .await;
    let access = conn.check_membership(&channel.team).await.unwrap();
    assert_ne!(access, TeamAccess::Member);
    assert_eq!(
        conn.ensure_membership(&channel).await.unwrap(),
        MembershipOutcome::Added
    );
    assert_eq!(
        conn.check_membership(&channel.team).await.unwrap(),
        TeamAccess::Member
    );
}

#[tokio::test]
async fn post_reply_edit_delete_round_trip() {
    let env = Env::start(Seed::Small, SCALE).await;
    let conn = env.service_connection(SCALE).await;
    let (_, channel) = seeded_channel(&env).await;
    let posted = conn
        .post(&channel, &slack_message("hello <teams> & co", None))
        .await
        .unwrap();
    let root = posted.reference.message.clone();
    let reply = conn
        .post(&channel, &slack_message("a reply", Some(&root)))
        .await
        .unwrap();
    assert_eq!(reply.reference.thread_root.as_ref(), Some(&root));
    conn.edit(
        &posted.reference,
        &slack_message("hello, edited", None),
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.edit(
        &reply.reference,
        &slack_message("reply, edited", Some(&root)),
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.react(
        &posted.reference,
        &switchboard_core::Emoji::Unicode {
            value: "👍".into(),
            name: None,
        },
        switchboard_core::ReactionChange::Add,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();

    let path = format!(
        "/msteams/teams/{}/channels/{}/messages",
        channel.team,
        urlencode(channel.channel.as_str())
    );
    let stored = env.control_get(&path).await;
    let list = stored["value"]
        .as_array()
        .or(stored.as_array())
        .cloned()
        .unwrap_or_default();
    let find = |id: &str| -> Value {
        for m in &list {
            if m["id"] == id {
                return m.clone();
            }
            for r in m["replies"].as_array().into_iter().flatten() {
                if r["id"] == id {
                    return r.clone();
                }
            }
        }
        panic!("message {id} not stored: {stored}")
    };
    let m = find(root.as_str());
    let content = m["body"]["content"].as_str().unwrap();
    assert!(content.contains("<b>Sam Slack</b>"), "{content}");

    // our copies are found again among the channel's recent messages, marker and all
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let marked = conn
        .post(
            &channel,
            &slack_message("with a marker", None).with_marker("sb:relay:42"),
        )
        .await
        .unwrap();
    let recent = conn.recent_messages(&channel, since, 10).await.unwrap();
    let found = recent
        .iter()
        .find(|m| m.reference.message == marked.reference.message)
        .expect("the marked copy is among the recent messages");
    assert_eq!(found.marker.as_deref(), Some("sb:relay:42"));
    assert_eq!(
        found.posted_by,
        Some(switchboard_core::PostingIdentity::ServiceAccount)
    );
    assert_eq!(
        recent[0].reference.message, marked.reference.message,
        "newest first"
    );
    assert!(
        recent
            .iter()
            .any(|m| m.reference.message == reply.reference.message
                && m.reference.thread_root.as_ref() == Some(&root))
    );
    assert!(content.contains("hello, edited"), "{content}");
    let r = find(reply.reference.message.as_str());
    assert!(
        r["body"]["content"]
            .as_str()
            .unwrap()
            .contains("reply, edited")
    );

    conn.delete(
        &reply.reference,
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
    // deleting again is fine
    conn.delete(
        &posted.reference,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    let stored = env.control_get(&path).await;
    let list = stored["value"]
        .as_array()
        .or(stored.as_array())
        .cloned()
        .unwrap_or_default();
    let m = list.iter().find(|m| m["id"] == root.as_str()).unwrap();
    assert!(!m["deletedDateTime"].is_null(), "{m}");
    let _ = MessageRef { ..posted.reference };
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Answers the validation handshake with the helper; accepts notifications with 202.
struct Receiver;

impl wiremock::Respond for Receiver {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        match validation_response(req.url.query().unwrap_or("")) {
            Some(token) => ResponseTemplate::new(200).set_body_raw(token, "text/plain"),
            None => ResponseTemplate::new(202),
        }
    }
}

#[tokio::test]
async fn subscription_with_validation_handshake_delivers_notifications() {
    let env = Env::start(Seed::Small, SCALE).await;
    let conn = env.service_connection(SCALE).await;
    let (_, channel) = seeded_channel(&env).await;
    let hooks = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Receiver)
        .mount(&hooks)
        .await;
    let spec = SubscriptionSpec {
        notification_url: url::Url::parse(&format!(
            "{}/webhooks/msteams/notifications",
            hooks.uri()
        ))
        .unwrap(),
        lifecycle_url: Some(
            url::Url::parse(&format!("{}/webhooks/msteams/lifecycle", hooks.uri())).unwrap(),
        ),
        lifetime: Some(Duration::from_secs(3 * 3600)),
    };
    let sub = conn.subscribe_channel(&channel, &spec).await.unwrap();
    // the handshake happened before the subscription was created
    let validations = hooks
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.query().is_some_and(|q| q.contains("validationToken")))
        .count();
    assert!(validations >= 1);

    let expires = conn
        .renew_subscription(&sub.id, Duration::from_secs(2 * 3600), true)
        .await
        .unwrap();
    assert!(expires > time::OffsetDateTime::now_utc() + time::Duration::minutes(100));

    // a seeded user posts: a notification carrying our clientState arrives
    let seed = env.control_get("/seed").await;
    let user = seed["msteams"]["users"][0]["userPrincipalName"]
        .as_str()
        .unwrap()
        .to_owned();
    let posted = env
        .control_post(
            "/msteams/messages",
            json!({"user": user, "team": channel.team.as_str(), "channel": channel.channel.as_str(), "html": "<p>hi from <b>Teams</b></p>"}),
        )
        .await;
    let id = posted["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| posted["id"].to_string());
    let mut notification = None;
    for _ in 0..100 {
        for r in hooks.received_requests().await.unwrap() {
            if r.url.path().ends_with("/notifications")
                && !r.url.query().is_some_and(|q| q.contains("validationToken"))
            {
                if let Ok(batch) = parse_notifications(&r.body) {
                    if let Some(n) = batch.items.into_iter().find(|n| n.resource.contains(&id)) {
                        notification = Some((n, r.body.clone()));
                    }
                }
            }
        }
        if notification.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (n, raw) = notification.expect("a change notification arrived");
    assert_eq!(n.subscription_id, sub.id);
    assert!(n.client_state_matches(&sub.client_state));
    assert!(!n.client_state_matches(&SecretString::from("forged")));
    // the delivery goes through the receiver (no Graph call) and the resolver (one fetch)
    let states = Arc::new(OneState(
        SubscriptionId::new(sub.id.clone()).unwrap(),
        sub.client_state.clone(),
    ));
    let receiver = GraphReceiver::new(states);
    let headers = Vec::new();
    let outcome = receiver
        .receive(&WebhookRequest {
            endpoint: WebhookEndpoint::GraphNotifications,
            query: "",
            headers: &headers,
            body: &raw,
            received_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    let WebhookOutcome::Accept { routed, status } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(status, 202);
    let hint = routed
        .iter()
        .flat_map(|r| r.items.iter())
        .find_map(|i| match i {
            Inbound::Changed(h) if h.message.as_str() == id => Some(h.clone()),
            _ => None,
        })
        .expect("a hint for the message");
    let conn = Arc::new(conn);
    let resolved = TeamsResolver::new(conn.clone())
        .resolve(&hint, None)
        .await
        .unwrap();
    let EventKind::Posted { content, .. } = &resolved.events[0].kind else {
        panic!("{resolved:?}")
    };
    assert_eq!(content.text.to_plain_text(), "hi from Teams");
    assert!(resolved.snapshot.is_some());

    // one subscription per app per channel: a second subscribe reuses the first, and a
    // raw second POST is refused with 403 as Graph does
    let again = conn.subscribe_channel(&channel, &spec).await.unwrap();
    assert_eq!(again.id, sub.id);
    assert_eq!(again.outcome, SubscribeOutcome::Renewed);
    let token = conn.tokens().access_token().await.unwrap();
    let raw = reqwest::Client::new()
        .post(format!(
            "{}/subscriptions",
            env.info["graph_api_url"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
        ))
        .bearer_auth(token.expose_secret())
        .json(&json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": spec.notification_url.as_str(),
            "resource": format!("/teams/{}/channels/{}/messages", channel.team, channel.channel),
            "expirationDateTime": (time::OffsetDateTime::now_utc() + time::Duration::minutes(30))
                .format(&time::format_description::well_known::Rfc3339).unwrap(),
            "clientState": "x",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 403);

    conn.delete_subscription(&sub.id).await.unwrap();
}

/// The stored secret of one subscription.
struct OneState(SubscriptionId, SecretString);

#[async_trait::async_trait]
impl ClientStates for OneState {
    async fn client_state(
        &self,
        subscription: &SubscriptionId,
    ) -> switchboard_core::Result<Option<SecretString>> {
        Ok((subscription == &self.0).then(|| self.1.clone()))
    }
}

#[tokio::test]
async fn delta_catches_up_after_downtime() {
    let env = Env::start(Seed::Small, SCALE).await;
    let conn = env.service_connection(SCALE).await;
    let (_, channel) = seeded_channel(&env).await;
    let linked_at = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let baseline = conn.channel_delta(&channel, None, linked_at).await.unwrap();
    assert!(!baseline.delta_link.is_empty());
    // "downtime": a user posts twice and edits
    let seed = env.control_get("/seed").await;
    let user = seed["msteams"]["users"][0]["userPrincipalName"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for text in ["first while away", "second while away"] {
        let r = env
            .control_post(
                "/msteams/messages",
                json!({"user": user, "team": channel.team.as_str(), "channel": channel.channel.as_str(), "html": format!("<p>{text}</p>")}),
            )
            .await;
        ids.push(
            r["id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| r["id"].to_string()),
        );
    }
    let caught = conn
        .channel_delta(&channel, Some(&baseline.delta_link), linked_at)
        .await
        .unwrap();
    assert!(!caught.restarted);
    let posted: Vec<String> = caught
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Posted { message, .. } => Some(message.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(posted, ids, "{:#?}", caught.events);
    // nothing new: an empty round
    let again = conn
        .channel_delta(&channel, Some(&caught.delta_link), linked_at)
        .await
        .unwrap();
    assert!(again.events.is_empty(), "{:#?}", again.events);
    // the sandbox expires the channel's delta links: the round restarts from the date
    // filter (the two posts come again, deduplicated downstream), never from zero
    env.control_post(
        "/msteams/delta/expire",
        json!({"channel": channel.channel.as_str()}),
    )
    .await;
    let restarted = conn
        .channel_delta(&channel, Some(&again.delta_link), linked_at)
        .await
        .unwrap();
    assert!(restarted.restarted);
    let reposted: Vec<String> = restarted
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Posted { message, .. } => Some(message.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(reposted, ids);
    // History over the same: bounded, oldest first, and the cursor resumes
    let page = conn
        .changes_since(&channel, &HistoryStart::Time { since: linked_at }, 1)
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert!(page.more);
    let rest = conn
        .changes_since(
            &channel,
            &HistoryStart::Cursor {
                cursor: page.cursor,
            },
            10,
        )
        .await
        .unwrap();
    assert!(!rest.more);
    let all: Vec<String> = page
        .events
        .iter()
        .chain(rest.events.iter())
        .filter_map(|e| match &e.kind {
            EventKind::Posted { message, .. } => Some(message.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(all, ids);
}

#[tokio::test]
async fn expired_tokens_refresh_silently_and_revoked_grants_need_reauth() {
    let env = Env::start(Seed::Small, SCALE).await;
    let conn = env.service_connection(SCALE).await;
    let before = conn.tokens().credentials().await.access_token;
    env.control_post(
        "/msteams/tokens/expire",
        json!({"token": before.expose_secret()}),
    )
    .await;
    // Graph answers 401; the client refreshes once and retries
    conn.list_teams().await.unwrap();
    assert_ne!(
        conn.tokens()
            .credentials()
            .await
            .access_token
            .expose_secret(),
        before.expose_secret()
    );
    env.control_post(
        "/msteams/tokens/revoke",
        json!({"user": env.ms("service_account_upn")}),
    )
    .await;
    let e = conn.refresh_credentials().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NeedsReauth);
    assert!(conn.tokens().needs_reauth().await);
    assert_eq!(conn.health().await.unwrap(), ConnectionHealth::NeedsReauth);
}

#[tokio::test]
async fn files_are_uploaded_into_the_channel_folder_and_attached() {
    let env = Env::start(Seed::Small, SCALE).await;
    let conn = env.service_connection(SCALE).await;
    let (_, channel) = seeded_channel(&env).await;
    let mut message = slack_message("the report", None);
    let report = switchboard_core::Attachment {
        name: "report Q3.pdf".into(),
        url: "https://files.slack.com/files-pri/T1-F1/report.pdf".into(),
        mime_type: Some("application/pdf".into()),
        size: Some(5),
    };
    let unfetched = switchboard_core::Attachment {
        name: "big.mov".into(),
        url: "https://files.slack.com/files-pri/T1-F2/big.mov".into(),
        mime_type: None,
        size: Some(10_000_000_000),
    };
    message.files = vec![
        switchboard_core::OutgoingFile {
            attachment: report.clone(),
            content: Some(switchboard_core::FileContent {
                name: report.name.clone(),
                mime_type: report.mime_type.clone(),
                bytes: b"%PDF-".to_vec(),
            }),
        },
        switchboard_core::OutgoingFile {
            attachment: unfetched,
            content: None,
        },
    ];
    let posted = conn.post(&channel, &message).await.unwrap();

    let files = env.control_get("/msteams/files").await;
    let files = files["files"].as_array().unwrap();
    assert_eq!(
        files.len(),
        1,
        "only the fetched file is uploaded: {files:?}"
    );
    assert_eq!(files[0]["name"], "report Q3.pdf");
    assert_eq!(files[0]["size"], 5);

    let path = format!(
        "/msteams/teams/{}/channels/{}/messages",
        channel.team,
        urlencode(channel.channel.as_str())
    );
    let stored = env.control_get(&path).await;
    let list = stored["value"]
        .as_array()
        .or(stored.as_array())
        .cloned()
        .unwrap_or_default();
    let m = list
        .iter()
        .find(|m| m["id"] == posted.reference.message.as_str())
        .expect("the message is stored");
    let attachments = m["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    assert_eq!(attachments[0]["contentType"], "reference");
    assert_eq!(attachments[0]["name"], "report Q3.pdf");
    assert_eq!(attachments[0]["contentUrl"], files[0]["webUrl"]);
    assert_eq!(
        attachments[0]["id"].as_str().unwrap(),
        files[0]["id"].as_str().unwrap().to_ascii_lowercase()
    );
    let html = m["body"]["content"].as_str().unwrap();
    assert!(html.contains("<attachment id="), "{html}");
    assert!(
        html.contains("big.mov"),
        "the file that was not fetched is linked: {html}"
    );
}

/// An end user links their own account: the end-user flow asks only the delegated scopes
/// posting needs, reports a non-service account, and once `Platform::link_user` has the
/// grant, a `LinkedUser` post goes out as them; their expired token refreshes (the end-user
/// scope set) and the rotation reaches the sink; after `unlink_user` posts fall back.
#[tokio::test]
async fn an_end_users_own_grant_posts_as_them_and_refreshes() {
    use switchboard_core::{Authorizer, PostingIdentity};
    let env = Env::start(Seed::Small, SCALE).await;
    let config = env.config(SCALE);
    let conn = env.service_connection(SCALE).await;
    let (team, channel) = seeded_channel(&env).await;
    let upn = env.ms("underprivileged_upn");
    env.control_post(
        &format!(
            "/msteams/teams/{}/members/add",
            team["id"].as_str().unwrap()
        ),
        json!({"user": upn}),
    )
    .await;

    let linking = switchboard_msteams::MsTeamsAuthorizer::for_end_users(config.clone()).unwrap();
    let verifier = SecretString::from("v".repeat(64));
    let challenge = switchboard_msteams::Pkce::challenge_for(verifier.expose_secret());
    let url = linking
        .authorize_url(REDIRECT, "state-1", Some(&challenge))
        .unwrap();
    for asked in [
        "offline_access",
        "User.Read",
        "ChannelMessage.Send",
        "ChannelMessage.ReadWrite",
    ] {
        assert!(url.contains(asked), "{asked} asked: {url}");
    }
    for not_asked in [
        "User.Read.All",
        "RoleManagement",
        "TeamMember",
        "Files.ReadWrite.All",
    ] {
        assert!(!url.contains(not_asked), "{not_asked} not asked: {url}");
    }
    let query = env
        .consent(&url, &upn, &env.ms("underprivileged_password"))
        .await;
    let cb = switchboard_msteams::oauth::parse_callback(&query, "state-1").unwrap();
    let authorized = linking
        .complete(&cb.code, REDIRECT, Some(&verifier))
        .await
        .unwrap();
    assert!(!authorized.account.is_service_account);
    let user = authorized.account.user_id.clone();

    let sink = Arc::new(Persisted(parking_lot::Mutex::new(0)));
    let access = authorized.credentials.access_token.clone();
    conn.link_user(user.clone(), authorized.credentials, sink.clone())
        .await
        .unwrap();
    assert!(conn.is_linked(&user));
    let as_user = PostingIdentity::LinkedUser { user: user.clone() };
    let posted = conn
        .post(
            &channel,
            &slack_message("in my own words", None).posted_as(as_user.clone()),
        )
        .await
        .unwrap();
    assert_eq!(posted.posted_by, as_user);
    let m = conn
        .fetch_message(&channel, &posted.reference.message, None)
        .await
        .unwrap();
    assert_eq!(
        m.from
            .as_ref()
            .and_then(|f| f.user.as_ref())
            .and_then(|u| u.id.as_deref()),
        Some(user.as_str()),
        "posted as the user"
    );

    // Their token expires: the next call refreshes it, and the rotation is handed over.
    env.control_post(
        "/msteams/tokens/expire",
        json!({"token": access.expose_secret()}),
    )
    .await;
    conn.edit(
        &posted.reference,
        &slack_message("in my own words, edited", None),
        &as_user,
    )
    .await
    .unwrap();
    assert_eq!(*sink.0.lock(), 1, "the refreshed grant went to the sink");

    conn.unlink_user(&user);
    assert!(!conn.is_linked(&user));
    let fallback = conn
        .post(
            &channel,
            &slack_message("after unlinking", None).posted_as(as_user),
        )
        .await
        .unwrap();
    assert_eq!(fallback.posted_by, PostingIdentity::ServiceAccount);
}
