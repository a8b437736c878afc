//! Platform against wiremock: post (HTML, mentions, attribution), reply, edit, delete,
//! react, posting with a linked user's token, health and identity.

#[allow(unused_imports)]
use crate::common;

use std::sync::Arc;

use common::*;
use secrecy::SecretString;
use switchboard_core::{
    Attachment, Block, ChannelRef, ConnectionHealth, Emoji, ErrorKind, Inline, Mention, MessageId,
    MessageRef, OutgoingMessage, Platform, PlatformKind, PortableMessage, PostingIdentity,
    RichText, Sender, UserId,
};
use switchboard_msteams::{MsTeamsConnection, TokenProvider};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CH: &str = "19:abc@thread.tacv2";

fn channel() -> ChannelRef {
    format!("msteams:T1/{CH}").parse().unwrap()
}

fn slack_sender() -> Sender {
    Sender {
        platform: PlatformKind::Slack,
        user: UserId::new("U123").unwrap(),
        display_name: "Jane Smith".into(),
        avatar_url: Some("https://avatars.slack.test/j.png".into()),
        email: Some("jane@contoso.test".into()),
    }
}

fn outgoing(sender: Sender, text: RichText, root: Option<&str>) -> OutgoingMessage {
    OutgoingMessage {
        content: PortableMessage {
            sender,
            text,
            attachments: vec![],
            thread_root: root.map(|r| MessageId::new(r).unwrap()),
        },
        marker: Some("sb:1".into()),
        reply_to: root.map(|r| MessageId::new(r).unwrap()),
        broadcast: false,
        post_as: switchboard_core::PostingIdentity::ServiceAccount,
        files: vec![],
    }
}

fn created(id: &str, reply_to: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#teams('T1')/channels('19%3Aabc%40thread.tacv2')/messages/$entity",
        "id": id, "replyToId": reply_to, "etag": id, "messageType": "message",
        "createdDateTime": "2024-05-01T10:00:00.123Z", "lastModifiedDateTime": "2024-05-01T10:00:00.123Z",
        "lastEditedDateTime": null, "deletedDateTime": null, "subject": null, "importance": "normal", "locale": "en-us",
        "webUrl": "https://teams.microsoft.com/l/message/x",
        "from": {"application": null, "device": null, "user": {"id": ME, "displayName": "Switchboard Service", "userIdentityType": "aadUser"}},
        "body": {"contentType": "html", "content": "<p>x</p>"},
        "channelIdentity": {"teamId": "T1", "channelId": CH},
        "attachments": [], "mentions": [], "reactions": []
    })
}

fn messages_path() -> String {
    format!("/v1.0/teams/T1/channels/{CH}/messages")
}

