//! Every operation of the connection against every failure Graph can answer with: 401, 403,
//! 404, 429 with and without Retry-After, 5xx, and malformed JSON. Each must end in the
//! right error kind (or the documented success, e.g. deleting what is already gone), never
//! a panic or an endless retry.

#[allow(unused_imports)]
use crate::common;

use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use switchboard_core::{
    ChannelRef, Emoji, ErrorKind, MessageId, MessageRef, OutgoingMessage, Platform, PlatformKind,
    PortableMessage, Result, RichText, Sender, ServiceAccount, TeamId, TeamImport, UserId,
    VerifyOptions,
};
use switchboard_msteams::MsTeamsConnection;
use switchboard_msteams::guests::GuestInvite;
use switchboard_msteams::subscriptions::SubscriptionSpec;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn channel() -> ChannelRef {
    "msteams:T1/19:abc@thread.tacv2".parse().unwrap()
}

fn message_ref() -> MessageRef {
    MessageRef {
        channel: channel(),
        message: MessageId::new("100").unwrap(),
        thread_root: None,
    }
}

fn outgoing() -> OutgoingMessage {
    OutgoingMessage {
        content: PortableMessage {
            sender: Sender {
                platform: PlatformKind::Slack,
                user: UserId::new("U1").unwrap(),
                display_name: "Jane".into(),
                avatar_url: None,
                email: None,
            },
            text: RichText::plain("hi"),
            attachments: vec![],
            thread_root: None,
        },
        marker: None,
        reply_to: None,
        broadcast: false,
        post_as: switchboard_core::PostingIdentity::ServiceAccount,
        files: vec![],
    }
}

type Op = for<'a> fn(&'a MsTeamsConnection) -> BoxFuture<'a, Result<()>>;

/// (name, operation, whether it parses a response body, whether it needs `/me` first)
fn operations() -> Vec<(&'static str, Op, bool)> {
    vec![
        (
            "identity",
            |c| Box::pin(async move { c.identity().await.map(drop) }),
            true,
        ),
        (
            "list_teams",
            |c| Box::pin(async move { c.list_teams().await.map(drop) }),
            true,
        ),
        (
            "import_team",
            |c| {
                Box::pin(async move {
                    c.import_team(&TeamId::new("T1").unwrap(), &mut VecSink::default())
                        .await
                        .map(drop)
                })
            },
            true,
        ),
        (
            "import_users",
            |c| Box::pin(async move { c.import_users(&mut VecSink::default()).await.map(drop) }),
            true,
        ),
        (
            "verify",
            |c| Box::pin(async move { c.verify(VerifyOptions::default()).await.map(drop) }),
            true,
        ),
        (
            "ensure_membership",
            |c| Box::pin(async move { c.ensure_membership(&channel()).await.map(drop) }),
            true,
        ),
        (
            "post",
            |c| Box::pin(async move { c.post(&channel(), &outgoing()).await.map(drop) }),
            true,
        ),
        (
            "edit",
            |c| {
                Box::pin(async move {
                    c.edit(
                        &message_ref(),
                        &outgoing(),
                        &switchboard_core::PostingIdentity::ServiceAccount,
                    )
                    .await
                })
            },
            false,
        ),
        (
            "delete",
            |c| {
                Box::pin(async move {
                    c.delete(
                        &message_ref(),
                        &switchboard_core::PostingIdentity::ServiceAccount,
                    )
                    .await
                })
            },
            false,
        ),
        (
            "react",
            |c| {
                Box::pin(async move {
                    c.react(
                        &message_ref(),
                        &Emoji::Unicode {
                            value: "👍".into(),
                            name: None,
                        },
                        switchboard_core::ReactionChange::Add,
                        &switchboard_core::PostingIdentity::ServiceAccount,
                    )
                    .await
                })
            },
            false,
        ),
        (
            "fetch_message",
            |c| {
                Box::pin(async move {
                    c.fetch_message(&channel(), &MessageId::new("100").unwrap(), None)
                        .await
                        .map(drop)
                })
            },
            true,
        ),
        (
            "subscribe_channel",
            |c| {
                Box::pin(async move {
                    let spec = SubscriptionSpec {
                        notification_url: url::Url::parse("https://hooks.test/n").unwrap(),
                        lifecycle_url: None,
                        lifetime: None,
                    };
                    c.subscribe_channel(&channel(), &spec).await.map(drop)
                })
            },
            true,
        ),
        (
            "renew_subscription",
            |c| {
                Box::pin(async move {
                    c.renew_subscription("s1", Duration::from_secs(600), false)
                        .await
                        .map(drop)
                })
            },
            true,
        ),
        (
            "delete_subscription",
            |c| Box::pin(async move { c.delete_subscription("s1").await }),
            false,
        ),
        (
            "reauthorize_subscription",
            |c| Box::pin(async move { c.reauthorize_subscription("s1").await }),
            false,
        ),
        (
            "channel_delta",
            |c| {
                Box::pin(async move {
                    c.channel_delta(&channel(), None, time::OffsetDateTime::now_utc())
                        .await
                        .map(drop)
                })
            },
            true,
        ),
        (
            "invite_guest",
            |c| {
                Box::pin(async move {
                    c.invite_guest(&GuestInvite {
                        email: "pat@fabrikam.test".into(),
                        display_name: None,
                        redirect_url: url::Url::parse("https://teams.microsoft.com/").unwrap(),
                        send_invitation_message: false,
                    })
                    .await
                    .map(drop)
                })
            },
            true,
        ),
    ]
}

