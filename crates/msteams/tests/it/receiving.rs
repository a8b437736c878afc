//! Receiving against wiremock: subscriptions (create, renew, reauthorize, delete),
//! notifications turned into events, delta rounds with a stored link, and guest invites.

#[allow(unused_imports)]
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use secrecy::ExposeSecret;
use switchboard_core::{
    ChangeHint, ChannelRef, ClientStates, ConnectionId, ConnectionSignal, ErrorKind, EventKind,
    Inbound, MessageSnapshot, Resolver, SubscriptionId, WebhookEndpoint, WebhookOutcome,
    WebhookReceiver, WebhookRequest,
};
use switchboard_msteams::delta::DeltaNext;
use switchboard_msteams::guests::GuestInvite;
use switchboard_msteams::subscriptions::{
    MAX_LIFETIME_WITH_LIFECYCLE, MAX_LIFETIME_WITHOUT_LIFECYCLE, SubscribeOutcome,
    SubscriptionSpec, parse_notifications,
};
use switchboard_msteams::{GraphReceiver, TeamsResolver};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CH: &str = "19:abc@thread.tacv2";

fn channel() -> ChannelRef {
    format!("msteams:T1/{CH}").parse().unwrap()
}

fn message(id: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::json!({
        "id": id, "replyToId": null, "etag": id, "messageType": "message",
        "createdDateTime": "2024-05-01T10:00:00Z", "lastModifiedDateTime": "2024-05-01T10:00:00Z",
        "lastEditedDateTime": null, "deletedDateTime": null,
        "from": {"user": {"id": "u1", "displayName": "Alice", "userIdentityType": "aadUser"}},
        "body": {"contentType": "html", "content": format!("<p>message {id}</p>")},
        "attachments": [], "mentions": [], "reactions": []
    });
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

fn listing(value: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions",
        "value": value
    }))
}

