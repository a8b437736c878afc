//! [`SlackConnection`]: one installed workspace, implementing the core [`Platform`],
//! [`ServiceAccount`] and [`TeamImport`] traits over the Web API.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchboard_core::{
    AccessCheck, AccessReport, AccountIdentity, Attachment, Capabilities, Channel, ChannelId,
    ChannelKind, ChannelRef, CheckKind, ConnectionHealth, Credentials, Emoji, ImportCounts,
    ImportPhase, ImportSink, Membership, MembershipOutcome, MessageRef, OutgoingMessage, Platform,
    PlatformKind, PostedMessage, PostingIdentity, Progress, ReactionChange, ServiceAccount, Team,
    TeamId, TeamImport, TeamListSource, TeamListing, TenantId, User, UserId, VerifyOptions,
};
use tokio::sync::OnceCell;

use crate::client::{ApiResponse, Args, Auth, CallOptions, SlackClient};
use crate::config::{MARKER_EVENT_TYPE, SlackConfig};
use crate::emoji;
use crate::error::{Error, ErrorKind, Result, slack_api_error, slack_error_code};
use crate::events::OwnIdentity;
use crate::mrkdwn;
use crate::oauth::{Installation, SlackOAuth};
use crate::tokens::{RotationListener, TokenSource};
use crate::types::{
    AuthTest, ConversationObject, ConversationsList, ConversationsMembers, Empty, PostMessage,
    TeamInfo, UploadUrl, UserObject, UsersList,
};

/// Slack truncates message text longer than this many characters.
pub const MAX_SLACK_TEXT_CHARS: usize = 40_000;
/// Slack's longest `username` override.
const MAX_USERNAME_CHARS: usize = 80;

/// Fetches the bytes of an attachment from its origin platform (with that platform's
/// credentials), so [`SlackConnection::post`](Platform::post) can re-upload it to Slack.
/// Without one, attachments are posted as links.
#[async_trait]
pub trait AttachmentFetcher: Send + Sync {
    /// The file's content.
    async fn fetch(&self, attachment: &Attachment) -> Result<Vec<u8>>;
}

/// Tuning of a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionOptions {
    /// `limit` of paged calls (Slack advises at most 200).
    pub page_size: u32,
    /// Channels whose members are fetched concurrently during an import.
    pub member_concurrency: usize,
    /// The `metadata.event_type` put on everything posted.
    pub marker_event_type: String,
    /// The bot scopes the connection needs (checked by `verify`).
    pub required_scopes: Vec<String>,
    /// Our app id, when known (from the installation): its messages are our own.
    pub app_id: Option<String>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            page_size: 200,
            member_concurrency: 4,
            marker_event_type: MARKER_EVENT_TYPE.to_owned(),
            required_scopes: crate::config::BOT_SCOPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            app_id: None,
        }
    }
}

/// Who the bot token acts as (`auth.test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    /// The bot user (`U…`).
    pub user_id: UserId,
    /// The bot (`B…`); absent for a user token.
    pub bot_id: Option<String>,
    /// The bot user's name.
    pub name: String,
    /// The workspace.
    pub team_id: Option<String>,
    /// The workspace URL.
    pub url: Option<String>,
    /// The Enterprise Grid organization.
    pub enterprise_id: Option<String>,
}

/// One connected Slack workspace. Cheap to clone.
#[derive(Clone)]
pub struct SlackConnection {
    client: SlackClient,
    tokens: TokenSource,
    workspace: TeamId,
    enterprise: Option<TenantId>,
    options: ConnectionOptions,
    identity: Arc<OnceCell<BotIdentity>>,
    fetcher: Option<Arc<dyn AttachmentFetcher>>,
}

impl std::fmt::Debug for SlackConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConnection")
            .field("workspace", &self.workspace)
            .field("enterprise", &self.enterprise)
            .field("tokens", &self.tokens)
            .field("options", &self.options)
            .field("attachment_fetcher", &self.fetcher.is_some())
            .finish()
    }
}

fn outcome_ok<T>(r: Result<ApiResponse<T>>, benign: &[&str]) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if slack_error_code(&e).is_some_and(|c| benign.contains(&c)) => Ok(()),
        Err(e) => Err(e),
    }
}

