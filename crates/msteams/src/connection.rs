//! [`MsTeamsConnection`]: one connected Microsoft tenant, acting as its service account,
//! implementing [`Platform`] (here), [`TeamImport`](switchboard_core::TeamImport) (in
//! `import`) and [`ServiceAccount`](switchboard_core::ServiceAccount) (in `account`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
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

/// How many messages posted with a linked user's token are remembered (to delete them with
/// the same token).
const USER_POSTS_REMEMBERED: usize = 10_000;

/// One connected Microsoft tenant.
pub struct MsTeamsConnection {
    pub(crate) config: Arc<MsTeamsConfig>,
    pub(crate) graph: GraphClient,
    me: OnceCell<Me>,
    service_account: bool,
    linked: RwLock<HashMap<(PlatformKind, UserId), Arc<TokenProvider>>>,
    user_posts: Mutex<UserPosts>,
}

/// Messages posted with a linked user's token, oldest first, bounded.
#[derive(Default)]
struct UserPosts {
    by_id: HashMap<MessageId, Arc<TokenProvider>>,
    order: VecDeque<MessageId>,
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
            user_posts: Mutex::new(UserPosts::default()),
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

    /// Lets the user `user` of `platform` post as themselves: messages whose sender is that
    /// user are posted with `tokens` (their own delegated Teams token) instead of the
    /// service account's, without the attribution line.
    pub fn link_user_token(
        &self,
        platform: PlatformKind,
        user: UserId,
        tokens: Arc<TokenProvider>,
    ) {
        self.linked.write().insert((platform, user), tokens);
    }

    /// Stops posting as that user.
    pub fn unlink_user_token(&self, platform: PlatformKind, user: &UserId) {
        self.linked.write().remove(&(platform, user.clone()));
    }

    fn linked_tokens(&self, message: &OutgoingMessage) -> Option<Arc<TokenProvider>> {
        let s = &message.content.sender;
        self.linked
            .read()
            .get(&(s.platform, s.user.clone()))
            .cloned()
    }

    fn remember_user_post(&self, id: &MessageId, tokens: Arc<TokenProvider>) {
        let mut g = self.user_posts.lock();
        if g.by_id.insert(id.clone(), tokens).is_none() {
            g.order.push_back(id.clone());
        }
        while g.order.len() > USER_POSTS_REMEMBERED {
            if let Some(old) = g.order.pop_front() {
                g.by_id.remove(&old);
            }
        }
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
    /// `Unsupported`). Edits and deletes: yes. File upload: no (files are posted as links).
    /// Sender attribution: yes, as a name line in the message (Graph cannot post as another
    /// user); a linked user's own token posts as them.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            reactions: true,
            edits: true,
            deletes: true,
            file_upload: false,
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
        let user_tokens = self.linked_tokens(message);
        let me = match &user_tokens {
            Some(_) => None,
            None => Some(self.me().await?),
        };
        let is_self = me.as_ref().is_some_and(|m| {
            message.content.sender.platform == PlatformKind::Msteams
                && message.content.sender.user.as_str() == m.id
        });
        let rendered = render_outgoing(message, user_tokens.is_none() && !is_self)?;
        let root = message.reply_to.as_ref();
        let url = self.message_url(channel, root, None, &[]);
        let req = GraphRequest::new(Method::POST, url).json(message_body(&rendered));
        let resp = match &user_tokens {
            Some(t) => self.graph.send_as(&req, t).await,
            None => self.graph.send(&req).await,
        }
        .map_err(|f| self.team_error(channel.team.as_str(), f.into()))?;
        let posted: ChatMessage = resp.json("POST channel message")?;
        let id = MessageId::new(posted.id)
            .map_err(|e| Error::upstream(format!("Graph returned an unusable message id: {e}")))?;
        let posted_by = match user_tokens {
            Some(t) => {
                self.remember_user_post(&id, t);
                message.post_as.clone()
            }
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

    async fn edit(
        &self,
        message: &MessageRef,
        content: &OutgoingMessage,
        _posted_by: &PostingIdentity,
    ) -> Result<()> {
        Self::check_channel(&message.channel)?;
        let user_tokens = self.linked_tokens(content);
        let is_self = match &user_tokens {
            Some(_) => false,
            None => {
                let me = self.me().await?;
                content.content.sender.platform == PlatformKind::Msteams
                    && content.content.sender.user.as_str() == me.id
            }
        };
        let rendered = render_outgoing(content, user_tokens.is_none() && !is_self)?;
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

    async fn delete(&self, message: &MessageRef, _posted_by: &PostingIdentity) -> Result<()> {
        Self::check_channel(&message.channel)?;
        let url = self.message_url(
            &message.channel,
            message.thread_root.as_ref(),
            Some(&message.message),
            &["softDelete"],
        );
        let req = GraphRequest::new(Method::POST, url).idempotent(true);
        let user_tokens = self.user_posts.lock().by_id.get(&message.message).cloned();
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

    async fn react(
        &self,
        message: &MessageRef,
        emoji: &Emoji,
        change: ReactionChange,
        _identity: &PostingIdentity,
    ) -> Result<()> {
        let add = change == ReactionChange::Add;
        Self::check_channel(&message.channel)?;
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
        match self.graph.send(&req).await {
            Ok(_) => Ok(()),
            // removing an absent reaction succeeds
            Err(f) if !add && f.status == Some(404) => Ok(()),
            Err(f) => Err(self.team_error(message.channel.team.as_str(), f.into())),
        }
    }

    async fn fetch_attachment(
        &self,
        attachment: &Attachment,
        _max_bytes: u64,
    ) -> Result<FileContent> {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "fetching Teams file {:?} is not implemented yet; it is linked instead",
                attachment.name
            ),
        ))
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
