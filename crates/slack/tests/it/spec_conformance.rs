//! Every Web API method and argument the crate sends exists in Slack's published OpenAPI
//! spec (`specs/slack/web_api_openapi_v2.json`, 2020), except those newer than the
//! spec, each listed below with where Slack documents it.
//!
//! The test drives every operation of the crate against a recording mock, then checks each
//! recorded request (method from the path; arguments from the query string, the form body
//! or the top-level JSON keys) against the spec.

#[allow(unused_imports)]
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard_core::{
    Attachment, ChannelRef, Emoji, MessageId, MessageRef, OutgoingMessage, Platform, PlatformKind,
    PortableMessage, RichText, Sender, ServiceAccount, TeamId, TeamImport, UserId, VerifyOptions,
};
use switchboard_slack::{SlackClient, SlackOAuth, SocketModeClient};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Methods newer than the 2020 spec, with where they are documented.
const NEWER_METHODS: &[(&str, &str)] = &[
    (
        "files.getUploadURLExternal",
        "https://api.slack.com/methods/files.getUploadURLExternal (2023: the file upload that replaced files.upload)",
    ),
    (
        "files.completeUploadExternal",
        "https://api.slack.com/methods/files.completeUploadExternal (2023)",
    ),
    (
        "apps.connections.open",
        "https://api.slack.com/methods/apps.connections.open (Socket Mode, 2021)",
    ),
];

/// Arguments newer than the 2020 spec on methods it has, with where they are documented.
const NEWER_ARGUMENTS: &[(&str, &str, &str)] = &[
    (
        "chat.postMessage",
        "metadata",
        "https://api.slack.com/metadata/using (message metadata, 2022)",
    ),
    (
        "chat.update",
        "metadata",
        "https://api.slack.com/methods/chat.update#arg_metadata (message metadata, 2022)",
    ),
    (
        "conversations.history",
        "include_all_metadata",
        "https://docs.slack.dev/reference/methods/conversations.history (message metadata)",
    ),
    (
        "oauth.v2.access",
        "grant_type",
        "https://api.slack.com/authentication/rotation (token rotation: grant_type=refresh_token)",
    ),
    (
        "oauth.v2.access",
        "refresh_token",
        "https://api.slack.com/authentication/rotation (token rotation)",
    ),
];

/// Arguments of the newer methods (not in the spec at all), as documented.
const NEWER_METHOD_ARGUMENTS: &[(&str, &[&str])] = &[
    (
        "files.getUploadURLExternal",
        &["filename", "length", "alt_txt", "snippet_type"],
    ),
    (
        "files.completeUploadExternal",
        &[
            "files",
            "channel_id",
            "thread_ts",
            "initial_comment",
            "channels",
            "blocks",
        ],
    ),
    ("apps.connections.open", &[]),
];

fn spec() -> Value {
    // Slack's published spec, vendored at the repository root (specs/slack/).
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../specs/slack/web_api_openapi_v2.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the spec is JSON")
}

/// Answers each method with a plausible `ok:true` body.
struct Canned {
    base: String,
}

impl Respond for Canned {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let method = request.url.path().trim_start_matches("/api/");
        let body = match method {
            "auth.test" => json!({"user_id":"UBOT","user":"bot","bot_id":"B1","team_id":"T1"}),
            "oauth.v2.access" => json!({
                "access_token":"xoxb-x","token_type":"bot","scope":"chat:write","bot_user_id":"UBOT",
                "app_id":"A1","team":{"id":"T1","name":"Acme"},"expires_in":43200,"refresh_token":"r-2"
            }),
            "team.info" => json!({"team":{"id":"T1","name":"Acme"}}),
            "conversations.list" => json!({"channels":[{"id":"C1","name":"general"}]}),
            "conversations.members" => json!({"members":["U1"]}),
            "users.info" => json!({"user":{"id":"U1","profile":{"display_name":"Una"}}}),
            "conversations.history" => json!({"messages":[],"has_more":false}),
            "users.list" => json!({"members":[{"id":"U1","profile":{}}]}),
            "chat.postMessage" => json!({"channel":"C1","ts":"1.1"}),
            "files.getUploadURLExternal" => {
                json!({"upload_url": format!("{}/upload/F1", self.base), "file_id":"F1"})
            }
            "apps.connections.open" => json!({"url":"wss://socket.test/link"}),
            _ => json!({}),
        };
        let mut body = body;
        body["ok"] = json!(true);
        ResponseTemplate::new(200).set_body_json(body)
    }
}