/// The outcome an operation must have when every Graph call answers `status`.
fn expected(op: &str, status: u16) -> Option<ErrorKind> {
    let rate_limited = ErrorKind::RateLimited { retry_after: None };
    match (op, status) {
        // already gone: success
        ("delete" | "delete_subscription", 404) => None,
        // forbidden to add itself: reported as an action for a human, not an error
        ("ensure_membership", 403) => None,
        (_, 401) => Some(ErrorKind::Unauthorized),
        (_, 403) => Some(ErrorKind::Forbidden),
        (_, 404) => Some(ErrorKind::NotFound),
        (_, 429) => Some(rate_limited),
        (_, _) => Some(ErrorKind::Upstream),
    }
}

fn same_kind(a: ErrorKind, b: ErrorKind) -> bool {
    matches!(
        (a, b),
        (ErrorKind::RateLimited { .. }, ErrorKind::RateLimited { .. })
    ) || a == b
}

async fn connection(server: &MockServer) -> MsTeamsConnection {
    MsTeamsConnection::new(
        config(server).guest_sync(true),
        std::sync::Arc::new(switchboard_msteams::TokenProvider::fixed(
            secrecy::SecretString::from(TOKEN),
        )),
    )
    .unwrap()
}

#[tokio::test]
async fn every_operation_maps_every_failure() {
    let failures: Vec<(&str, u16, ResponseTemplate)> = vec![
        (
            "401",
            401,
            ResponseTemplate::new(401).set_body_json(graph_error(
                "InvalidAuthenticationToken",
                "Access token has expired.",
            )),
        ),
        (
            "403",
            403,
            ResponseTemplate::new(403).set_body_json(graph_error(
                "Forbidden",
                "Missing role permissions on the request.",
            )),
        ),
        (
            "404",
            404,
            ResponseTemplate::new(404)
                .set_body_json(graph_error("NotFound", "Resource not found.")),
        ),
        (
            "429 with Retry-After",
            429,
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(graph_error("TooManyRequests", "Too many requests.")),
        ),
        (
            "429 without Retry-After",
            429,
            ResponseTemplate::new(429)
                .set_body_json(graph_error("TooManyRequests", "Too many requests.")),
        ),
        (
            "500",
            500,
            ResponseTemplate::new(500).set_body_json(graph_error("InternalServerError", "Oops.")),
        ),
        (
            "503",
            503,
            ResponseTemplate::new(503).set_body_string("<html>Service Unavailable</html>"),
        ),
    ];
    for (label, status, template) in failures {
        for (name, op, _) in operations() {
            let server = MockServer::start().await;
            // `/me` works (operations that start there get to their own endpoint) unless
            // the operation is `identity` itself
            if name != "identity" && name != "verify" {
                mount_me(&server).await;
            }
            Mock::given(wiremock::matchers::any())
                .respond_with(template.clone())
                .mount(&server)
                .await;
            let conn = connection(&server).await;
            let result = tokio::time::timeout(Duration::from_secs(20), op(&conn))
                .await
                .unwrap_or_else(|_| panic!("{name} on {label}: did not finish"));
            match (expected(name, status), result) {
                (None, Ok(())) => {}
                (Some(kind), Err(e)) => {
                    assert!(
                        same_kind(e.kind(), kind),
                        "{name} on {label}: {e} (expected {kind})"
                    );
                    assert!(!e.to_string().contains(TOKEN), "{name}: token in error");
                }
                (want, got) => panic!("{name} on {label}: expected {want:?}, got {got:?}"),
            }
            // bounded: a handful of attempts per call, never a loop
            let calls = server.received_requests().await.unwrap().len();
            assert!(calls <= 12, "{name} on {label}: {calls} calls");
        }
    }
}

#[tokio::test]
async fn every_parsing_operation_refuses_malformed_json() {
    for (name, op, parses) in operations() {
        if !parses {
            continue;
        }
        let server = MockServer::start().await;
        if name != "identity" && name != "verify" {
            mount_me(&server).await;
        }
        Mock::given(wiremock::matchers::any())
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "application/json")
                    .set_body_string("{\"value\": [ {\"id\": \"x\"}, "),
            )
            .mount(&server)
            .await;
        let conn = connection(&server).await;
        let e = op(&conn).await.expect_err(name);
        assert_eq!(e.kind(), ErrorKind::Upstream, "{name}: {e}");
    }
    // and a 201 with a body that is JSON but not the expected shape
    let server = MockServer::start().await;
    mount_me(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1.0/teams/T1/channels/19:abc@thread.tacv2/messages"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(serde_json::json!({"notAMessage": true})),
        )
        .mount(&server)
        .await;
    let conn = connection(&server).await;
    let e = conn.post(&channel(), &outgoing()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
}
