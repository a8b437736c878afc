//! [`SlackConnection`]: one installed workspace, implementing the core [`Platform`],
//! [`ServiceAccount`] and [`TeamImport`] traits over the Web API.
//!
//! Attribution (who a relayed message is from):
//! - With `chat:write.customize` granted, posts carry the sender's name and avatar as
//!   `username` / `icon_url`. Without it Slack silently ignores both, so the connection
//!   decides from the granted scopes (`X-OAuth-Scopes` of `auth.test`, else the stored grant)
//!   before posting and then starts the text with `*Sender Name*: `.
//! - `chat.update` takes no `username` / `icon_url`: an edited message shows the app's own
//!   name afterwards. Every edit therefore starts its text with `*Sender Name*: `, whatever
//!   the scopes, so an edited relayed message still names its sender.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchboard_core::{
    AccessCheck, AccessReport, AccountIdentity, Attachment, Capabilities, Channel, ChannelId,
    ChannelKind, ChannelRef, CheckKind, ConnectionHealth, Credentials, CredentialsSink, Emoji,
    EventKind, ImportCounts, ImportPhase, ImportSink, MembershipOutcome, MessageId, MessageRef,
    OutgoingFile, OutgoingMessage, Platform, PlatformEvent, PlatformKind, PostedMessage,
    PostingIdentity, Progress, ReactionChange, ServiceAccount, Team, TeamId, TeamImport,
    TeamListSource, TeamListing, TenantId, User, UserId, VerifyOptions,
};
use tokio::sync::OnceCell;

use crate::client::{ApiResponse, Args, Auth, CallOptions, SlackClient};
use crate::config::{MARKER_EVENT_TYPE, SlackConfig};
use crate::emoji;
use crate::error::{Error, ErrorKind, Result, slack_error_code};
use crate::events::OwnIdentity;
use crate::mrkdwn;
use crate::oauth::{Installation, SlackOAuth};
use crate::tokens::TokenSource;
use crate::types::{
    AuthTest, ConversationObject, ConversationsList, ConversationsMembers, Empty, FilesInfo,
    PostMessage, TeamInfo, UploadUrl, UserObject, UsersInfo, UsersList,
};

/// Slack truncates message text longer than this many characters.
pub const MAX_SLACK_TEXT_CHARS: usize = 40_000;
/// Slack's longest `username` override.
const MAX_USERNAME_CHARS: usize = 80;

/// The scope that lets posts carry another sender's name and avatar.
pub const CUSTOMIZE_SCOPE: &str = "chat:write.customize";
/// The URL scheme of a Slack file known by id only (Slack Connect delivers
/// `{id, file_access:"check_file_info"}`): `slack-file:F0123`. [`Platform::fetch_attachment`]
/// reads such a file's URL with `files.info` first.
pub const FILE_ID_SCHEME: &str = "slack-file:";
/// Names kept by the `users.info` cache of a connection before it starts over.
const NAME_CACHE_MAX: usize = 10_000;

/// Tuning of a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionOptions {
    /// `limit` of `conversations.list` (Slack: under 1000).
    pub channel_page_size: u32,
    /// `limit` of `users.list` (Slack: no larger than 1000).
    pub user_page_size: u32,
    /// `limit` of `conversations.members` (Slack: at most 999).
    pub member_page_size: u32,
    /// `limit` of `conversations.history` / `conversations.replies` (capped by the app's
    /// [`Distribution`](crate::config::Distribution): 999, or 15 for non-Marketplace apps).
    pub history_page_size: u32,
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
            channel_page_size: 999,
            user_page_size: 1000,
            member_page_size: 999,
            history_page_size: 200,
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
    /// The granted scopes, read once (`X-OAuth-Scopes`, else the stored grant).
    scopes: Arc<OnceCell<Vec<String>>>,
    /// `users.info` answers: user id → (display name, avatar, email).
    names: Arc<Mutex<HashMap<String, CachedUser>>>,
    history_page_max: u32,
}

#[derive(Debug, Clone)]
struct CachedUser {
    display_name: String,
    avatar_url: Option<String>,
    email: Option<String>,
}