/// Drives every operation the crate has.
async fn exercise_everything(server: &MockServer) {
    let config = config(server);
    let client = SlackClient::new(&config).unwrap();
    let oauth = SlackOAuth::new(&config, client.clone());
    oauth.exchange_code("code").await.unwrap();
    oauth.refresh(&SecretString::from("r-1")).await.unwrap();

    let slack = connection(server);
    slack.verify(VerifyOptions::default()).await.unwrap();
    slack.list_teams().await.unwrap();
    let mut sink = RecordingSink::default();
    slack
        .import_team(&TeamId::new("T1").unwrap(), &mut sink)
        .await
        .unwrap();
    slack.import_users(&mut sink).await.unwrap();
    let channel: ChannelRef = "slack:T1/C1".parse().unwrap();
    slack.ensure_membership(&channel).await.unwrap();
    let message = OutgoingMessage {
        content: PortableMessage {
            sender: Sender {
                platform: PlatformKind::Msteams,
                user: UserId::new("u").unwrap(),
                display_name: "Jane".into(),
                avatar_url: Some("https://a.test/j.png".into()),
                email: None,
            },
            text: RichText::plain("hello"),
            attachments: vec![Attachment {
                name: "f.txt".into(),
                url: "https://origin.test/f".into(),
                mime_type: None,
                size: None,
            }],
            thread_root: Some(MessageId::new("1.0").unwrap()),
        },
        marker: Some("m".into()),
        reply_to: Some(MessageId::new("1.0").unwrap()),
        broadcast: false,
        post_as: switchboard_core::PostingIdentity::ServiceAccount,
        files: vec![switchboard_core::OutgoingFile {
            attachment: Attachment {
                name: "f.txt".into(),
                url: "https://origin.test/f".into(),
                mime_type: None,
                size: None,
            },
            content: Some(switchboard_core::FileContent {
                name: "f.txt".into(),
                mime_type: None,
                bytes: b"data".to_vec(),
            }),
        }],
    };
    let posted = slack.post(&channel, &message).await.unwrap();
    slack
        .import_channel_members(&channel, &mut RecordingSink::default())
        .await
        .unwrap();
    slack
        .user_display_name(&UserId::new("U1").unwrap())
        .await
        .unwrap();
    use switchboard_core::History;
    slack
        .changes_since(
            &channel,
            &switchboard_core::HistoryStart::Time {
                since: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            },
            50,
        )
        .await
        .unwrap();
    let r = MessageRef {
        channel: channel.clone(),
        message: posted.reference.message.clone(),
        thread_root: None,
    };
    slack
        .edit(
            &r,
            &message,
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .unwrap();
    let emoji = Emoji::Custom {
        name: "tada".into(),
    };
    slack
        .react(
            &r,
            &emoji,
            switchboard_core::ReactionChange::Add,
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .unwrap();
    slack
        .react(
            &r,
            &emoji,
            switchboard_core::ReactionChange::Remove,
            &switchboard_core::PostingIdentity::ServiceAccount,
        )
        .await
        .unwrap();
    slack
        .delete(&r, &switchboard_core::PostingIdentity::ServiceAccount)
        .await
        .unwrap();
    let socket = SocketModeClient::new(client, SecretString::from("xapp-1"));
    socket.open_url().await.unwrap();
}

fn recorded_arguments(r: &Request) -> BTreeSet<String> {
    let mut args: BTreeSet<String> = r.url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    let content_type = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        let v: Value = serde_json::from_slice(&r.body).expect("JSON body");
        args.extend(v.as_object().expect("JSON object body").keys().cloned());
    } else if content_type.starts_with("application/x-www-form-urlencoded") && !r.body.is_empty() {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).expect("form body");
        args.extend(form.into_iter().map(|(k, _)| k));
    }
    args
}