impl SlackConnection {
    /// A connection to `workspace` with stored credentials. Rotating tokens are refreshed
    /// through the configured app.
    pub fn new(
        config: &SlackConfig,
        client: SlackClient,
        workspace: TeamId,
        credentials: Credentials,
    ) -> SlackConnection {
        let oauth = SlackOAuth::new(config, client.clone());
        SlackConnection {
            tokens: TokenSource::new(credentials, oauth, config.refresh_margin),
            client,
            workspace,
            enterprise: None,
            options: ConnectionOptions {
                required_scopes: config.bot_scopes.clone(),
                ..ConnectionOptions::default()
            },
            identity: Arc::new(OnceCell::new()),
            fetcher: None,
        }
    }

    /// A connection for a fresh installation (keeps the enterprise id and app id).
    pub fn from_installation(
        config: &SlackConfig,
        client: SlackClient,
        installation: &Installation,
    ) -> Result<SlackConnection> {
        let workspace = installation.team_id().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "an org-wide Enterprise Grid install has no single workspace: connect each workspace",
            )
        })?;
        let mut conn =
            SlackConnection::new(config, client, workspace, installation.credentials.clone());
        conn.enterprise = installation.enterprise_id();
        conn.options.app_id = installation.app_id.clone();
        Ok(conn)
    }

    /// Replaces the options (the required scopes default to the config's bot scopes).
    pub fn with_options(mut self, options: ConnectionOptions) -> SlackConnection {
        self.options = options;
        self
    }

    /// Keeps the Enterprise Grid organization the workspace belongs to.
    pub fn with_enterprise(mut self, enterprise: Option<TenantId>) -> SlackConnection {
        self.enterprise = enterprise;
        self
    }

    /// Re-uploads attachments fetched by `fetcher` instead of linking them.
    pub fn with_attachment_fetcher(
        mut self,
        fetcher: Arc<dyn AttachmentFetcher>,
    ) -> SlackConnection {
        self.fetcher = Some(fetcher);
        self
    }

    /// Reports token rotations to `listener` (persist them: the old refresh token dies).
    pub fn with_rotation_listener(self, listener: Arc<dyn RotationListener>) -> SlackConnection {
        self.tokens.set_listener(listener);
        self
    }

    /// The workspace.
    pub fn workspace(&self) -> &TeamId {
        &self.workspace
    }

    /// The Enterprise Grid organization, when known.
    pub fn enterprise(&self) -> Option<&TenantId> {
        self.enterprise.as_ref()
    }

    /// The Web API client (shared pacing).
    pub fn client(&self) -> &SlackClient {
        &self.client
    }

    /// The token source (current credentials, rotation).
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// The options.
    pub fn options(&self) -> &ConnectionOptions {
        &self.options
    }

    /// Calls a Web API method with the bot token, under the workspace's pacing. A rotating
    /// token that Slack rejects as expired is refreshed once and the call repeated.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        args: Args,
        channel: Option<&str>,
        idempotent: bool,
    ) -> Result<ApiResponse<T>> {
        let issued = self.tokens.issue().await?;
        let opts = CallOptions {
            workspace: Some(self.workspace.as_str()),
            channel,
            idempotent,
        };
        match self
            .client
            .call(method, Auth::Bearer(&issued.token), &args, opts)
            .await
        {
            Err(e)
                if issued.rotating
                    && matches!(slack_error_code(&e), Some("token_expired" | "invalid_auth")) =>
            {
                let fresh = self
                    .tokens
                    .refresh_after_rejection(issued.generation)
                    .await?;
                self.client
                    .call(method, Auth::Bearer(&fresh.token), &args, opts)
                    .await
            }
            other => other,
        }
    }

    async fn auth_test(&self) -> Result<(BotIdentity, Option<Vec<String>>)> {
        let r = self
            .call::<AuthTest>("auth.test", Args::None, None, true)
            .await?;
        let a = r.body;
        let identity = BotIdentity {
            user_id: UserId::new(&a.user_id)
                .map_err(|e| Error::upstream(format!("auth.test returned a bad user_id: {e}")))?,
            bot_id: a.bot_id,
            name: a.user.unwrap_or_else(|| a.user_id.clone()),
            team_id: a.team_id,
            url: a.url,
            enterprise_id: a.enterprise_id,
        };
        Ok((identity, r.scopes))
    }

    /// Who the token acts as (`auth.test`, cached after the first success).
    pub async fn bot_identity(&self) -> Result<BotIdentity> {
        self.identity
            .get_or_try_init(|| async { self.auth_test().await.map(|(i, _)| i) })
            .await
            .cloned()
    }

    /// Our identity for recognising our own posts in events.
    pub async fn own_identity(&self) -> Result<OwnIdentity> {
        let id = self.bot_identity().await?;
        Ok(OwnIdentity {
            bot_user_id: Some(id.user_id.into_string()),
            bot_id: id.bot_id,
            app_id: self.options.app_id.clone(),
            marker_event_type: self.options.marker_event_type.clone(),
        })
    }

    fn check_channel(&self, channel: &ChannelRef) -> Result<()> {
        if channel.platform != PlatformKind::Slack {
            return Err(Error::invalid(format!("{channel} is not a Slack channel")));
        }
        if channel.team != self.workspace {
            return Err(Error::invalid(format!(
                "{channel} is in workspace {}, but this connection is for {}",
                channel.team, self.workspace
            )));
        }
        Ok(())
    }

    /// Every member of one channel (`conversations.members`, all pages).
    pub async fn channel_members(&self, channel: &ChannelId) -> Result<Vec<UserId>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![
                ("channel", channel.to_string()),
                ("limit", self.options.page_size.to_string()),
            ];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self
                .call::<ConversationsMembers>("conversations.members", Args::Query(q), None, true)
                .await?
                .body;
            for m in page.members {
                out.push(
                    UserId::new(m)
                        .map_err(|e| Error::upstream(format!("bad member id from Slack: {e}")))?,
                );
            }
            match page.response_metadata.next() {
                Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_owned()),
                Some(_) => {
                    return Err(Error::upstream(
                        "conversations.members returned the same cursor twice",
                    ));
                }
                None => return Ok(out),
            }
        }
    }

    /// Uploads a file into a channel (`files.getUploadURLExternal`, the upload, then
    /// `files.completeUploadExternal`); `thread_ts` shares it in a thread. Returns the file id.
    pub async fn upload_file(
        &self,
        channel: &ChannelId,
        thread_ts: Option<&str>,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<String> {
        if filename.trim().is_empty() {
            return Err(Error::invalid("a file to upload needs a name"));
        }
        if bytes.is_empty() {
            return Err(Error::invalid(format!(
                "{filename} is empty: Slack refuses empty uploads"
            )));
        }
        let target = self
            .call::<UploadUrl>(
                "files.getUploadURLExternal",
                Args::Form(vec![
                    ("filename", filename.to_owned()),
                    ("length", bytes.len().to_string()),
                ]),
                None,
                false,
            )
            .await?
            .body;
        let url = url::Url::parse(&target.upload_url).map_err(|e| {
            Error::upstream(format!(
                "files.getUploadURLExternal returned a bad upload_url: {e}"
            ))
        })?;
        let resp = self
            .client
            .http()
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| {
                Error::upstream(format!(
                    "uploading {filename} to Slack failed: {}",
                    e.without_url()
                ))
            })?;
        if !resp.status().is_success() {
            return Err(Error::upstream(format!(
                "uploading {filename} to Slack failed: HTTP {}",
                resp.status()
            )));
        }
        let mut body = json!({
            "files": [{"id": target.file_id, "title": filename}],
            "channel_id": channel.as_str(),
        });
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        self.call::<Empty>(
            "files.completeUploadExternal",
            Args::Json(body),
            None,
            false,
        )
        .await?;
        Ok(target.file_id)
    }

    fn marker_metadata(&self, marker: Option<&str>) -> Value {
        let payload = match marker {
            Some(m) => json!({ "marker": m }),
            None => json!({}),
        };
        json!({ "event_type": self.options.marker_event_type, "event_payload": payload })
    }

    /// The text to send: mrkdwn, plus links for attachments that will not be uploaded.
    fn outgoing_text(&self, message: &OutgoingMessage, link_attachments: bool) -> String {
        let mut text = mrkdwn::to_mrkdwn(&message.content.text);
        if link_attachments {
            for a in &message.content.attachments {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&attachment_link(a));
            }
        }
        truncate_chars(text, MAX_SLACK_TEXT_CHARS)
    }

    async fn post_text(
        &self,
        channel: &ChannelRef,
        text: &str,
        message: &OutgoingMessage,
    ) -> Result<String> {
        let sender = &message.content.sender;
        let mut body = json!({
            "channel": channel.channel.as_str(),
            "text": text,
            "metadata": self.marker_metadata(message.marker.as_deref()),
        });
        let name = truncate_chars(sender.display_name.trim().to_owned(), MAX_USERNAME_CHARS);
        if !name.is_empty() {
            body["username"] = json!(name);
        }
        if let Some(icon) = sender
            .avatar_url
            .as_deref()
            .filter(|u| u.starts_with("http"))
        {
            body["icon_url"] = json!(icon);
        }
        if let Some(root) = &message.content.thread_root {
            body["thread_ts"] = json!(root.as_str());
        }
        let attempt = self
            .call::<PostMessage>(
                "chat.postMessage",
                Args::Json(body.clone()),
                Some(channel.channel.as_str()),
                false,
            )
            .await;
        let posted = match attempt {
            Err(e)
                if slack_api_error(&e).is_some_and(|d| {
                    d.code == "missing_scope"
                        && d.needed
                            .as_deref()
                            .is_some_and(|n| n.contains("chat:write.customize"))
                }) =>
            {
                // Without chat:write.customize the sender's name goes into the text.
                tracing::warn!("chat:write.customize not granted: attributing in the text instead");
                let obj = body.as_object_mut().expect("json object");
                obj.remove("username");
                obj.remove("icon_url");
                let prefixed = if name.is_empty() {
                    text.to_owned()
                } else {
                    format!("*{}*: {text}", mrkdwn::escape(&name))
                };
                obj.insert(
                    "text".into(),
                    json!(truncate_chars(prefixed, MAX_SLACK_TEXT_CHARS)),
                );
                self.call::<PostMessage>(
                    "chat.postMessage",
                    Args::Json(body),
                    Some(channel.channel.as_str()),
                    false,
                )
                .await?
            }
            other => other?,
        };
        Ok(posted.body.ts)
    }
}

