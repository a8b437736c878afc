//! [`MsTeamsConnection`]: one connected Microsoft tenant, acting as its service account,
//! implementing [`Platform`] (here), [`TeamImport`](switchboard_core::TeamImport) (in
//! `import`) and [`ServiceAccount`](switchboard_core::ServiceAccount) (in `account`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use reqwest::Method;
use switchboard_core::{
    AccountIdentity, Attachment, Capabilities, ChannelRef, ConnectionHealth, Credentials, Emoji,
    Error, ErrorKind, FileContent, MessageId, MessageRef, OutgoingMessage, Platform, PlatformKind,
    PostedMessage, PostingIdentity, ReactionChange, Result, UserId,
};
use tokio::sync::OnceCell;
use url::Url;

use crate::config::MsTeamsConfig;
use crate::events::{message_body, render_outgoing};
use crate::graph::{GraphClient, GraphRequest};
use crate::oauth::OAuthClient;
use crate::token::{CredentialsSink, TokenProvider};
use crate::wire::{ChatMessage, Me};

/// One connected Microsoft tenant.
pub struct MsTeamsConnection {
    pub(crate) config: Arc<MsTeamsConfig>,
    pub(crate) graph: GraphClient,
    me: OnceCell<Me>,
    service_account: bool,
    /// Linked users' own delegated tokens, by their Teams user id.
    linked: RwLock<HashMap<UserId, Arc<TokenProvider>>>,
}

impl fmt::Debug for MsTeamsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsTeamsConnection")
            .field("tenant", &self.config.tenant)
            .field("graph_base", &self.config.graph_base.as_str())
            .field("service_account", &self.service_account)
            .field("linked_users", &self.linked.read().len())
            .finish_non_exhaustive()
    }
}

impl MsTeamsConnection {
    /// A connection acting with `tokens` (the service account's).
    pub fn new(config: MsTeamsConfig, tokens: Arc<TokenProvider>) -> Result<Self> {
        let graph = GraphClient::new(&config, tokens)?;
        Ok(MsTeamsConnection {
            config: Arc::new(config),
            graph,
            me: OnceCell::new(),
            service_account: true,
            linked: RwLock::new(HashMap::new()),
        })
    }

    /// A connection from stored credentials: tokens are refreshed ahead of expiry and every
    /// rotation is handed to `sink` for sealing.
    pub fn from_credentials(
        config: MsTeamsConfig,
        credentials: Credentials,
        sink: Option<Arc<dyn CredentialsSink>>,
    ) -> Result<Self> {
        let oauth = OAuthClient::new(&config)?;
        let tokens = Arc::new(TokenProvider::new(
            oauth,
            credentials,
            config.refresh_margin,
            sink,
        ));
        Self::new(config, tokens)
    }