#[tokio::test]
async fn post_sends_html_with_attribution_and_mentions() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    let text = RichText {
        blocks: vec![Block::Paragraph {
            inlines: vec![
                Inline::Text { text: "Hi ".into() },
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new("0b9e3b7f-0000-4000-8000-0000000000b0").unwrap(),
                        display_name: "Bob Jones".into(),
                    },
                },
                Inline::Text {
                    text: " <3 & ".into(),
                },
                Inline::Bold {
                    inlines: vec![Inline::Text {
                        text: "ship it".into(),
                    }],
                },
            ],
        }],
    };
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_json(serde_json::json!({
            "body": {
                "contentType": "html",
                "content": "<p><b>Jane Smith</b> <i>(via Slack)</i></p><p>Hi <at id=\"0\">Bob Jones</at> &lt;3 &amp; <b>ship it</b></p><p>📎 <a href=\"https://files.slack.test/f.pdf\">f.pdf</a></p><span itemid=\"switchboard:sb:1\"></span>"
            },
            "mentions": [{"id": 0, "mentionText": "Bob Jones", "mentioned": {"user": {"id": "0b9e3b7f-0000-4000-8000-0000000000b0", "displayName": "Bob Jones", "userIdentityType": "aadUser"}}}]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(created("1714557600123", None)))
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let mut msg = outgoing(slack_sender(), text, None);
    msg.content.attachments.push(Attachment {
        name: "f.pdf".into(),
        url: "https://files.slack.test/f.pdf".into(),
        mime_type: Some("application/pdf".into()),
        size: Some(10),
    });
    let posted = conn.post(&channel(), &msg).await.unwrap();
    assert_eq!(posted.reference.message.as_str(), "1714557600123");
    assert_eq!(posted.reference.channel, channel());
    assert_eq!(posted.reference.thread_root, None);
}

#[tokio::test]
async fn replies_edits_deletes_and_reactions_use_the_right_paths() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    let root = "1714557600123";
    Mock::given(method("POST"))
        .and(path(format!("{}/{root}/replies", messages_path())))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(created("1714557600999", Some(root))),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{}/{root}", messages_path())))
        .and(body_json(
            // the marker survives the edit (the PATCH replaces the whole body)
            serde_json::json!({"body": {"contentType": "html", "content": "<p>edited by me</p><span itemid=\"switchboard:sb:1\"></span>"}}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!(
            "{}/{root}/replies/1714557600999",
            messages_path()
        )))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{}/{root}/softDelete", messages_path())))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "{}/{root}/replies/1714557600999/softDelete",
            messages_path()
        )))
        .respond_with(ResponseTemplate::new(404).set_body_json(graph_error("NotFound", "gone")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{}/{root}/setReaction", messages_path())))
        .and(body_json(serde_json::json!({"reactionType": "👍"})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{}/{root}/unsetReaction", messages_path())))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let reply = conn
        .post(
            &channel(),
            &outgoing(slack_sender(), RichText::plain("a reply"), Some(root)),
        )
        .await
        .unwrap();
    assert_eq!(reply.reference.thread_root.as_ref().unwrap().as_str(), root);
    let root_ref = MessageRef {
        channel: channel(),
        message: MessageId::new(root).unwrap(),
        thread_root: None,
    };
    // the service account's own words carry no attribution line
    let me = Sender {
        platform: PlatformKind::Msteams,
        user: UserId::new(ME).unwrap(),
        display_name: "Switchboard Service".into(),
        avatar_url: None,
        email: None,
    };
    conn.edit(
        &root_ref,
        &outgoing(me, RichText::plain("edited by me"), None),
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.edit(
        &reply.reference,
        &outgoing(slack_sender(), RichText::plain("x"), Some(root)),
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    conn.delete(
        &root_ref,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    // an already deleted reply: success
    conn.delete(
        &reply.reference,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    let thumbs = Emoji::Unicode {
        value: "👍".into(),
        name: Some("thumbsup".into()),
    };
    conn.react(
        &root_ref,
        &thumbs,
        switchboard_core::ReactionChange::Add,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    // removing an absent reaction: success
    conn.react(
        &root_ref,
        &thumbs,
        switchboard_core::ReactionChange::Remove,
        &switchboard_core::PostingIdentity::ServiceAccount,
    )
    .await
    .unwrap();
    let custom = Emoji::Custom {
        name: "partyparrot".into(),
    };
    let e = conn
        .react(
            &root_ref,
            &custom,
            switchboard_core::ReactionChange::Add,
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("partyparrot"));
    let caps = conn.capabilities();
    assert!(caps.reactions && caps.edits && caps.deletes && caps.sender_attribution);
    assert!(
        caps.file_upload,
        "files go into the channel folder (or are linked)"
    );
}

#[tokio::test]
async fn copies_are_changed_as_the_identity_that_posted_them() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    let jane = UserId::new("jane-teams-id").unwrap();
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(header("authorization", "Bearer user-token-jane"))
        .and(body_json(
            serde_json::json!({"body": {"contentType": "html",
            "content": "<p>from me</p><span itemid=\"switchboard:sb:1\"></span>"}}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(created("555", None)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{}/555", messages_path())))
        .and(header("authorization", "Bearer user-token-jane"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{}/555/softDelete", messages_path())))
        .and(header("authorization", "Bearer user-token-jane"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    // a copy the service account posted is deleted with the service account's token, even
    // while a user is linked
    Mock::given(method("POST"))
        .and(path(format!("{}/777/softDelete", messages_path())))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    conn.link_user_token(
        jane.clone(),
        Arc::new(TokenProvider::fixed(SecretString::from("user-token-jane"))),
    );
    let as_jane = PostingIdentity::LinkedUser { user: jane.clone() };
    let posted = conn
        .post(
            &channel(),
            &outgoing(slack_sender(), RichText::plain("from me"), None).posted_as(as_jane.clone()),
        )
        .await
        .unwrap();
    assert_eq!(posted.posted_by, as_jane);
    let edit = outgoing(slack_sender(), RichText::plain("edited"), None);
    conn.edit(&posted.reference, &edit, &posted.posted_by)
        .await
        .unwrap();
    conn.delete(&posted.reference, &posted.posted_by)
        .await
        .unwrap();
    let svc_copy = MessageRef {
        channel: channel(),
        message: MessageId::new("777").unwrap(),
        thread_root: None,
    };
    conn.delete(&svc_copy, &PostingIdentity::ServiceAccount)
        .await
        .unwrap();
    assert!(!format!("{conn:?}").contains("user-token-jane"));
    // once the token is gone, Jane's copies can no longer be changed: said in words, and
    // nothing is sent with another token
    conn.unlink_user_token(&jane);
    let e = conn
        .edit(&posted.reference, &edit, &as_jane)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert!(e.message().contains("can no longer be changed"), "{e}");
    let e = conn.delete(&posted.reference, &as_jane).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    // posting as Jane without her token falls back to the service account, and says so
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(created("556", None)))
        .expect(1)
        .mount(&server)
        .await;
    let fallback = conn
        .post(
            &channel(),
            &outgoing(slack_sender(), RichText::plain("x"), None).posted_as(as_jane),
        )
        .await
        .unwrap();
    assert_eq!(fallback.posted_by, PostingIdentity::ServiceAccount);
}

#[tokio::test]
async fn teams_files_are_fetched_through_the_shares_api_within_the_bound() {
    let server = MockServer::start().await;
    let file_url = "https://contoso.sharepoint.com/sites/T1/Shared%20Documents/General/report.pdf";
    let share = switchboard_msteams::files::share_id(file_url);
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/shares/{share}/driveItem")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "item-1", "name": "report.pdf", "size": 11,
            "file": {"mimeType": "application/pdf"},
            "@microsoft.graph.downloadUrl": format!("{}/download/item-1?tempauth=x", server.uri())
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/download/item-1"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"hello world".to_vec()))
        .expect(1)
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let attachment = Attachment {
        name: "report.pdf".into(),
        url: file_url.into(),
        mime_type: None,
        size: None,
    };
    let file = conn.fetch_attachment(&attachment, 1024).await.unwrap();
    assert_eq!(file.bytes, b"hello world");
    assert_eq!(file.name, "report.pdf");
    assert_eq!(file.mime_type.as_deref(), Some("application/pdf"));
    // the pre-authenticated download URL never gets the bearer token
    let reqs = server.received_requests().await.unwrap();
    let dl = reqs
        .iter()
        .find(|r| r.url.path() == "/download/item-1")
        .unwrap();
    assert!(dl.headers.get("authorization").is_none());
    // over the bound: refused before downloading
    let e = conn.fetch_attachment(&attachment, 10).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("11 bytes"), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn posting_errors_are_clear() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(graph_error("Forbidden", "User is not a member of the team")),
        )
        .mount(&server)
        .await;
    let conn = fixed_conn(&server);
    let e = conn
        .post(
            &channel(),
            &outgoing(slack_sender(), RichText::plain("x"), None),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert!(e.message().contains("removed from team T1"), "{e}");
    let slack: ChannelRef = "slack:T1/C1".parse().unwrap();
    let e = conn
        .post(
            &slack,
            &outgoing(slack_sender(), RichText::plain("x"), None),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = conn
        .post(
            &channel(),
            &outgoing(slack_sender(), RichText::default(), None),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn identity_and_health() {
    let server = MockServer::start().await;
    mount_me(&server).await;
    let conn = fixed_conn(&server);
    assert_eq!(conn.kind(), PlatformKind::Msteams);
    let id = conn.identity().await.unwrap();
    assert_eq!(id.user_id.as_str(), ME);
    assert!(id.is_service_account);
    assert_eq!(conn.health().await.unwrap(), ConnectionHealth::Ok);
    let personal = MsTeamsConnection::new(
        config(&server),
        Arc::new(TokenProvider::fixed(SecretString::from(TOKEN))),
    )
    .unwrap()
    .personal_account();
    assert!(!personal.identity().await.unwrap().is_service_account);

    // a dead grant: needs_reauth, not an error
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            serde_json::json!({"error": "invalid_grant", "error_description": "revoked"}),
        ))
        .mount(&server)
        .await;
    let dead = MsTeamsConnection::new(
        config(&server),
        refreshing_provider(&server, creds("at", Some("rt"), -5, &[]), None),
    )
    .unwrap();
    assert_eq!(dead.health().await.unwrap(), ConnectionHealth::NeedsReauth);
    assert_eq!(
        dead.post(
            &channel(),
            &outgoing(slack_sender(), RichText::plain("x"), None)
        )
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::NeedsReauth
    );
    // missing scopes show in the health
    let partial = MsTeamsConnection::new(
        config(&server),
        refreshing_provider(
            &server,
            creds("at", Some("rt"), 3000, &["openid", "User.Read.All"]),
            None,
        ),
    )
    .unwrap();
    assert_eq!(
        partial.health().await.unwrap(),
        ConnectionHealth::MissingScopes
    );
    // Graph failing: degraded
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    assert_eq!(
        fixed_conn(&server).health().await.unwrap(),
        ConnectionHealth::Degraded
    );
}