fn attachment_link(a: &Attachment) -> String {
    let url = mrkdwn::escape(&a.url).replace('|', "%7C");
    format!("📎 <{url}|{}>", mrkdwn::escape(&a.name))
}

fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((idx, _)) = s.char_indices().nth(max) {
        s.truncate(idx);
        // Leave room for the ellipsis.
        if let Some((cut, _)) = s.char_indices().nth_back(0) {
            s.truncate(cut);
        }
        s.push('…');
    }
    s
}

fn to_channel(team: &TeamId, c: ConversationObject) -> Result<Channel> {
    let kind = if c.is_ext_shared || c.is_shared || c.is_org_shared {
        ChannelKind::Shared
    } else if c.is_private {
        ChannelKind::Private
    } else {
        ChannelKind::Standard
    };
    let description = c
        .purpose
        .map(|p| p.value)
        .filter(|v| !v.trim().is_empty())
        .or_else(|| c.topic.map(|t| t.value).filter(|v| !v.trim().is_empty()));
    Ok(Channel {
        id: ChannelId::new(&c.id)
            .map_err(|e| Error::upstream(format!("bad channel id from Slack: {e}")))?,
        team: team.clone(),
        name: c.name.unwrap_or_else(|| c.id.clone()),
        kind,
        description,
    })
}