    /// Marks the connection as made with a personal account's token rather than a
    /// dedicated service account (`connections migrate` moves it off).
    pub fn personal_account(mut self) -> Self {
        self.service_account = false;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &MsTeamsConfig {
        &self.config
    }

    /// The Graph client (for calls this adapter does not wrap).
    pub fn graph(&self) -> &GraphClient {
        &self.graph
    }

    /// The service account's token provider.
    pub fn tokens(&self) -> &Arc<TokenProvider> {
        self.graph.tokens()
    }

    /// The signed-in account (`/me`), read once and cached.
    pub async fn me(&self) -> Result<Me> {
        let me = self
            .me
            .get_or_try_init(|| async {
                let url = self.graph.url(
                    &["me"],
                    &[("$select", "id,displayName,userPrincipalName,mail")],
                );
                self.graph.get_json::<Me>(url).await
            })
            .await?;
        Ok(me.clone())
    }

    /// Lets the Teams user `user` post as themselves: messages asked to be posted as
    /// [`PostingIdentity::LinkedUser`] with this user go out with `tokens` (their own
    /// delegated Teams token) instead of the service account's, without the attribution
    /// line; edits and deletes of those copies use the same token.
    pub fn link_user_token(&self, user: UserId, tokens: Arc<TokenProvider>) {
        self.linked.write().insert(user, tokens);
    }

    /// Forgets that user's token: copies they posted can no longer be edited or deleted
    /// (Teams lets only the sender change a message).
    pub fn unlink_user_token(&self, user: &UserId) {
        self.linked.write().remove(user);
    }

    /// Whether the Teams user `user` has a linked token.
    pub fn is_linked(&self, user: &UserId) -> bool {
        self.linked.read().contains_key(user)
    }

    /// The token of a linked user, when there is one.
    /// Whether the grant carries `Files.ReadWrite.All` (else files are linked, not uploaded).
    async fn may_upload_files(&self) -> bool {
        self.tokens().granted_scopes().await.iter().any(|s| {
            crate::oauth::short_scope(s).eq_ignore_ascii_case(crate::oauth::FILES_PERMISSION)
        })
    }

    fn linked_tokens(&self, user: &UserId) -> Option<Arc<TokenProvider>> {
        self.linked.read().get(user).cloned()
    }

    /// The token to change a copy posted by `posted_by` with (`None`: the service
    /// account's). `Forbidden` with words when that identity's token is gone.
    fn tokens_of_poster(
        &self,
        posted_by: &PostingIdentity,
        what: &str,
    ) -> Result<Option<Arc<TokenProvider>>> {
        match posted_by {
            PostingIdentity::ServiceAccount => Ok(None),
            PostingIdentity::LinkedUser { user } => match self.linked_tokens(user) {
                Some(t) => Ok(Some(t)),
                None => Err(Error::new(
                    ErrorKind::Forbidden,
                    format!(
                        "this copy was posted in Teams as the linked user {user}, whose Teams token is no longer available; Teams lets only the sender {what} a message, so the copy can no longer be changed (the user can link their account again)"
                    ),
                )),
            },
        }
    }

    /// Whether `message` carries the service account's own words (no attribution line).
    async fn is_own_words(&self, message: &OutgoingMessage) -> Result<bool> {
        let me = self.me().await?;
        Ok(message.content.sender.platform == PlatformKind::Msteams
            && message.content.sender.user.as_str() == me.id)
    }

    fn check_channel(channel: &ChannelRef) -> Result<()> {
        if channel.platform != PlatformKind::Msteams {
            return Err(Error::invalid(format!(
                "{channel} is not a Microsoft Teams channel"
            )));
        }
        Ok(())
    }

    /// `…/teams/{t}/channels/{c}/messages[/{root}/replies][/{id}]` plus `tail` segments.
    pub(crate) fn message_url(
        &self,
        channel: &ChannelRef,
        thread_root: Option<&MessageId>,
        id: Option<&MessageId>,
        tail: &[&str],
    ) -> Url {
        let mut segs: Vec<&str> = vec![
            "teams",
            channel.team.as_str(),
            "channels",
            channel.channel.as_str(),
            "messages",
        ];
        match (thread_root, id) {
            (Some(root), Some(id)) if root != id => {
                segs.extend([root.as_str(), "replies", id.as_str()]);
            }
            (Some(root), None) => segs.extend([root.as_str(), "replies"]),
            (_, Some(id)) => segs.push(id.as_str()),
            (None, None) => {}
        }
        segs.extend_from_slice(tail);
        self.graph.url(&segs, &[])
    }

    /// Adds a hint to a `Forbidden` error on a team: the service account may have been
    /// removed from it.
    pub(crate) fn team_error(&self, team: &str, e: Error) -> Error {
        if e.kind() == ErrorKind::Forbidden {
            Error::new(
                ErrorKind::Forbidden,
                format!(
                    "{} — the service account may have been removed from team {team}; re-add it with ensure_membership",
                    e.message()
                ),
            )
        } else {
            e
        }
    }

    /// Reads one channel message (or reply).
    pub async fn fetch_message(
        &self,
        channel: &ChannelRef,
        id: &MessageId,
        thread_root: Option<&MessageId>,
    ) -> Result<ChatMessage> {
        Self::check_channel(channel)?;
        let url = self.message_url(channel, thread_root, Some(id), &[]);
        self.graph
            .get_json(url)
            .await
            .map_err(|e| self.team_error(channel.team.as_str(), e))
    }
}

#[async_trait]
impl Platform for MsTeamsConnection {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Msteams
    }

