//! Every Web API method the crate uses, against wiremock: the request's shape (verb, auth,
//! arguments) and the parsing of the answer, including `ok:false` errors, 429 with
//! `Retry-After`, malformed bodies and multi-page cursors.

#[allow(unused_imports)]
use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use switchboard_core::{
    Attachment, ChannelKind, ChannelRef, ConnectionHealth, Emoji, ErrorKind, ImportPhase,
    MembershipOutcome, MessageId, MessageRef, OutgoingMessage, Platform, PlatformKind,
    PortableMessage, RichText, Sender, ServiceAccount, TeamId, TeamImport, TeamListSource, UserId,
    VerifyOptions,
};
use switchboard_slack::{slack_api_error, slack_error_code};
use wiremock::matchers::{
    body_string_contains, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn ok(body: serde_json::Value) -> ResponseTemplate {
    let mut b = body;
    b["ok"] = json!(true);
    ResponseTemplate::new(200).set_body_json(b)
}

fn slack_err(code: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": code}))
}

fn chan(c: &str) -> ChannelRef {
    format!("slack:T1/{c}").parse().unwrap()
}

fn outgoing(text: &str) -> OutgoingMessage {
    OutgoingMessage {
        content: PortableMessage {
            sender: Sender {
                platform: PlatformKind::Msteams,
                user: UserId::new("aad-1").unwrap(),
                display_name: "Jane Doe".into(),
                avatar_url: Some("https://avatars.test/jane.png".into()),
                email: Some("jane@x.test".into()),
            },
            text: RichText::plain(text),
            attachments: vec![],
            thread_root: None,
        },
        marker: Some("um-123".into()),
        reply_to: None,
        broadcast: false,
        post_as: switchboard_core::PostingIdentity::ServiceAccount,
        files: vec![],
    }
}

fn msg_ref(ts: &str) -> MessageRef {
    MessageRef {
        channel: chan("C1"),
        message: MessageId::new(ts).unwrap(),
        thread_root: None,
    }
}

#[tokio::test]
async fn auth_test_gives_the_identity_and_verify_reports_missing_scopes() {
    let server = MockServer::start().await;
    let granted = "channels:read,groups:read,channels:history,groups:history,users:read,team:read,channels:join,chat:write,reactions:read,reactions:write,files:read,files:write";
    Mock::given(method("POST"))
        .and(path("/api/auth.test"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ok(json!({"url":"https://acme.slack.com/","team":"Acme","user":"switchboard","team_id":"T1","user_id":"UBOT","bot_id":"BBOT"}))
                .insert_header("x-oauth-scopes", granted),
        )
        .mount(&server)
        .await;
    let slack = connection(&server);
    let id = slack.identity().await.unwrap();
    assert_eq!(id.user_id.as_str(), "UBOT");
    assert_eq!(id.display_name, "switchboard");
    assert!(id.is_service_account);
    let bot = slack.bot_identity().await.unwrap();
    assert_eq!(bot.bot_id.as_deref(), Some("BBOT"));

    let report = slack.verify(VerifyOptions::default()).await.unwrap();
    let problems: Vec<_> = report.problems().map(|c| c.name.clone()).collect();
    assert_eq!(
        problems,
        vec!["scope users:read.email", "scope chat:write.customize"]
    );
    for p in report.problems() {
        let fix = p.fix.as_deref().unwrap();
        assert!(
            fix.contains("OAuth & Permissions") && fix.contains("reinstall"),
            "{fix}"
        );
    }
    assert!(report.checks.iter().any(|c| c.name == "bot token" && c.ok));
    assert_eq!(report.health(), ConnectionHealth::MissingScopes);
    assert_eq!(
        slack.health().await.unwrap(),
        ConnectionHealth::MissingScopes
    );
}

#[tokio::test]
async fn team_info_is_the_workspace() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/team.info"))
        .and(query_param("team", "T1"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ok(
            json!({"team":{"id":"T1","name":"Acme","domain":"acme"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let listing = connection(&server).list_teams().await.unwrap();
    assert_eq!(listing.source, TeamListSource::TenantWide);
    assert_eq!(listing.teams.len(), 1);
    assert_eq!(listing.teams[0].id.as_str(), "T1");
    assert_eq!(listing.teams[0].name, "Acme");
    assert_eq!(
        listing.teams[0].description.as_deref(),
        Some("acme.slack.com")
    );
}

#[tokio::test]
async fn import_team_follows_cursors_and_members_are_read_per_channel_on_demand() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.list"))
        .and(query_param("types", "public_channel,private_channel"))
        .and(query_param("exclude_archived", "true"))
        .and(query_param("limit", "999"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ok(json!({
            "channels": [
                {"id":"C1","name":"general","is_private":false,"purpose":{"value":"Company-wide"}},
                {"id":"G2","name":"secret","is_private":true,"topic":{"value":"shh"}}
            ],
            "response_metadata": {"next_cursor": "page2"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.list"))
        .and(query_param("cursor", "page2"))
        .respond_with(ok(json!({
            "channels": [
                {"id":"C3","name":"old","is_archived":true},
                {"id":"C4","name":"partners","is_ext_shared":true, "is_shared": true}
            ],
            "response_metadata": {"next_cursor": ""}
        })))
        .expect(1)
        .mount(&server)
        .await;
    // C1's members span two pages.
    Mock::given(method("GET"))
        .and(path("/api/conversations.members"))
        .and(query_param("channel", "C1"))
        .and(query_param("limit", "999"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ok(
            json!({"members":["U1","U2"],"response_metadata":{"next_cursor":"m2"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.members"))
        .and(query_param("channel", "C1"))
        .and(query_param("cursor", "m2"))
        .respond_with(ok(
            json!({"members":["U3"],"response_metadata":{"next_cursor":""}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.members"))
        .and(query_param("channel", "G2"))
        .respond_with(ok(json!({"members":["U2","U4"]})))
        .expect(0)
        .mount(&server)
        .await;
    // C4 disappears between the listing and the member call.
    Mock::given(method("GET"))
        .and(path("/api/conversations.members"))
        .and(query_param("channel", "C4"))
        .respond_with(slack_err("channel_not_found"))
        .expect(1)
        .mount(&server)
        .await;

    let slack = connection(&server);
    let mut sink = RecordingSink::default();
    let counts = slack
        .import_team(&TeamId::new("T1").unwrap(), &mut sink)
        .await
        .unwrap();
    assert_eq!(counts.channels, 3);
    assert_eq!(counts.members, 0, "no conversations.members per channel");
    assert!(
        requests_for(&server, "conversations.members")
            .await
            .is_empty()
    );
    let ids: Vec<_> = sink.channels.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec!["C1", "G2", "C4"]);
    assert_eq!(sink.channels[0].kind, ChannelKind::Standard);
    assert_eq!(
        sink.channels[0].description.as_deref(),
        Some("Company-wide")
    );
    assert_eq!(sink.channels[1].kind, ChannelKind::Private);
    assert_eq!(sink.channels[1].description.as_deref(), Some("shh"));
    assert_eq!(sink.channels[2].kind, ChannelKind::Shared);
    assert!(sink.members.is_empty());
    assert!(
        sink.progress
            .iter()
            .any(|p| p.phase == ImportPhase::Channels && p.done == 3)
    );
    // One channel's members, on demand: every page, into the sink's channel_members.
    let c1: ChannelRef = "slack:T1/C1".parse().unwrap();
    let mut sink = RecordingSink::default();
    let counts = slack.import_channel_members(&c1, &mut sink).await.unwrap();
    assert_eq!(counts.members, 3);
    assert_eq!(
        sink.progress.last().unwrap().phase,
        ImportPhase::ChannelMembers
    );
    assert_eq!(sink.progress.last().unwrap().done, 3);
    let gone: ChannelRef = "slack:T1/C4".parse().unwrap();
    let e = slack
        .import_channel_members(&gone, &mut RecordingSink::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // Another workspace is refused before any call.
    let err = slack
        .import_team(&TeamId::new("T9").unwrap(), &mut RecordingSink::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn import_users_pages_and_maps_profiles() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/users.list"))
        .and(query_param("limit", "1000"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ok(json!({
            "members": [
                {"id":"U1","name":"jane","profile":{"email":"jane@acme.test","real_name":"Jane Doe","display_name":"jane","image_72":"https://a/j.png"}},
                {"id":"U2","name":"guest","is_restricted":true,"profile":{"real_name":"Gus Guest","display_name":""}}
            ],
            "response_metadata": {"next_cursor":"dXNlcjpVMg=="}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/users.list"))
        .and(query_param("cursor", "dXNlcjpVMg=="))
        .respond_with(ok(json!({
            "members": [
                {"id":"U1","name":"jane","profile":{}},
                {"id":"B1","name":"ci","is_bot":true,"profile":{"real_name":"CI"}},
                {"id":"U3","name":"gone","deleted":true,"profile":{"real_name":"Gone"}}
            ],
            "response_metadata": {"next_cursor":""}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut sink = RecordingSink::default();
    let counts = connection(&server).import_users(&mut sink).await.unwrap();
    assert_eq!(counts.users, 4, "U1 repeated on page two is delivered once");
    let u1 = &sink.users[0];
    assert_eq!(
        (u1.display_name.as_str(), u1.email.as_deref()),
        ("jane", Some("jane@acme.test"))
    );
    assert_eq!(u1.avatar_url.as_deref(), Some("https://a/j.png"));
    assert_eq!(sink.users[1].display_name, "Gus Guest");
    assert!(sink.users[1].is_guest);
    assert!(sink.users[2].is_bot);
    assert!(sink.users[3].is_deleted);
    assert_eq!(sink.progress.len(), 2);
}

#[tokio::test]
async fn a_repeated_cursor_is_an_error_not_an_endless_loop() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/users.list"))
        .respond_with(ok(
            json!({"members": [], "response_metadata": {"next_cursor":"same"}}),
        ))
        .mount(&server)
        .await;
    let err = connection(&server)
        .import_users(&mut RecordingSink::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(err.message().contains("same cursor"), "{err}");
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/users.list"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/users.list"))
        .respond_with(ok(json!({"members":[{"id":"U1","profile":{}}]})))
        .with_priority(2)
        .mount(&server)
        .await;
    let slack = connection(&server);
    let start = Instant::now();
    let counts = slack
        .import_users(&mut RecordingSink::default())
        .await
        .unwrap();
    assert_eq!(counts.users, 1);
    assert!(
        start.elapsed() >= Duration::from_millis(990),
        "{:?}",
        start.elapsed()
    );
    let stats = slack.client().stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.requests["users.list"], 2);
    assert!(stats.retry_after_wait_ms >= 1000);
}

#[tokio::test]
async fn rate_limiting_beyond_the_bound_fails_with_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/team.info"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let start = Instant::now();
    let err = connection(&server).list_teams().await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        err.kind(),
        ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    assert!(err.message().contains("team.info"), "{err}");
}

#[tokio::test]
async fn ok_false_errors_map_to_kinds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(body_string_contains("C404"))
        .respond_with(slack_err("channel_not_found"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(body_string_contains("CNOTIN"))
        .respond_with(slack_err("not_in_channel"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": false, "error": "missing_scope", "needed": "chat:write", "provided": "channels:read"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/team.info"))
        .respond_with(slack_err("invalid_auth"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/auth.test"))
        .respond_with(slack_err("invalid_auth"))
        .mount(&server)
        .await;
    let slack = connection(&server);
    let e = slack.post(&chan("C404"), &outgoing("x")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(slack_error_code(&e), Some("channel_not_found"));
    let e = slack
        .post(&chan("CNOTIN"), &outgoing("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert!(e.message().contains("invite"), "{e}");
    let e = slack
        .edit(
            &msg_ref("1.1"),
            &outgoing("x"),
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    let d = slack_api_error(&e).unwrap();
    assert_eq!(d.needed.as_deref(), Some("chat:write"));
    assert_eq!(d.provided.as_deref(), Some("channels:read"));
    let e = slack.list_teams().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert_eq!(slack.health().await.unwrap(), ConnectionHealth::NeedsReauth);
    // No error message carries the token.
    assert!(!format!("{e} {e:?}").contains(TOKEN));
    assert!(!format!("{slack:?}").contains(TOKEN));
}

#[tokio::test]
async fn malformed_answers_are_upstream_errors_and_writes_are_not_repeated() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/team.info"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops</html>"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "channel": "C1"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/users.list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"members": []})))
        .mount(&server)
        .await;
    let slack = connection(&server);
    let e = slack.list_teams().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    assert!(e.message().contains("not JSON"), "{e}");
    // Reads are retried (2 retries configured), writes are not.
    assert_eq!(requests_for(&server, "team.info").await.len(), 3);
    let e = slack.post(&chan("C1"), &outgoing("x")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Upstream);
    assert!(e.message().contains("documented shape"), "{e}");
    assert_eq!(requests_for(&server, "chat.postMessage").await.len(), 1);
    let e = slack
        .import_users(&mut RecordingSink::default())
        .await
        .unwrap_err();
    assert!(e.message().contains("no `ok` field"), "{e}");
}

#[tokio::test]
async fn server_errors_on_reads_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/team.info"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/team.info"))
        .respond_with(ok(json!({"team":{"id":"T1","name":"Acme"}})))
        .with_priority(2)
        .mount(&server)
        .await;
    let listing = connection(&server).list_teams().await.unwrap();
    assert_eq!(listing.teams[0].name, "Acme");
    assert_eq!(requests_for(&server, "team.info").await.len(), 3);
}

#[tokio::test]
async fn post_sends_attribution_thread_and_marker() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("content-type", "application/json; charset=utf-8"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ok(
            json!({"channel":"C1","ts":"1700000000.000200","message":{"text":"x"}}),
        ))
        .mount(&server)
        .await;
    let slack = connection(&server);
    let mut m = outgoing("");
    m.content.text = switchboard_slack::mrkdwn::from_mrkdwn("*hi* <@U42> & <https://x.test|docs>");
    // The origin's thread root is not the target's: only `reply_to` addresses the thread.
    m.content.thread_root = Some(MessageId::new("1600000000.000001").unwrap());
    m.reply_to = Some(MessageId::new("1700000000.000100").unwrap());
    let posted = slack.post(&chan("C1"), &m).await.unwrap();
    assert_eq!(posted.reference.message.as_str(), "1700000000.000200");
    assert_eq!(
        posted.reference.thread_root.as_ref().unwrap().as_str(),
        "1700000000.000100"
    );
    let req = &requests_for(&server, "chat.postMessage").await[0];
    let body = json_body(req);
    assert_eq!(
        body,
        json!({
            "channel": "C1",
            "text": "*hi* <@U42> &amp; <https://x.test|docs>",
            "username": "Jane Doe",
            "icon_url": "https://avatars.test/jane.png",
            "thread_ts": "1700000000.000100",
            "metadata": {"event_type": "switchboard_relayed", "event_payload": {"marker": "um-123"}}
        })
    );
    // An empty message is refused before any call.
    let e = slack.post(&chan("C1"), &outgoing("  ")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // A channel of another workspace or platform too.
    let other: ChannelRef = "slack:T9/C1".parse().unwrap();
    assert_eq!(
        slack.post(&other, &outgoing("x")).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(requests_for(&server, "chat.postMessage").await.len(), 1);
}

#[tokio::test]
async fn without_chat_write_customize_attribution_moves_into_the_text() {
    // Slack ignores username/icon_url silently without the scope: the adapter decides from
    // the granted scopes (X-OAuth-Scopes of auth.test) before posting.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/auth.test"))
        .respond_with(
            ok(json!({"user_id":"UBOT","bot_id":"B1","team_id":"T1","user":"switchboard"}))
                .insert_header("x-oauth-scopes", "chat:write,channels:read"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ok(json!({"channel":"C1","ts":"5.5"})))
        .mount(&server)
        .await;
    let slack = connection(&server);
    assert!(!slack.can_customize().await);
    let posted = slack.post(&chan("C1"), &outgoing("hello")).await.unwrap();
    assert_eq!(posted.reference.message.as_str(), "5.5");
    let reqs = requests_for(&server, "chat.postMessage").await;
    assert_eq!(reqs.len(), 1, "one post, no failed attempt first");
    let body = json_body(&reqs[0]);
    assert_eq!(body["text"], "*Jane Doe*: hello");
    assert!(body.get("username").is_none() && body.get("icon_url").is_none());
    assert!(body.get("metadata").is_some());
    // the scopes are read once per connection
    slack.post(&chan("C1"), &outgoing("again")).await.unwrap();
    assert_eq!(requests_for(&server, "auth.test").await.len(), 1);
}

#[tokio::test]
async fn attachments_are_linked_without_a_fetcher() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ok(json!({"channel":"C1","ts":"6.6"})))
        .mount(&server)
        .await;
    let slack = connection(&server);
    let mut m = outgoing("see file");
    m.content.attachments.push(Attachment {
        name: "report <q3>.pdf".into(),
        url: "https://files.test/r?a=1&b=2".into(),
        mime_type: Some("application/pdf".into()),
        size: Some(3),
    });
    slack.post(&chan("C1"), &m).await.unwrap();
    let body = json_body(&requests_for(&server, "chat.postMessage").await[0]);
    assert_eq!(
        body["text"],
        "see file\n📎 <https://files.test/r?a=1&amp;b=2|report &lt;q3&gt;.pdf>"
    );
}

#[tokio::test]
async fn files_are_uploaded_recorded_as_extra_parts_and_linked_when_upload_fails() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(body_string_contains("with files"))
        .respond_with(ok(json!({"channel":"C1","ts":"7.7"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ok(json!({"channel":"C1","ts":"7.9"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/files.getUploadURLExternal"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("notes.txt"))
        .respond_with(ok(
            json!({"upload_url": format!("{}/upload/F123", server.uri()), "file_id": "F123"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/files.getUploadURLExternal"))
        .respond_with(slack_err("file_upload_disabled"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/upload/F123"))
        .respond_with(ResponseTemplate::new(200).set_body_string("OK - 10"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/files.completeUploadExternal"))
        .respond_with(ok(json!({"files":[{"id":"F123","title":"notes.txt"}]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/files.info"))
        .respond_with(ok(json!({"file": {"id": "F123", "name": "notes.txt",
            "shares": {"public": {"C1": [{"ts": "7.8", "thread_ts": "7.0"}]}}}})))
        .expect(1)
        .mount(&server)
        .await;
    let slack = connection(&server);
    assert!(slack.capabilities().file_upload);
    let mut m = outgoing("with files");
    m.reply_to = Some(MessageId::new("7.0").unwrap());
    for name in ["notes.txt", "broken.bin"] {
        m.files.push(switchboard_core::OutgoingFile {
            attachment: Attachment {
                name: name.into(),
                url: format!("https://origin.test/{name}"),
                mime_type: None,
                size: Some(10),
            },
            content: Some(switchboard_core::FileContent {
                name: name.into(),
                mime_type: None,
                bytes: b"hello file".to_vec(),
            }),
        });
    }
    let posted = slack.post(&chan("C1"), &m).await.unwrap();
    assert_eq!(posted.reference.message.as_str(), "7.7");
    // every further message is recorded, so edits and deletes reach them
    let extra: Vec<&str> = posted
        .extra_parts
        .iter()
        .map(|r| r.message.as_str())
        .collect();
    assert_eq!(extra, ["7.8", "7.9"]);
    assert!(
        posted
            .extra_parts
            .iter()
            .all(|r| r.thread_root.as_ref().unwrap().as_str() == "7.0")
    );

    let get = &requests_for(&server, "files.getUploadURLExternal").await[0];
    let form = form_body(get);
    assert!(form.contains(&("filename".into(), "notes.txt".into())));
    assert!(form.contains(&("length".into(), "10".into())));
    let uploads: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/upload/F123")
        .collect();
    assert_eq!(uploads[0].body, b"hello file");
    assert!(
        uploads[0].headers.get("authorization").is_none(),
        "the token never goes to the upload host"
    );
    let complete = json_body(&requests_for(&server, "files.completeUploadExternal").await[0]);
    assert_eq!(
        complete,
        json!({"files":[{"id":"F123","title":"notes.txt"}],"channel_id":"C1","thread_ts":"7.0"})
    );
    // The file that could not be uploaded is linked, not dropped.
    let posts = requests_for(&server, "chat.postMessage").await;
    assert_eq!(posts.len(), 2);
    assert_eq!(json_body(&posts[0])["text"], "with files");
    assert_eq!(
        json_body(&posts[1])["text"],
        "📎 <https://origin.test/broken.bin|broken.bin>"
    );
    assert_eq!(json_body(&posts[1])["thread_ts"], "7.0");
}

#[tokio::test]
async fn fetch_attachment_downloads_with_the_bot_token_within_bounds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/files-pri/T1-F1/a.txt"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("0123456789"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/files.info"))
        .respond_with(ok(json!({"file": {"id": "F2", "name": "connect.txt",
            "url_private_download": format!("{}/files-pri/T1-F1/a.txt", server.uri())}})))
        .mount(&server)
        .await;
    let slack = connection(&server);
    let file = |url: String, size: Option<u64>| Attachment {
        name: "a.txt".into(),
        url,
        mime_type: Some("text/plain".into()),
        size,
    };
    let url = format!("{}/files-pri/T1-F1/a.txt", server.uri());
    let got = slack
        .fetch_attachment(&file(url.clone(), None), 100)
        .await
        .unwrap();
    assert_eq!(got.bytes, b"0123456789");
    assert_eq!(got.name, "a.txt");
    // more than max_bytes: refused, whether the size is announced or not
    let e = slack
        .fetch_attachment(&file(url.clone(), Some(10)), 9)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = slack
        .fetch_attachment(&file(url, None), 9)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // an ID-only (Slack Connect) file is read through files.info first
    let by_id = file(format!("{}F2", switchboard_slack::FILE_ID_SCHEME), None);
    let got = slack.fetch_attachment(&by_id, 100).await.unwrap();
    assert_eq!(got.name, "connect.txt");
    assert_eq!(got.bytes, b"0123456789");
    // the bot token goes to Slack's hosts only
    let e = slack
        .fetch_attachment(&file("https://evil.test/steal".into(), None), 100)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("evil.test"), "{e}");
}

#[tokio::test]
async fn edit_delete_and_react() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(ok(json!({"channel":"C1","ts":"1.1","text":"new"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.delete"))
        .and(body_string_contains("\"1.1\""))
        .respond_with(ok(json!({"channel":"C1","ts":"1.1"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.delete"))
        .and(body_string_contains("\"2.2\""))
        .respond_with(slack_err("message_not_found"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.delete"))
        .and(body_string_contains("\"3.3\""))
        .respond_with(slack_err("cant_delete_message"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/reactions.add"))
        .and(body_string_contains("partyparrot"))
        .respond_with(slack_err("already_reacted"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/reactions.add"))
        .respond_with(ok(json!({})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/reactions.remove"))
        .respond_with(slack_err("no_reaction"))
        .mount(&server)
        .await;
    let slack = connection(&server);
    slack
        .edit(
            &msg_ref("1.1"),
            &outgoing("new *text*"),
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .unwrap();
    let body = json_body(&requests_for(&server, "chat.update").await[0]);
    assert_eq!(
        body,
        json!({"channel":"C1","ts":"1.1","text":"*Jane Doe*: new \u{200B}*\u{200B}text\u{200B}*\u{200B}",
               "metadata":{"event_type":"switchboard_relayed","event_payload":{"marker":"um-123"}}}),
        "chat.update cannot carry username: the sender is named in the text (and the literal \
         asterisks of plain text are neutralised so they do not become bold)"
    );
    slack
        .delete(
            &msg_ref("1.1"),
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .unwrap();
    slack
        .delete(
            &msg_ref("2.2"),
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .expect("already deleted is success");
    assert_eq!(
        slack
            .delete(
                &msg_ref("3.3"),
                &switchboard_core::PostingIdentity::ServiceAccount
            )
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );

    let thumbs = Emoji::Unicode {
        value: "👍".into(),
        name: Some("like".into()),
    };
    slack
        .react(
            &msg_ref("1.1"),
            &thumbs,
            switchboard_core::ReactionChange::Add,
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .unwrap();
    let body = json_body(&requests_for(&server, "reactions.add").await[0]);
    assert_eq!(body["channel"], "C1");
    assert_eq!(body["timestamp"], "1.1");
    assert_eq!(
        body["name"], "+1",
        "looked up by character, not by the foreign name"
    );
    let parrot = Emoji::Custom {
        name: "partyparrot".into(),
    };
    slack
        .react(
            &msg_ref("1.1"),
            &parrot,
            switchboard_core::ReactionChange::Add,
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .expect("already reacted is success");
    slack
        .react(
            &msg_ref("1.1"),
            &parrot,
            switchboard_core::ReactionChange::Remove,
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .expect("absent reaction removed is success");
    let body = json_body(&requests_for(&server, "reactions.remove").await[0]);
    assert_eq!(
        body,
        json!({"channel":"C1","timestamp":"1.1","name":"partyparrot"})
    );
}

#[tokio::test]
async fn ensure_membership_joins_public_and_explains_private() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/conversations.join"))
        .and(body_string_contains("C1"))
        .respond_with(ok(json!({"channel":{"id":"C1"}})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/conversations.join"))
        .and(body_string_contains("C2"))
        .respond_with(ok(
            json!({"channel":{"id":"C2"},"warning":"already_in_channel",
            "response_metadata":{"warnings":["already_in_channel"]}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/conversations.join"))
        .and(body_string_contains("G3"))
        .respond_with(slack_err("method_not_supported_for_channel_type"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/conversations.join"))
        .and(body_string_contains("C4"))
        .respond_with(slack_err("is_archived"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/auth.test"))
        .respond_with(ok(
            json!({"user_id":"UBOT","user":"switchboard","bot_id":"B1","team_id":"T1"}),
        ))
        .mount(&server)
        .await;
    let slack = connection(&server);
    assert_eq!(
        slack.ensure_membership(&chan("C1")).await.unwrap(),
        MembershipOutcome::Added
    );
    assert_eq!(
        json_body(&requests_for(&server, "conversations.join").await[0]),
        json!({"channel":"C1"})
    );
    assert_eq!(
        slack.ensure_membership(&chan("C2")).await.unwrap(),
        MembershipOutcome::AlreadyMember
    );
    match slack.ensure_membership(&chan("G3")).await.unwrap() {
        MembershipOutcome::ActionRequired { fix } => {
            assert!(
                fix.contains("/invite @switchboard") && fix.contains("private"),
                "{fix}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        slack.ensure_membership(&chan("C4")).await.unwrap(),
        MembershipOutcome::ActionRequired { fix } if fix.contains("archived")
    ));
}

#[tokio::test]
async fn posts_are_paced_per_channel() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ok(json!({"channel":"C1","ts":"1.1"})))
        .mount(&server)
        .await;
    let mut limits = switchboard_slack::RateLimits::unlimited();
    limits.post_per_channel = switchboard_slack::Rate {
        limit: 1,
        window: Duration::from_millis(200),
    };
    let config = config(&server).with_limits(limits);
    let slack = connection_with(&config, credentials(TOKEN));
    let start = Instant::now();
    for _ in 0..4 {
        slack.post(&chan("C1"), &outgoing("x")).await.unwrap();
    }
    // One burst token, then one post per 200 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(590),
        "{:?}",
        start.elapsed()
    );
}