fn to_user(u: UserObject) -> Result<User> {
    let pick = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let display_name = pick(&u.profile.display_name)
        .or_else(|| pick(&u.profile.real_name))
        .or_else(|| pick(&u.real_name))
        .or_else(|| pick(&u.name))
        .unwrap_or_else(|| u.id.clone());
    Ok(User {
        id: UserId::new(&u.id)
            .map_err(|e| Error::upstream(format!("bad user id from Slack: {e}")))?,
        display_name,
        email: pick(&u.profile.email),
        avatar_url: pick(&u.profile.image_72).or_else(|| pick(&u.profile.image_192)),
        is_guest: u.is_restricted || u.is_ultra_restricted,
        is_bot: u.is_bot || u.id == "USLACKBOT",
        is_deleted: u.deleted,
    })
}

#[async_trait]
impl Platform for SlackConnection {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Slack
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            reactions: true,
            edits: true,
            deletes: true,
            file_upload: self.fetcher.is_some(),
            sender_attribution: true,
        }
    }

    async fn identity(&self) -> Result<AccountIdentity> {
        let id = self.bot_identity().await?;
        Ok(AccountIdentity {
            is_service_account: id.bot_id.is_some(),
            display_name: id.name,
            user_id: id.user_id,
        })
    }

    async fn post(&self, channel: &ChannelRef, message: &OutgoingMessage) -> Result<PostedMessage> {
        self.check_channel(channel)?;
        let attachments = &message.content.attachments;
        let upload = self.fetcher.is_some() && !attachments.is_empty();
        let mut text = self.outgoing_text(message, !upload);
        if text.trim().is_empty() {
            if !upload {
                return Err(Error::invalid(
                    "nothing to post: the message has no text and no files",
                ));
            }
            text = attachments
                .iter()
                .map(|a| format!("📎 {}", mrkdwn::escape(&a.name)))
                .collect::<Vec<_>>()
                .join("\n");
        }
        let ts = self.post_text(channel, &text, message).await?;
        if upload && let Some(fetcher) = &self.fetcher {
            let thread = message.reply_to.as_ref().map(|r| r.as_str());
            for a in attachments {
                let uploaded = match fetcher.fetch(a).await {
                    Ok(bytes) => self
                        .upload_file(&channel.channel, thread, &a.name, bytes)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = uploaded {
                    // Never drop a file silently: link it instead.
                    tracing::warn!(file = %a.name, error = %e, "re-upload to Slack failed; posting a link");
                    let link = OutgoingMessage {
                        content: switchboard_core::PortableMessage {
                            attachments: vec![],
                            text: switchboard_core::RichText::default(),
                            ..message.content.clone()
                        },
                        files: Vec::new(),
                        ..message.clone()
                    };
                    self.post_text(channel, &attachment_link(a), &link).await?;
                }
            }
        }
        Ok(PostedMessage {
            reference: MessageRef {
                channel: channel.clone(),
                message: switchboard_core::MessageId::new(ts).map_err(|e| {
                    Error::upstream(format!("chat.postMessage returned a bad ts: {e}"))
                })?,
                thread_root: message.reply_to.clone(),
            },
            extra_parts: Vec::new(),
            posted_by: PostingIdentity::ServiceAccount,
        })
    }

    async fn edit(
        &self,
        message: &MessageRef,
        content: &OutgoingMessage,
        _posted_by: &PostingIdentity,
    ) -> Result<()> {
        self.check_channel(&message.channel)?;
        let text = self.outgoing_text(content, self.fetcher.is_none());
        if text.trim().is_empty() {
            return Err(Error::invalid("an edit needs text"));
        }
        let body = json!({
            "channel": message.channel.channel.as_str(),
            "ts": message.message.as_str(),
            "text": text,
            "metadata": self.marker_metadata(content.marker.as_deref()),
        });
        self.call::<Empty>("chat.update", Args::Json(body), None, false)
            .await
            .map(|_| ())
    }

    async fn delete(&self, message: &MessageRef, _posted_by: &PostingIdentity) -> Result<()> {
        self.check_channel(&message.channel)?;
        let body = json!({
            "channel": message.channel.channel.as_str(),
            "ts": message.message.as_str(),
        });
        outcome_ok(
            self.call::<Empty>("chat.delete", Args::Json(body), None, false)
                .await,
            &["message_not_found"],
        )
    }

    async fn react(
        &self,
        message: &MessageRef,
        emoji: &Emoji,
        change: ReactionChange,
        _identity: &PostingIdentity,
    ) -> Result<()> {
        let add = change == ReactionChange::Add;
        self.check_channel(&message.channel)?;
        let name = emoji::to_slack_name(emoji)?;
        let body = json!({
            "channel": message.channel.channel.as_str(),
            "timestamp": message.message.as_str(),
            "name": name,
        });
        if add {
            outcome_ok(
                self.call::<Empty>("reactions.add", Args::Json(body), None, false)
                    .await,
                &["already_reacted"],
            )
        } else {
            outcome_ok(
                self.call::<Empty>("reactions.remove", Args::Json(body), None, false)
                    .await,
                &["no_reaction"],
            )
        }
    }

    async fn fetch_attachment(
        &self,
        attachment: &switchboard_core::Attachment,
        max_bytes: u64,
    ) -> Result<switchboard_core::FileContent> {
        let fetcher = self.fetcher.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "no attachment fetcher is configured for this Slack connection",
            )
        })?;
        let bytes = fetcher.fetch(attachment).await?;
        if bytes.len() as u64 > max_bytes {
            return Err(Error::invalid(format!(
                "{:?} is {} bytes, more than the {max_bytes} allowed",
                attachment.name,
                bytes.len()
            )));
        }
        Ok(switchboard_core::FileContent {
            name: attachment.name.clone(),
            mime_type: attachment.mime_type.clone(),
            bytes,
        })
    }

    async fn health(&self) -> Result<ConnectionHealth> {
        if self.tokens.needs_reauth() {
            return Ok(ConnectionHealth::NeedsReauth);
        }
        match self.auth_test().await {
            Ok((_, scopes)) => {
                let granted = match scopes {
                    Some(s) => s,
                    None => self.tokens.credentials().await.scopes,
                };
                let missing = !granted.is_empty()
                    && self
                        .options
                        .required_scopes
                        .iter()
                        .any(|s| !granted.contains(s));
                Ok(if missing {
                    ConnectionHealth::MissingScopes
                } else {
                    ConnectionHealth::Ok
                })
            }
            Err(e) => Ok(match e.kind() {
                ErrorKind::NeedsReauth | ErrorKind::Unauthorized => ConnectionHealth::NeedsReauth,
                _ => ConnectionHealth::Degraded,
            }),
        }
    }
}