    /// Reactions: Unicode emoji only (Graph `setReaction`/`unsetReaction`; custom emoji are
    /// `Unsupported`). Edits and deletes: yes. File upload: yes, into the channel's files
    /// folder when the grant carries `Files.ReadWrite.All` (requested at connect; without it, or
    /// when an upload fails, files are posted as links). Teams files are downloaded by
    /// `fetch_attachment`. Sender attribution: yes, as a name
    /// line in the message (Graph cannot post as another user); a linked user's own token
    /// posts as them.
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
        let me = self.me().await?;
        let user_id = UserId::new(me.id.clone())
            .map_err(|e| Error::upstream(format!("Graph returned an unusable user id: {e}")))?;
        let display_name = me
            .user_principal_name
            .clone()
            .or(me.display_name.clone())
            .unwrap_or_else(|| me.id.clone());
        Ok(AccountIdentity {
            user_id,
            display_name,
            is_service_account: self.service_account,
        })
    }

    async fn post(&self, channel: &ChannelRef, message: &OutgoingMessage) -> Result<PostedMessage> {
        Self::check_channel(channel)?;
        // a linked user posts as themselves; without their token the service account posts
        // with the attribution line, and says so in `posted_by`
        let user_tokens = match &message.post_as {
            PostingIdentity::LinkedUser { user } => {
                let t = self.linked_tokens(user);
                if t.is_none() {
                    tracing::info!(%user, "no Teams token linked for the user; posting as the service account");
                }
                t
            }
            PostingIdentity::ServiceAccount => None,
        };
        let attribution = user_tokens.is_none() && !self.is_own_words(message).await?;
        // Files with content go into the channel's folder (when the grant allows it); the
        // rest, and any upload that fails, are linked: never dropped.
        let mut uploaded = Vec::new();
        if message.files.iter().any(|f| f.content.is_some()) && self.may_upload_files().await {
            for (i, f) in message.files.iter().enumerate() {
                let Some(content) = &f.content else { continue };
                match crate::files::upload(self, channel, content, user_tokens.as_ref()).await {
                    Ok(u) => uploaded.push((i, u)),
                    Err(e) => {
                        tracing::warn!(file = %f.attachment.name, error = %e, "upload to the Teams channel folder failed; the file is linked")
                    }
                }
            }
        }
        let rendered = crate::events::render_outgoing_with(message, attribution, &uploaded)?;
        let root = message.reply_to.as_ref();
        let url = self.message_url(channel, root, None, &[]);
        let req = GraphRequest::new(Method::POST, url)
            .json(crate::events::message_body_with(&rendered, &uploaded));
        let resp = match &user_tokens {
            Some(t) => self.graph.send_as(&req, t).await,
            None => self.graph.send(&req).await,
        }
        .map_err(|f| self.team_error(channel.team.as_str(), f.into()))?;
        let posted: ChatMessage = resp.json("POST channel message")?;
        let id = MessageId::new(posted.id)
            .map_err(|e| Error::upstream(format!("Graph returned an unusable message id: {e}")))?;
        let posted_by = match user_tokens {
            Some(_) => message.post_as.clone(),
            None => PostingIdentity::ServiceAccount,
        };
        Ok(PostedMessage {
            reference: MessageRef {
                channel: channel.clone(),
                message: id,
                thread_root: root.cloned(),
            },
            extra_parts: Vec::new(),
            posted_by,
        })
    }

    /// As `posted_by` (Teams lets only the sender edit): the service account's token, or
    /// the linked user's; `Forbidden` when that user's token is gone.
    async fn edit(
        &self,
        message: &MessageRef,
        content: &OutgoingMessage,
        posted_by: &PostingIdentity,
    ) -> Result<()> {
        Self::check_channel(&message.channel)?;
        let user_tokens = self.tokens_of_poster(posted_by, "edit")?;
        let attribution = user_tokens.is_none() && !self.is_own_words(content).await?;
        let rendered = render_outgoing(content, attribution)?;
        let url = self.message_url(
            &message.channel,
            message.thread_root.as_ref(),
            Some(&message.message),
            &[],
        );
        let req = GraphRequest::new(Method::PATCH, url).json(message_body(&rendered));
        match &user_tokens {
            Some(t) => self.graph.send_as(&req, t).await,
            None => self.graph.send(&req).await,
        }
        .map_err(|f| self.team_error(message.channel.team.as_str(), f.into()))?;
        Ok(())
    }

    /// As `posted_by`, like [`Platform::edit`]; an already deleted message is success.
    async fn delete(&self, message: &MessageRef, posted_by: &PostingIdentity) -> Result<()> {
        Self::check_channel(&message.channel)?;
        let user_tokens = self.tokens_of_poster(posted_by, "delete")?;
        let url = self.message_url(
            &message.channel,
            message.thread_root.as_ref(),
            Some(&message.message),
            &["softDelete"],
        );
        let req = GraphRequest::new(Method::POST, url).idempotent(true);
        let result = match &user_tokens {
            Some(t) => self.graph.send_as(&req, t).await,
            None => self.graph.send(&req).await,
        };
        match result {
            Ok(_) => Ok(()),
            // already gone: deleting is idempotent
            Err(f) if f.status == Some(404) => Ok(()),
            Err(f) => Err(self.team_error(message.channel.team.as_str(), f.into())),
        }
    }

    /// `setReaction`/`unsetReaction` as `identity` (the linked user's token, or the service
    /// account's). Graph keeps **one reaction per identity per type**: reactions relayed
    /// through the service account collapse, so removing one takes it away for every
    /// relayed reactor. Counting is the caller's job: the relay keeps, per (message, emoji),
    /// how many relayed reactors hold it, and asks for `Remove` only when the last one
    /// leaves. A linked user whose token is gone is `Forbidden`.
    async fn react(
        &self,
        message: &MessageRef,
        emoji: &Emoji,
        change: ReactionChange,
        identity: &PostingIdentity,
    ) -> Result<()> {
        let add = change == ReactionChange::Add;
        Self::check_channel(&message.channel)?;
        let user_tokens = self.tokens_of_poster(identity, "react to")?;
        let value = match emoji {
            Emoji::Unicode { value, .. } if !value.trim().is_empty() => value.trim(),
            Emoji::Unicode { .. } => {
                return Err(Error::invalid("an empty emoji cannot be a reaction"));
            }
            Emoji::Custom { name } => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "Teams reactions must be Unicode emoji; the custom emoji :{name}: cannot be added"
                    ),
                ));
            }
        };
        let action = if add { "setReaction" } else { "unsetReaction" };
        let url = self.message_url(
            &message.channel,
            message.thread_root.as_ref(),
            Some(&message.message),
            &[action],
        );
        let req = GraphRequest::new(Method::POST, url)
            .json(serde_json::json!({ "reactionType": value }))
            .idempotent(true);
        let result = match &user_tokens {
            Some(t) => self.graph.send_as(&req, t).await,
            None => self.graph.send(&req).await,
        };
        match result {
            Ok(_) => Ok(()),
            // removing an absent reaction succeeds
            Err(f) if !add && f.status == Some(404) => Ok(()),
            Err(f) => Err(self.team_error(message.channel.team.as_str(), f.into())),
        }
    }

    /// Teams files live in SharePoint: the attachment's `contentUrl` is resolved through
    /// `GET /shares/{u!base64url(url)}/driveItem` (its `size` is checked against `max_bytes`
    /// before anything is downloaded), then the bytes come from the item's
    /// pre-authenticated `@microsoft.graph.downloadUrl` (no bearer token is sent there),
    /// read with the same bound.
    async fn fetch_attachment(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<FileContent> {
        crate::files::fetch(self, attachment, max_bytes).await
    }

    /// The user's own token provider (refreshing through the end-user scope set, every
    /// rotation handed to `sink`) replaces any previous one of that user.
    async fn link_user(
        &self,
        user: UserId,
        credentials: Credentials,
        sink: Arc<dyn switchboard_core::CredentialsSink>,
    ) -> Result<()> {
        let oauth = OAuthClient::new(&self.config)?.with_scopes(crate::oauth::end_user_scopes());
        let tokens = TokenProvider::new(oauth, credentials, self.config.refresh_margin, Some(sink));
        self.link_user_token(user, Arc::new(tokens));
        Ok(())
    }

    fn unlink_user(&self, user: &UserId) {
        self.unlink_user_token(user);
    }

    async fn health(&self) -> Result<ConnectionHealth> {
        if let Err(e) = self.tokens().access_token().await {
            return match e.kind() {
                ErrorKind::NeedsReauth | ErrorKind::Unauthorized => {
                    Ok(ConnectionHealth::NeedsReauth)
                }
                k if k.is_transient() => Ok(ConnectionHealth::Degraded),
                _ => Err(e),
            };
        }
        let url = self.graph.url(&["me"], &[("$select", "id")]);
        match self.graph.get_json::<serde_json::Value>(url).await {
            Ok(_) => {}
            Err(e) => {
                return match e.kind() {
                    ErrorKind::NeedsReauth | ErrorKind::Unauthorized => {
                        Ok(ConnectionHealth::NeedsReauth)
                    }
                    k if k.is_transient() => Ok(ConnectionHealth::Degraded),
                    _ => Err(e),
                };
            }
        }
        let missing = crate::account::missing_scopes(self, self.config.guest_sync).await;
        Ok(match missing {
            Some(m) if !m.is_empty() => ConnectionHealth::MissingScopes,
            _ => ConnectionHealth::Ok,
        })
    }
}