impl std::fmt::Debug for SlackConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConnection")
            .field("workspace", &self.workspace)
            .field("enterprise", &self.enterprise)
            .field("tokens", &self.tokens)
            .field("options", &self.options)
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
            scopes: Arc::new(OnceCell::new()),
            names: Arc::new(Mutex::new(HashMap::new())),
            history_page_max: config.distribution.history_page_max(),
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

    /// Hands every token rotation to `sink` (persist it: the old refresh token dies).
    pub fn with_credentials_sink(self, sink: Arc<dyn CredentialsSink>) -> SlackConnection {
        self.tokens.set_sink(sink);
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

    /// The largest history page the app's distribution allows.
    pub fn history_page_max(&self) -> u32 {
        self.history_page_max
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

    /// The scopes granted to the bot token: `X-OAuth-Scopes` of `auth.test` (read once per
    /// connection), else those of the stored grant.
    pub async fn granted_scopes(&self) -> Result<Vec<String>> {
        if let Some(s) = self.scopes.get() {
            return Ok(s.clone());
        }
        match self.auth_test().await {
            Ok((identity, header)) => {
                let _ = self.identity.set(identity);
                let scopes = match header {
                    Some(s) if !s.is_empty() => s,
                    _ => self.tokens.credentials().await.scopes,
                };
                let _ = self.scopes.set(scopes.clone());
                Ok(scopes)
            }
            Err(e) => {
                let stored = self.tokens.credentials().await.scopes;
                if stored.is_empty() {
                    Err(e)
                } else {
                    Ok(stored)
                }
            }
        }
    }

    /// Whether posts can carry another sender's name and avatar (`chat:write.customize` is
    /// granted). Slack ignores `username` / `icon_url` silently without it, so this is
    /// decided before posting; when the scopes cannot be read, the answer is `false` (the
    /// name then goes into the text, which is always visible).
    pub async fn can_customize(&self) -> bool {
        match self.granted_scopes().await {
            Ok(scopes) => scopes.iter().any(|s| s == CUSTOMIZE_SCOPE),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the granted Slack scopes; attributing in the text");
                false
            }
        }
    }

    async fn cached_user(&self, user: &str) -> Result<CachedUser> {
        if let Some(u) = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
        {
            return Ok(u.clone());
        }
        let found = self
            .call::<UsersInfo>(
                "users.info",
                Args::Query(vec![("user", user.to_owned())]),
                None,
                true,
            )
            .await;
        let cached = match found {
            Ok(r) => {
                let u = to_user(r.body.user)?;
                CachedUser {
                    display_name: u.display_name,
                    avatar_url: u.avatar_url,
                    email: u.email,
                }
            }
            Err(e) if slack_error_code(&e) == Some("user_not_found") => CachedUser {
                display_name: "a Slack user".to_owned(),
                avatar_url: None,
                email: None,
            },
            Err(e) => return Err(e),
        };
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.len() >= NAME_CACHE_MAX {
            names.clear();
        }
        names.insert(user.to_owned(), cached.clone());
        Ok(cached)
    }

    /// The name to show for Slack user `user` (`users.info`, tier 4, cached in the
    /// connection): the profile's display name, else the real name, else the handle.
    pub async fn user_display_name(&self, user: &UserId) -> Result<String> {
        Ok(self.cached_user(user.as_str()).await?.display_name)
    }

    /// Fills in the sender of a posted or edited message that arrived without a name
    /// (Slack's message events carry the user's id only): display name, avatar and email
    /// from `users.info`, cached. Senders that already have a name (bot posts with
    /// `username`) are left alone. Called off the acknowledgement path (the receivers make
    /// no API calls).
    pub async fn resolve_sender(&self, event: &mut PlatformEvent) -> Result<()> {
        let content = match &mut event.kind {
            EventKind::Posted { content, .. } | EventKind::Edited { content, .. } => content,
            _ => return Ok(()),
        };
        let sender = &mut content.sender;
        if sender.platform != PlatformKind::Slack
            || !(sender.display_name.trim().is_empty()
                || sender.display_name == sender.user.as_str())
        {
            return Ok(());
        }
        let u = self.cached_user(sender.user.as_str()).await?;
        sender.display_name = u.display_name;
        if sender.avatar_url.is_none() {
            sender.avatar_url = u.avatar_url;
        }
        if sender.email.is_none() {
            sender.email = u.email;
        }
        Ok(())
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
                ("limit", self.options.member_page_size.to_string()),
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
        bytes: &[u8],
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
            .body(bytes.to_vec())
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

    /// The text to send: mrkdwn, then a link for every file that is not uploaded
    /// (`upload`: the files whose bytes will be uploaded instead), then `attribute` puts the
    /// sender's name first.
    fn outgoing_text(
        &self,
        message: &OutgoingMessage,
        upload: &[&OutgoingFile],
        attribute: bool,
    ) -> String {
        let mut text = mrkdwn::to_mrkdwn(&message.content.text);
        let uploaded: HashSet<&str> = upload.iter().map(|f| f.attachment.url.as_str()).collect();
        let carried: HashSet<&str> = message
            .files
            .iter()
            .map(|f| f.attachment.url.as_str())
            .collect();
        let linked = message
            .files
            .iter()
            .map(|f| &f.attachment)
            .filter(|a| !uploaded.contains(a.url.as_str()))
            .chain(
                message
                    .content
                    .attachments
                    .iter()
                    .filter(|a| !carried.contains(a.url.as_str())),
            );
        for a in linked {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&attachment_link(a));
        }
        if text.trim().is_empty() && !upload.is_empty() {
            text = upload
                .iter()
                .map(|f| format!("📎 {}", mrkdwn::escape(&f.attachment.name)))
                .collect::<Vec<_>>()
                .join("\n");
        }
        if attribute && !text.trim().is_empty() {
            text = attributed(&message.content.sender.display_name, &text);
        }
        truncate_chars(text, MAX_SLACK_TEXT_CHARS)
    }

    async fn post_text(
        &self,
        channel: &ChannelRef,
        text: &str,
        message: &OutgoingMessage,
        customize: bool,
    ) -> Result<String> {
        let sender = &message.content.sender;
        let mut body = json!({
            "channel": channel.channel.as_str(),
            "text": text,
            "metadata": self.marker_metadata(message.marker.as_deref()),
        });
        if customize {
            let name = truncate_chars(sender.display_name.trim().to_owned(), MAX_USERNAME_CHARS);
            if !name.is_empty() {
                body["username"] = json!(name);
            }
            if let Some(icon) = sender
                .avatar_url
                .as_deref()
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            {
                body["icon_url"] = json!(icon);
            }
        }
        // The thread on the *target*: `content.thread_root` is the origin's.
        if let Some(root) = &message.reply_to {
            body["thread_ts"] = json!(root.as_str());
            if message.broadcast {
                body["reply_broadcast"] = json!(true);
            }
        }
        let posted = self
            .call::<PostMessage>(
                "chat.postMessage",
                Args::Json(body),
                Some(channel.channel.as_str()),
                false,
            )
            .await?;
        Ok(posted.body.ts)
    }

    fn message_ref(
        &self,
        channel: &ChannelRef,
        ts: String,
        root: Option<&MessageId>,
        what: &str,
    ) -> Result<MessageRef> {
        Ok(MessageRef {
            channel: channel.clone(),
            message: MessageId::new(ts)
                .map_err(|e| Error::upstream(format!("{what} returned a bad ts: {e}")))?,
            thread_root: root.cloned(),
        })
    }

    /// The `ts` of the message that shared `file_id` in `channel` (`files.info` `shares`).
    async fn file_share_ts(&self, file_id: &str, channel: &ChannelId) -> Result<Option<String>> {
        let info = self
            .call::<FilesInfo>(
                "files.info",
                Args::Query(vec![("file", file_id.to_owned())]),
                None,
                true,
            )
            .await?
            .body
            .file;
        Ok(info
            .shares
            .values()
            .filter_map(|by_channel| by_channel.get(channel.as_str()))
            .flatten()
            .map(|s| s.ts.clone())
            .max_by(|a, b| ts_order(a, b)))
    }

    /// Checks that a file URL is Slack's (the bot token goes nowhere else): the Web API's
    /// own host (the sandbox, a proxy) or `https://*.slack.com`.
    fn file_url(&self, raw: &str) -> Result<url::Url> {
        let url = url::Url::parse(raw)
            .map_err(|e| Error::invalid(format!("the attachment URL is not a URL: {e}")))?;
        let api = self.client.api_base();
        let same_origin = url.scheme() == api.scheme()
            && url.host_str() == api.host_str()
            && url.port_or_known_default() == api.port_or_known_default();
        let slack_host = url.scheme() == "https"
            && url
                .host_str()
                .is_some_and(|h| h == "slack.com" || h.ends_with(".slack.com"));
        if same_origin || slack_host {
            Ok(url)
        } else {
            Err(Error::invalid(format!(
                "refusing to send the Slack bot token to {}: not a Slack file URL",
                url.host_str().unwrap_or("(no host)")
            )))
        }
    }

    /// Downloads `url` with the bot token, refusing more than `max_bytes`.
    async fn download(&self, url: url::Url, name: &str, max_bytes: u64) -> Result<Vec<u8>> {
        use secrecy::ExposeSecret;
        let token = self.tokens.access_token().await?;
        let mut resp = self
            .client
            .http()
            .get(url)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| {
                Error::upstream(format!(
                    "downloading {name:?} from Slack failed: {}",
                    e.without_url()
                ))
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::not_found(format!("{name:?} is no longer on Slack")));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "Slack refused the download of {name:?} (HTTP {status}): the bot needs files:read and access to the channel"
                ),
            ));
        }
        if !status.is_success() {
            return Err(Error::upstream(format!(
                "downloading {name:?} from Slack failed: HTTP {status}"
            )));
        }
        // Slack answers a token without access with its sign-in page, not an error.
        let html = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if html
            && !name.to_ascii_lowercase().ends_with(".html")
            && !name.to_ascii_lowercase().ends_with(".htm")
        {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "Slack answered the download of {name:?} with a web page (no access): the bot needs files:read"
                ),
            ));
        }
        let too_large = || {
            Error::invalid(format!(
                "{name:?} is larger than the {max_bytes} bytes allowed"
            ))
        };
        if resp.content_length().is_some_and(|n| n > max_bytes) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            Error::upstream(format!(
                "downloading {name:?} from Slack failed: {}",
                e.without_url()
            ))
        })? {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// Orders Slack timestamps (`seconds.micros`) numerically.
pub(crate) fn ts_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |t: &str| {
        let (s, f) = t.split_once('.').unwrap_or((t, ""));
        (s.parse::<u64>().unwrap_or(0), format!("{f:0<6}"))
    };
    key(a).cmp(&key(b))
}