#[async_trait]
impl ServiceAccount for SlackConnection {
    async fn verify(&self, _options: VerifyOptions) -> Result<AccessReport> {
        let (identity, header_scopes) = self.auth_test().await?;
        let _ = self.identity.set(identity.clone());
        let (granted, source) = match header_scopes {
            Some(s) => (s, "X-OAuth-Scopes"),
            None => (self.tokens.credentials().await.scopes, "the OAuth grant"),
        };
        let mut checks = vec![AccessCheck {
            kind: CheckKind::Token,
            name: "bot token".into(),
            ok: identity.bot_id.is_some(),
            fix: identity.bot_id.is_none().then(|| {
                "this is not a bot token: connect Slack again so the app installs its bot user (xoxb- token)".to_owned()
            }),
        }];
        for scope in &self.options.required_scopes {
            let ok = granted.iter().any(|g| g == scope);
            checks.push(AccessCheck {
                kind: CheckKind::Scope,
                name: format!("scope {scope}"),
                ok,
                fix: (!ok).then(|| {
                    if granted.is_empty() {
                        format!(
                            "Slack did not report the token's scopes ({source}): reinstall the app with the bot scope `{scope}`"
                        )
                    } else {
                        format!(
                            "add the bot token scope `{scope}` under OAuth & Permissions in the Slack app settings, then reinstall the app (Connect with Slack again)"
                        )
                    }
                }),
            });
        }
        Ok(AccessReport {
            account: AccountIdentity {
                is_service_account: identity.bot_id.is_some(),
                display_name: identity.name,
                user_id: identity.user_id,
            },
            checks,
        })
    }