#[tokio::test]
async fn subscriptions_are_created_renewed_reauthorized_and_deleted() {
    let server = MockServer::start().await;
    // the app's subscriptions are listed first: none yet, then the one created
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(listing(serde_json::json!([])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(listing(serde_json::json!([{
            "id": "sub-1",
            "resource": format!("/teams/T1/channels/{CH}/messages"),
            "changeType": "created,updated,deleted",
            "clientState": null,
            "notificationUrl": "https://bridge.example/webhooks/msteams/notifications",
            "lifecycleNotificationUrl": null,
            "expirationDateTime": "2030-01-01T10:00:00.0000000Z"
        }])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/subscriptions"))
        .and(body_partial_json(serde_json::json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": "https://bridge.example/webhooks/msteams/notifications",
            "resource": format!("/teams/T1/channels/{CH}/messages"),
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": "sub-1",
            "resource": format!("/teams/T1/channels/{CH}/messages"),
            "applicationId": "app",
            "changeType": "created,updated,deleted",
            "clientState": "echo",
            "notificationUrl": "https://bridge.example/webhooks/msteams/notifications",
            "expirationDateTime": "2030-01-01T10:00:00.0000000Z",
            "creatorId": "me"
        })))
        // one subscription per app per channel: the second subscribe renews the first
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1.0/subscriptions/sub-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "sub-1", "expirationDateTime": "2030-01-02T10:00:00Z"
        })))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/subscriptions/sub-1/reauthorize"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1.0/subscriptions/sub-1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1.0/subscriptions/gone"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(graph_error("ResourceNotFound", "x")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let spec = SubscriptionSpec {
        notification_url: Url::parse("https://bridge.example/webhooks/msteams/notifications")
            .unwrap(),
        lifecycle_url: None,
        lifetime: None,
    };
    let before = OffsetDateTime::now_utc();
    let sub = conn.subscribe_channel(&channel(), &spec).await.unwrap();
    assert_eq!(sub.outcome, SubscribeOutcome::Created);
    let other = conn
        .subscribe_channel_with(&channel(), &spec, Some(&sub.client_state))
        .await
        .unwrap();
    assert_eq!(sub.id, "sub-1");
    assert_eq!(other.id, "sub-1");
    assert_eq!(other.outcome, SubscribeOutcome::Renewed);
    assert_eq!(other.expires_at.day(), 2);
    assert_eq!(sub.expires_at.year(), 2030);
    assert_eq!(
        sub.client_state.expose_secret(),
        other.client_state.expose_secret()
    );
    assert!(!format!("{sub:?}").contains(sub.client_state.expose_secret()));
    // the request: the secret client state and an expiry within an hour
    let reqs = server.received_requests().await.unwrap();
    let create = reqs.iter().find(|r| r.method.as_str() == "POST").unwrap();
    let body: serde_json::Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(body["clientState"], sub.client_state.expose_secret());
    assert!(body.get("lifecycleNotificationUrl").is_none());
    let exp =
        OffsetDateTime::parse(body["expirationDateTime"].as_str().unwrap(), &Rfc3339).unwrap();
    let lifetime = exp - before;
    assert!(
        lifetime
            <= time::Duration::try_from(MAX_LIFETIME_WITHOUT_LIFECYCLE).unwrap()
                + time::Duration::seconds(5)
    );
    assert!(lifetime > time::Duration::minutes(55));
    let core = sub.clone().into_core(ConnectionId::generate()).unwrap();
    assert_eq!(core.channel, channel());

    let renewed = conn
        .renew_subscription("sub-1", Duration::from_secs(3000), false)
        .await
        .unwrap();
    assert_eq!(renewed.day(), 2);
    conn.reauthorize_subscription("sub-1").await.unwrap();
    conn.delete_subscription("sub-1").await.unwrap();
    conn.delete_subscription("gone").await.unwrap();

    // with a lifecycle URL the request carries it; an existing subscription on the channel
    // whose secret is unknown is replaced (deleted, then created anew)
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(listing(serde_json::json!([
            {"id": "old", "resource": format!("teams('T1')/channels('{CH}')/messages"),
             "notificationUrl": "https://bridge.example/webhooks/msteams/notifications"},
            {"id": "elsewhere", "resource": "/teams/T1/channels/19:other@thread.tacv2/messages"}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1.0/subscriptions/old"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/subscriptions"))
        .and(body_partial_json(serde_json::json!({"lifecycleNotificationUrl": "https://bridge.example/webhooks/msteams/lifecycle"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": "sub-2"})))
        .expect(1)
        .mount(&server)
        .await;
    let spec = SubscriptionSpec {
        lifecycle_url: Some(
            Url::parse("https://bridge.example/webhooks/msteams/lifecycle").unwrap(),
        ),
        ..spec
    };
    let sub = conn.subscribe_channel(&channel(), &spec).await.unwrap();
    assert_eq!(sub.outcome, SubscribeOutcome::Replaced);
    assert!(sub.expires_at > OffsetDateTime::now_utc() + time::Duration::hours(24));
    // 4,320 minutes is Graph's maximum; the request stays under it
    assert!(MAX_LIFETIME_WITH_LIFECYCLE < Duration::from_secs(4_320 * 60));
    assert!(MAX_LIFETIME_WITH_LIFECYCLE >= Duration::from_secs(4_300 * 60));
}

#[tokio::test]
async fn notifications_become_events() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/teams/T1/channels/{CH}/messages/100")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(message("100", serde_json::json!({}))),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/v1.0/teams/T1/channels/{CH}/messages/100/replies/101"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(
            "101",
            serde_json::json!({"replyToId": "100", "lastEditedDateTime": "2024-05-01T11:00:00Z"}),
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/teams/T1/channels/{CH}/messages/102")))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(
            "102",
            serde_json::json!({"messageType": "systemEventMessage", "from": null}),
        )))
        .mount(&server)
        .await;
    let body = format!(
        r#"{{"value":[
        {{"subscriptionId":"s","clientState":"cs","changeType":"created","resource":"teams('T1')/channels('{CH}')/messages('100')","resourceData":{{"id":"100"}}}},
        {{"subscriptionId":"s","clientState":"cs","changeType":"updated","resource":"teams('T1')/channels('{CH}')/messages('100')/replies('101')","resourceData":{{"id":"101"}}}},
        {{"subscriptionId":"s","clientState":"cs","changeType":"deleted","resource":"teams('T1')/channels('{CH}')/messages('103')"}},
        {{"subscriptionId":"s","clientState":"cs","changeType":"created","resource":"teams('T1')/channels('{CH}')/messages('102')"}},
        {{"subscriptionId":"s","clientState":"cs","changeType":"created","resource":"teams('T9')/channels('{CH}')/messages('1')"}}
    ]}}"#
    );
    let batch = parse_notifications(body.as_bytes()).unwrap();
    assert_eq!(batch.items.len(), 5);
    let receiver = GraphReceiver::new(Arc::new(States(vec![("s", "cs")])));
    let headers = Vec::new();
    let req = |endpoint, query, body: &'static [u8]| WebhookRequest {
        endpoint,
        query,
        headers: &headers,
        body,
        received_at: OffsetDateTime::now_utc(),
    };
    let body: &'static [u8] = Box::leak(body.into_bytes().into_boxed_slice());
    // the acknowledgement path makes no Graph call: nothing was fetched yet
    let WebhookOutcome::Accept { routed, status } = receiver
        .receive(&req(WebhookEndpoint::GraphNotifications, "", body))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(status, 202);
    assert!(server.received_requests().await.unwrap().is_empty());
    assert_eq!(routed.len(), 1);
    let hints: Vec<ChangeHint> = routed[0]
        .items
        .iter()
        .map(|i| match i {
            Inbound::Changed(h) => h.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(hints.len(), 5);
    assert_eq!(hints[1].thread_root.as_ref().unwrap().as_str(), "100");
    assert_eq!(hints[4].channel.team.as_str(), "T9");
    let conn = Arc::new(fixed_conn(&server));
    let resolver = TeamsResolver::new(conn);
    let mut events = Vec::new();
    for h in &hints[..4] {
        events.push(resolver.resolve(h, None).await.unwrap());
    }
    let e0 = &events[0].events[0];
    assert_eq!(e0.event_id, "msteams:100:posted");
    let EventKind::Posted { content, .. } = &e0.kind else {
        panic!()
    };
    assert_eq!(content.text.to_plain_text(), "message 100");
    let e1 = &events[1].events[0];
    let EventKind::Edited { message, content } = &e1.kind else {
        panic!("{e1:?}")
    };
    assert_eq!(message.as_str(), "101");
    assert_eq!(content.thread_root.as_ref().unwrap().as_str(), "100");
    assert!(matches!(
        events[2].events[0].kind,
        EventKind::Deleted { .. }
    ));
    assert!(events[2].snapshot.is_none());
    assert!(
        events[3].events.is_empty(),
        "system messages are not relayed"
    );

    // a wrong clientState refuses the whole delivery; an unknown subscription is skipped
    let forged: &'static [u8] = br#"{"value":[{"subscriptionId":"s","clientState":"nope","changeType":"created","resource":"teams('T1')/channels('19:abc@thread.tacv2')/messages('1')"}]}"#;
    let e = receiver
        .receive(&req(WebhookEndpoint::GraphNotifications, "", forged))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    let unknown: &'static [u8] = br#"{"value":[{"subscriptionId":"zzz","clientState":"cs","changeType":"created","resource":"teams('T1')/channels('19:abc@thread.tacv2')/messages('1')"}]}"#;
    let WebhookOutcome::Accept { routed, .. } = receiver
        .receive(&req(WebhookEndpoint::GraphNotifications, "", unknown))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(routed.is_empty());
    // the validation handshake on either endpoint
    let hs = receiver
        .receive(&req(
            WebhookEndpoint::GraphLifecycle,
            "validationToken=Validation%3A+Testing",
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(
        hs,
        WebhookOutcome::Handshake {
            content_type: "text/plain",
            body: "Validation: Testing".into()
        }
    );
    // lifecycle events become signals; `missed` (never sent for Teams) is ignored
    let life: &'static [u8] = br#"{"value":[
        {"subscriptionId":"s","clientState":"cs","lifecycleEvent":"reauthorizationRequired"},
        {"subscriptionId":"s","clientState":"cs","lifecycleEvent":"missed"},
        {"subscriptionId":"s","clientState":"cs","lifecycleEvent":"subscriptionRemoved"}
    ]}"#;
    let WebhookOutcome::Accept { routed, status } = receiver
        .receive(&req(WebhookEndpoint::GraphLifecycle, "", life))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(status, 202);
    let sub = SubscriptionId::new("s").unwrap();
    assert_eq!(
        routed[0].items,
        vec![
            Inbound::Signal(ConnectionSignal::ReauthorizationRequired {
                subscription: sub.clone()
            }),
            Inbound::Signal(ConnectionSignal::SubscriptionRemoved { subscription: sub }),
        ]
    );
}

/// `clientState`s by subscription.
struct States(Vec<(&'static str, &'static str)>);

#[async_trait::async_trait]
impl ClientStates for States {
    async fn client_state(
        &self,
        subscription: &SubscriptionId,
    ) -> switchboard_core::Result<Option<secrecy::SecretString>> {
        Ok(self
            .0
            .iter()
            .find(|(s, _)| *s == subscription.as_str())
            .map(|(_, c)| secrecy::SecretString::from(*c)))
    }
}

#[tokio::test]
async fn reactions_are_resolved_per_user_and_emoji_and_are_not_edits() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/teams/T1/channels/{CH}/messages/100")))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(
            "100",
            serde_json::json!({
                "lastModifiedDateTime": "2024-05-01T10:05:00Z",
                "reactions": [
                    {"reactionType": "like", "user": {"user": {"id": "u2"}}},
                    {"reactionType": "😂", "user": {"user": {"id": "u3"}}}
                ]
            }),
        )))
        .mount(&server)
        .await;
    let resolver = TeamsResolver::new(Arc::new(fixed_conn(&server)));
    let hint = ChangeHint {
        event_id: "h".into(),
        channel: channel(),
        message: switchboard_core::MessageId::new("100").unwrap(),
        thread_root: None,
        change: switchboard_core::ChangeType::Updated,
        received_at: OffsetDateTime::now_utc(),
    };
    let last = MessageSnapshot {
        edited_at: None,
        reactions: vec![(
            switchboard_core::UserId::new("u3").unwrap(),
            switchboard_core::Emoji::Unicode {
                value: "😮".into(),
                name: None,
            },
        )],
        deleted: false,
    };
    let r = resolver.resolve(&hint, Some(&last)).await.unwrap();
    let kinds: Vec<String> = r
        .events
        .iter()
        .map(|e| match &e.kind {
            EventKind::ReactionAdded { user, emoji, .. } => format!("+{user}:{emoji:?}"),
            EventKind::ReactionRemoved { user, emoji, .. } => format!("-{user}:{emoji:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(
        kinds[0].starts_with("+u2") && kinds[0].contains("👍"),
        "{kinds:?}"
    );
    assert!(
        kinds[1].starts_with("+u3") && kinds[1].contains("😂"),
        "{kinds:?}"
    );
    assert!(
        kinds[2].starts_with("-u3") && kinds[2].contains("😮"),
        "{kinds:?}"
    );
    assert_eq!(r.snapshot.unwrap().reactions.len(), 2);
}

#[tokio::test]
async fn delta_rounds_store_and_resume_the_delta_link() {
    let server = MockServer::start().await;
    let base = format!("/v1.0/teams/T1/channels/{CH}/messages/delta");
    let next = format!("{}{base}?$skiptoken=page2", server.uri());
    let delta1 = format!("{}{base}?$deltatoken=d1", server.uri());
    let delta2 = format!("{}{base}?$deltatoken=d2", server.uri());
    let since = OffsetDateTime::parse("2024-04-30T00:00:00Z", &Rfc3339).unwrap();
    let replies_path = format!("/v1.0/teams/T1/channels/{CH}/messages/1/replies");
    let replies_next = format!("{}{replies_path}?$skiptoken=r2", server.uri());
    Mock::given(method("GET"))
        .and(path(replies_path.as_str()))
        .and(query_param("$skiptoken", "r2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "value": [message("2b", serde_json::json!({"replyToId": "1", "createdDateTime": "2024-05-01T10:30:00Z"}))]
        })))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(base.as_str()))
        .and(query_param("$top", "50"))
        .and(query_param("$expand", "replies"))
        // never from zero: every first request is bounded by the date filter
        .and(query_param(
            "$filter",
            "lastModifiedDateTime gt 2024-04-30T00:00:00Z",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.context": "x",
            "@odata.nextLink": next,
            "value": [
                // over 1,000 replies: the rest behind replies@odata.nextLink
                message("1", serde_json::json!({
                    "replies": [message("2", serde_json::json!({"replyToId": "1"}))],
                    "replies@odata.nextLink": replies_next,
                })),
                message("3", serde_json::json!({"messageType": "systemEventMessage", "from": null, "body": {"content": "<systemEventMessage/>"}})),
                {"no": "id"}
            ]
        })))
        // the first round and the restart after the expired link
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(base.as_str()))
        .and(query_param("$skiptoken", "page2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.deltaLink": delta1,
            "value": [message("4", serde_json::json!({"deletedDateTime": "2024-05-02T00:00:00Z", "body": {"content": ""}}))]
        })))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(base.as_str()))
        .and(query_param("$deltatoken", "d1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.deltaLink": delta2,
            "value": [message("5", serde_json::json!({}))]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(base.as_str()))
        .and(query_param("$deltatoken", "expired"))
        .respond_with(ResponseTemplate::new(410).set_body_json(graph_error(
            "SyncStateNotFound",
            "The delta token has expired",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let first = conn.channel_delta(&channel(), None, since).await.unwrap();
    let firsts = server.received_requests().await.unwrap();
    assert!(
        firsts[0]
            .url
            .query()
            .unwrap()
            .contains("$filter=lastModifiedDateTime%20gt%202024-04-30T00:00:00Z"),
        "{}",
        firsts[0].url
    );
    let ids: Vec<_> = first.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "msteams:1:posted",
            "msteams:2:posted",
            "msteams:2b:posted",
            "msteams:4:deleted"
        ]
    );
    assert_eq!(first.skipped, 1);
    assert_eq!(first.delta_link, delta1);
    assert!(!first.restarted);
    // resume from the stored link: only what changed since
    let second = conn
        .channel_delta(&channel(), Some(&first.delta_link), since)
        .await
        .unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.delta_link, delta2);
    // an expired link restarts the round
    let expired = format!("{}{base}?$deltatoken=expired", server.uri());
    let again = conn
        .channel_delta(&channel(), Some(&expired), since)
        .await
        .unwrap();
    assert!(again.restarted);
    assert_eq!(again.delta_link, delta1);
    // a stored link to another host is refused before anything is sent
    let e = conn
        .channel_delta(
            &channel(),
            Some("https://evil.example/v1.0/x?$deltatoken=1"),
            since,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    // one page at a time
    let start = conn.delta_start(&channel(), since).unwrap();
    assert!(
        start
            .as_str()
            .contains("messages/delta?$top=50&$expand=replies&$filter=lastModifiedDateTime"),
        "{start}"
    );
    let _ = DeltaNext::Done(String::new());
}

#[tokio::test]
async fn guests_are_invited_when_enabled() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/invitations"))
        .and(body_partial_json(serde_json::json!({
            "invitedUserEmailAddress": "pat@fabrikam.test",
            "inviteRedirectUrl": "https://teams.microsoft.com/",
            "sendInvitationMessage": false,
            "invitedUserDisplayName": "Pat"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "id": "inv-1",
            "inviteRedeemUrl": "https://login.microsoftonline.com/redeem?x",
            "invitedUserDisplayName": "Pat",
            "invitedUserEmailAddress": "pat@fabrikam.test",
            "sendInvitationMessage": false,
            "status": "PendingAcceptance",
            "invitedUser": {"id": "guest-1"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let invite = GuestInvite {
        email: " pat@fabrikam.test ".into(),
        display_name: Some("Pat".into()),
        redirect_url: Url::parse("https://teams.microsoft.com/").unwrap(),
        send_invitation_message: false,
    };
    let off = fixed_conn(&server);
    assert_eq!(
        off.invite_guest(&invite).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let on = switchboard_msteams::MsTeamsConnection::new(
        config(&server).guest_sync(true),
        std::sync::Arc::new(switchboard_msteams::TokenProvider::fixed(
            secrecy::SecretString::from(TOKEN),
        )),
    )
    .unwrap();
    let inv = on.invite_guest(&invite).await.unwrap();
    assert_eq!(inv.user_id.as_str(), "guest-1");
    assert_eq!(inv.status, "PendingAcceptance");
    let bad = GuestInvite {
        email: "not-an-email".into(),
        ..invite
    };
    assert_eq!(
        on.invite_guest(&bad).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