/// `*Sender Name*: text` (the name on its own first line when the text starts with a block
/// that needs the start of a line: a code block, a quote or a list).
fn attributed(display_name: &str, text: &str) -> String {
    let name: String = display_name.trim().chars().filter(|c| *c != '*').collect();
    let name = truncate_chars(name, MAX_USERNAME_CHARS);
    if name.trim().is_empty() {
        return text.to_owned();
    }
    let name = mrkdwn::escape(name.trim());
    let block_start = ["```", ">", "&gt;", "• ", "- ", "1. "]
        .iter()
        .any(|p| text.starts_with(p));
    if block_start {
        format!("*{name}*:\n{text}")
    } else {
        format!("*{name}*: {text}")
    }
}

fn attachment_link(a: &Attachment) -> String {
    let scheme_ok = ["https://", "http://"].iter().any(|p| {
        a.url
            .get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    });
    let name = mrkdwn::escape(&a.name).replace(['|', '>'], " ");
    if !scheme_ok || a.url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // Never a link Slack would follow somewhere unexpected: the name alone.
        return format!("📎 {name}");
    }
    let url = mrkdwn::escape(&a.url).replace('|', "%7C");
    format!("📎 <{url}|{name}>")
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
            file_upload: true,
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
        let upload: Vec<&OutgoingFile> = message
            .files
            .iter()
            .filter(|f| f.content.as_ref().is_some_and(|c| !c.bytes.is_empty()))
            .collect();
        let customize = self.can_customize().await;
        let text = self.outgoing_text(message, &upload, !customize);
        if text.trim().is_empty() {
            return Err(Error::invalid(
                "nothing to post: the message has no text and no files",
            ));
        }
        let ts = self.post_text(channel, &text, message, customize).await?;
        let root = message.reply_to.as_ref();
        let reference = self.message_ref(channel, ts, root, "chat.postMessage")?;
        let mut extra_parts = Vec::new();
        let thread = root.map(MessageId::as_str);
        for f in upload {
            let Some(content) = &f.content else { continue };
            let name = if content.name.trim().is_empty() {
                &f.attachment.name
            } else {
                &content.name
            };
            match self
                .upload_file(&channel.channel, thread, name, &content.bytes)
                .await
            {
                Ok(file_id) => match self.file_share_ts(&file_id, &channel.channel).await {
                    Ok(Some(ts)) => {
                        extra_parts.push(self.message_ref(channel, ts, root, "files.info")?)
                    }
                    Ok(None) => {
                        tracing::warn!(file = %name, "the uploaded file's message was not found; its edits and deletes will not reach it")
                    }
                    Err(e) => {
                        tracing::warn!(file = %name, error = %e, "could not read where the uploaded file was shared")
                    }
                },
                Err(e) => {
                    // Never drop a file: link it instead.
                    tracing::warn!(file = %name, error = %e, "upload to Slack failed; posting a link");
                    let mut link = attachment_link(&f.attachment);
                    if !customize {
                        link = attributed(&message.content.sender.display_name, &link);
                    }
                    let ts = self.post_text(channel, &link, message, customize).await?;
                    extra_parts.push(self.message_ref(channel, ts, root, "chat.postMessage")?);
                }
            }
        }
        Ok(PostedMessage {
            reference,
            extra_parts,
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
        // chat.update cannot carry username/icon_url: the name always goes into the text.
        let text = self.outgoing_text(content, &[], true);
        if text.trim().is_empty() {
            return Err(Error::invalid("an edit needs text"));
        }
        let body = json!({
            "channel": message.channel.channel.as_str(),
            "ts": message.message.as_str(),
            "text": text,
            "metadata": self.marker_metadata(content.marker.as_deref()),
        });
        match self
            .call::<Empty>("chat.update", Args::Json(body), None, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    slack_error_code(&e),
                    Some("edit_window_closed" | "cant_update_message")
                ) =>
            {
                Err(Error::new(
                    ErrorKind::Forbidden,
                    format!(
                        "Slack no longer lets the bot edit message {} in {} ({}): the workspace's edit window may have closed; the copy keeps its earlier text",
                        message.message,
                        message.channel.channel,
                        slack_error_code(&e).unwrap_or_default()
                    ),
                ))
            }
            Err(e) => Err(e),
        }
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
        let mut name = attachment.name.clone();
        let mut mime_type = attachment.mime_type.clone();
        let mut size = attachment.size;
        let raw_url = if let Some(id) = attachment.url.strip_prefix(FILE_ID_SCHEME) {
            // Known by id only (Slack Connect): files.info has the URLs.
            let info = self
                .call::<FilesInfo>(
                    "files.info",
                    Args::Query(vec![("file", id.to_owned())]),
                    None,
                    true,
                )
                .await?
                .body
                .file;
            if let Some(n) = info
                .name
                .clone()
                .or(info.title.clone())
                .filter(|n| !n.trim().is_empty())
            {
                name = n;
            }
            mime_type = mime_type.or(info.mimetype);
            size = size.or(info.size);
            info.url_private_download
                .or(info.url_private)
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "Slack file {id} has no download URL (deleted, or hosted elsewhere)"
                    ))
                })?
        } else {
            attachment.url.clone()
        };
        if size.is_some_and(|n| n > max_bytes) {
            return Err(Error::invalid(format!(
                "{name:?} is {} bytes, more than the {max_bytes} allowed",
                size.unwrap_or_default()
            )));
        }
        let url = self.file_url(&raw_url)?;
        let bytes = self.download(url, &name, max_bytes).await?;
        Ok(switchboard_core::FileContent {
            name,
            mime_type,
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
                ("limit", self.options.channel_page_size.to_string()),
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
        // Channel membership costs a call per channel (conversations.members): it is read
        // on demand, for the channels that get linked (import_channel_members).
        Ok(counts)
    }

    async fn import_channel_members(
        &self,
        channel: &ChannelRef,
        sink: &mut dyn ImportSink,
    ) -> Result<ImportCounts> {
        self.check_channel(channel)?;
        let mut counts = ImportCounts::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![
                ("channel", channel.channel.to_string()),
                ("limit", self.options.member_page_size.to_string()),
            ];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self
                .call::<ConversationsMembers>("conversations.members", Args::Query(q), None, true)
                .await?
                .body;
            let mut members = Vec::with_capacity(page.members.len());
            for m in page.members {
                if seen.insert(m.clone()) {
                    members.push(
                        UserId::new(m).map_err(|e| {
                            Error::upstream(format!("bad member id from Slack: {e}"))
                        })?,
                    );
                }
            }
            counts.members += members.len() as u64;
            if !members.is_empty() {
                sink.channel_members(channel, members).await?;
            }
            sink.progress(Progress {
                phase: ImportPhase::ChannelMembers,
                done: counts.members,
                estimated_total: None,
            })
            .await?;
            match page.response_metadata.next() {
                Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_owned()),
                Some(_) => {
                    return Err(Error::upstream(
                        "conversations.members returned the same cursor twice",
                    ));
                }
                None => return Ok(counts),
            }
        }
    }

    async fn import_users(&self, sink: &mut dyn ImportSink) -> Result<ImportCounts> {
        let mut counts = ImportCounts::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![("limit", self.options.user_page_size.to_string())];
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