    async fn ensure_membership(&self, channel: &ChannelRef) -> Result<MembershipOutcome> {
        self.check_channel(channel)?;
        let result = self
            .call::<Empty>(
                "conversations.join",
                Args::Json(json!({ "channel": channel.channel.as_str() })),
                None,
                true,
            )
            .await;
        match result {
            Ok(r)
                if r.warning
                    .as_deref()
                    .is_some_and(|w| w.contains("already_in_channel")) =>
            {
                Ok(MembershipOutcome::AlreadyMember)
            }
            Ok(_) => Ok(MembershipOutcome::Added),
            Err(e) => match slack_error_code(&e) {
                Some("already_in_channel") => Ok(MembershipOutcome::AlreadyMember),
                Some("method_not_supported_for_channel_type" | "channel_not_found") => {
                    let bot = self
                        .bot_identity()
                        .await
                        .map(|b| b.name)
                        .unwrap_or_else(|_| "the Switchboard bot".into());
                    Ok(MembershipOutcome::ActionRequired {
                        fix: format!(
                            "{} is a private channel (or not visible to the bot): bots cannot join private channels themselves; a member must run `/invite @{bot}` in it",
                            channel.channel
                        ),
                    })
                }
                Some("is_archived") => Ok(MembershipOutcome::ActionRequired {
                    fix: format!(
                        "{} is archived: unarchive it in Slack or unlink it",
                        channel.channel
                    ),
                }),
                _ => Err(e),
            },
        }
    }

    async fn refresh_credentials(&self) -> Result<Credentials> {
        self.tokens.refresh_now().await
    }
}