#[tokio::test]
async fn every_method_and_argument_sent_is_in_the_spec_or_listed_as_newer() {
    let spec = spec();
    let paths = spec["paths"].as_object().expect("spec paths");
    // The exceptions are honest: none of them is in the spec.
    for (m, _) in NEWER_METHODS {
        assert!(
            !paths.contains_key(&format!("/{m}")),
            "{m} is in the spec after all"
        );
    }
    for (m, a, _) in NEWER_ARGUMENTS {
        let params = spec_params(paths, m).unwrap_or_else(|| panic!("{m} not in the spec"));
        assert!(!params.contains(*a), "{m}({a}) is in the spec after all");
    }

    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Canned { base: server.uri() })
        .mount(&server)
        .await;
    exercise_everything(&server).await;

    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in server.received_requests().await.unwrap() {
        let Some(method) = r.url.path().strip_prefix("/api/") else {
            assert_eq!(
                r.url.path(),
                "/upload/F1",
                "only the upload URL is outside the API"
            );
            continue;
        };
        seen.entry(method.to_owned())
            .or_default()
            .extend(recorded_arguments(&r));
    }
    let mut problems = Vec::new();
    for (method, args) in &seen {
        match spec_params(paths, method) {
            Some(params) => {
                for a in args {
                    let newer = NEWER_ARGUMENTS
                        .iter()
                        .any(|(m, x, _)| m == method && x == a);
                    if !params.contains(a.as_str()) && !newer {
                        problems.push(format!("{method}: argument `{a}` is not in the spec"));
                    }
                }
            }
            None => match NEWER_METHOD_ARGUMENTS.iter().find(|(m, _)| m == method) {
                Some((_, documented)) => {
                    for a in args {
                        if !documented.contains(&a.as_str()) {
                            problems.push(format!("{method}: argument `{a}` is not documented"));
                        }
                    }
                }
                None => problems.push(format!("method {method} is neither in the spec nor listed")),
            },
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // Everything the crate can call was exercised.
    let expected = [
        "apps.connections.open",
        "auth.test",
        "chat.delete",
        "chat.postMessage",
        "chat.update",
        "conversations.history",
        "conversations.join",
        "conversations.list",
        "conversations.members",
        "files.completeUploadExternal",
        "files.getUploadURLExternal",
        "files.info",
        "oauth.v2.access",
        "reactions.add",
        "reactions.remove",
        "team.info",
        "users.info",
        "users.list",
    ];
    let got: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(got, expected);
    // And the arguments that matter were among those checked.
    assert!(
        seen["chat.postMessage"].is_superset(
            &[
                "channel",
                "text",
                "username",
                "icon_url",
                "thread_ts",
                "metadata"
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
        )
    );
    assert!(seen["oauth.v2.access"].contains("grant_type"));
    assert!(seen["conversations.list"].contains("exclude_archived"));
    assert!(seen["conversations.history"].contains("include_all_metadata"));
}

fn spec_params<'a>(
    paths: &'a serde_json::Map<String, Value>,
    method: &str,
) -> Option<BTreeSet<&'a str>> {
    let ops = paths.get(&format!("/{method}"))?.as_object()?;
    Some(
        ops.values()
            .filter_map(|op| op.get("parameters")?.as_array())
            .flatten()
            .filter_map(|p| p.get("name")?.as_str())
            .collect(),
    )
}
