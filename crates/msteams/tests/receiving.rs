//! Receiving against wiremock: subscriptions (create, renew, reauthorize, delete),
//! notifications turned into events, delta rounds with a stored link, and guest invites.

mod common;

use std::time::Duration;

use common::*;
use secrecy::ExposeSecret;
use switchboard_core::{ChannelRef, ConnectionId, ErrorKind, EventKind};
use switchboard_msteams::delta::DeltaNext;
use switchboard_msteams::guests::GuestInvite;
use switchboard_msteams::subscriptions::{
    MAX_LIFETIME_WITHOUT_LIFECYCLE, SubscriptionSpec, parse_notifications,
};
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

#[tokio::test]
async fn subscriptions_are_created_renewed_reauthorized_and_deleted() {
    let server = MockServer::start().await;
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
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1.0/subscriptions/sub-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "sub-1", "expirationDateTime": "2030-01-02T10:00:00Z"
        })))
        .expect(1)
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
    let other = conn.subscribe_channel(&channel(), &spec).await.unwrap();
    assert_eq!(sub.id, "sub-1");
    assert_eq!(sub.expires_at.year(), 2030);
    assert_ne!(
        sub.client_state.expose_secret(),
        other.client_state.expose_secret()
    );
    assert!(!format!("{sub:?}").contains(sub.client_state.expose_secret()));
    // the request: the secret client state and an expiry within an hour
    let reqs = server.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
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

    // with a lifecycle URL the request carries it
    server.reset().await;
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
    assert!(sub.expires_at > OffsetDateTime::now_utc() + time::Duration::hours(24));
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
    let conn = fixed_conn(&server);
    let mut events = Vec::new();
    for n in &batch.items[..4] {
        events.push(conn.event_for_notification(&channel(), n).await.unwrap());
    }
    let e0 = events[0].as_ref().unwrap();
    assert_eq!(e0.event_id, "msteams:100:posted");
    let EventKind::Posted { content, .. } = &e0.kind else {
        panic!()
    };
    assert_eq!(content.text.to_plain_text(), "message 100");
    let e1 = events[1].as_ref().unwrap();
    let EventKind::Edited { message, content } = &e1.kind else {
        panic!("{e1:?}")
    };
    assert_eq!(message.as_str(), "101");
    assert_eq!(content.thread_root.as_ref().unwrap().as_str(), "100");
    assert!(matches!(
        events[2].as_ref().unwrap().kind,
        EventKind::Deleted { .. }
    ));
    assert!(events[3].is_none(), "system messages are not relayed");
    // a notification about another channel is refused
    let e = conn
        .event_for_notification(&channel(), &batch.items[4])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn delta_rounds_store_and_resume_the_delta_link() {
    let server = MockServer::start().await;
    let base = format!("/v1.0/teams/T1/channels/{CH}/messages/delta");
    let next = format!("{}{base}?$skiptoken=page2", server.uri());
    let delta1 = format!("{}{base}?$deltatoken=d1", server.uri());
    let delta2 = format!("{}{base}?$deltatoken=d2", server.uri());
    Mock::given(method("GET"))
        .and(path(base.as_str()))
        .and(query_param("$top", "50"))
        .and(query_param("$expand", "replies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "@odata.context": "x",
            "@odata.nextLink": next,
            "value": [
                message("1", serde_json::json!({"replies": [message("2", serde_json::json!({"replyToId": "1"}))]})),
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
    let first = conn.channel_delta(&channel(), None).await.unwrap();
    let ids: Vec<_> = first.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        ["msteams:1:posted", "msteams:2:posted", "msteams:4:deleted"]
    );
    assert_eq!(first.skipped, 1);
    assert_eq!(first.delta_link, delta1);
    assert!(!first.restarted);
    // resume from the stored link: only what changed since
    let second = conn
        .channel_delta(&channel(), Some(&first.delta_link))
        .await
        .unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.delta_link, delta2);
    // an expired link restarts the round
    let expired = format!("{}{base}?$deltatoken=expired", server.uri());
    let again = conn
        .channel_delta(&channel(), Some(&expired))
        .await
        .unwrap();
    assert!(again.restarted);
    assert_eq!(again.delta_link, delta1);
    // a stored link to another host is refused before anything is sent
    let e = conn
        .channel_delta(
            &channel(),
            Some("https://evil.example/v1.0/x?$deltatoken=1"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    // one page at a time
    let start = conn.delta_start(&channel()).unwrap();
    assert!(
        start
            .as_str()
            .contains("messages/delta?$top=50&$expand=replies"),
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