#[async_trait]
impl TeamImport for SlackConnection {
    async fn list_teams(&self) -> Result<TeamListing> {
        let info = self
            .call::<TeamInfo>(
                "team.info",
                Args::Query(vec![("team", self.workspace.to_string())]),
                None,
                true,
            )
            .await?
            .body
            .team;
        Ok(TeamListing {
            teams: vec![Team {
                id: TeamId::new(&info.id)
                    .map_err(|e| Error::upstream(format!("team.info returned a bad id: {e}")))?,
                name: info.name.unwrap_or_else(|| info.id.clone()),
                description: info.domain.map(|d| format!("{d}.slack.com")),
            }],
            source: TeamListSource::TenantWide,
        })
    }

    async fn import_team(&self, team: &TeamId, sink: &mut dyn ImportSink) -> Result<ImportCounts> {
        if *team != self.workspace {
            return Err(Error::not_found(format!(
                "workspace {team} is not reachable through this connection (it is for {})",
                self.workspace
            )));
        }
        let mut counts = ImportCounts::default();
        // Channels: public and private, archived excluded, every page.
        let mut channel_ids: Vec<ChannelId> = Vec::new();
        let mut seen_channels: HashSet<String> = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![
                ("types", "public_channel,private_channel".to_owned()),
                ("exclude_archived", "true".to_owned()),
                ("limit", self.options.page_size.to_string()),
            ];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self
                .call::<ConversationsList>("conversations.list", Args::Query(q), None, true)
                .await?
                .body;
            let mut channels = Vec::with_capacity(page.channels.len());
            for c in page.channels {
                if c.is_archived || !seen_channels.insert(c.id.clone()) {
                    continue;
                }
                let channel = to_channel(team, c)?;
                channel_ids.push(channel.id.clone());
                channels.push(channel);
            }
            counts.channels += channels.len() as u64;
            if !channels.is_empty() {
                sink.channels(team, channels).await?;
            }
            sink.progress(Progress {
                phase: ImportPhase::Channels,
                done: counts.channels,
                estimated_total: None,
            })
            .await?;
            match page.response_metadata.next() {
                Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_owned()),
                Some(_) => {
                    return Err(Error::upstream(
                        "conversations.list returned the same cursor twice",
                    ));
                }
                None => break,
            }
        }
        drop(seen_channels);
        // Members: each channel's members, each workspace member delivered once.
        let total_channels = channel_ids.len() as u64;
        let mut seen_users: HashSet<UserId> = HashSet::new();
        let concurrency = self.options.member_concurrency.max(1);
        let mut results =
            futures::stream::iter(channel_ids.into_iter().map(|channel| async move {
                let r = self.channel_members(&channel).await;
                (channel, r)
            }))
            .buffered(concurrency);
        let mut channels_done = 0u64;
        while let Some((channel, result)) = results.next().await {
            channels_done += 1;
            let members = match result {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    tracing::info!(%channel, "channel vanished during the import; skipped");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let page: Vec<Membership> = members
                .into_iter()
                .filter(|u| seen_users.insert(u.clone()))
                .map(|user| Membership {
                    team: team.clone(),
                    user,
                    is_owner: false,
                })
                .collect();
            counts.members += page.len() as u64;
            if !page.is_empty() {
                sink.members(team, page).await?;
            }
            sink.progress(Progress {
                phase: ImportPhase::Members,
                done: counts.members,
                estimated_total: None,
            })
            .await?;
            tracing::trace!(channels_done, total_channels, "members imported");
        }
        Ok(counts)
    }

    async fn import_users(&self, sink: &mut dyn ImportSink) -> Result<ImportCounts> {
        let mut counts = ImportCounts::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![("limit", self.options.page_size.to_string())];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self
                .call::<UsersList>("users.list", Args::Query(q), None, true)
                .await?
                .body;
            let mut users = Vec::with_capacity(page.members.len());
            for u in page.members {
                if !seen.insert(u.id.clone()) {
                    continue;
                }
                users.push(to_user(u)?);
            }
            counts.users += users.len() as u64;
            if !users.is_empty() {
                sink.users(users).await?;
            }
            sink.progress(Progress {
                phase: ImportPhase::Users,
                done: counts.users,
                estimated_total: None,
            })
            .await?;
            match page.response_metadata.next() {
                Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_owned()),
                Some(_) => {
                    return Err(Error::upstream("users.list returned the same cursor twice"));
                }
                None => return Ok(counts),
            }
        }
    }
}
